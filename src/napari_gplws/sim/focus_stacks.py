"""Physics-based synthetic focus stacks with ground-truth depth.

What it is for: tests, demos, the bundled sample and, later, training the depth-from-focus
network. A synthetic stack is made of three independent random choices:

* a **height map** (:data:`HEIGHT_FAMILIES`: tilted planes, terraces, pits and holes,
  spherical caps, waves, smooth random fields), normalised to ``[0, 1]`` and mapped
  linearly onto a depth range in µm;
* a **texture** (:data:`TEXTURES`: images bundled inside scikit-image, never downloaded,
  and procedural ones) seen through a random crop, zoom, rotation and flip: the sharp
  radiance of the surface;
* a **camera**: thin-lens defocus, shot and read noise, gamma, 8/16-bit or float output,
  grayscale or RGB.

Depth convention (the project's): the depth of a pixel is the focus-drive position, in µm,
at which that pixel is sharpest, on the same axis as the stack's focus positions. Frame
``k`` taken at focus position ``f_k`` sees a point at depth ``z`` blurred by a Gaussian of
standard deviation (pixels)

    ``sigma = sqrt(blur_floor_px**2 + (blur_px_per_um * |z - f_k|)**2)``.

For a thin lens the geometric blur disc grows linearly with defocus (radius about
``NA / n_medium * |dz|`` in object space for small NA; a disc of radius ``r`` has a standard
deviation of ``r / 2``); the floor stands for diffraction and pixel integration.

Rendering approximation (layered, normalised convolution). The depth range of the field
is cut into ``L`` layers at depths ``z_l``; every pixel belongs to its two nearest layers
with linear weights ``w_l(x)`` (``sum_l w_l = 1``). For each frame

    ``out = sum_l G_l * (T w_l) / sum_l G_l * w_l``,

where ``T`` is the sharp texture and ``G_l`` the Gaussian of the layer's blur at that
frame. The denominator renormalises brightness where layers of different blur meet. The
approximation ignores occlusion (a blurred foreground does not hide the background) and
the asymmetry of real PSFs above and below focus: fine for shallow microscope relief, not
a ray tracer. ``L`` is at most ``n_layers`` (32 by default: 0.1–0.2 grey levels RMS, 99th
percentile under 1, from a 160-layer rendering, at 8 bits), fewer when the blur changes by
less than 0.25 px between layers. Blurs are applied in the Fourier domain: the Gaussian
transfer function is separable and is evaluated only on the band where each 1-D factor
exceeds ``1e-3``. The scene is first padded by mirror reflection (2.5 sigma of the widest
blur, at most 32 px) so that borders behave like
``scipy.ndimage.gaussian_filter(mode="reflect")``; blur wider than the padding wraps
around, which only touches the most defocused, nearly uniform frames. A flat surface
renders exactly as ``gaussian_filter`` (tested).

Camera: intensity = ``lo + (hi - lo) * texture`` (``intensity_range``), Poisson shot noise
for ``photons`` electrons at full scale (drawn exactly below 30 expected electrons, as a
Gaussian of equal variance above), Gaussian read noise, clipping to ``[0, 1]``,
``signal ** gamma``, then rounding to 8 or 16 bits (or float32).

Speed: about 0.2 s for 20 grayscale frames of 256×256 on two CPU cores (about twice that
in RGB); the cost grows with frames × layers.

What it is not: an optical simulator with aberrations (see the design notes: the sign of
defocus can only be learnt from aberrated PSFs; this module's PSF is symmetric in defocus),
nor a reader of real data.

Examples
--------
>>> s = synthetic_stack(family="waves", n_frames=12, shape=(64, 64), seed=1)
>>> s.stack.frames.shape, s.stack.frames.dtype, s.depth_um.dtype
((12, 64, 64), dtype('uint8'), dtype('float32'))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from napari_gplws.errors import GplwsError
from napari_gplws.stack import UNIT_UM, FocalStack, validate_focus_positions

__all__ = [
    "HEIGHT_FAMILIES",
    "PROCEDURAL_TEXTURES",
    "SKIMAGE_TEXTURES",
    "TEXTURES",
    "SynthError",
    "SynthParams",
    "SyntheticStack",
    "available_textures",
    "defocus_render",
    "height_map",
    "random_training_stack",
    "synthesize",
    "synthetic_stack",
    "texture_image",
]

#: Height-map families understood by :func:`height_map`.
HEIGHT_FAMILIES: tuple[str, ...] = ("plane", "terraces", "pits", "caps", "waves", "smooth")

# Images shipped inside the scikit-image wheel (skimage/data/*.png): loading them never
# touches the network. Name -> (skimage.data function, file name, is colour).
_SKIMAGE_FILES: dict[str, tuple[str, str, bool]] = {
    "camera": ("camera", "camera.png", False),
    "coins": ("coins", "coins.png", False),
    "moon": ("moon", "moon.png", False),
    "text": ("text", "text.png", False),
    "brick": ("brick", "brick.png", False),
    "grass": ("grass", "grass.png", False),
    "gravel": ("gravel", "gravel.png", False),
    "cell": ("cell", "cell.png", False),
    "page": ("page", "page.png", False),
    "astronaut": ("astronaut", "astronaut.png", True),
    "coffee": ("coffee", "coffee.png", True),
    "chelsea": ("chelsea", "chelsea.png", True),
    "ihc": ("immunohistochemistry", "ihc.png", True),
}
#: Textures read from images bundled with scikit-image (no download).
SKIMAGE_TEXTURES: tuple[str, ...] = tuple(_SKIMAGE_FILES)
#: Textures generated on the fly.
PROCEDURAL_TEXTURES: tuple[str, ...] = ("noise", "dots", "cells", "fibres")
#: Every texture name :func:`texture_image` accepts.
TEXTURES: tuple[str, ...] = SKIMAGE_TEXTURES + PROCEDURAL_TEXTURES

_TRANSFER_EPS = 1e-3  # Fourier band kept per blur: where the 1-D Gaussian transfer > eps
_MAX_PAD_PX = 32  # mirror padding around the field for the FFT blur
_MAX_LAYER_BLUR_STEP_PX = 0.25  # fewer layers are used when blur changes less than this
_VIEW_TRIES = 5  # random views tried to find a textured part of an image
_LAYER_CHUNK = 8  # layers transformed at once (bounds memory)
_POISSON_EXACT_BELOW = 30.0  # expected electrons under which shot noise is drawn exactly


class SynthError(GplwsError, ValueError):
    """Parameters of a synthetic stack that cannot be used as given."""


# ------------------------------------------------------------------------------------------
# Height maps
# ------------------------------------------------------------------------------------------
def _normalise(h: np.ndarray) -> np.ndarray:
    lo, hi = float(h.min()), float(h.max())
    if not hi > lo:
        return np.zeros(h.shape, np.float64)
    return (h - lo) / (hi - lo)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (float64) as broadcastable ``(H, 1)`` and ``(1, W)``."""
    yy = np.arange(shape[0], dtype=np.float64)[:, None]
    xx = np.arange(shape[1], dtype=np.float64)[None, :]
    return yy, xx


