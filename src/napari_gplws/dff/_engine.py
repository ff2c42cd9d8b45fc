"""The streaming machinery of the classical engine: bands, a thread pool, reused buffers.

:class:`_Engine` runs a focus measure frame by frame in horizontal bands and keeps, per
pixel, the running state that :func:`napari_gplws.dff.classical.depth_from_focus` needs
(best value and frame, its neighbours, the curve's sum, the sharpest luminance), so memory
grows with ``H·W``, not ``N·H·W``. Private to :mod:`napari_gplws.dff`; the out-of-core
engine uses it per chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_gplws.dff.measures import (
    luminance,
    measure_halo,
    measure_into,
    n_work_buffers,
)
from napari_gplws.dff.peaks import focus_confidence, peak_offset
from napari_gplws.stack import FocalStack

# Band height is chosen so that one band of one buffer is ~1 MiB of float32: small enough
# to stay in cache between the filter passes, big enough that the halo overhead is small.
_BAND_PIXELS = 1 << 18
_MIN_BAND_ROWS = 32


# --------------------------------------------------------------------------------------
# streaming engine
# --------------------------------------------------------------------------------------

def default_threads() -> int:
    """Number of worker threads used when none is given: the usable CPU cores, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(int(n), 8))


def _bands(height: int, width: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Split rows into bands ``(y0, y1, h0, h1)``.

    Output rows are ``[y0, y1)``; rows ``[h0, h1)`` (with ``halo`` rows of context on each
    side, fewer at the image border) are read.
    """
    rows = max(_MIN_BAND_ROWS, _BAND_PIXELS // max(1, width))
    rows = min(rows, height)
    out = []
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        out.append((y0, y1, max(0, y0 - halo), min(height, y1 + halo)))
    return out


class _Runner:
    """Runs a per-band task over bands, on a thread pool when more than one thread is useful.

    Used as a context manager so that the pool is always shut down. Tasks for one call
    all finish (or the first error is re-raised) before the call returns, so the caller
    can report progress and check for cancellation between calls.
    """

    def __init__(self, threads: int | None, n_bands: int) -> None:
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.pool = (
            ThreadPoolExecutor(max_workers=self.threads)
            if self.threads > 1 and n_bands > 1
            else None
        )

    def __call__(self, task: Callable[[tuple[int, int, int, int]], None], bands: list) -> None:
        if self.pool is None:
            for b in bands:
                task(b)
            return
        for f in [self.pool.submit(task, b) for b in bands]:
            f.result()

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class _Workspace:
    """Per-thread scratch buffers for one band (allocated once per thread)."""

    def __init__(self, rows: int, width: int, n_work: int) -> None:
        self.src = np.empty((rows, width), np.float32)
        self.out = np.empty((rows, width), np.float32)
        self.work = [np.empty((rows, width), np.float32) for _ in range(n_work)]
        self.mask = np.empty((rows, width), bool)


class _Engine:
    """State of one :func:`depth_from_focus` run; methods work on one band at a time."""

    def __init__(self, stack: FocalStack, measure: str, window: int, keep_guide: bool) -> None:
        self.frames = stack.frames
        self.n = stack.n_frames
        self.h, self.w = stack.shape_yx
        self.measure = measure
        self.window = window
        self.halo = measure_halo(measure, window)
        self.bands = _bands(self.h, self.w, self.halo)
        self.max_rows = max(h1 - h0 for _, _, h0, h1 in self.bands)
        self.n_work = n_work_buffers(measure)
        self._local = threading.local()
        shape = (self.h, self.w)
        idx_dtype = np.int16 if self.n < np.iinfo(np.int16).max else np.int32
        self.best = np.empty(shape, np.float32)
        self.best_k = np.empty(shape, idx_dtype)
        self.left = np.empty(shape, np.float32)
        self.right = np.empty(shape, np.float32)
        self.prev = np.empty(shape, np.float32)
        self.total = np.empty(shape, np.float32)
        # Luminance of the sharpest frame so far: the refinement's guide.
        self.guide = np.empty(shape, np.float32) if keep_guide else None

    def _ws(self) -> _Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = _Workspace(self.max_rows, self.w, self.n_work)
            self._local.ws = ws
        return ws

    # pass 1 ------------------------------------------------------------------------
    def update(self, k: int, band: tuple[int, int, int, int]) -> None:
        y0, y1, h0, h1 = band
        ws = self._ws()
        n_rows = h1 - h0
        src = luminance(self.frames[k, h0:h1], out=ws.src[:n_rows])
        out = measure_into(
            src, self.measure, self.window, ws.out[:n_rows], [b[:n_rows] for b in ws.work]
        )
        fm = out[y0 - h0 : y1 - h0]
        lum = src[y0 - h0 : y1 - h0]
        best, best_k = self.best[y0:y1], self.best_k[y0:y1]
        left, right, prev = self.left[y0:y1], self.right[y0:y1], self.prev[y0:y1]
        total = self.total[y0:y1]
        guide = None if self.guide is None else self.guide[y0:y1]
        if k == 0:
            best[...] = fm
            best_k[...] = 0
            left[...] = 0
            right[...] = 0
            total[...] = fm
            if guide is not None:
                guide[...] = lum
            prev[...] = fm
            return
        mask = ws.mask[: y1 - y0]
        # The right neighbour of a maximum found at k-1 is this frame's value.
        np.equal(best_k, k - 1, out=mask)
        np.copyto(right, fm, where=mask)
        # New maxima: remember the left neighbour (the previous frame) and the frame.
        np.greater(fm, best, out=mask)
        np.copyto(left, prev, where=mask)
        np.copyto(best_k, k, where=mask)
        if guide is not None:
            np.copyto(guide, lum, where=mask)
        np.maximum(best, fm, out=best)
        total += fm
        prev[...] = fm

    # fit + confidence ----------------------------------------------------------------
    def finish(
        self,
        interpolation: str,
        eps: float,
        index: np.ndarray,
        conf: np.ndarray,
        band: tuple[int, int, int, int],
    ) -> None:
        y0, y1 = band[0], band[1]
        best_k = self.best_k[y0:y1]
        off = peak_offset(self.left[y0:y1], self.best[y0:y1], self.right[y0:y1], interpolation)
        off[(best_k == 0) | (best_k == self.n - 1)] = 0.0
        np.add(best_k, off, out=index[y0:y1], casting="unsafe")
        mean = self.total[y0:y1] * np.float32(1.0 / self.n)
        conf[y0:y1] = focus_confidence(self.best[y0:y1], mean, eps)

    # pass 2 ------------------------------------------------------------------------
    def select(
        self, k: int, sel: np.ndarray, aif: np.ndarray, band: tuple[int, int, int, int]
    ) -> None:
        """Copy frame ``k``'s pixels where ``sel == k`` into ``aif``."""
        y0, y1 = band[0], band[1]
        mask = self._ws().mask[: y1 - y0]
        np.equal(sel[y0:y1], k, out=mask)
        if aif.ndim == 3:
            np.copyto(aif[y0:y1], self.frames[k, y0:y1], where=mask[..., None])
        else:
            np.copyto(aif[y0:y1], self.frames[k, y0:y1], where=mask)

    def blend(
        self,
        k: int,
        lo: np.ndarray,
        frac: np.ndarray,
        acc: np.ndarray,
        band: tuple[int, int, int, int],
    ) -> None:
        """Add frame ``k`` weighted ``1−frac`` where ``lo == k``, ``frac`` where ``lo == k−1``."""
        y0, y1 = band[0], band[1]
        mask = self._ws().mask[: y1 - y0]
        lo_b, fr_b = lo[y0:y1], frac[y0:y1]
        frame = self.frames[k, y0:y1].astype(np.float32)
        a = acc[y0:y1]
        np.equal(lo_b, k, out=mask)
        if mask.any():
            wgt = np.where(mask, np.float32(1.0) - fr_b, np.float32(0.0))
            a += frame * (wgt[..., None] if a.ndim == 3 else wgt)
        np.equal(lo_b, k - 1, out=mask)
        if mask.any():
            wgt = np.where(mask, fr_b, np.float32(0.0))
            a += frame * (wgt[..., None] if a.ndim == 3 else wgt)


def _to_dtype(acc: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a float32 image to ``dtype``, rounding and clipping for integer types."""
    if dtype.kind == "b":
        return acc >= 0.5
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        np.rint(acc, out=acc)
        np.clip(acc, info.min, info.max, out=acc)
    return acc.astype(dtype)
