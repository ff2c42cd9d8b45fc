"""What the Focal error map shows, computed without Qt: geometry, texts, colours, tables.

Everything here is a pure function of an analysis result (or a napari layer's data and
metadata), so it is tested without a display:

* where the region heatmap lies over the image (:func:`grid_geometry`) and its colour
  limits (:func:`heatmap_look`);
* the text written in each region (:func:`region_text`) and whether it reads better in black
  or white over what lies under it (:func:`text_colours`);
* the finished analysis as a :class:`FocalMapResult` (:func:`defocus_map_result`,
  :func:`rmse_map_result`), its layers (:func:`output_layers`) and the dock's summary texts
  and table (:func:`summary_texts`);
* the text of each region for what the heatmap shows (:func:`texts_for`: signed values, or
  unsigned ones in *magnitude* mode);
* the one-line note about the packaged weights (:func:`weights_warning`), with the model
  card's details for its tooltip (:func:`weights_details`).

What it is not: the dock itself, its controls and its background job
(:mod:`napari_gplws.widgets.focal_error_widget`), or any computation of defocus or error
(:mod:`napari_gplws.defocus`, :mod:`napari_gplws.evaluation.region_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_gplws.defocus import AutofocusResult

ANALYSIS_DEFOCUS, ANALYSIS_RMSE = "defocus", "rmse"
FRAMES_CURRENT, FRAMES_ALL, FRAMES_COMBINED = "current", "all", "combined"

#: What the defocus heatmap can show (keys of :attr:`FocalMapResult.grids`).
SHOW_LABELS = {
    "predicted": "predicted defocus",
    "true": "true defocus (from the stack)",
    "error": "error = predicted − true",
    "magnitude": "magnitude |defocus| (unsigned)",
}
#: Signed quantities get a diverging map centred on 0; unsigned ones a sequential map.
DIVERGING_COLORMAP = "RdBu_r"
SEQUENTIAL_COLORMAP = "magma"
HEATMAP_OPACITY = 0.5
#: Smallest half-range of the diverging colour map, in µm (so ±0.1 µm is not saturated).
MIN_LIMIT_UM = 1.0
TEXT_SIZE = 10
#: Text is black over a region whose composite (heatmap over image) luminance exceeds this.
DARK_TEXT_ABOVE = 0.5
DEFAULT_WEIGHTS = "ldse_default"


# ==========================================================================================
# Geometry, text and colours
# ==========================================================================================
def grid_geometry(
    shape_yx: tuple[int, int],
    grid: tuple[int, int],
    scale_yx: tuple[float, float] = (1.0, 1.0),
    translate_yx: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, translate)`` of a ``(rows, cols)`` image laid over an ``(H, W)`` image.

    Cell ``(i, j)`` then covers the pixels whose centres lie in region ``(i, j)``: the
    fractions ``[i·H/rows, (i+1)·H/rows)`` × ``[j·W/cols, (j+1)·W/cols)`` of the frame, which
    is how the core assigns tiles to regions (by their centres) and, rounded to whole pixels,
    how it cuts regions for the focus curves. napari puts pixel centres at integer data
    coordinates, so pixel ``p`` spans ``[p − ½, p + ½)`` and region ``i`` spans
    ``[i·H/rows − ½, (i+1)·H/rows − ½)`` in the image's data coordinates. The image's own
    ``scale_yx`` and ``translate_yx`` are carried over.
    """
    cell_h = shape_yx[0] / grid[0]
    cell_w = shape_yx[1] / grid[1]
    scale = (scale_yx[0] * cell_h, scale_yx[1] * cell_w)
    translate = (
        translate_yx[0] + scale_yx[0] * (cell_h / 2 - 0.5),
        translate_yx[1] + scale_yx[1] * (cell_w / 2 - 0.5),
    )
    return scale, translate


def signed_text(value: float) -> str:
    """``"+2.31 µm"``; values that round to zero read ``"0.00 µm"``, never ``"-0.00"``."""
    if abs(value) < 0.005:  # no "-0.00"
        return "0.00 µm"
    return f"{value:+.2f} µm"


