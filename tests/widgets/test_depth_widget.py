"""The Depth from focus dock, driven as a person would: open it, set values, click, wait, check.

Run under Xvfb: ``xvfb-run -a .venv/bin/python -m pytest tests/test_widgets_depth.py``.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


@pytest.fixture(scope="module")
def sample():
    """The bundled sample's layer-data tuples, generated once for the module."""
    from napari_gplws._sample_data import sample_stack

    return sample_stack()


def add_sample(viewer, sample):
    """What File > Open Sample does, without generating the stack again."""
    for data, kwargs, _ in sample:
        viewer.add_image(data, **kwargs)


def open_dock(viewer, qtbot):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Depth from focus")
    method = widget.method_combo
    method.setCurrentIndex(method.findData("sml"))  # fast and independent of installed weights
    return widget


def run(widget, qtbot, outcome="done"):
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    assert blocker.args == [outcome]


def errors_shown():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR
    ]


def test_sample_gives_named_layers_with_units_and_geometry(viewer, qtbot):
    viewer.open_sample(PLUGIN, "focus_stack")
    w = open_dock(viewer, qtbot)
    assert w.stack_combo.currentText() == "sample stack"
    assert w.focus_mode.currentText().startswith("from layer (20 positions")
    assert w.pixel_size.value() == pytest.approx(0.5)

    w.run_button.click()
    # Controls are locked while the worker runs.
    assert (
        not w.run_button.isEnabled()
        and w.cancel_button.isEnabled()
        and not w.method_combo.isEnabled()
    )
    qtbot.waitUntil(lambda: "sample stack surface" in viewer.layers, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=TIMEOUT_MS)
    assert not w.cancel_button.isEnabled()

    stack = viewer.layers["sample stack"]
    depth = viewer.layers["sample stack depth"]
    aif = viewer.layers["sample stack all-in-focus"]
    conf = viewer.layers["sample stack confidence"]
    surface = viewer.layers["sample stack surface"]
    assert depth.data.shape == aif.data.shape == conf.data.shape == (256, 256)
    assert aif.data.dtype == stack.data.dtype
    np.testing.assert_allclose(depth.scale, stack.scale[1:])
    np.testing.assert_allclose(depth.translate, stack.translate[1:])
    assert depth.metadata["units"] == "µm" and depth.metadata["method"] == "sml"
    assert depth.colormap.name == "viridis"
    assert not conf.visible and conf.data.min() >= 0 and conf.data.max() <= 1
    # The depth is close to the sample's ground truth (µm).
    truth = viewer.layers["sample ground truth depth (µm)"].data
    assert np.median(np.abs(depth.data - truth)) < 2.5
    # Textured surface: full-resolution texture, coarse mesh, texture coordinates per vertex.
    vertices, faces = surface.data[0], surface.data[1]
    assert surface.texture.shape[:2] == (256, 256) and surface.texcoords.shape == (len(vertices), 2)
    assert faces.max() < len(vertices) and surface.metadata["true_aspect"]

    # One click shows the surface alone in 3D; a second brings the 2D view back.
    w.view3d_button.click()
    assert viewer.dims.ndisplay == 3 and surface.visible and not depth.visible
    w.view3d_button.click()
    assert viewer.dims.ndisplay == 2 and depth.visible and not surface.visible


def test_rerun_replaces_only_its_own_layers(viewer, qtbot, sample):
    add_sample(viewer, sample)
    notes = viewer.add_image(np.zeros((8, 8)), name="my own layer")
    w = open_dock(viewer, qtbot)
    run(w, qtbot)
    first = {ly.name: ly.unique_id for ly in viewer.layers}
    w.focus_mode.setCurrentIndex(w.focus_mode.findData("unknown"))
    run(w, qtbot)
    names = [ly.name for ly in viewer.layers]
    assert sorted(names) == sorted(first)  # same set of names, no "[1]" duplicates
    for name in ("sample stack depth", "sample stack surface", "sample stack all-in-focus"):
        assert viewer.layers[name].unique_id != first[name]
    assert viewer.layers["my own layer"].unique_id == notes.unique_id == first["my own layer"]
    assert viewer.layers["sample stack"].unique_id == first["sample stack"]
    # Frame-index units when the focus positions are declared unknown.
    depth = viewer.layers["sample stack depth"]
    assert depth.metadata["units"] == "frame" and depth.data.min() >= 0 and depth.data.max() <= 19


