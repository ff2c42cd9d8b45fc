"""The Weights box of the Focal error map dock, driven as a person would: choose calibrated
weights (their held-out figures are shown and the analysis uses them), go back to the
packaged ones, and calibrate from stacks: refused stacks give a plain message, Cancel stops
a running calibration and nothing is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.gui

TIMEOUT_MS = 180_000


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


def open_dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-gplws", "Focal error map")
    widget.device_combo.setCurrentText("cpu")
    return widget


def calibrated_file(tmp_path, flip_sign=False):
    """Packaged weights under another name with a calibration card; ``flip_sign`` negates
    the sign logit, so that every prediction made with them is the packaged one negated."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from napari_gplws.models.registry import WEIGHTS_DIR

    out = tmp_path / "my_scope.safetensors"
    if flip_sign:
        with safe_open(str(WEIGHTS_DIR / "ldse_default.safetensors"), "np") as f:
            names = f.keys()  # safe_open objects are not iterable
            tensors, meta = {k: f.get_tensor(k) for k in names}, f.metadata()
        for name in ("head.weight", "head.bias"):
            tensors[name][1] *= -1  # row 1: the sign logit
        save_file(tensors, str(out), metadata=meta)
    else:
        shutil.copy(WEIGHTS_DIR / "ldse_default.safetensors", out)
    card = {
        "name": "LDSE-NET calibrated: my_scope", "kind": "ldse-calibration",
        "base_weights": "ldse_default", "stacks": [{"source": "a"}, {"source": "b"}],
        "optics": {"pixel_size_um": 0.25},
        "held_out": {"split": "whole stacks", "stacks": 1, "tiles": 80,
                     "before": {"sign_acc_ge1": 0.61, "mae_le5": 1.9, "mag_mae_le5": 0.7},
                     "after": {"sign_acc_ge1": 0.93, "mae_le5": 0.45, "mag_mae_le5": 0.38}},
    }
    out.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    return out


def test_choosing_calibrated_weights_shows_their_figures_and_runs_with_them(
    viewer, qtbot, tmp_path, monkeypatch
):
    from qtpy.QtWidgets import QFileDialog

    def run_once():
        with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
            w.run_button.click()
        assert blocker.args == ["done"]
        return viewer.layers["field defocus map"], w.result.autofocus

    w = open_dock(viewer)
    panel = w.weights_panel
    assert "ldse_default" in panel.summary.text() and w.weights == "ldse_default"
    from scipy import ndimage as ndi

    t = ndi.gaussian_filter(np.random.default_rng(0).random((448, 448)), 2.0)  # a textured field
    field = np.clip((t - t.mean()) / t.std() * 40 + 128, 0, 255).astype(np.uint8)
    viewer.add_image(field, name="field", scale=(0.25, 0.25))
    w.reset_choices()
    _, packaged = run_once()

    path = calibrated_file(tmp_path, flip_sign=True)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    panel.combo.setCurrentIndex(panel.combo.findData("__choose__"))  # "Choose file…"
    assert w.weights == str(path)
    text = panel.summary.text()
    assert "my_scope: calibrated on 2 stacks" in text and "sign 0.93" in text and "0.45 µm" in text
    layer, calibrated = run_once()
    assert str(layer.metadata.get("weights")) == str(path)
    # The run used the chosen file: the same magnitudes, every direction reversed.
    assert np.isfinite(packaged.predicted_um).any()
    np.testing.assert_allclose(calibrated.magnitude_um, packaged.magnitude_um, rtol=1e-4)
    np.testing.assert_allclose(calibrated.predicted_um, -packaged.predicted_um, rtol=1e-4,
                               atol=1e-5)
    panel.combo.setCurrentIndex(panel.combo.findData("ldse_default"))  # back to the packaged
    assert w.weights == "ldse_default" and "my_scope" not in panel.summary.text()


def _tiny_stacks(tmp_path, n, half_um):
    import tifffile

    from napari_gplws.sim.instrument import instrument_simulator, instrument_stack

    sim = instrument_simulator("dry_into_mount", defocus_max_um=4.0)
    paths = []
    for k in range(n):
        s = instrument_stack(sim, np.random.default_rng([3, k]), n_frames=21,
                             half_range_um=half_um, centre_jitter_um=0.3, size_px=224)
        p = tmp_path / f"stack{k}.tif"
        tifffile.imwrite(p, s.stack.frames)
        paths.append(p)
    return paths


def test_calibrate_refuses_bad_stacks_then_cancels_a_run(viewer, qtbot, tmp_path, monkeypatch):
    import tifffile
    from qtpy.QtWidgets import QFileDialog

    w = open_dock(viewer)
    panel = w.weights_panel
    good = _tiny_stacks(tmp_path, 3, 3.5)
    top = tmp_path / "top.tif"
    tifffile.imwrite(top, tifffile.imread(good[0])[-5:])  # above focus only
    out = tmp_path / "scope.safetensors"
    chosen = {"stacks": [str(top), str(good[1])]}
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen["stacks"], ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    panel.focus_step.setValue(0.35)
    panel.minutes.setValue(2.0)
    with qtbot.waitSignal(panel.calibration_finished, timeout=TIMEOUT_MS) as blocker:
        panel.calibrate_button.click()
    assert blocker.args == ["error"]
    assert "pass through focus" in panel.status.text() and "top.tif" in panel.status.text()
    assert panel.calibrate_button.isEnabled() and not out.exists()

    chosen["stacks"] = [str(p) for p in good]  # second run: good stacks, then Cancel
    panel.calibrate_button.click()
    assert not panel.calibrate_button.isEnabled() and panel.cancel_button.isEnabled()
    # training has begun once the bar counts the time box (120 s, in hundredths)
    qtbot.waitUntil(lambda: panel.progress.maximum() >= 120 * 100, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(panel.calibration_finished, timeout=TIMEOUT_MS) as blocker:
        panel.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert "cancelled" in panel.status.text() and not out.exists()
    assert (tmp_path / "scope.calibration" / "calibrate.ckpt").is_file()  # resumable
    assert w.weights == "ldse_default"
