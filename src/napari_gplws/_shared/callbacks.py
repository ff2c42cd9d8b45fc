"""Progress and cancel callbacks shared by every long-running core function.

Core functions accept ``progress(done, total)`` and ``cancel() -> bool`` as plain
callables (or ``None``). :func:`check_cancel` raises :class:`~napari_gplws.errors.Cancelled` so
that a cancelled computation never returns a half-made result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_gplws.errors import Cancelled

ProgressFn = Callable[[int, int], None] | None
CancelFn = Callable[[], bool] | None


def report(progress: ProgressFn, done: int, total: int) -> None:
    """Call ``progress(done, total)`` when a callback was given."""
    if progress is not None:
        progress(int(done), int(total))


def check_cancel(cancel: CancelFn) -> None:
    """Raise :class:`Cancelled` when ``cancel()`` says so."""
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user; no result was produced.")


class DaskTaskProgress:
    """A dask local-scheduler callback turning finished tasks into ``progress(done, total)``."""

    def __init__(self, progress: ProgressFn, offset: int, total: int) -> None:
        from dask.callbacks import Callback

        outer = self

        class _CB(Callback):
            def _start_state(self, dsk: Any, state: Any) -> None:
                outer.n = sum(len(state[k]) for k in ("ready", "waiting", "running"))
                outer.done = 0

            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                outer.done += 1
                frac = outer.done / max(1, outer.n)
                report(progress, offset + int(frac * 100), total)

        self.cb = _CB()
        self.n, self.done = 1, 0
