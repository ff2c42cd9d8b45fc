"""Run GPLWS-Net on focus stacks: devices, tiling, blending, progress and cancel.

:func:`predict_depth` is what ``reconstruct(method="gplws")`` calls. It

* picks a device (``"auto"``: CUDA, then Apple MPS, then CPU; or an explicit one, with a
  clear :class:`~napari_gplws.errors.ModelError` when it is missing) and falls back to the CPU with a
  warning when CUDA runs out of memory;
* loads the fused network once per device (:func:`napari_gplws.models.registry.load_gplws`);
* normalises the whole stack by its own robust intensity range (0.5 / 99.5 percentiles),
  so 8-bit, 16-bit and float data behave the same, and reduces colour to luma;
* cuts large frames into overlapping tiles whose size follows the memory available
  (overridable), runs them under ``torch.inference_mode`` and blends them with
  raised-cosine weights, so there are no seams;
* on a GPU (the fast path): bf16/fp16 autocast (:func:`resolve_precision`), tiles of one
  size batched together, host-to-device copies through pinned memory, the all-in-focus
  image computed on the device, and optionally ``torch.compile``;
* on the CPU (the fast path, :mod:`._tile_net`): the focus prior computed with OpenCV/SciPy
  filters once per tile, the test-time-augmentation views of a tile as one batch, the
  convolutions through oneDNN (bf16 where the CPU has native bfloat16 instructions), tiles
  of balanced sizes bounded so that one view of a tile takes about half a second;
* calls ``progress(done, total)`` after each view of each tile and ``cancel()`` before each
  (raising :class:`~napari_gplws.errors.Cancelled`).

It does not define the network (:mod:`napari_gplws.models.gplws`), train it
(:mod:`napari_gplws.training.gplws`), evaluate it (:mod:`napari_gplws.evaluation.depth_benchmark`)
or export it (:mod:`napari_gplws.models.onnx`). Tiling and blending helpers shared with the
out-of-core path are in :mod:`._tiles`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws._shared.device import memory_budget_bytes, resolve_device
from napari_gplws.dff._tiles import (
    BYTES_PER_VOXEL,
    _cast_like,
    _ramp,
    _robust_range,
    _to_luma,
    auto_tile_size,
    balanced_tile,
    tile_grid,
)
from napari_gplws.errors import ModelError, StackError
from napari_gplws.stack import FocalStack

__all__ = ["GPLWSResult", "predict_depth", "resolve_precision"]
# OpenMP threads that spin while waiting make two threads slower than one on a busy
# machine (measured: 0.83 s against 0.25 s for the network on 20×256×256 at a load of 5 on
# 2 cores); sleeping waits cost little when idle. Effective when PyTorch is not yet loaded;
# an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
DEFAULT_OVERLAP = 96
#: Gaussian smoothing (pixels) of the depth map after blending; see :func:`predict_depth`.
DEFAULT_SMOOTH_PX = 2.0
#: Views of test-time augmentation by default: one. The packaged weights are more accurate
#: with one view than the previous weights were with two (held-out RMSE, docs/gplws.md), and
#: every extra view costs one more pass of the convolutions.
DEFAULT_TTA = 1
#: The test-time-augmentation views: (quarter turns, mirror) per number of views.
TTA_VIEW_PAIRS = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (0, True), (2, False), (2, True)),
    8: ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)),
}
#: All-in-focus modes of :func:`predict_depth`.
AIF_MODES = ("attention", "select", "none")


@dataclass
class GPLWSResult:
    """Result of :func:`predict_depth`.

    Attributes
    ----------
    index
        ``(H, W)`` float32: expected in-focus frame index (0-based, fractional).
    depth
        ``(H, W)`` float32: expected focus position Σ p_k·position_k in :attr:`units`.
    confidence
        ``(H, W)`` float32 in [0, 1]: 1 − normalised entropy of the per-pixel probability.
    aif
        All-in-focus image ``(H, W)`` or ``(H, W, 3)``, same dtype as the frames; ``None``
        with ``aif_mode="none"``.
    units
        ``"µm"`` or ``"frame"``.
    timings
        Seconds per stage (``normalize``, ``network``, ``aif``, ``total``).
    device
        Device that ran the network (after any fall-back).
    params
        Tile size, overlap, number of tiles, AiF mode, weights.
    """

    index: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray
    aif: np.ndarray | None
    units: str
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    params: dict[str, Any] = field(default_factory=dict)


def predict_depth(
    stack: FocalStack,
    *,
    device: str = "auto",
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    aif_mode: str = "attention",
    smooth_px: float = DEFAULT_SMOOTH_PX,
    weights: str | Path = "gplws_default",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    precision: str = "auto",
    tile_batch: int | None = None,
    compile: bool = False,
    tta: int | None = None,
) -> GPLWSResult:
    """Depth, confidence and all-in-focus image of a focus stack with GPLWS-Net.

    Parameters
    ----------
    stack
        The focus stack (any integer or float dtype, gray or RGB, any N ≥ 2).
    device
        ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    tile_size
        Tile side in pixels (multiple of 32 is best); ``None`` chooses tiles from the memory
        available (on the CPU at most about 16 M frame-pixels each, so progress moves about
        every half second) and of balanced sizes; frames no larger than the tile run in one
        piece.
    overlap
        Overlap between tiles in pixels (blended with raised-cosine weights).
    aif_mode
        ``"attention"``: Σ p_k·frame_k (smooth); ``"select"``: each pixel taken from the
        frame nearest its depth (no mixing of frames, exact input values); ``"none"``: no
        all-in-focus image (``aif`` is ``None``; for callers that fuse it another way).
    smooth_px
        Standard deviation (pixels) of a light Gaussian smoothing of the depth and index
        maps after blending (removes pixel-level jitter of the 4×4 sub-pixel head, which
        lowers bumpiness without raising the error); 0 disables it.
    weights
        Packaged weights name or path to a ``.safetensors`` file.
    progress, cancel
        ``progress(done, total)`` after each view of each tile (``total`` = tiles × views);
        ``cancel()`` checked before each of them.
    precision
        ``"auto"`` (bf16 autocast on CUDA devices that support it, else fp16; on the CPU bf16
        convolutions where the CPU has native bfloat16 instructions, else fp32; fp32 on MPS),
        ``"fp32"``, ``"fp16"`` (CUDA only) or ``"bf16"`` (CUDA or CPU). The focus prior, the
        softmax and everything after it always run in fp32.
    tile_batch
        Tiles of the same size run through the network together, this many at a time;
        ``None`` chooses from the memory available (1 on the CPU, where batching does not
        pay, up to 16 on a GPU).
    compile
        Run the network through ``torch.compile`` (cached per weights and device; the
        first call pays the compilation, worth it for many stacks of one size).
    tta
        Test-time augmentation: average the outputs over 1 (off), 2 (plus a mirror image),
        4 (plus the two 180° turns) or 8 (all flips and 90° turns) views of each tile. The
        views share the tile's normalisation and focus prior and, for small tiles, run as
        one batch; each costs one more pass of the convolutions and lowers the held-out error
        a little (see docs/gplws.md). ``None``: :data:`DEFAULT_TTA` (1).

    Returns
    -------
    GPLWSResult
        ``index``, ``depth`` (in ``stack.units``), ``confidence``, ``aif``, ``units``,
        ``timings``, ``device``.

    Raises
    ------
    StackError
        An argument outside its range: ``tile_size`` 32…8192 px (or None), ``overlap``
        0…8192 px, ``smooth_px`` 0…100, ``tile_batch`` 1…256 (or None), ``tta`` 1/2/4/8,
        or focus positions spanning more than 10¹² µm.
    ModelError
        Missing or damaged weights (also when the network gives NaN or infinite values),
        or an unavailable device.
    Cancelled
        ``cancel()`` returned True.

    Examples
    --------
    >>> from napari_gplws.sim.focus_stacks import synthetic_stack
    >>> s = synthetic_stack(family="waves", n_frames=12, shape=(64, 64), seed=1)  # doctest: +SKIP
    >>> r = predict_depth(s.stack, device="cpu")  # doctest: +SKIP
    >>> r.depth.shape, r.units  # doctest: +SKIP
    ((64, 64), 'µm')
    """
    _check_arguments(stack, tile_size, overlap, smooth_px, tile_batch)
    if aif_mode not in AIF_MODES:
        raise StackError(f"aif_mode must be one of {', '.join(AIF_MODES)}; got {aif_mode!r}.")
    tta = DEFAULT_TTA if tta is None else tta
    if tta not in (1, 2, 4, 8):
        raise StackError(f"tta must be one of 1, 2, 4 or 8; got {tta!r}.")
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    run = _RunOptions(amp=amp, tile_batch=tile_batch, compile=bool(compile), tta=tta)
    try:
        return _predict(stack, dev, tile_size, overlap, aif_mode, smooth_px, weights, progress, cancel, run)
    except Exception as exc:
        import torch

        if dev.startswith("cuda") and isinstance(exc, torch.cuda.OutOfMemoryError):
            warnings.warn(
                f"GPLWS-Net ran out of GPU memory on {dev}; falling back to the CPU (slower). "
                "Pass a smaller tile_size to stay on the GPU.",
                RuntimeWarning,
                stacklevel=2,
            )
            torch.cuda.empty_cache()
            cpu_run = _RunOptions(amp=resolve_precision("auto", "cpu"), tile_batch=1, compile=False, tta=tta)
            return _predict(stack, "cpu", tile_size, overlap, aif_mode, smooth_px, weights, progress, cancel, cpu_run)
        raise


#: Tile side limits of :func:`predict_depth` in pixels, and the most tiles per forward pass.
MIN_TILE, MAX_TILE, MAX_TILE_BATCH = 32, 8192, 256


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_arguments(
    stack: Any, tile_size: Any, overlap: Any, smooth_px: Any, tile_batch: Any
) -> None:
    """Refuse arguments outside their range before any work (see :func:`predict_depth`)."""
    if tile_size is not None and not (_whole(tile_size) and MIN_TILE <= tile_size <= MAX_TILE):
        raise StackError(
            f"tile_size must be a whole number of pixels from {MIN_TILE} to {MAX_TILE}, or None "
            f"to choose it from the memory available; got {tile_size!r}."
        )
    if not (_whole(overlap) and 0 <= overlap <= MAX_TILE):
        raise StackError(f"overlap must be a whole number of pixels from 0 to {MAX_TILE}; got {overlap!r}.")
    if not (isinstance(smooth_px, (int, float, np.number)) and np.isfinite(smooth_px) and 0 <= smooth_px <= 100):
        raise StackError(f"smooth_px must be a number of pixels from 0 to 100; got {smooth_px!r}.")
    if tile_batch is not None and not (_whole(tile_batch) and 1 <= tile_batch <= MAX_TILE_BATCH):
        raise StackError(
            f"tile_batch must be a whole number from 1 to {MAX_TILE_BATCH}, or None; got {tile_batch!r}."
        )
    positions = np.asarray(getattr(stack, "positions", []), np.float64)
    span = np.ptp(positions) if positions.size else 0.0
    if not np.isfinite(span) or span > 1e12:
        raise StackError(
            f"The focus positions of {getattr(stack, 'source', None) or 'the stack'} span "
            f"{span:g} µm, beyond what a depth map can hold; check the focus step and positions."
        )


@dataclass(frozen=True)
class _RunOptions:
    """How the network runs: autocast dtype (``None`` = fp32), tiles per batch, compile,
    test-time-augmentation views."""

    amp: Any = None
    tile_batch: int | None = None
    compile: bool = False
    tta: int = 1


def resolve_precision(precision: str, device: str) -> Any:
    """The autocast dtype for ``precision`` on ``device`` (``None`` means plain fp32).

    ``"auto"``: bf16 on CUDA devices that support it, else fp16; on the CPU bf16 where the
    CPU has native bfloat16 instructions (AVX-512 BF16 or AMX; same held-out error as fp32,
    about twice as fast), else fp32; fp32 on MPS.

    Raises
    ------
    ModelError
        An unknown name, or fp16 asked of a device without fast fp16 (CPU, MPS).
    """
    import torch

    p = (precision or "auto").lower()
    cuda = device.startswith("cuda")
    if p == "auto":
        if device == "cpu":
            from napari_gplws.models.gplws import cpu_has_bf16

            return torch.bfloat16 if cpu_has_bf16() else None
        if not cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p == "fp32":
        return None
    if p == "fp16":
        if not cuda:
            raise ModelError(f"precision 'fp16' needs a CUDA device; '{device}' runs fp32 or bf16.")
        return torch.float16
    if p == "bf16":
        if device.startswith("mps"):
            raise ModelError("precision 'bf16' is not supported on MPS; use fp32.")
        return torch.bfloat16
    raise ModelError(f"Unknown precision '{precision}'; choose auto, fp32, fp16 or bf16.")


def _auto_tile_batch(n_frames: int, tile: int, device: str) -> int:
    """Tiles per forward pass: 1 on CPU/MPS; on CUDA as many as half the free memory holds
    (the activation estimate is the CPU one, conservative under autocast), at most 16."""
    if not device.startswith("cuda"):
        return 1
    per_tile = BYTES_PER_VOXEL * max(n_frames, 1) * tile * tile
    return int(max(1, min(16, memory_budget_bytes(device) // max(per_tile, 1))))


def _to_device(arr: np.ndarray, dev: str) -> Any:
    """Host array -> device tensor; through pinned memory (asynchronous copy) on CUDA."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(arr))
    if dev.startswith("cuda"):
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


