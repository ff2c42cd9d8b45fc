"""Tiles and intensities for the network: tile layout, raised-cosine blending weights,
robust input range, luma and casting back to the input dtype.

Shared by the in-memory (:mod:`.network`) and out-of-core (:mod:`.outofcore_network`)
paths so that both cut, weight and blend tiles identically.
"""

from __future__ import annotations

import math

import numpy as np

from napari_gplws._shared.device import memory_budget_bytes

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # same weights as the network's
#: Approximate peak bytes per (frame × pixel) of one tile on the CPU (measured, with margin).
BYTES_PER_VOXEL = 96


def auto_tile_size(n_frames: int, device: str = "cpu", budget_bytes: int | None = None) -> int:
    """Largest square tile (multiple of 32, 192–2048 px) whose activations fit the budget."""
    budget = memory_budget_bytes(device) if budget_bytes is None else budget_bytes
    side = math.sqrt(budget / (BYTES_PER_VOXEL * max(n_frames, 1)))
    return int(min(2048, max(192, (int(side) // 32) * 32)))


def tile_grid(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` spans of tiles covering ``[0, length)``.

    Starts are multiples of ``align`` (the network's padding multiple, so every tile sees
    the same space-to-depth grid as the whole frame and tiling does not shift the output);
    neighbours overlap by at least ``overlap`` pixels; the last tile reaches the end (it
    may be up to ``align − 1`` pixels longer than ``tile``).
    """
    if tile >= length:
        return [(0, length)]
    tile = max(align, (tile // align) * align)
    step = max(align, ((tile - overlap) // align) * align)
    last = max(0, ((length - tile) // align) * align)
    starts = list(range(0, last, step)) + [last]
    return [(a, a + tile) for a in starts[:-1]] + [(last, length)]


def _ramp(length: int, start: int, total: int, overlap: int) -> np.ndarray:
    """1-D blending weight of a tile: ~0 over the outer quarter of the overlap (where the
    tile lacks context), a raised cosine over the middle half, 1 inside; flat at the image
    borders."""
    w = np.ones(length, np.float32)
    if overlap <= 0:
        return w
    r = min(overlap, length // 2)
    m = r // 4
    d = np.arange(r, dtype=np.float32) + 0.5
    t = np.clip((d - m) / max(r - 2 * m, 1), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * t)
    if start > 0:
        w[:r] = ramp
    if start + length < total:
        w[-r:] = np.minimum(w[-r:], ramp[::-1])
    return np.maximum(w, 1e-4)


# ---------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------


def _robust_range(frames: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> tuple[float, float]:
    """Percentiles of a regular subsample (≈ 256 k values) of the whole stack."""
    n, h, w = frames.shape[:3]
    s = max(1, int(math.sqrt(n * h * w / 262_144)))
    sample = np.asarray(frames[:, ::s, ::s], dtype=np.float32)
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    return float(lo), float(hi)


def _to_luma(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim == 4:
        f = f @ _LUMA
    return f


def _cast_like(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(img), info.min, info.max).astype(dtype)
    return img.astype(dtype)
