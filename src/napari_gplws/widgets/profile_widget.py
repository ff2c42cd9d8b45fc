"""The **Height profile** dock widget: height along a drawn line, step height between two markers.

Pick a depth map (any 2-D Image layer; the plugin's depth layers come first) and a Shapes layer
holding a line or path (**New line** adds one across the map). The dock plots **height**
against distance along the line with matplotlib: height is up toward the objective,
``height = −depth`` (:func:`~napari_gplws.metrology.profile.height_from_depth`), so going down
into a hole reads as a negative step; **Invert height** (one setting shared with the Depth
from focus dock, :mod:`._height`) turns it over for stands whose focus drive runs the other
way. Heights are in the map's units (µm when the depth layer says so and its pixel size is
known); a layer without depth units in its metadata is plotted as raw values under a visible
warning, never as heights. The dock redraws while the line is dragged. Its layer pickers
keep their choice while a dock replaces its layers, and clear (and say so) when their layer
is deleted. Two markers, A and B (the
spin boxes, or a left / right click on the plot), give the step height ``h(B) − h(A)``, each
side optionally averaged over ± a distance. **Export CSV** writes the profile with its units,
markers and the height convention (height and depth columns).

The sampling and the step height are :mod:`napari_gplws.metrology.profile`; this module only wires
layers, the plot and the buttons.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_gplws.errors import GplwsError
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import make_scrollable, show_exception
from napari_gplws.widgets._height import height_setting, invert_checkbox
from napari_gplws.widgets._layer_combo import LayerCombo

if TYPE_CHECKING:
    import napari

#: Milliseconds between redraws while a line is being dragged.
REDRAW_MS = 40


class HeightProfileWidget(QWidget):
    """Dock widget: height profile along a line (see the module docstring).

    Signals
    -------
    updated()
        After the profile and the plot have been recomputed.
    """

    updated = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.profile: Any = None
        self._line_layer: Any = None
        self._depth_layer: Any = None

        self.depth_combo = LayerCombo()
        self.line_combo = LayerCombo()
        self.invert_height = invert_checkbox()
        self.warning_label = QLabel("")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #ffb74d;")
        self.warning_label.setVisible(False)
        self.new_line_button = QPushButton("New line")
        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.axes = self.figure.add_subplot(111)
        self.marker_a = _spin()
        self.marker_b = _spin()
        self.half_width = _spin()
        self.half_width.setToolTip("Average the height over ± this distance around each marker.")
        self.step_label = QLabel("Draw a line on the depth map.")
        self.step_label.setWordWrap(True)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        hint = QLabel(
            "Drag the line's ends with the direct-select tool. On the plot, left-click places "
            "marker A and right-click marker B."
        )
        hint.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Depth map", self.depth_combo)
        form.addRow("", self.warning_label)
        line_row = QHBoxLayout()
        line_row.addWidget(self.line_combo, 1)
        line_row.addWidget(self.new_line_button)
        form.addRow("Line", line_row)
        markers = QHBoxLayout()
        markers.addWidget(QLabel("A"))
        markers.addWidget(self.marker_a)
        markers.addWidget(QLabel("B"))
        markers.addWidget(self.marker_b)
        markers.addWidget(QLabel("±"))
        markers.addWidget(self.half_width)
        self.distance_units_label = QLabel("µm")
        markers.addWidget(self.distance_units_label)
        form.addRow("", self.invert_height)
        layout = QVBoxLayout()
        layout.addLayout(form)
        layout.addWidget(self.canvas)
        layout.addLayout(markers)
        layout.addWidget(self.step_label)
        layout.addWidget(self.export_button)
        layout.addWidget(hint)
        layout.addStretch(1)
        make_scrollable(self, layout)
        self._lost_note = ""
        self._marker_units: str | None = None  # distance unit the markers were placed in

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.update_profile)

        self._style_plot()
        self.depth_combo.currentIndexChanged.connect(self._on_inputs_changed)
        self.line_combo.currentIndexChanged.connect(self._on_inputs_changed)
        self.new_line_button.clicked.connect(self.add_line_layer)
        for s in (self.marker_a, self.marker_b, self.half_width):
            s.valueChanged.connect(self._redraw)
        self.export_button.clicked.connect(self._export_clicked)
        self.canvas.mpl_connect("button_press_event", self._on_plot_click)
        self.depth_combo.lost.connect(lambda name: self._on_lost("depth map", name))
        self.line_combo.lost.connect(lambda name: self._on_lost("line layer", name))
        height_setting().changed.connect(self._on_height_inverted)
        self.reset_choices()

    # ======================================================================================
    # Inputs
    # ======================================================================================
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.depth_combo.refill(_layers.depth_layers(self.viewer))
        self.line_combo.refill(_layers.shapes_layers(self.viewer))

    def _on_lost(self, what: str, name: str) -> None:
        """A chosen layer was deleted: the combo is cleared; say so until another is chosen."""
        self._lost_note = f"The {what} '{name}' was removed; choose another."
        self._schedule()

    def _on_height_inverted(self, *_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the dock was closed
            self.update_profile()

    def _on_inputs_changed(self, *_: Any) -> None:
        if self.depth_combo.currentData() is not None and self.line_combo.currentData() is not None:
            self._lost_note = ""
        self._watch(self.depth_combo.currentData(), self.line_combo.currentData())
        self._schedule()

    def _watch(self, depth: Any, line: Any) -> None:
        """Follow edits of the chosen line layer and data changes of the chosen depth layer."""
        for old, new in ((self._line_layer, line), (self._depth_layer, depth)):
            if old is not None and not _layers.same(old, new):
                for ev in (old.events.data, old.events.set_data):
                    with contextlib.suppress(TypeError, ValueError, RuntimeError):
                        ev.disconnect(self._schedule)
        for old, new in ((self._line_layer, line), (self._depth_layer, depth)):
            if new is not None and not _layers.same(new, old):
                new.events.data.connect(self._schedule)
                if new is line:
                    new.events.set_data.connect(self._schedule)  # emitted while a vertex is dragged
        self._line_layer, self._depth_layer = line, depth

    def _schedule(self, *_: Any) -> None:
        """Redraw soon, at most every :data:`REDRAW_MS` ms while a line is dragged."""
        try:
            if not self._timer.isActive():
                self._timer.start()
        except RuntimeError:  # the dock was closed; its C++ timer is gone
            pass

    def add_line_layer(self) -> Any | None:
        """Add a Shapes layer with a horizontal line across the middle of the depth map."""
        depth = self.depth_combo.currentData()
        if depth is None:
            show_exception(RuntimeError("Add or select a depth map first (a 2-D Image layer)."))
            return None
        h, w = depth.data.shape[-2:]
        line = np.array([[h / 2, w * 0.1], [h / 2, w * 0.9]])
        scale, translate = _layers.yx_geometry(depth)
        layer = self.viewer.add_shapes(
            [line], shape_type="line", name=f"{depth.name} profile line", edge_color="red",
            edge_width=max(2.0, w / 120), scale=scale, translate=translate,
            units=tuple(str(u) for u in depth.units[-2:]), axis_labels=("y", "x"),
        )  # fmt: skip
        layer.mode = "direct"
        self.line_combo.choose(layer)
        self._watch(depth, layer)
        self.update_profile()
        return layer

    # ======================================================================================
    # Profile and plot
    # ======================================================================================
    def _units(self, depth: Any) -> tuple[str, str, tuple[float, float]]:
        """``(height unit or "" when the layer holds no depth, distance unit, spacing)``."""
        units = _layers.depth_units(depth) or ""
        px = _layers.pixel_size_from_layer(depth)
        scale, _ = _layers.yx_geometry(depth)
        if px is None:
            return units, "px", (1.0, 1.0)
        return units, "µm", scale

    def update_profile(self) -> None:
        """Recompute the profile from the current line and depth map, then redraw."""
        from napari_gplws.metrology.profile import height_profile

        depth, shapes = self.depth_combo.currentData(), self.line_combo.currentData()
        self.profile = None
        idx = None
        if _layers.contains(self.viewer, depth) and _layers.contains(self.viewer, shapes):
            idx = _layers.pick_shape(shapes, ("line", "path"))
        warning = ""
        if idx is not None:
            from napari_gplws.metrology.profile import height_from_depth

            units, dist_units, spacing = self._units(depth)
            verts = _layers.shape_vertices_in(shapes, idx, depth)
            values = np.asarray(depth.data)
            inverted = height_setting().inverted
            if units:
                values, quantity, sign = height_from_depth(values, inverted=inverted), "height", (
                    1.0 if inverted else -1.0
                )
            else:
                quantity, sign = "value", None
                warning = (
                    f"⚠ '{depth.name}' has no depth units in its metadata: it is not a depth "
                    "map, so its raw values are plotted, not heights. Choose a depth map."
                )
            try:
                self.profile = height_profile(
                    values, verts, spacing_yx=spacing, units=units, distance_units=dist_units,
                    quantity=quantity, depth_sign=sign,
                )  # fmt: skip
            except GplwsError:
                self.profile = None
        self.warning_label.setText(warning)
        self.warning_label.setVisible(bool(warning))
        if self.profile is not None:
            length = self.profile.length
            # Markers keep their place while the same kind of profile comes back (a depth
            # layer replaced by a re-run); a first profile, or other units, places them anew.
            fresh = self._marker_units != self.profile.distance_units
            self._marker_units = self.profile.distance_units
            for s in (self.marker_a, self.marker_b, self.half_width):
                s.blockSignals(True)
            self.distance_units_label.setText(self.profile.distance_units)
            self.marker_a.setMaximum(length)
            self.marker_b.setMaximum(length)
            self.half_width.setMaximum(max(length / 2, 0.0))
            if fresh:
                self.marker_a.setValue(0.25 * length)
                self.marker_b.setValue(0.75 * length)
            for s in (self.marker_a, self.marker_b, self.half_width):
                s.blockSignals(False)
        self._redraw()
        self.updated.emit()

    def step_height(self) -> float:
        """``h(B) − h(A)`` of the current profile (NaN when there is none)."""
        from napari_gplws.metrology.profile import step_height

        if self.profile is None:
            return float("nan")
        return step_height(
            self.profile, self.marker_a.value(), self.marker_b.value(), self.half_width.value()
        )

    def _style_plot(self) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            bg, fg = theme.background.as_hex(), theme.text.as_hex()
        except Exception:  # noqa: BLE001 - a custom theme without these fields: matplotlib's defaults
            bg, fg = "#262930", "#f0f1f2"
        self._colours = (bg, fg)
        self.figure.patch.set_facecolor(bg)

    def _redraw(self, *_: Any) -> None:
        bg, fg = self._colours
        ax = self.axes
        ax.clear()
        ax.set_facecolor(bg)
        for spine in ax.spines.values():
            spine.set_color(fg)
        ax.tick_params(colors=fg, labelsize=8)
        p = self.profile
        if p is None:
            ax.text(
                0.5,
                0.5,
                "no line on a depth map",
                ha="center",
                va="center",
                color=fg,
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            self.step_label.setText(self._lost_note or "Draw a line on the depth map (New line).")
            self.export_button.setEnabled(False)
            self.canvas.draw_idle()
            return
        ax.plot(p.distance, p.height, color="#4fc3f7", lw=1.2)
        a, b, hw = self.marker_a.value(), self.marker_b.value(), self.half_width.value()
        for pos, colour, label in ((a, "#ff7043", "A"), (b, "#ffd54f", "B")):
            ax.axvline(pos, color=colour, lw=1.0)
            if hw > 0:
                ax.axvspan(pos - hw, pos + hw, color=colour, alpha=0.15, lw=0)
            ax.annotate(label, (pos, 1.0), xycoords=("data", "axes fraction"), color=colour,
                        ha="center", va="bottom", fontsize=9)  # fmt: skip
        ax.set_xlabel(f"distance along the line ({p.distance_units})", color=fg, fontsize=9)
        ax.set_ylabel(self._y_label(p), color=fg, fontsize=9)
        ax.set_xlim(0, max(p.length, 1e-9))
        step = self.step_height()
        where = f"(A at {a:.4g}, B at {b:.4g} {p.distance_units}; line {p.length:.4g} {p.distance_units})"
        if p.quantity == "height":
            from napari_gplws.metrology.profile import height_convention

            self.step_label.setText(
                f"Step height B − A: {step:.4g} {p.units}   {where}\n"
                f"{height_convention(p.depth_sign is not None and p.depth_sign > 0)}."
            )
        else:
            self.step_label.setText(
                f"Difference B − A: {step:.4g} (raw values, not a height)   {where}"
            )
        self.export_button.setEnabled(True)
        self.canvas.draw_idle()

    @staticmethod
    def _y_label(p: Any) -> str:
        if p.quantity == "height":
            up = "away from" if (p.depth_sign or -1) > 0 else "toward"
            return f"height ({p.units})\nup: {up} the objective"
        return f"value ({p.units or 'no unit'}), not a height"

    def _on_plot_click(self, event: Any) -> None:
        if self.profile is None or event.inaxes is not self.axes or event.xdata is None:
            return
        target = self.marker_a if event.button == 1 else self.marker_b
        target.setValue(float(event.xdata))

    # ======================================================================================
    # Export
    # ======================================================================================
    def _export_clicked(self) -> None:
        if self.profile is None:
            return
        depth = self.depth_combo.currentData()
        default = f"{depth.name if depth is not None else 'depth'}_profile.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Save height profile", default, "CSV (*.csv)")
        if path:
            self.export_csv(str(path))

    def export_csv(self, path: str) -> Path | None:
        """Write the current profile, its units and the markers' step height as CSV."""
        from napari_gplws.metrology.profile import write_profile_csv

        if self.profile is None:
            return None
        if Path(path).suffix.lower() != ".csv":
            path = f"{path}.csv"
        depth = self.depth_combo.currentData()
        scale, translate = _layers.yx_geometry(depth)
        if self.profile.distance_units == "px":
            scale, translate = (1.0, 1.0), (0.0, 0.0)
        try:
            out = write_profile_csv(
                path, self.profile, spacing_yx=scale, translate_yx=translate,
                markers=(self.marker_a.value(), self.marker_b.value()),
                half_width=self.half_width.value(), source=depth.name,
            )  # fmt: skip
        except GplwsError as exc:
            show_exception(exc)
            return None
        return out


def _spin() -> QDoubleSpinBox:
    s = QDoubleSpinBox()  # no fixed minimum width: Qt's own fits the longest value
    s.setDecimals(2)
    s.setRange(0.0, 0.0)
    s.setKeyboardTracking(False)
    return s
