"""Run one core call off the GUI thread, with progress, Cancel and errors shown the napari way.

:class:`Job` wraps a task ``task(progress, cancel) -> result`` — a closure around one core
function that takes the core's ``progress(done, total)`` and ``cancel() -> bool`` callbacks —
in a napari thread worker (:func:`napari.qt.threading.create_worker`):

* ``progress`` is called on the worker thread; it emits a Qt signal that the GUI thread turns
  into a :class:`napari.utils.progress` bar in the activity area (queued across threads, so the
  worker never touches a widget or a layer); widgets may also connect :attr:`Job.progressed`
  to a bar of their own. ``activity=False`` leaves napari's activity area out: while any
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
thread; ``on_finished`` runs last, whatever happened.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

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

Task = Callable[[Callable[[int, int], None], Callable[[], bool]], Any]


class Job(QObject):
    """One background run of a core task (see the module docstring).

    Signals
    -------
    progressed(done, total)
        Delivered on the GUI thread after each step the core reports.
    """

    progressed = Signal(int, int)

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
        self.progressed.connect(self._show_progress)

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
        self._worker.start()

    def cancel(self) -> None:
        """Ask the task to stop at its next step (the GUI is told through ``on_cancelled``)."""
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            if self._pbar is not None:
                self._pbar.set_description(f"{self._description} (cancelling…)")

    def _show_progress(self, done: int, total: int) -> None:
        pbar = self._pbar
        if pbar is None or not self.running:
            return
        if total > 0 and pbar.total != total:
            pbar.total = total
        if done > pbar.n:
            pbar.update(done - pbar.n)

    def _returned(self, outcome: tuple[str, Any]) -> None:
        self._outcome = outcome

    def _finished(self) -> None:
        self.running = False
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        kind, value = self._outcome or ("crashed", None)
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
            self.progressed.emit(int(done), int(total))

    def _run(self) -> tuple[str, Any]:
        try:
            return "done", self._task(self._report, self._cancel.is_set)
        except Cancelled:
            return "cancelled", None
        except GplwsError as exc:
            return "error", str(exc)
