"""Depth from focus and Height profile docks: numbers a microscopist can trust.

Driven as a person would (set values, press Run, wait for the layers, read the labels):
the profile keeps measuring the same depth layer after a re-run, clears (and says so) when
its layer is deleted, warns before measuring a layer without depth units; layers carry µm
units; a hole reads as a hole (negative step, lower in 3D); the z slider keeps one step per
frame; a typed pixel size applies to the input too; closing the dock or deleting the input
during a run cancels it.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    from napari_gplws.widgets._height import height_setting

    height_setting().inverted = False
    yield make_napari_viewer_proxy()
    height_setting().inverted = False

def pick(combo, name):
    """Choose a layer in a combo box as a person does (select the item)."""
    i = combo.findText(name)
    assert i >= 0, name
    combo.setCurrentIndex(i)
    combo.activated.emit(i)



def pit_stack(h=64, w=80, n=15, step=1.5, px=0.5):
    """A flat surface at 6 µm with a round pit 12 µm deeper (depth grows away from the
    objective); frames blurred by the distance from each pixel's depth."""
    from napari_gplws.sim.defocus_render import defocus_render

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:h, :w]
    depth = np.where(np.hypot(yy - h / 2, xx - w / 2) < 16, 18.0, 6.0)
    focus = np.arange(n) * step
    frames = defocus_render(rng.random((h, w)), depth, focus, blur_px_per_um=0.6)
    return np.clip(frames * 255, 0, 255).astype(np.uint8), focus, depth


def add_pit(viewer, n=15, step=1.5, px=0.5, name="pit"):
    frames, focus, depth = pit_stack(n=n, step=step, px=px)
    return viewer.add_image(
        frames, name=name, scale=(step, px, px), translate=(0.0, 0.0, 0.0),
        units=("µm", "µm", "µm"),
        metadata={"focus_um": focus.tolist(), "pixel_size_um": px, "units": "µm"},
    )  # fmt: skip


def open_depth(viewer):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Depth from focus")
    w.method_combo.setCurrentIndex(w.method_combo.findData("sml"))
    return w


def run(widget, qtbot, outcome="done"):
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    assert blocker.args == [outcome]


def test_profile_keeps_measuring_the_same_depth_layer_after_a_rerun(viewer, qtbot):
    add_pit(viewer)
    d = open_depth(viewer)
    run(d, qtbot)
    _, p = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    pick(p.depth_combo, "pit depth")
    with qtbot.waitSignal(p.updated, timeout=10_000):
        p.new_line_button.click()
    first = p.step_height()
    run(d, qtbot)  # same settings: the depth layer is replaced by an equal one
    qtbot.waitUntil(lambda: p.depth_combo.currentText() == "pit depth", timeout=10_000)
    qtbot.waitUntil(lambda: p.profile is not None, timeout=10_000)
    assert p.depth_combo.currentData().unique_id == viewer.layers["pit depth"].unique_id
    assert p.step_height() == pytest.approx(first, abs=1e-3)
    assert "Step height" in p.step_label.text() and not p.warning_label.isVisibleTo(p)


def test_a_deleted_layer_clears_the_combo_and_says_so(viewer, qtbot):
    for name, value in (("left depth", 2.0), ("right depth", 7.0)):
        viewer.add_image(
            np.full((30, 40), value, np.float32), name=name,
            metadata={"units": "µm", "kind": "depth"},
        )  # fmt: skip
    _, p = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    pick(p.depth_combo, "left depth")
    with qtbot.waitSignal(p.updated, timeout=10_000):
        p.new_line_button.click()
    viewer.layers.remove("left depth")
    qtbot.waitUntil(lambda: p.profile is None, timeout=10_000)
    assert p.depth_combo.currentIndex() == -1  # never a jump to 'right depth'
    assert "'left depth' was removed" in p.step_label.text()


