"""Run one core call off the GUI thread, with progress, Cancel and errors shown the napari way.

:class:`Job` wraps a task ``task(progress, cancel) -> result`` — a closure around one core
function that takes the core's ``progress(done, total)`` and ``cancel() -> bool`` callbacks —
in a napari thread worker (:func:`napari.qt.threading.create_worker`):

* ``progress`` is called on the worker thread; it emits a Qt signal that the GUI thread turns
  into a :class:`napari.utils.progress` bar in the activity area (queued across threads, so the
  worker never touches a widget or a layer); widgets may also connect :attr:`Job.progressed`
  to a bar of their own. :attr:`Job.progressed` counts in hundredths of a step and moves at
  least every :data:`HEARTBEAT_S` even when the core reports rarely (one network pass can
  take seconds): between two reports it advances by the time elapsed over the steps'
  average duration so far, never past 95 % of the step under way, so a bar never stands
  still and never runs ahead of the work. ``activity=False`` leaves napari's activity area out: while any
  napari progress bar is open, napari animates an "in progress" GIF (~33 frames/s), and with
  software OpenGL (remote desktops, VMs, Xvfb) every frame recomposes the whole window on
  the CPU, which was measured to slow a CPU-bound run 2–3× on a 2-core machine and to stall
  the GUI for most of a second (``scripts/measure_responsiveness.py``); :func:`software_opengl`
  tells the widgets when that is the case;
* ``cancel`` reads a :class:`threading.Event` that :meth:`Job.cancel` sets; the core checks it
  between steps and raises :class:`~napari_gplws.errors.Cancelled`, so nothing half-made
  ever reaches the GUI thread;
* a :class:`~napari_gplws.errors.GplwsError` (bad input, missing weights…) is caught on the
  worker and handed to ``on_error`` with its plain message; any other exception is a bug and is
  left to napari's worker, which shows it as an error notification with its traceback.

The callbacks ``on_done``, ``on_cancelled``, ``on_error`` and ``on_finished`` run on the GUI
thread; ``on_finished`` runs last, whatever happened. A result that arrives after Cancel was
pressed counts as cancelled. :class:`CloseWatcher` tells a dock when it is closed (taken out
of napari's window), so that it can cancel its run.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject, QTimer, Signal
from qtpy.QtWidgets import QWidget

from napari_gplws.errors import Cancelled, GplwsError

_SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader", "software rasterizer")


@functools.lru_cache(maxsize=1)
def software_opengl() -> bool:
    """Whether Qt's OpenGL here is a software rasteriser (Mesa llvmpipe and the like).

    Asked once, on the GUI thread, through a throw-away offscreen context. Any failure
    counts as "no" (hardware is the common case).
    """
    try:
        from qtpy.QtGui import QOffscreenSurface, QOpenGLContext
        from vispy.gloo import gl

        ctx = QOpenGLContext()
        if not ctx.create():
            return False
        surface = QOffscreenSurface()
        surface.setFormat(ctx.format())
        surface.create()
        if not ctx.makeCurrent(surface):
            return False
        try:
            renderer = str(gl.glGetParameter(gl.GL_RENDERER)).lower()
        finally:
            ctx.doneCurrent()
        return any(name in renderer for name in _SOFTWARE_RENDERERS)
    except Exception:  # noqa: BLE001 - no OpenGL at all: nothing to save
        return False


#: Shortest interval between two progress updates sent to the GUI thread, in seconds.
MIN_REPORT_S = 0.25
#: Longest time the progress bar stands still, in seconds (see the module docstring).
HEARTBEAT_S = 0.5
#: :attr:`Job.progressed` counts this many units per step of the core.
SUBSTEPS = 100

Task = Callable[[Callable[[int, int], None], Callable[[], bool]], Any]


class Job(QObject):
    """One background run of a core task (see the module docstring).

    Signals
    -------
    progressed(done, total)
        Delivered on the GUI thread after each step the core reports and, between reports,
        at least every :data:`HEARTBEAT_S`; counted in :data:`SUBSTEPS` units per step.
    """

    progressed = Signal(int, int)
    _reported = Signal(int, int)

    def __init__(
        self,
        task: Task,
        *,
        description: str,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
        on_cancelled: Callable[[], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        activity: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._task = task
        self._description = description
        self._on_done = on_done
        self._on_error = on_error
        self._on_cancelled = on_cancelled
        self._on_finished = on_finished
        self._activity = activity
        self._cancel = threading.Event()
        self._pbar: Any = None
        self._worker: Any = None
        self._outcome: tuple[str, Any] | None = None
        self._last_report = 0.0
        self.running = False
        # Progress as the GUI thread knows it: the core's (done, total), when that step
        # began, when the run began, and when the progress shown last moved.
        self._done, self._total = 0, 0
        self._t_start = self._t_step = self._t_shown = 0.0
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(int(HEARTBEAT_S * 500))
        self._heartbeat.timeout.connect(self._beat)
        self._reported.connect(self._on_reported)

    # --- GUI thread ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker and the progress bar."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        if self._activity:
            self._pbar = progress(total=0, desc=self._description)
        self._worker = create_worker(self._run, _start_thread=False)
        self._worker.returned.connect(self._returned)
        self._worker.finished.connect(self._finished)
        self.running = True
        self._t_start = self._t_step = self._t_shown = time.monotonic()
        self._heartbeat.start()
        self._worker.start()

    def cancel(self) -> None:
        """Ask the task to stop at its next step (the GUI is told through ``on_cancelled``)."""
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            if self._pbar is not None:
                self._pbar.set_description(f"{self._description} (cancelling…)")

    def _on_reported(self, done: int, total: int) -> None:
        """A step reported by the core (GUI thread): move both bars."""
        if not self.running:
            return
        now = time.monotonic()
        if done != self._done:
            self._t_step = now
        self._done, self._total = done, total
        self._emit(done * SUBSTEPS, now)
        pbar = self._pbar
        if pbar is None:
            return
        if total > 0 and pbar.total != total:
            pbar.total = total
        if done > pbar.n:
            pbar.update(done - pbar.n)

    def _emit(self, units: int, now: float) -> None:
        total = max(self._total, self._done + 1, 1) * SUBSTEPS
        self._t_shown = now
        self.progressed.emit(int(units), int(total))

    def _beat(self) -> None:
        """Between two reports, advance the progress shown by the time elapsed (module docstring)."""
        now = time.monotonic()
        if not self.running or now - self._t_shown < HEARTBEAT_S * 0.9:
            return
        elapsed = now - self._t_step
        if self._done > 0:  # the steps so far tell how long one takes
            step_s = (self._t_step - self._t_start) / self._done
            frac = min(0.95, elapsed / max(step_s, 1e-3))
        else:  # no step yet: creep towards the end of the first one
            frac = 0.95 * (1.0 - math.exp(-elapsed / 10.0))
        self._emit(self._done * SUBSTEPS + int(frac * SUBSTEPS), now)

    def _returned(self, outcome: tuple[str, Any]) -> None:
        self._outcome = outcome

    def _finished(self) -> None:
        self.running = False
        self._heartbeat.stop()
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        kind, value = self._outcome or ("crashed", None)
        if kind == "done" and self._cancel.is_set():
            kind = "cancelled"  # Cancel was pressed: its result is not wanted any more
        try:
            if kind == "done":
                self._on_done(value)
            elif kind == "cancelled":
                if self._on_cancelled is not None:
                    self._on_cancelled()
            elif kind == "error":
                self._on_error(value)
        finally:
            if self._on_finished is not None:
                self._on_finished()

    # --- worker thread -------------------------------------------------------------------
    def _report(self, done: int, total: int) -> None:
        """Forward progress to the GUI at most every :data:`MIN_REPORT_S` (and the last step).

        Each update repaints part of the window; with software OpenGL a repaint recomposes the
        whole window on the CPU, so fewer updates leave more CPU to the computation.
        """
        now = time.monotonic()
        if done >= total or now - self._last_report >= MIN_REPORT_S:
            self._last_report = now
            self._reported.emit(int(done), int(total))

    def _run(self) -> tuple[str, Any]:
        try:
            return "done", self._task(self._report, self._cancel.is_set)
        except Cancelled:
            return "cancelled", None
        except GplwsError as exc:
            return "error", str(exc)


class CloseWatcher(QObject):
    """Tells a dock widget when it is closed: taken out of napari's window (the dock's ✕ or
    ``viewer.window.remove_dock_widget``) or closed as a window.

    ``on_close()`` is called once per closing; :attr:`closed` stays true until the widget is
    docked again.
    """

    def __init__(self, widget: QWidget, on_close: Callable[[], None]) -> None:
        super().__init__(widget)
        self.closed = False
        self._widget = widget
        self._on_close = on_close
        self._was_docked = widget.parent() is not None
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.ParentChange:
            docked = self._widget.parent() is not None
            if docked:
                self._was_docked, self.closed = True, False
            elif self._was_docked:
                self._close()
        elif kind == QEvent.Close:
            self._close()
        return False

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close()
