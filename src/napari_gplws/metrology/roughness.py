"""Areal surface-texture parameters of a height map (ISO 25178 height parameters).

:func:`surface_parameters` levels a height map by subtracting its least-squares plane and
reports, over the whole map or a rectangle, the height parameters of ISO 25178-2:

* ``Sa`` — arithmetic mean height, mean of ``|z|``;
* ``Sq`` — root-mean-square height, ``sqrt(mean(z²))``;
* ``Sp`` — maximum peak height, ``max(z)``;
* ``Sv`` — maximum pit depth, ``|min(z)|`` (a positive number);
* ``Sz`` — maximum height, ``Sp + Sv``;
* ``Ssk``, ``Sku`` — skewness ``mean(z³)/Sq³`` and kurtosis ``mean(z⁴)/Sq⁴`` (unitless);

where ``z`` is the levelled height. Values are in the height map's unit (µm, or frame index
when the focus positions were unknown). No S-filter or L-filter (Gaussian wavelength
cut-offs) is applied: these are the parameters of the primary, plane-levelled surface.

Why our own code: surfalize, the maintained Python surface-metrology package, is GPL-3.0,
which a BSD-3 plugin cannot depend on; the parameters above are a few lines of NumPy each,
tested against closed-form values in ``tests/test_roughness.py``.

It does not make meshes (:mod:`napari_gplws.metrology.mesh`) nor profiles (:mod:`napari_gplws.metrology.profile`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import GplwsError

__all__ = [
    "PARAMETERS",
    "SurfaceParameters",
    "level_plane",
    "surface_parameters",
    "write_parameters_csv",
]

#: Parameter names in the order they are reported.
PARAMETERS = ("Sa", "Sq", "Sp", "Sv", "Sz", "Ssk", "Sku")
_UNITLESS = ("Ssk", "Sku")


@dataclass(frozen=True)
class SurfaceParameters:
    """Result of :func:`surface_parameters`.

    Attributes
    ----------
    values : dict[str, float]
        ``Sa``, ``Sq``, ``Sp``, ``Sv``, ``Sz`` in :attr:`units`; ``Ssk``, ``Sku`` unitless.
    units : str
        Unit of the height parameters.
    region : (row0, row1, col0, col1)
        Half-open pixel rectangle that was measured.
    n_pixels : int
        Number of finite pixels used.
    plane : (a, b, c)
        The removed plane ``a + b·x + c·y`` (x, y in pixel-spacing units) in :attr:`units`.
    area : float
        Measured area in ``lateral_units²`` (pixel count × pixel area).
    lateral_units : str
        Unit of the pixel spacing (``"µm"`` or ``"px"``).
    """

    values: dict[str, float]
    units: str
    region: tuple[int, int, int, int]
    n_pixels: int
    plane: tuple[float, float, float]
    area: float
    lateral_units: str = "µm"
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def unit_of(self, name: str) -> str:
        """Unit of one parameter (``""`` for the unitless ones)."""
        return "" if name in _UNITLESS else self.units

    def format(self, digits: int = 4) -> str:
        """One line per parameter, e.g. ``"Sa  1.234 µm"``."""
        return "\n".join(
            f"{k:<4}{self.values[k]:.{digits}g} {self.unit_of(k)}".rstrip() for k in PARAMETERS
        )


def level_plane(
    height: np.ndarray, mask: np.ndarray | None = None, spacing_yx: Sequence[float] = (1.0, 1.0)
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Subtract the least-squares plane from a height map.

    Parameters
    ----------
    height
        ``(H, W)`` heights; NaN pixels are ignored (and stay NaN).
    mask
        Optional ``(H, W)`` bool: only these pixels fit the plane (others are levelled too).
    spacing_yx
        Pixel size ``(dy, dx)``; only scales the reported slopes.

    Returns
    -------
    levelled : (H, W) float64
        ``height − plane`` (a new array).
    plane : (a, b, c)
        ``a + b·x + c·y`` with ``x = col·dx``, ``y = row·dy``.

    Raises
    ------
    GplwsError
        Fewer than three usable pixels.
    """
    z = np.asarray(height, dtype=np.float64)
    use = np.isfinite(z) if mask is None else (np.isfinite(z) & np.asarray(mask, bool))
    if use.sum() < 3:
        raise GplwsError("Plane levelling needs at least three pixels with a height value.")
    dy, dx = (float(v) for v in spacing_yx)
    rows, cols = np.nonzero(use)
    x, y = cols * dx, rows * dy
    # Centre the coordinates so the normal equations are well conditioned on large maps.
    xm, ym = x.mean(), y.mean()
    a_mat = np.column_stack([np.ones_like(x), x - xm, y - ym])
    coef, *_ = np.linalg.lstsq(a_mat, z[use], rcond=None)
    c0, b, c = (float(v) for v in coef)
    a = c0 - b * xm - c * ym
    yy, xx = np.indices(z.shape, dtype=np.float64)
    return z - (a + b * xx * dx + c * yy * dy), (a, b, c)


def _region(shape: tuple[int, int], region: Sequence[float] | None) -> tuple[int, int, int, int]:
    h, w = shape
    if region is None:
        return 0, h, 0, w
    r0, r1, c0, c1 = (round(float(v)) for v in region)
    r0, r1 = sorted((r0, r1))
    c0, c1 = sorted((c0, c1))
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, h), min(c1, w)
    if r1 - r0 < 2 or c1 - c0 < 2:
        raise GplwsError(
            f"The rectangle {tuple(region)} covers less than 2×2 pixels of the {h}×{w} map; "
            "draw a larger rectangle inside the height map."
        )
    return r0, r1, c0, c1


