"""Classical focus measures: how sharp each pixel of one frame is.

A focus measure maps one grayscale frame ``(H, W)`` to a non-negative map of the same
shape that is large where the frame is in focus. Shape-from-focus (:mod:`napari_gplws.dff.classical`) looks,
per pixel, for the frame where this map peaks. Five measures are offered, each summed
over a square window of ``window`` pixels (an odd number, default 9):

``"sml"``
    Sum-modified-Laplacian (Nayar & Nakagawa 1994): ``|∂²I/∂x²| + |∂²I/∂y²|``, the two
    second differences taken separately so that they cannot cancel, with Nayar's pixel
    spacing ``step`` = :data:`SML_STEP` (2). The default, and the fastest. On noisy,
    low-contrast stacks ``"rdf"`` and ``"tenengrad"`` are often more accurate.
``"tenengrad"``
    Gradient energy ``(∂I/∂x)² + (∂I/∂y)²`` from Sobel derivatives.
``"glv"``
    Gray-level local variance of the intensities within the window.
``"lapvar"``
    Local variance of the Laplacian within the window.
``"rdf"``
    Ring-difference filter in the style of Surh et al. (2017): the mean of a small centre
    disc (radius 1 px) minus the mean of a ring around it (radius 2 to 3 px) with a gap in
    between, taken in absolute value. The gap makes it less sensitive to pixel noise than
    a Laplacian.

All window sums are computed as window *means* (``scipy.ndimage.uniform_filter``), which
differ from sums by the constant factor ``window²``; the constant changes neither where a
focus curve peaks nor any ratio of its values. Values are in squared or plain intensity
units of the input (no normalisation), as float32.

Colour frames are converted to luminance (Rec. 709 weights, as
``skimage.color.rgb2gray``) for the focus measure only.

This module computes one frame at a time and knows nothing about stacks, depth or units;
see :mod:`napari_gplws.dff.classical` for those. Every measure is also available as a kernel that writes into
caller-owned buffers (:func:`measure_into`), which the streaming engine uses to avoid
per-frame allocations, and states how many pixels of context it needs
(:func:`measure_halo`), so that a frame can be processed in bands with results identical
to a whole-frame computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import StackError

__all__ = [
    "DEFAULT_MEASURE",
    "DEFAULT_WINDOW",
    "FOCUS_MEASURES",
    "SML_STEP",
    "focus_measure",
    "glv",
    "lapvar",
    "luminance",
    "measure_halo",
    "measure_into",
    "n_work_buffers",
    "rdf",
    "sml",
    "tenengrad",
    "validate_measure",
    "validate_window",
]

DEFAULT_MEASURE = "sml"
DEFAULT_WINDOW = 9

# Rec. 709 luma weights, the ones skimage.color.rgb2gray uses.
_LUMA = (np.float32(0.2125), np.float32(0.7154), np.float32(0.0721))

#: Pixel spacing of the modified Laplacian, ``2 I(x) − I(x − step) − I(x + step)``.
#: Step 2 does not respond at all at the Nyquist frequency (a period of 2 px), where a
#: microscope sampled at or above Nyquist has little signal but the full shot and read
#: noise, and peaks at a 4 px period. On this project's physics-based synthetic stacks
#: (sim.focus_stacks: 6 surface families × 2 seeds, 20 frames of 160², window 9, no refinement) it
#: cut the median depth RMSE of the raw map from 3.3 to 1.2 frames at 20 000 photons and
#: from 7.1 to 4.1 at 1 000 photons compared with step 1, and from 0.93 to 0.78 without
#: noise. Step 3 scored slightly better still on those (zoomed natural) textures but is
#: blind to a 3 px period, real detail in Nyquist-sampled microscope images.
SML_STEP = 2
_SECOND_DIFF = np.zeros(2 * SML_STEP + 1)
_SECOND_DIFF[[0, SML_STEP, 2 * SML_STEP]] = (1.0, -2.0, 1.0)
_MODE = "reflect"

# Ring-difference kernel: centre disc radius ≤ 1 px, ring 2 ≤ r ≤ 3 px, zero between.
_RDF_R_IN, _RDF_R1, _RDF_R2 = 1.0, 2.0, 3.0


def _rdf_kernel() -> np.ndarray:
    """Zero-sum ring-difference kernel: +mean over the centre disc, −mean over the ring."""
    r = int(np.ceil(_RDF_R2))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    dist = np.hypot(yy, xx)
    centre = dist <= _RDF_R_IN
    ring = (dist >= _RDF_R1) & (dist <= _RDF_R2)
    k = np.zeros(dist.shape, np.float64)
    k[centre] = 1.0 / centre.sum()
    k[ring] = -1.0 / ring.sum()
    return k


_RDF_KERNEL = _rdf_kernel()
_RDF_RADIUS = _RDF_KERNEL.shape[0] // 2


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def validate_measure(measure: str) -> str:
    """Return ``measure`` lower-cased, or raise :class:`StackError` listing valid names."""
    name = str(measure).strip().lower()
    if name not in _KERNELS:
        valid = ", ".join(sorted(_KERNELS))
        raise StackError(f"Unknown focus measure {measure!r}; choose one of: {valid}.")
    return name


def validate_window(window: int) -> int:
    """Return ``window`` as an int, or raise :class:`StackError` unless it is odd and ≥ 1."""
    try:
        w = int(window)
    except (TypeError, ValueError):
        raise StackError(
            f"The focus window must be an odd number of pixels; got {window!r}."
        ) from None
    if w != window or w < 1 or w % 2 == 0:
        raise StackError(
            f"The focus window must be an odd number of pixels ≥ 1 (e.g. 5, 9, 15); got {window!r}."
        )
    return w


# --------------------------------------------------------------------------------------
# kernels: write into caller-owned float32 buffers
# --------------------------------------------------------------------------------------
# Each kernel takes ``src`` (h, w) float32 (read-only), the window, ``out`` (h, w) float32
# and a sequence of scratch buffers of the same shape, and fills ``out``. They never
# allocate full-size arrays themselves.


def _sml_into(src: np.ndarray, window: int, out: np.ndarray, work: Sequence[np.ndarray]) -> None:
    # Same result as
    #     t = |correlate1d(src, d², axis=0)| + |correlate1d(src, d², axis=1)|
    #     out = uniform_filter(t, window)
    # but every scipy filter runs along contiguous rows: scipy.ndimage walks axis 0 one
    # strided column at a time, which made the two axis-0 passes ~3× slower than the
    # axis-1 ones and 60 % of the run time. Filtering transposed copies instead (the
    # transposes are cheap, cache-sized bands) measured 1.7× faster for the whole kernel.
    # The filters themselves are still scipy's.
    rows, cols = src.shape
    a_t = work[0].reshape(cols, rows)  # (W, h) views of the scratch memory
    b_t = work[1].reshape(cols, rows)
    np.copyto(a_t, src.T)
    ndi.correlate1d(a_t, _SECOND_DIFF, axis=1, output=b_t, mode=_MODE)  # ∂²/∂y²
    np.abs(b_t, out=b_t)
    ndi.correlate1d(src, _SECOND_DIFF, axis=1, output=out, mode=_MODE)  # ∂²/∂x²
    np.abs(out, out=out)
    np.add(out, b_t.T, out=out)
    ndi.uniform_filter1d(out, window, axis=1, output=work[0], mode=_MODE)
    np.copyto(b_t, work[0].T)
    ndi.uniform_filter1d(b_t, window, axis=1, output=a_t, mode=_MODE)  # window along y
    np.copyto(out, a_t.T)


def _tenengrad_into(
    src: np.ndarray, window: int, out: np.ndarray, work: Sequence[np.ndarray]
) -> None:
    t0, t1 = work[0], work[1]
    ndi.sobel(src, axis=0, output=t0, mode=_MODE)
    np.square(t0, out=t0)
    ndi.sobel(src, axis=1, output=t1, mode=_MODE)
    np.square(t1, out=t1)
    t0 += t1
    ndi.uniform_filter(t0, window, output=out, mode=_MODE)


def _local_variance_into(x: np.ndarray, window: int, out: np.ndarray, t0: np.ndarray) -> None:
    """``out = mean_w(x²) − mean_w(x)²``, clipped at 0; ``x`` is left unchanged.

    The caller centres ``x`` (subtracts a constant) so that float32 keeps the variance of
    bright, low-contrast regions: the cancellation error is ~6e-8·mean(x)².
    """
    np.square(x, out=t0)
    ndi.uniform_filter(t0, window, output=out, mode=_MODE)
    ndi.uniform_filter(x, window, output=t0, mode=_MODE)
    np.square(t0, out=t0)
    out -= t0
    np.maximum(out, 0.0, out=out)


def _glv_into(src: np.ndarray, window: int, out: np.ndarray, work: Sequence[np.ndarray]) -> None:
    t0, t1 = work[0], work[1]
    # Centre on the band's mean (a constant shift does not change a variance).
    np.subtract(src, np.float32(src.mean(dtype=np.float64)), out=t1)
    _local_variance_into(t1, window, out, t0)


def _lapvar_into(src: np.ndarray, window: int, out: np.ndarray, work: Sequence[np.ndarray]) -> None:
    t0, t1 = work[0], work[1]
    ndi.laplace(src, output=t1, mode=_MODE)  # zero-mean already: no centring needed
    _local_variance_into(t1, window, out, t0)


def _rdf_into(src: np.ndarray, window: int, out: np.ndarray, work: Sequence[np.ndarray]) -> None:
    t0 = work[0]
    # ndimage.correlate skips the kernel's zero taps (the gap and the corners).
    ndi.correlate(src, _RDF_KERNEL, output=t0, mode=_MODE)
    np.abs(t0, out=t0)
    ndi.uniform_filter(t0, window, output=out, mode=_MODE)


_Kernel = Callable[[np.ndarray, int, np.ndarray, Sequence[np.ndarray]], None]

# name -> (kernel, radius of the derivative stencil in px, number of scratch buffers)
_KERNELS: dict[str, tuple[_Kernel, int, int]] = {
    "sml": (_sml_into, SML_STEP, 2),
    "tenengrad": (_tenengrad_into, 1, 2),
    "glv": (_glv_into, 0, 2),
    "lapvar": (_lapvar_into, 1, 2),
    "rdf": (_rdf_into, _RDF_RADIUS, 1),
}


def measure_halo(measure: str, window: int) -> int:
    """Rows of context a band needs on each side for results identical to a full frame.

    Parameters
    ----------
    measure
        A name from :data:`FOCUS_MEASURES`.
    window
        Odd window size in pixels.

    Returns
    -------
    int
        Stencil radius plus ``window // 2`` (plus one spare row).
    """
    _, radius, _ = _KERNELS[validate_measure(measure)]
    return radius + validate_window(window) // 2 + 1


def n_work_buffers(measure: str) -> int:
    """Number of scratch buffers :func:`measure_into` needs for ``measure``."""
    return _KERNELS[validate_measure(measure)][2]


def measure_into(
    src: np.ndarray, measure: str, window: int, out: np.ndarray, work: Sequence[np.ndarray]
) -> np.ndarray:
    """Compute a focus measure into caller-owned buffers (no full-size allocation).

    Parameters
    ----------
    src
        ``(h, w)`` float32 grayscale frame (or band of one); not modified.
    measure, window
        As in :func:`focus_measure` (validated by the caller).
    out
        ``(h, w)`` float32 output buffer, C-contiguous.
    work
        At least :func:`n_work_buffers` scratch buffers, each ``(h, w)`` float32.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    kernel = _KERNELS[measure][0]
    kernel(src, window, out, work)
    return out


