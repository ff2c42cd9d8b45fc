"""The **Ground truth editor** dock: review and hand-correct a dataset's depth labels.

Open a dataset folder (one sub-folder per sample), pick a sample from the list (status, note
and suspect fraction shown), and correct its ground truth. Regions are selected by painting on
the ``<sample> region`` Labels layer (any label) and/or drawing polygons or rectangles on the
``<sample> polygons`` Shapes layer; a tool button then applies one operation to the region
and clears the selection. Ctrl+Z / Ctrl+Shift+Z (while the dock has focus) or the buttons undo
and redo. Edits are autosaved to a recovery file after a short pause; **Save** writes the
corrected map beside the original (see ``docs/annotation.md``).

Opening a dataset checks its ground-truth encoding against the stacks
(:func:`napari_gplws.io.micro3d.propose_gt_scale`): when most stored values fall outside the
frames with the **Index scale** given, the dock proposes the scale that fits (frame index,
× 10, × 100, × 1000, or float µm) before anything is shown, and warns on every sample that
still does not fit. Opening again (for instance after fixing the scale) reloads cleanly,
asking first what to do with unsaved edits.

**Compute focus peak + prediction** runs in a worker thread with a progress bar and
**Cancel**; suspicion is weighted by the focus curve's confidence, so textureless areas are
*unknown*, not suspect, and **Next suspect** visits regions by size × disagreement ×
confidence (:mod:`napari_gplws.annotate.guidance`). Layers carry ``units`` (µm where the
pixel size is known) and ``axis_labels``.

All editing, saving and guidance logic is :mod:`napari_gplws.annotate`; this module only
wires layers and buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QShortcut,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

import napari_gplws.annotate as an
from napari_gplws.errors import GplwsError
from napari_gplws.io.micro3d import GT_PATTERNS
from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import make_scrollable
from napari_gplws.widgets._gt_guidance import GuidanceTools
from napari_gplws.widgets._worker import CloseWatcher, Job

if TYPE_CHECKING:
    import napari

#: Milliseconds without an edit before the recovery file is written.
AUTOSAVE_MS = 2000


def _ask_restore_dialog(parent: QWidget, message: str) -> bool:
    answer = QMessageBox.question(
        parent, "Unsaved work found", message, QMessageBox.Yes | QMessageBox.No
    )
    return answer == QMessageBox.Yes


def _ask_dialog(parent: QWidget, title: str, message: str) -> bool:
    answer = QMessageBox.question(parent, title, message, QMessageBox.Yes | QMessageBox.No)
    return answer == QMessageBox.Yes


def _show_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class GroundTruthEditorWidget(GuidanceTools, QWidget):
    """Dock widget: the ground-truth editor (see the module docstring).

    Attributes
    ----------
    ask_restore
        ``ask_restore(message) -> bool``: asked when a sample has unsaved work in its
        recovery file. A blocking :class:`QMessageBox` by default; tests replace it.

    Signals
    -------
    sample_opened(str)
        After a sample's layers are shown.
    changed()
        After each edit, undo or redo.
    guidance_done(str)
        When the focus curves / prediction job ends (``"done"``, ``"error"``, ``"cancelled"``).
    """

    sample_opened = Signal(str)
    changed = Signal()
    guidance_done = Signal(str)

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.dataset: an.AnnotationDataset | None = None
        self.session: an.EditSession | None = None
        self.name: str | None = None
        self.layers: dict[str, Any] = {}
        self.job: Job | None = None
        self.ask_restore: Callable[[str], bool] = lambda msg: _ask_restore_dialog(self, msg)
        #: ``ask_scale(message) -> bool``: use the proposed index scale? (tests replace it)
        self.ask_scale: Callable[[str], bool] = lambda msg: _ask_dialog(
            self, "Index scale does not fit", msg
        )
        #: ``ask_save(message) -> bool``: save unsaved edits before re-opening? (tests replace it)
        self.ask_save: Callable[[str], bool] = lambda msg: _ask_dialog(
            self, "Unsaved edits", msg
        )
        #: ``ask_export_folder() -> str``: where to export (a folder dialog; tests replace it).
        self.ask_export_folder: Callable[[], str] = lambda: QFileDialog.getExistingDirectory(
            self, "Export the corrected dataset into an empty folder"
        )

        # dataset
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("dataset folder (one sub-folder per sample)")
        self.browse_button = QPushButton("Browse…")
        self.pattern_edit = QLineEdit(", ".join(GT_PATTERNS))
        self.gt_scale = QDoubleSpinBox(decimals=4, minimum=1e-4, maximum=1e4, value=1.0)
        self.gt_scale.setToolTip(
            "Frame index per stored unit of integer ground-truth images (0.01 for files that "
            "store frame index × 100). Checked against the stacks when the dataset opens."
        )
        self.focus_step = QDoubleSpinBox(
            decimals=3, minimum=-1e3, maximum=1e3, value=0.0, suffix=" µm"
        )
        self.focus_step.setToolTip("Focus step between frames; 0 = from each sample's sidecar.")
        self.open_button = QPushButton("Open dataset")
        self.sample_list = QListWidget()
        self.counts_label = QLabel("No dataset.")
        self.status_combo = QComboBox()
        self.status_combo.addItems(list(an.STATUSES))
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note on this sample")
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")

        # tools
        self.value_spin = QDoubleSpinBox(decimals=3, minimum=-1e6, maximum=1e6, suffix=" µm")
        self.set_value_button = QPushButton("Set value")
        self.from_frame_button = QPushButton("From current frame")
        self.snap_k = QSpinBox(minimum=1, maximum=50, value=2, prefix="± ", suffix=" frames")
        self.snap_button = QPushButton("Snap to focus peak")
        self.sigma_spin = QDoubleSpinBox(
            decimals=1, minimum=0.3, maximum=50, value=2.0, suffix=" px"
        )
        self.smooth_button = QPushButton("Smooth")
        self.plane_button = QPushButton("Fit plane")
        self.fill_button = QPushButton("Fill from model")
        self.restore_button = QPushButton("Restore original")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save")
        self.export_button = QPushButton("Export dataset…")

        # guidance
        self.model_combo = QComboBox()
        for label, data in (("no model", ""), ("GPLWS-Net", "gplws"), ("classical (SML)", "sml")):
            self.model_combo.addItem(label, data)
        self.guidance_button = QPushButton("Compute focus peak + prediction")
        self.guidance_cancel = QPushButton("Cancel")
        self.guidance_cancel.setEnabled(False)
        self.guidance_progress = QProgressBar()
        self.guidance_progress.setVisible(False)
        self.threshold = QDoubleSpinBox(
            decimals=2, minimum=0.01, maximum=1e4, value=2.0, suffix=" µm"
        )
        self.suspect_button = QPushButton("Next suspect")
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.folder_edit)
        top.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Ground-truth patterns", self.pattern_edit)
        form.addRow("Index scale", self.gt_scale)
        form.addRow("Focus step", self.focus_step)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        meta = QFormLayout()
        meta.addRow("Status", self.status_combo)
        meta.addRow("Note", self.note_edit)
        tools = QGridLayout()
        rows = [
            (self.value_spin, self.set_value_button),
            (QLabel("painted frame"), self.from_frame_button),
            (self.snap_k, self.snap_button),
            (self.sigma_spin, self.smooth_button),
            (self.plane_button, self.fill_button),
            (self.restore_button, self.save_button),
            (self.undo_button, self.redo_button),
            (self.model_combo, self.guidance_button),
            (self.threshold, self.suspect_button),
            (QLabel("corrected copy"), self.export_button),
        ]
        for r, (a, b) in enumerate(rows):
            tools.addWidget(a, r, 0)
            tools.addWidget(b, r, 1)
        tools.addWidget(self.guidance_progress, len(rows), 0)
        tools.addWidget(self.guidance_cancel, len(rows), 1)
        lay = QVBoxLayout()
        lay.addLayout(top)
        lay.addLayout(form)
        lay.addWidget(self.open_button)
        lay.addWidget(self.sample_list)
        lay.addWidget(self.counts_label)
        lay.addLayout(nav)
        lay.addLayout(meta)
        lay.addLayout(tools)
        lay.addWidget(self.info_label)
        lay.addStretch(1)
        make_scrollable(self, lay)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)

        self.browse_button.clicked.connect(self._browse)
        self.open_button.clicked.connect(lambda: self.open_dataset(self.folder_edit.text()))
        self.sample_list.currentRowChanged.connect(self._row_changed)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.status_combo.activated.connect(self._status_changed)
        self.note_edit.editingFinished.connect(self._note_changed)
        s = self
        self.set_value_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.set_value(m, s.value_spin.value()))
        )
        self.from_frame_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.set_from_frame(m, s.current_frame()))
        )
        self.snap_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.snap_to_peak(m, s.snap_k.value()))
        )
        self.smooth_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.smooth(m, s.sigma_spin.value()))
        )
        self.plane_button.clicked.connect(lambda: s.apply(lambda m: s.session.fit_plane(m)))
        self.fill_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.fill_from_prediction(m))
        )
        self.restore_button.clicked.connect(
            lambda: s.apply(lambda m: s.session.restore_original(m))
        )
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.save_button.clicked.connect(self.save)
        self.export_button.clicked.connect(lambda: self.export_dataset(self.ask_export_folder()))
        self.guidance_button.clicked.connect(self.compute_guidance)
        self.guidance_cancel.clicked.connect(self.cancel_guidance)
        self._close_watch = CloseWatcher(self, self._on_closed)
        self.suspect_button.clicked.connect(self.next_suspect)
        for seq, fn in (("Ctrl+Z", self.undo), ("Ctrl+Shift+Z", self.redo)):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
        self._update_enabled()

    # --- dataset ---------------------------------------------------------------------
    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if d:
            self.folder_edit.setText(d)
            self.open_dataset(d)

    def open_dataset(self, folder: str) -> None:
        """Open (or open again) a dataset root and show its first sample.

        Unsaved edits of the open sample are saved first if the user agrees (else they stay
        in the sample's recovery file); the index scale is checked against the first sample
        and a scale that fits is proposed (:meth:`check_scale`).
        """
        if self.session is not None and self.session.dirty and self.ask_save(
            f"'{self.name}' has unsaved edits. Save them before opening the dataset again? "
            "(No keeps them in the recovery file, to restore later.)"
        ):
            self.save()
        self._leave_sample()
        self.dataset = None
        self.sample_list.blockSignals(True)
        self.sample_list.clear()
        self.sample_list.blockSignals(False)
        self.counts_label.setText("No dataset.")
        self.info_label.setText("")
        self._update_enabled()
        patterns = [p.strip() for p in self.pattern_edit.text().split(",") if p.strip()] or list(
            GT_PATTERNS
        )
        step = self.focus_step.value()
        try:
            dataset = an.AnnotationDataset(
                folder, patterns, self.gt_scale.value(), 0.0 if step else None, step or None
            )
            proposal = self.check_scale(dataset)
            wrong = proposal is not None and not proposal.fits and proposal.kind == "index"
            if wrong and self.ask_scale(f"{proposal.message}\n\nUse index scale {proposal.scale:g}?"):
                self.gt_scale.setValue(proposal.scale)
                dataset = an.AnnotationDataset(
                    folder, patterns, proposal.scale, 0.0 if step else None, step or None
                )
        except GplwsError as exc:
            _show_error(str(exc))
            return
        self.dataset = dataset
        self.folder_edit.setText(str(folder))
        self._fill_list()
        if self.dataset.names:
            self.sample_list.setCurrentRow(0)
            if self.name is None:  # the row did not change, so it did not open by itself
                self.open_sample(self.dataset.names[0])

    def check_scale(self, dataset: Any, name: str | None = None) -> Any | None:
        """How well the index scale fits a sample's ground truth (the first by default):
        a :class:`~napari_gplws.io.micro3d.GTScaleProposal`, or ``None`` when it cannot be
        read (opening the sample then says why)."""
        from napari_gplws.io.micro3d import propose_gt_scale, read_gt_raw

        name = name or (dataset.names[0] if dataset.names else None)
        if name is None:
            return None
        try:
            sample = dataset.load(name)
            raw = read_gt_raw(sample.gt_path)
        except GplwsError:
            return None
        return propose_gt_scale(
            raw, sample.stack.n_frames, dataset.gt_scale, focus_um=sample.focus_um
        )

    def _row_text(self, name: str) -> str:
        info = self.dataset.samples[name]
        sf = "" if info.suspect_fraction is None else f" · suspect {info.suspect_fraction:.1%}"
        note = f" · {info.note}" if info.note else ""
        return f"{name} [{info.status}]{sf}{note}"

    def _fill_list(self) -> None:
        self.sample_list.blockSignals(True)
        row = self.sample_list.currentRow()
        self.sample_list.clear()
        for n in self.dataset.names:
            self.sample_list.addItem(self._row_text(n))
        self.sample_list.setCurrentRow(row)
        self.sample_list.blockSignals(False)
        c = self.dataset.counts()
        self.counts_label.setText(
            f"{c['reviewed']}/{len(self.dataset)} reviewed, {c['in progress']} in progress"
        )

    def _refresh_row(self) -> None:
        if self.dataset is not None and self.name is not None:
            self._fill_list()

    def _row_changed(self, row: int) -> None:
        if self.dataset is not None and 0 <= row < len(self.dataset.names):
            self.open_sample(self.dataset.names[row])

    def step(self, delta: int) -> None:
        """Go to the next (``+1``) or previous (``-1``) sample."""
        if self.dataset is None or self.name is None:
            return
        nxt = self.dataset.neighbour(self.name, delta)
        if nxt is not None:
            self.sample_list.setCurrentRow(self.dataset.names.index(nxt))

    def _status_changed(self) -> None:
        if self.dataset is not None and self.name is not None:
            self.dataset.set_status(self.name, self.status_combo.currentText())
            self._refresh_row()

    def _note_changed(self) -> None:
        if (
            self.dataset is not None
            and self.name is not None
            and self.note_edit.text() != self.dataset.samples[self.name].note
        ):
            self.dataset.set_note(self.name, self.note_edit.text())
            self._refresh_row()

    # --- sample ------------------------------------------------------------------------
    def _leave_sample(self, keep_layers: bool = False) -> None:
        """Keep unsaved work in the recovery file; remove the sample's layers.

        With ``keep_layers`` the stack, ground-truth and region layers stay, to be refilled
        by the next sample (much faster than removing and adding layers).
        """
        if self.job is not None and self.job.running:
            self.job.cancel()
        self.autosave_timer.stop()
        if self.session is not None and self.session.dirty:
            self.session.write_recovery()
        kept = ("stack", "gt", "region", "polygons") if keep_layers else ()
        for role in list(self.layers):
            layer = self.layers[role]
            if role not in kept or layer not in self.viewer.layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
                del self.layers[role]
        self.session = None
        self.name = None

    def _show(self, role: str, data: Any, name: str, add: Callable[..., Any], **kwargs: Any) -> Any:
        """Refill the layer playing ``role`` or add it."""
        layer = self.layers.get(role)
        if layer is None:
            layer = self.layers[role] = add(data, name=name, **kwargs)
        else:
            layer.data = data
            layer.name = name
            if "metadata" in kwargs:
                layer.metadata = kwargs["metadata"]
        return layer

    def open_sample(self, name: str) -> None:
        """Show a sample's stack, ground truth and region layers; offer to restore unsaved work."""
        self._leave_sample(keep_layers=True)
        try:
            session = self.dataset.open(name)
        except GplwsError as exc:
            _show_error(str(exc))
            self._update_enabled()
            return
        self.session, self.name = session, name
        session.on_change = self._wrap_on_change(session.on_change)
        if session.has_recovery() and self.ask_restore(
            f"'{name}' has unsaved edits from an earlier session. Restore them?"
        ):
            session.restore_recovery()
        v, h_w = self.viewer, session.shape
        geo = self._geometry(session)
        self._show(
            "stack",
            session.sample.stack.frames,
            f"{name} stack",
            v.add_image,
            metadata={"focus_um": session.focus_um.tolist(), "units": "µm"},
            **geo["zyx"],
        )
        self._show(
            "gt",
            session.depth.copy(),
            f"{name} ground truth (µm)",
            v.add_image,
            colormap="viridis",
            metadata={"units": "µm", "kind": "depth", "pixel_size_um": geo["px"]},
            opacity=0.6,
            **geo["yx"],
        )
        self._show("region", np.zeros(h_w, np.uint8), f"{name} region", v.add_labels, **geo["yx"])
        if "polygons" not in self.layers:
            self.layers["polygons"] = v.add_shapes(
                name=f"{name} polygons", ndim=2, face_color="transparent", edge_color="red",
                **geo["yx"],
            )  # fmt: skip
        else:
            self.layers["polygons"].data = []
            self.layers["polygons"].name = f"{name} polygons"
        for role in ("stack", "gt"):
            self.layers[role].reset_contrast_limits()
        self.layers["region"].mode = "paint"
        v.layers.selection.active = self.layers["region"]
        info = self.dataset.samples[name]
        self.status_combo.setCurrentText(info.status)
        self.note_edit.setText(info.note)
        text = (
            f"{name}: {session.sample.stack.n_frames} frames; focus positions "
            f"{session.sample.focus_from or 'from the sidecar'}."
        )
        proposal = self.check_scale(self.dataset, name)
        if proposal is not None and not proposal.fits:
            text = f"⚠ {proposal.message}\n{text}"
            _show_error(f"'{name}': {proposal.message}")
        self.info_label.setText(text)
        self._refresh_row()
        self._update_enabled()
        self.sample_opened.emit(name)

    @staticmethod
    def _geometry(session: Any) -> dict[str, Any]:
        """Scale, translate, ``units`` and ``axis_labels`` of the sample's layers (µm where
        known: the stack's z axis when its focus steps are even and rising, y/x when the
        stack has a pixel size)."""
        px = session.sample.stack.pixel_size_um or None
        focus = np.asarray(session.focus_um, np.float64)
        steps = np.diff(focus)
        even = len(steps) > 0 and bool(np.all(steps > 0)) and np.allclose(steps, steps[0])
        lat = _layers.units_yx(px)
        yx = {"scale": (px or 1.0, px or 1.0), "units": lat, "axis_labels": ("y", "x")}
        zyx = {
            "scale": (float(steps[0]) if even else 1.0, *yx["scale"]),
            "translate": (float(focus[0]) if even else 0.0, 0.0, 0.0),
            "units": ("µm" if even else "pixel", *lat), "axis_labels": ("z", "y", "x"),
        }  # fmt: skip
        return {"px": px, "yx": yx, "zyx": zyx}

    def _wrap_on_change(self, inner: Callable | None) -> Callable:
        def on_change(sess: an.EditSession) -> None:
            if inner is not None:
                inner(sess)
            self.autosave_timer.start()

        return on_change

    def current_frame(self) -> int:
        """The frame shown by the viewer's first dims slider (the stack axis)."""
        return int(self.viewer.dims.current_step[0])

    def region_mask(self) -> np.ndarray:
        """Painted labels ∪ filled polygons/rectangles, as an ``(H, W)`` bool mask."""
        shape = self.session.shape
        mask = np.asarray(self.layers["region"].data) > 0
        shapes = self.layers["polygons"]
        for verts, kind in zip(shapes.data, shapes.shape_type):
            if kind in ("polygon", "rectangle") and len(verts) >= 3:
                mask = mask | an.polygon_mask(shape, np.asarray(verts)[:, -2:])
        return mask

    def clear_region(self) -> None:
        """Empty the region layers."""
        self.layers["region"].data = np.zeros(self.session.shape, np.uint8)
        self.layers["polygons"].data = []

    def apply(self, op: Callable[[np.ndarray], Any]) -> None:
        """Apply one core operation to the selected region, then clear the selection."""
        if self.session is None:
            return
        mask = self.region_mask()
        if not mask.any():
            _show_error("Select a region first: paint on the region layer or draw a polygon.")
            return
        try:
            op(mask)
        except GplwsError as exc:
            _show_error(str(exc))
            return
        self.clear_region()
        self._after_change()

    def _after_change(self) -> None:
        self.layers["gt"].data = self.session.depth.copy()
        self.status_combo.setCurrentText(self.dataset.samples[self.name].status)
        self._refresh_row()
        self._update_enabled()
        self.changed.emit()

    def undo(self) -> None:
        """Undo the last edit."""
        if self.session is not None and self.session.undo():
            self._after_change()

    def redo(self) -> None:
        """Redo the last undone edit."""
        if self.session is not None and self.session.redo():
            self._after_change()

    def save(self) -> None:
        """Save the corrected map (atomically)."""
        if self.session is None:
            return
        try:
            path = self.session.save()
        except GplwsError as exc:
            _show_error(str(exc))
            return
        self.autosave_timer.stop()
        self.info_label.setText(f"Saved {path}")
        self._update_enabled()

    def export_dataset(self, folder: str) -> None:
        """Save the open sample, then export the corrected dataset into ``folder`` (a worker)."""
        if self.dataset is None or not folder or (self.job is not None and self.job.running):
            return
        if self.session is not None and self.session.dirty:
            self.save()
        dataset = self.dataset

        def task(progress: Any, cancel: Any) -> Any:
            return dataset.export(folder, progress=progress, cancel=cancel)

        self.export_button.setEnabled(False)
        self.job = Job(
            task,
            description="Export dataset",
            activity=False,
            on_done=self._export_done,
            on_error=self._export_error,
            on_cancelled=self._update_enabled,
            parent=self,
        )
        self.job.start()

    def _export_done(self, path: Any) -> None:
        self.info_label.setText(f"Exported the corrected dataset to {path}")
        self._update_enabled()

    def _export_error(self, message: str) -> None:
        _show_error(message)
        self._update_enabled()

    def autosave(self) -> None:
        """Write the recovery file now (the debounce timer calls this)."""
        if self.session is not None and self.session.dirty:
            self.session.write_recovery()

    def _update_enabled(self) -> None:
        has = self.session is not None
        for b in (
            self.set_value_button,
            self.from_frame_button,
            self.smooth_button,
            self.plane_button,
            self.restore_button,
            self.save_button,
            self.prev_button,
            self.next_button,
            self.guidance_button,
            self.status_combo,
            self.note_edit,
        ):
            b.setEnabled(has)
        running = self.job is not None and self.job.running
        self.guidance_button.setEnabled(has and not running)
        self.guidance_cancel.setEnabled(running)
        self.export_button.setEnabled(self.dataset is not None and not running)
        self.snap_button.setEnabled(has and self.session.curves is not None)
        self.suspect_button.setEnabled(has and self.session.peak_um is not None)
        self.fill_button.setEnabled(has and self.session.prediction_um is not None)
        self.undo_button.setEnabled(has and self.session.can_undo)
        self.redo_button.setEnabled(has and self.session.can_redo)

    def closeEvent(self, event: Any) -> None:
        self._leave_sample()
        super().closeEvent(event)