def test_start_and_step_are_editable(viewer, qtbot, sample):
    add_sample(viewer, sample)
    w = open_dock(viewer, qtbot)
    w.focus_start.setValue(100.0)
    w.focus_step.setValue(-2.0)
    assert w.focus_mode.currentData() == "start_step"
    run(w, qtbot)
    depth = viewer.layers["sample stack depth"]
    assert depth.metadata["focus_um"][:2] == [100.0, 98.0]
    assert depth.data.min() >= 100.0 - 19 * 2.0 and depth.data.max() <= 100.0


def test_cancel_midway_leaves_no_layers(viewer, qtbot):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 384, 384), dtype=np.uint8)
    viewer.add_image(frames, name="big", scale=(2.0, 0.5, 0.5))
    w = open_dock(viewer, qtbot)
    before = [ly.name for ly in viewer.layers]
    w.run_button.click()
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        qtbot.waitSignal(w.job.progressed, timeout=TIMEOUT_MS).wait()
        w.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert [ly.name for ly in viewer.layers] == before
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()
    assert "Cancelled" in w.status_label.text()


def test_bad_stack_gives_a_notification_not_a_crash(viewer, qtbot):
    frames = np.ones((4, 32, 32), np.float32)
    frames[2, 5, 5] = np.nan
    viewer.add_image(frames, name="broken")
    w = open_dock(viewer, qtbot)
    n_before = len(errors_shown())
    run(w, qtbot, outcome="error")
    new = errors_shown()[n_before:]
    assert len(new) == 1 and "NaN" in new[0] and "broken" in new[0]
    assert [ly.name for ly in viewer.layers] == ["broken"]
    assert w.run_button.isEnabled()


def tilted_plane_stack(h=64, w=96, slope_um_per_px=0.2, z0=1.0):
    """A synthetic stack of a plane whose depth grows with x: depth = z0 + slope·col (µm)."""
    from napari_gplws.sim.defocus_render import defocus_render

    rng = np.random.default_rng(3)
    texture = rng.random((h, w))
    depth = z0 + slope_um_per_px * np.tile(np.arange(w, dtype=np.float64), (h, 1))
    focus = np.linspace(0.0, 21.0, 15)
    frames = defocus_render(texture, depth, focus, blur_px_per_um=0.6)
    frames = np.clip(frames * 255, 0, 255).astype(np.uint8)
    return frames, focus, depth


def test_surface_orientation_matches_a_known_tilted_plane(viewer, qtbot):
    frames, focus, truth = tilted_plane_stack()
    stack = viewer.add_image(
        frames, name="plane", scale=(focus[1] - focus[0], 0.5, 0.5), translate=(focus[0], 0, 0),
        metadata={"focus_um": focus.tolist(), "pixel_size_um": 0.5, "units": "µm"},
    )  # fmt: skip
    w = open_dock(viewer, qtbot)
    run(w, qtbot)
    surface = viewer.layers["plane surface"]
    world = np.array([surface.data_to_world(v) for v in surface.data[0]])
    z, y, x = world.T
    # Least-squares plane through the surface in world coordinates (µm): z = a + b·x + c·y.
    a_mat = np.column_stack([np.ones_like(x), x, y])
    (_, b, c), *_ = np.linalg.lstsq(a_mat, z, rcond=None)
    assert b == pytest.approx(0.2 / 0.5, rel=0.1)  # z grows with x, in µm per µm: true aspect
    assert abs(c) < 0.02
    # Each surface point sits, in world coordinates, in the stack frame where it is in focus.
    inner = (x > 3) & (x < 44) & (y > 3) & (y < 28)
    frame = np.array([stack.world_to_data(p)[0] for p in world[inner]])
    expected = (
        truth[np.rint(y[inner] / 0.5).astype(int), np.rint(x[inner] / 0.5).astype(int)] - focus[0]
    ) / (focus[1] - focus[0])
    assert np.median(np.abs(frame - expected)) < 0.5


