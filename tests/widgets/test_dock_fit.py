"""The docks fit a 1080-px screen (they scroll), and no spin box clips its value."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QAbstractSpinBox, QScrollArea

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
DOCKS = ("Depth from focus", "Height profile", "Ground truth editor", "Focal error map")


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


def test_all_four_docks_fit_a_1080_px_screen_and_show_whole_values(viewer, qtbot):
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in DOCKS]
    viewer.window._qt_window.resize(1600, 1000)
    qtbot.wait(200)
    for w in docks:
        assert w.findChild(QScrollArea) is not None, type(w).__name__
        assert w.minimumSizeHint().height() < 300, type(w).__name__
    need = viewer.window._qt_window.minimumSizeHint().height()
    assert need < 1000, need  # all four open at once still fit a 1080-px screen
    for w in docks:
        for spin in w.findChildren(QAbstractSpinBox):
            assert spin.width() >= spin.minimumSizeHint().width(), (
                type(w).__name__, spin.text(), spin.width(), spin.minimumWidth(),
                spin.minimumSizeHint().width(),
            )
