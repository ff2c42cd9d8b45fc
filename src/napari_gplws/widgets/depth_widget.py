"""The **Depth from focus** dock widget: stack in, depth / all-in-focus / confidence / 3D surface out.

A thin layer over :func:`napari_gplws.reconstruct` and :mod:`napari_gplws.metrology.mesh`: the
widget gathers the inputs (stack layer, focus positions, pixel size, method, device, advanced
options), runs one background :class:`~._worker.Job` (reconstruction, then the coarse mesh and
its texture), and turns the result into layers named after the input:

* ``<stack> depth`` — Image, viridis, yx scale/translate of the stack, units and method in
  ``metadata``;
* ``<stack> all-in-focus`` — Image in the input's dtype (RGB kept);
* ``<stack> confidence`` — Image in [0, 1], hidden;
* ``<stack> surface`` — textured Surface: coarse mesh in world units (z = depth, the true aspect
  ratio when the focus positions and pixel size are in µm) with the full-resolution
  all-in-focus image as texture; shown by **View surface in 3D**.

Re-running replaces only the layers this widget made for that input. Exports: the depth map as
a float TIFF with its units (:func:`~napari_gplws.io._read.write_depth_tiff`), the mesh as
PLY/STL/OBJ (:func:`~napari_gplws.metrology.mesh.export_mesh`), and the areal surface parameters
(:mod:`napari_gplws.metrology.roughness`) of the whole map and of a drawn rectangle as CSV.

It computes nothing itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
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
    refill,
    show_exception,
    spin,
)
from napari_gplws.widgets._depth_results import RunResult, result_layers
from napari_gplws.widgets._focus_picker import FocusPicker
from napari_gplws.widgets._worker import Job, software_opengl

if TYPE_CHECKING:
    import napari

WIDGET_NAME = "depth_from_focus"


#: Camera of "View surface in 3D", in napari world order (z, y, x).
VIEW_3D = (-1.0, -0.9, 0.3)
UP_3D = (1.0, 0.0, 0.0)


class DepthFromFocusWidget(QWidget):
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
        self._saved_visibility: dict[Any, bool] | None = None
        self._adding_layers = False

        # --- inputs --------------------------------------------------------------------------
        self.stack_combo = QComboBox()
        self.stack_combo.setToolTip(
            "Image layer holding the focus stack (frames along the first axis)."
        )
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
        for label, n in (("2 (default)", 2), ("1 (fastest)", 1), ("4", 4), ("8 (most accurate)", 8)):
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
        self.focus.add_rows(form)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("Method", self.method_combo)
        form.addRow("Device", self.device_combo)

        self.advanced = collapsible_group("Advanced", [
            ("Tile size", self.tile_size),
            ("Views", self.views),
            ("Window", self.window),
            ("", self.refine),
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
        layout.addWidget(self.view3d_button)
        layout.addWidget(exports)
        layout.addWidget(params)
        layout.addStretch(1)
        self.setLayout(layout)
        self._inputs = [
            self.stack_combo, self.focus_mode, self.focus_start, self.focus_step, self.pixel_size,
            self.method_combo, self.device_combo, self.advanced, self.run_button,
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
        self._on_method_changed()

    def _load_devices(self) -> None:
        fill_devices_later(self.device_combo, self)

    # ======================================================================================
    # Input choices
    # ======================================================================================
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (called by napari when layers are added, removed, reordered)."""
        refill(self.stack_combo, _layers.stack_layers(self.viewer))
        current = self.region_combo.currentData()
        self.region_combo.blockSignals(True)
        self.region_combo.clear()
        self.region_combo.addItem("whole map", None)
        for ly in _layers.shapes_layers(self.viewer):
            self.region_combo.addItem(f"rectangle in '{ly.name}'", ly)
        self.region_combo.setCurrentIndex(max(0, find_data(self.region_combo, current)))
        self.region_combo.blockSignals(False)

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
        from napari.utils.notifications import show_error

        if self._running():
            return
        layer = self.stack_layer()
        if layer is None:
            show_error(
                "Open or select a focus stack first: an Image layer with frames along its first axis."
            )
            return
        frames = _layers.stack_frames(layer, self.viewer)
        try:
            focus = self.focus_positions(frames.shape[0])
        except GplwsError as exc:  # a FocusPositionError from the core (e.g. a zero step)
            show_error(str(exc))
            return
        name = layer.name
        px = self.pixel_size.value() or None
        scale_yx, translate_yx = _layers.yx_geometry(layer)
        if px is not None and scale_yx == (1.0, 1.0):
            scale_yx = (px, px)
        method = self.method_combo.currentData()
        device = self.device_combo.currentText()
        tile = self.tile_size.value() or None
        views = int(self.views.currentData())
        window = self.window.value() | 1
        refine = self.refine.isChecked()
        lateral = "µm" if px is not None else "px"

        def task(progress, cancel):
            from napari_gplws._shared.callbacks import check_cancel
            from napari_gplws.api import reconstruct
            from napari_gplws.metrology.mesh import height_map_mesh, texture_image
            from napari_gplws.stack import FocalStack

            stack = FocalStack(np.asarray(frames), focus_um=focus, pixel_size_um=px, source=name)
            rec = reconstruct(
                stack, method=method, device=device, window=window, refine=refine,
                tile_size=tile, tta=views, progress=progress, cancel=cancel,
            )  # fmt: skip
            check_cancel(cancel)
            mesh = height_map_mesh(
                rec.depth, spacing_yx=scale_yx, translate_yx=translate_yx,
                z_units=rec.units, lateral_units=lateral,
            )  # fmt: skip
            texture = texture_image(rec.aif)
            finite = rec.depth[np.isfinite(rec.depth)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            check_cancel(cancel)
            res = RunResult(name, rec, mesh, texture, (lo, hi), scale_yx, translate_yx, px)
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
        self._set_running(True)
        self.status_label.setText(
            f"Reconstructing '{name}' with {self.method_combo.currentText()}…"
        )
        self.job.start()

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

    def _on_done(self, res: RunResult) -> None:
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
        res.layers = layers
        self.result = res
        rec, mesh = res.reconstruction, res.mesh
        lo, hi = res.depth_range
        secs = rec.timings.get("total", 0.0)
        aspect = "" if mesh.true_aspect else " (surface z and x/y are in different units)"
        self.status_label.setText(
            f"Done in {secs:.2f} s: {rec.method} on {rec.device}; depth "
            f"{lo:.4g} … {hi:.4g} {rec.units}.{aspect}"
        )
        self._clear_parameters()
        self._set_running(False)
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
        self.status_label.setText("Cancelled; no layer was added or changed.")
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
            # Remember what was visible, show the surface alone, and look at it obliquely.
            self._saved_visibility = {ly.unique_id: ly.visible for ly in self.viewer.layers}
            for ly in self.viewer.layers:
                ly.visible = _layers.same(ly, surface)
            self.viewer.dims.ndisplay = 3
            self.viewer.reset_view()
            # From napari's usual side (the one that shows the 2-D image unmirrored), raised
            # 45° above the bottom edge of the image and turned a little, so relief reads.
            self.viewer.camera.set_view_direction(VIEW_3D, up_direction=UP_3D)
            self.viewer.camera.zoom *= 0.8
            self.viewer.layers.selection.active = surface  # its controls: shading, opacity…
            self.view3d_button.setText("Back to 2D")
        else:
            self.viewer.dims.ndisplay = 2
            saved = self._saved_visibility or {}
            for ly in self.viewer.layers:
                if ly.unique_id in saved:
                    ly.visible = saved[ly.unique_id]
            self._saved_visibility = None
            self.view3d_button.setText("View surface in 3D")

    # ======================================================================================
    # Exports
    # ======================================================================================
    def _ask_path(self, title: str, default: str, filters: str) -> tuple[str, str]:
        path, chosen = QFileDialog.getSaveFileName(self, title, default, filters)
        return str(path or ""), str(chosen or "")

    def _export_depth_clicked(self) -> None:
        if self.result is None:
            return
        path, _ = self._ask_path(
            "Save depth map", f"{self.result.input_name}_depth.tif", "TIFF (*.tif *.tiff)"
        )
        if path:
            self.export_depth(path)

    def export_depth(self, path: str) -> Path | None:
        """Write the last depth map as a float32 TIFF with its units and pixel size."""
        from napari_gplws.io import write_depth_tiff

        res = self.result
        if res is None:
            return None
        if Path(path).suffix.lower() not in (".tif", ".tiff"):
            path = f"{path}.tif"
        rec = res.reconstruction
        try:
            out = write_depth_tiff(
                path, rec.depth, units=rec.units, pixel_size_um=res.pixel_size_um,
                metadata={
                    "method": rec.method, "device": rec.device, "source": res.input_name,
                    "focus_um": None if rec.stack.focus_um is None else list(rec.stack.focus_um),
                },
            )  # fmt: skip
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the depth map to {out}.")
        return out

    def _export_mesh_clicked(self) -> None:
        if self.result is None:
            return
        path, chosen = self._ask_path(
            "Save surface mesh", f"{self.result.input_name}_surface.ply",
            "PLY with colour (*.ply);;STL (*.stl);;OBJ with texture (*.obj)",
        )  # fmt: skip
        if path:
            if Path(path).suffix.lower() not in (".ply", ".stl", ".obj"):
                path += "." + (chosen.split("*.")[-1].rstrip(")") if "*." in chosen else "ply")
            self.export_mesh(path)

    def export_mesh(self, path: str) -> Path | None:
        """Write the last surface as PLY, STL or OBJ (by suffix), in µm where known."""
        from napari_gplws.metrology.mesh import export_mesh

        if self.result is None:
            return None
        try:
            out = export_mesh(path, self.result.mesh, self.result.texture)
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the mesh to {out}.")
        return out

    # --- surface parameters ----------------------------------------------------------------
    def add_region_layer(self) -> Any | None:
        """Add a Shapes layer with a movable rectangle over the centre of the depth map."""
        res = self.result
        if res is None:
            return None
        h, w = res.reconstruction.depth.shape
        rect = np.array([[h * 0.25, w * 0.25], [h * 0.75, w * 0.75]])
        layer = self.viewer.add_shapes(
            [rect], shape_type="rectangle", name=f"{res.input_name} region",
            edge_color="yellow", face_color=[1, 1, 0, 0.1], edge_width=max(1.0, w / 200),
            scale=res.scale_yx, translate=res.translate_yx,
        )  # fmt: skip
        layer.mode = "select"
        self.region_combo.setCurrentIndex(find_data(self.region_combo, layer))
        return layer

    def _measurements(self) -> list[Any]:
        """Surface parameters of the whole map, plus the chosen rectangle when there is one."""
        from skimage.draw import polygon2mask

        from napari_gplws.metrology.roughness import surface_parameters

        res = self.result
        if res is None:
            return []
        rec = res.reconstruction
        common = {
            "spacing_yx": res.scale_yx, "units": rec.units,
            "lateral_units": "µm" if res.pixel_size_um else "px",
        }  # fmt: skip
        out = [surface_parameters(rec.depth, label="whole map", **common)]
        shapes = self.region_combo.currentData()
        if _layers.contains(self.viewer, shapes):
            idx = _layers.pick_shape(shapes, ("rectangle", "polygon"))
            if idx is None:
                raise GplwsError(
                    f"'{shapes.name}' holds no rectangle; draw one, or choose 'whole map'."
                )
            depth_layer = self.outputs.get(res.input_name, "depth")
            if depth_layer is None:
                raise GplwsError("The depth layer was removed; run again to measure a region.")
            verts = _layers.shape_vertices_in(shapes, idx, depth_layer)
            mask = polygon2mask(rec.depth.shape, verts)
            if not mask.any():
                raise GplwsError(f"The rectangle in '{shapes.name}' lies outside the depth map.")
            rows, cols = np.nonzero(mask)
            region = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
            out.append(
                surface_parameters(
                    rec.depth,
                    region=region,
                    mask=mask,
                    label=f"rectangle in '{shapes.name}'",
                    **common,
                )
            )
        return out

    def measure(self) -> list[Any]:
        """Compute and show the surface parameters of the chosen region."""

        try:
            results = self._measurements()
        except GplwsError as exc:
            show_exception(exc)
            return []
        if results:
            r = results[-1]
            self.params_label.setText(f"{r.label}: {r.n_pixels} px, plane-levelled")
            for name, label in self.param_values.items():
                label.setText(f"{r.values[name]:.4g} {r.unit_of(name)}".rstrip())
        return results

    def _export_params_clicked(self) -> None:
        if self.result is None:
            return
        path, _ = self._ask_path(
            "Save surface parameters",
            f"{self.result.input_name}_surface_parameters.csv",
            "CSV (*.csv)",
        )
        if path:
            self.export_parameters(path)

    def export_parameters(self, path: str) -> Path | None:
        """Write the surface parameters (whole map, and the rectangle when chosen) as CSV."""
        from napari_gplws.metrology.roughness import write_parameters_csv

        results = self.measure()
        if not results:
            return None
        if Path(path).suffix.lower() != ".csv":
            path = f"{path}.csv"
        try:
            out = write_parameters_csv(path, results, source=self.result.input_name)  # type: ignore[union-attr]
        except GplwsError as exc:
            show_exception(exc)
            return None
        self.status_label.setText(f"Saved the surface parameters to {out}.")
        return out


# ==========================================================================================
# Small helpers
# ==========================================================================================
