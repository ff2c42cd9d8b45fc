"""Cutting a frame into network-sized tiles, and telling blank tiles from specimen.

* :func:`tile_origins` / :func:`cut_tiles`: 224×224 tiles covering a frame (``stride``
  option; the last row and column are aligned with the frame's edges so the whole field is
  covered; a frame smaller than a tile gives one padded tile).
* :func:`region_tiles`: for regions that no tile is centred in (frames of a few hundred
  pixels), one tile of the region's own pixels mirrored out to the tile size;
* :func:`content_fraction`: the blank-tile discriminant below; tiles scoring under
  :data:`MIN_CONTENT` are left out of the defocus estimate.

Blank-tile discriminant
-----------------------
A tile is reduced to its luma in full-scale units (``[0, 1]``: integers divided by their
dtype's maximum) and averaged over 4×4 pixel blocks (which divides pixel noise by 4). Its
**content fraction** is the fraction of blocks that differ from the tile's median block by
more than ``max(0.02, 4 σ)``, where ``σ`` is the block-noise level (the pixel noise,
estimated from the median absolute difference of horizontal neighbours, divided by 4). A
tile whose content fraction is below :data:`MIN_CONTENT` (0.2) is rejected as mostly
blank. Background (clear glass or dark fluorescence background) is flat, so it scores ≈ 0;
textured specimen scores close to 1 even when strongly defocused, as long as some
structure is visible at all.

What it is not: the network (:mod:`napari_gplws.defocus.predict`) or the per-region
aggregation (:mod:`napari_gplws.defocus.analyse`). NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

#: Side of a tile in pixels, the input size of the packaged LDSE-NET weights.
TILE_PX = 224
#: Tiles with less than this fraction of non-background 4×4 blocks are rejected as blank.
MIN_CONTENT = 0.2
#: A block counts as content when it differs from the tile's median by more than this
#: (full-scale units, i.e. 2 % of the dtype's range) and by more than 4 noise sigmas.
BLANK_DEVIATION = 0.02
_BLOCK = 4
_LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    s = list(range(0, length - tile + 1, stride))
    if s[-1] != length - tile:
        s.append(length - tile)
    return s


def tile_origins(
    shape_yx: tuple[int, int], tile_px: int = TILE_PX, stride: int | None = None
) -> np.ndarray:
    """Top-left corners ``(M, 2)`` of tiles covering a frame; the last row/column touch the
    frame's edges. Frames smaller than a tile give one (padded) tile."""
    from napari_gplws.defocus._checks import MAX_TILE_PX, check_int

    tile_px = check_int("tile_px", tile_px, 1, MAX_TILE_PX)
    stride = tile_px if stride is None else check_int("stride", stride, 1, MAX_TILE_PX)
    ys = _starts(int(shape_yx[0]), tile_px, stride)
    xs = _starts(int(shape_yx[1]), tile_px, stride)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64)


def cut_tiles(frame: np.ndarray, origins: np.ndarray, tile_px: int = TILE_PX) -> np.ndarray:
    """Tiles ``(M, T, T[, 3])`` of one frame at ``origins`` (reflect-padded when the frame is
    smaller than a tile)."""
    f = np.asarray(frame)
    h, w = f.shape[:2]
    if h < tile_px or w < tile_px:
        pad = [(0, max(tile_px - h, 0)), (0, max(tile_px - w, 0))] + [(0, 0)] * (f.ndim - 2)
        f = np.pad(f, pad, mode="reflect" if min(h, w) > 1 else "edge")
    return np.stack([f[y : y + tile_px, x : x + tile_px] for y, x in origins])


def _luma01(tiles: np.ndarray) -> np.ndarray:
    a = np.asarray(tiles)
    scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    x = a.astype(np.float32) if a.ndim == 3 else a.astype(np.float32) @ _LUMA
    return x / np.float32(scale)


def content_fraction(tiles: np.ndarray) -> np.ndarray:
    """Fraction of 4×4 blocks of each tile that are not background (see the module docstring).

    Parameters
    ----------
    tiles
        ``(M, H, W)`` or ``(M, H, W, 3)``; integers are read in units of their dtype's range,
        floats as ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` float in ``[0, 1]``.
    """
    x = _luma01(tiles)
    if x.ndim == 2:
        x = x[None]
    m, h, w = x.shape
    hb, wb = h // _BLOCK, w // _BLOCK
    blocks = x[:, : hb * _BLOCK, : wb * _BLOCK].reshape(m, hb, _BLOCK, wb, _BLOCK).mean(axis=(2, 4))
    # Pixel noise from horizontal neighbour differences (robust to edges): MAD·1.4826/√2.
    d = np.abs(np.diff(x, axis=2)).reshape(m, -1)
    sigma_px = np.median(d, axis=1) * 1.4826 / math.sqrt(2.0)
    thr = np.maximum(BLANK_DEVIATION, 4.0 * sigma_px / _BLOCK)
    med = np.median(blocks.reshape(m, -1), axis=1)
    dev = np.abs(blocks - med[:, None, None])
    return (dev > thr[:, None, None]).reshape(m, -1).mean(axis=1)


def region_tiles(
    frame: np.ndarray, bounds: list[tuple[int, int, int, int]], tile_px: int = TILE_PX
) -> tuple[np.ndarray, np.ndarray]:
    """One tile per region for regions that no regular tile is centred in.

    On frames of a few hundred pixels the 224-px tiles all have their centres in the middle
    region of a 3×3 grid, so the other regions would get no estimate. A *region tile* is
    the region's own pixels (at most ``tile_px`` around the region's centre), mirrored out
    to a full tile (``numpy.pad`` mode ``"symmetric"``): the pixel size stays the one the
    network was trained for and the blur is the region's own, with no pixel of a neighbouring
    region in it. The cost in accuracy is measured in ``docs/focal-error-map.md``.

    Parameters
    ----------
    frame
        ``(H, W)`` or ``(H, W, 3)``.
    bounds
        Regions ``(y0, y1, x0, x1)`` (end exclusive, :func:`~.regions.region_bounds`).
    tile_px
        Side of the network's tiles.

    Returns
    -------
    tiles : (K, T, T[, 3])
    origins : (K, 2)
        Top-left corner of each region crop in the frame.
    """
    f = np.asarray(frame)
    tiles, origins = [], []
    for y0, y1, x0, x1 in bounds:
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        ya, yb = max(y0, cy - tile_px // 2), min(y1, cy - tile_px // 2 + tile_px)
        xa, xb = max(x0, cx - tile_px // 2), min(x1, cx - tile_px // 2 + tile_px)
        crop = f[ya:yb, xa:xb]
        dy, dx = tile_px - crop.shape[0], tile_px - crop.shape[1]
        pad = [(dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2)] + [(0, 0)] * (f.ndim - 2)
        tiles.append(np.pad(crop, pad, mode="symmetric"))
        origins.append((ya, xa))
    shape = (0, tile_px, tile_px, *f.shape[2:])
    return (
        np.stack(tiles) if tiles else np.zeros(shape, f.dtype),
        np.asarray(origins, np.int64).reshape(-1, 2),
    )
