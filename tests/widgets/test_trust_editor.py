"""Ground truth editor: a wrong index scale is caught and a fitting one proposed, opening
the dataset again reloads cleanly, and guidance (with progress and Cancel) sends annotators
to confidently wrong labels, not to textureless areas. Driven through the dock's buttons."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


def write_sample(folder, depth_idx, texture, n=12, step=2.0, encode=100):
    """Frames 1.png … n.png of ``texture`` at depth ``depth_idx`` (frame index), a sidecar,
    and ``depth.png`` storing frame index × ``encode`` as 16-bit."""
    import imageio.v3 as iio

    from napari_gplws.training.gplws_data import render_stack

    folder.mkdir(parents=True)
    frames = render_stack(depth_idx, texture, n, blur_per_step=1.0)
    for k, f in enumerate(frames):
        iio.imwrite(folder / f"{k + 1}.png", (np.clip(f, 0, 1) * 255).astype(np.uint8))
    iio.imwrite(folder / "depth.png", np.rint(depth_idx * encode).astype(np.uint16))
    (folder / "focus.json").write_text(json.dumps({"focus_start_um": 0.0, "focus_step_um": step}))


def textured_dataset(root, size=64):
    from napari_gplws.training.gplws_data import render_texture

    rng = np.random.default_rng(4)
    _, xx = np.mgrid[:size, :size]
    for i in range(2):
        idx = (2.0 + 7.0 * xx / (size - 1)).astype(np.float32)
        write_sample(root / f"s{i + 1}", idx, render_texture(size, size, rng, 0.0))
    return root


def open_dock(viewer, root, scale_answer=True):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Ground truth editor")
    w.ask_restore = lambda msg: True
    w.asked: list[str] = []
    w.ask_scale = lambda msg: w.asked.append(msg) or scale_answer
    w.ask_save = lambda msg: True
    w.folder_edit.setText(str(root))
    w.open_button.click()
    return w


def test_a_wrong_index_scale_is_caught_and_a_fitting_one_proposed(viewer, tmp_path):
    root = textured_dataset(tmp_path / "data")
    w = open_dock(viewer, root)  # Index scale 1.0 on files of frame index × 100
    assert len(w.asked) == 1 and "index scale 0.01" in w.asked[0]
    assert w.gt_scale.value() == pytest.approx(0.01)
    gt = np.asarray(viewer.layers[f"{w.name} ground truth (µm)"].data)
    assert np.ptp(gt) > 10  # a slope over 7 frames of 2 µm, not one clamped value
    assert "⚠" not in w.info_label.text()

    # Declining the proposal keeps the scale but warns on the sample itself.
    viewer2_root = tmp_path / "copy"
    textured_dataset(viewer2_root)
    w.gt_scale.setValue(1.0)
    w.ask_scale = lambda msg: False
    w.folder_edit.setText(str(viewer2_root))
    w.open_button.click()
    assert "⚠" in w.info_label.text() and "index scale 0.01" in w.info_label.text()


def test_opening_the_dataset_again_reloads_cleanly(viewer, qtbot, tmp_path):
    root = textured_dataset(tmp_path / "data")
    w = open_dock(viewer, root)
    name = w.name
    data = np.asarray(w.layers["region"].data).copy()
    data[5:10, 5:10] = 1
    w.layers["region"].data = data
    w.value_spin.setValue(3.0)
    w.set_value_button.click()
    assert w.session.dirty
    w.open_button.click()  # again, e.g. after fixing the scale: asks, saves, reloads
    assert w.name == name and w.session is not None and not w.session.dirty
    assert w.sample_list.currentRow() == 0 and f"{name} ground truth (µm)" in viewer.layers
    gt = np.asarray(viewer.layers[f"{name} ground truth (µm)"].data)
    assert np.all(gt[5:10, 5:10] == np.float32(3.0))  # saved, then loaded again
    for button in (w.set_value_button, w.save_button, w.guidance_button):
        assert button.isEnabled()
    assert w.info_label.text().startswith(f"{name}:")


def test_guidance_ignores_textureless_areas_and_can_be_cancelled(viewer, qtbot, tmp_path):
    size = 96
    rng = np.random.default_rng(0)
    texture = np.full((size, size), 0.5)
    texture[:, :24] = rng.random((size, 24))  # texture on a quarter of the field only
    texture += rng.normal(0, 0.01, texture.shape)  # camera noise everywhere
    idx = np.full((size, size), 6.0, np.float32)  # the ground truth is exact
    write_sample(tmp_path / "data" / "flat", idx, texture, encode=1)
    w = open_dock(viewer, tmp_path / "data")
    w.model_combo.setCurrentIndex(w.model_combo.findData(""))
    with qtbot.waitSignal(w.guidance_done, timeout=TIMEOUT_MS) as blocker:
        w.guidance_button.click()
        assert w.guidance_cancel.isEnabled() and w.guidance_progress.isVisibleTo(w)
    assert blocker.args == ["done"]
    frac = w.session.suspect_fraction(w.threshold.value())
    assert frac < 0.05, frac
    assert "unknown" in w.info_label.text()
    assert not w.guidance_progress.isVisibleTo(w) and not w.guidance_cancel.isEnabled()

    # Cancel: a fresh sample, the prediction by a classical method, cancelled at once.
    w.session.curves = w.session.peak_um = None
    w.model_combo.setCurrentIndex(w.model_combo.findData("sml"))
    with qtbot.waitSignal(w.guidance_done, timeout=TIMEOUT_MS) as blocker:
        w.guidance_button.click()
        w.guidance_cancel.click()
    assert blocker.args == ["cancelled"] and "Cancelled" in w.info_label.text()
    assert w.guidance_button.isEnabled()
