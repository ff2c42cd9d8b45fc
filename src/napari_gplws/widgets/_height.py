"""The one *invert height* setting that the docks showing height share.

Depth grows away from the objective; what people read (the 3D surface, profiles, step
heights, surface parameters) is **height**, up toward the objective: ``height = −depth``.
On stands or sweeps where a larger focus position means *closer* to the objective, the
relief comes out upside down; one setting, **Invert height**, turns it over everywhere
(``height = +depth``). Each dock that shows height has a check box bound to this one
setting (:func:`invert_checkbox`), so they always agree; outputs record which convention
they used (:func:`napari_gplws.metrology.profile.height_convention`).
"""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QCheckBox, QWidget

__all__ = ["HeightSetting", "height_setting", "invert_checkbox"]

INVERT_TEXT = "Invert height"
INVERT_TIP = (
    "Height is shown up toward the objective (height = −depth), so a hole looks like a "
    "hole. Tick this on stands where a larger focus position is closer to the objective: "
    "height = +depth. One setting for every dock."
)


class HeightSetting(QObject):
    """Whether height is inverted (``height = +depth``); :attr:`changed` tells the docks."""

    changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self._inverted = False

    @property
    def inverted(self) -> bool:
        return self._inverted

    @inverted.setter
    def inverted(self, value: bool) -> None:
        value = bool(value)
        if value != self._inverted:
            self._inverted = value
            self.changed.emit(value)


_SETTING: HeightSetting | None = None


def height_setting() -> HeightSetting:
    """The application's one height setting (made on first use, on the GUI thread)."""
    global _SETTING
    if _SETTING is None:
        _SETTING = HeightSetting()
    return _SETTING


def invert_checkbox(parent: QWidget | None = None) -> QCheckBox:
    """A check box showing and changing :func:`height_setting`."""
    setting = height_setting()
    box = QCheckBox(INVERT_TEXT, parent)
    box.setToolTip(INVERT_TIP)
    box.setChecked(setting.inverted)
    box.toggled.connect(lambda on: setattr(setting, "inverted", on))

    def follow(on: bool) -> None:
        try:
            if box.isChecked() != on:
                box.setChecked(on)
        except RuntimeError:  # the dock was closed; its check box is gone
            pass

    setting.changed.connect(follow)
    return box
