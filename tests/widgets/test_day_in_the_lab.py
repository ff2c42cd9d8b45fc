"""A day in the lab, scripted: one person, one viewer, the four docks one after another.

Open a stack from a file, reconstruct, draw a profile, run again, check that the profile
still measures the same depth layer, look in 3D and come back, run the focal-error map on
all frames, then open a dataset in the Ground truth editor, edit, open it again and save.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 120_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    from napari_gplws.widgets._height import height_setting

    height_setting().inverted = False
    return make_napari_viewer_proxy()

def pick(combo, name):
    """Choose a layer in a combo box as a person does (select the item)."""
    i = combo.findText(name)
    assert i >= 0, name
    combo.setCurrentIndex(i)
    combo.activated.emit(i)



def wait_done(widget, qtbot, signal=None):
    with qtbot.waitSignal(signal or widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    assert blocker.args == ["done"]


def write_scan(path):
    """An ImageJ TIFF of a terrace with a 10 µm deep trench: 12 frames, 2 µm apart, 0.5 µm px."""
    import tifffile

    from napari_gplws.sim.defocus_render import defocus_render

    rng = np.random.default_rng(7)
    depth = np.full((96, 96), 6.0)
    depth[:, 40:56] = 16.0  # the trench
    focus = np.arange(12) * 2.0
    frames = defocus_render(rng.random((96, 96)), depth, focus, blur_px_per_um=0.5)
    frames = np.clip(frames * 255, 0, 255).astype(np.uint8)
    tifffile.imwrite(
        path, frames, imagej=True, resolution=(2.0, 2.0),
        metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"},
    )  # fmt: skip


def write_dataset(root):
    import imageio.v3 as iio

    from napari_gplws.training.gplws_data import render_stack, render_texture

    rng = np.random.default_rng(3)
    _, xx = np.mgrid[:48, :48]
    for i in range(2):
        d = root / f"sample_{i + 1}"
        d.mkdir(parents=True)
        idx = (1.0 + 6.0 * xx / 47).astype(np.float32)
        frames = render_stack(idx, render_texture(48, 48, rng, 0.0), 10, blur_per_step=1.0)
        for k, f in enumerate(frames):
            iio.imwrite(d / f"{k + 1}.png", (np.clip(f, 0, 1) * 255).astype(np.uint8))
        iio.imwrite(d / "depth.png", np.rint(idx * 100).astype(np.uint16))
        (d / "focus.json").write_text(json.dumps({"focus_start_um": 0.0, "focus_step_um": 2.0}))


def test_a_day_in_the_lab(viewer, qtbot, tmp_path):
    from napari_gplws._reader import napari_get_reader

    # Open a stack from a file: µm on every axis, so the scale bar reads µm.
    scan = tmp_path / "trench.tif"
    write_scan(scan)
    for data, kwargs, _ in napari_get_reader(str(scan))(str(scan)):
        viewer.add_image(data, **kwargs)
    stack = viewer.layers["trench"]
    assert viewer.dims.nsteps[0] == 12 and str(viewer.layers.units[-1]) == "micrometer"

    # Reconstruct.
    _, depth_dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Depth from focus")
    depth_dock.method_combo.setCurrentIndex(depth_dock.method_combo.findData("sml"))
    wait_done(depth_dock, qtbot)
    assert viewer.layers.selection.active.name == "trench depth"
    assert viewer.dims.nsteps[0] == 12

    # Draw a profile across the trench: going down into it is a negative step of ~10 µm.
    _, profile = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    assert profile.depth_combo.currentText() == "trench depth"
    with qtbot.waitSignal(profile.updated, timeout=10_000):
        profile.new_line_button.click()
    length = profile.profile.length
    profile.marker_a.setValue(0.15 * length)
    profile.marker_b.setValue(0.5 * length)
    step = profile.step_height()
    assert -13 < step < -7, step

    # Run again with the same settings: the profile keeps measuring the (new) depth layer.
    wait_done(depth_dock, qtbot)
    qtbot.waitUntil(lambda: profile.profile is not None, timeout=10_000)
    assert profile.depth_combo.currentText() == "trench depth"
    assert profile.depth_combo.currentData().unique_id == viewer.layers["trench depth"].unique_id
    assert profile.step_height() == pytest.approx(step, abs=1e-3)
    assert "µm" in profile.step_label.text() and not profile.warning_label.isVisibleTo(profile)

    # View in 3D (the trench is lower than the terrace) and back.
    depth_dock.view3d_button.click()
    assert viewer.dims.ndisplay == 3
    surface = viewer.layers["trench surface"]
    z = np.array([surface.data_to_world(v)[0] for v in surface.data[0]])
    x = np.array([surface.data_to_world(v)[2] for v in surface.data[0]])
    assert z[(x > 22) & (x < 26)].mean() < z[x < 15].mean() - 6
    depth_dock.view3d_button.click()
    assert viewer.dims.ndisplay == 2 and viewer.dims.nsteps[0] == 12
    assert stack.visible and viewer.layers["trench depth"].visible

    # The focal-error map on all frames of the stack.
    _, focal = viewer.window.add_plugin_dock_widget(PLUGIN, "Focal error map")
    focal.device_combo.setCurrentText("cpu")
    pick(focal.image_combo, "trench")
    focal.frames_combo.setCurrentIndex(focal.frames_combo.findData("all"))
    wait_done(focal, qtbot)
    assert focal.summary_table.rowCount() == 12
    heatmap = viewer.layers["trench defocus map"]
    assert heatmap.data.shape == (12, 3, 3) and str(heatmap.units[-1]) == "micrometer"

    # The Ground truth editor: open (the wrong scale is caught), edit, open again, save.
    root = tmp_path / "dataset"
    write_dataset(root)
    _, editor = viewer.window.add_plugin_dock_widget(PLUGIN, "Ground truth editor")
    editor.ask_restore = lambda msg: True
    editor.ask_scale = lambda msg: True
    editor.ask_save = lambda msg: False  # keep the edit in the recovery file
    editor.folder_edit.setText(str(root))
    editor.open_button.click()
    assert editor.gt_scale.value() == pytest.approx(0.01) and editor.name == "sample_1"
    region = np.zeros(editor.session.shape, np.uint8)
    region[4:12, 4:12] = 1
    editor.layers["region"].data = region
    editor.value_spin.setValue(5.0)
    editor.set_value_button.click()
    editor.open_button.click()  # again: the edit waits in the recovery file, restored
    assert editor.name == "sample_1" and editor.session.dirty
    assert np.all(editor.session.depth[4:12, 4:12] == np.float32(5.0))
    editor.save_button.click()
    assert not editor.session.dirty and editor.session.sample.corrected_path.is_file()
    assert editor.info_label.text().startswith("Saved")
