"""Classical (model-free) depth from focus: height map, confidence and all-in-focus image.

:func:`depth_from_focus` turns a :class:`~.stack.FocalStack` into a :class:`FocusResult`
in one streaming pass over the frames plus one cheap selection pass, without a network
and without ever holding an ``(N, H, W)`` float array: memory grows with ``H·W``, not
``N·H·W``. The steps are

1. **Focus curve maximum** (pass 1). Each frame's focus measure (:mod:`.focus_measures`)
   is computed in horizontal bands (with enough overlap that results equal a whole-frame
   computation), on a small thread pool: scipy's filters and numpy's ufuncs release the
   GIL. Per pixel a running state is kept: best focus value, its frame, the focus values
   of the frames just before and just after it, and the sum of the curve (for the
   confidence), plus the luminance of the sharpest frame (the refinement's guide).
2. **Sub-frame peak.** A 3-point fit through the best frame and its two neighbours:
   ``"gaussian"`` fits a parabola to the logarithms (exact for a Gaussian-shaped focus
   curve; falls back to ``"parabolic"`` where a value is ≤ 0), ``"parabolic"`` to the
   values, ``"none"`` keeps the integer frame. The offset is clamped to ``[-0.5, 0.5]``
   frames; peaks on the first or last frame get no offset. The fit is made in frame
   index, and the index is then mapped to focus position piecewise linearly
   (:meth:`.FocalStack.index_to_position`), so decreasing or uneven focus steps are
   handled exactly at frames and linearly between them.
3. **Confidence** (:func:`focus_confidence`): ``c = (max − mean) / max`` of the pixel's
   focus curve, in ``[0, 1]``.
4. **Refinement** (optional, :func:`refine_index`): a confidence-weighted, outlier-robust
   (one Cauchy reweighting step) guided filter of the frame index, guided by the
   all-in-focus luminance, computed in bands on the same thread pool.
5. **All-in-focus image** (pass 2): each pixel is taken from the frame at the rounded
   final index (or blended linearly between the two frames around the fractional index),
   in the input dtype, colour kept.

This module does not read files, run networks or know about napari. The focus measures
themselves live in :mod:`.focus_measures` and are re-exported here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.dff.measures import (
    DEFAULT_MEASURE,
    DEFAULT_WINDOW,
    FOCUS_MEASURES,
    focus_measure,
    luminance,
    measure_halo,
    measure_into,
    n_work_buffers,
    validate_measure,
    validate_window,
)
from napari_gplws.errors import StackError
from napari_gplws.stack import FocalStack

__all__ = [
    "FOCUS_MEASURES",
    "INTERPOLATIONS",
    "FocusResult",
    "default_threads",
    "depth_from_focus",
    "focus_confidence",
    "focus_measure",
    "peak_offset",
    "refine_index",
]

#: Sub-frame peak interpolation methods accepted by :func:`depth_from_focus`.
INTERPOLATIONS = ("gaussian", "parabolic", "none")

DEFAULT_REFINE_RADIUS = 4
DEFAULT_REFINE_EPS = 1e-2
DEFAULT_REFINE_TAU = 1.0
DEFAULT_REFINE_FLOOR = 0.02

# Band height is chosen so that one band of one buffer is ~1 MiB of float32: small enough
# to stay in cache between the filter passes, big enough that the halo overhead is small.
_BAND_PIXELS = 1 << 18
_MIN_BAND_ROWS = 32


@dataclass
class FocusResult:
    """Result of :func:`depth_from_focus`.

    Attributes
    ----------
    index
        ``(H, W)`` float32, 0-based fractional frame index of the sharpest focus.
    depth
        ``(H, W)`` float32, ``stack.index_to_position(index)``: in µm on the focus-drive
        axis when the stack's focus positions are known, else equal to ``index``.
    confidence
        ``(H, W)`` float32 in ``[0, 1]`` (see :func:`focus_confidence`).
    aif
        All-in-focus image, ``(H, W)`` or ``(H, W, 3)``, same dtype as the frames.
    units
        Unit of ``depth``: ``"µm"`` or ``"frame"`` (``stack.units``).
    timings
        Seconds per stage: ``focus`` (pass 1), ``fit`` (sub-frame peak and confidence),
        ``refine``, ``aif`` (pass 2), ``depth`` (index to position) and ``total``.
    params
        The parameters used (measure, window, interpolation, refine, …, threads).
    """

    index: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray
    aif: np.ndarray
    units: str
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def default_threads() -> int:
    """Number of worker threads used when none is given: the usable CPU cores, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(int(n), 8))


