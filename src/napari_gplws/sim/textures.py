"""Textures for synthetic specimens: scikit-image's sample photographs and procedural patterns.

:func:`texture_image` gives an in-focus texture of a requested size: a random textured view
of one of :data:`SKIMAGE_TEXTURES` (shipped with scikit-image, no download) or a procedural
noise, dots, cells or fibres pattern, in gray or colour.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from napari_gplws.errors import SynthError
from napari_gplws.sim.heights import _check_shape

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
_VIEW_TRIES = 5  # random views tried to find a textured part of an image


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


_PROCEDURAL = {"noise": _tex_noise, "dots": _tex_dots, "cells": _tex_cells, "fibres": _tex_fibres}