def surface_parameters(
    height: np.ndarray,
    *,
    region: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
    spacing_yx: Sequence[float] = (1.0, 1.0),
    units: str = "µm",
    lateral_units: str = "µm",
    level: bool = True,
    label: str = "",
) -> SurfaceParameters:
    """Areal height parameters (Sa, Sq, Sp, Sv, Sz, Ssk, Sku) after plane levelling.

    Parameters
    ----------
    height
        ``(H, W)`` height map; NaN = no data.
    region
        ``(row0, row1, col0, col1)`` half-open rectangle in pixels (clipped to the map), or
        ``None`` for the whole map. The plane is fitted inside the region.
    mask
        Optional ``(H, W)`` bool restricting the pixels further (e.g. a rotated rectangle).
    spacing_yx
        Pixel size ``(dy, dx)`` in ``lateral_units``.
    units, lateral_units
        Units of the heights and of the spacing, recorded in the result.
    level
        Subtract the least-squares plane first (ISO practice for a tilted sample). When
        ``False`` only the mean height is removed.
    label
        Free text carried into the CSV (e.g. ``"whole map"`` or ``"rectangle"``).

    Returns
    -------
    SurfaceParameters

    Raises
    ------
    GplwsError
        Not a 2-D map, a rectangle outside it, or fewer than three pixels with a value.

    Examples
    --------
    >>> z = np.zeros((4, 4)); z[:, 2:] = 1.0
    >>> p = surface_parameters(z, level=False)
    >>> p.values["Sa"], p.values["Sz"]
    (0.5, 1.0)
    """
    z = np.asarray(height)
    if z.ndim != 2 or z.dtype.kind not in "uifb":
        raise GplwsError(
            f"Surface parameters need a 2-D height map; got shape {z.shape} dtype {z.dtype}."
        )
    r0, r1, c0, c1 = _region(z.shape, region)
    sub = z[r0:r1, c0:c1].astype(np.float64)
    use = np.isfinite(sub)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != z.shape:
            raise GplwsError(f"The mask's shape {m.shape} differs from the map's {z.shape}.")
        use &= m[r0:r1, c0:c1]
    if use.sum() < 3:
        raise GplwsError("The chosen region holds fewer than three pixels with a height value.")
    if level:
        levelled, plane = level_plane(sub, use, spacing_yx)
        a, b, c = plane
        # Express the plane in the whole map's pixel coordinates.
        dy, dx = (float(v) for v in spacing_yx)
        plane = (a - b * c0 * dx - c * r0 * dy, b, c)
    else:
        mean = float(sub[use].mean())
        levelled, plane = sub - mean, (mean, 0.0, 0.0)
    r = levelled[use]
    r = r - r.mean()  # the plane fit leaves zero mean; this removes rounding only
    sq = float(np.sqrt(np.mean(r**2)))
    sp, sv = float(r.max()), float(-r.min())
    values = {
        "Sa": float(np.mean(np.abs(r))),
        "Sq": sq,
        "Sp": sp,
        "Sv": sv,
        "Sz": sp + sv,
        "Ssk": float(np.mean(r**3) / sq**3) if sq > 0 else 0.0,
        "Sku": float(np.mean(r**4) / sq**4) if sq > 0 else 0.0,
    }
    dy, dx = (float(v) for v in spacing_yx)
    return SurfaceParameters(
        values=values,
        units=str(units),
        region=(r0, r1, c0, c1),
        n_pixels=int(use.sum()),
        plane=tuple(float(v) for v in plane),  # type: ignore[arg-type]
        area=float(use.sum() * dy * dx),
        lateral_units=str(lateral_units),
        label=label,
    )


def write_parameters_csv(
    path: str | os.PathLike[str],
    results: SurfaceParameters | Iterable[SurfaceParameters],
    *,
    source: str = "",
    surface: str = "",
) -> Path:
    """Write one row per measured region: label, region, pixels, area and every parameter.

    Columns: ``source, region, row0, row1, col0, col1, n_pixels, area_<unit>², Sa_<unit>, …,
    Ssk, Sku``; the units are in the column names so the file stands on its own. With
    ``surface`` (what the map holds, e.g. ``"height = −depth (up toward the objective)"``,
    which decides what is a peak and what a pit) a last column ``surface`` says so.

    Raises
    ------
    GplwsError
        The folder does not exist or the file cannot be written.
    """
    rows = [results] if isinstance(results, SurfaceParameters) else list(results)
    if not rows:
        raise GplwsError("There are no surface parameters to write.")
    p = Path(os.fspath(path))
    if not p.parent.is_dir():
        raise GplwsError(
            f"The folder '{p.parent}' does not exist; choose another place for '{p.name}'."
        )
    first = rows[0]
    header = [
        "source",
        "region",
        "row0",
        "row1",
        "col0",
        "col1",
        "n_pixels",
        f"area_{first.lateral_units}2",
    ]
    header += [f"{k}_{first.units}" if k not in _UNITLESS else k for k in PARAMETERS]
    extra = [surface] if surface else []
    if surface:
        header.append("surface")
    try:
        with p.open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(header)
            for res in rows:
                wr.writerow(
                    [source, res.label, *res.region, res.n_pixels, f"{res.area:.6g}"]
                    + [f"{res.values[k]:.6g}" for k in PARAMETERS]
                    + extra
                )
    except OSError as exc:
        raise GplwsError(f"Could not write '{p}': {exc}.") from None
    return p