def _batches(spans: list[tuple[tuple[int, int], tuple[int, int]]], size: int) -> list[list]:
    """Group tile spans of equal shape into batches of at most ``size`` (order kept within
    a shape)."""
    by_shape: dict[tuple[int, int], list] = {}
    for (y0, y1), (x0, x1) in spans:
        by_shape.setdefault((y1 - y0, x1 - x0), []).append(((y0, y1), (x0, x1)))
    out = []
    for group in by_shape.values():
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out


def _tile_layout(h: int, w: int, n: int, tile_size: int | None, overlap: int, dev: str, align: int, views: int):
    """``(tile, overlap, y spans, x spans)``: the given tile size on the usual grid, or (auto)
    the fewest tiles within the memory and time budget, of balanced (multiple of ``align``)
    sizes so that little is computed twice."""
    if tile_size:
        tile = max(16, int(tile_size))
        ov = max(0, min(int(overlap), tile // 2))
        return tile, ov, tile_grid(h, tile, ov, align), tile_grid(w, tile, ov, align)
    tile = auto_tile_size(n, dev, views=views)
    ov = max(0, min(int(overlap), tile // 2))
    ty, tx = (balanced_tile(length, tile, ov, align) for length in (h, w))
    return max(ty, tx), ov, tile_grid(h, ty, ov, align), tile_grid(w, tx, ov, align)


def _predict(
    stack: FocalStack,
    dev: str,
    tile_size: int | None,
    overlap: int,
    aif_mode: str,
    smooth_px: float,
    weights: str | Path,
    progress: ProgressFn,
    cancel: CancelFn,
    run: _RunOptions = _RunOptions(),
) -> GPLWSResult:
    import torch

    from napari_gplws.dff._tile_net import TTA_VIEWS, tile_outputs
    from napari_gplws.models.registry import load_gplws

    t_start = time.perf_counter()
    check_cancel(cancel)
    if dev == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    model = load_gplws(weights, dev, compile=run.compile)
    fast_cpu = dev == "cpu" and not run.compile and hasattr(model, "forward_features")
    views = TTA_VIEWS[run.tta]
    frames = stack.frames
    n, h, w = frames.shape[:3]
    positions = np.asarray(stack.positions, np.float64)
    t0 = time.perf_counter()
    lo, hi = _robust_range(frames)
    scale = max(hi - lo, 1e-6 * (abs(hi) + 1.0))
    t_norm = time.perf_counter() - t0

    align = int(getattr(model, "multiple", 1))
    tile, ov, ys, xs = _tile_layout(h, w, n, tile_size, overlap, dev, align, len(views))
    total = len(ys) * len(xs)
    single = total == 1
    per_batch = int(run.tile_batch) if run.tile_batch else _auto_tile_batch(n, tile, dev)
    batches = _batches([(yy, xx) for yy in ys for xx in xs], max(1, per_batch))

    idx_acc = np.zeros((h, w), np.float32)
    dep_acc = np.zeros((h, w), np.float32)
    conf_acc = np.zeros((h, w), np.float32)
    wsum = None if single else np.zeros((h, w), np.float32)
    attention = aif_mode == "attention"
    aif_shape = (h, w, 3) if stack.is_rgb else (h, w)
    aif_acc = np.zeros(aif_shape, np.float32) if attention else None
    pos0 = float(positions[0])
    # Progress: one step per view of every tile; cancel is checked before each of them.
    steps = total * len(views)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report(progress, min(done, steps), steps)
        if done < steps:
            check_cancel(cancel)

    t_net = t_aif = 0.0
    with torch.inference_mode():
        for batch in batches:
            check_cancel(cancel)
            t1 = time.perf_counter()
            raws = [frames[:, y0:y1, x0:x1] for (y0, y1), (x0, x1) in batch]
            x = np.stack([(_to_luma(r) - lo) / scale for r in raws]).astype(np.float32, copy=False)
            out = tile_outputs(
                model, x, views, dev, run.amp, fast_cpu, positions - pos0,
                raw=np.stack(raws) if attention else None, luma_range=(lo, scale), to_device=_to_device, step=step,
            )
            index_b, dep_b, conf_b = (out[k].cpu().numpy() for k in ("index", "depth", "confidence"))
            aif_b = out["aif"].cpu().numpy() if attention else None
            t2 = time.perf_counter()
            t_net += t2 - t1
            for b, ((y0, y1), (x0, x1)) in enumerate(batch):
                th, tw = y1 - y0, x1 - x0
                index, dep, conf = index_b[b], dep_b[b], conf_b[b]
                if single:
                    idx_acc, dep_acc, conf_acc = index, dep, conf
                else:
                    wt = np.outer(_ramp(th, y0, h, ov), _ramp(tw, x0, w, ov))
                    idx_acc[y0 : y0 + th, x0 : x0 + tw] += wt * index
                    dep_acc[y0 : y0 + th, x0 : x0 + tw] += wt * dep
                    conf_acc[y0 : y0 + th, x0 : x0 + tw] += wt * conf
                    wsum[y0 : y0 + th, x0 : x0 + tw] += wt  # type: ignore[index]
                if attention:
                    a = aif_b[b]  # type: ignore[index]
                    if single:
                        aif_acc = a
                    else:
                        wa = wt[..., None] if a.ndim == 3 else wt
                        aif_acc[y0 : y0 + th, x0 : x0 + tw] += wa * a  # type: ignore[index]
            t_aif += time.perf_counter() - t2
    t3 = time.perf_counter()
    if not single:
        idx_acc = idx_acc / wsum
        dep_acc = dep_acc / wsum
        conf_acc = conf_acc / wsum
        if attention:
            aif_acc = aif_acc / (wsum[..., None] if aif_acc.ndim == 3 else wsum)  # type: ignore[operator,index]
    if smooth_px and smooth_px > 0:
        from napari_gplws.dff._tiles import smooth_map

        idx_acc = smooth_map(idx_acc, smooth_px)
        dep_acc = smooth_map(dep_acc, smooth_px)
    index = np.clip(idx_acc, 0, n - 1).astype(np.float32)
    # depth = Σ p_k·position_k (relative to the first position for float32 precision)
    depth = (dep_acc.astype(np.float64) + pos0).astype(np.float32)
    if not (np.isfinite(depth).all() and np.isfinite(conf_acc).all()):
        raise ModelError(
            f"GPLWS-Net ('{weights}') gave NaN or infinite depth for {stack.source or 'the stack'}; "
            "its weights are damaged or unsuitable. Use the packaged weights (reinstall "
            "napari-gplws) or retrain them with `gplws train gplws`."
        )
    if attention:
        aif = _cast_like(aif_acc, frames.dtype)  # type: ignore[arg-type]
    elif aif_mode == "none":
        aif = None
    else:
        k = np.clip(np.rint(index).astype(np.intp), 0, n - 1)
        yy, xx = np.indices((h, w))
        aif = np.asarray(frames[k, yy, xx])
    t_aif += time.perf_counter() - t3
    timings = {"normalize": t_norm, "network": t_net, "aif": t_aif, "total": time.perf_counter() - t_start}
    return GPLWSResult(
        index=index,
        depth=depth,
        confidence=np.clip(conf_acc, 0, 1).astype(np.float32),
        aif=aif,
        units=stack.units,
        timings=timings,
        device=dev,
        params={"tile_size": tile, "overlap": ov, "tiles": total, "tile_batch": per_batch,
                "precision": str(run.amp).replace("torch.", "") if run.amp is not None else "fp32",
                "compiled": run.compile, "tta": run.tta, "aif_mode": aif_mode, "smooth_px": float(smooth_px),
                "weights": str(weights), "runtime": "onednn" if fast_cpu else "torch"},
    )
