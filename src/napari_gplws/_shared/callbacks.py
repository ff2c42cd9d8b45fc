"""Progress and cancel callbacks shared by every long-running core function.

Core functions accept ``progress(done, total)`` and ``cancel() -> bool`` as plain
callables (or ``None``). :func:`check_cancel` raises :class:`~.errors.Cancelled` so
that a cancelled computation never returns a half-made result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from napari_gplws.errors import Cancelled

ProgressFn = Optional[Callable[[int, int], None]]
CancelFn = Optional[Callable[[], bool]]


def report(progress: ProgressFn, done: int, total: int) -> None:
    """Call ``progress(done, total)`` when a callback was given."""
    if progress is not None:
        progress(int(done), int(total))


def check_cancel(cancel: CancelFn) -> None:
    """Raise :class:`Cancelled` when ``cancel()`` says so."""
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user; no result was produced.")
