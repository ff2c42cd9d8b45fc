"""The **Depth from focus** dock widget: stack in, depth / all-in-focus / confidence / 3D surface out.

A thin layer over :func:`napari_gplws.reconstruct` and :mod:`napari_gplws.metrology.mesh`: the
widget gathers the inputs (stack layer, focus positions, pixel size, method, device, advanced
options), runs one background :class:`~._worker.Job` (reconstruction, then the coarse mesh and
its texture), and turns the result into layers named after the input:

* ``<stack> depth`` — Image, viridis, yx scale/translate of the stack, units and method in
  ``metadata``;
* ``<stack> all-in-focus`` — Image in the input's dtype (RGB kept);
* ``<stack> confidence`` — Image in [0, 1], hidden;
* ``<stack> surface`` — textured Surface: coarse mesh in the stack's geometry (each point in
  the frame where it is in focus) with the full-resolution all-in-focus image as texture;
  shown by **View surface in 3D** as height, up toward the objective
  (:mod:`._view3d`; **Invert height**, :mod:`._height`, turns it over).

Every layer shares the stack's world geometry, ``units`` (µm where known: the scale bar
reads µm) and ``axis_labels``; a pixel size typed in the dock is applied to the stack layer
too. Re-running replaces only the layers this widget made for that input; closing the dock
or deleting the input layer during a run cancels it. Exports: the depth map as
a float TIFF with its units (:func:`~napari_gplws.io._read.write_depth_tiff`), the mesh as
PLY/STL/OBJ (:func:`~napari_gplws.metrology.mesh.export_mesh`), and the areal surface parameters
(:mod:`napari_gplws.metrology.roughness`) of the whole map and of a drawn rectangle as CSV.

It computes nothing itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import (
    collapsible_group,
    fill_devices_later,
    find_data,
    make_scrollable,
    spin,
)
from napari_gplws.widgets._depth_results import RunResult, alignment_summary, result_layers
from napari_gplws.widgets._depth_tools import DepthResultTools
from napari_gplws.widgets._focus_picker import FocusPicker
from napari_gplws.widgets._height import height_setting, invert_checkbox
from napari_gplws.widgets._layer_combo import LayerCombo
from napari_gplws.widgets._open_frames import OpenFramesRow
from napari_gplws.widgets._view3d import SurfaceView
from napari_gplws.widgets._worker import CloseWatcher, Job, software_opengl

if TYPE_CHECKING:
    import napari

WIDGET_NAME = "depth_from_focus"


class DepthFromFocusWidget(DepthResultTools, QWidget):
    """Dock widget: reconstruct a focus stack layer (see the module docstring).

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
        self.result: RunResult | None = None
        self.job: Job | None = None
        self.view3d = SurfaceView(napari_viewer)
        self._adding_layers = False
        self._input: Any = None  # the stack layer of the run in progress

        # --- inputs --------------------------------------------------------------------------
        self.stack_combo = LayerCombo()
        self.stack_combo.setToolTip(
            "Image layer holding the focus stack (frames along the first axis)."
        )
        self.open_frames = OpenFramesRow(napari_viewer, self)
        self.open_frames.opened.connect(self._on_frames_opened)
        self.focus = FocusPicker("unknown: depth in frame index", self)
        self.focus_mode, self.focus_start, self.focus_step = self.focus.widgets
        self.pixel_size = spin(0.0, 1e4, 4, " µm")
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setToolTip("Lateral pixel size; 'unknown' measures x and y in pixels.")
        self.method_combo = QComboBox()
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu"])
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 8192)
        self.tile_size.setSingleStep(64)
        self.tile_size.setSpecialValueText("auto")
        self.tile_size.setToolTip(
            "GPLWS-Net tile side in pixels; 'auto' fits the memory available."
        )
        self.views = QComboBox()
        for label, n in (("1 (default, fastest)", 1), ("2", 2), ("4", 4), ("8 (most accurate)", 8)):
            self.views.addItem(label, n)
        self.views.setToolTip(
            "GPLWS-Net test-time augmentation: average over this many mirrored/turned views of the "
            "stack. Each view costs one more pass; more views give slightly smoother, more accurate maps."
        )
        self.window = QSpinBox()
        self.window.setRange(3, 63)
        self.window.setSingleStep(2)
        self.window.setValue(9)
        self.window.setToolTip("Focus-measure window in pixels (classical methods).")
        self.refine = QCheckBox("edge-aware refinement")
        self.refine.setChecked(True)
        self.align_combo = QComboBox()
        for label, mode in (("auto: frames that move", "auto"), ("on", "on"), ("off", "off")):
            self.align_combo.addItem(label, mode)
        self.align_combo.setToolTip(
            "Register the frames onto the middle one before reconstructing (focus breathing, "
            "stage drift). auto aligns only frames that really move and leaves a still stack "
            "exactly as it is."
        )
        self.fusion_combo = QComboBox()
        for label, mode in (("pyramid blend", "pyramid"), ("select (matches the depth)", "select")):
            self.fusion_combo.addItem(label, mode)
        self.fusion_combo.setToolTip(
            "All-in-focus image: 'pyramid' blends the frames band by band (no seams, sharpest); "
            "'select' takes each pixel from the frame the depth map names, so the picture "
            "shows exactly where the depth found focus."
        )
        self.show_aligned = QCheckBox("add aligned stack layer")
        self.show_aligned.setToolTip(
            "When the frames were aligned, add them as a layer '<stack> aligned' (hidden at "
            "first, so the depth map stays in view; tick its eye to scroll through it)."
        )

        # --- actions -------------------------------------------------------------------------
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        #: Also show progress in napari's activity area: ``True``, ``False``, or ``None`` (the
        #: default) for "yes, unless OpenGL is a software rasteriser", where napari's animated
        #: activity indicator costs a CPU core (see :mod:`._worker`).
        self.activity_progress: bool | None = None
        self.view3d_button = QPushButton("View surface in 3D")
        self.view3d_button.setCheckable(True)
        self.invert_height = invert_checkbox()
        self.export_depth_button = QPushButton("Depth TIFF…")
        self.export_mesh_button = QPushButton("Mesh…")
        self.region_combo = QComboBox()
        self.new_region_button = QPushButton("New rectangle")
        self.measure_button = QPushButton("Measure")
        self.export_params_button = QPushButton("Parameters CSV…")
        self.params_label = QLabel("Measure to see the parameters.")
        self.params_label.setWordWrap(True)
        #: One value label per parameter (laid out from the start, so the dock never resizes).
        self.param_values: dict[str, QLabel] = {}

        self._build_layout()
        self._fill_methods()
        self._connect()
        self.reset_choices()
        self._set_result_actions(False)
        self._load_devices()

    # ======================================================================================
    # Layout
    # ======================================================================================
    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Stack", self.stack_combo)
        form.addRow("", self.open_frames)
        self.focus.add_rows(form)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("Method", self.method_combo)
        form.addRow("Device", self.device_combo)
        align_row = QHBoxLayout()
        align_row.addWidget(self.align_combo, 1)
        align_row.addWidget(self.show_aligned)
        form.addRow("Align frames", align_row)

        self.advanced = collapsible_group("Advanced", [
            ("Tile size", self.tile_size),
            ("Views", self.views),
            ("Window", self.window),
            ("", self.refine),
            ("All-in-focus", self.fusion_combo),
        ])  # fmt: skip

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        exports = QGroupBox("Export")
        ex = QHBoxLayout()
        ex.addWidget(self.export_depth_button)
        ex.addWidget(self.export_mesh_button)
        exports.setLayout(ex)

        params = QGroupBox("Surface parameters (plane-levelled)")
        pf = QFormLayout()
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_combo, 1)
        region_row.addWidget(self.new_region_button)
        pf.addRow("Region", region_row)
        prow = QHBoxLayout()
        prow.addWidget(self.measure_button)
        prow.addWidget(self.export_params_button)
        pf.addRow(prow)
        pf.addRow(self.params_label)
        grid = QGridLayout()
        from napari_gplws.metrology.roughness import PARAMETERS

        for i, name in enumerate(PARAMETERS):
            value = QLabel("–")
            value.setTextInteractionFlags(Qt.TextSelectableByMouse)
            self.param_values[name] = value
            grid.addWidget(QLabel(name), i % 4, 2 * (i // 4))
            grid.addWidget(value, i % 4, 2 * (i // 4) + 1)
        pf.addRow(grid)
        params.setLayout(pf)

        layout = QVBoxLayout()
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        view_row = QHBoxLayout()
        view_row.addWidget(self.view3d_button)
        view_row.addWidget(self.invert_height)
        layout.addLayout(view_row)
        layout.addWidget(exports)
        layout.addWidget(params)
        layout.addStretch(1)
        make_scrollable(self, layout)
        self._inputs = [
            self.stack_combo, self.focus_mode, self.focus_start, self.focus_step, self.pixel_size,
            self.method_combo, self.device_combo, self.align_combo, self.show_aligned,
            self.advanced, self.run_button,
        ]  # fmt: skip

    def _fill_methods(self) -> None:
        from napari_gplws.dff.methods import METHOD_LABELS, METHODS, default_method

        default = default_method()
        for key in METHODS:
            self.method_combo.addItem(METHOD_LABELS.get(key, key), key)
        if default != "gplws":
            # No packaged weights: keep the entry visible but not selectable, and say why.
            i = self.method_combo.findData("gplws")
            item = self.method_combo.model().item(i)
            item.setEnabled(False)
            item.setText(f"{METHOD_LABELS['gplws']}: weights not installed")
            item.setToolTip("The GPLWS-Net weights are not installed; use a classical measure.")
        self.method_combo.setCurrentIndex(self.method_combo.findData(default))

    def _connect(self) -> None:
        # napari calls reset_choices when layers are added, removed, reordered or renamed.
        self.stack_combo.currentIndexChanged.connect(self._on_stack_changed)
        self.focus.changed.connect(self._on_focus_mode_changed)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.view3d_button.toggled.connect(self._toggle_3d)
        self.export_depth_button.clicked.connect(self._export_depth_clicked)
        self.export_mesh_button.clicked.connect(self._export_mesh_clicked)
        self.new_region_button.clicked.connect(self.add_region_layer)
        self.measure_button.clicked.connect(self.measure)
        self.export_params_button.clicked.connect(self._export_params_clicked)
        self.region_combo.currentIndexChanged.connect(self._clear_parameters)
        self.stack_combo.lost.connect(self._on_stack_lost)
        height_setting().changed.connect(self._on_height_inverted)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._close_watch = CloseWatcher(self, self._on_closed)
        self._on_method_changed()

    def _load_devices(self) -> None:
        fill_devices_later(self.device_combo, self)

    # ======================================================================================
    # Input choices
    # ======================================================================================
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (called by napari when layers are added, removed, reordered)."""
        self.stack_combo.refill(_layers.stack_layers(self.viewer))
        current = self.region_combo.currentData()
        self.region_combo.blockSignals(True)
        self.region_combo.clear()
        self.region_combo.addItem("whole map", None)
        for ly in _layers.shapes_layers(self.viewer):
            self.region_combo.addItem(f"rectangle in '{ly.name}'", ly)
        i = find_data(self.region_combo, current) if current is not None else 0
        self.region_combo.setCurrentIndex(max(0, i))
        self.region_combo.blockSignals(False)
        if current is not None and i < 0:  # its Shapes layer was deleted: say so
            self._clear_parameters()
            self.params_label.setText(
                f"The layer '{current.name}' was removed; measuring the whole map."
            )

    def _on_frames_opened(self, name: str) -> None:
        self.reset_choices()
        if name in self.viewer.layers:  # the live layer, not an earlier one of that name
            self.stack_combo.choose(self.viewer.layers[name])
        self.status_label.setText(f"Opened '{name}'.")

    def _on_stack_lost(self, name: str) -> None:
        if not self._running():
            self.status_label.setText(f"The stack '{name}' was removed; choose another.")

    def stack_layer(self) -> Any | None:
        """The selected stack layer (``None`` when there is none)."""
        layer = self.stack_combo.currentData()
        return layer if _layers.contains(self.viewer, layer) else None

    def _on_stack_changed(self, *_: Any) -> None:
        layer = self.stack_layer()
        self.focus.set_layer(layer)
        self._on_focus_mode_changed()
        px = None if layer is None else _layers.pixel_size_from_layer(layer)
        self.pixel_size.setValue(px or 0.0)

    def _on_focus_mode_changed(self, *_: Any) -> None:
        self.focus.set_enabled(not self._running())

    def _on_method_changed(self, *_: Any) -> None:
        from napari_gplws.dff.methods import CLASSICAL_METHODS

        classical = self.method_combo.currentData() in CLASSICAL_METHODS
        self.device_combo.setToolTip(
            "Classical measures always run on the CPU." if classical else "Where GPLWS-Net runs."
        )
        self.tile_size.setEnabled(not classical)
        self.views.setEnabled(not classical)
        self.window.setEnabled(classical)
        self.refine.setEnabled(classical)

    def focus_positions(self, n_frames: int) -> np.ndarray | None:
        """Focus positions (µm) the run will use, or ``None`` for frame-index units."""
        return self.focus.positions(self.stack_layer(), n_frames)

    # ======================================================================================
    # Running
    # ======================================================================================
    def _running(self) -> bool:
        return self._adding_layers or (self.job is not None and self.job.running)

    def run(self) -> None:
        """Start a reconstruction of the selected stack with the chosen settings."""

        if self._running():
            return
        layer = self.stack_layer()
        if layer is None:
            self._refuse(self._no_stack_message())
            return
        frames = _layers.stack_frames(layer, self.viewer)
        try:
            focus = self.focus_positions(frames.shape[0])
        except GplwsError as exc:  # a FocusPositionError from the core (e.g. a zero step)
            self._refuse(str(exc))
            return
        name = layer.name
        px = self.pixel_size.value() or None
        applied = self._apply_pixel_size(layer, px)
        scale_yx, translate_yx = _layers.yx_geometry(layer)
        stack_z = _layers.z_geometry(layer)
        method = self.method_combo.currentData()
        device = self.device_combo.currentText()
        tile = self.tile_size.value() or None
        views = int(self.views.currentData())
        window = self.window.value() | 1
        refine = self.refine.isChecked()
        align = self.align_combo.currentData()
        fusion = self.fusion_combo.currentData()
        show_aligned = self.show_aligned.isChecked()
        lateral = "µm" if px is not None else "px"
        sign = -1.0  # the exported mesh holds height; the sign is set again when exporting

        def task(progress, cancel):
            from napari_gplws._shared.callbacks import check_cancel
            from napari_gplws.api import reconstruct
            from napari_gplws.metrology.mesh import height_map_mesh, texture_image
            from napari_gplws.stack import FocalStack

            stack = FocalStack(np.asarray(frames), focus_um=focus, pixel_size_um=px, source=name)
            rec = reconstruct(
                stack, method=method, device=device, window=window, refine=refine,
                tile_size=tile, tta=views, align=align, fusion=fusion, progress=progress, cancel=cancel,
            )  # fmt: skip
            check_cancel(cancel)
            mesh = height_map_mesh(
                rec.depth, spacing_yx=scale_yx, translate_yx=translate_yx,
                z_units=rec.units, lateral_units=lateral, height_sign=sign,
            )  # fmt: skip
            texture = texture_image(rec.aif)
            finite = rec.depth[np.isfinite(rec.depth)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            check_cancel(cancel)
            res = RunResult(
                name, rec, mesh, texture, (lo, hi), scale_yx, translate_yx, px, stack_z,
                show_aligned=show_aligned,
            )
            res.pending_layers = result_layers(res)
            return res

        if self.job is not None:
            self.job.deleteLater()
        self.job = Job(
            task,
            description=f"Depth from focus: {name}",
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
        self.progress_bar.setRange(0, 1)  # determinate from the start: no busy animation
        self.progress_bar.setValue(0)
        self._input = layer
        self._set_running(True)
        self.status_label.setText(
            f"Reconstructing '{name}' with {self.method_combo.currentText()}…{applied}"
        )
        self.job.start()

    def _no_stack_message(self) -> str:
        from napari.layers import Image

        frames = [ly for ly in self.viewer.layers if isinstance(ly, Image) and ly.ndim == 2]
        if frames and not _layers.stack_layers(self.viewer):
            return (
                f"'{frames[-1].name}' is a single image: depth from focus needs a focus stack, "
                "several frames taken at different focus positions (a multi-page TIFF, or a "
                "folder of frames). The Focal error map dock can analyse a single frame."
            )
        return "Open or select a focus stack first: an Image layer with frames along its first axis."

    def _refuse(self, message: str) -> None:
        """Say why a run cannot start, in the dock and as a notification."""
        from napari.utils.notifications import show_error

        self.status_label.setText(message)
        show_error(message)

    def _apply_pixel_size(self, layer: Any, px: float | None) -> str:
        """Give the stack layer a typed pixel size too, so input and outputs share one
        geometry; returns a note for the status line (empty when nothing changed)."""
        if px is None or _layers.yx_geometry(layer)[0] == (px, px):
            return ""
        _layers.set_pixel_size(layer, px)
        return f" The pixel size {px:g} µm was applied to '{layer.name}' too."

    def cancel(self) -> None:
        """Stop the running reconstruction at its next step; no layer is added or changed."""
        if self._running():
            self.job.cancel()  # type: ignore[union-attr]
            self.status_label.setText("Cancelling…")

    def _show_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)

    def _set_running(self, running: bool) -> None:
        self.progress_bar.setVisible(running)
        for w in self._inputs:
            w.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self._on_focus_mode_changed()
            self._on_method_changed()
        self._set_result_actions(not running and self.result is not None)

    def _set_result_actions(self, enabled: bool) -> None:
        for w in (
            self.view3d_button, self.export_depth_button, self.export_mesh_button,
            self.measure_button, self.export_params_button, self.region_combo, self.new_region_button,
        ):  # fmt: skip
            w.setEnabled(enabled)

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
        if self.view3d.active:
            self.view3d_button.setChecked(False)

    def _on_done(self, res: RunResult) -> None:
        if self._close_watch.closed or not _layers.contains(self.viewer, self._input):
            self._on_cancelled()  # the dock was closed or the input deleted meanwhile
            return
        if self.view3d_button.isChecked():
            self.view3d_button.setChecked(False)
        layers = res.pending_layers or result_layers(res)
        res.pending_layers = {}
        # Draw order bottom to top: all-in-focus, depth (on top, so it is what one sees first).
        self._adding_layers = True
        self.cancel_button.setEnabled(
            False
        )  # the result is complete; only its layers remain to add
        self.outputs.replace(
            res.input_name,
            layers,
            then=lambda added: self._layers_added(res, added),
        )

    def _layers_added(self, res: RunResult, layers: dict[str, Any]) -> None:
        self._adding_layers = False
        self._input = None
        res.layers = layers
        self.result = res
        rec, mesh = res.reconstruction, res.mesh
        lo, hi = res.depth_range
        secs = rec.timings.get("total", 0.0)
        aspect = "" if mesh.true_aspect else " The surface's z and x/y are in different units."
        self.status_label.setText(
            f"Done in {secs:.2f} s: {rec.method} on {rec.device}; depth "
            f"{lo:.4g} … {hi:.4g} {rec.units}.{alignment_summary(rec)}{aspect}"
        )
        self._clear_parameters()
        self._set_running(False)
        if "depth" in layers:  # the map, not the hidden surface, is what one works on next
            self.viewer.layers.selection.active = layers["depth"]
        self.finished.emit("done")

    def _clear_parameters(self, *_: Any) -> None:
        self.params_label.setText("Measure to see the parameters.")
        for label in self.param_values.values():
            label.setText("–")

    def _on_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status_label.setText("Failed: see the notification.")
        show_error(message)
        self.finished.emit("error")

    def _on_cancelled(self) -> None:
        if "was removed" not in self.status_label.text():
            self.status_label.setText("Cancelled; no layer was added or changed.")
        self._adding_layers = False
        self._input = None
        self.finished.emit("cancelled")

    def _on_job_finished(self) -> None:
        if not self._adding_layers:  # else _layers_added unlocks the controls
            self._set_running(False)

    # ======================================================================================
    # 3D view
    # ======================================================================================
    def _toggle_3d(self, on: bool) -> None:
        res = self.result
        surface = None if res is None else self.outputs.get(res.input_name, "surface")
        if on and surface is None:
            self.view3d_button.setChecked(False)
            return
        if on:
            self.view3d.enter(surface, res.mesh.vertices, height_setting().inverted)
            self.view3d_button.setText("Back to 2D")
        else:
            self.view3d.leave()
            self.view3d_button.setText("View surface in 3D")

    def _on_height_inverted(self, inverted: bool) -> None:
        try:
            self.view3d.set_inverted(inverted)
            self._clear_parameters()
        except RuntimeError:  # the dock was closed
            pass
