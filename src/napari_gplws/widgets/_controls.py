"""Small Qt helpers shared by the dock widgets: the device list, layer combos, spin boxes,
the collapsible "Advanced" section, the scroll area every dock sits in, error notifications.

What it is for: keeping the widgets thin and alike. The device list is filled without
blocking the GUI on ``import torch`` (a few seconds the first time): a plain daemon thread
imports torch and lists the devices, and a timer on the GUI thread picks the list up.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLayout,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

_DEVICES: list[str] = []
_PROBE: threading.Thread | None = None


def list_devices() -> list[str]:
    """Devices PyTorch can use here (see :func:`napari_gplws._shared.device.available_devices`)."""
    from napari_gplws._shared.device import available_devices

    return available_devices()


def _probe_devices() -> None:
    """Import torch and list its devices once, on a plain daemon thread that touches no Qt object."""
    global _PROBE

    def probe() -> None:
        _DEVICES[:] = list_devices()

    if _PROBE is None:
        _PROBE = threading.Thread(target=probe, name="gplws-device-probe", daemon=True)
        _PROBE.start()


def set_devices(combo: QComboBox, devices: list[str]) -> None:
    """Replace the combo's devices, keeping the current choice when it is still there."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(devices)
    combo.setCurrentIndex(max(0, combo.findText(current)))
    combo.blockSignals(False)


def fill_devices_later(combo: QComboBox, parent: QObject) -> None:
    """Fill ``combo`` with :func:`list_devices` now if torch is imported, else as soon as a
    background import finishes (polled every 200 ms by a timer owned by ``parent``)."""
    if "torch" in sys.modules:
        set_devices(combo, list_devices())
        return
    _probe_devices()
    timer = QTimer(parent)
    timer.setInterval(200)

    def poll() -> None:
        if _DEVICES:
            timer.stop()
            set_devices(combo, list(_DEVICES))

    timer.timeout.connect(poll)
    timer.start()


def collapsible_group(title: str, rows: list[tuple[str, QWidget]]) -> QGroupBox:
    """A checkable group box whose form rows show only while it is checked (unchecked at
    first): the "Advanced" section of the docks."""
    group = QGroupBox(title)
    group.setCheckable(True)
    group.setChecked(False)
    form = QFormLayout()
    for label, widget in rows:
        form.addRow(label, widget)
    body = QWidget()
    body.setLayout(form)
    body.setVisible(False)
    box = QVBoxLayout()
    box.setContentsMargins(4, 4, 4, 4)
    box.addWidget(body)
    group.setLayout(box)
    group.toggled.connect(body.setVisible)
    return group


def make_scrollable(dock: QWidget, layout: QLayout) -> QScrollArea:
    """Lay ``layout`` out inside a scroll area that fills ``dock``.

    A dock taller than the screen then scrolls instead of stretching napari's window (the
    docks fit a 1080-px screen, several at a time).
    """
    body = QWidget()
    body.setLayout(layout)
    for box in body.findChildren(QAbstractSpinBox):
        _SpinFit(box)
    for combo in body.findChildren(QComboBox):
        # Long entries (layer names, "from layer (20 positions …)") must not widen the dock.
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # it scrolls up and down only
    area.setWidget(body)
    _FitWidth(body, area)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return area


class _FitWidth(QObject):
    """Keeps a scroll area as wide as its content needs (it scrolls vertically only)."""

    def __init__(self, body: QWidget, area: QScrollArea) -> None:
        super().__init__(body)
        self._body, self._area = body, area
        body.installEventFilter(self)
        self._fit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.LayoutRequest, QEvent.Polish, QEvent.Show):
            QTimer.singleShot(0, self._fit)
        return False

    def _fit(self) -> None:
        with contextlib.suppress(RuntimeError):  # the dock is gone
            bar = self._area.verticalScrollBar().sizeHint().width()
            self._area.setMinimumWidth(self._body.minimumSizeHint().width() + bar)


class _SpinFit(QObject):
    """Keeps a spin box at least as wide as its longest value.

    napari's theme gives spin boxes a small fixed minimum width, so a narrow dock squeezed
    them and clipped their values ("3.50("). Each time the box is (re)styled, its minimum
    width is set again to Qt's own minimum, which fits the longest value of its range with
    prefix and suffix.
    """

    def __init__(self, box: QAbstractSpinBox) -> None:
        super().__init__(box)
        self._box = box
        box.installEventFilter(self)
        self._fit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Polish, QEvent.StyleChange, QEvent.FontChange):
            QTimer.singleShot(0, self._fit)
        return False

    def _fit(self) -> None:
        with contextlib.suppress(RuntimeError):  # the box is gone
            self._box.setMinimumWidth(self._box.minimumSizeHint().width())


def spin(lo: float, hi: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    """A float spin box that only reports a value when editing is finished.

    No fixed minimum width: Qt's own minimum fits the longest value of the range with its
    suffix, so a value is never clipped.
    """
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSuffix(suffix)
    s.setKeyboardTracking(False)
    return s


def find_data(combo: QComboBox, obj: Any) -> int:
    """Index of the item holding ``obj`` (Qt's findData cannot compare Python objects).

    Layers are matched by ``unique_id``, so a layer handed back through a wrapper (such as
    napari's public-only viewer proxy) still finds its entry.
    """
    key = getattr(obj, "unique_id", None)
    for i in range(combo.count()):
        data = combo.itemData(i)
        if data is obj or (key is not None and getattr(data, "unique_id", None) == key):
            return i
    return -1


def show_exception(exc: BaseException) -> None:
    """A napari error notification with the exception's plain message (no traceback)."""
    from napari.utils.notifications import show_error

    show_error(str(exc))
