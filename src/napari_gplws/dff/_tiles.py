"""Tiles and intensities for the network: tile layout, raised-cosine blending weights,
robust input range, luma, the network's input on the CPU (padding, focus prior,
space-to-depth) and casting back to the input dtype.

Shared by the in-memory (:mod:`.network`) and out-of-core (:mod:`.outofcore_network`)
paths so that both cut, weight and blend tiles identically.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_gplws._shared.device import memory_budget_bytes

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # same weights as the network's
#: Approximate peak bytes per (frame × pixel) of one tile on the CPU (measured, with margin;
#: the CPU fast path needs about 52, and larger tiles were not faster there).
BYTES_PER_VOXEL = 96
#: Most voxels (frames × pixels) of one tile on the CPU: one view of such a tile takes
#: about half a second on two cores, so progress moves (and Cancel is heard) that often.
MAX_CPU_TILE_VOXELS = 18_000_000


def auto_tile_size(
    n_frames: int, device: str = "cpu", budget_bytes: int | None = None, views: int = 1
) -> int:
    """Largest square tile (multiple of 32, 192–2048 px) whose activations fit the budget
    (and, on the CPU, at most :data:`MAX_CPU_TILE_VOXELS`; ``views`` of test-time
    augmentation are not batched at that size, so they do not change it)."""
    budget = memory_budget_bytes(device) if budget_bytes is None else budget_bytes
    side = math.sqrt(budget / (BYTES_PER_VOXEL * max(n_frames, 1)))
    if device == "cpu":
        side = min(side, math.sqrt(MAX_CPU_TILE_VOXELS / max(n_frames, 1)))
    return int(min(2048, max(192, (int(side) // 32) * 32)))


def balanced_tile(length: int, tile: int, overlap: int, align: int = 32) -> int:
    """The smallest tile side (multiple of ``align``, at most ``tile`` where possible) that
    covers ``length`` with as few tiles as ``tile`` needs, so the tiles share the length
    evenly instead of the last one overlapping its neighbour by most of its size."""
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / max(tile - overlap, 1))
    for _ in range(8):
        side = -(-math.ceil((length + (count - 1) * overlap) / count) // align) * align
        if len(tile_grid(length, side, overlap, align)) <= count:
            return side
        count += 1
    return tile


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


# ---------------------------------------------------------------------------------------
# The network's input on the CPU
# ---------------------------------------------------------------------------------------


def pad_tile(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pad ``(N, H, W)`` at the end of H and W to a multiple of ``multiple``: by reflection
    where the tile is large enough, else by replication (as the network pads)."""
    _, h, w = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if (ph < h and pw < w) else "edge"
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)


def _avg_divisor(length: int) -> np.ndarray:
    """How many of the 5 taps of a centred window fall inside ``[0, length)``."""
    i = np.arange(length)
    return (np.minimum(i, 2) + np.minimum(length - 1 - i, 2) + 1).astype(np.float32)


def _log_energy_cv2(f: np.ndarray, out: np.ndarray, inv_count: np.ndarray) -> None:
    import cv2

    b = np.array([0.25, 0.5, 0.25], np.float32)
    g = cv2.sepFilter2D(f, cv2.CV_32F, b, b, borderType=cv2.BORDER_REPLICATE)
    g = cv2.sepFilter2D(g, cv2.CV_32F, b, b, borderType=cv2.BORDER_REPLICATE)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REPLICATE)
    np.multiply(lap, lap, out=lap)
    e = cv2.boxFilter(lap, cv2.CV_32F, (5, 5), normalize=False, borderType=cv2.BORDER_CONSTANT)
    np.multiply(e, inv_count, out=e)
    e += np.float32(1e-6)
    np.log(e, out=out)


def _log_energy_scipy(f: np.ndarray, out: np.ndarray, inv_count: np.ndarray) -> None:
    from scipy import ndimage as ndi

    b = np.array([0.25, 0.5, 0.25], np.float32)
    tmp = np.empty_like(f)
    g = f
    for _ in range(2):
        ndi.correlate1d(g, b, axis=1, output=tmp, mode="nearest")
        g = ndi.correlate1d(tmp, b, axis=0, mode="nearest")
    ndi.laplace(g, output=tmp, mode="nearest")
    np.multiply(tmp, tmp, out=tmp)
    ndi.uniform_filter1d(tmp, 5, axis=1, output=g, mode="constant")
    ndi.uniform_filter1d(g, 5, axis=0, output=tmp, mode="constant")
    np.multiply(tmp, inv_count * np.float32(25.0), out=tmp)
    tmp += np.float32(1e-6)
    np.log(tmp, out=out)


def _cv2_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def smooth_map(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing of a float32 map with replicated borders: OpenCV's filter when
    installed (several times faster on large maps), else SciPy's; the same numbers
    (both sample the Gaussian to 4 σ and normalise it)."""
    a = np.ascontiguousarray(a, np.float32)
    if _cv2_available():
        import cv2

        k = 2 * int(4.0 * sigma_px + 0.5) + 1
        return cv2.GaussianBlur(a, (k, k), sigma_px, borderType=cv2.BORDER_REPLICATE)
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(a, sigma_px, mode="nearest")


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cores = os.cpu_count() or 1
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(cores, 8)), thread_name_prefix="gplws-prior")
    return _POOL


def focus_prior(x: np.ndarray, backend: str = "auto") -> np.ndarray:
    """The network's fixed focus prior of a padded, normalised tile ``(N, H, W)`` float32.

    The same numbers (to float rounding) as :meth:`napari_gplws.models.gplws.GPLWSNet.focus_energy`:
    two 3×3 binomial smoothings and a 3×3 Laplacian with replicated borders, squared,
    averaged over 5×5 pixels (only those inside the frame), log, minus its mean over the
    frames. Computed frame by frame while the frame is in the cache, with OpenCV's
    vectorised filters when OpenCV is installed (``backend="auto"`` or ``"cv2"``) and
    SciPy's otherwise (``"scipy"``), frames shared between the CPU cores. This costs about
    what the classical focus measures cost, a fraction of the network.
    """
    n, h, w = x.shape
    if backend == "auto":
        backend = "cv2" if _cv2_available() else "scipy"
    kernel = _log_energy_cv2 if backend == "cv2" else _log_energy_scipy
    inv_count = np.float32(1.0) / np.outer(_avg_divisor(h), _avg_divisor(w))
    out = np.empty((n, h, w), np.float32)
    src = np.ascontiguousarray(x, np.float32)

    def run(k: int) -> None:
        kernel(src[k], out[k], inv_count)

    if n * h * w < 1 << 18:
        for k in range(n):
            run(k)
    else:
        list(_pool().map(run, range(n)))
    out -= out.mean(axis=0, keepdims=True)
    return out


def space_to_depth(planes: list[np.ndarray], s: int) -> np.ndarray:
    """``[(N, H, W), ...]`` -> ``(len·s², N, H/s, W/s)`` float32 in the network's channel
    order (plane, row offset, column offset), like ``models.gplws._space_to_depth``."""
    n, h, w = planes[0].shape
    out = np.empty((len(planes), s, s, n, h // s, w // s), np.float32)
    for i, p in enumerate(planes):
        out[i] = p.reshape(n, h // s, s, w // s, s).transpose(2, 4, 0, 1, 3)
    return out.reshape(len(planes) * s * s, n, h // s, w // s)
