"""The Ground truth editor dock, driven through its buttons and the layer API under Xvfb.

Run: ``xvfb-run -a .venv/bin/python -m pytest tests/test_widgets_gt_editor.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from gplws_testdata import make_dataset

import napari_gplws.annotate as an

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


@pytest.fixture
def root(tmp_path):
    return make_dataset(tmp_path / "data", ("npy", "tiff32"))


def open_dock(viewer, root, asked=None):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Ground truth editor")
    w.ask_restore = lambda msg: (asked.append(msg) if asked is not None else None) or True
    w.folder_edit.setText(str(root))
    w.open_button.click()
    return w


def paint(w, y0, y1, x0, x1):
    """What a brush stroke on the region layer does to its data."""
    data = np.asarray(w.layers["region"].data).copy()
    data[y0:y1, x0:x1] = 1
    w.layers["region"].data = data


def test_paint_undo_save_next(viewer, qtbot, root):
    w = open_dock(viewer, root)
    name = w.dataset.names[0]
    assert w.name == name and f"{name} ground truth (µm)" in viewer.layers
    gt = viewer.layers[f"{name} ground truth (µm)"]
    original = np.asarray(gt.data).copy()
    assert gt.metadata["units"] == "µm"

    # paint a region, set a value
    paint(w, 2, 6, 3, 9)
    w.value_spin.setValue(15.5)
    with qtbot.waitSignal(w.changed, timeout=TIMEOUT_MS):
        w.set_value_button.click()
    assert np.all(np.asarray(gt.data)[2:6, 3:9] == np.float32(15.5))
    assert not np.asarray(w.layers["region"].data).any()  # the selection is cleared
    assert w.undo_button.isEnabled() and "in progress" in w.sample_list.item(0).text()

    # depth from the current frame
    viewer.dims.set_current_step(0, 4)
    paint(w, 10, 12, 10, 12)
    w.from_frame_button.click()
    assert np.all(np.asarray(gt.data)[10:12, 10:12] == np.float32(w.session.focus_um[4]))

    # polygon on the shapes layer, then smooth
    w.layers["polygons"].add_polygons([np.array([[14, 14], [14, 22], [20, 22], [20, 14]])])
    w.smooth_button.click()
    assert w.session.can_undo and len(w.session._undo) == 3

    # undo twice, redo once
    w.undo_button.click()
    w.undo_button.click()
    assert np.array_equal(np.asarray(gt.data)[10:12, 10:12], original[10:12, 10:12])
    w.redo_button.click()
    assert np.all(np.asarray(gt.data)[10:12, 10:12] == np.float32(w.session.focus_um[4]))

    # save writes the corrected map beside the original
    w.save_button.click()
    corrected = root / name / an.WORK_DIR / f"{w.session.sample.gt_path.stem}.corrected.tif"
    assert corrected.is_file() and not w.session.dirty

    # status and note reach the manifest
    w.status_combo.setCurrentText("reviewed")
    w.status_combo.activated.emit(w.status_combo.currentIndex())
    w.note_edit.setText("checked edges")
    w.note_edit.editingFinished.emit()
    manifest = json.loads((root / an.MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["samples"][name] == manifest["samples"][name] | {
        "status": "reviewed",
        "note": "checked edges",
    }
    assert w.counts_label.text().startswith("1/2 reviewed")

    # next sample replaces the layers
    with qtbot.waitSignal(w.sample_opened, timeout=TIMEOUT_MS):
        w.next_button.click()
    assert w.name == w.dataset.names[1]
    assert f"{name} ground truth (µm)" not in viewer.layers
    assert f"{w.name} ground truth (µm)" in viewer.layers


def test_unsaved_work_is_offered_back(viewer, qtbot, root):
    asked: list = []
    w = open_dock(viewer, root, asked)
    name = w.dataset.names[0]
    paint(w, 0, 4, 0, 4)
    w.value_spin.setValue(42.0)
    w.set_value_button.click()
    w.autosave()  # what the debounce timer does after a pause
    assert (root / name / an.WORK_DIR).is_dir()
    # leaving without saving keeps the work; coming back offers it
    w.next_button.click()
    w.prev_button.click()
    assert asked and name in asked[0]
    assert np.all(np.asarray(viewer.layers[f"{name} ground truth (µm)"].data)[0:4, 0:4] == 42.0)


def test_guidance_snap_and_next_suspect(viewer, qtbot, root):
    w = open_dock(viewer, root)
    w.model_combo.setCurrentIndex(w.model_combo.findData(""))
    assert not w.snap_button.isEnabled()
    with qtbot.waitSignal(w.guidance_done, timeout=TIMEOUT_MS) as blocker:
        w.guidance_button.click()
    assert blocker.args == ["done"]
    assert f"{w.name} focus peak (µm)" in viewer.layers and w.snap_button.isEnabled()
    paint(w, 4, 14, 4, 16)
    w.value_spin.setValue(float(w.session.focus_um[-1]) + 5)
    w.set_value_button.click()
    w.threshold.setValue(3.0)
    w.suspect_button.click()
    assert np.asarray(w.layers["region"].data)[8, 8] == 1
    assert viewer.camera.center[-2:] == pytest.approx((8.5, 9.5), abs=0.6)
    before = np.abs(w.session.depth - w.session.original)[4:14, 4:16].mean()
    w.snap_k.setValue(w.session.sample.stack.n_frames)
    w.snap_button.click()
    after = np.abs(w.session.depth - w.session.original)[4:14, 4:16].mean()
    assert after < before


def test_export_button_saves_and_writes_the_corrected_dataset(viewer, qtbot, root, tmp_path):
    w = open_dock(viewer, root)
    name = w.dataset.names[0]
    paint(w, 2, 6, 3, 9)
    w.value_spin.setValue(12.25)
    with qtbot.waitSignal(w.changed, timeout=TIMEOUT_MS):
        w.set_value_button.click()
    out = tmp_path / "exported"
    w.ask_export_folder = lambda: str(out)
    w.export_button.click()  # unsaved work is saved first, then exported in a worker
    qtbot.waitUntil(lambda: "Exported" in w.info_label.text(), timeout=TIMEOUT_MS)
    assert (out / name).is_dir() and (out / "export.json").is_file()
    exported = an.AnnotationDataset(out)
    session = exported.open(name)
    assert np.allclose(session.original[2:6, 3:9], 12.25, atol=0.01)  # corrections became the GT
    # the original dataset's ground truth is untouched
    original = an.AnnotationDataset(root).open(name)
    assert not np.allclose(original.original[2:6, 3:9], 12.25, atol=0.01)
