"""Regions of a frame, and the true best focus of each region from a focal stack.

* :func:`region_bounds`: the pixel rows and columns of each region of a ``rows × cols``
  grid (equal fractions of the frame, boundaries rounded to whole pixels). It is the one
  definition of a region: the focus curves here, the region errors of
  :mod:`napari_gplws.evaluation.region_error` and the Focal error map all use it.
* :func:`region_index`: the region each tile belongs to (the region holding its centre).
* :func:`region_focus_curves`: each region's focus curve (mean sum-modified-Laplacian over
  the region, per frame), and :func:`best_focus_from_curve`: its peak, refined to a fraction
  of a frame by a Gaussian fit through the three highest samples. A curve that peaks on the
  first or last frame has no bracketed focus: NaN.

What it is not: the network's estimate (:mod:`napari_gplws.defocus.predict`) or how the
two are combined into a result (:mod:`napari_gplws.defocus.analyse`).
"""

from __future__ import annotations

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.stack import index_to_position

__all__ = ["best_focus_from_curve", "region_bounds", "region_focus_curves", "region_index"]


def region_bounds(
    shape_yx: tuple[int, int], grid: tuple[int, int] = (3, 3)
) -> list[list[tuple[int, int, int, int]]]:
    """Pixel bounds ``(y0, y1, x0, x1)`` (end exclusive) of each region, as ``[row][col]``.

    Region ``(i, j)`` spans rows ``round(i·H/rows) … round((i+1)·H/rows) − 1`` and the
    columns likewise: equal fractions of the frame, rounded to whole pixels. The grid is not
    checked here: a grid with more rows or columns than the frame has pixels gives empty
    regions (callers that need a check, e.g.
    :func:`napari_gplws.evaluation.region_error.region_rmse`, make it first).

    Examples
    --------
    >>> region_bounds((500, 700))[1][2]
    (167, 333, 467, 700)
    """
    h, w = int(shape_yx[0]), int(shape_yx[1])
    rows, cols = int(grid[0]), int(grid[1])
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    return [
        [(int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1])) for j in range(cols)]
        for i in range(rows)
    ]


def region_index(
    origins: np.ndarray, tile_px: int, shape_yx: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    """``(M, 2)`` region ``(row, col)`` of each tile: the region that holds the tile's centre.

    ``origins`` are the tiles' top-left corners (:func:`~napari_gplws.defocus.tiles.tile_origins`);
    a centre beyond the frame (a padded tile of a small frame) counts as on its last pixel.
    """
    cy = np.minimum(origins[:, 0] + tile_px / 2, shape_yx[0] - 1e-6)
    cx = np.minimum(origins[:, 1] + tile_px / 2, shape_yx[1] - 1e-6)
    ry = np.clip((cy * grid[0] / shape_yx[0]).astype(int), 0, grid[0] - 1)
    rx = np.clip((cx * grid[1] / shape_yx[1]).astype(int), 0, grid[1] - 1)
    return np.stack([ry, rx], axis=1)


def region_focus_curves(
    frames: np.ndarray,
    grid: tuple[int, int] = (3, 3),
    *,
    window: int = 9,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> np.ndarray:
    """Focus curve of each region: mean sum-modified-Laplacian (``window``) per frame.

    Parameters
    ----------
    frames
        ``(N, H, W[, 3])``.
    grid
        Regions ``(rows, columns)``; region ``(i, j)`` spans equal fractions of the frame
        (:func:`region_bounds`).
    window
        Side of the sum-modified-Laplacian window in pixels.
    progress, cancel
        ``progress(done, total)`` after each frame; ``cancel()`` is checked before each.

    Returns
    -------
    numpy.ndarray
        ``(N, rows, cols)`` float64.
    """
    from napari_gplws.dff.measures import focus_measure

    n = len(frames)
    h, w = frames.shape[1:3]
    bounds = region_bounds((h, w), grid)
    curves = np.zeros((n, grid[0], grid[1]))
    for k in range(n):
        check_cancel(cancel)
        fm = focus_measure(frames[k], "sml", window)
        for i in range(grid[0]):
            for j in range(grid[1]):
                y0, y1, x0, x1 = bounds[i][j]
                curves[k, i, j] = float(fm[y0:y1, x0:x1].mean(dtype=np.float64))
        report(progress, k + 1, n)
    return curves


def best_focus_from_curve(curve: np.ndarray, positions: np.ndarray) -> float:
    """Best-focus position (same unit as ``positions``) of one focus curve, or NaN.

    The maximum is refined by the vertex of a Gaussian (parabola in log) through it and its
    two neighbours; a maximum on the first or last frame is not bracketed and gives NaN, as
    does a flat curve.
    """
    c = np.asarray(curve, np.float64)
    k = int(np.argmax(c))
    if k == 0 or k == len(c) - 1 or not np.isfinite(c[k]) or c.max() <= c.min():
        return float("nan")
    left, mid, right = np.log(np.maximum(c[k - 1 : k + 2], 1e-300))
    den = left - 2 * mid + right
    off = 0.0 if den >= 0 else float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))
    return float(index_to_position(np.array([k + off]), np.asarray(positions, np.float64))[0])