def test_a_layer_without_depth_units_is_not_measured_as_height(viewer, qtbot):
    viewer.add_image(np.tile(np.arange(40, dtype=np.float32), (30, 1)) * 3, name="grey levels")
    _, p = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    with qtbot.waitSignal(p.updated, timeout=10_000):
        p.new_line_button.click()
    assert p.warning_label.isVisibleTo(p) and "no depth units" in p.warning_label.text()
    assert "not a height" in p.axes.get_ylabel()
    assert "Step height" not in p.step_label.text() and "not a height" in p.step_label.text()


def test_layers_carry_um_units_so_the_scale_bar_reads_um(viewer, qtbot, tmp_path):
    import tifffile

    from napari_gplws._reader import napari_get_reader

    path = tmp_path / "scan.tif"
    frames, focus, _ = pit_stack()
    tifffile.imwrite(
        path, frames, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
        metadata={"spacing": 1.5, "unit": "um", "axes": "ZYX"},
    )  # fmt: skip
    for data, kwargs, _ in napari_get_reader(str(path))(str(path)):
        viewer.add_image(data, **kwargs)
    d = open_depth(viewer)
    run(d, qtbot)
    d.new_region_button.click()
    _, p = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    p.new_line_button.click()
    for layer in viewer.layers:
        assert [str(u) for u in layer.units][-2:] == ["micrometer"] * 2, layer.name
        assert tuple(layer.axis_labels)[-2:] == ("y", "x"), layer.name
    assert str(viewer.layers.units[-1]) == "micrometer"  # what the scale bar reads


def test_a_hole_reads_as_a_hole_in_the_profile_and_in_3d(viewer, qtbot, tmp_path):
    add_pit(viewer)
    d = open_depth(viewer)
    run(d, qtbot)
    _, p = viewer.window.add_plugin_dock_widget(PLUGIN, "Height profile")
    pick(p.depth_combo, "pit depth")
    with qtbot.waitSignal(p.updated, timeout=10_000):
        p.new_line_button.click()  # across the middle: rim, pit, rim
    p.marker_a.setValue(0.05 * p.profile.length)  # on the rim
    p.marker_b.setValue(0.5 * p.profile.length)  # at the bottom of the pit
    assert p.step_height() < -8  # going down into the hole: about −12 µm
    assert "height = −depth" in p.step_label.text() and "toward the objective" in p.axes.get_ylabel()
    out = p.export_csv(str(tmp_path / "pit.csv"))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert any("height = −depth (up toward the objective)" in ln for ln in lines)
    header = next(ln for ln in lines if not ln.startswith("#"))
    assert header.startswith("distance_µm,height_µm,depth_µm,")

    surface = viewer.layers["pit surface"]
    d.view3d_button.click()
    world = np.array([surface.data_to_world(v) for v in surface.data[0]])
    z, y, x = world.T
    centre = np.hypot(y - 16, x - 20) < 4
    rim = np.hypot(y - 16, x - 20) > 12
    assert z[centre].mean() < z[rim].mean() - 8  # world +z is up on the screen: a hole
    d.invert_height.setChecked(True)  # one setting: the profile's box follows
    assert p.invert_height.isChecked() and p.step_height() > 8
    world = np.array([surface.data_to_world(v) for v in surface.data[0]])
    assert world[centre, 0].mean() > world[rim, 0].mean() + 8
    d.view3d_button.click()


def test_the_z_slider_keeps_one_step_per_frame_and_the_view_comes_back(viewer, qtbot):
    stack = add_pit(viewer, n=20, step=3.5)
    assert viewer.dims.nsteps[0] == 20
    d = open_depth(viewer)
    viewer.dims.set_current_step(0, 7)
    camera = viewer.camera if not hasattr(viewer, "scene") else viewer.scene.camera
    camera.zoom = 3.0
    run(d, qtbot)
    assert viewer.dims.nsteps[0] == 20  # the hidden surface adds no step
    assert viewer.layers.selection.active.name == "pit depth"  # not the hidden surface
    d.view3d_button.click()
    d.view3d_button.click()
    assert viewer.dims.ndisplay == 2 and viewer.dims.nsteps[0] == 20
    assert camera.zoom == pytest.approx(3.0) and viewer.dims.current_step[0] == 7
    np.testing.assert_allclose(viewer.layers["pit depth"].scale, stack.scale[1:])