# --------------------------------------------------------------------------------------
# per-pixel maths on small arrays (used per band)
# --------------------------------------------------------------------------------------
def peak_offset(
    left: np.ndarray, centre: np.ndarray, right: np.ndarray, method: str = "gaussian"
) -> np.ndarray:
    """Sub-frame offset of a peak from three samples at frames ``k−1, k, k+1``.

    Parameters
    ----------
    left, centre, right
        Focus values, arrays of one shape (float32), with ``centre`` the maximum.
    method
        ``"gaussian"``: vertex of the parabola through ``(−1, ln l), (0, ln c), (1, ln r)``,
        used where all three values are > 0, else the parabolic fit; ``"parabolic"``:
        vertex of the parabola through the values; ``"none"``: zero.

    Returns
    -------
    numpy.ndarray
        float32 offset in frames, clamped to ``[-0.5, 0.5]``; 0 where the three points
        do not bend downwards (no peak).

    Raises
    ------
    StackError
        For an unknown ``method``.

    Examples
    --------
    >>> x = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) - 0.3) ** 2)
    >>> round(float(peak_offset(x[:1], x[1:2], x[2:], "gaussian")[0]), 6)
    0.3
    """
    if method not in INTERPOLATIONS:
        raise StackError(
            f"Unknown interpolation {method!r}; choose one of: {', '.join(INTERPOLATIONS)}."
        )
    left = np.asarray(left, np.float32)
    centre = np.asarray(centre, np.float32)
    right = np.asarray(right, np.float32)
    if method == "none":
        return np.zeros(np.broadcast(left, centre, right).shape, np.float32)
    num = left - right
    den = left - 2.0 * centre + right
    if method == "gaussian":
        tiny = np.float32(np.finfo(np.float32).tiny)
        positive = (left > 0) & (centre > 0) & (right > 0)
        ll = np.log(np.maximum(left, tiny))
        lc = np.log(np.maximum(centre, tiny))
        lr = np.log(np.maximum(right, tiny))
        np.copyto(num, ll - lr, where=positive)
        np.copyto(den, ll - 2.0 * lc + lr, where=positive)
    bends = den < 0
    off = np.zeros_like(num)
    np.divide(num, 2.0 * den, out=off, where=bends)
    np.clip(off, -0.5, 0.5, out=off)
    return off


