"""One sample of a dataset under review: its frames, focus positions and ground truth.

:func:`load_sample` reads the frames with :func:`napari_gplws.io.read_stack` (so a focus
position sidecar in the sample folder is honoured) and the ground truth with
:func:`napari_gplws.io.micro3d.read_gt`, keeping the stored values and encoding so that a
correction is written back the same way. It also names the files the editor writes in the
sample's ``corrections/`` folder, and the small helpers they share (time stamps, user).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.files import atomic_write
from napari_gplws.errors import StackError
from napari_gplws.io import read_stack
from napari_gplws.io.micro3d import GT_PATTERNS, GTEncoding, find_gt, read_gt
from napari_gplws.stack import (
    FocalStack,
    uniform_positions,
)

STATUSES: tuple[str, ...] = ("unreviewed", "in progress", "reviewed")
MANIFEST_NAME = "gt_review.json"
WORK_DIR = "corrections"
UNITS = "µm"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # pragma: no cover - no login name (containers)
        return "unknown"


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=True)


# ---------------------------------------------------------------------------------------
# Samples and sessions
# ---------------------------------------------------------------------------------------


@dataclass
class SampleData:
    """One loaded sample: the stack, the original ground truth in µm and where it lives."""

    name: str
    folder: Path
    stack: FocalStack
    gt_path: Path
    encoding: GTEncoding
    original_um: np.ndarray
    focus_from: str = ""

    @property
    def focus_um(self) -> np.ndarray:
        """``(N,)`` focus positions in µm."""
        return np.asarray(self.stack.focus_um, dtype=np.float64)

    @property
    def work_dir(self) -> Path:
        return self.folder / WORK_DIR

    @property
    def corrected_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.corrected.tif"

    @property
    def recovery_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.recovery.npz"

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.edits.jsonl"


def load_sample(
    folder: str | os.PathLike[str],
    gt_patterns: Sequence[str] = GT_PATTERNS,
    gt_scale: float = 1.0,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
) -> SampleData:
    """Load one sample folder (frames, focus positions, ground truth).

    Focus positions come from ``focus_start_um``/``focus_step_um`` when given, else from a
    sidecar in the folder, else ``0, 1, 2 … µm`` (one µm per frame, stated in ``focus_from``).
    """
    d = Path(folder)
    gt = find_gt(d, gt_patterns)
    kw: dict[str, Any] = {}
    if focus_step_um is not None:
        kw = {"focus_start_um": focus_start_um or 0.0, "focus_step_um": focus_step_um}
    stack = read_stack(d, exclude=[gt.name], **kw)
    focus_from = str(stack.metadata.get("focus_from") or "")
    if stack.focus_um is None:
        stack = stack.with_(focus_um=uniform_positions(stack.n_frames))
        focus_from = "assumed 1 µm per frame (no sidecar, no step given)"
    depth, enc, raw = read_gt(gt, stack.focus_um, gt_scale)
    if raw.shape != stack.shape_yx:
        raise StackError(
            f"The ground truth '{gt}' is {raw.shape} but the frames are {stack.shape_yx}."
        )
    return SampleData(d.name, d, stack, gt, enc, depth, focus_from)
