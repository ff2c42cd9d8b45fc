"""Wide-field autofocus QC: signed defocus per region of a frame, and focal error per region
of a stack (:func:`autofocus`).

What it does
------------
:func:`autofocus` cuts a frame into 224×224 tiles (:mod:`napari_gplws.defocus.tiles`;
``stride`` option, the last row and column aligned with the frame's edges so the whole
field is covered), rejects mostly blank tiles
(:func:`~napari_gplws.defocus.tiles.content_fraction`; a region that no tile is centred in,
as on frames of a few hundred pixels, gets one tile of its own pixels,
:func:`~napari_gplws.defocus.tiles.region_tiles`), runs the rest through LDSE-NET
(:func:`~napari_gplws.defocus.predict.predict_defocus`) and aggregates per region of a
``grid`` (3×3 by default; a tile belongs to the region holding its centre): the **median**
defocus of the region's tiles, the **number** of tiles used and the **spread** (robust
standard deviation, ``1.4826 × MAD``). A region without usable tiles has no estimate: NaN,
never 0. Defocus is in µm of focus-drive travel, ``frame position − best-focus position``.

Given a stack with focus positions, it also finds each region's best-focus position from the
region's focus curve (:mod:`napari_gplws.defocus.regions`), so that ``true = frame position
− best focus`` and ``error = predicted − true`` per region and frame: ``(N, 3, 3)`` arrays in
an :class:`~napari_gplws.defocus.result.AutofocusResult`. With ``combine_frames=True`` the
direction of each region comes from all frames' positions together
(:mod:`napari_gplws.defocus.fit`).

Other optics: frames whose pixel size differs from the one the weights were trained for
(model card) can be resampled first with ``pixel_size_um=``.

What it is not: the heatmap (:mod:`napari_gplws.defocus.plot`), the ``gplws autofocus``
command (:mod:`napari_gplws.cli.autofocus`), its speed benchmark
(:mod:`napari_gplws.evaluation.defocus_speed`), training (:mod:`napari_gplws.training.ldse`)
or the network itself (:mod:`napari_gplws.models.ldse`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.defocus._checks import (
    MAX_BATCH,
    MAX_TILE_PX,
    check_fraction,
    check_grid,
    check_int,
    check_pixel_size,
)
from napari_gplws.defocus.predict import predict_defocus
from napari_gplws.defocus.regions import (
    best_focus_from_curve,
    region_bounds,
    region_focus_curves,
    region_index,
)
from napari_gplws.defocus.result import AutofocusResult
from napari_gplws.defocus.tiles import (
    MIN_CONTENT,
    TILE_PX,
    content_fraction,
    cut_tiles,
    region_tiles,
    tile_origins,
)
from napari_gplws.errors import StackError
from napari_gplws.stack import FocalStack

__all__ = ["autofocus"]


def _as_frames(
    image_or_stack: Any, focus_positions: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray | None, bool, str | None, float | None]:
    """(frames (N,H,W[,3]), positions or None, is_stack, source, pixel size)."""
    if isinstance(image_or_stack, FocalStack):
        st = image_or_stack
        pos = st.focus_um if focus_positions is None else np.asarray(focus_positions, np.float64)
        if pos is not None and len(pos) != st.n_frames:
            raise StackError(f"Got {len(pos)} focus positions for {st.n_frames} frames.")
        return st.frames, pos, True, st.source, st.pixel_size_um
    a = np.asarray(image_or_stack)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3 and focus_positions is None):
        return a[None], None, False, None, None
    if a.ndim in (3, 4):
        st = FocalStack(a, focus_um=focus_positions)
        return st.frames, st.focus_um, True, None, None
    raise StackError(
        "autofocus needs one frame (H, W) / (H, W, 3) or a stack (N, H, W[, 3]); "
        f"got shape {a.shape}."
    )


def _model_pixel_size(weights: str | Path) -> float | None:
    from napari_gplws.models.registry import model_card

    card = model_card(weights)  # a broken card is a ModelError, not "no resampling"
    try:
        return float(card["optics"]["pixel_size_um"])
    except (KeyError, TypeError, ValueError):  # no pixel size in the card: no resampling
        return None


def autofocus(
    image_or_stack: Any,
    focus_positions: Sequence[float] | None = None,
    frame: int | None = None,
    grid: tuple[int, int] = (3, 3),
    device: str = "auto",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    *,
    stride: int | None = None,
    tile_px: int = TILE_PX,
    min_content: float = MIN_CONTENT,
    weights: str | Path = "ldse_default",
    pixel_size_um: float | None = None,
    batch_size: int = 64,
    combine_frames: bool = False,
) -> AutofocusResult:
    """Signed defocus per region of a frame; with a stack, also the true defocus and error.

    Parameters
    ----------
    image_or_stack
        One frame ``(H, W)`` / ``(H, W, 3)``, an ``(N, H, W[, 3])`` array or a
        :class:`~napari_gplws.stack.FocalStack`. A 3-D array whose last axis is 3 is read as one RGB
        frame unless ``focus_positions`` are given.
    focus_positions
        ``(N,)`` focus-drive positions in µm for an array stack (overrides a stack's own).
        Without positions a stack still gets predictions, but no true defocus or error.
    frame
        Analyse only this frame of a stack (0-based); default all frames.
    grid
        Regions ``(rows, columns)``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    progress, cancel
        ``progress(done, total)`` over frames (and focus curves); ``cancel()`` raises
        :class:`~napari_gplws.errors.Cancelled` between batches.
    stride
        Tile stride in pixels (default ``tile_px``: no overlap).
    tile_px
        Tile side (224 for the packaged weights).
    min_content
        Blank-tile threshold on :func:`content_fraction`.
    weights
        Packaged weights name or ``.safetensors`` path.
    pixel_size_um
        Pixel size of the frames (default: the stack's). When it differs from the
        weights' by more than 5 %, frames are resampled to the weights' pixel size first.
    batch_size
        Tiles per forward pass.
    combine_frames
        With a stack of two or more frames and their focus positions: settle each region's
        direction from all frames together (the best-focus position that fits every
        frame's "how far" estimate, :mod:`napari_gplws.defocus.fit`) instead of each frame's
        own sign. Two frames a known step apart are enough and need not bracket the focus; the
        single-frame values stay in :attr:`AutofocusResult.single_frame_um`.

    Returns
    -------
    AutofocusResult

    Raises
    ------
    StackError
        Bad shapes or frame index, or an argument outside its range (``stride`` and
        ``tile_px`` 16…4096 px, ``min_content`` 0…1, ``batch_size`` 1…4096, ``grid``
        1…32 per side, ``pixel_size_um`` > 0). ModelError: weights or device unavailable.
    Cancelled
        When ``cancel()`` returned True.
    """
    t_start = time.perf_counter()
    grid = check_grid(grid)
    tile_px = check_int("tile_px", tile_px, 32, MAX_TILE_PX)
    stride = tile_px if stride is None else check_int("stride", stride, 16, MAX_TILE_PX)
    min_content = check_fraction("min_content", min_content)
    batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH)
    pixel_size_um = check_pixel_size(pixel_size_um)
    frames, positions, is_stack, source, px_stack = _as_frames(image_or_stack, focus_positions)
    n = len(frames)
    if frame is not None:
        if not is_stack and frame not in (0, -1):
            raise StackError(f"frame={frame} was given but the input is a single image.")
        if not -n <= frame < n:
            raise StackError(
                f"frame {frame} is out of range for a stack of {n} frames (0…{n - 1})."
            )
        todo = np.array([frame % n])
    else:
        todo = np.arange(n)
    if combine_frames:
        why = (
            "the input is one image"
            if not is_stack
            else "the stack has no focus positions"
            if positions is None
            else f"only frame {frame} was chosen"
            if frame is not None
            else "the stack has one frame"
            if n < 2
            else ""
        )
        if why:
            raise StackError(
                f"Combining frames needs two or more frames with their focus positions in µm, "
                f"analysed together, but {why}. Give the focus step or positions and all "
                "frames, or analyse without combining."
            )
    px = pixel_size_um if pixel_size_um is not None else px_stack
    target_px = _model_pixel_size(weights) if px is not None else None
    if px is not None and target_px and abs(px / target_px - 1) > 0.05:
        from scipy import ndimage as ndi

        z = px / target_px
        zoom = (1, z, z) + ((1,) if frames.ndim == 4 else ())
        frames = ndi.zoom(frames, zoom, order=1)
    h, w = frames.shape[1:3]
    stride = int(tile_px if stride is None else stride)
    origins = tile_origins((h, w), tile_px, stride)
    regions = region_index(origins, tile_px, (h, w), grid)
    # Regions that no tile is centred in (frames of a few hundred pixels) get one tile of
    # their own pixels (tiles.region_tiles), so every region with content gets an estimate.
    n_regular, empty = len(origins), _uncovered_regions(regions, grid, (h, w))
    if empty:
        _, extra = region_tiles(frames[0], [b for _, b in empty], tile_px)
        origins = np.concatenate([origins, extra])
        regions = np.concatenate([regions, np.array([ij for ij, _ in empty], np.int64)])
    m = len(origins)
    timings: dict[str, float] = {}

    # Stack mode with positions: the regions' focus curves give the truth.
    total_steps = len(todo) + (n if (is_stack and positions is not None) else 0)
    done = 0
    best = true = err = None
    if is_stack and positions is not None:
        t0 = time.perf_counter()

        def prog(k: int, _tot: int) -> None:
            report(progress, k, total_steps)

        curves = region_focus_curves(frames, grid, progress=prog, cancel=cancel)
        best = np.array(
            [
                [best_focus_from_curve(curves[:, i, j], positions) for j in range(grid[1])]
                for i in range(grid[0])
            ]
        )
        true = positions[todo][:, None, None] - best[None]
        timings["focus_curves_s"] = time.perf_counter() - t0
        done = n

    t0 = time.perf_counter()
    tile_pred = np.full((len(todo), m), np.nan, np.float32)
    tile_mag = np.full((len(todo), m), np.nan, np.float32)
    tile_content = np.zeros((len(todo), m), np.float32)
    for f, k in enumerate(todo):
        check_cancel(cancel)
        tiles = cut_tiles(frames[k], origins[:n_regular], tile_px)
        if empty:
            own, _ = region_tiles(frames[k], [b for _, b in empty], tile_px)
            tiles = np.concatenate([tiles, own])
        content = content_fraction(tiles)
        tile_content[f] = content
        keep = content >= min_content
        if keep.any():
            tile_pred[f, keep], tile_mag[f, keep] = predict_defocus(
                tiles[keep],
                weights=weights,
                device=device,
                batch_size=batch_size,
                cancel=cancel,
                return_magnitude=True,
            )
        done += 1
        report(progress, done, total_steps)
    timings["network_s"] = time.perf_counter() - t0

    pred = np.full((len(todo), grid[0], grid[1]), np.nan)
    spread = np.full_like(pred, np.nan)
    magnitude = np.full_like(pred, np.nan)
    count = np.zeros(pred.shape, np.int64)
    for f in range(len(todo)):
        for i in range(grid[0]):
            for j in range(grid[1]):
                sel = (regions[:, 0] == i) & (regions[:, 1] == j)
                vals = tile_pred[f, sel]
                count[f, i, j] = int(np.isfinite(vals).sum())
                pred[f, i, j], spread[f, i, j] = _robust_stats(vals)
                magnitude[f, i, j] = _robust_stats(tile_mag[f, sel])[0]
    fit = _combine_frames(pred, magnitude, count, positions) if combine_frames else None
    single = None
    if fit is not None:
        single, pred = pred, fit["defocus"]
    if true is not None:
        err = pred - true
    timings["total_s"] = time.perf_counter() - t_start
    return AutofocusResult(
        frames=todo,
        focus_um=None if positions is None else positions[todo],
        predicted_um=pred,
        spread_um=spread,
        n_tiles=count,
        true_um=true,
        error_um=err,
        best_focus_um=best,
        tile_origins=origins,
        tile_region=regions,
        tile_defocus_um=tile_pred,
        tile_content=tile_content,
        grid=grid,
        tile_px=tile_px,
        stride=stride,
        shape_yx=(h, w),
        magnitude_um=magnitude,
        min_content=min_content,
        weights=str(weights),
        timings=timings,
        source=source,
        single_frame_um=single,
        fitted_best_focus_um=None if fit is None else fit["best"],
        fit_confidence=None if fit is None else fit["confidence"],
        fit_residual_um=None if fit is None else fit["residual"],
    )


def _combine_frames(
    pred: np.ndarray, magnitude: np.ndarray, count: np.ndarray, positions: np.ndarray
) -> dict[str, np.ndarray]:
    """Per region, fit one best-focus position to all frames' magnitudes
    (:func:`napari_gplws.defocus.fit.fit_best_focus`)."""
    from napari_gplws.defocus.fit import fit_best_focus

    _, rows, cols = pred.shape
    out = {
        "defocus": np.full(pred.shape, np.nan),
        "confidence": np.full(pred.shape, np.nan),
        "best": np.full((rows, cols), np.nan),
        "residual": np.full((rows, cols), np.nan),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        # The region's sign logit: its median signed value is magnitude · tanh(logit).
        logit = np.arctanh(np.clip(pred / magnitude, -0.999, 0.999))
    for i in range(rows):
        for j in range(cols):
            f = fit_best_focus(
                positions, magnitude[:, i, j], logit[:, i, j], weights=count[:, i, j]
            )
            out["defocus"][:, i, j] = np.where(
                np.isfinite(magnitude[:, i, j]), f.defocus_um, np.nan
            )
            out["confidence"][:, i, j] = np.where(
                np.isfinite(magnitude[:, i, j]), f.confidence, np.nan
            )
            out["best"][i, j] = f.best_focus_um
            out["residual"][i, j] = f.rms_residual_um
    return out


def _uncovered_regions(
    regions: np.ndarray, grid: tuple[int, int], shape_yx: tuple[int, int]
) -> list[tuple[tuple[int, int], tuple[int, int, int, int]]]:
    """``((row, col), bounds)`` of the regions that hold no tile's centre."""
    covered = {(int(i), int(j)) for i, j in regions}
    bounds = region_bounds(shape_yx, grid)
    return [
        ((i, j), bounds[i][j])
        for i in range(grid[0])
        for j in range(grid[1])
        if (i, j) not in covered and bounds[i][j][1] > bounds[i][j][0] and bounds[i][j][3] > bounds[i][j][2]
    ]


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med))) if v.size > 1 else 0.0