def focus_confidence(peak: np.ndarray, mean: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Confidence of a focus peak from the pixel's focus curve.

    ``c = (max − mean) / (max + eps)`` where ``max`` and ``mean`` are the maximum and the
    mean over frames of the pixel's (non-negative) focus curve. It is the product of two
    ratios that each lie in ``[0, 1]``: the curve's dynamic range ``(max − min)/max`` (how
    much sharper the best frame is than the worst: near 0 where no frame shows texture,
    since noise gives every frame about the same focus value) and the peak's prominence
    ``(max − mean)/(max − min)`` (near 1 for one sharp peak, ~0.5 for a flat or noisy
    curve). Flat, textureless pixels therefore score near 0 and a well-defined peak over
    a deep stack near 1.

    Parameters
    ----------
    peak, mean
        ``(H, W)`` float32 maximum and mean of the focus curve (values ≥ 0).
    eps
        Small positive number keeping an all-zero curve at confidence 0.

    Returns
    -------
    numpy.ndarray
        float32 in ``[0, 1]``, same shape.
    """
    peak = np.asarray(peak, np.float32)
    c = np.subtract(peak, mean, dtype=np.float32)
    c /= peak + np.float32(max(eps, np.finfo(np.float32).tiny))
    np.clip(c, 0.0, 1.0, out=c)
    return c


# --------------------------------------------------------------------------------------
# refinement
# --------------------------------------------------------------------------------------
def _weighted_guided_filter(
    d: np.ndarray, w: np.ndarray, guide: np.ndarray, radius: int, eps: float
) -> np.ndarray:
    """One confidence-weighted guided filter of ``d`` (see :func:`refine_index`); float32."""
    size = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return ndi.uniform_filter(x, size, mode="reflect")

    wsum = box(w)
    wI = w * guide
    mI = box(wI)
    mI /= wsum
    wd = w * d
    md = box(wd)
    md /= wsum
    np.multiply(wI, guide, out=wI)  # w·I²
    vI = box(wI)
    vI /= wsum
    vI -= mI * mI
    np.multiply(wd, guide, out=wd)  # w·I·d
    cov = box(wd)
    cov /= wsum
    cov -= mI * md
    np.maximum(vI, 0.0, out=vI)
    vI += np.float32(eps)
    a = np.divide(cov, vI, out=cov)
    md -= a * mI  # b = μ_d − a·μ_I
    out = box(a)
    out *= guide
    out += box(md)
    return out


def _refine_band(
    d: np.ndarray,
    c: np.ndarray,
    g: np.ndarray,
    g_lo: float,
    g_scale: float,
    radius: int,
    eps: float,
    tau: float,
    iterations: int,
    floor: float,
    out: np.ndarray,
    band: tuple[int, int, int, int],
) -> None:
    """Refine rows ``[y0, y1)`` of ``d`` into ``out`` reading rows ``[h0, h1)``."""
    y0, y1, h0, h1 = band
    guide = np.subtract(g[h0:h1], np.float32(g_lo), dtype=np.float32)
    guide *= np.float32(g_scale)
    db = d[h0:h1]
    w0 = np.add(c[h0:h1], np.float32(floor), dtype=np.float32)
    size = 2 * radius + 1
    # First estimate: normalised convolution (cheap: two box filters).
    q = ndi.uniform_filter(w0 * db, size, mode="reflect")
    q /= ndi.uniform_filter(w0, size, mode="reflect")
    for _ in range(iterations):
        # Cauchy reweighting: a pixel that disagrees with the current estimate by more
        # than tau frames loses weight like 1/(1 + (r/tau)²), so outliers stop pulling.
        w = np.subtract(db, q, dtype=np.float32)
        w *= np.float32(1.0 / tau)
        np.square(w, out=w)
        w += np.float32(1.0)
        np.divide(w0, w, out=w)
        q = _weighted_guided_filter(db, w, guide, radius, eps)
    out[y0:y1] = q[y0 - h0 : y1 - h0]


def refine_index(
    index: np.ndarray,
    confidence: np.ndarray,
    guide: np.ndarray,
    radius: int = DEFAULT_REFINE_RADIUS,
    eps: float = DEFAULT_REFINE_EPS,
    tau: float = DEFAULT_REFINE_TAU,
    iterations: int = 1,
    floor: float = DEFAULT_REFINE_FLOOR,
    threads: int | None = None,
) -> np.ndarray:
    """Edge-aware, confidence-weighted, outlier-robust smoothing of a frame-index map.

    With ``c`` the confidence and ``w₀ = c + floor`` the base weights:

    1. **First estimate**, the normalised convolution ``d₀ = B(w₀·d) / B(w₀)``, where
       ``B`` is the mean over a ``(2r+1)²`` box.
    2. **Robust weights** ``w = w₀ / (1 + ((d − d₀)/tau)²)`` (Cauchy weights, one step of
       iteratively reweighted least squares): a pixel whose peak is many frames away
       from its neighbourhood's (a noise-made outlier) stops pulling its neighbours.
    3. **Confidence-weighted guided filter** (He et al. 2013, with per-pixel weights) of
       ``d`` with weights ``w`` and guide ``I``, the all-in-focus luminance normalised
       to its 1st–99th percentile range. In every box ``d`` is fitted by a linear function
       of ``I`` by weighted least squares::

           μ_I = B(w·I) / B(w),   μ_d = B(w·d) / B(w)
           a   = (B(w·I·d) / B(w) − μ_I μ_d) / (B(w·I²) / B(w) − μ_I² + eps)
           b   = μ_d − a·μ_I
           d'  = B(a)·I + B(b)

       Where the guide is flat within a box (variance ≪ ``eps``), ``a → 0`` and ``d'`` is
       the weighted mean ``B(w·d)/B(w)``: unreliable pixels are replaced by confident
       neighbours and noise is averaged. Across a strong guide edge (an object boundary
       with a contrast well above ``sqrt(eps)``, 0.1 of the range by default), ``d``
       follows the guide and the step is kept.

    Steps 2–3 are repeated ``iterations`` times, each with ``d₀`` the previous result.
    A depth step inside a continuously textured region (no guide edge) is smoothed over
    about ``radius`` pixels on each side.

    Parameters
    ----------
    index
        ``(H, W)`` float32 depth in frames. The filter is linear in ``d``, so other units
        work too if ``tau`` is given in them.
    confidence
        ``(H, W)`` weights in ``[0, 1]``.
    guide
        ``(H, W)`` guide image (e.g. all-in-focus luminance), any scale.
    radius
        Box radius in pixels (≥ 1).
    eps
        Regularisation in normalised-guide variance units.
    tau
        Residual scale of the robust reweighting, in the units of ``index`` (frames).
    iterations
        Number of reweighting + guided-filter passes (≥ 1).
    floor
        Weight added to every pixel's confidence, so that a box with no confident pixel
        becomes a plain mean instead of a division by zero.
    threads
        Worker threads (default: :func:`default_threads`).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32 refined map, clipped to the input's range.

    Raises
    ------
    StackError
        For a radius < 1, ``iterations`` < 1, ``tau`` ≤ 0 or arrays of different shapes.
    """
    r, iters = int(radius), int(iterations)
    if r < 1:
        raise StackError(f"The refinement radius must be ≥ 1 pixel; got {radius!r}.")
    if iters < 1 or not tau > 0:
        raise StackError(
            f"Refinement needs iterations ≥ 1 and tau > 0; got {iterations!r} and {tau!r}."
        )
    d = np.ascontiguousarray(index, np.float32)
    c = np.asarray(confidence, np.float32)
    g = np.asarray(guide)
    if not (d.ndim == 2 and d.shape == c.shape == g.shape):
        raise StackError(
            "index, confidence and guide must be 2-D of one shape; "
            f"got {d.shape}, {c.shape}, {g.shape}."
        )
    bands = _refine_bands(d.shape, r, iters)
    with _Runner(threads, len(bands)) as run:
        return _refine(d, c, g, r, float(eps), float(tau), iters, float(floor), run)


def _refine_bands(
    shape: tuple[int, ...], radius: int, iterations: int
) -> list[tuple[int, int, int, int]]:
    # The first estimate reads radius pixels around a pixel, each guided-filter pass
    # 2·radius more (a box of boxes).
    return _bands(shape[0], shape[1], radius * (2 * iterations + 1) + 1)


def _refine(
    d: np.ndarray,
    c: np.ndarray,
    g: np.ndarray,
    radius: int,
    eps: float,
    tau: float,
    iterations: int,
    floor: float,
    run: _Runner,
) -> np.ndarray:
    """Body of :func:`refine_index` (arguments validated), band by band on ``run``."""
    sub = g[:: max(1, g.shape[0] // 256), :: max(1, g.shape[1] // 256)]
    g_lo, g_hi = (float(v) for v in np.percentile(sub, (1, 99)))
    g_scale = 1.0 / (g_hi - g_lo) if g_hi > g_lo else 1.0
    out = np.empty_like(d)
    task = partial(_refine_band, d, c, g, g_lo, g_scale, radius, eps, tau, iterations, floor, out)
    run(task, _refine_bands(d.shape, radius, iterations))
    np.clip(out, float(d.min()), float(d.max()), out=out)
    return out


# --------------------------------------------------------------------------------------
# streaming engine
# --------------------------------------------------------------------------------------
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


def depth_from_focus(
    stack: FocalStack,
    *,
    measure: str = DEFAULT_MEASURE,
    window: int = DEFAULT_WINDOW,
    interpolation: str = "gaussian",
    refine: bool = True,
    refine_radius: int = DEFAULT_REFINE_RADIUS,
    refine_eps: float = DEFAULT_REFINE_EPS,
    aif_blend: bool = False,
    threads: int | None = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> FocusResult:
    """Height map, confidence and all-in-focus image of a focus stack, without a network.

    Parameters
    ----------
    stack
        The focus stack: ``(N, H, W)`` or ``(N, H, W, 3)`` frames of any integer or float
        dtype, with or without focus positions.
    measure
        Focus measure name (see :data:`FOCUS_MEASURES`); default ``"sml"``.
    window
        Odd window size in pixels the focus measure is averaged over (default 9).
    interpolation
        Sub-frame peak fit: ``"gaussian"`` (default), ``"parabolic"`` or ``"none"``.
    refine
        Smooth the frame index with :func:`refine_index` (robust, confidence-weighted
        guided filter, guided by the all-in-focus luminance) before mapping to depth and
        composing the all-in-focus image.
    refine_radius
        Box radius in pixels of the refinement (default 4).
    refine_eps
        Guided-filter regularisation (normalised guide variance; default 0.01).
    aif_blend
        Blend the two frames bracketing the fractional index linearly instead of taking
        the pixel from the nearest frame.
    threads
        Worker threads for the per-band work (default: usable cores, at most 8).
    progress
        ``progress(done, total)``, called after every frame of both passes
        (``total = 2 N``).
    cancel
        ``cancel() -> bool``, checked before every frame; when it returns True,
        :class:`~.errors.Cancelled` is raised and nothing is returned.

    Returns
    -------
    FocusResult
        ``index``, ``depth`` (in ``stack.units``), ``confidence``, ``aif`` (input dtype),
        ``units``, ``timings`` and ``params``.

    Raises
    ------
    StackError
        Unknown measure or interpolation, bad window or radius (message lists the choices).
    Cancelled
        When ``cancel()`` returned True.

    Notes
    -----
    Memory grows with ``H·W``, not ``N·H·W``: 26 bytes per pixel of running state (best
    value, frame, neighbours, curve sum, guide), the outputs (12 bytes per pixel plus the
    all-in-focus image) and a few ~1 MiB band buffers per thread. The frames are read
    band by band, never converted or copied as a whole.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frames = (rng.random((5, 32, 32)) * 255).astype(np.uint8)
    >>> res = depth_from_focus(FocalStack(frames, focus_um=[0, 1, 2, 3, 4]))
    >>> res.depth.shape, res.units, res.aif.dtype
    ((32, 32), 'µm', dtype('uint8'))
    """
    t_start = time.perf_counter()
    name = validate_measure(measure)
    win = validate_window(window)
    if interpolation not in INTERPOLATIONS:
        raise StackError(
            f"Unknown interpolation {interpolation!r}; choose one of: {', '.join(INTERPOLATIONS)}."
        )
    if refine and int(refine_radius) < 1:
        raise StackError(f"The refinement radius must be ≥ 1 pixel; got {refine_radius!r}.")

    eng = _Engine(stack, name, win, keep_guide=bool(refine))
    n, bands = eng.n, eng.bands
    total_steps = 2 * n
    timings: dict[str, float] = {}
    with _Runner(threads, len(bands)) as run:
        # pass 1: running maximum of the focus curve
        t0 = time.perf_counter()
        for k in range(n):
            check_cancel(cancel)
            run(partial(eng.update, k), bands)
            report(progress, k + 1, total_steps)
        timings["focus"] = time.perf_counter() - t0

        # sub-frame fit and confidence
        t0 = time.perf_counter()
        index = np.empty((eng.h, eng.w), np.float32)
        conf = np.empty((eng.h, eng.w), np.float32)
        eps = max(float(eng.best.max()) * 1e-6, float(np.finfo(np.float32).tiny))
        run(partial(eng.finish, interpolation, eps, index, conf), bands)
        del eng.left, eng.right, eng.prev, eng.total, eng.best
        timings["fit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if refine:
            check_cancel(cancel)
            index = _refine(
                index,
                conf,
                eng.guide,
                radius=int(refine_radius),
                eps=float(refine_eps),
                tau=DEFAULT_REFINE_TAU,
                iterations=1,
                floor=DEFAULT_REFINE_FLOOR,
                run=run,
            )
        del eng.guide
        timings["refine"] = time.perf_counter() - t0

        # pass 2: all-in-focus image consistent with the final index
        t0 = time.perf_counter()
        frames = eng.frames
        if aif_blend:
            lo = np.floor(index).astype(eng.best_k.dtype)
            np.clip(lo, 0, n - 2, out=lo)
            frac = index - lo
            np.clip(frac, 0.0, 1.0, out=frac)
            acc = np.zeros(frames.shape[1:], np.float32)
            for k in range(n):
                check_cancel(cancel)
                run(partial(eng.blend, k, lo, frac, acc), bands)
                report(progress, n + k + 1, total_steps)
            aif = acc if frames.dtype == np.float32 else _to_dtype(acc, frames.dtype)
        else:
            sel = eng.best_k  # reuse the int buffer for the rounded final index
            np.copyto(sel, np.rint(index), casting="unsafe")
            np.clip(sel, 0, n - 1, out=sel)
            aif = np.empty(frames.shape[1:], frames.dtype)
            for k in range(n):
                check_cancel(cancel)
                run(partial(eng.select, k, sel, aif), bands)
                report(progress, n + k + 1, total_steps)
        timings["aif"] = time.perf_counter() - t0
        n_threads = run.threads

    t0 = time.perf_counter()
    depth = (
        index.copy()
        if stack.focus_um is None
        else stack.index_to_position(index).astype(np.float32)
    )
    timings["depth"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    params = dict(
        measure=name,
        window=win,
        interpolation=interpolation,
        refine=bool(refine),
        refine_radius=int(refine_radius),
        refine_eps=float(refine_eps),
        aif_blend=bool(aif_blend),
        threads=n_threads,
    )
    return FocusResult(
        index=index,
        depth=depth,
        confidence=conf,
        aif=aif,
        units=stack.units,
        timings=timings,
        params=params,
    )