# --------------------------------------------------------------------------------------
# public, allocating API
# --------------------------------------------------------------------------------------
def luminance(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Grayscale float32 version of a frame, in the input's intensity units.

    Parameters
    ----------
    frame
        ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, any integer or float dtype.
    out
        Optional ``(H, W)`` float32 buffer to write into.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32: the frame itself (converted) or Rec. 709 luma
        ``0.2125 R + 0.7154 G + 0.0721 B`` for RGB (no gamma handling).

    Raises
    ------
    StackError
        When ``frame`` is neither ``(H, W)`` nor ``(H, W, 3)``.
    """
    frame = np.asarray(frame)
    if frame.ndim == 2:
        if out is None:
            return frame.astype(np.float32, copy=True)
        np.copyto(out, frame, casting="unsafe")
        return out
    if frame.ndim == 3 and frame.shape[-1] == 3:
        if out is None:
            out = np.empty(frame.shape[:2], np.float32)
        # float32 weights keep the arithmetic in float32 for integer inputs.
        np.multiply(frame[..., 0], _LUMA[0], out=out, casting="unsafe")
        out += frame[..., 1] * _LUMA[1]
        out += frame[..., 2] * _LUMA[2]
        return out
    raise StackError(f"A frame must be (H, W) or (H, W, 3); got shape {frame.shape}.")


def focus_measure(
    frame: np.ndarray, measure: str = DEFAULT_MEASURE, window: int = DEFAULT_WINDOW
) -> np.ndarray:
    """Per-pixel sharpness of one frame.

    Parameters
    ----------
    frame
        ``(H, W)`` grayscale (float32 preferred; any real dtype is converted) or
        ``(H, W, 3)`` RGB, which is converted to luminance first.
    measure
        One of ``"sml"`` (default), ``"tenengrad"``, ``"glv"``, ``"lapvar"``, ``"rdf"``.
    window
        Odd side length in pixels of the square window the measure is averaged over.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32, ≥ 0, larger where the frame is sharper. Units are the input
        intensity units (squared for ``tenengrad``, ``glv``, ``lapvar``).

    Raises
    ------
    StackError
        (a ``ValueError``) for an unknown measure (the message lists valid names), an even
        or non-positive window, or a frame of the wrong shape.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((32, 32), dtype=np.float32)
    >>> from scipy.ndimage import gaussian_filter
    >>> blurred = gaussian_filter(sharp, 2)
    >>> bool(focus_measure(sharp).mean() > focus_measure(blurred).mean())
    True
    """
    name = validate_measure(measure)
    w = validate_window(window)
    src = luminance(frame)
    out = np.empty_like(src)
    work = [np.empty_like(src) for _ in range(_KERNELS[name][2])]
    return measure_into(src, name, w, out, work)


def _public(name: str) -> Callable[..., np.ndarray]:
    def fn(frame: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
        return focus_measure(frame, name, window)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = (
        f"Focus measure ``{name!r}`` of one frame; see :func:`focus_measure` for parameters.\n\n"
        "Parameters\n----------\nframe\n    ``(H, W)`` or ``(H, W, 3)`` frame.\nwindow\n"
        "    Odd window size in pixels.\n\nReturns\n-------\nnumpy.ndarray\n    ``(H, W)`` float32."
    )
    return fn


sml = _public("sml")
tenengrad = _public("tenengrad")
glv = _public("glv")
lapvar = _public("lapvar")
rdf = _public("rdf")

#: Focus measures by name: ``FOCUS_MEASURES[name](frame, window=9) -> (H, W) float32``.
FOCUS_MEASURES: dict[str, Callable[..., np.ndarray]] = {
    "sml": sml,
    "tenengrad": tenengrad,
    "glv": glv,
    "lapvar": lapvar,
    "rdf": rdf,
}
