"""Evaluate depth-from-focus methods against ground truth (what ``gplws eval`` prints).

Two sources of samples:

* :func:`synthetic_benchmark` — the project's fixed synthetic test set. Its seeds start at
  :data:`BENCHMARK_SEED0` and must never be used for training; it covers every height-map
  family, 8- and 16-bit, grayscale and colour, decreasing and uneven focus positions, and
  stacks longer than the training stacks.
* :func:`load_eval_dataset` — a folder with one sub-folder per sample: the frames (or one
  stack file) and a ground-truth depth file named ``depth*``, ``gt*`` or ``label*``.

:func:`evaluate` runs methods over samples and averages :func:`.metrics.depth_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.errors import StackError
from napari_gplws.stack import FocalStack

#: First seed of the synthetic benchmark; training must use seeds below this.
BENCHMARK_SEED0 = 1_000_000
GT_PATTERNS = ("depth*", "gt*", "label*")


@dataclass
class EvalSample:
    """One stack with its ground truth depth (in the stack's units) and valid mask."""

    name: str
    stack: FocalStack
    gt: np.ndarray
    mask: np.ndarray | None = None


def synthetic_benchmark(n: int = 30, seed0: int = BENCHMARK_SEED0) -> list[EvalSample]:
    """The fixed synthetic test set: ``n`` stacks cycling over every height family.

    Every 4th stack is 16-bit, every 5th is RGB, every 6th has 40 frames (longer than the
    training stacks) and every 7th has decreasing, unevenly spaced focus positions. Depths
    span 5–45 µm so that AbsRel and SqRel are well defined.
    """
    from napari_gplws.sim.focus_stacks import HEIGHT_FAMILIES, synthetic_stack

    samples = []
    for i in range(n):
        family = HEIGHT_FAMILIES[i % len(HEIGHT_FAMILIES)]
        n_frames = 40 if i % 6 == 5 else 20
        focus = None
        if i % 7 == 6:
            steps = np.linspace(1.0, 2.0, n_frames - 1)
            cumulative = np.concatenate([[0.0], np.cumsum(steps)])
            focus = 47.0 - 42.0 * cumulative / cumulative[-1]
        s = synthetic_stack(
            family=family,
            n_frames=n_frames,
            shape=(192, 192),
            depth_range_um=(5.0, 45.0),
            focus_um=focus,
            bit_depth=16 if i % 4 == 3 else 8,
            rgb=(i % 5 == 4),
            seed=seed0 + i,
        )
        samples.append(EvalSample(f"{i:02d}-{family}", s.stack, s.depth_um.astype(np.float32)))
    return samples


def _find_gt(folder: Path) -> Path | None:
    for pattern in GT_PATTERNS:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() != ".json")
        if hits:
            return hits[0]
    return None


def _read_gt(path: Path, stack: FocalStack, gt_scale: float) -> np.ndarray:
    """Ground truth in the stack's units: float files are positions, integers frame indices."""
    if path.suffix.lower() == ".npy":
        gt = np.load(path)
    elif path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        gt = tifffile.imread(path)
    else:
        import imageio.v3 as iio

        gt = iio.imread(path)
    if gt.ndim == 3:
        gt = gt[..., 0]
    if gt.shape != stack.shape_yx:
        raise StackError(
            f"The ground truth '{path}' is {gt.shape[1]}×{gt.shape[0]} px but the frames are "
            f"{stack.shape_yx[1]}×{stack.shape_yx[0]} px; they must match."
        )
    if gt.dtype.kind in "ui":
        return stack.index_to_position(gt.astype(np.float64) * gt_scale).astype(np.float32)
    return gt.astype(np.float32)


def load_eval_dataset(root: str | Path, gt_scale: float = 1.0) -> list[EvalSample]:
    """Samples of a dataset folder (one sub-folder per sample; see the module docstring)."""
    from napari_gplws.io._read import read_stack

    root = Path(root)
    if not root.is_dir():
        raise StackError(f"The dataset folder '{root}' does not exist or is not a folder.")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        gt_path = _find_gt(folder)
        if gt_path is None:
            continue
        stack_files = [
            p for p in folder.iterdir()
            if p.is_file() and p != gt_path and p.suffix.lower() in (".tif", ".tiff", ".npy", ".npz")
            and not p.name.lower().startswith(("depth", "gt", "label"))
        ]
        if len(stack_files) == 1 and _is_stack_file(stack_files[0]):
            stack = read_stack(stack_files[0])
        else:
            stack = read_stack(folder, exclude=[gt_path.name])
        samples.append(EvalSample(folder.name, stack, _read_gt(gt_path, stack, gt_scale)))
    if not samples:
        raise StackError(
            f"No samples found in '{root}': each sample needs its own sub-folder holding the "
            f"frames and a ground-truth file named {', '.join(GT_PATTERNS)}."
        )
    return samples


def _is_stack_file(path: Path) -> bool:
    if path.suffix.lower() in (".npy", ".npz"):
        return True
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return len(series.shape) >= 3 and series.shape[-1] not in (3, 4) or len(series.shape) == 4


def evaluate(
    samples: Iterable[EvalSample],
    methods: Sequence[str] | None = None,
    device: str = "auto",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> dict[str, dict[str, float]]:
    """Mean metrics per method over ``samples`` (plus mean seconds per stack).

    ``methods`` are names of :func:`napari_gplws.reconstruct` plus ``"gplws-ttaK"``: the
    network with K test-time-augmentation views (``"gplws"`` uses the default, 2); default:
    every method, with ``gplws-tta1`` beside ``gplws``.

    Returns ``{method: {metric: value}}``; see :func:`.metrics.depth_metrics` for keys.
    """
    from napari_gplws.api import reconstruct
    from napari_gplws.dff.methods import CLASSICAL_METHODS, default_method
    from napari_gplws.evaluation.metrics import depth_metrics

    samples = list(samples)
    if methods is None:
        methods = list(CLASSICAL_METHODS)
        if default_method() == "gplws":
            methods[:0] = ["gplws", "gplws-tta1"]
    total = len(samples) * len(methods)
    rows: dict[str, dict[str, float]] = {}
    done = 0
    for method in methods:
        per_sample = []
        for sample in samples:
            check_cancel(cancel)
            t0 = time.perf_counter()
            name, _, views = method.partition("-tta")
            res = reconstruct(sample.stack, method=name, device=device, tta=int(views) if views else None)
            seconds = time.perf_counter() - t0
            m = depth_metrics(res.depth, sample.gt, mask=sample.mask, focus_step=sample.stack.focus_step_um)
            m["seconds"] = seconds
            per_sample.append(m)
            done += 1
            report(progress, done, total)
        rows[method] = {k: float(np.nanmean([m[k] for m in per_sample])) for k in per_sample[0]}
    return rows