def test_exports_depth_mesh_and_surface_parameters(viewer, qtbot, sample, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from napari_gplws.io import read_depth_tiff

    add_sample(viewer, sample)
    w = open_dock(viewer, qtbot)
    run(w, qtbot)

    def choose(path, kind=""):
        monkeypatch.setattr(
            QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), kind))
        )

    choose(tmp_path / "depth.tif")
    w.export_depth_button.click()
    data, info = read_depth_tiff(tmp_path / "depth.tif")
    assert info["units"] == "µm" and info["pixel_size_um"] == pytest.approx(0.5)
    np.testing.assert_allclose(data, viewer.layers["sample stack depth"].data)

    w.new_region_button.click()
    assert w.region_combo.currentText() == "rectangle in 'sample stack region'"
    w.measure_button.click()
    assert "rectangle" in w.params_label.text()
    assert (
        w.param_values["Sa"].text().endswith(" µm")
        and float(w.param_values["Sa"].text().split()[0]) > 0
    )
    choose(tmp_path / "params.csv")
    w.export_params_button.click()
    rows = list(csv.DictReader((tmp_path / "params.csv").open(encoding="utf-8")))
    assert [r["region"] for r in rows] == ["whole map", "rectangle in 'sample stack region'"]
    whole, rect = rows
    assert (
        int(rect["n_pixels"]) == pytest.approx(128 * 128, rel=0.05)
        and int(whole["n_pixels"]) == 256 * 256
    )
    for row in rows:
        assert float(row["Sz_µm"]) == pytest.approx(
            float(row["Sp_µm"]) + float(row["Sv_µm"]), rel=1e-4
        )
        assert 0 < float(row["Sa_µm"]) <= float(row["Sq_µm"])

    trimesh = pytest.importorskip("trimesh")  # the mesh library (a dependency of the plugin)
    for suffix in (".ply", ".stl", ".obj"):
        choose(tmp_path / f"mesh{suffix}")
        w.export_mesh_button.click()
        mesh = trimesh.load(tmp_path / f"mesh{suffix}", process=False, force="mesh")
        assert len(mesh.faces) == len(viewer.layers["sample stack surface"].data[1])


def test_network_runs_with_the_chosen_number_of_views(viewer, qtbot, sample):
    from napari_gplws.api import reconstruct
    from napari_gplws.models.registry import has_default_weights
    from napari_gplws.stack import FocalStack

    if not has_default_weights("gplws"):
        pytest.skip("the packaged GPLWS-Net weights are not installed")
    add_sample(viewer, sample)
    w = open_dock(viewer, qtbot)
    w.method_combo.setCurrentIndex(w.method_combo.findData("gplws"))
    w.device_combo.setCurrentText("cpu")
    w.advanced.setChecked(True)
    assert w.views.isEnabled() and w.views.currentData() == 1  # the default
    depths = {}
    for views in (1, 2):
        w.views.setCurrentIndex(w.views.findData(views))
        run(w, qtbot)
        depth = viewer.layers["sample stack depth"]
        assert depth.metadata["method"] == "gplws"
        depths[views] = np.asarray(depth.data).copy()
        stack = FocalStack(
            np.asarray(viewer.layers["sample stack"].data), focus_um=depth.metadata["focus_um"], pixel_size_um=0.5
        )
        ref = reconstruct(stack, method="gplws", device="cpu", tta=views).depth
        np.testing.assert_allclose(depths[views], ref, atol=1e-4)
    assert not np.allclose(depths[1], depths[2], atol=1e-3)  # the views setting really reached the core


