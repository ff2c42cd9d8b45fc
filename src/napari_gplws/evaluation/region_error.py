"""Errors summarised per region of a grid: the numbers behind the *Focal error map*.

What it is for
--------------
* :func:`region_rmse`: root-mean-square difference between a reconstructed depth map and its
  ground truth in each region (NaN pixels in either map are ignored; a region without a
  valid pixel is NaN), and :func:`overall_rmse` over the whole map. Regions are those of
  :func:`napari_gplws.defocus.regions.region_bounds` (equal fractions of the frame,
  boundaries rounded to whole pixels), the same partition autofocus uses for its regions'
  focus curves; here the grid is first checked against the map (:func:`check_grid`).
* :func:`common_units`: the unit two depth maps share, or an error when they declare
  different ones (µm against frame index cannot be compared).
* :func:`frame_error_summary`: one row per analysed frame of an
  :class:`~napari_gplws.defocus.result.AutofocusResult`: mean absolute predicted defocus
  and mean absolute focal error over the regions that have an estimate.

What it is not: whole-map depth metrics (:mod:`napari_gplws.evaluation.metrics`) or the
autofocus computation itself (:mod:`napari_gplws.defocus`). No Qt, no napari.

Examples
--------
>>> truth = np.zeros((6, 6))
>>> depth = truth.copy()
>>> depth[:3, :3] = 2.0
>>> region_rmse(depth, truth, grid=(2, 2))
array([[2., 0.],
       [0., 0.]])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gplws.defocus import region_bounds
from napari_gplws.evaluation.metrics import MetricError

if TYPE_CHECKING:
    from napari_gplws.defocus import AutofocusResult

__all__ = [
    "check_grid",
    "common_units",
    "frame_error_summary",
    "overall_rmse",
    "region_rmse",
]


def check_grid(grid: tuple[int, int], shape_yx: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of a grid that fits a map of ``shape_yx`` pixels.

    Raises
    ------
    MetricError
        ``grid`` is not two numbers, is smaller than 1×1, or has more rows or columns than
        the map has pixels.
    """
    try:
        rows, cols = (int(grid[0]), int(grid[1]))
    except (TypeError, ValueError, IndexError):
        raise MetricError(f"grid must be (rows, columns); got {grid!r}.") from None
    if rows < 1 or cols < 1:
        raise MetricError(f"grid must be at least (1, 1); got ({rows}, {cols}).")
    if rows > shape_yx[0] or cols > shape_yx[1]:
        raise MetricError(
            f"A {rows}×{cols} grid does not fit a map of {shape_yx[0]}×{shape_yx[1]} pixels; "
            "use fewer rows or columns."
        )
    return rows, cols


def _pair(
    depth: np.ndarray, truth: np.ndarray, labels: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(depth, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if d.ndim != 2 or t.ndim != 2:
        raise MetricError(
            f"The {labels[0]} {d.shape} and the {labels[1]} {t.shape} must both be 2-D maps (H, W)."
        )
    if d.shape != t.shape:
        raise MetricError(
            f"The {labels[0]} is {d.shape[0]}×{d.shape[1]} pixels but the {labels[1]} is "
            f"{t.shape[0]}×{t.shape[1]}; they must be the same size (crop or resample one)."
        )
    return d, t, np.isfinite(d) & np.isfinite(t)


def region_rmse(
    depth: np.ndarray,
    truth: np.ndarray,
    grid: tuple[int, int] = (3, 3),
    *,
    labels: tuple[str, str] = ("reconstruction", "ground truth"),
) -> np.ndarray:
    """Root-mean-square difference ``depth − truth`` in each region of a grid.

    Parameters
    ----------
    depth, truth
        ``(H, W)`` depth maps in the same unit (µm, or frame index); NaN or infinite pixels
        in either map are left out.
    grid
        Regions ``(rows, columns)``, at least 1×1 and no more than the map's pixels; see
        :func:`napari_gplws.defocus.regions.region_bounds`.
    labels
        What to call the two maps in error messages (e.g. the layers' names).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float64 in the maps' unit; NaN where a region has no pixel that is
        finite in both maps.

    Raises
    ------
    MetricError
        The maps are not 2-D or differ in shape, or the grid does not fit.
    """
    d, t, valid = _pair(depth, truth, labels)
    bounds = region_bounds(d.shape, check_grid(grid, d.shape))
    sq = np.where(valid, (d - t) ** 2, 0.0)
    out = np.full((len(bounds), len(bounds[0])), np.nan)
    for i, row in enumerate(bounds):
        for j, (y0, y1, x0, x1) in enumerate(row):
            n = int(valid[y0:y1, x0:x1].sum())
            if n:
                out[i, j] = math.sqrt(float(sq[y0:y1, x0:x1].sum()) / n)
    return out


def overall_rmse(
    depth: np.ndarray,
    truth: np.ndarray,
    *,
    labels: tuple[str, str] = ("reconstruction", "ground truth"),
) -> float:
    """RMSE of ``depth − truth`` over every pixel finite in both maps (NaN when none is)."""
    d, t, valid = _pair(depth, truth, labels)
    if not valid.any():
        return float("nan")
    return math.sqrt(float(np.mean((d[valid] - t[valid]) ** 2)))


def common_units(
    units_a: str | None,
    units_b: str | None,
    *,
    labels: tuple[str, str] = ("reconstruction", "ground truth"),
    default: str = "µm",
) -> str:
    """The unit two depth maps share: the one declared (``None`` = not declared).

    Returns ``default`` when neither declares a unit.

    Raises
    ------
    MetricError
        Both declare a unit and the units differ (e.g. ``"µm"`` and ``"frame"``).
    """
    a, b = (units_a or None), (units_b or None)
    if a is not None and b is not None and a != b:
        raise MetricError(
            f"The {labels[0]} is in {a} but the {labels[1]} is in {b}; compare maps in the same "
            "unit (reconstruct with the focus positions in µm, or convert one of them)."
        )
    return a or b or default


def frame_error_summary(result: AutofocusResult) -> list[dict[str, Any]]:
    """One row per analysed frame of an autofocus result.

    Keys: ``frame`` (index in the stack), ``focus_um`` (or ``None``),
    ``mean_abs_predicted_um`` (mean |predicted defocus| over the regions with an estimate),
    ``mean_abs_error_um`` (mean |predicted − true| over the regions where both exist;
    ``None`` without truth), ``regions_estimated`` and ``regions`` (counts). Means over no
    region are ``None``.
    """
    rows = []
    n_regions = int(result.grid[0] * result.grid[1])
    for f, k in enumerate(result.frames):
        pred = np.asarray(result.predicted_um[f], np.float64)
        finite = pred[np.isfinite(pred)]
        row: dict[str, Any] = {
            "frame": int(k),
            "focus_um": None if result.focus_um is None else float(result.focus_um[f]),
            "mean_abs_predicted_um": float(np.abs(finite).mean()) if finite.size else None,
            "mean_abs_error_um": None,
            "regions_estimated": int(finite.size),
            "regions": n_regions,
        }
        if result.error_um is not None:
            err = np.asarray(result.error_um[f], np.float64)
            err = err[np.isfinite(err)]
            row["mean_abs_error_um"] = float(np.abs(err).mean()) if err.size else None
        rows.append(row)
    return rows
