"""Small Qt helpers shared by the dock widgets: the device list, layer combos, spin boxes,
the collapsible "Advanced" section, error notifications.

What it is for: keeping the widgets thin and alike. The device list is filled without
blocking the GUI on ``import torch`` (a few seconds the first time): a plain daemon thread
imports torch and lists the devices, and a timer on the GUI thread picks the list up.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QVBoxLayout, QWidget

from napari_gplws.widgets import _layers

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


def spin(lo: float, hi: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    """A float spin box that only reports a value when editing is finished."""
    s = QDoubleSpinBox()
    s.setMinimumWidth(100)
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSuffix(suffix)
    s.setKeyboardTracking(False)
    return s


def refill(combo: QComboBox, layers: list[Any]) -> None:
    """Replace a combo's layer items, keeping the current layer selected when it is still there."""
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for ly in layers:
        combo.addItem(ly.name, ly)
    i = find_data(combo, current) if current is not None else -1
    combo.setCurrentIndex(i if i >= 0 else (0 if layers else -1))
    combo.blockSignals(False)
    if not _layers.same(combo.currentData(), current):
        combo.currentIndexChanged.emit(combo.currentIndex())


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
