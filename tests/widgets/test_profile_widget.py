"""The Height profile dock, driven as a person would: draw a line, move it, read the step, export."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
PX = 0.5  # µm per pixel


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


def add_step_map(viewer):
    """A 60×100 depth map in µm: 2 µm on the left half, 7 µm on the right half."""
    depth = np.full((60, 100), 2.0, np.float32)
    depth[:, 50:] = 7.0
    return viewer.add_image(
        depth, name="terrace depth", scale=(PX, PX), translate=(10.0, 20.0), colormap="viridis",
        metadata={"units": "µm", "kind": "depth", "pixel_size_um": PX},
    )  # fmt: skip


def test_line_gives_a_profile_in_um_and_a_step_height(viewer, qtbot, tmp_path, monkeypatch):
    add_step_map(viewer)
    viewer.add_image(np.zeros((5, 5)), name="unrelated 2D")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    assert w.depth_combo.currentText() == "terrace depth"  # depth maps are offered first

    with qtbot.waitSignal(w.updated, timeout=10_000):
        w.new_line_button.click()
    line = viewer.layers["terrace depth profile line"]
    p = w.profile
    # The default line runs from 10 % to 90 % of the width: 80 px = 40 µm.
    assert p.distance_units == "µm" and p.units == "µm"
    assert p.length == pytest.approx(80 * PX)
    plotted = w.axes.lines[0].get_ydata()
    np.testing.assert_allclose(plotted, p.height)
    # Height is up toward the objective: height = −depth (the right half is 5 µm deeper).
    assert plotted[0] == pytest.approx(-2.0) and plotted[-1] == pytest.approx(-7.0)
    # Markers default to 25 % and 75 % of the line: either side of the step.
    assert w.step_height() == pytest.approx(-5.0)
    assert "-5 µm" in w.step_label.text()
    w.half_width.setValue(3.0)
    assert w.step_height() == pytest.approx(-5.0)
    # Both markers on the same terrace: no step.
    w.marker_b.setValue(5.0)
    assert w.step_height() == pytest.approx(0.0)

    # Moving the line (as dragging its vertices does) updates the plot.
    data = np.asarray(line.data[0])
    with qtbot.waitSignal(w.updated, timeout=10_000):
        line.data = [np.array([[data[0, 0], 5.0], [data[0, 0], 40.0]])]  # left terrace only
    assert w.profile.length == pytest.approx(35 * PX)
    assert np.allclose(w.axes.lines[0].get_ydata(), -2.0)

    from qtpy.QtWidgets import QFileDialog

    out = tmp_path / "profile.csv"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    w.export_button.click()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# source: terrace depth"
    header = next(ln for ln in lines if not ln.startswith("#"))
    assert header == "distance_µm,height_µm,depth_µm,x_µm,y_µm,row,col"
    assert "# height = −depth (up toward the objective); depth grows away from the objective" in lines
    rows = [ln.split(",") for ln in lines[lines.index(header) + 1 :]]
    assert len(rows) == len(w.profile.distance)
    assert float(rows[0][1]) == pytest.approx(-2.0) and float(rows[0][2]) == pytest.approx(2.0)
    assert float(rows[0][3]) == pytest.approx(20.0 + 5.0 * PX)  # world x = translate + col·px


def test_profile_follows_the_chosen_depth_layer_and_survives_its_removal(viewer, qtbot):
    depth = add_step_map(viewer)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    with qtbot.waitSignal(w.updated, timeout=10_000):
        w.new_line_button.click()
    assert w.profile is not None
    viewer.layers.remove(depth.name)
    qtbot.waitUntil(lambda: w.profile is None, timeout=10_000)
    assert not w.export_button.isEnabled()
    assert w.depth_combo.currentIndex() == -1  # cleared, and the dock says why
    assert "'terrace depth' was removed" in w.step_label.text()
