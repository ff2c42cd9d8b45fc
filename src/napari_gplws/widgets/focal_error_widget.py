"""The **Focal error map** dock widget: defocus per region of the field, drawn over the image.

Two analyses, both over a ``rows × cols`` grid of regions (3×3 by default):

* **Defocus per region (LDSE-NET)** — a thin layer over
  :func:`napari_gplws.defocus.autofocus`. Input: an Image layer holding one frame
  (grey or RGB) or a stack with the focus axis first (focus positions from the layer's
  metadata or scale, editable as start + step), the frame at the z slider or all frames, the
  device, the grid, and (advanced) the tile stride and the blank-tile threshold. One
  background :class:`~._worker.Job` (progress, Cancel between batches, core errors as
  notifications) produces two layers named after the input:

  - ``<image> defocus map`` — Image of shape ``(rows, cols)`` for a frame, ``(N, rows, cols)``
    for a stack (it follows the z slider: same leading axis and scale as the stack), whose
    cell ``(i, j)`` covers exactly the pixels of region ``(i, j)`` as the core defines them
    (equal fractions of the frame; see :func:`._focal_error_view.grid_geometry`). Diverging
    colour map centred on 0 µm with symmetric limits; regions without an estimate are NaN,
    i.e. transparent. **Heatmap shows** switches it between predicted, true and error (with
    a stack and focus positions) and the unsigned magnitude, without running again;
  - ``<image> defocus values`` — Points at the region centres whose text gives the values
    in µm ("no estimate" where every tile was rejected as blank); with a stack, one point
    per frame and region, so the text follows the slider too.

  The dock lists the mean absolute error per frame and over all frames, and exports the
  per-region table as CSV or JSON (:meth:`~napari_gplws.defocus.AutofocusResult.to_csv`,
  ``to_json``); an existing file is first kept as a backup
  (:func:`~napari_gplws._shared.files.move_aside`).

* **Reconstruction vs ground truth** — the RMSE per region between a reconstructed depth
  map and a ground-truth depth map (two 2-D Image layers of the same shape),
  :func:`napari_gplws.evaluation.region_error.region_rmse`, drawn the same way.

When the packaged LDSE-NET weights fall short of their target (their model card says so),
the dock says in one plain line what that means for the user, with the card's words in its
tooltip; the status is stored in the layers' metadata, with the units and the weights.
The *Weights* box (:mod:`._weights_panel`) chooses the weights, names them with their
held-out figures, and calibrates new ones from the user's own stacks in the background.

Re-running replaces only the layers this widget made for that input
(:class:`._layers.OwnLayers`); a new result hides the dock's earlier ones, so texts never
overlap. The region texts follow **Heatmap shows**. The layers share the input's geometry
and ``units``. Closing the dock or deleting the input layer during a run cancels it. It computes nothing itself; what it shows (geometry, texts,
colours, tables) is worked out without Qt in :mod:`._focal_error_view`, and the focus
positions are chosen with :class:`._focus_picker.FocusPicker`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from napari_gplws.defocus import MIN_CONTENT, TILE_PX
from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _focal_error_view as view
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import (
    collapsible_group,
    fill_devices_later,
    make_scrollable,
    spin,
)
from napari_gplws.widgets._focal_error_tools import FocalResultTools
from napari_gplws.widgets._focus_picker import FocusPicker
from napari_gplws.widgets._layer_combo import LayerCombo
from napari_gplws.widgets._weights_panel import WeightsPanel
from napari_gplws.widgets._worker import CloseWatcher, Job, software_opengl

if TYPE_CHECKING:
    import napari

WIDGET_NAME = "focal_error_map"
#: Tile strides autofocus() accepts (px); the tile size (224 px) means no overlap.
STRIDE_RANGE_PX = (16, 4096)


# --- The dock ----------------------------------------------------------------------------
class FocalErrorMapWidget(FocalResultTools, QWidget):
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
        self.result: view.FocalMapResult | None = None
        self.job: Job | None = None
        self.activity_progress: bool | None = None
        self._adding_layers = False
        self._input: Any = None  # the image layer of the run in progress
        self._weights: str | Path = view.DEFAULT_WEIGHTS

        # --- one line about the weights (details in its tooltip) ---------------------------
        self.weights_label = QLabel("")
        self.weights_label.setWordWrap(True)
        self.weights_label.setStyleSheet("color: #ffb74d;")

        # --- inputs ------------------------------------------------------------------------
        self.analysis_combo = QComboBox()
        self.analysis_combo.addItem("Defocus per region (LDSE-NET)", view.ANALYSIS_DEFOCUS)
        self.analysis_combo.addItem("Reconstruction vs ground truth (RMSE)", view.ANALYSIS_RMSE)
        self.image_combo = LayerCombo()
        self.image_combo.setToolTip(
            "One frame (grey or RGB), or a stack with the focus axis first."
        )
        self.focus = FocusPicker("unknown: predictions only, no error", self)
        self.focus_mode, self.focus_start, self.focus_step = self.focus.widgets
        self.pixel_size = spin(0.0, 1e4, 4, " µm")
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setToolTip(
            "Lateral pixel size. When it differs from the one the weights were trained for, "
            "the frames are resampled to it first; 'unknown' uses the frames as they are."
        )
        self.frames_combo = QComboBox()
        self.frames_combo.addItem("current frame (z slider)", view.FRAMES_CURRENT)
        self.frames_combo.addItem("all frames", view.FRAMES_ALL)
        self.frames_combo.addItem(
            "all frames, direction from their positions", view.FRAMES_COMBINED
        )
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
        self.stride = _int_spin(STRIDE_RANGE_PX[0], STRIDE_RANGE_PX[1], TILE_PX)
        self.stride.setSingleStep(16)
        self.stride.setSuffix(" px")
        self.stride.setToolTip(
            f"Tile stride, {STRIDE_RANGE_PX[0]}–{STRIDE_RANGE_PX[1]} px; {TILE_PX} px (the tile "
            "size) means no overlap, smaller makes overlapping tiles (slower)."
        )
        self.min_content = QDoubleSpinBox()
        self.min_content.setRange(0.0, 1.0)
        self.min_content.setSingleStep(0.05)
        self.min_content.setDecimals(2)
        self.min_content.setValue(MIN_CONTENT)
        self.min_content.setToolTip(
            "Blank-tile threshold: tiles whose fraction of non-background 4×4 blocks is below "
            "this are rejected (0 keeps every tile)."
        )
        self.recon_combo = LayerCombo()
        self.recon_combo.setToolTip("The reconstructed depth map (2-D Image layer).")
        self.truth_combo = LayerCombo()
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
        for key, label in view.SHOW_LABELS.items():
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
        self.weights_panel = WeightsPanel.attach(self)  # chooser, "Calibrate from stacks…"
        self.weights = view.DEFAULT_WEIGHTS
        self.reset_choices()
        self._on_analysis_changed()
        self._set_result_actions()
        self._load_devices()

    # --- Layout --------------------------------------------------------------------------
    def _build_layout(self) -> None:
        top = QFormLayout()
        top.addRow("Analysis", self.analysis_combo)

        self.defocus_panel = QWidget()
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Image", self.image_combo)
        self.focus.add_rows(form)
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
        grid_form.addRow("Grid", _hbox(self.grid_rows, "rows ×", self.grid_cols, "columns"))

        self.advanced = collapsible_group("Advanced", [
            ("Tile stride", self.stride),
            ("Blank-tile threshold", self.min_content),
        ])  # fmt: skip

        buttons = _hbox(self.run_button, self.cancel_button)

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
        res.addLayout(_hbox("Export", self.export_csv_button, self.export_json_button))
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
        make_scrollable(self, layout)
        self._inputs = [
            self.analysis_combo, self.image_combo, self.focus_mode, self.focus_start,
            self.focus_step, self.pixel_size, self.frames_combo, self.device_combo,
            self.grid_rows, self.grid_cols, self.advanced, self.recon_combo, self.truth_combo,
            self.run_button,
        ]  # fmt: skip

    def _connect(self) -> None:
        self.analysis_combo.currentIndexChanged.connect(self._on_analysis_changed)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.focus.changed.connect(self._update_enabled)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.show_combo.currentIndexChanged.connect(self._on_show_changed)
        self.export_csv_button.clicked.connect(lambda: self._export_clicked(".csv"))
        self.export_json_button.clicked.connect(lambda: self._export_clicked(".json"))
        # The "current frame" entry names the frame at the z slider.
        self.viewer.dims.events.current_step.connect(self._update_frame_label)
        for combo, what in (
            (self.image_combo, "image"), (self.recon_combo, "reconstruction"),
            (self.truth_combo, "ground truth"),
        ):  # fmt: skip
            combo.lost.connect(lambda name, what=what: self._on_lost(what, name))
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._close_watch = CloseWatcher(self, self._on_closed)

    def _load_devices(self) -> None:
        fill_devices_later(self.device_combo, self)

    # --- Weights -------------------------------------------------------------------------
    @property
    def weights(self) -> str | Path:
        return self._weights

    @weights.setter
    def weights(self, value: str | Path) -> None:
        self._weights = value
        self.weights_panel.set_weights(value)  # the box names the weights in use
        status = view.weights_status(value)
        self.weights_label.setText(view.weights_warning(status))
        self.weights_label.setToolTip(view.weights_details(status))
        self._update_weights_label()

    def _update_weights_label(self) -> None:
        """The warning is about LDSE-NET: shown while that analysis is chosen."""
        defocus = self.analysis_combo.currentData() == view.ANALYSIS_DEFOCUS
        self.weights_label.setVisible(defocus and bool(self.weights_label.text()))

    # --- Input choices -------------------------------------------------------------------
    def _not_ours(self, layers: list[Any]) -> list[Any]:
        return [ly for ly in layers if ly.metadata.get(_layers.MADE_BY) != WIDGET_NAME]

    def image_candidates(self) -> list[Any]:
        """Image layers to analyse: stacks first, then frames that are not depth maps, then
        the rest; never this widget's own heatmaps."""
        from napari.layers import Image

        images = self._not_ours([ly for ly in self.viewer.layers if isinstance(ly, Image)])
        return view.order_images(images)

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (called by napari when layers are added, removed, reordered)."""
        self.image_combo.refill(self.image_candidates())
        depths = self._not_ours(_layers.depth_layers(self.viewer))
        # A first choice for the comparison (nothing chosen yet, nothing lost): the layer
        # that looks like a ground truth, and another one as the reconstruction.
        truth_first = self.truth_combo.currentData() is None and self.truth_combo.missing is None
        recon_first = self.recon_combo.currentData() is None and self.recon_combo.missing is None
        truth = next((ly for ly in depths if view.looks_like_truth(ly)), None)
        self.truth_combo.refill(depths)
        if truth_first and truth is not None:
            self.truth_combo.choose(truth)
        self.recon_combo.refill(depths)
        if recon_first:
            chosen = self.truth_combo.currentData()
            recon = next((ly for ly in depths if not _layers.same(ly, chosen)), None)
            if recon is not None:
                self.recon_combo.choose(recon)
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

    def current_frame(self, layer: Any | None = None) -> int | None:
        """Index of the stack frame at the viewer's z slider (``None`` for a single frame)."""
        layer = self.image_layer() if layer is None else layer
        return view.frame_at(layer, self.viewer.dims.point)

    def _update_frame_label(self, *_: Any) -> None:
        try:
            k = self.current_frame()
            text = "current frame (z slider)" if k is None else f"current frame ({k}, z slider)"
            self.frames_combo.setItemText(0, text)
        except RuntimeError:  # the dock was closed; its C++ side is gone
            pass

    def _on_analysis_changed(self, *_: Any) -> None:
        rmse = self.analysis_combo.currentData() == view.ANALYSIS_RMSE
        self.defocus_panel.setVisible(not rmse)
        self.rmse_panel.setVisible(rmse)
        self.advanced.setVisible(not rmse)
        self._update_weights_label()
        self._update_enabled()

    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_layer()
        stack = view.stack_length(layer) is not None
        self.focus.set_layer(layer if stack else None)
        px = None if layer is None else _layers.pixel_size_from_layer(layer)
        self.pixel_size.setValue(px or 0.0)
        self._update_frame_label()
        self._update_enabled()

    def _update_enabled(self, *_: Any) -> None:
        running = self._running()
        stack = view.stack_length(self.image_layer()) is not None
        for w in self._inputs:
            w.setEnabled(not running)
        if not running:
            self.focus.set_enabled(stack)
            self.frames_combo.setEnabled(stack)
        self.cancel_button.setEnabled(running and not self._adding_layers)

    def focus_positions(self, n_frames: int) -> np.ndarray | None:
        """Focus positions (µm) the run will use, or ``None`` when they are unknown."""
        return self.focus.positions(self.image_layer(), n_frames)

    def grid(self) -> tuple[int, int]:
        return self.grid_rows.value(), self.grid_cols.value()

    # --- Running -------------------------------------------------------------------------
    def _running(self) -> bool:
        return self._adding_layers or (self.job is not None and self.job.running)

    def run(self) -> None:
        """Run the chosen analysis with the chosen settings."""
        if self._running():
            return
        if self.analysis_combo.currentData() == view.ANALYSIS_RMSE:
            self.run_rmse()
        else:
            self.run_defocus()

    def run_defocus(self) -> None:
        """Start the LDSE-NET defocus analysis of the selected image in the background."""
        layer = self.image_layer()
        if layer is None:
            self._fail("Open or select an image first: one frame, or a stack of frames.")
            return
        n_frames = view.stack_length(layer)
        frame_index: int | None = None
        focus = None
        if n_frames is not None:
            frames = _layers.stack_frames(layer, self.viewer)
            try:
                focus = self.focus_positions(n_frames)
            except GplwsError as exc:  # a FocusPositionError (e.g. a zero step)
                self._fail(str(exc))
                return
            if self.frames_combo.currentData() == view.FRAMES_CURRENT:
                frame_index = self.current_frame(layer)
            elif self.frames_combo.currentData() == view.FRAMES_COMBINED and focus is None:
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
        combine = n_frames is not None and self.frames_combo.currentData() == view.FRAMES_COMBINED
        px = self.pixel_size.value() or None
        applied = self._apply_pixel_size(layer, px)
        axis_units = tuple(_layers.short_unit(str(u)) for u in layer.units[-3 if n_frames else -2 :])
        rgb = bool(layer.rgb)
        contrast = tuple(float(c) for c in layer.contrast_limits)
        name = layer.name
        shape_yx = tuple(int(v) for v in layer.data.shape[layer.ndim - 2 : layer.ndim])
        scale_yx, translate_yx = _layers.yx_geometry(layer)
        grid = self.grid()
        device = self.device_combo.currentText()
        stride = self.stride.value()
        min_content = self.min_content.value()
        weights = self.weights
        status = view.weights_status(weights)

        def task(progress, cancel):
            from napari_gplws._shared.callbacks import check_cancel
            from napari_gplws.defocus import autofocus

            source, as_stack = view.autofocus_input(
                frames, n_frames=n_frames, rgb=rgb, focus_um=focus, pixel_size_um=px, name=name
            )
            res = autofocus(
                source, frame=frame_index, grid=grid, device=device, progress=progress,
                cancel=cancel, stride=stride, min_content=min_content, weights=weights,
                pixel_size_um=px, combine_frames=combine,
            )  # fmt: skip
            check_cancel(cancel)
            out = view.defocus_map_result(
                res, as_stack, name=name, n_frames=n_frames, shape_yx=shape_yx,
                scale_yx=scale_yx, translate_yx=translate_yx, stack_scale=stack_scale,
                stack_translate=stack_translate, contrast_limits=contrast, weights=weights,
                weights_status=status, device=device, pixel_size_um=px,
            )  # fmt: skip
            out.axis_units = axis_units
            return out

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
        self.status_label.setText(f"Estimating the defocus of '{name}'{what}…{applied}")
        self._input = layer
        self._clear_summary("Running…")
        self.job.start()
        self._update_enabled()

    def _apply_pixel_size(self, layer: Any, px: float | None) -> str:
        """Give the image layer a typed pixel size too (one geometry for input and outputs)."""
        if px is None or _layers.yx_geometry(layer)[0] == (px, px):
            return ""
        _layers.set_pixel_size(layer, px)
        return f" The pixel size {px:g} µm was applied to '{layer.name}' too."

    def _clear_summary(self, overall: str = "") -> None:
        self.summary_table.setRowCount(0)
        self.overall_label.setText(overall)

    def _on_lost(self, what: str, name: str) -> None:
        if not self._running():
            self.status_label.setText(f"The {what} '{name}' was removed; choose another.")

    def _on_layer_removed(self, event: Any) -> None:
        """Deleting the input layer during a run cancels the run."""
        if self._running() and _layers.same(getattr(event, "value", None), self._input):
            self.cancel()
            self.status_label.setText(
                f"'{self._input.name}' was removed: the run was cancelled; no layer was added."
            )

    def _on_closed(self) -> None:
        """Closing the dock during a run cancels it (no layer appears afterwards)."""
        if self.job is not None and self.job.running:
            self.job.cancel()

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
        res = view.rmse_map_result(
            rmse, overall, units=units, recon_name=recon.name, truth_name=truth.name,
            shape_yx=depth.shape, scale_yx=scale_yx, translate_yx=translate_yx,
        )  # fmt: skip
        res.axis_units = tuple(_layers.short_unit(str(u)) for u in recon.units[-2:])
        self.status_label.setText(f"Comparing '{recon.name}' with '{truth.name}'…")
        self._input = recon
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

        self.status_label.setText(message)  # never a stale line from an earlier run
        show_error(message)
        self.finished.emit("error")

    # --- Results into layers -------------------------------------------------------------
    def _current_show(self, res: view.FocalMapResult) -> str:
        return view.shown_quantity(res, self.show_combo.currentData())

    def _on_done(self, res: view.FocalMapResult) -> None:
        if self._close_watch.closed or not _layers.contains(self.viewer, self._input):
            self._on_cancelled()  # the dock was closed or the input deleted meanwhile
            return
        layers = view.output_layers(res, self._current_show(res))
        self._adding_layers = True
        self._update_enabled()
        self.outputs.replace(res.key, layers, then=lambda added: self._layers_added(res, added))

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
        colours = view.point_text_colours(res, show, look, float(heatmap.opacity))
        values.features = values.features.assign(text_colour=colours)

    def _layers_added(self, res: view.FocalMapResult, layers: dict[str, Any]) -> None:
        self._adding_layers = False
        self._input = None
        res.layers = layers
        self.result = res
        # The dock's earlier results stay, hidden: their texts would overlap the new ones.
        for ly in self.viewer.layers:
            if ly.metadata.get(_layers.MADE_BY) == WIDGET_NAME and not any(
                _layers.same(ly, new) for new in layers.values()
            ):
                ly.visible = False
        layers["heatmap"].events.opacity.connect(self._recolour_text)
        self._fill_summary(res)
        self._set_result_actions()
        self.progress_bar.setVisible(False)
        self._update_enabled()
        self.finished.emit("done")

    def _on_show_changed(self, *_: Any) -> None:
        """Show another quantity in the last defocus heatmap (no new run)."""
        res = self.result
        if res is None or res.analysis != view.ANALYSIS_DEFOCUS:
            return
        layer = self.outputs.get(res.key, "heatmap")
        show = self._current_show(res)
        if layer is None:
            return
        look = view.heatmap_look(res.grids[show], show)
        layer.data = res.grids[show]
        layer.colormap = look["colormap"]
        layer.contrast_limits_range = look["contrast_limits"]
        layer.contrast_limits = look["contrast_limits"]
        layer.metadata["shows"] = show
        values = self.outputs.get(res.key, "values")
        if values is not None:
            values.features = values.features.assign(label=view.texts_for(res, show))
        self._recolour_text()

    def _on_error(self, message: str) -> None:
        self._fail(message)

    def _on_cancelled(self) -> None:
        if "was removed" not in self.status_label.text():
            self.status_label.setText("Cancelled; no layer was added or changed.")
        self._adding_layers = False
        self._input = None
        self._clear_summary("Cancelled: no new result. The layers of earlier runs are unchanged.")
        self.finished.emit("cancelled")

    def _on_job_finished(self) -> None:
        if not self._adding_layers:  # else _layers_added unlocks the controls
            self.progress_bar.setVisible(False)
            self._update_enabled()


# --- Small helpers -----------------------------------------------------------------------
def _int_spin(lo: int, hi: int, value: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setKeyboardTracking(False)
    return s


def _hbox(*items: QWidget | str) -> QHBoxLayout:
    """A row of widgets; a string becomes a label."""
    row = QHBoxLayout()
    for item in items:
        row.addWidget(QLabel(item) if isinstance(item, str) else item)
    return row
