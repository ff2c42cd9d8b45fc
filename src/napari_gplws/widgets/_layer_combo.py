"""The layer picker of every dock: keeps its choice while layers are replaced, never jumps.

:class:`LayerCombo` is a ``QComboBox`` of napari layers that the dock refills (from
``reset_choices``, which napari calls whenever layers are added, removed, reordered or
renamed) with :meth:`LayerCombo.refill`. Its rules:

* the chosen layer stays chosen as long as it is in the viewer, whatever else changes;
* when it disappears and a layer of the same name and kind takes its place (a dock ran
  again and replaced its outputs), the new layer is chosen: the choice survives a re-run,
  even though the replacement arrives a moment after the old layer went;
* otherwise the combo is cleared (no layer chosen) and :attr:`LayerCombo.lost` says which
  layer went, so the dock can say so. It never picks a neighbour on its own;
* only while nothing was ever chosen does it pick the first candidate by itself (the docks
  order candidates best first).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QWidget

from napari_gplws.widgets import _layers
from napari_gplws.widgets._controls import find_data

__all__ = ["LayerCombo"]


def _kind(layer: Any) -> tuple[str, Any]:
    return type(layer).__name__, layer.metadata.get("kind")


class LayerCombo(QComboBox):
    """A combo box of layers with the rules of the module docstring.

    Signals
    -------
    lost(str)
        The chosen layer (named by the argument) left the viewer and nothing replaced it;
        the combo is now empty-handed (``currentData()`` is ``None``).
    """

    lost = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        #: ``(name, kind)`` of a chosen layer that left the viewer, until it is replaced.
        self.missing: tuple[str, tuple[str, Any]] | None = None
        self.activated.connect(self._chosen_by_user)

    def _chosen_by_user(self, *_: Any) -> None:
        self.missing = None

    def _replacement(self, layers: list[Any], name: str, kind: tuple[str, Any]) -> int:
        for i, ly in enumerate(layers):
            if ly.name == name and _kind(ly) == kind:
                return i
        return -1

    def choose(self, layer: Any) -> None:
        """Choose ``layer`` (as a person would); nothing happens when it is not listed."""
        i = find_data(self, layer)
        if i >= 0:
            self.missing = None
            self.setCurrentIndex(i)

    def refill(self, layers: list[Any]) -> None:
        """Replace the items by ``layers`` (best candidates first), keeping the choice."""
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        for ly in layers:
            self.addItem(ly.name, ly)
        i = find_data(self, current) if current is not None else -1
        went = None
        if i < 0 and current is not None:
            i = self._replacement(layers, current.name, _kind(current))
            if i < 0:
                self.missing = (current.name, _kind(current))
                went = current.name
        elif i < 0 and self.missing is not None:
            i = self._replacement(layers, *self.missing)
            if i >= 0:
                self.missing = None
        elif i < 0 and layers:
            i = 0  # nothing was ever chosen: the best candidate
        self.setCurrentIndex(i)
        self.blockSignals(False)
        if not _layers.same(self.currentData(), current):
            self.currentIndexChanged.emit(self.currentIndex())
        if went is not None:
            self.lost.emit(went)
