"""Focal error map dock: every region gets a value on ordinary frames, texts follow what the
heatmap shows, one plain line about the weights, no stale table or overlapping texts, and
closing the dock during a run cancels it. Driven through the dock's controls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
TIMEOUT_MS = 120_000
PX = 0.25  # the weights' own pixel size: nothing is resampled


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()

def pick(combo, name):
    """Choose a layer in a combo box as a person does (select the item)."""
    i = combo.findText(name)
    assert i >= 0, name
    combo.setCurrentIndex(i)
    combo.activated.emit(i)



def frame(size: int, seed: int = 0) -> np.ndarray:
    t = ndi.gaussian_filter(np.random.default_rng(seed).random((size, size)), 1.5)
    return np.clip((t - t.mean()) / t.std() * 40 + 128, 0, 255).astype(np.uint8)


def open_dock(viewer):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Focal error map")
    w.device_combo.setCurrentText("cpu")
    return w


def run(w, qtbot, outcome="done"):
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
    assert blocker.args == [outcome]
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=TIMEOUT_MS)


def texts(layer) -> list[str]:
    return [str(s) for s in layer.text.values]


@pytest.mark.parametrize("size", [192, 256, 400, 512])
def test_every_region_of_an_ordinary_frame_gets_a_value(viewer, qtbot, size):
    viewer.add_image(frame(size), name="field", scale=(PX, PX), metadata={"pixel_size_um": PX})
    w = open_dock(viewer)
    run(w, qtbot)
    shown = texts(viewer.layers["field defocus values"])
    assert len(shown) == 9 and not any("no estimate" in t for t in shown), shown
    assert np.isfinite(viewer.layers["field defocus map"].data).all()


def test_texts_follow_heatmap_shows_and_the_weights_note_is_one_plain_line(viewer, qtbot):
    viewer.add_image(frame(672), name="field", scale=(PX, PX), metadata={"pixel_size_um": PX})
    w = open_dock(viewer)
    note = w.weights_label.text()
    if note:  # the packaged card says the weights fall short of their target
        assert "\n" not in note and len(note) < 100 and "two frames" in note
        assert "LDSE-NET weights:" in w.weights_label.toolTip()
    run(w, qtbot)
    values = viewer.layers["field defocus values"]
    signed = texts(values)
    assert any(t.startswith(("+", "-")) for t in signed)
    w.show_combo.setCurrentIndex(w.show_combo.findData("magnitude"))
    unsigned = texts(values)
    assert all(t.startswith("|z| ") and "+" not in t and "-" not in t for t in unsigned), unsigned
    mags = viewer.layers["field defocus map"].data.ravel()
    assert [float(t.split()[1]) for t in unsigned] == pytest.approx(np.round(mags, 2), abs=0.006)
    w.show_combo.setCurrentIndex(w.show_combo.findData("predicted"))
    assert texts(values) == signed


def test_rmse_texts_do_not_overlap_the_defocus_texts(viewer, qtbot):
    viewer.add_image(frame(256), name="field", metadata={"pixel_size_um": PX}, scale=(PX, PX))
    w = open_dock(viewer)
    run(w, qtbot)
    rng = np.random.default_rng(2)
    for name in ("recon depth", "ground truth depth"):
        viewer.add_image(
            rng.random((64, 64)).astype(np.float32), name=name,
            metadata={"units": "µm", "kind": "depth"},
        )  # fmt: skip
    w.analysis_combo.setCurrentIndex(w.analysis_combo.findData("rmse"))
    pick(w.recon_combo, "recon depth")
    pick(w.truth_combo, "ground truth depth")
    run(w, qtbot)
    assert viewer.layers["recon depth RMSE values"].visible
    assert not viewer.layers["field defocus values"].visible
    assert not viewer.layers["field defocus map"].visible


def test_cancel_leaves_no_stale_table_and_closing_the_dock_cancels(viewer, qtbot):
    frames = np.stack([frame(672, seed=k) for k in range(12)])
    viewer.add_image(frames, name="stack", scale=(1.0, PX, PX), metadata={"pixel_size_um": PX})
    w = open_dock(viewer)
    w.frames_combo.setCurrentIndex(w.frames_combo.findData("current"))
    run(w, qtbot)
    assert w.summary_table.rowCount() == 1
    w.frames_combo.setCurrentIndex(w.frames_combo.findData("all"))
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
        qtbot.waitSignal(w.job.progressed, timeout=TIMEOUT_MS).wait()
        w.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert w.summary_table.rowCount() == 0 and "Cancelled" in w.overall_label.text()

    before = [ly.name for ly in viewer.layers]
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
        qtbot.waitSignal(w.job.progressed, timeout=TIMEOUT_MS).wait()
        viewer.window.remove_dock_widget(w)
    assert blocker.args == ["cancelled"]
    qtbot.wait(300)
    assert [ly.name for ly in viewer.layers] == before