def _plane(
    shape: tuple[int, int], rng: np.random.Generator, angle: float | None = None
) -> np.ndarray:
    yy, xx = _grid(shape)
    a = rng.uniform(0.0, 2.0 * np.pi) if angle is None else float(angle)
    return np.cos(a) * xx + np.sin(a) * yy


def _smooth(
    shape: tuple[int, int], rng: np.random.Generator, sigma_px: float | None = None
) -> np.ndarray:
    m = min(shape)
    s = rng.uniform(max(2.0, m / 40.0), max(3.0, m / 6.0)) if sigma_px is None else float(sigma_px)
    h = ndi.gaussian_filter(rng.standard_normal(shape), s, mode="reflect", truncate=3.0)
    if sigma_px is None and rng.random() < 0.5:  # a second, finer scale now and then
        fine = ndi.gaussian_filter(
            rng.standard_normal(shape), s / 3.0, mode="reflect", truncate=3.0
        )
        h = h / (h.std() + 1e-12) + rng.uniform(0.1, 0.4) * fine / (fine.std() + 1e-12)
    return h


def _terraces(
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_levels: int | None = None,
    edge_px: float | None = None,
) -> np.ndarray:
    k = int(rng.integers(2, 7)) if n_levels is None else int(n_levels)
    if k < 2:
        raise SynthError(f"Terraces need at least 2 levels; got n_levels={n_levels}.")
    base = _plane(shape, rng) if rng.random() < 0.5 else _smooth(shape, rng)
    base = _normalise(base)
    idx = np.minimum((base * k).astype(np.intp), k - 1)
    levels = np.cumsum(rng.uniform(0.3, 1.0, k))  # unequal step heights
    h = levels[idx]
    edge = rng.uniform(0.0, 3.0) if edge_px is None else float(edge_px)
    if edge > 0:  # sloped risers instead of vertical steps
        h = ndi.gaussian_filter(h, edge, mode="nearest", truncate=3.0)
    return h


def _pits(
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_pits: int | None = None,
    wall_px: float | None = None,
) -> np.ndarray:
    yy, xx = _grid(shape)
    m = min(shape)
    n = int(rng.integers(1, 9)) if n_pits is None else int(n_pits)
    h = 1.0 + 0.15 * rng.random() * _normalise(_plane(shape, rng))  # top surface, slight tilt
    for _ in range(max(n, 1)):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(0.04, 0.2) * m + 1.0
        depth = 1.0 if rng.random() < 0.3 else rng.uniform(0.3, 1.0)  # holes go all the way
        w = rng.uniform(0.5, r) if wall_px is None else max(float(wall_px), 1e-3)
        dy, dx = np.abs(yy - cy), np.abs(xx - cx)
        dist = np.maximum(dy, dx) if rng.random() < 0.3 else np.sqrt(dy**2 + dx**2)  # square/round
        profile = depth * np.clip((r - dist) / w, 0.0, 1.0)
        h = np.minimum(h, 1.0 - profile)
    return h


