"""Thin specimens for the defocus-tile simulator: stained tissue, brightfield textures and
fluorescent spots, filaments and dots, as amplitude (and phase) images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Range of the peak phase delay (radians) of brightfield specimens. A stained tissue
#: section 3–5 µm thick with a nucleus–cytoplasm index difference of 0.01–0.04 delays
#: light of 0.55 µm by 2π·Δn·t/λ ≈ 0.3–2 rad, unstained cells in medium by up to ~2 rad;
#: 0.2–1.5 rad stays inside that and inside the weak-phase model's useful range.
PHASE_RAD: tuple[float, float] = (0.2, 1.5)

#: Brightfield specimens made from textures of :mod:`napari_gplws.sim.focus_stacks` (images bundled with
#: scikit-image or procedural), used as transmission maps.
_BF_TEXTURES_TRAIN = (
    "camera",
    "coins",
    "moon",
    "text",
    "brick",
    "grass",
    "gravel",
    "page",
    "astronaut",
    "chelsea",
    "noise",
    "cells",
    "fibres",
)
_BF_TEXTURES_TEST = ("ihc", "cell", "coffee")
#: Every specimen name understood by :func:`specimen_image`.
SPECIMENS: tuple[str, ...] = (
    ("he_tissue", "fluo_spots", "fluo_filaments")
    + tuple(f"bf_{t}" for t in _BF_TEXTURES_TRAIN)
    + tuple(f"bf_{t}" for t in _BF_TEXTURES_TEST)
    + ("fluo_dots",)
)
#: Specimens used for training (procedural ones are drawn from training seeds).
TRAIN_SPECIMENS: tuple[str, ...] = ("he_tissue", "fluo_spots", "fluo_filaments") + tuple(
    f"bf_{t}" for t in _BF_TEXTURES_TRAIN
)
#: Specimens held out for the test set: never seen in training.
TEST_SPECIMENS: tuple[str, ...] = tuple(f"bf_{t}" for t in _BF_TEXTURES_TEST) + ("fluo_dots",)
_FLUO = ("fluo_spots", "fluo_filaments", "fluo_dots")


# ------------------------------------------------------------------------------------------
# Specimens
# ------------------------------------------------------------------------------------------
def _stretch(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    if not hi > lo:
        return np.zeros_like(img, dtype=np.float32)
    return np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)


def _blobs(
    shape: tuple[int, int], rng: np.random.Generator, n: int, r_range: tuple[float, float]
) -> np.ndarray:
    """Sum of ``n`` random filled ellipses (soft edges), values in [0, 1]."""
    img = np.zeros(shape, np.float32)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a, b = rng.uniform(*r_range), rng.uniform(*r_range)
        t = rng.uniform(0, np.pi)
        y0, y1 = int(max(cy - 2 * max(a, b), 0)), int(min(cy + 2 * max(a, b) + 1, h))
        x0, x1 = int(max(cx - 2 * max(a, b), 0)), int(min(cx + 2 * max(a, b) + 1, w))
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = (dx * np.cos(t) + dy * np.sin(t)) / a
        v = (-dx * np.sin(t) + dy * np.cos(t)) / b
        rr = np.sqrt(u * u + v * v)
        img[y0:y1, x0:x1] = np.maximum(
            img[y0:y1, x0:x1], np.clip((1.0 - rr) * 4.0, 0, 1) * rng.uniform(0.6, 1.0)
        )
    return img


def _he_tissue(shape: tuple[int, int], rng: np.random.Generator, px_um: float) -> np.ndarray:
    """H&E-like RGB transmission in [0, 1]: eosin stroma and haematoxylin nuclei."""
    from napari_gplws.sim.textures import texture_image

    stroma = texture_image(str(rng.choice(["fibres", "noise"])), shape, rng)
    r_nuc = (2.0 / px_um, 5.0 / px_um)  # nuclei 4–10 µm across
    density = rng.uniform(0.2, 1.0)
    n = int(density * shape[0] * shape[1] / (np.pi * np.mean(r_nuc) ** 2) * 0.5) + 1
    nuclei = _blobs(shape, rng, n, r_nuc)
    chrom = 0.6 + 0.4 * texture_image("noise", shape, rng)
    hema = nuclei * chrom * rng.uniform(0.6, 1.4)
    eosin = (0.25 + 0.75 * stroma) * rng.uniform(0.3, 1.0)
    # Optical densities per unit stain (R, G, B), H&E-like.
    od_h = np.array([0.65, 0.70, 0.29], np.float32) * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    od_e = np.array([0.07, 0.99, 0.11], np.float32) * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    od = hema[..., None] * od_h + eosin[..., None] * od_e
    return np.exp(-od * rng.uniform(0.6, 1.5)).astype(np.float32)


def _fluo_spots(shape: tuple[int, int], rng: np.random.Generator, px_um: float) -> np.ndarray:
    n = int(rng.uniform(2e-4, 3e-3) * shape[0] * shape[1]) + 1
    img = np.zeros(shape, np.float32)
    np.add.at(
        img, (rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)), rng.uniform(0.2, 1.0, n)
    )
    img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.2) / px_um * 0.5)
    cells = _blobs(shape, rng, int(rng.integers(0, 6)), (3 / px_um, 10 / px_um)) * rng.uniform(
        0.0, 0.3
    )
    return _stretch(img + cells * img.max())


def _fluo_filaments(shape: tuple[int, int], rng: np.random.Generator, px_um: float) -> np.ndarray:
    img = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(3, 25))):
        n_pts = 200
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ang = rng.uniform(0, 2 * np.pi)
        turn = np.cumsum(rng.normal(0, 0.08, n_pts))
        ys = y + np.cumsum(np.sin(ang + turn)) * 1.5
        xs = x + np.cumsum(np.cos(ang + turn)) * 1.5
        ok = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        np.add.at(img, (ys[ok].astype(int), xs[ok].astype(int)), rng.uniform(0.3, 1.0))
    img = ndi.gaussian_filter(img, 0.6)
    return _stretch(img)


def _fluo_dots(shape: tuple[int, int], rng: np.random.Generator, px_um: float) -> np.ndarray:
    from napari_gplws.sim.textures import texture_image

    img = texture_image("dots", shape, rng)
    # Fluorescence: dark background. Flip textures that came out bright-on-average.
    if np.median(img) > 0.5:
        img = 1.0 - img
    return _stretch(np.clip(img - np.median(img), 0, None))


def specimen_image(
    name: str, shape: tuple[int, int], rng: np.random.Generator, px_um: float = 0.25
) -> np.ndarray:
    """Sharp specimen of one kind, float32 in [0, 1].

    Brightfield specimens (``he_tissue``, ``bf_*``) return an ``(H, W, 3)`` transmission;
    fluorescence specimens (``fluo_*``) an ``(H, W)`` emitter density (dark background).

    Raises
    ------
    ValueError
        For an unknown name (the message lists :data:`SPECIMENS`).
    """
    shape = (int(shape[0]), int(shape[1]))
    if name == "he_tissue":
        return _he_tissue(shape, rng, px_um)
    if name == "fluo_spots":
        return _fluo_spots(shape, rng, px_um)
    if name == "fluo_filaments":
        return _fluo_filaments(shape, rng, px_um)
    if name == "fluo_dots":
        return _fluo_dots(shape, rng, px_um)
    if name.startswith("bf_") and name in SPECIMENS:
        from napari_gplws.sim.textures import texture_image

        tex = texture_image(name[3:], shape, rng, rgb=True, zoom_range=(0.5, 2.0))
        # Transmission: the texture's bright parts are clear glass, dark parts absorb.
        contrast = rng.uniform(0.3, 0.95)
        return (1.0 - contrast * (1.0 - tex)).astype(np.float32)
    raise ValueError(f"Unknown specimen '{name}'; choose one of: {', '.join(SPECIMENS)}.")
