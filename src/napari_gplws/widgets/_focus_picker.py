"""The focus-position picker shared by the docks: from the layer, start + step, or unknown.

A stack's focus positions (µm) come from the layer's metadata when it has them, or from a
start and a step typed by the user (pre-filled from the layer's scale along the stack axis),
or are unknown. :class:`FocusPicker` owns the three controls (a choice and two spin boxes),
fills them for a layer, keeps them consistent (typing a start or step selects "start +
step") and turns the choice into positions. It is laid out and enabled by the dock that
uses it; it computes nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QWidget

from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import spin

__all__ = ["FOCUS_METADATA", "FOCUS_START_STEP", "FOCUS_UNKNOWN", "FocusPicker"]

#: The choices (``mode.currentData()``): positions from the layer, from start + step, none.
FOCUS_METADATA, FOCUS_START_STEP, FOCUS_UNKNOWN = "metadata", "start_step", "unknown"


class FocusPicker(QObject):
    """Controls that choose a stack's focus positions in µm.

    Parameters
    ----------
    unknown_text
        Text of the "unknown" choice, saying what a run does without positions (e.g.
        ``"unknown: depth in frame index"``).
    parent
        Owner of this object (the dock); the controls get their parent when laid out.

    Attributes
    ----------
    mode
        The choice; its item data is :data:`FOCUS_METADATA`, :data:`FOCUS_START_STEP` or
        :data:`FOCUS_UNKNOWN`.
    start, step
        Focus position of frame 0 and step between frames, in µm (the step starts at 1).

    Signals
    -------
    changed()
        The user changed the choice (not emitted while :meth:`set_layer` refills it).
    """

    changed = Signal()

    def __init__(self, unknown_text: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.unknown_text = unknown_text
        self.mode = QComboBox()
        self.start = spin(-1e5, 1e5, 3, "")  # ±10 cm of focus drive
        self.step = spin(-1e3, 1e3, 3, "")  # ±1 mm between frames
        self.step.setValue(1.0)
        self.mode.currentIndexChanged.connect(self._on_mode_changed)
        self.start.valueChanged.connect(self._on_edited)
        self.step.valueChanged.connect(self._on_edited)

    @property
    def widgets(self) -> tuple[QWidget, QWidget, QWidget]:
        """``(mode, start, step)``, e.g. for a dock's list of inputs to lock during a run."""
        return self.mode, self.start, self.step

    def add_rows(self, form: QFormLayout, label: str = "Focus positions") -> None:
        """Add two rows to ``form``: the choice, then ``start [ ] step [ ] µm``."""
        form.addRow(label, self.mode)
        row = QHBoxLayout()
        row.addWidget(QLabel("start"))
        row.addWidget(self.start)
        row.addWidget(QLabel("step"))
        row.addWidget(self.step)
        row.addWidget(QLabel("µm"))
        form.addRow("", row)

    def current(self) -> str | None:
        """The chosen key (``None`` before :meth:`set_layer` filled the choices)."""
        return self.mode.currentData()

    def set_layer(self, layer: Any | None) -> None:
        """Offer the choices for a stack layer and pick the best one.

        With focus positions in the layer's metadata: "from layer" (chosen), start and step
        set from them. Otherwise start and step come from the layer's scale and offset along
        the stack axis when it has them ("start + step" chosen), else "unknown" is chosen.
        ``None`` (no layer, or not a stack) offers only "start + step" and "unknown". No
        signal is emitted; enable the controls afterwards (:meth:`set_enabled`).
        """
        self.mode.blockSignals(True)
        self.mode.clear()
        focus = None if layer is None else _layers.focus_from_layer(layer)
        if focus is not None:
            self.mode.addItem(
                f"from layer ({len(focus)} positions, {focus[0]:g} … {focus[-1]:g} µm)",
                FOCUS_METADATA,
            )
        self.mode.addItem("start + step (µm)", FOCUS_START_STEP)
        self.mode.addItem(self.unknown_text, FOCUS_UNKNOWN)
        start_step = None
        if focus is not None:
            n = len(focus)
            start_step = (float(focus[0]), float((focus[-1] - focus[0]) / max(n - 1, 1)))
        elif layer is not None:
            start_step = _layers.scale_focus_from_layer(layer)
        for w in (self.start, self.step):
            w.blockSignals(True)
        if start_step is not None:
            self.start.setValue(start_step[0])
            self.step.setValue(start_step[1])
        for w in (self.start, self.step):
            w.blockSignals(False)
        mode = (
            FOCUS_METADATA
            if focus is not None
            else FOCUS_START_STEP
            if start_step
            else FOCUS_UNKNOWN
        )
        self.mode.setCurrentIndex(self.mode.findData(mode))
        self.mode.blockSignals(False)

    def set_enabled(self, enabled: bool) -> None:
        """Enable the choice; start and step only when enabled and the choice is not
        "unknown"."""
        self.mode.setEnabled(enabled)
        editable = enabled and self.current() != FOCUS_UNKNOWN
        self.start.setEnabled(editable)
        self.step.setEnabled(editable)

    def positions(self, layer: Any | None, n_frames: int) -> np.ndarray | None:
        """Focus positions (µm) of ``n_frames`` frames, or ``None`` when they are unknown.

        Raises
        ------
        FocusPositionError
            A start + step that gives no valid positions (e.g. a zero step).
        """
        from napari_gplws.stack import uniform_positions

        mode = self.current()
        if mode == FOCUS_METADATA:
            return _layers.focus_from_layer(layer)
        if mode == FOCUS_START_STEP:
            return uniform_positions(n_frames, self.start.value(), self.step.value())
        return None

    def _on_mode_changed(self, *_: Any) -> None:
        self.changed.emit()

    def _on_edited(self, *_: Any) -> None:
        """Typing a start or step means: use start + step."""
        i = self.mode.findData(FOCUS_START_STEP)
        if i >= 0 and self.mode.currentIndex() != i:
            self.mode.setCurrentIndex(i)