def _caps(
    shape: tuple[int, int], rng: np.random.Generator, n_caps: int | None = None
) -> np.ndarray:
    yy, xx = _grid(shape)
    m = min(shape)
    n = int(rng.integers(1, 6)) if n_caps is None else int(n_caps)
    h = np.zeros(shape, np.float64)
    for _ in range(max(n, 1)):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a = rng.uniform(0.08, 0.3) * m + 1.0  # base radius (px)
        half_angle = rng.uniform(np.radians(15), np.radians(90))
        big_r = a / np.sin(half_angle)  # sphere radius
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        cap = np.sqrt(np.maximum(big_r**2 - d2, 0.0)) - np.sqrt(big_r**2 - a**2)
        h = np.maximum(h, np.where(d2 < a * a, cap, 0.0))
    return h


def _waves(
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_waves: int | None = None,
    wavelength_px: float | None = None,
) -> np.ndarray:
    yy, xx = _grid(shape)
    big = max(shape)
    n = int(rng.integers(1, 4)) if n_waves is None else int(n_waves)
    h = np.zeros(shape, np.float64)
    for _ in range(max(n, 1)):
        a = rng.uniform(0.0, 2.0 * np.pi)
        lam = (
            max(12.0, rng.uniform(0.08, 1.0) * big)
            if wavelength_px is None
            else float(wavelength_px)
        )
        amp = rng.uniform(0.3, 1.0)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        h = h + amp * np.sin(2.0 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / lam + phase)
    return h


_FAMILY_FUNCS = {
    "plane": _plane,
    "terraces": _terraces,
    "pits": _pits,
    "caps": _caps,
    "waves": _waves,
    "smooth": _smooth,
}


def height_map(
    family: str, shape: tuple[int, int], rng: np.random.Generator, **options: Any
) -> np.ndarray:
    """A random height map of one family, normalised to ``[0, 1]``.

    Parameters
    ----------
    family
        One of :data:`HEIGHT_FAMILIES`:

        * ``"plane"`` — a tilted plane at a random azimuth (option ``angle``, radians);
        * ``"terraces"`` — 2–6 flat levels of unequal height cut from a plane or a smooth
          field, with vertical or sloped risers (``n_levels``, ``edge_px``);
        * ``"pits"`` — a flat, slightly tilted top with 1–8 round or square pits and holes
          whose walls slope over ``wall_px`` pixels (``n_pits``, ``wall_px``);
        * ``"caps"`` — 1–5 spherical caps of random base radius and steepness (``n_caps``);
        * ``"waves"`` — a sum of 1–3 sinusoids at random orientations
          (``n_waves``, ``wavelength_px``);
        * ``"smooth"`` — Gaussian-filtered white noise, one or two scales (``sigma_px``).
    shape
        ``(H, W)`` in pixels.
    rng
        Random generator; the same generator state gives the same map.
    **options
        Family-specific overrides listed above; random when omitted.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64 with minimum 0 and maximum 1 (all zeros if the map happens to
        be flat). 1 is "high" only by convention: :func:`synthesize` maps it to the upper
        end of the depth range.

    Raises
    ------
    SynthError
        Unknown family, or invalid options.

    Examples
    --------
    >>> h = height_map("caps", (32, 48), np.random.default_rng(0))
    >>> h.shape, float(h.min()), float(h.max())
    ((32, 48), 0.0, 1.0)
    """
    if family not in _FAMILY_FUNCS:
        raise SynthError(
            f"Unknown height-map family '{family}'; choose one of: {', '.join(HEIGHT_FAMILIES)}."
        )
    shape = _check_shape(shape)
    try:
        h = _FAMILY_FUNCS[family](shape, rng, **options)
    except TypeError as exc:
        raise SynthError(f"Bad option for height family '{family}': {exc}.") from None
    return _normalise(np.asarray(h, dtype=np.float64))


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise SynthError(f"shape must be (height, width) in pixels; got {shape!r}.") from None
    if h < 2 or w < 2:
        raise SynthError(f"shape must be at least 2×2 pixels; got {shape!r}.")
    return h, w


# ------------------------------------------------------------------------------------------
# Textures
# ------------------------------------------------------------------------------------------
def _skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def available_textures() -> tuple[str, ...]:
    """Texture names usable here: procedural ones plus the scikit-image images present
    in the installed package (checked on disk, so nothing is ever downloaded)."""
    folder = _skimage_data_dir()
    present = tuple(n for n, (_, fname, _) in _SKIMAGE_FILES.items() if (folder / fname).is_file())
    return present + PROCEDURAL_TEXTURES


@functools.cache
def _load_skimage(name: str) -> np.ndarray:
    """Bundled image as float32 in ``[0, 1]``, ``(H, W)`` or ``(H, W, 3)``; read-only, cached."""
    func, fname, _ = _SKIMAGE_FILES[name]
    if not (_skimage_data_dir() / fname).is_file():
        raise SynthError(
            f"The texture '{name}' ({fname}) is not bundled with the installed scikit-image and "
            "would need a download; choose one of: " + ", ".join(available_textures()) + "."
        )
    import skimage.data

    img = np.asarray(getattr(skimage.data, func)())
    if img.ndim == 3:
        img = img[..., :3]
    out = img.astype(np.float32) / np.float32(
        np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0
    )
    out.setflags(write=False)
    return out