def test_a_typed_pixel_size_applies_to_the_input_too(viewer, qtbot):
    frames, focus, _ = pit_stack()
    stack = viewer.add_image(frames, name="raw", metadata={"focus_um": focus.tolist()})
    d = open_depth(viewer)
    assert d.pixel_size.value() == 0  # unknown
    d.pixel_size.setValue(0.5)
    run(d, qtbot)
    depth = viewer.layers["raw depth"]
    np.testing.assert_allclose(stack.scale[1:], (0.5, 0.5))
    np.testing.assert_allclose(depth.extent.world, stack.extent.world[:, 1:])
    assert "applied to 'raw'" in d.status_label.text() or "Done" in d.status_label.text()


def test_closing_the_dock_or_deleting_the_input_during_a_run_cancels_it(viewer, qtbot):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 384, 384), dtype=np.uint8)
    viewer.add_image(frames, name="big", scale=(2.0, 0.5, 0.5))
    d = open_depth(viewer)
    with qtbot.waitSignal(d.finished, timeout=TIMEOUT_MS) as blocker:
        d.run_button.click()
        qtbot.waitSignal(d.job.progressed, timeout=TIMEOUT_MS).wait()
        viewer.window.remove_dock_widget(d)
    assert blocker.args == ["cancelled"]
    qtbot.wait(300)
    assert [ly.name for ly in viewer.layers] == ["big"]

    d = open_depth(viewer)
    with qtbot.waitSignal(d.finished, timeout=TIMEOUT_MS) as blocker:
        d.run_button.click()
        qtbot.waitSignal(d.job.progressed, timeout=TIMEOUT_MS).wait()
        viewer.layers.remove("big")
    assert blocker.args == ["cancelled"]
    qtbot.wait(300)
    assert len(viewer.layers) == 0 and "was removed" in d.status_label.text()


def test_a_refused_run_replaces_the_status_line_and_a_single_image_is_explained(
    viewer, qtbot, tmp_path
):
    import imageio.v3 as iio

    from napari_gplws._reader import napari_get_reader

    add_pit(viewer)
    d = open_depth(viewer)
    run(d, qtbot)
    assert d.status_label.text().startswith("Done")
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    path = tmp_path / "frame.png"
    iio.imwrite(path, (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8))
    reader = napari_get_reader(str(path))
    assert reader is not None  # a single image opens through the plugin
    for data, kwargs, _ in reader(str(path)):
        viewer.add_image(data, **kwargs)
    assert viewer.layers["frame"].ndim == 2 and viewer.layers["frame"].metadata["kind"] == "frame"
    d.run_button.click()
    assert "'frame' is a single image" in d.status_label.text()


def test_the_progress_bar_moves_at_least_every_half_second(viewer, qtbot, monkeypatch):
    """GPLWS-Net reports once per pass over the stack (seconds apart on a CPU); the dock's
    bar must still move at least every ~0.5 s. The core is slowed down here the same way:
    one report, then 1.5 s of silence, twice."""
    import time

    import napari_gplws.api as api

    real = api.reconstruct

    def coarse(stack, progress=None, cancel=None, **kwargs):
        for k in range(2):
            time.sleep(1.5)  # one network pass
            progress(k + 1, 2)
        return real(stack, **kwargs)

    monkeypatch.setattr(api, "reconstruct", coarse)
    add_pit(viewer)
    d = open_depth(viewer)
    moves: list[float] = []
    d.progress_bar.valueChanged.connect(lambda _v: moves.append(time.monotonic()))
    t0 = time.monotonic()
    run(d, qtbot)
    times = [t0, *[t for t in moves if t - t0 < 3.0]]  # while the core computes
    assert max(np.diff(times)) < 0.8 and times[-1] - t0 > 2.5, np.diff(times)
