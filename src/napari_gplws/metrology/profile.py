"""Height profiles: the height map sampled along a drawn line, and step heights on it.

:func:`height_profile` samples a height (depth) map along a polyline given in pixel
coordinates, one sample per pixel of travel (bilinear interpolation with
``scipy.ndimage.map_coordinates``, NaN-aware), and returns the height against the distance
travelled along the line in physical units (µm when the pixel size is known, with
anisotropic pixels handled). :func:`step_height` gives the height difference between two
marker positions, each optionally averaged over a short stretch of the profile, and
:func:`write_profile_csv` saves a profile with its units and markers.

Height and depth
----------------
Depth grows away from the objective (it is the focus position where a pixel is sharpest).
What a person reads is **height**, up toward the objective, so that going down into a hole
gives a negative step: :func:`height_from_depth` makes ``height = −depth``, or ``+depth``
with ``inverted=True`` for stands whose focus drive runs the other way, and
:func:`height_convention` says in words which one a plot or a file shows. A profile
records what it holds (:attr:`HeightProfile.quantity`) and the CSV names it.

It does not draw anything (the Height profile widget does) and knows nothing of napari.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import GplwsError

__all__ = [
    "HeightProfile",
    "height_at",
    "height_convention",
    "height_from_depth",
    "height_profile",
    "step_height",
    "write_profile_csv",
]


def height_from_depth(depth: np.ndarray, *, inverted: bool = False) -> np.ndarray:
    """Height (up toward the objective) of a depth map: ``−depth``; ``+depth`` when
    ``inverted`` (stands where a larger focus position is closer to the objective).

    Examples
    --------
    >>> height_from_depth(np.array([2.0, 5.0])).tolist()
    [-2.0, -5.0]
    """
    d = np.asarray(depth, dtype=np.float64)
    return d.copy() if inverted else -d


def height_convention(inverted: bool = False) -> str:
    """The height convention in words, for plots, labels and file headers."""
    if inverted:
        return "height = +depth (inverted: larger focus position is higher)"
    return "height = −depth (up toward the objective)"


@dataclass(frozen=True)
class HeightProfile:
    """A height map sampled along a polyline.

    Attributes
    ----------
    distance : (K,) float64
        Distance from the first vertex along the line, in :attr:`distance_units`.
    height : (K,) float64
        Height at each sample in :attr:`units` (NaN off the map or where it has no value).
    rows, cols : (K,) float64
        Pixel coordinates of the samples.
    units, distance_units : str
        ``"µm"``/``"frame"`` and ``"µm"``/``"px"``.
    quantity : str
        What :attr:`height` holds: ``"height"`` (the default), ``"depth"``, or ``"value"``
        for a map that is not a depth map (grey levels…).
    depth_sign : float or None
        For a height made from a depth map: ``height = depth_sign · depth`` (−1, or +1
        inverted); ``None`` otherwise.
    """

    distance: np.ndarray
    height: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    units: str
    distance_units: str
    quantity: str = "height"
    depth_sign: float | None = None

    @property
    def length(self) -> float:
        """Total length of the line in :attr:`distance_units`."""
        return float(self.distance[-1]) if len(self.distance) else 0.0


def _sample(depth: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples; NaN off the map and where the nearby pixels hold no value."""
    valid = np.isfinite(depth)
    coords = np.vstack([rows, cols])
    # "nearest" extends the edge pixels over the outer half pixel; farther out is NaN below.
    num = ndi.map_coordinates(np.where(valid, depth, 0.0), coords, order=1, mode="nearest")
    den = ndi.map_coordinates(valid.astype(np.float64), coords, order=1, mode="nearest")
    h, w = depth.shape
    inside = (rows >= -0.5) & (rows <= h - 0.5) & (cols >= -0.5) & (cols <= w - 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inside & (den > 0.5), num / np.maximum(den, 1e-12), np.nan)


