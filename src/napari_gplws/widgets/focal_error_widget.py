"""The **Focal error map** dock widget: defocus per region of the field, drawn over the image.

Two analyses, both over a ``rows × cols`` grid of regions (3×3 by default):

* **Defocus per region (LDSE-NET)** — a thin layer over
  :func:`napari_gplws.defocus.analyse.autofocus`. Input: an Image layer holding one frame
  (grey or RGB) or a stack with the focus axis first (focus positions from the layer's
  metadata or scale, editable as start + step), the frame at the z slider or all frames, the
  device, the grid, and (advanced) the tile stride and the blank-tile threshold. One
  background :class:`~._worker.Job` (progress, Cancel between batches, core errors as
  notifications) produces two layers named after the input:

  - ``<image> defocus map`` — Image of shape ``(rows, cols)`` for a frame, ``(N, rows, cols)``
    for a stack (it follows the z slider: same leading axis and scale as the stack), whose
    cell ``(i, j)`` covers exactly the pixels of region ``(i, j)`` as the core defines them
    (equal fractions of the frame; see :func:`grid_geometry`). Diverging colour map centred
    on 0 µm with symmetric limits; regions without an estimate are NaN, i.e. transparent.
    **Heatmap shows** switches it between predicted, true and error (with a stack and focus
    positions) and the unsigned magnitude, without running again;
  - ``<image> defocus values`` — Points at the region centres whose text gives the values
    in µm ("no estimate" where every tile was rejected as blank); with a stack, one point
    per frame and region, so the text follows the slider too.

  The dock lists the mean absolute error per frame and over all frames, and exports the
  per-region table as CSV or JSON (:meth:`~napari_gplws.defocus.analyse.AutofocusResult.to_csv`,
  ``to_json``); an existing file is first kept as a backup
  (:func:`~napari_gplws.io._read.move_aside`).

* **Reconstruction vs ground truth** — the RMSE per region between a reconstructed depth
  map and a ground-truth depth map (two 2-D Image layers of the same shape),
  :func:`napari_gplws.evaluation.region_error.region_rmse`, drawn the same way.

The packaged LDSE-NET weights' model-card status, when the card has one, is shown as a
warning in the dock and stored in the layers' metadata, with the units and the weights.

Re-running replaces only the layers this widget made for that input
(:class:`._layers.OwnLayers`). It computes nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import (
    collapsible_group,
    fill_devices_later,
    find_data,
    refill,
    show_exception,
    spin,
)
from napari_gplws.widgets._worker import Job, software_opengl

if TYPE_CHECKING:
    import napari

    from napari_gplws.defocus.analyse import AutofocusResult

WIDGET_NAME = "focal_error_map"

ANALYSIS_DEFOCUS, ANALYSIS_RMSE = "defocus", "rmse"
FRAMES_CURRENT, FRAMES_ALL, FRAMES_COMBINED = "current", "all", "combined"
FOCUS_METADATA, FOCUS_START_STEP, FOCUS_UNKNOWN = "metadata", "start_step", "unknown"

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
# Geometry and text (pure functions, tested directly)
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


def _signed(value: float) -> str:
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
    pred = _signed(predicted) if np.isfinite(predicted) else "no estimate"
    if np.isfinite(predicted) and not direction_sure:
        pred += " ?"
    if not has_truth:
        return pred
    lines = [pred if not np.isfinite(predicted) else f"pred {pred}"]
    for label, value in (("true", true), ("error", error)):
        ok = value is not None and np.isfinite(value)
        lines.append(f"{label} {_signed(value) if ok else '–'}")  # type: ignore[arg-type]
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
    """
    from napari_gplws.evaluation.region_error import region_bounds

    lo, hi = float(contrast_limits[0]), float(contrast_limits[1])
    span = hi - lo if hi > lo else 1.0
    bounds = region_bounds(frames.shape[1:3], grid)
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
    from napari_gplws.defocus.analyse import CONFIDENT_DIRECTION

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


