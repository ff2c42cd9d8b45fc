"""Synthetic height maps: planes, terraces, pits, caps, waves and smooth relief.

:func:`height_map` returns a surface in [0, 1] of one of :data:`HEIGHT_FAMILIES`, which the
focus-stack simulator scales to a depth range in µm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import SynthError

#: Height-map families understood by :func:`height_map`.
HEIGHT_FAMILIES: tuple[str, ...] = ("plane", "terraces", "pits", "caps", "waves", "smooth")


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


_FAMILY_FUNCS = {
    "plane": _plane,
    "terraces": _terraces,
    "pits": _pits,
    "caps": _caps,
    "waves": _waves,
    "smooth": _smooth,
}
