"""Evaluate depth-from-focus methods against ground truth (what ``gplws eval`` prints).

Two sources of samples:

* :func:`synthetic_benchmark` — the project's fixed synthetic test set. Its seeds start at
  :data:`BENCHMARK_SEED0` and must never be used for training; it covers every height-map
  family, 8- and 16-bit, grayscale and colour, decreasing and uneven focus positions, and
  stacks longer than the training stacks.
* :func:`load_eval_dataset` — a folder with one sub-folder per sample: the frames (or one
  stack file) and a ground-truth depth file named ``depth*``, ``gt*`` or ``label*``.

:func:`evaluate` runs methods over samples and averages :func:`napari_gplws.evaluation.metrics.depth_metrics`.
"""

from __future__ import annotations

import fnmatch
import os
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
    from napari_gplws.sim.focus_stacks import synthetic_stack
    from napari_gplws.sim.heights import HEIGHT_FAMILIES

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


def load_eval_dataset(root: str | Path, gt_scale: float = 1.0) -> list[EvalSample]:
    """Samples of a dataset folder (one sub-folder per sample; see the module docstring)."""
    from napari_gplws.io import read_stack
    from napari_gplws.io.micro3d import GT_PATTERNS, find_gt, read_gt

    root = Path(root)
    if not root.is_dir():
        raise StackError(f"The dataset folder '{root}' does not exist or is not a folder.")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            gt_path = find_gt(folder)
        except StackError:
            continue  # a folder without ground truth is not a sample
        stack_files = [
            p for p in folder.iterdir()
            if p.is_file() and p != gt_path and p.suffix.lower() in (".tif", ".tiff", ".npy", ".npz")
            and not any(fnmatch.fnmatch(p.name.lower(), pat) for pat in GT_PATTERNS)
        ]
        if len(stack_files) == 1 and _is_stack_file(stack_files[0]):
            stack = read_stack(stack_files[0])
        else:
            stack = read_stack(folder, exclude=[gt_path.name])
        positions = stack.focus_um if stack.focus_um is not None else np.arange(stack.n_frames, dtype=float)
        gt, _, raw = read_gt(gt_path, positions, gt_scale)
        if raw.shape != stack.shape_yx:
            raise StackError(
                f"The ground truth '{gt_path}' is {raw.shape[1]}×{raw.shape[0]} px but the frames "
                f"are {stack.shape_yx[1]}×{stack.shape_yx[0]} px; they must match."
            )
        samples.append(EvalSample(folder.name, stack, gt))
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
        return (len(series.shape) >= 3 and series.shape[-1] not in (3, 4)) or len(series.shape) == 4


def evaluate(
    samples: Iterable[EvalSample] | None = None,
    methods: Sequence[str] | None = None,
    device: str = "auto",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    *,
    n: int = 30,
    weights: str | os.PathLike = "gplws_default",
) -> dict[str, dict[str, float]]:
    """Mean depth metrics per method over the same stacks (plus mean seconds per stack).

    The one evaluation loop of the product: ``gplws eval``, the model card and the
    benchmark tables all come from here.

    Parameters
    ----------
    samples
        Objects with ``.stack`` (:class:`FocalStack`), ``.gt`` (depth in the stack's units)
        and optional ``.mask``; default: :func:`synthetic_benchmark` ``(n)``, the held-out
        synthetic benchmark (seeds never used in training).
    methods
        Names of :func:`napari_gplws.reconstruct` plus ``"gplws-ttaK"``: the network with K
        test-time-augmentation views (``"gplws"`` uses the default, 1); default: every
        method, with ``gplws-tta2`` beside ``gplws`` when the network's weights are installed.
    device, weights
        Where the network runs and which weights it uses.
    progress, cancel
        ``progress(done, total)`` and ``cancel() -> bool`` callbacks.

    Returns
    -------
    dict
        ``{method: {metric: mean value, ..., "seconds": mean seconds per stack}}`` with the
        metrics of :func:`napari_gplws.evaluation.metrics.depth_metrics`.
    """
    from napari_gplws.api import reconstruct
    from napari_gplws.dff.methods import CLASSICAL_METHODS, default_method
    from napari_gplws.evaluation.metrics import depth_metrics

    samples = list(synthetic_benchmark(n) if samples is None else samples)
    if methods is None:
        methods = list(CLASSICAL_METHODS)
        if weights != "gplws_default" or default_method() == "gplws":
            from napari_gplws.dff.network import DEFAULT_TTA

            methods[:0] = ["gplws", "gplws-tta2" if DEFAULT_TTA == 1 else "gplws-tta1"]
    total = len(samples) * len(methods)
    rows: dict[str, dict[str, float]] = {}
    done = 0
    for method in methods:
        per_sample = []
        for sample in samples:
            check_cancel(cancel)
            t0 = time.perf_counter()
            name, _, views = method.partition("-tta")
            res = reconstruct(
                sample.stack, method=name, device=device, weights=weights,
                tta=int(views) if views else None,
            )
            seconds = time.perf_counter() - t0
            mask = getattr(sample, "mask", None)
            m = depth_metrics(res.depth, sample.gt, mask=mask, focus_step=sample.stack.focus_step_um)
            m["seconds"] = seconds
            per_sample.append(m)
            done += 1
            report(progress, done, total)
        rows[method] = {k: float(np.nanmean([m[k] for m in per_sample])) for k in per_sample[0]}
    return rows