# ==========================================================================================
# The dock
# ==========================================================================================
class FocalErrorMapWidget(QWidget):
    """Dock widget: defocus and focal error per region (see the module docstring).

    Attributes
    ----------
    weights
        LDSE-NET weights: a packaged name or a ``.safetensors`` path (default the packaged
        ``ldse_default``); the warning label follows its model card.
    activity_progress
        Also show progress in napari's activity area: ``True``, ``False`` or ``None`` (yes,
        unless OpenGL is a software rasteriser; see :mod:`._worker`).

    Signals
    -------
    finished(outcome)
        After each run, on the GUI thread: ``"done"``, ``"cancelled"`` or ``"error"``.
    """

    finished = Signal(str)

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.outputs = _layers.OwnLayers(napari_viewer, WIDGET_NAME)
        self.result: FocalMapResult | None = None
        self.job: Job | None = None
        self.activity_progress: bool | None = None
        self._adding_layers = False
        self._weights: str | Path = DEFAULT_WEIGHTS

        # --- warning about the weights ----------------------------------------------------
        self.weights_label = QLabel("")
        self.weights_label.setWordWrap(True)
        self.weights_label.setStyleSheet("color: #ffb74d; font-size: 9pt;")

        # --- inputs ------------------------------------------------------------------------
        self.analysis_combo = QComboBox()
        self.analysis_combo.addItem("Defocus per region (LDSE-NET)", ANALYSIS_DEFOCUS)
        self.analysis_combo.addItem("Reconstruction vs ground truth (RMSE)", ANALYSIS_RMSE)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip(
            "One frame (grey or RGB), or a stack with the focus axis first."
        )
        self.focus_mode = QComboBox()
        self.focus_start = spin(-1e6, 1e6, 3, "")
        self.focus_step = spin(-1e5, 1e5, 3, "")
        self.focus_step.setValue(1.0)
        self.pixel_size = spin(0.0, 1e4, 4, " µm")
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setToolTip(
            "Lateral pixel size. When it differs from the one the weights were trained for, "
            "the frames are resampled to it first; 'unknown' uses the frames as they are."
        )
        self.frames_combo = QComboBox()
        self.frames_combo.addItem("current frame (z slider)", FRAMES_CURRENT)
        self.frames_combo.addItem("all frames", FRAMES_ALL)
        self.frames_combo.addItem("all frames, direction from their positions", FRAMES_COMBINED)
        self.frames_combo.setCurrentIndex(1)
        self.frames_combo.setToolTip(
            "'direction from their positions': each region's direction is taken from all frames "
            "together (the best focus that fits every frame's 'how far'); two frames a known "
            "step apart are enough and need not bracket the focus. Needs focus positions."
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu"])
        self.grid_rows = _int_spin(1, 20, 3)
        self.grid_cols = _int_spin(1, 20, 3)
        self.stride = _int_spin(0, 4096, 0)
        self.stride.setSingleStep(16)
        self.stride.setSpecialValueText("224 (no overlap)")
        self.stride.setToolTip("Tile stride in pixels; smaller than 224 makes overlapping tiles.")
        from napari_gplws.defocus.analyse import MIN_CONTENT

        self.min_content = QDoubleSpinBox()
        self.min_content.setRange(0.0, 1.0)
        self.min_content.setSingleStep(0.05)
        self.min_content.setDecimals(2)
        self.min_content.setValue(MIN_CONTENT)
        self.min_content.setToolTip(
            "Blank-tile threshold: tiles whose fraction of non-background 4×4 blocks is below "
            "this are rejected (0 keeps every tile)."
        )
        self.recon_combo = QComboBox()
        self.recon_combo.setToolTip("The reconstructed depth map (2-D Image layer).")
        self.truth_combo = QComboBox()
        self.truth_combo.setToolTip("The ground-truth depth map (2-D Image layer, same shape).")

        # --- actions and results --------------------------------------------------------------
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.show_combo = QComboBox()
        for key, label in SHOW_LABELS.items():
            self.show_combo.addItem(label, key)
        self.show_combo.setToolTip("What the heatmap shows; switching needs no new run.")
        self.summary_table = QTableWidget(0, 5)
        self.summary_table.setHorizontalHeaderLabels(
            ["frame", "focus µm", "|pred| µm", "|error| µm", "regions"]
        )
        self.summary_table.setToolTip(
            "Per analysed frame: mean |predicted defocus| and mean |error| over the regions "
            "with an estimate, and how many regions have one."
        )
        self.summary_table.verticalHeader().setVisible(False)
        self.summary_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.summary_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.summary_table.setMinimumHeight(120)
        self.overall_label = QLabel("")
        self.overall_label.setWordWrap(True)
        self.export_csv_button = QPushButton("Table CSV…")
        self.export_json_button = QPushButton("JSON…")

        self._build_layout()
        self._connect()
        self.weights = DEFAULT_WEIGHTS
        self.reset_choices()
        self._on_analysis_changed()
        self._set_result_actions()
        self._load_devices()

    # ======================================================================================
    # Layout
    # ======================================================================================
    def _build_layout(self) -> None:
        top = QFormLayout()
        top.addRow("Analysis", self.analysis_combo)

        self.defocus_panel = QWidget()
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Image", self.image_combo)
        form.addRow("Focus positions", self.focus_mode)
        start_step = QHBoxLayout()
        start_step.addWidget(QLabel("start"))
        start_step.addWidget(self.focus_start)
        start_step.addWidget(QLabel("step"))
        start_step.addWidget(self.focus_step)
        start_step.addWidget(QLabel("µm"))
        form.addRow("", start_step)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("Frames", self.frames_combo)
        form.addRow("Device", self.device_combo)
        self.defocus_panel.setLayout(form)

        self.rmse_panel = QWidget()
        rform = QFormLayout()
        rform.setContentsMargins(0, 0, 0, 0)
        rform.addRow("Reconstruction", self.recon_combo)
        rform.addRow("Ground truth", self.truth_combo)
        self.rmse_panel.setLayout(rform)

        grid_form = QFormLayout()
        grid_row = QHBoxLayout()
        grid_row.addWidget(self.grid_rows)
        grid_row.addWidget(QLabel("rows ×"))
        grid_row.addWidget(self.grid_cols)
        grid_row.addWidget(QLabel("columns"))
        grid_form.addRow("Grid", grid_row)

        self.advanced = collapsible_group("Advanced", [
            ("Tile stride", self.stride),
            ("Blank-tile threshold", self.min_content),
        ])  # fmt: skip

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        results = QGroupBox("Result")
        res = QVBoxLayout()
        self.show_row = QWidget()
        show_form = QFormLayout()
        show_form.setContentsMargins(0, 0, 0, 0)
        show_form.addRow("Heatmap shows", self.show_combo)
        self.show_row.setLayout(show_form)
        res.addWidget(self.show_row)
        res.addWidget(self.summary_table)
        res.addWidget(self.overall_label)
        ex = QHBoxLayout()
        ex.addWidget(QLabel("Export"))
        ex.addWidget(self.export_csv_button)
        ex.addWidget(self.export_json_button)
        res.addLayout(ex)
        results.setLayout(res)

        layout = QVBoxLayout()
        layout.addWidget(self.weights_label)
        layout.addLayout(top)
        layout.addWidget(self.defocus_panel)
        layout.addWidget(self.rmse_panel)
        layout.addLayout(grid_form)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(results)
        layout.addStretch(1)
        self.setLayout(layout)
        self._inputs = [
            self.analysis_combo, self.image_combo, self.focus_mode, self.focus_start,
            self.focus_step, self.pixel_size, self.frames_combo, self.device_combo,
            self.grid_rows, self.grid_cols, self.advanced, self.recon_combo, self.truth_combo,
            self.run_button,
        ]  # fmt: skip

    def _connect(self) -> None:
        self.analysis_combo.currentIndexChanged.connect(self._on_analysis_changed)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.focus_mode.currentIndexChanged.connect(self._update_enabled)
        self.focus_start.valueChanged.connect(self._on_focus_edited)
        self.focus_step.valueChanged.connect(self._on_focus_edited)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.show_combo.currentIndexChanged.connect(self._on_show_changed)
        self.export_csv_button.clicked.connect(self._export_csv_clicked)
        self.export_json_button.clicked.connect(self._export_json_clicked)
        # The "current frame" entry names the frame at the z slider.
        self.viewer.dims.events.current_step.connect(self._update_frame_label)

    def _load_devices(self) -> None:
        fill_devices_later(self.device_combo, self)

    # ======================================================================================
    # Weights
    # ======================================================================================
    @property
    def weights(self) -> str | Path:
        return self._weights

    @weights.setter
    def weights(self, value: str | Path) -> None:
        self._weights = value
        status = weights_status(value)
        self.weights_label.setText(f"⚠ LDSE-NET weights: {status}" if status else "")
        self._update_weights_label()

    def _update_weights_label(self) -> None:
        """The warning is about LDSE-NET: shown while that analysis is chosen."""
        defocus = self.analysis_combo.currentData() == ANALYSIS_DEFOCUS
        self.weights_label.setVisible(defocus and bool(self.weights_label.text()))

    # ======================================================================================
    # Input choices
    # ======================================================================================
    def _not_ours(self, layers: list[Any]) -> list[Any]:
        return [ly for ly in layers if ly.metadata.get(_layers.MADE_BY) != WIDGET_NAME]

    def image_candidates(self) -> list[Any]:
        """Image layers to analyse: stacks first, then frames that are not depth maps, then
        the rest; never this widget's own heatmaps."""
        from napari.layers import Image

        images = self._not_ours([ly for ly in self.viewer.layers if isinstance(ly, Image)])
        stacks = [ly for ly in images if ly.ndim >= 3]
        frames = [ly for ly in images if ly.ndim == 2 and ly.metadata.get("kind") != "depth"]
        rest = [ly for ly in images if ly not in stacks and ly not in frames]
        return stacks + frames + rest

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (called by napari when layers are added, removed, reordered)."""
        refill(self.image_combo, self.image_candidates())
        depths = self._not_ours(_layers.depth_layers(self.viewer))
        recon_before = self.recon_combo.currentData()
        truth_before = self.truth_combo.currentData()
        refill(self.truth_combo, depths)
        refill(self.recon_combo, depths)
        if truth_before is None or not _layers.contains(self.viewer, truth_before):
            truth = next((ly for ly in depths if _looks_like_truth(ly)), None)
            if truth is not None:
                self.truth_combo.setCurrentIndex(find_data(self.truth_combo, truth))
        if recon_before is None or not _layers.contains(self.viewer, recon_before):
            truth = self.truth_combo.currentData()
            recon = next((ly for ly in depths if not _layers.same(ly, truth)), None)
            if recon is not None:
                self.recon_combo.setCurrentIndex(find_data(self.recon_combo, recon))
        # Comparing with a ground truth needs two depth maps.
        item = self.analysis_combo.model().item(1)
        item.setEnabled(len(depths) >= 2)
        item.setToolTip(
            "" if len(depths) >= 2 else "Needs two 2-D depth maps: a reconstruction and its truth."
        )

    def image_layer(self) -> Any | None:
        """The selected image layer (``None`` when there is none)."""
        layer = self.image_combo.currentData()
        return layer if _layers.contains(self.viewer, layer) else None

    @staticmethod
    def _n_frames(layer: Any) -> int | None:
        """Frames along the stack axis, ``None`` for a single frame."""
        if layer is None or layer.ndim < 3:
            return None
        n = int(layer.data.shape[layer.ndim - 3])
        return n if n > 1 else None

    def current_frame(self, layer: Any | None = None) -> int | None:
        """Index of the stack frame at the viewer's z slider (``None`` for a single frame)."""
        layer = self.image_layer() if layer is None else layer
        n = self._n_frames(layer)
        if n is None:
            return None
        point = np.asarray(layer.world_to_data(self.viewer.dims.point), np.float64)
        return int(np.clip(np.rint(point[layer.ndim - 3]), 0, n - 1))

    def _update_frame_label(self, *_: Any) -> None:
        try:
            k = self.current_frame()
            text = "current frame (z slider)" if k is None else f"current frame ({k}, z slider)"
            self.frames_combo.setItemText(0, text)
        except RuntimeError:  # the dock was closed; its C++ side is gone
            pass

    def _on_analysis_changed(self, *_: Any) -> None:
        rmse = self.analysis_combo.currentData() == ANALYSIS_RMSE
        self.defocus_panel.setVisible(not rmse)
        self.rmse_panel.setVisible(rmse)
        self.advanced.setVisible(not rmse)
        self._update_weights_label()
        self._update_enabled()

    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_layer()
        stack = self._n_frames(layer) is not None
        self.focus_mode.blockSignals(True)
        self.focus_mode.clear()
        focus = _layers.focus_from_layer(layer) if stack else None
        if focus is not None:
            self.focus_mode.addItem(
                f"from layer ({len(focus)} positions, {focus[0]:g} … {focus[-1]:g} µm)",
                FOCUS_METADATA,
            )
        self.focus_mode.addItem("start + step (µm)", FOCUS_START_STEP)
        self.focus_mode.addItem("unknown: predictions only, no error", FOCUS_UNKNOWN)
        start_step = None
        if focus is not None:
            n = len(focus)
            start_step = (float(focus[0]), float((focus[-1] - focus[0]) / max(n - 1, 1)))
        elif stack:
            start_step = _layers.scale_focus_from_layer(layer)
        for w in (self.focus_start, self.focus_step):
            w.blockSignals(True)
        if start_step is not None:
            self.focus_start.setValue(start_step[0])
            self.focus_step.setValue(start_step[1])
        for w in (self.focus_start, self.focus_step):
            w.blockSignals(False)
        mode = (
            FOCUS_METADATA
            if focus is not None
            else FOCUS_START_STEP
            if start_step
            else FOCUS_UNKNOWN
        )
        self.focus_mode.setCurrentIndex(self.focus_mode.findData(mode))
        self.focus_mode.blockSignals(False)
        px = None if layer is None else _layers.pixel_size_from_layer(layer)
        self.pixel_size.setValue(px or 0.0)
        self._update_frame_label()
        self._update_enabled()

    def _on_focus_edited(self, *_: Any) -> None:
        """Typing a start or step means: use start + step."""
        i = self.focus_mode.findData(FOCUS_START_STEP)
        if i >= 0 and self.focus_mode.currentIndex() != i:
            self.focus_mode.setCurrentIndex(i)

    def _update_enabled(self, *_: Any) -> None:
        running = self._running()
        stack = self._n_frames(self.image_layer()) is not None
        for w in self._inputs:
            w.setEnabled(not running)
        if not running:
            self.focus_mode.setEnabled(stack)
            self.frames_combo.setEnabled(stack)
            editable = stack and self.focus_mode.currentData() != FOCUS_UNKNOWN
            self.focus_start.setEnabled(editable)
            self.focus_step.setEnabled(editable)
        self.cancel_button.setEnabled(running and not self._adding_layers)

    def focus_positions(self, n_frames: int) -> np.ndarray | None:
        """Focus positions (µm) the run will use, or ``None`` when they are unknown."""
        from napari_gplws.stack import uniform_positions

        mode = self.focus_mode.currentData()
        if mode == FOCUS_METADATA:
            return _layers.focus_from_layer(self.image_layer())
        if mode == FOCUS_START_STEP:
            return uniform_positions(n_frames, self.focus_start.value(), self.focus_step.value())
        return None

    def grid(self) -> tuple[int, int]:
        return self.grid_rows.value(), self.grid_cols.value()

    # ======================================================================================
    # Running
    # ======================================================================================
    def _running(self) -> bool:
        return self._adding_layers or (self.job is not None and self.job.running)

    def run(self) -> None:
        """Run the chosen analysis with the chosen settings."""
        if self._running():
            return
        if self.analysis_combo.currentData() == ANALYSIS_RMSE:
            self.run_rmse()
        else:
            self.run_defocus()

    def run_defocus(self) -> None:
        """Start the LDSE-NET defocus analysis of the selected image in the background."""
        layer = self.image_layer()
        if layer is None:
            self._fail("Open or select an image first: one frame, or a stack of frames.")
            return
        n_frames = self._n_frames(layer)
        frame_index: int | None = None
        focus = None
        if n_frames is not None:
            frames = _layers.stack_frames(layer, self.viewer)
            try:
                focus = self.focus_positions(n_frames)
            except GplwsError as exc:  # a FocusPositionError (e.g. a zero step)
                self._fail(str(exc))
                return
            if self.frames_combo.currentData() == FRAMES_CURRENT:
                frame_index = self.current_frame(layer)
            elif self.frames_combo.currentData() == FRAMES_COMBINED and focus is None:
                self._fail(
                    "Combining frames needs their focus positions: choose them under "
                    "'Focus positions' (from the layer or start + step)."
                )
                return
            stack_scale = float(layer.scale[layer.ndim - 3])
            stack_translate = float(layer.translate[layer.ndim - 3])
        else:
            frames = _layers.stack_frames(layer, self.viewer) if layer.ndim >= 3 else layer.data
            stack_scale, stack_translate = 1.0, 0.0
        combine = n_frames is not None and self.frames_combo.currentData() == FRAMES_COMBINED
        rgb = bool(layer.rgb)
        contrast = tuple(float(c) for c in layer.contrast_limits)
        name = layer.name
        shape_yx = tuple(int(v) for v in layer.data.shape[layer.ndim - 2 : layer.ndim])
        scale_yx, translate_yx = _layers.yx_geometry(layer)
        px = self.pixel_size.value() or None
        grid = self.grid()
        device = self.device_combo.currentText()
        stride = self.stride.value() or None
        min_content = self.min_content.value()
        weights = self.weights
        status = weights_status(weights)

        def task(progress, cancel):
            from napari_gplws._shared.callbacks import check_cancel
            from napari_gplws.defocus.analyse import autofocus
            from napari_gplws.evaluation.region_error import frame_error_summary
            from napari_gplws.stack import FocalStack

            data = np.asarray(frames)
            if rgb and data.shape[-1] == 4:
                data = data[..., :3]  # RGBA: the alpha channel carries no focus
            if n_frames is None:
                if data.ndim == 3 + rgb:  # a one-frame stack
                    data = data[0]
                source: Any = data
                as_stack = data[None]
            else:
                source = FocalStack(data, focus_um=focus, pixel_size_um=px, source=name)
                as_stack = data
            res = autofocus(
                source, frame=frame_index, grid=grid, device=device, progress=progress,
                cancel=cancel, stride=stride, min_content=min_content, weights=weights,
                pixel_size_um=px, combine_frames=combine,
            )  # fmt: skip
            check_cancel(cancel)
            grids, points, texts, scale, translate = defocus_products(
                res, n_frames=n_frames, shape_yx=shape_yx, scale_yx=scale_yx,
                translate_yx=translate_yx, stack_scale=stack_scale,
                stack_translate=stack_translate,
            )  # fmt: skip
            meta = {
                "units": res.units,
                "source": name,
                "weights": str(weights),
                "weights_status": status,
                "device": device,
                "grid": list(res.grid),
                "frames": [int(k) for k in res.frames],
                "focus_um": None if res.focus_um is None else [float(v) for v in res.focus_um],
                "pixel_size_um": px,
                "tile_px": res.tile_px,
                "stride": res.stride,
                "min_content": res.min_content,
                "defocus_convention": "frame position − best-focus position "
                "(µm of focus-drive travel)",
                "seconds": round(float(res.timings.get("total_s", 0.0)), 3),
                "combined_frames": res.combined,
            }
            return FocalMapResult(
                analysis=ANALYSIS_DEFOCUS, input_name=name, key=name, grids=grids,
                points=points, texts=texts, scale=scale, translate=translate, units=res.units,
                metadata=meta, autofocus=res, frame_rows=frame_error_summary(res),
                backdrop=region_luminance(as_stack, res.frames, res.grid, contrast).ravel(),
            )  # fmt: skip

        if self.job is not None:
            self.job.deleteLater()
        self.job = Job(
            task,
            description=f"Focal error map: {name}",
            on_done=self._on_done,
            on_error=self._on_error,
            on_cancelled=self._on_cancelled,
            on_finished=self._on_job_finished,
            activity=self.activity_progress
            if self.activity_progress is not None
            else not software_opengl(),
            parent=self,
        )
        self.job.progressed.connect(self._show_progress)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        what = "" if frame_index is None else f" (frame {frame_index})"
        self.status_label.setText(f"Estimating the defocus of '{name}'{what}…")
        self.job.start()
        self._update_enabled()

    def run_rmse(self) -> None:
        """Compare the chosen reconstruction with the chosen ground truth, region by region.

        Fast (a pass over two 2-D maps), so it runs on the GUI thread.
        """
        from napari_gplws.evaluation.region_error import common_units, overall_rmse, region_rmse

        recon, truth = self.recon_combo.currentData(), self.truth_combo.currentData()
        if not (_layers.contains(self.viewer, recon) and _layers.contains(self.viewer, truth)):
            self._fail("Choose a reconstruction and a ground-truth depth map (2-D Image layers).")
            return
        if _layers.same(recon, truth):
            self._fail("Choose two different layers: a reconstruction and its ground truth.")
            return
        labels = (f"reconstruction '{recon.name}'", f"ground truth '{truth.name}'")
        grid = self.grid()
        try:
            units = common_units(
                recon.metadata.get("units"), truth.metadata.get("units"), labels=labels
            )
            depth, gt = np.asarray(recon.data), np.asarray(truth.data)
            rmse = region_rmse(depth, gt, grid, labels=labels)
            overall = overall_rmse(depth, gt, labels=labels)
        except GplwsError as exc:
            self._fail(str(exc))
            return
        scale_yx, translate_yx = _layers.yx_geometry(recon)
        scale, translate = grid_geometry(depth.shape, grid, scale_yx, translate_yx)
        points = np.array([(i, j) for i in range(grid[0]) for j in range(grid[1])], np.float64)
        texts = [f"{v:.2f} {units}" if np.isfinite(v) else "no data" for v in rmse.ravel()]
        res = FocalMapResult(
            analysis=ANALYSIS_RMSE, input_name=recon.name, key=f"{recon.name} (RMSE)",
            grids={"rmse": rmse.astype(np.float32)}, points=points, texts=texts, scale=scale,
            translate=translate, units=units, overall_rmse=overall,
            metadata={
                "units": units, "source": recon.name, "ground_truth": truth.name,
                "grid": list(grid), "overall_rmse": None if not np.isfinite(overall) else overall,
            },
        )  # fmt: skip
        self.status_label.setText(f"Comparing '{recon.name}' with '{truth.name}'…")
        self._on_done(res)

    def cancel(self) -> None:
        """Stop the running analysis at its next batch; no layer is added or changed."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status_label.setText("Cancelling…")

    def _show_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status_label.setText("Failed: see the notification.")
        show_error(message)
        self.finished.emit("error")

    # ======================================================================================
    # Results into layers
    # ======================================================================================
    def _heatmap_look(self, res: FocalMapResult, show: str) -> dict[str, Any]:
        values = res.grids[show]
        if show in ("predicted", "true", "error"):
            return {"colormap": DIVERGING_COLORMAP, "contrast_limits": symmetric_limits(values)}
        return {"colormap": SEQUENTIAL_COLORMAP, "contrast_limits": positive_limits(values)}

    def _current_show(self, res: FocalMapResult) -> str:
        if res.analysis == ANALYSIS_RMSE:
            return "rmse"
        show = self.show_combo.currentData()
        return show if show in res.grids else "predicted"

    def _on_done(self, res: FocalMapResult) -> None:
        from napari.layers import Image, Points

        show = self._current_show(res)
        look = self._heatmap_look(res, show)
        rmse = res.analysis == ANALYSIS_RMSE
        base = f"{res.input_name} {'RMSE' if rmse else 'defocus'}"
        kind = "region rmse map" if rmse else "defocus map"
        heatmap = Image(
            res.grids[show], name=f"{base} map", scale=res.scale, translate=res.translate,
            rgb=False, opacity=HEATMAP_OPACITY, blending="translucent", interpolation2d="nearest",
            metadata={**res.metadata, "kind": kind, "shows": show}, **look,
        )  # fmt: skip
        colours = self._text_colours(res, show, look, HEATMAP_OPACITY)
        values = Points(
            res.points, name=f"{base} values", scale=res.scale, translate=res.translate,
            size=0.05, face_color="transparent", border_color="transparent", border_width=0,
            features={"label": res.texts, "text_colour": colours},
            text={"string": "{label}", "color": {"feature": "text_colour"}, "size": TEXT_SIZE,
                  "anchor": "center"},
            metadata={**res.metadata, "kind": f"{kind} values"},
        )  # fmt: skip
        self._adding_layers = True
        self._update_enabled()
        self.outputs.replace(
            res.key,
            {"heatmap": heatmap, "values": values},
            then=lambda layers: self._layers_added(res, layers),
        )

    @staticmethod
    def _text_colours(
        res: FocalMapResult, show: str, look: dict[str, Any], opacity: float
    ) -> list[str]:
        backdrop = res.backdrop if res.backdrop is not None else np.full(len(res.points), 0.5)
        return text_colours(
            res.values_at_points(show), look["colormap"], look["contrast_limits"], opacity,
            backdrop,
        )  # fmt: skip

    def _recolour_text(self, *_: Any) -> None:
        """Pick black or white text again after the heatmap changed (quantity or opacity)."""
        res = self.result
        if res is None:
            return
        heatmap, values = self.outputs.get(res.key, "heatmap"), self.outputs.get(res.key, "values")
        if heatmap is None or values is None:
            return
        show = heatmap.metadata.get("shows", self._current_show(res))
        look = {"colormap": heatmap.colormap.name, "contrast_limits": heatmap.contrast_limits}
        colours = self._text_colours(res, show, look, float(heatmap.opacity))
        values.features = values.features.assign(text_colour=colours)

    def _layers_added(self, res: FocalMapResult, layers: dict[str, Any]) -> None:
        self._adding_layers = False
        res.layers = layers
        self.result = res
        layers["heatmap"].events.opacity.connect(self._recolour_text)
        self._fill_summary(res)
        self._set_result_actions()
        self.progress_bar.setVisible(False)
        self._update_enabled()
        self.finished.emit("done")

    def _fill_summary(self, res: FocalMapResult) -> None:
        table = self.summary_table
        table.setRowCount(0)
        if res.analysis == ANALYSIS_RMSE:
            overall = res.overall_rmse
            if overall is None or not np.isfinite(overall):
                self.overall_label.setText("No pixel is valid in both maps.")
            else:
                worst = float(np.nanmax(res.grids["rmse"]))
                self.overall_label.setText(
                    f"Overall RMSE {overall:.3g} {res.units}; worst region {worst:.3g} {res.units}."
                )
            self.status_label.setText(
                f"RMSE per region of '{res.input_name}' against "
                f"'{res.metadata.get('ground_truth')}' ({res.units})."
            )
            table.setVisible(False)
            return
        table.setVisible(True)
        af = res.autofocus
        assert af is not None
        for row in res.frame_rows:
            r = table.rowCount()
            table.insertRow(r)
            cells = [
                str(row["frame"]),
                _fmt(row["focus_um"], "g"),
                _fmt(row["mean_abs_predicted_um"]),
                _fmt(row["mean_abs_error_um"]),
                f"{row['regions_estimated']}/{row['regions']}",
            ]
            for c, text in enumerate(cells):
                table.setItem(r, c, QTableWidgetItem(text))
        summary = af.summary()
        mae = summary.get("mean_abs_error_um")
        if mae is not None:
            within = summary.get("within_0_5_um") or 0.0
            self.overall_label.setText(
                f"Mean |error| over {len(af.frames)} frame(s): {mae:.2f} µm; "
                f"{100 * within:.0f} % of regions within ±0.5 µm."
            )
        elif af.true_um is not None:
            self.overall_label.setText("No region has both a prediction and a true defocus.")
        else:
            self.overall_label.setText(
                "No true defocus: give the stack's focus positions to get the error."
                if len(res.scale) == 3
                else "One frame: predicted defocus only (a stack gives the error too)."
            )
        rejected = summary["tiles_rejected"]
        total = summary["tiles_per_frame"] * len(af.frames)
        secs = af.timings.get("total_s", 0.0)
        self.status_label.setText(
            f"Done in {secs:.2f} s: {len(af.frames)} frame(s), {rejected} of {total} tiles "
            "rejected as blank. Defocus = frame position − best focus (µm)."
        )

    def _set_result_actions(self) -> None:
        res = self.result
        defocus = res is not None and res.analysis == ANALYSIS_DEFOCUS
        for w in (self.export_csv_button, self.export_json_button):
            w.setEnabled(defocus)
        model = self.show_combo.model()
        for i in range(self.show_combo.count()):
            key = self.show_combo.itemData(i)
            model.item(i).setEnabled(defocus and key in res.grids)  # type: ignore[union-attr]
        if defocus and self.show_combo.currentData() not in res.grids:  # type: ignore[union-attr]
            self.show_combo.setCurrentIndex(self.show_combo.findData("predicted"))
        self.show_combo.setEnabled(defocus)
        self.show_row.setVisible(res is None or defocus)

    def _on_show_changed(self, *_: Any) -> None:
        """Show another quantity in the last defocus heatmap (no new run)."""
        res = self.result
        if res is None or res.analysis != ANALYSIS_DEFOCUS:
            return
        layer = self.outputs.get(res.key, "heatmap")
        show = self._current_show(res)
        if layer is None:
            return
        look = self._heatmap_look(res, show)
        layer.data = res.grids[show]
        layer.colormap = look["colormap"]
        layer.contrast_limits_range = look["contrast_limits"]
        layer.contrast_limits = look["contrast_limits"]
        layer.metadata["shows"] = show
        self._recolour_text()

    def _on_error(self, message: str) -> None:
        self._fail(message)

    def _on_cancelled(self) -> None:
        self.status_label.setText("Cancelled; no layer was added or changed.")
        self.finished.emit("cancelled")

    def _on_job_finished(self) -> None:
        if not self._adding_layers:  # else _layers_added unlocks the controls
            self.progress_bar.setVisible(False)
            self._update_enabled()

    # ======================================================================================
    # Exports
    # ======================================================================================
    def _ask_path(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return str(path or "")

    def _export_csv_clicked(self) -> None:
        if self.result is not None and self.result.autofocus is not None:
            path = self._ask_path(
                "Save the region table", f"{self.result.input_name}_focal_error.csv", "CSV (*.csv)"
            )
            if path:
                self.export_csv(path)

    def _export_json_clicked(self) -> None:
        if self.result is not None and self.result.autofocus is not None:
            path = self._ask_path(
                "Save the result", f"{self.result.input_name}_focal_error.json", "JSON (*.json)"
            )
            if path:
                self.export_json(path)

    def export_csv(self, path: str) -> Path | None:
        """Write the per-region table (one row per frame and region) as CSV."""
        return self._export(path, ".csv")

    def export_json(self, path: str) -> Path | None:
        """Write the whole result (grids, settings, summary) as JSON."""
        return self._export(path, ".json")

    def _export(self, path: str, suffix: str) -> Path | None:
        from napari_gplws._shared.files import move_aside

        res = self.result
        if res is None or res.autofocus is None:
            return None
        if Path(path).suffix.lower() != suffix:
            path = f"{path}{suffix}"
        try:
            backup = move_aside(path)
            write = res.autofocus.to_csv if suffix == ".csv" else res.autofocus.to_json
            out = write(path)
        except GplwsError as exc:
            show_exception(exc)
            return None
        except OSError as exc:
            show_exception(GplwsError(f"Cannot write '{path}': {exc}."))
            return None
        kept = f" (the earlier file was kept as {backup.name})" if backup else ""
        self.status_label.setText(f"Saved {out}{kept}.")
        return out


# ==========================================================================================
# Small helpers
# ==========================================================================================
def _int_spin(lo: int, hi: int, value: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setKeyboardTracking(False)
    return s


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _looks_like_truth(layer: Any) -> bool:
    name = layer.name.lower()
    return (
        "truth" in name
        or name.endswith(" gt")
        or name.startswith("gt ")
        or layer.metadata.get("kind") in ("ground truth", "gt")
    )
