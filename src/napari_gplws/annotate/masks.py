"""Which pixels an edit touches: brush and polygon masks, and their bounding box.
"""

from __future__ import annotations

import numpy as np

from napari_gplws.errors import GplwsError

# ---------------------------------------------------------------------------------------
# Region masks
# ---------------------------------------------------------------------------------------


def brush_mask(
    shape: tuple[int, int], center_yx: tuple[float, float], radius_px: float
) -> np.ndarray:
    """``(H, W)`` bool disc of ``radius_px`` pixels around ``center_yx``."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center_yx[0]) ** 2 + (xx - center_yx[1]) ** 2 <= radius_px**2


def polygon_mask(shape: tuple[int, int], vertices_yx: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose centres lie inside a polygon ``(K, 2)`` (y, x)."""
    from matplotlib.path import Path as MplPath

    v = np.asarray(vertices_yx, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 3:
        raise GplwsError("A polygon needs at least three (y, x) vertices.")
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    inside = MplPath(v[:, ::-1]).contains_points(pts, radius=1e-9)
    return inside.reshape(shape)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
