"""Edge-aware refinement of a depth index: a confidence-weighted, outlier-robust guided filter.

:func:`refine_index` smooths the frame index where the focus curve was unsure, guided by the
all-in-focus luminance so that depth edges stay where the image has edges. It runs in bands
(with enough overlap that results equal a whole-image computation) on the classical
engine's thread pool; the out-of-core engine calls the same band function per chunk.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.dff._engine import _bands, _Runner
from napari_gplws.errors import StackError

DEFAULT_REFINE_RADIUS = 4
DEFAULT_REFINE_EPS = 1e-2
DEFAULT_REFINE_TAU = 1.0
DEFAULT_REFINE_FLOOR = 0.02


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