def _stretch(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> np.ndarray:
    """Percentile stretch to ``[0, 1]`` (float32)."""
    lo, hi = np.percentile(img, [lo_pct, hi_pct])
    if not hi > lo:
        return np.full(img.shape, 0.5, np.float32)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _power_law_noise(
    shape: tuple[int, int], rng: np.random.Generator, beta: float, cutoff: float
) -> np.ndarray:
    """White noise shaped in Fourier space by ``|f|**-beta`` above ``cutoff`` cycles/px."""
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fy**2 + fx**2)
    amp = (np.maximum(f, cutoff) ** -beta).astype(np.float32)
    spec = sfft.rfft2(rng.standard_normal(shape).astype(np.float32))
    return sfft.irfft2(spec * amp, s=shape)


def _tex_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    beta = rng.uniform(0.6, 1.6)  # amplitude exponent: 1/f^(2 beta) power spectrum
    img = _power_law_noise(shape, rng, beta, cutoff=rng.uniform(0.005, 0.05))
    if rng.random() < 0.3:  # patchy, two-phase material
        img = np.tanh(img / (0.3 * img.std() + 1e-12))
    return _stretch(img)


def _tex_dots(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    img = np.zeros(shape, np.float32)
    area = shape[0] * shape[1]
    for _ in range(int(rng.integers(1, 3))):  # one or two populations of dots
        density = rng.uniform(0.002, 0.03)
        n = max(1, int(density * area))
        ys = rng.integers(0, shape[0], n)
        xs = rng.integers(0, shape[1], n)
        layer = np.zeros(shape, np.float32)
        np.add.at(layer, (ys, xs), rng.uniform(0.3, 1.0, n).astype(np.float32))
        img += ndi.gaussian_filter(layer, rng.uniform(0.6, 2.5), truncate=3.0)
    img += 0.05 * img.max() * _power_law_noise(shape, rng, 1.0, 0.02).astype(np.float32)
    out = _stretch(img, 0.5, 99.8)
    return 1.0 - out if rng.random() < 0.3 else out


def _tex_cells(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    radius = rng.uniform(5.0, 18.0)  # typical cell radius (px)
    n = max(2, int(shape[0] * shape[1] / (np.pi * radius**2) * rng.uniform(0.5, 1.0)))
    seeds = np.ones(shape, bool)
    ys, xs = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    seeds[ys, xs] = False
    dist, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
    label = iy * shape[1] + ix  # Voronoi cell id = position of its seed
    per_cell = rng.uniform(0.6, 1.4, shape[0] * shape[1]).astype(np.float32)
    r_nuc = radius * rng.uniform(0.3, 0.5) * per_cell[label]
    chromatin = 0.7 + 0.3 * _stretch(_power_law_noise(shape, rng, 0.8, 0.05))
    nucleus = (dist < r_nuc) * chromatin
    body = np.clip(1.0 - dist / (1.3 * radius), 0.0, 1.0)
    membrane = (np.diff(label, axis=0, append=label[-1:]) != 0) | (
        np.diff(label, axis=1, append=label[:, -1:]) != 0
    )
    img = 0.35 * body + 0.65 * nucleus + 0.25 * membrane
    img = ndi.gaussian_filter(img.astype(np.float32), 0.8, truncate=3.0)
    return _stretch(img, 0.5, 99.5)


def _tex_fibres(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    theta = rng.uniform(0.0, np.pi)
    s_long, s_short = rng.uniform(4.0, 16.0), rng.uniform(0.7, 2.0)
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    fa = fx * np.cos(theta) + fy * np.sin(theta)  # along the fibres: strongly smoothed
    fb = -fx * np.sin(theta) + fy * np.cos(theta)
    transfer = np.exp(-2.0 * np.pi**2 * (s_long**2 * fa**2 + s_short**2 * fb**2)).astype(np.float32)
    field = sfft.irfft2(
        sfft.rfft2(rng.standard_normal(shape).astype(np.float32)) * transfer, s=shape
    )
    ridges = 1.0 - np.tanh(np.abs(field) / (rng.uniform(0.15, 0.4) * field.std() + 1e-12))
    return _stretch(ridges)


_PROCEDURAL = {"noise": _tex_noise, "dots": _tex_dots, "cells": _tex_cells, "fibres": _tex_fibres}


def _random_view(
    img: np.ndarray,
    shape: tuple[int, int],
    rng: np.random.Generator,
    zoom_range: tuple[float, float],
) -> np.ndarray:
    """A random rotated, zoomed, flipped crop of ``img`` (mirror beyond its edges)."""
    # s: input pixels per output pixel (s > 1 shrinks the image, s < 1 magnifies it).
    s = float(np.exp(rng.uniform(np.log(zoom_range[0]), np.log(zoom_range[1]))))
    a = rng.uniform(0.0, 2.0 * np.pi)
    flip = np.diag([1.0, -1.0 if rng.random() < 0.5 else 1.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = s * rot @ flip
    centre_in = np.array([rng.uniform(0, img.shape[0]), rng.uniform(0, img.shape[1])])
    centre_out = (np.array(shape, np.float64) - 1.0) / 2.0
    offset = centre_in - matrix @ centre_out
    chans = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    out = []
    for ch in chans:
        if s > 1.2:  # anti-alias before shrinking
            ch = ndi.gaussian_filter(ch, 0.45 * s, truncate=3.0)
        out.append(
            ndi.affine_transform(
                ch, matrix, offset=offset, output_shape=shape, order=1, mode="mirror"
            )
        )
    return out[0] if img.ndim == 2 else np.stack(out, axis=-1)


def _textured_view(
    img: np.ndarray,
    shape: tuple[int, int],
    rng: np.random.Generator,
    zoom_range: tuple[float, float],
) -> np.ndarray:
    """The most contrasted of up to :data:`_VIEW_TRIES` random views, stretched to [0, 1].

    Real images have flat regions (sky, background); a view of one would leave the
    synthetic surface without focus cues, so a few views are drawn and the first with a
    standard deviation above 0.05 (else the best) is kept, then percentile-stretched
    (0.5 %–99.5 %, jointly over colour channels).
    """
    best, best_std = None, -1.0
    for _ in range(_VIEW_TRIES):
        view = _random_view(img, shape, rng, zoom_range)
        std = float(view.std())
        if std > best_std:
            best, best_std = view, std
        if std > 0.05:
            break
    assert best is not None
    return _stretch(best, 0.5, 99.5)


def _to_gray(img: np.ndarray) -> np.ndarray:
    # ITU-R 709 luma weights (the ones skimage.color.rgb2gray uses).
    return (img @ np.array([0.2125, 0.7154, 0.0721], np.float32)).astype(np.float32)


def _colourise(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a gray texture through a random two-colour ramp (dark colour -> bright colour)."""
    dark = rng.uniform(0.0, 0.35, 3)
    bright = rng.uniform(0.65, 1.0, 3)
    return (dark + (bright - dark) * gray[..., None]).astype(np.float32)


def texture_image(
    name: str | None,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    rgb: bool = False,
    zoom_range: tuple[float, float] = (0.5, 2.0),
) -> np.ndarray:
    """A random view of a texture: the sharp radiance of the synthetic surface.

    Parameters
    ----------
    name
        One of :data:`TEXTURES`, or ``None`` for a random choice among
        :func:`available_textures`. Images from scikit-image are randomly cropped,
        zoomed (``zoom_range``: input pixels per output pixel, log-uniform), rotated and
        flipped (a few views are tried to avoid featureless ones), then stretched to
        ``[0, 1]``; procedural ones are generated at ``shape`` with random parameters.
    shape
        ``(H, W)`` in pixels.
    rng
        Random generator.
    rgb
        Return ``(H, W, 3)``. Gray textures are coloured through a random two-colour
        ramp; colour images are converted to gray (Rec. 709 luma) when ``rgb`` is False.
    zoom_range
        ``(min, max)`` zoom for image textures.

    Returns
    -------
    numpy.ndarray
        float32 in ``[0, 1]``, ``(H, W)`` or ``(H, W, 3)``.

    Raises
    ------
    SynthError
        Unknown texture name, or an image not bundled with the installed scikit-image.
    """
    shape = _check_shape(shape)
    if name is None:
        choices = available_textures()
        name = choices[int(rng.integers(len(choices)))]
    if name in _PROCEDURAL:
        img = _PROCEDURAL[name](shape, rng)
    elif name in _SKIMAGE_FILES:
        img = _textured_view(_load_skimage(name), shape, rng, zoom_range)
    else:
        raise SynthError(f"Unknown texture '{name}'; choose one of: {', '.join(TEXTURES)}.")
    if rgb and img.ndim == 2:
        img = _colourise(img, rng)
    elif not rgb and img.ndim == 3:
        img = _to_gray(img)
    return np.ascontiguousarray(img, dtype=np.float32)


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


# ------------------------------------------------------------------------------------------
# Parameters and the synthetic stack
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthParams:
    """Every parameter of a synthetic stack (see :func:`synthetic_stack` for meanings).

    ``SynthParams.sample(rng)`` draws a random configuration for training; a params object
    plus a seed fully determines the arrays (:func:`synthesize`).
    """

    family: str = "waves"
    texture: str | None = None
    n_frames: int = 20
    shape: tuple[int, int] = (256, 256)
    depth_range_um: tuple[float, float] = (0.0, 40.0)
    focus_um: tuple[float, ...] | None = None
    invert_height: bool = False
    blur_px_per_um: float = 0.5
    blur_floor_px: float = 0.5
    n_layers: int = 32
    intensity_range: tuple[float, float] = (0.05, 0.95)
    photons: float | None = 5000.0
    read_noise: float = 0.003
    gamma: float = 1.0
    bit_depth: int = 8
    rgb: bool = False
    pixel_size_um: float = 1.0
    zoom_range: tuple[float, float] = (0.5, 2.0)

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        *,
        shape: tuple[int, int] = (256, 256),
        n_frames: tuple[int, int] = (8, 32),
        families: Sequence[str] = HEIGHT_FAMILIES,
        textures: Sequence[str] | None = None,
    ) -> SynthParams:
        """Draw a random configuration for training.

        Draws a family and a texture uniformly; 8–32 frames (``n_frames`` inclusive range);
        a focus travel of 5–100 µm starting anywhere in ``[-50, 50]`` µm, sometimes
        decreasing (30 %) or unevenly spaced (25 %); a surface occupying 30–100 % of the
        travel (height sometimes inverted); a blur of 0.3–3 px per focus step; in-focus
        blur 0.3–1 px; intensity range, photon count (200–20 000 or none), read noise
        (0–2 % of full scale), gamma (0.6–1.6), 8/16-bit or float, RGB in 30 % of draws.
        """
        n = int(rng.integers(n_frames[0], n_frames[1] + 1))
        span = float(rng.uniform(5.0, 100.0))
        start = float(rng.uniform(-50.0, 50.0))
        pos = np.linspace(start, start + span, n)
        step = span / (n - 1)
        if rng.random() < 0.25:  # uneven spacing; jitter < half a step keeps the order
            pos[1:-1] += rng.uniform(-0.4, 0.4, n - 2) * step
        if rng.random() < 0.3:
            pos = pos[::-1]
        width = span * float(rng.uniform(0.3, 1.0))
        lo = start + float(rng.uniform(0.0, span - width))
        per_step = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        ilo = float(rng.uniform(0.0, 0.4))
        ihi = float(rng.uniform(ilo + 0.15, 1.0))
        texture_choices = tuple(textures) if textures is not None else available_textures()
        return cls(
            family=str(families[int(rng.integers(len(families)))]),
            texture=str(texture_choices[int(rng.integers(len(texture_choices)))]),
            n_frames=n,
            shape=(int(shape[0]), int(shape[1])),
            depth_range_um=(lo, lo + width),
            focus_um=tuple(float(p) for p in pos),
            invert_height=bool(rng.random() < 0.5),
            blur_px_per_um=per_step / step,
            blur_floor_px=float(rng.uniform(0.3, 1.0)),
            n_layers=48,
            intensity_range=(ilo, ihi),
            photons=None
            if rng.random() < 0.1
            else float(np.exp(rng.uniform(np.log(200.0), np.log(20000.0)))),
            read_noise=float(rng.uniform(0.0, 0.02)),
            gamma=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
            bit_depth=int((8, 8, 16, 32)[int(rng.integers(4))]),
            rgb=bool(rng.random() < 0.3),
        )

    def to_metadata(self) -> dict[str, Any]:
        """JSON-friendly dict of the parameters (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class SyntheticStack:
    """A synthetic focus stack with its ground truth.

    Attributes
    ----------
    stack
        The :class:`FocalStack`: frames ``(N, H, W)`` or ``(N, H, W, 3)`` (uint8, uint16 or
        float32 in ``[0, 1]``), focus positions in µm, pixel size, ``source =
        "synthetic:<family>:<seed>"`` and ``metadata`` holding every parameter.
    depth_um
        ``(H, W)`` float32 ground-truth depth in µm: the focus position at which each
        pixel is sharpest, on the same axis as ``stack.focus_um``.
    texture
        ``(H, W)`` or ``(H, W, 3)`` float32 sharp radiance in ``[0, 1]`` after the intensity
        mapping, before noise and gamma: the ideal all-in-focus image.
    params
        The :class:`SynthParams` that made it.
    """

    stack: FocalStack
    depth_um: np.ndarray
    texture: np.ndarray
    params: SynthParams


def _default_focus(lo: float, hi: float, n: int) -> np.ndarray:
    """Evenly spaced positions covering ``[lo, hi]`` with half a step to spare at both ends."""
    margin = 0.5 * (hi - lo) / max(n - 1, 1)
    return np.linspace(lo - margin, hi + margin, n)


def _validate(p: SynthParams) -> None:
    if p.family not in HEIGHT_FAMILIES:
        raise SynthError(
            f"Unknown height-map family '{p.family}'; choose one of: {', '.join(HEIGHT_FAMILIES)}."
        )
    if p.texture is not None and p.texture not in TEXTURES:
        raise SynthError(f"Unknown texture '{p.texture}'; choose one of: {', '.join(TEXTURES)}.")
    if int(p.n_frames) < 2:
        raise SynthError(f"A focus stack needs at least 2 frames; got n_frames={p.n_frames}.")
    lo, hi = p.depth_range_um
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise SynthError(
            f"depth_range_um must be (low, high) µm with low < high; got {p.depth_range_um}."
        )
    if p.bit_depth not in (8, 16, 32):
        raise SynthError(f"bit_depth must be 8, 16 or 32 (float32); got {p.bit_depth}.")
    ilo, ihi = p.intensity_range
    if not 0.0 <= ilo < ihi <= 1.0:
        raise SynthError(
            f"intensity_range must satisfy 0 <= low < high <= 1; got {p.intensity_range}."
        )
    if p.photons is not None and not p.photons > 0:
        raise SynthError(f"photons must be positive (or None for no shot noise); got {p.photons}.")
    if not p.read_noise >= 0 or not p.gamma > 0:
        raise SynthError(
            f"read_noise must be >= 0 and gamma > 0; got {p.read_noise} and {p.gamma}."
        )
    if not p.n_layers >= 1:
        raise SynthError(f"n_layers must be at least 1; got {p.n_layers}.")


def _add_noise(
    signal: np.ndarray, photons: float | None, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Shot noise (``photons`` electrons at full scale) plus Gaussian read noise, clipped to [0, 1].

    Shot noise is exact Poisson where fewer than :data:`_POISSON_EXACT_BELOW` electrons are
    expected and its Gaussian approximation (same mean and variance, about 5x faster)
    elsewhere; the read noise is added to the same Gaussian draw.
    """
    var = np.full(signal.shape, np.float32(read_noise**2), np.float32)
    if photons is not None:
        var += signal / np.float32(photons)
    out = signal + np.sqrt(var) * rng.standard_normal(signal.shape, dtype=np.float32)
    if photons is not None:
        low = signal * np.float32(photons) < _POISSON_EXACT_BELOW
        if low.any():
            exact = rng.poisson(signal[low] * photons) / photons
            out[low] = exact + read_noise * rng.standard_normal(exact.shape, dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _as_generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def synthesize(
    params: SynthParams,
    seed: int | np.random.Generator = 0,
    *,
    texture_image_override: np.ndarray | None = None,
) -> SyntheticStack:
    """Render the synthetic stack described by ``params``.

    Parameters
    ----------
    params
        All parameters (see :func:`synthetic_stack`).
    seed
        Integer seed or a generator. Height map, texture and noise use three independent
        streams spawned from ``np.random.default_rng(seed)``, so e.g. changing the noise
        level keeps the same surface and texture.
    texture_image_override
        Use this ``(H, W)`` / ``(H, W, 3)`` image (float in ``[0, 1]`` or integer, full range)
        as the texture instead of ``params.texture``; it is resampled by a random view if
        its size differs from ``params.shape``.

    Returns
    -------
    SyntheticStack

    Raises
    ------
    SynthError
        Invalid parameters.
    """
    _validate(params)
    shape = _check_shape(params.shape)
    n = int(params.n_frames)
    rng_height, rng_texture, rng_noise = _as_generator(seed).spawn(3)

    # Ground truth.
    h = height_map(params.family, shape, rng_height)
    if params.invert_height:
        h = 1.0 - h
    lo, hi = (float(v) for v in params.depth_range_um)
    depth = lo + h * (hi - lo)
    focus = (
        _default_focus(lo, hi, n)
        if params.focus_um is None
        else np.asarray(params.focus_um, np.float64)
    )
    focus = validate_focus_positions(focus, n, "synthetic stack")  # fail before rendering

    # Sharp radiance.
    if texture_image_override is not None:
        tex = np.asarray(texture_image_override)
        if tex.dtype.kind in "ui":
            tex = tex.astype(np.float32) / np.float32(np.iinfo(tex.dtype).max)
        tex = np.clip(tex.astype(np.float32), 0.0, 1.0)
        if tex.ndim == 3:
            tex = tex[..., :3]
        if tex.shape[:2] != shape:
            tex = _textured_view(tex, shape, rng_texture, params.zoom_range)
        if params.rgb and tex.ndim == 2:
            tex = _colourise(tex, rng_texture)
        elif not params.rgb and tex.ndim == 3:
            tex = _to_gray(tex)
        texture_name = "array"
    else:
        texture_name = params.texture
        if texture_name is None:
            choices = available_textures()
            texture_name = choices[int(rng_texture.integers(len(choices)))]
        tex = texture_image(
            texture_name, shape, rng_texture, rgb=params.rgb, zoom_range=params.zoom_range
        )
    ilo, ihi = params.intensity_range
    radiance = (ilo + (ihi - ilo) * tex).astype(np.float32)

    # Optics, then the camera: photons -> shot noise -> read noise -> gamma -> quantisation.
    frames = defocus_render(
        radiance,
        depth,
        focus,
        blur_px_per_um=params.blur_px_per_um,
        blur_floor_px=params.blur_floor_px,
        n_layers=params.n_layers,
    )
    np.clip(frames, 0.0, 1.0, out=frames)
    frames = _add_noise(frames, params.photons, params.read_noise, rng_noise)
    if params.gamma != 1.0:
        np.power(frames, np.float32(params.gamma), out=frames)
    if params.bit_depth == 8:
        frames = np.round(frames * 255.0).astype(np.uint8)
    elif params.bit_depth == 16:
        frames = np.round(frames * 65535.0).astype(np.uint16)

    seed_label = seed if not isinstance(seed, np.random.Generator) else "generator"
    meta = params.to_metadata()
    meta.update(
        synthetic=True,
        texture=texture_name,
        seed=seed_label if isinstance(seed_label, str) else int(seed_label),
        focus_um=focus.tolist(),
        depth_units=UNIT_UM,
        depth_convention="focus position (µm) at which the pixel is sharpest",
        blur_model=(
            "sigma_px = sqrt(blur_floor_px^2 + (blur_px_per_um*|z-f|)^2); "
            "layered normalised convolution"
        ),
    )
    stack = FocalStack(
        frames,
        focus_um=focus,
        pixel_size_um=params.pixel_size_um,
        source=f"synthetic:{params.family}:{seed_label}",
        metadata=meta,
    )
    return SyntheticStack(
        stack=stack,
        depth_um=depth.astype(np.float32),
        texture=radiance,
        params=replace(
            params, texture=texture_name if texture_image_override is None else params.texture
        ),
    )


def synthetic_stack(
    *,
    family: str = "waves",
    texture: str | np.ndarray | None = None,
    n_frames: int = 20,
    shape: tuple[int, int] = (256, 256),
    depth_range_um: tuple[float, float] = (0.0, 40.0),
    focus_um: Sequence[float] | np.ndarray | None = None,
    invert_height: bool = False,
    blur_px_per_um: float = 0.5,
    blur_floor_px: float = 0.5,
    n_layers: int = 32,
    intensity_range: tuple[float, float] = (0.05, 0.95),
    photons: float | None = 5000.0,
    read_noise: float = 0.003,
    gamma: float = 1.0,
    bit_depth: int = 8,
    rgb: bool = False,
    pixel_size_um: float = 1.0,
    seed: int | np.random.Generator = 0,
) -> SyntheticStack:
    """A synthetic focus stack of a textured surface, with its ground-truth depth.

    Parameters
    ----------
    family
        Height-map family, one of :data:`HEIGHT_FAMILIES`.
    texture
        Texture name from :data:`TEXTURES`, an image array (``(H, W)`` or ``(H, W, 3)``,
        float in ``[0, 1]`` or integer), or ``None`` for a random bundled/procedural one.
    n_frames
        Number of frames N (>= 2).
    shape
        ``(H, W)`` frame size in pixels.
    depth_range_um
        ``(low, high)``: the height map's 0 maps to ``low`` and 1 to ``high`` µm (reversed
        when ``invert_height``). The ground truth lies in this interval.
    focus_um
        ``(N,)`` focus positions in µm, strictly monotonic (increasing, decreasing, uneven
        all work). Default: evenly spaced and increasing over the depth range with half a
        step of margin at each end, so every pixel is in focus somewhere in the stack.
    invert_height
        Use ``1 - h`` (pits become mesas, caps become dimples).
    blur_px_per_um
        Defocus blur: Gaussian standard deviation in pixels per µm of ``|depth - focus|``.
    blur_floor_px
        In-focus blur standard deviation in pixels, combined in quadrature.
    n_layers
        Maximum number of depth layers of the renderer (see :func:`defocus_render`).
    intensity_range
        Texture values 0 and 1 map to these fractions of full scale.
    photons
        Expected photo-electrons at full scale (Poisson shot noise), or ``None``.
    read_noise
        Standard deviation of Gaussian read noise, as a fraction of full scale.
    gamma
        Output ``= signal ** gamma`` after noise (1 = linear camera).
    bit_depth
        8 (uint8), 16 (uint16) or 32 (float32 in ``[0, 1]``).
    rgb
        Produce ``(N, H, W, 3)`` frames.
    pixel_size_um
        Lateral pixel size in µm, stored on the stack (the blur is given in pixels).
    seed
        Integer seed (or a generator). Same arguments and seed give identical arrays.

    Returns
    -------
    SyntheticStack
        ``.stack`` (:class:`FocalStack`), ``.depth_um`` (float32 ``(H, W)``), ``.texture``
        (float32 sharp radiance) and ``.params``.

    Raises
    ------
    SynthError
        Invalid parameters (unknown family or texture, fewer than 2 frames, ...).
    FocusPositionError
        ``focus_um`` not strictly monotonic or of the wrong length.

    Examples
    --------
    >>> f = np.linspace(50, 5, 10)
    >>> s = synthetic_stack(family="plane", n_frames=10, shape=(32, 32), focus_um=f)
    >>> s.stack.units, bool(s.stack.focus_um[0] > s.stack.focus_um[-1])
    ('µm', True)
    """
    override = None
    tex_name: str | None
    if isinstance(texture, np.ndarray):
        override, tex_name = texture, None
    else:
        tex_name = texture
    params = SynthParams(
        family=family,
        texture=tex_name,
        n_frames=int(n_frames),
        shape=(int(shape[0]), int(shape[1])),
        depth_range_um=(float(depth_range_um[0]), float(depth_range_um[1])),
        focus_um=None
        if focus_um is None
        else tuple(float(v) for v in np.asarray(focus_um).ravel()),
        invert_height=bool(invert_height),
        blur_px_per_um=float(blur_px_per_um),
        blur_floor_px=float(blur_floor_px),
        n_layers=int(n_layers),
        intensity_range=(float(intensity_range[0]), float(intensity_range[1])),
        photons=None if photons is None else float(photons),
        read_noise=float(read_noise),
        gamma=float(gamma),
        bit_depth=int(bit_depth),
        rgb=bool(rgb),
        pixel_size_um=float(pixel_size_um),
    )
    return synthesize(params, seed, texture_image_override=override)


def random_training_stack(rng: np.random.Generator, **sample_options: Any) -> SyntheticStack:
    """A stack with a random configuration (:meth:`SynthParams.sample`) drawn from ``rng``.

    ``sample_options`` are passed to :meth:`SynthParams.sample` (``shape``, ``n_frames``,
    ``families``, ``textures``). Training must use seeds disjoint from the evaluation set.
    """
    params = SynthParams.sample(rng, **sample_options)
    return synthesize(params, rng)
