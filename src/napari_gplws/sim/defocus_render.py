"""Defocus rendering of a textured surface at one focus position: depth-dependent blur.

:func:`defocus_render` blurs each pixel by a Gaussian whose width grows with its distance
from the focal plane, by splitting the surface into thin depth layers, blurring each in
the Fourier domain and compositing them, with mirror padding so that borders stay clean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft as sfft

from napari_gplws.errors import SynthError

_TRANSFER_EPS = 1e-3  # Fourier band kept per blur: where the 1-D Gaussian transfer > eps
_MAX_PAD_PX = 32  # mirror padding around the field for the FFT blur
_MAX_LAYER_BLUR_STEP_PX = 0.25  # fewer layers are used when blur changes less than this
_LAYER_CHUNK = 8  # layers transformed at once (bounds memory)


# ------------------------------------------------------------------------------------------
# Defocus rendering
# ------------------------------------------------------------------------------------------
def _blur_sigma(defocus_um: np.ndarray, blur_px_per_um: float, blur_floor_px: float) -> np.ndarray:
    return np.sqrt(blur_floor_px**2 + (blur_px_per_um * np.abs(defocus_um)) ** 2)


def _even_fast_len(n: int) -> int:
    """Smallest even length >= n that scipy's FFT handles fast."""
    m = sfft.next_fast_len(n, real=True)
    while m % 2:
        m = sfft.next_fast_len(m + 1, real=True)
    return m