def region_text(
    predicted: float,
    true: float | None = None,
    error: float | None = None,
    has_truth: bool = False,
    direction_sure: bool = True,
) -> str:
    """The text written in one region: ``"+2.31 µm"`` or ``"no estimate"``, with a ``?``
    after the value when the network is unsure of the direction; with truth, three lines
    ``pred …``, ``true …``, ``error …`` (``–`` where a value is missing)."""
    pred = signed_text(predicted) if np.isfinite(predicted) else "no estimate"
    if np.isfinite(predicted) and not direction_sure:
        pred += " ?"
    if not has_truth:
        return pred
    lines = [pred if not np.isfinite(predicted) else f"pred {pred}"]
    for label, value in (("true", true), ("error", error)):
        ok = value is not None and np.isfinite(value)
        lines.append(f"{label} {signed_text(value) if ok else '–'}")  # type: ignore[arg-type]
    return "\n".join(lines)


def symmetric_limits(values: np.ndarray, minimum: float = MIN_LIMIT_UM) -> tuple[float, float]:
    """``(−m, m)`` with ``m = max(|finite values|, minimum)``: a colour map centred on 0."""
    a = np.asarray(values, np.float64)
    finite = np.abs(a[np.isfinite(a)])
    m = max(float(finite.max()) if finite.size else 0.0, minimum)
    return -m, m


def positive_limits(values: np.ndarray, minimum: float = 1e-6) -> tuple[float, float]:
    """``(0, max)`` of the finite values (at least ``minimum``) for an unsigned quantity."""
    a = np.asarray(values, np.float64)
    finite = a[np.isfinite(a)]
    return 0.0, max(float(finite.max()) if finite.size else 0.0, minimum)


def region_luminance(
    frames: np.ndarray,
    frame_indices: np.ndarray,
    grid: tuple[int, int],
    contrast_limits: tuple[float, float],
) -> np.ndarray:
    """Mean displayed brightness in ``[0, 1]`` of each region of some frames, ``(K, rows, cols)``.

    ``frames`` is ``(N, H, W[, 3])``; brightness is luma scaled by the image layer's contrast
    limits, as napari draws it (gamma ignored). Used only to pick a readable text colour.

    Raises
    ------
    MetricError
        The grid has more rows or columns than the frames have pixels.
    """
    from napari_gplws.defocus import region_bounds
    from napari_gplws.evaluation.region_error import check_grid

    lo, hi = float(contrast_limits[0]), float(contrast_limits[1])
    span = hi - lo if hi > lo else 1.0
    bounds = region_bounds(frames.shape[1:3], check_grid(grid, frames.shape[1:3]))
    out = np.zeros((len(frame_indices), grid[0], grid[1]))
    for f, k in enumerate(frame_indices):
        for i, row in enumerate(bounds):
            for j, (y0, y1, x0, x1) in enumerate(row):
                block = np.asarray(frames[k, y0:y1, x0:x1], np.float64)
                mean = block.mean(axis=(0, 1))
                if np.ndim(mean):  # RGB(A): luma of the first three channels
                    mean = float(np.dot(mean[:3], (0.2126, 0.7152, 0.0722)))
                out[f, i, j] = float(mean)
    return np.clip((out - lo) / span, 0.0, 1.0)


