"""The Focal error map dock, driven as a person would: pick an image, set values, press Run,
wait for the layers, check them.

Run under Xvfb: ``xvfb-run -a .venv/bin/python -m pytest tests/test_focal_error_widget.py``.
The packaged LDSE-NET weights do the predictions (9 tiles of 224 px per 672×672 frame, a few
ms each on a CPU); the tests check the plumbing, geometry and text, not the accuracy.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

pytestmark = pytest.mark.gui

PLUGIN = "napari-gplws"
WIDGET = "Focal error map"
TIMEOUT_MS = 120_000
PX = 0.25  # µm per pixel: the weights' own pixel size, so nothing is resampled
FOCUS_UM = np.arange(5, dtype=float)  # 0 … 4 µm
BEST_UM = 2.0


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


def texture(shape=(672, 672), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.random(shape), 2.0)
    return (t - t.mean()) / t.std()


def as_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 40 + 128, 0, 255).astype(np.uint8)


def focus_stack(n_frames=5, shape=(672, 672)) -> tuple[np.ndarray, np.ndarray]:
    """Frames of one textured field, sharpest at BEST_UM, blurred with the distance from it."""
    focus = np.arange(n_frames, dtype=float) * (FOCUS_UM[1] - FOCUS_UM[0])
    base = texture(shape)
    frames = np.stack(
        [as_uint8(ndi.gaussian_filter(base, 0.3 + 1.2 * abs(z - BEST_UM))) for z in focus]
    )
    return frames, focus


def open_dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.device_combo.setCurrentText("cpu")
    return widget


def run(widget, qtbot, outcome="done"):
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    assert blocker.args == [outcome]
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=TIMEOUT_MS)


def errors_shown():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR
    ]


def read_csv(path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def texts(points_layer) -> list[str]:
    return [str(s) for s in points_layer.text.values]


def cell_of(heatmap, image, pixel) -> tuple[int, ...]:
    """The heatmap cell drawn over an image pixel (napari: cell k spans [k − ½, k + ½))."""
    world = image.data_to_world(pixel)
    return tuple(int(np.floor(c + 0.5)) for c in heatmap.world_to_data(world))


def region_of(p: int, length: int, n: int) -> int:
    """Region index of pixel p along an axis, as the core cuts regions."""
    bounds = np.linspace(0, length, n + 1).round().astype(int)
    return int(np.searchsorted(bounds, p, side="right") - 1)


# ------------------------------------------------------------------------------------------
# Geometry, without a viewer
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "grid"), [((500, 700), (3, 3)), ((672, 672), (3, 3)), ((97, 51), (5, 3))]
)
def test_each_cell_covers_exactly_its_region(shape, grid):
    from napari.layers import Image

    from napari_gplws.widgets._focal_error_view import grid_geometry

    scale_yx, translate_yx = (0.5, 0.25), (3.0, -7.0)
    image = Image(np.zeros(shape), scale=scale_yx, translate=translate_yx)
    scale, translate = grid_geometry(shape, grid, scale_yx, translate_yx)
    heat = Image(np.zeros(grid), scale=scale, translate=translate)
    for p in range(shape[0]):
        assert cell_of(heat, image, (p, 0))[0] == region_of(p, shape[0], grid[0])
    for q in range(shape[1]):
        assert cell_of(heat, image, (0, q))[1] == region_of(q, shape[1], grid[1])
    # The outer edges coincide: the heatmap covers the image, no more.
    for corner in (-0.5, 0.5):
        image_edge = image.data_to_world(np.array(shape) * (corner > 0) - 0.5)
        heat_edge = heat.data_to_world(np.array(grid) * (corner > 0) - 0.5)
        np.testing.assert_allclose(heat_edge, image_edge, atol=1e-9)


# ------------------------------------------------------------------------------------------
# One frame
# ------------------------------------------------------------------------------------------
def test_single_frame_heatmap_text_and_blank_regions(viewer, qtbot):
    frame = as_uint8(texture())
    frame[:, :224] = 128  # the left third is blank: every tile there is rejected
    image = viewer.add_image(frame, name="field", scale=(PX, PX), translate=(10.0, 20.0))
    w = open_dock(viewer)
    assert w.image_combo.currentText() == "field"
    assert not w.frames_combo.isEnabled() and not w.focus_mode.isEnabled()
    assert w.pixel_size.value() == pytest.approx(PX)

    w.run_button.click()
    assert not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: "field defocus values" in viewer.layers, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=TIMEOUT_MS)
    assert not w.cancel_button.isEnabled()

    heat = viewer.layers["field defocus map"]
    values = viewer.layers["field defocus values"]
    assert heat.data.shape == (3, 3)
    # Blank regions: NaN (transparent), not 0; the others have an estimate.
    assert np.isnan(heat.data[:, 0]).all() and np.isfinite(heat.data[:, 1:]).all()
    # Diverging map centred on 0 with symmetric limits of at least ±1 µm.
    lo, hi = heat.contrast_limits
    assert lo == pytest.approx(-hi) and hi >= 1.0
    assert hi == pytest.approx(max(1.0, np.nanmax(np.abs(heat.data))), rel=1e-5)
    assert heat.colormap.name == "RdBu_r" and 0 < heat.opacity < 1
    assert heat.metadata["units"] == "µm" and heat.metadata["weights"] == "ldse_default"
    # Each cell lies over the 224×224 block of pixels of its region.
    for i in range(3):
        for j in range(3):
            for dy, dx in ((0, 0), (223, 223), (111, 5)):
                assert cell_of(heat, image, (224 * i + dy, 224 * j + dx)) == (i, j)
    # One text per region, at its centre, reading the value in µm.
    # A "?" follows a value whose direction the network is unsure of.
    labels = texts(values)
    assert len(values.data) == 9
    confidence = w.result.autofocus.direction_confidence[0]
    for (i, j), label in zip(values.data.astype(int), labels):
        v = heat.data[i, j]
        unsure = " ?" if np.isfinite(v) and confidence[i, j] < 0.5 else ""
        assert label == (
            "no estimate"
            if np.isnan(v)
            else (f"{v:+.2f} µm" if abs(v) >= 0.005 else "0.00 µm") + unsure
        )
        centre = values.data_to_world((i, j))
        np.testing.assert_allclose(
            image.world_to_data(centre), (224 * i + 111.5, 224 * j + 111.5), atol=1e-6
        )
    assert labels[0] == labels[3] == labels[6] == "no estimate"
    # The summary says there is no truth for a single frame; the heatmap shows predictions only.
    assert "predicted defocus only" in w.overall_label.text()
    assert w.summary_table.rowCount() == 1
    assert w.summary_table.item(0, 4).text() == "6/9"
    enabled = {
        w.show_combo.itemData(i)
        for i in range(w.show_combo.count())
        if w.show_combo.model().item(i).isEnabled()
    }
    assert enabled == {"predicted", "magnitude"}
    assert "3 of 9 tiles rejected as blank" in w.status_label.text()
    # Text colours are chosen to read over the region (mid-grey blank regions: either works).
    assert set(values.features["text_colour"]) <= {"black", "white"}


def test_stride_box_offers_exactly_the_strides_autofocus_accepts(viewer, qtbot):
    from napari_gplws.defocus import TILE_PX, autofocus
    from napari_gplws.errors import StackError

    w = open_dock(viewer)
    lo, hi = w.stride.minimum(), w.stride.maximum()
    assert w.stride.value() == TILE_PX and "no overlap" in w.stride.toolTip()
    assert (lo, hi) == (16, 4096) and str(lo) in w.stride.toolTip()
    frame = as_uint8(texture((224, 224)))
    for bad in (lo - 1, hi + 1):  # one step outside the box: refused by the API too
        with pytest.raises(StackError, match="stride"):
            autofocus(frame, stride=bad, device="cpu")
    w.stride.setValue(lo - 1)  # typing below the range is clamped
    assert w.stride.value() == lo
    viewer.add_image(frame, name="field", scale=(PX, PX))
    w.reset_choices()
    before = len(errors_shown())  # napari keeps earlier tests' notifications
    run(w, qtbot)  # the smallest stride the box offers runs
    assert w.result.autofocus.stride == lo
    assert errors_shown()[before:] == []


def test_region_text_marks_an_unsure_direction():
    from napari_gplws.widgets._focal_error_view import region_text

    assert region_text(2.314) == "+2.31 µm"
    assert region_text(2.314, direction_sure=False) == "+2.31 µm ?"
    assert region_text(float("nan"), direction_sure=False) == "no estimate"
    lines = region_text(-1.0, 0.5, -1.5, has_truth=True, direction_sure=False).splitlines()
    assert lines == ["pred -1.00 µm ?", "true +0.50 µm", "error -1.50 µm"]


def test_text_colour_contrasts_with_what_is_under_it():
    from napari_gplws.widgets._focal_error_view import text_colours

    values = np.array([0.0, np.nan, np.nan, -3.0, 3.0])
    backdrop = np.array([0.0, 0.0, 1.0, 0.5, 0.5])
    colours = text_colours(values, "RdBu_r", (-3.0, 3.0), 0.5, backdrop)
    # 0 µm (near-white) at half opacity over black is a dark grey; NaN cells show the image
    # itself; the saturated ends of RdBu_r darken a mid-grey image.
    assert colours == ["white", "white", "black", "white", "white"]
    over_white = text_colours(values[3:], "RdBu_r", (-3.0, 3.0), 0.5, np.ones(2))
    assert over_white == ["black", "black"]
    assert text_colours(np.array([0.0]), "RdBu_r", (-3.0, 3.0), 0.9, np.zeros(1)) == ["black"]


def test_weights_status_is_shown_as_a_warning(viewer, tmp_path):
    from napari_gplws.models.registry import model_card

    w = open_dock(viewer)
    status = model_card("ldse_default").get("status")
    if status:  # one plain line; the card's words behind it, in the tooltip
        assert not w.weights_label.isHidden() and status in w.weights_label.toolTip()
        assert "\n" not in w.weights_label.text()
    card = tmp_path / "mine.json"
    card.write_text(json.dumps({"status": "sign not learnt yet"}), encoding="utf-8")
    w.weights = tmp_path / "mine.safetensors"
    assert w.weights_label.toolTip().startswith("LDSE-NET weights: sign not learnt yet")
    (tmp_path / "plain.json").write_text("{}", encoding="utf-8")
    w.weights = tmp_path / "plain.safetensors"
    assert w.weights_label.isHidden()


def test_focus_picker_offers_what_the_layer_knows(qtbot):
    from napari.layers import Image
    from qtpy.QtWidgets import QFormLayout, QWidget

    from napari_gplws.errors import FocusPositionError
    from napari_gplws.widgets._focus_picker import FocusPicker

    host = QWidget()
    qtbot.addWidget(host)
    picker = FocusPicker("unknown: no positions", host)
    form = QFormLayout(host)
    picker.add_rows(form)
    assert form.rowCount() == 2
    frames = np.zeros((3, 8, 8))
    with_focus = Image(frames, metadata={"focus_um": [10.0, 12.0, 14.0]})
    picker.set_layer(with_focus)
    assert picker.current() == "metadata" and picker.mode.count() == 3
    assert picker.mode.currentText() == "from layer (3 positions, 10 … 14 µm)"
    assert (picker.start.value(), picker.step.value()) == (10.0, 2.0)
    np.testing.assert_array_equal(picker.positions(with_focus, 3), [10.0, 12.0, 14.0])

    scaled = Image(frames, scale=(0.5, 1, 1), translate=(3.0, 0, 0))
    picker.set_layer(scaled)
    assert picker.current() == "start_step" and picker.mode.count() == 2
    np.testing.assert_array_equal(picker.positions(scaled, 3), [3.0, 3.5, 4.0])

    picker.set_layer(None)  # not a stack: start + step or unknown, nothing from a layer
    assert picker.current() == "unknown" and picker.positions(None, 3) is None
    picker.set_enabled(True)
    assert picker.mode.isEnabled() and not picker.start.isEnabled()
    with qtbot.waitSignal(picker.changed):
        picker.step.setValue(0.0)  # typing a step means: use start + step
    assert picker.current() == "start_step"
    picker.set_enabled(True)
    assert picker.start.isEnabled() and picker.step.isEnabled()
    with pytest.raises(FocusPositionError):
        picker.positions(None, 3)  # a zero step gives no positions
    picker.set_enabled(False)
    assert not any(w.isEnabled() for w in picker.widgets)


# ------------------------------------------------------------------------------------------
# Stacks
# ------------------------------------------------------------------------------------------
def add_stack(viewer, frames, focus, name="z-scan"):
    step = float(focus[1] - focus[0])
    return viewer.add_image(
        frames, name=name, scale=(step, PX, PX), translate=(float(focus[0]), 0.0, 0.0),
        metadata={"focus_um": focus.tolist(), "pixel_size_um": PX, "units": "µm"},
    )  # fmt: skip


def test_stack_gives_true_defocus_error_and_a_summary(viewer, qtbot, tmp_path, monkeypatch):
    frames, focus = focus_stack()
    stack = add_stack(viewer, frames, focus)
    w = open_dock(viewer)
    assert w.focus_mode.currentText().startswith("from layer (5 positions")
    assert w.frames_combo.isEnabled() and w.frames_combo.currentData() == "all"
    run(w, qtbot)

    heat = viewer.layers["z-scan defocus map"]
    values = viewer.layers["z-scan defocus values"]
    res = w.result.autofocus
    assert heat.data.shape == (5, 3, 3)
    # Same leading axis as the stack, so the heatmap follows the z slider.
    assert heat.scale[0] == pytest.approx(stack.scale[0])
    assert heat.translate[0] == pytest.approx(stack.translate[0])
    np.testing.assert_allclose(heat.data, res.predicted_um, rtol=1e-6)
    # True defocus from the stack: frame position − best focus (BEST_UM everywhere).
    np.testing.assert_allclose(
        res.true_um, (focus - BEST_UM)[:, None, None] * np.ones((1, 3, 3)), atol=0.35
    )
    np.testing.assert_allclose(res.error_um, res.predicted_um - res.true_um)
    # One text per frame and region; the frame coordinate keeps it on its slice.
    assert len(values.data) == 5 * 9 and values.ndim == 3
    assert sorted({int(k) for k in values.data[:, 0]}) == list(range(5))
    first = texts(values)[0].splitlines()
    assert (
        first[0].startswith("pred ")
        and first[1].startswith("true ")
        and first[2].startswith("error ")
    )
    assert first[1] == f"true {res.true_um[0, 0, 0]:+.2f} µm"
    # Summary: one row per frame and the overall mean |error|.
    assert w.summary_table.rowCount() == 5
    per_frame = [float(w.summary_table.item(r, 3).text()) for r in range(5)]
    np.testing.assert_allclose(per_frame, np.nanmean(np.abs(res.error_um), axis=(1, 2)), atol=0.006)
    mae = np.nanmean(np.abs(res.error_um))
    assert f"Mean |error| over 5 frame(s): {mae:.2f} µm" in w.overall_label.text()

    # "Heatmap shows" switches the same layer between predicted, true and error.
    w.show_combo.setCurrentIndex(w.show_combo.findData("error"))
    np.testing.assert_allclose(heat.data, res.error_um, rtol=1e-6)
    assert heat.metadata["shows"] == "error" and heat.colormap.name == "RdBu_r"
    w.show_combo.setCurrentIndex(w.show_combo.findData("true"))
    np.testing.assert_allclose(heat.data, res.true_um, rtol=1e-6)
    lo, hi = heat.contrast_limits
    assert lo == pytest.approx(-hi) and hi == pytest.approx(
        np.nanmax(np.abs(res.true_um)), rel=1e-5
    )

    # Exports: CSV and JSON through the file dialog; an existing file is kept as a backup.
    from qtpy.QtWidgets import QFileDialog

    out = tmp_path / "regions.csv"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    w.export_csv_button.click()
    rows = read_csv(out)
    assert len(rows) == 5 * 9 and {"predicted_um", "true_um", "error_um"} <= set(rows[0])
    out.write_text("my notes", encoding="utf-8")
    w.export_csv_button.click()
    backups = list(tmp_path.glob("regions.backup-*.csv"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == "my notes"
    assert len(read_csv(out)) == 45
    assert "kept as regions.backup-" in w.status_label.text()
    js = tmp_path / "result"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(js), "")))
    w.export_json_button.click()
    data = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert data["units"] == "µm" and len(data["error_um"]) == 5


def test_current_frame_follows_the_z_slider(viewer, qtbot):
    frames, focus = focus_stack()
    add_stack(viewer, frames, focus)
    w = open_dock(viewer)
    w.frames_combo.setCurrentIndex(w.frames_combo.findData("current"))
    viewer.dims.set_current_step(0, 3)
    assert w.frames_combo.currentText() == "current frame (3, z slider)"
    run(w, qtbot)
    heat = viewer.layers["z-scan defocus map"]
    values = viewer.layers["z-scan defocus values"]
    assert heat.data.shape == (5, 3, 3)
    assert np.isfinite(heat.data[3]).all()
    assert np.isnan(np.delete(heat.data, 3, axis=0)).all()
    assert len(values.data) == 9 and (values.data[:, 0] == 3).all()
    assert w.summary_table.rowCount() == 1 and w.summary_table.item(0, 0).text() == "3"
    # The truth still comes from the whole stack: frame 3 is 1 µm above best focus.
    np.testing.assert_allclose(w.result.autofocus.true_um[0], 3.0 - BEST_UM, atol=0.35)


def test_two_frames_combined_take_the_direction_from_their_positions(viewer, qtbot, monkeypatch):
    """Two frames 4 µm apart, both below focus. A stand-in network knows how far each
    region is but points the wrong way; 'direction from their positions' must still show
    the right signed defocus, and say where the direction came from."""
    import napari_gplws.defocus.analyse as af

    frames, _ = focus_stack(n_frames=2)
    focus = np.array([0.0, 4.0])
    best = 7.0  # 7 and 3 µm from focus: both frames on the same side
    add_stack(viewer, frames, focus, name="pair")
    calls = {"n": 0}

    def fake_predict(tiles, **kw):
        z = focus[calls["n"] % 2] - best
        calls["n"] += 1
        mag = np.full(len(tiles), abs(z), np.float32)
        return -0.4 * np.sign(z) * mag, mag

    monkeypatch.setattr(af, "predict_defocus", fake_predict)
    w = open_dock(viewer)
    w.frames_combo.setCurrentIndex(w.frames_combo.findData("combined"))
    run(w, qtbot)
    res = w.result.autofocus
    assert res.combined and w.result.metadata["combined_frames"] is True
    np.testing.assert_allclose(
        res.predicted_um, (focus - best)[:, None, None] * np.ones((1, 3, 3)), atol=1e-4
    )
    np.testing.assert_allclose(
        res.single_frame_um, 0.4 * (best - focus)[:, None, None] * np.ones((1, 3, 3)), atol=1e-4
    )
    shown = texts(viewer.layers["pair defocus values"])
    assert shown[0] == "-7.00 µm"  # no "true –" lines: two frames cannot give the truth

    # Without focus positions there is nothing to combine: a message, not a crash.
    w.focus_mode.setCurrentIndex(w.focus_mode.findData("unknown"))
    w.run_button.click()
    assert any("needs their focus positions" in m for m in errors_shown())


def test_cancel_midway_leaves_no_layers(viewer, qtbot):
    frames, focus = focus_stack(n_frames=40)
    add_stack(viewer, frames, focus)
    w = open_dock(viewer)
    before = [ly.name for ly in viewer.layers]
    w.run_button.click()
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        qtbot.waitSignal(w.job.progressed, timeout=TIMEOUT_MS).wait()
        w.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert [ly.name for ly in viewer.layers] == before
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()
    assert "Cancelled" in w.status_label.text()
    assert w.result is None and not w.export_csv_button.isEnabled()


def test_bad_input_gives_a_notification_not_a_crash(viewer, qtbot):
    frames = focus_stack(n_frames=3, shape=(240, 240))[0].astype(np.float32) / 255
    frames[1, 5, 5] = np.nan
    viewer.add_image(frames, name="broken")
    w = open_dock(viewer)
    n_before = len(errors_shown())
    run(w, qtbot, outcome="error")
    new = errors_shown()[n_before:]
    assert len(new) == 1 and "NaN" in new[0] and "broken" in new[0]
    assert [ly.name for ly in viewer.layers] == ["broken"]
    assert w.run_button.isEnabled() and w.status_label.text() == new[0]  # no stale line

    # A zero focus step is refused before anything runs.
    w.focus_step.setValue(0.0)
    assert w.focus_mode.currentData() == "start_step"
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
    assert blocker.args == ["error"] and "non-zero" in errors_shown()[-1]


def test_rerun_replaces_only_its_own_layers(viewer, qtbot):
    viewer.add_image(as_uint8(texture((448, 672))), name="field", scale=(PX, PX))
    notes = viewer.add_image(np.zeros((8, 8)), name="my own layer")
    w = open_dock(viewer)
    run(w, qtbot)
    first = {ly.name: ly.unique_id for ly in viewer.layers}
    assert set(first) == {"field", "my own layer", "field defocus map", "field defocus values"}
    assert w.image_combo.count() == 2  # its own heatmap is never offered as an input
    w.grid_rows.setValue(2)
    w.grid_cols.setValue(4)
    run(w, qtbot)
    assert sorted(ly.name for ly in viewer.layers) == sorted(first)  # no "[1]" duplicates
    for name in ("field defocus map", "field defocus values"):
        assert viewer.layers[name].unique_id != first[name]
    assert viewer.layers["field defocus map"].data.shape == (2, 4)
    assert viewer.layers["my own layer"].unique_id == notes.unique_id == first["my own layer"]
    assert viewer.layers["field"].unique_id == first["field"]


# ------------------------------------------------------------------------------------------
# Reconstruction vs ground truth
# ------------------------------------------------------------------------------------------
def test_rmse_against_ground_truth(viewer, qtbot):
    from napari_gplws.defocus import region_bounds

    shape = (60, 90)
    truth = np.full(shape, 5.0, np.float32)
    offsets = np.array([[0.0, 0.5, -1.0], [2.0, 0.0, 0.25], [-3.0, 1.5, 0.0]])
    recon = truth.copy()
    for i, row in enumerate(region_bounds(shape, (3, 3))):
        for j, (y0, y1, x0, x1) in enumerate(row):
            recon[y0:y1, x0:x1] += offsets[i, j]
    truth[40:60, 60:90] = np.nan  # region (2, 2) has no ground truth
    recon[0:5, 0:5] = np.nan  # ignored
    meta = {"units": "µm", "kind": "depth"}
    viewer.add_image(truth, name="truth depth", scale=(0.5, 0.5), metadata=meta)
    viewer.add_image(
        recon, name="reconstruction", scale=(0.5, 0.5), translate=(0, 0), metadata=meta
    )
    w = open_dock(viewer)
    item = w.analysis_combo.model().item(w.analysis_combo.findData("rmse"))
    assert item.isEnabled()
    w.analysis_combo.setCurrentIndex(w.analysis_combo.findData("rmse"))
    assert w.rmse_panel.isVisibleTo(w) and not w.defocus_panel.isVisibleTo(w)
    assert w.truth_combo.currentText() == "truth depth"
    assert w.recon_combo.currentText() == "reconstruction"
    run(w, qtbot)
    heat = viewer.layers["reconstruction RMSE map"]
    expected = np.abs(offsets)
    expected[2, 2] = np.nan
    np.testing.assert_allclose(heat.data, expected, atol=1e-6)
    assert heat.metadata["units"] == "µm" and heat.metadata["ground_truth"] == "truth depth"
    assert heat.contrast_limits[0] == 0.0 and heat.contrast_limits[1] == pytest.approx(3.0)
    labels = texts(viewer.layers["reconstruction RMSE values"])
    assert labels[:4] == ["0.00 µm", "0.50 µm", "1.00 µm", "2.00 µm"] and labels[8] == "no data"
    assert "Overall RMSE" in w.overall_label.text()
    assert not w.export_csv_button.isEnabled()  # the CSV/JSON exports are for defocus tables

    # Maps of different sizes: a clear message, no layer.
    viewer.add_image(np.zeros((30, 30), np.float32), name="small truth", metadata=meta)
    w.truth_combo.setCurrentIndex(w.truth_combo.findText("small truth"))
    n_before = len(errors_shown())
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
    assert blocker.args == ["error"]
    new = errors_shown()[n_before:]
    assert len(new) == 1 and "60×90" in new[0] and "30×30" in new[0]