def defocus_render(
    radiance: np.ndarray,
    depth_um: np.ndarray,
    focus_um: Sequence[float] | np.ndarray,
    *,
    blur_px_per_um: float,
    blur_floor_px: float = 0.5,
    n_layers: int = 32,
) -> np.ndarray:
    """Render a focus sweep of a textured surface with the layered thin-lens model.

    See the module docstring for the model and its approximations.

    Parameters
    ----------
    radiance
        ``(H, W)`` or ``(H, W, C)`` sharp image (any float range; typically ``[0, 1]``).
    depth_um
        ``(H, W)`` depth of each pixel in µm (focus position of best focus).
    focus_um
        ``(N,)`` focus positions in µm, any order.
    blur_px_per_um
        Gaussian blur standard deviation, in pixels, per µm of defocus (>= 0).
    blur_floor_px
        Blur standard deviation in focus, pixels (>= 0), added in quadrature.
    n_layers
        Maximum number of depth layers; fewer are used when the blur changes by less
        than 0.25 px between layers over the depth range.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, H, W)`` or ``(N, H, W, C)``, noiseless, same intensity scale as
        ``radiance``.

    Raises
    ------
    SynthError
        Mismatched shapes or invalid blur parameters.
    """
    rad = np.asarray(radiance, dtype=np.float32)
    depth = np.asarray(depth_um, dtype=np.float64)
    focus = np.asarray(focus_um, dtype=np.float64).ravel()
    if depth.ndim != 2 or rad.shape[:2] != depth.shape or rad.ndim not in (2, 3):
        raise SynthError(
            f"radiance must be (H, W) or (H, W, C) and depth (H, W) of the same size; got "
            f"{rad.shape} and {depth.shape}."
        )
    if not (
        np.isfinite(blur_px_per_um)
        and blur_px_per_um >= 0
        and np.isfinite(blur_floor_px)
        and blur_floor_px >= 0
    ):
        raise SynthError(
            "blur_px_per_um and blur_floor_px must be >= 0; "
            f"got {blur_px_per_um} and {blur_floor_px}."
        )
    if focus.size == 0 or not np.isfinite(focus).all() or not np.isfinite(depth).all():
        raise SynthError(
            "Focus positions and depths must be finite, with at least one focus position."
        )
    gray = rad.ndim == 2
    chans = rad[None] if gray else np.moveaxis(rad, -1, 0)  # (C, H, W)
    n_ch = chans.shape[0]
    h, w = depth.shape

    # Layers: linear ("tent") weights between the two nearest of L evenly spaced depths.
    zmin, zmax = float(depth.min()), float(depth.max())
    needed = int(math.ceil(blur_px_per_um * (zmax - zmin) / _MAX_LAYER_BLUR_STEP_PX)) + 1
    n_lay = max(1, min(int(n_layers), needed)) if zmax > zmin else 1
    z_layers = np.linspace(zmin, zmax, n_lay) if n_lay > 1 else np.array([zmin])

    # Padding: mirror the scene by 2.5 sigma of the widest blur, at most _MAX_PAD_PX, then
    # grow to a fast FFT size. Beyond the padding the FFT wraps around (see module notes).
    sig_max = float(
        _blur_sigma(
            np.max(np.abs(focus[:, None] - z_layers[None, :])), blur_px_per_um, blur_floor_px
        )
    )
    pad = min(int(math.ceil(2.5 * sig_max)), _MAX_PAD_PX)
    hp, wp = _even_fast_len(h + 2 * pad), sfft.next_fast_len(w + 2 * pad, real=True)
    pads = ((pad, hp - h - pad), (pad, wp - w - pad))
    depth_p = np.pad(depth, pads, mode="symmetric")
    chans_p = np.stack([np.pad(c, pads, mode="symmetric") for c in chans])

    # Tent weights w_l(x) = max(0, 1 - |t(x) - l|), t = fractional layer index of x.
    if n_lay > 1:
        t = ((depth_p - zmin) / (zmax - zmin) * (n_lay - 1)).astype(np.float32)
        lower = np.floor(t).astype(np.intp)
        used = np.union1d(lower, np.minimum(lower + (t > lower), n_lay - 1))  # non-empty layers
    else:
        t = np.zeros((hp, wp), np.float32)
        used = np.array([0])
    sigmas = _blur_sigma(focus[:, None] - z_layers[None, :], blur_px_per_um, blur_floor_px)

    # Rows are modulated by (-1)**y, which moves frequency 0 to row hp/2 (an fftshift for
    # free), so the band kept for each blur is one contiguous block of rows. Spectra are
    # handled as float32 (re, im) pairs: the transfer function is real.
    alt = np.where(np.arange(hp) % 2 == 0, 1.0, -1.0).astype(np.float32)[:, None]
    nq = wp // 2 + 1
    fy = (np.arange(hp) - hp // 2) / hp
    fx = np.repeat(sfft.rfftfreq(wp), 2)  # one value per float32 of a complex pair
    cy = hp // 2
    two_pi2 = 2.0 * np.pi**2
    fy2 = (two_pi2 * fy**2).astype(np.float32)  # transfer = exp(-sigma**2 * (fy2 + fx2))
    fx2 = (two_pi2 * fx**2).astype(np.float32)
    log_eps = -math.log(_TRANSFER_EPS)
    acc = np.zeros((focus.size, n_ch + 1, hp, nq), np.complex64)
    acc_f = acc.view(np.float32)
    tmp = np.empty((n_ch + 1, hp, 2 * nq), np.float32)
    for start in range(0, used.size, _LAYER_CHUNK):
        chunk = used[start : start + _LAYER_CHUNK]
        signals = np.empty((chunk.size, n_ch + 1, hp, wp), np.float32)
        for i, lay in enumerate(chunk):
            np.maximum(1.0 - np.abs(t - np.float32(lay)), 0.0, out=signals[i, n_ch])
            signals[i, n_ch] *= alt
            signals[i, :n_ch] = chans_p * signals[i, n_ch]
        spec_f = sfft.rfft2(signals, axes=(-2, -1), workers=-1).view(np.float32)
        del signals
        for k in range(focus.size):
            for i, lay in enumerate(chunk):
                s2 = np.float32(sigmas[k, lay] ** 2)
                cut = math.sqrt(log_eps / (two_pi2 * s2)) if s2 > 0 else 1.0  # cycles/px
                ky, kx = int(cut * hp) + 1, 2 * (int(cut * wp) + 2)
                r0, r1, c1 = max(cy - ky, 0), min(cy + ky + 1, hp), min(kx, 2 * nq)
                g = np.multiply.outer(np.exp(fy2[r0:r1] * -s2), np.exp(fx2[:c1] * -s2))
                part = tmp[:, : r1 - r0, :c1]
                np.multiply(spec_f[i, :, r0:r1, :c1], g, out=part)
                acc_f[k, :, r0:r1, :c1] += part
        del spec_f
    planes = sfft.irfft2(acc, s=(hp, wp), axes=(-2, -1), workers=-1)
    planes = planes[..., pad : pad + h, pad : pad + w] * alt[pad : pad + h]
    out = planes[:, :n_ch] / np.maximum(planes[:, n_ch : n_ch + 1], 1e-6)
    out = out.astype(np.float32)
    return out[:, 0] if gray else np.ascontiguousarray(np.moveaxis(out, 1, -1))