def text_colours(
    values: np.ndarray,
    colormap: str,
    contrast_limits: tuple[float, float],
    opacity: float,
    backdrop: np.ndarray,
) -> list[str]:
    """``"black"`` or ``"white"`` per text, whichever reads better over its region.

    The region's colour is the heatmap colour of ``values`` blended at ``opacity`` over the
    image's brightness ``backdrop`` (both per text); NaN cells are transparent.
    """
    from napari.utils.colormaps import ensure_colormap

    lo, hi = contrast_limits
    v = np.asarray(values, np.float64)
    t = np.clip((np.nan_to_num(v) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    rgba = np.asarray(ensure_colormap(colormap).map(t), np.float64).reshape(-1, 4)
    heat = rgba[:, :3] @ np.array([0.2126, 0.7152, 0.0722])
    alpha = np.where(np.isfinite(v), opacity, 0.0)
    lum = alpha * heat + (1 - alpha) * np.asarray(backdrop, np.float64)
    return ["black" if x > DARK_TEXT_ABOVE else "white" for x in lum]


def weights_status(weights: str | Path = DEFAULT_WEIGHTS) -> str | None:
    """The model card's ``status`` (why the weights fall short of their purpose), if any."""
    try:
        from napari_gplws.models.registry import model_card

        status = model_card(weights).get("status")
    except Exception:  # noqa: BLE001 - an unreadable card is no reason to break the dock
        return None
    return str(status) if status else None


# ==========================================================================================
# What one run produced
# ==========================================================================================
@dataclass
class FocalMapResult:
    """A finished analysis, ready to become layers (built on the worker thread, no layer).

    ``grids`` maps what the heatmap can show (``"predicted"``, ``"true"``, ``"error"``,
    ``"magnitude"``, or ``"rmse"``) to arrays of the heatmap's shape: ``(rows, cols)`` for a
    frame or a depth map, ``(N, rows, cols)`` for a stack (NaN for frames not analysed).
    ``points`` are the text positions in the heatmap's data coordinates and ``texts`` the
    strings written there.
    """

    analysis: str
    input_name: str
    key: str
    grids: dict[str, np.ndarray]
    points: np.ndarray
    texts: list[str]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: str = "µm"
    metadata: dict[str, Any] = field(default_factory=dict)
    autofocus: AutofocusResult | None = None
    frame_rows: list[dict[str, Any]] = field(default_factory=list)
    overall_rmse: float | None = None
    #: Image brightness in [0, 1] under each text (for its colour).
    backdrop: np.ndarray | None = None
    #: napari ``units`` of the heatmap's axes (those of the input layer), if known.
    axis_units: tuple[str, ...] | None = None
    layers: dict[str, Any] = field(default_factory=dict)

    def values_at_points(self, show: str) -> np.ndarray:
        """The heatmap values of ``show`` at the text points."""
        idx = tuple(self.points.astype(int).T)
        return self.grids[show][idx]


def defocus_products(
    result: AutofocusResult,
    *,
    n_frames: int | None,
    shape_yx: tuple[int, int],
    scale_yx: tuple[float, float],
    translate_yx: tuple[float, float],
    stack_scale: float = 1.0,
    stack_translate: float = 0.0,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], tuple[float, ...], tuple[float, ...]]:
    """Heatmap arrays, text points, texts and geometry of an autofocus result.

    ``n_frames`` is the stack's frame count (``None`` for a single frame): the arrays are
    then ``(n_frames, rows, cols)`` with the analysed frames filled in and NaN elsewhere.
    """
    rows, cols = result.grid
    has_truth = result.true_um is not None and result.error_um is not None
    sources = {"predicted": result.predicted_um, "magnitude": result.magnitude_um}
    if has_truth:
        sources.update(true=result.true_um, error=result.error_um)
    grids: dict[str, np.ndarray] = {}
    for key, values in sources.items():
        if values is None:
            continue
        values = np.asarray(values, np.float32)
        if n_frames is None:
            grids[key] = values[0].copy()
        else:
            full = np.full((n_frames, rows, cols), np.nan, np.float32)
            full[np.asarray(result.frames, int)] = values
            grids[key] = full
    from napari_gplws.defocus import CONFIDENT_DIRECTION

    # Two frames (or a stack that misses the focus) give no truth anywhere: no "true –" lines.
    text_truth = has_truth and bool(np.isfinite(np.asarray(result.true_um, float)).any())
    points, texts = [], []
    confidence = result.direction_confidence
    for f, k in enumerate(result.frames):
        for i in range(rows):
            for j in range(cols):
                true = error = None
                if text_truth:
                    true = float(result.true_um[f, i, j])  # type: ignore[index]
                    error = float(result.error_um[f, i, j])  # type: ignore[index]
                sure = confidence is None or not (confidence[f, i, j] < CONFIDENT_DIRECTION)
                texts.append(
                    region_text(float(result.predicted_um[f, i, j]), true, error, text_truth, sure)
                )
                points.append((i, j) if n_frames is None else (int(k), i, j))
    scale, translate = grid_geometry(shape_yx, (rows, cols), scale_yx, translate_yx)
    if n_frames is not None:
        scale, translate = (stack_scale, *scale), (stack_translate, *translate)
    return grids, np.asarray(points, np.float64), texts, tuple(scale), tuple(translate)


def autofocus_input(
    frames: np.ndarray,
    *,
    n_frames: int | None,
    rgb: bool,
    focus_um: np.ndarray | None,
    pixel_size_um: float | None,
    name: str,
) -> tuple[Any, np.ndarray]:
    """What to give :func:`~napari_gplws.defocus.autofocus` for an image layer's data.

    Returns ``(source, frames)``: for a stack (``n_frames`` set) a
    :class:`~napari_gplws.stack.FocalStack` with the focus positions and pixel size, for a
    single frame the ``(H, W[, 3])`` array; and the data as ``(N, H, W[, 3])`` frames (for
    the text colours). An RGBA image loses its alpha channel, which carries no focus.
    """
    from napari_gplws.stack import FocalStack

    data = np.asarray(frames)
    if rgb and data.shape[-1] == 4:
        data = data[..., :3]  # RGBA: the alpha channel carries no focus
    if n_frames is None:
        if data.ndim == 3 + rgb:  # a one-frame stack
            data = data[0]
        return data, data[None]
    return FocalStack(data, focus_um=focus_um, pixel_size_um=pixel_size_um, source=name), data


def defocus_map_result(
    res: AutofocusResult,
    frames: np.ndarray,
    *,
    name: str,
    n_frames: int | None,
    shape_yx: tuple[int, int],
    scale_yx: tuple[float, float],
    translate_yx: tuple[float, float],
    stack_scale: float = 1.0,
    stack_translate: float = 0.0,
    contrast_limits: tuple[float, float],
    weights: str | Path,
    weights_status: str | None,
    device: str,
    pixel_size_um: float | None,
) -> FocalMapResult:
    """The defocus analysis of image layer ``name`` as layers-to-be, with its metadata.

    ``frames`` are the analysed data as ``(N, H, W[, 3])`` (see :func:`autofocus_input`),
    used for the text colours; the geometry arguments are those of
    :func:`defocus_products`.
    """
    from napari_gplws.evaluation.region_error import frame_error_summary

    grids, points, texts, scale, translate = defocus_products(
        res, n_frames=n_frames, shape_yx=shape_yx, scale_yx=scale_yx,
        translate_yx=translate_yx, stack_scale=stack_scale, stack_translate=stack_translate,
    )  # fmt: skip
    meta = {
        "units": res.units,
        "source": name,
        "weights": str(weights),
        "weights_status": weights_status,
        "device": device,
        "grid": list(res.grid),
        "frames": [int(k) for k in res.frames],
        "focus_um": None if res.focus_um is None else [float(v) for v in res.focus_um],
        "pixel_size_um": pixel_size_um,
        "tile_px": res.tile_px,
        "stride": res.stride,
        "min_content": res.min_content,
        "defocus_convention": "frame position − best-focus position (µm of focus-drive travel)",
        "seconds": round(float(res.timings.get("total_s", 0.0)), 3),
        "combined_frames": res.combined,
    }
    return FocalMapResult(
        analysis=ANALYSIS_DEFOCUS, input_name=name, key=name, grids=grids, points=points,
        texts=texts, scale=scale, translate=translate, units=res.units, metadata=meta,
        autofocus=res, frame_rows=frame_error_summary(res),
        backdrop=region_luminance(frames, res.frames, res.grid, contrast_limits).ravel(),
    )  # fmt: skip


def rmse_map_result(
    rmse: np.ndarray,
    overall: float,
    *,
    units: str,
    recon_name: str,
    truth_name: str,
    shape_yx: tuple[int, int],
    scale_yx: tuple[float, float],
    translate_yx: tuple[float, float],
) -> FocalMapResult:
    """The RMSE per region of reconstruction ``recon_name`` against ``truth_name`` as
    layers-to-be: ``"0.50 µm"`` per region, ``"no data"`` where no pixel is valid."""
    grid = (int(rmse.shape[0]), int(rmse.shape[1]))
    scale, translate = grid_geometry(shape_yx, grid, scale_yx, translate_yx)
    points = np.array([(i, j) for i in range(grid[0]) for j in range(grid[1])], np.float64)
    texts = [f"{v:.2f} {units}" if np.isfinite(v) else "no data" for v in rmse.ravel()]
    return FocalMapResult(
        analysis=ANALYSIS_RMSE, input_name=recon_name, key=f"{recon_name} (RMSE)",
        grids={"rmse": rmse.astype(np.float32)}, points=points, texts=texts, scale=scale,
        translate=translate, units=units, overall_rmse=overall,
        metadata={
            "units": units, "source": recon_name, "ground_truth": truth_name,
            "grid": list(grid), "overall_rmse": None if not np.isfinite(overall) else overall,
        },
    )  # fmt: skip


# ==========================================================================================
# Layers and the dock's texts
# ==========================================================================================
def shown_quantity(res: FocalMapResult, wanted: str | None) -> str:
    """What the heatmap shows: ``"rmse"`` for an RMSE map, else ``wanted`` when the result
    has it, else ``"predicted"``."""
    if res.analysis == ANALYSIS_RMSE:
        return "rmse"
    return wanted if wanted in res.grids else "predicted"


def heatmap_look(values: np.ndarray, show: str) -> dict[str, Any]:
    """Colour map and contrast limits of the heatmap of ``show``: a diverging map with
    symmetric limits for signed quantities, a sequential one from 0 for the others."""
    if show in ("predicted", "true", "error"):
        return {"colormap": DIVERGING_COLORMAP, "contrast_limits": symmetric_limits(values)}
    return {"colormap": SEQUENTIAL_COLORMAP, "contrast_limits": positive_limits(values)}


def point_text_colours(
    res: FocalMapResult, show: str, look: dict[str, Any], opacity: float
) -> list[str]:
    """:func:`text_colours` of the result's texts over the heatmap of ``show`` drawn with
    ``look`` at ``opacity`` (a mid-grey image is assumed when its brightness is unknown)."""
    backdrop = res.backdrop if res.backdrop is not None else np.full(len(res.points), 0.5)
    return text_colours(
        res.values_at_points(show), look["colormap"], look["contrast_limits"], opacity,
        backdrop,
    )  # fmt: skip


def output_layers(res: FocalMapResult, show: str) -> dict[str, Any]:
    """The two layers of a result (not yet in a viewer): ``"heatmap"``, an Image named
    ``"<input> defocus map"`` (or ``"<input> RMSE map"``), and ``"values"``, Points whose
    text gives the values, named ``"… values"``."""
    from napari.layers import Image, Points

    look = heatmap_look(res.grids[show], show)
    geo: dict[str, Any] = {"scale": res.scale, "translate": res.translate}
    if res.axis_units is not None and len(res.axis_units) == len(res.scale):
        geo["units"] = res.axis_units
        geo["axis_labels"] = ("z", "y", "x")[-len(res.scale) :]
    rmse = res.analysis == ANALYSIS_RMSE
    base = f"{res.input_name} {'RMSE' if rmse else 'defocus'}"
    kind = "region rmse map" if rmse else "defocus map"
    heatmap = Image(
        res.grids[show], name=f"{base} map", **geo,
        rgb=False, opacity=HEATMAP_OPACITY, blending="translucent", interpolation2d="nearest",
        metadata={**res.metadata, "kind": kind, "shows": show}, **look,
    )  # fmt: skip
    colours = point_text_colours(res, show, look, HEATMAP_OPACITY)
    values = Points(
        res.points, name=f"{base} values", **geo,
        size=0.05, face_color="transparent", border_color="transparent", border_width=0,
        features={"label": texts_for(res, show), "text_colour": colours},
        text={"string": "{label}", "color": {"feature": "text_colour"}, "size": TEXT_SIZE,
              "anchor": "center"},
        metadata={**res.metadata, "kind": f"{kind} values"},
    )  # fmt: skip
    return {"heatmap": heatmap, "values": values}


def fmt(value: float | None, spec: str = ".2f") -> str:
    """``format(value, spec)``, or ``"–"`` for a missing value."""
    return "–" if value is None else format(value, spec)


def summary_texts(res: FocalMapResult) -> tuple[str, str, list[list[str]]]:
    """The dock's texts after a run: ``(overall line, status line, table rows)``.

    For a defocus analysis the rows are one per analysed frame: frame, focus µm, mean
    |predicted| µm, mean |error| µm, regions with an estimate; an RMSE map has no rows.
    """
    if res.analysis == ANALYSIS_RMSE:
        overall = res.overall_rmse
        if overall is None or not np.isfinite(overall):
            overall_text = "No pixel is valid in both maps."
        else:
            worst = float(np.nanmax(res.grids["rmse"]))
            overall_text = (
                f"Overall RMSE {overall:.3g} {res.units}; worst region {worst:.3g} {res.units}."
            )
        status = (
            f"RMSE per region of '{res.input_name}' against "
            f"'{res.metadata.get('ground_truth')}' ({res.units})."
        )
        return overall_text, status, []
    af = res.autofocus
    assert af is not None
    rows = [
        [
            str(row["frame"]),
            fmt(row["focus_um"], "g"),
            fmt(row["mean_abs_predicted_um"]),
            fmt(row["mean_abs_error_um"]),
            f"{row['regions_estimated']}/{row['regions']}",
        ]
        for row in res.frame_rows
    ]
    summary = af.summary()
    mae = summary.get("mean_abs_error_um")
    if mae is not None:
        within = summary.get("within_0_5_um") or 0.0
        overall_text = (
            f"Mean |error| over {len(af.frames)} frame(s): {mae:.2f} µm; "
            f"{100 * within:.0f} % of regions within ±0.5 µm."
        )
    elif af.true_um is not None:
        overall_text = "No region has both a prediction and a true defocus."
    else:
        overall_text = (
            "No true defocus: give the stack's focus positions to get the error."
            if len(res.scale) == 3
            else "One frame: predicted defocus only (a stack gives the error too)."
        )
    rejected = summary["tiles_rejected"]
    total = summary["tiles_per_frame"] * len(af.frames)
    secs = af.timings.get("total_s", 0.0)
    status = (
        f"Done in {secs:.2f} s: {len(af.frames)} frame(s), {rejected} of {total} tiles "
        "rejected as blank. Defocus = frame position − best focus (µm)."
    )
    return overall_text, status, rows


#: The dock's one line about weights that fall short of their target (details: tooltip).
WEIGHTS_NOTE = "Direction from a single frame is a hint; use two frames for a sure direction."


def weights_warning(status: str | None) -> str:
    """The dock's one plain line for a model card's status (empty when there is none); the
    card's own words go in the tooltip (:func:`weights_details`)."""
    return WEIGHTS_NOTE if status else ""


def weights_details(status: str | None) -> str:
    """The tooltip behind :func:`weights_warning`: the model card's status in full."""
    return (
        f"LDSE-NET weights: {status}\n\nFrames › 'all frames, direction from their "
        "positions' settles each region's direction from two or more frames."
        if status
        else ""
    )


def texts_for(res: FocalMapResult, show: str) -> list[str]:
    """The text of each region for what the heatmap shows: the result's texts (signed
    values, with the truth and error when known), or in *magnitude* mode the unsigned
    distance from focus, ``"|z| 2.31 µm"``."""
    if show != "magnitude" or "magnitude" not in res.grids:
        return list(res.texts)
    values = res.values_at_points("magnitude")
    return [f"|z| {abs(v):.2f} µm" if np.isfinite(v) else "no estimate" for v in values]


def stack_length(layer: Any | None) -> int | None:
    """Frames along an image layer's stack axis (the third from last); ``None`` for a
    single frame, a one-frame stack or no layer."""
    if layer is None or layer.ndim < 3:
        return None
    n = int(layer.data.shape[layer.ndim - 3])
    return n if n > 1 else None


def frame_at(layer: Any | None, world_point: Any) -> int | None:
    """Index of the stack frame of ``layer`` at the viewer's position ``world_point``
    (nearest frame, clipped to the stack), or ``None`` for a single frame."""
    n = stack_length(layer)
    if n is None:
        return None
    point = np.asarray(layer.world_to_data(world_point), np.float64)
    return int(np.clip(np.rint(point[layer.ndim - 3]), 0, n - 1))


def order_images(images: list[Any]) -> list[Any]:
    """Image layers in the order they are offered: stacks first, then frames that are not
    depth maps, then the rest."""
    stacks = [ly for ly in images if ly.ndim >= 3]
    frames = [ly for ly in images if ly.ndim == 2 and ly.metadata.get("kind") != "depth"]
    rest = [ly for ly in images if ly not in stacks and ly not in frames]
    return stacks + frames + rest


def looks_like_truth(layer: Any) -> bool:
    """Whether a depth layer looks like a ground truth (by its name or metadata ``kind``)."""
    name = layer.name.lower()
    return (
        "truth" in name
        or name.endswith(" gt")
        or name.startswith("gt ")
        or layer.metadata.get("kind") in ("ground truth", "gt")
    )