def height_profile(
    depth: np.ndarray,
    polyline_rc: np.ndarray | Sequence[Sequence[float]],
    *,
    spacing_yx: Sequence[float] = (1.0, 1.0),
    units: str = "µm",
    distance_units: str = "µm",
    samples_per_pixel: float = 1.0,
    quantity: str = "height",
    depth_sign: float | None = None,
) -> HeightProfile:
    """Sample a height map along a polyline.

    Parameters
    ----------
    depth
        ``(H, W)`` height map; NaN = no data.
    polyline_rc
        ``(P, 2)`` vertices ``(row, col)`` in pixel coordinates (pixel centres at integers),
        ``P >= 2``; vertices may lie outside the map (those samples are NaN).
    spacing_yx
        Pixel size ``(dy, dx)`` in ``distance_units``; distances are physical lengths, so
        anisotropic pixels are measured correctly.
    units, distance_units
        Units of the heights and of the distances, recorded in the result.
    samples_per_pixel
        Sampling density along each segment (per pixel of its longer pixel extent).
    quantity, depth_sign
        Recorded in the result (see :class:`HeightProfile`): pass the output of
        :func:`height_from_depth` with ``depth_sign=-1.0`` (or ``+1.0`` inverted).

    Returns
    -------
    HeightProfile
        Samples at every vertex and evenly between them; ``distance`` starts at 0.

    Raises
    ------
    GplwsError
        Not a 2-D map, fewer than two vertices, or a line of zero length.

    Examples
    --------
    >>> d = np.tile(np.arange(10.0), (5, 1))      # height = column
    >>> p = height_profile(d, [(2, 0), (2, 9)], spacing_yx=(0.5, 0.5))
    >>> p.length, float(p.height[-1])
    (4.5, 9.0)
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.dtype.kind not in "uifb":
        raise GplwsError(
            f"A height profile needs a 2-D height map; got shape {d.shape} dtype {d.dtype}."
        )
    pts = np.asarray(polyline_rc, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or not np.isfinite(pts).all():
        raise GplwsError("A profile line needs at least two (row, col) vertices.")
    dy, dx = (float(v) for v in spacing_yx)
    if not (dy > 0 and dx > 0):
        raise GplwsError(f"Pixel spacing must be positive; got {tuple(spacing_yx)}.")
    rows, cols = [pts[0, 0]], [pts[0, 1]]
    for (r0, c0), (r1, c1) in itertools.pairwise(pts):
        n = max(1, int(np.ceil(max(abs(r1 - r0), abs(c1 - c0)) * float(samples_per_pixel))))
        t = np.arange(1, n + 1, dtype=np.float64) / n
        rows.extend(r0 + t * (r1 - r0))
        cols.extend(c0 + t * (c1 - c0))
    rr, cc = np.asarray(rows), np.asarray(cols)
    seg = np.hypot(np.diff(rr) * dy, np.diff(cc) * dx)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    if dist[-1] <= 0:
        raise GplwsError("The profile line has zero length; drag its end points apart.")
    # Sample inside the line's bounding box only (plus a margin for interpolation).
    h, w = d.shape
    r_lo = int(np.clip(np.floor(rr.min()) - 2, 0, h - 1))
    r_hi = int(np.clip(np.ceil(rr.max()) + 3, 1, h))
    c_lo = int(np.clip(np.floor(cc.min()) - 2, 0, w - 1))
    c_hi = int(np.clip(np.ceil(cc.max()) + 3, 1, w))
    crop = d[r_lo:r_hi, c_lo:c_hi].astype(np.float64)
    height = _sample(crop, rr - r_lo, cc - c_lo)
    # Samples beyond the map's own edges are NaN, not the crop's edge value.
    off_map = (rr < -0.5) | (rr > h - 0.5) | (cc < -0.5) | (cc > w - 0.5)
    height[off_map] = np.nan
    return HeightProfile(
        distance=dist,
        height=height,
        rows=rr,
        cols=cc,
        units=str(units),
        distance_units=str(distance_units),
        quantity=str(quantity),
        depth_sign=None if depth_sign is None else float(depth_sign),
    )


def height_at(profile: HeightProfile, position: float, half_width: float = 0.0) -> float:
    """Height at a distance along the profile, averaged over ``position ± half_width``.

    With ``half_width`` 0 (or a stretch holding no sample) the height is linearly
    interpolated between the two nearest samples. NaN samples are ignored; NaN when none
    is left.
    """
    x, z = profile.distance, profile.height
    ok = np.isfinite(z)
    if not ok.any():
        return float("nan")
    pos = float(np.clip(position, x[0], x[-1]))
    if half_width > 0:
        sel = ok & (np.abs(x - pos) <= half_width)
        if sel.any():
            return float(np.mean(z[sel]))
    return float(np.interp(pos, x[ok], z[ok]))


def step_height(
    profile: HeightProfile, marker_a: float, marker_b: float, half_width: float = 0.0
) -> float:
    """Height at marker B minus height at marker A (distances along the profile).

    Parameters
    ----------
    profile
        The profile (:func:`height_profile`).
    marker_a, marker_b
        Positions in ``profile.distance_units``; clipped to the line.
    half_width
        Average each side over ``± half_width`` of profile (same unit) to beat noise.

    Returns
    -------
    float
        ``h(B) − h(A)`` in ``profile.units``; NaN when either side has no value.
    """
    return height_at(profile, marker_b, half_width) - height_at(profile, marker_a, half_width)


def write_profile_csv(
    path: str | os.PathLike[str],
    profile: HeightProfile,
    *,
    spacing_yx: Sequence[float] = (1.0, 1.0),
    translate_yx: Sequence[float] = (0.0, 0.0),
    markers: tuple[float, float] | None = None,
    half_width: float = 0.0,
    source: str = "",
) -> Path:
    """Write a profile as CSV: ``distance, height, x, y, row, col`` with units in the header.

    The second column is named after :attr:`HeightProfile.quantity` (``height_µm``,
    ``depth_µm`` or ``value``); a height made from a depth map also gets a ``depth``
    column, so both are in the file. Lines starting with ``#`` before the header state the
    source, what the columns hold (the height convention), the units and, when ``markers``
    are given, the marker positions and the step between them.
    ``x``/``y`` are world coordinates (``translate + index · spacing``).

    Raises
    ------
    GplwsError
        The folder does not exist or the file cannot be written.
    """
    p = Path(os.fspath(path))
    if not p.parent.is_dir():
        raise GplwsError(
            f"The folder '{p.parent}' does not exist; choose another place for '{p.name}'."
        )
    dy, dx = (float(v) for v in spacing_yx)
    ty, tx = (float(v) for v in translate_yx)
    du, hu = profile.distance_units, profile.units
    q, sign = profile.quantity, profile.depth_sign

    def col(name: str) -> str:
        return f"{name}_{hu}" if hu else name

    def num(v: float) -> str:
        return "" if not np.isfinite(v) else f"{v:.6g}"

    try:
        with p.open("w", newline="", encoding="utf-8") as fh:
            if source:
                fh.write(f"# source: {source}\n")
            if sign is not None:
                fh.write(f"# {height_convention(inverted=sign > 0)}; depth grows away from the objective\n")
            elif q == "value":
                fh.write("# the map has no depth units: the values are not heights\n")
            fh.write(f"# {q} units: {hu or 'none'}; distance units: {du}\n")
            if markers is not None:
                a, b = markers
                step = step_height(profile, a, b, half_width)
                what = "step height" if q == "height" else f"{q} difference"
                fh.write(
                    f"# marker A: {a:.6g} {du}; marker B: {b:.6g} {du}; averaged over ±{half_width:g} {du}; "
                    f"{what} B−A: {step:.6g} {hu}\n".replace(" \n", "\n")
                )
            wr = csv.writer(fh)
            header = [f"distance_{du}", col(q)]
            if sign is not None:
                header.append(col("depth"))
            wr.writerow([*header, f"x_{du}", f"y_{du}", "row", "col"])
            for s, z, r, c in zip(profile.distance, profile.height, profile.rows, profile.cols):
                row = [f"{s:.6g}", num(z)]
                if sign is not None:
                    row.append(num(z / sign))
                wr.writerow([*row, f"{tx + c * dx:.6g}", f"{ty + r * dy:.6g}", f"{r:.4f}", f"{c:.4f}"])
    except OSError as exc:
        raise GplwsError(f"Could not write '{p}': {exc}.") from None
    return p
