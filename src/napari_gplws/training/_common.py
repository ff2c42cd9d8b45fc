"""What both trainers (GPLWS-Net and LDSE-NET) share: configs, schedule, checkpoints, logs.

* :class:`ConfigMixin` — ``to_dict`` of a training-config dataclass (tuples as lists, so
  the dict goes into JSON: logs, checkpoints and model cards);
* :func:`cosine_lr_factor` — linear warm-up then cosine decay of the learning rate;
* :func:`save_checkpoint` / :func:`load_checkpoint` — ``last.ckpt`` written atomically
  (:func:`napari_gplws._shared.files.atomic_write`), so an interrupted run never leaves a
  half-written checkpoint, and read back with ``weights_only=True``;
* :func:`run_logger` — a time-stamped line to the console and to ``train.log``.

The device a run uses is resolved by :func:`napari_gplws._shared.device.torch_device`
and parameter counts come from :func:`napari_gplws.models.cards.count_parameters`.
torch is imported on first use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from napari_gplws._shared.files import atomic_write

__all__ = ["ConfigMixin", "cosine_lr_factor", "load_checkpoint", "run_logger", "save_checkpoint"]


class ConfigMixin:
    """Adds :meth:`to_dict` to a training-config dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict: every field, tuples turned into lists."""
        fields = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}


def cosine_lr_factor(step: int, frac: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then a cosine decay to ``min_lr_ratio``.

    Parameters
    ----------
    step
        Optimiser steps done so far.
    frac
        Fraction of the budget (steps or wall time, whichever is further) used so far;
        values above 1 count as 1.
    warmup_steps
        Steps of the linear warm-up from ``1 / warmup_steps`` to 1.
    min_lr_ratio
        Multiplier at the end of the budget.

    Returns
    -------
    float
        The factor to multiply the base learning rate by.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write a training checkpoint (``torch.save``) atomically: the old file or the new one.

    Parameters
    ----------
    path
        Target, e.g. ``OUT_DIR/last.ckpt``; its folder must exist.
    payload
        State dicts, counters and random-generator states (tensors and plain Python only,
        so that :func:`load_checkpoint` can read it with ``weights_only=True``).

    Returns
    -------
    Path
        ``path``.
    """
    import torch

    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto ``device`` (no pickled code)."""
    import torch

    return torch.load(path, map_location=device, weights_only=True)


def run_logger(
    log_path: Path, forward: Callable[[str], None] | None = None
) -> Callable[[str], None]:
    """A ``log(msg)`` that prints ``[HH:MM:SS] msg`` and appends it to ``log_path``.

    Parameters
    ----------
    log_path
        The run's text log (opened for appending at every line).
    forward
        Also called with each message (without the time stamp), e.g. a GUI's logger.

    Returns
    -------
    Callable[[str], None]
        The logging function.
    """

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if forward is not None:
            forward(msg)

    return log