def test_aligns_a_moving_stack_shows_it_and_leaves_a_still_one(viewer, qtbot):
    pytest.importorskip("cv2")
    from napari_gplws.sim.motion import moving_stack

    m = moving_stack(n_frames=12, shape=(256, 256), breathing=0.05, drift_px=(0.6, 0.3), seed=2)
    viewer.add_image(m.stack.frames, name="moving")
    w = open_dock(viewer, qtbot)
    assert w.align_combo.currentData() == "auto"  # the default
    w.show_aligned.setChecked(True)
    run(w, qtbot)
    aligned = viewer.layers["moving aligned"]
    assert aligned.data.shape == m.stack.frames.shape
    assert aligned.metadata["kind"] == "aligned stack" and not aligned.visible
    depth = viewer.layers["moving depth"]
    report = depth.metadata["alignment"]
    assert report["aligned"] is True and len(report["matrices"]) == 12
    assert "Frames aligned to frame 6" in w.status_label.text()
    # the middle frame is the reference: unchanged; the first one was moved
    np.testing.assert_array_equal(aligned.data[6], m.stack.frames[6])
    assert not np.array_equal(aligned.data[0], m.stack.frames[0])

    # Second run on the same layer with alignment off: the aligned layer goes away.
    w.align_combo.setCurrentIndex(w.align_combo.findData("off"))
    run(w, qtbot)
    assert "moving aligned" not in viewer.layers
    assert viewer.layers["moving depth"].metadata["alignment"] is None

    # A still stack under auto: used as it is, and the dock says so.
    viewer.add_image(m.still.frames, name="still")
    w.stack_combo.setCurrentIndex(w.stack_combo.findText("still"))
    w.align_combo.setCurrentIndex(w.align_combo.findData("auto"))
    run(w, qtbot)
    assert "still aligned" not in viewer.layers
    assert viewer.layers["still depth"].metadata["alignment"]["aligned"] is False
    assert "they do not move" in w.status_label.text()


def test_aligned_layer_added_by_a_later_run_does_not_hide_the_depth(viewer, qtbot):
    pytest.importorskip("cv2")
    from napari_gplws.sim.motion import moving_stack

    m = moving_stack(n_frames=12, shape=(256, 256), breathing=0.05, drift_px=(0.6, 0.3), seed=2)
    viewer.add_image(m.stack.frames, name="moving")
    w = open_dock(viewer, qtbot)
    w.align_combo.setCurrentIndex(w.align_combo.findData("off"))
    w.show_aligned.setChecked(True)
    run(w, qtbot)
    assert "moving aligned" not in viewer.layers
    w.align_combo.setCurrentIndex(w.align_combo.findData("auto"))
    run(w, qtbot)
    aligned = viewer.layers["moving aligned"]
    assert not aligned.visible and viewer.layers["moving depth"].visible
    assert viewer.layers["moving all-in-focus"].metadata["fusion"] == "pyramid"


def test_open_folder_by_pattern_leaves_the_mask_out(viewer, qtbot, tmp_path):
    import imageio.v3 as iio

    from napari_gplws.sim.focus_stacks import synthetic_stack

    s = synthetic_stack(n_frames=8, shape=(64, 64), seed=3).stack
    for k, f in enumerate(s.frames):
        iio.imwrite(tmp_path / f"im_{k:03d}.png", f)
    iio.imwrite(tmp_path / "mask.png", np.zeros((32, 32), np.uint8))  # another size
    w = open_dock(viewer, qtbot)
    # without a pattern: the frames by their naming scheme, and the dock says what it left out
    with qtbot.waitSignal(w.open_frames.opened, timeout=TIMEOUT_MS) as opened:
        w.open_frames.open_folder(str(tmp_path))
    assert viewer.layers[opened.args[0]].data.shape == (8, 64, 64)
    assert any("mask.png" in m for m in w.open_frames.messages)
    qtbot.waitUntil(lambda: w.open_frames.button.isEnabled(), timeout=TIMEOUT_MS)
    # with a pattern: only those frames, chosen as the dock's stack, ready to run
    viewer.layers.clear()
    w.open_frames.pattern.setText("im_00[0-5].png")
    with qtbot.waitSignal(w.open_frames.opened, timeout=TIMEOUT_MS) as opened:
        w.open_frames.open_folder(str(tmp_path))
    layer = viewer.layers[opened.args[0]]
    np.testing.assert_array_equal(layer.data, s.frames[:6])
    assert w.open_frames.messages == []
    assert w.stack_layer().name == layer.name  # (the viewer proxy wraps each access anew)
    # a pattern that matches nothing: a message, no layer
    w.open_frames.pattern.setText("nothing_*.png")
    qtbot.waitUntil(lambda: w.open_frames.button.isEnabled(), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(w.open_frames.failed, timeout=TIMEOUT_MS) as failed:
        w.open_frames.open_folder(str(tmp_path))
    assert "nothing_*.png" in failed.args[0] and len(viewer.layers) == 1
    run(w, qtbot)
    assert viewer.layers[f"{layer.name} depth"].data.shape == (64, 64)
