"""What the Focal error map shows, checked without a display: geometry, texts, colours,
limits, summary texts and the layers built from a result (no viewer, no Qt widget)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_gplws.defocus import AutofocusResult
from napari_gplws.widgets import _focal_error_view as view


def make_result(*, truth: bool = True, frames=(0, 2), grid=(2, 2)) -> AutofocusResult:
    """A hand-made autofocus result of a 3-frame stack, frames ``frames`` analysed."""
    n = len(frames)
    pred = np.array([[[1.004, -3.0], [np.nan, 0.5]], [[0.001, 2.0], [-0.25, np.nan]]])[:n]
    mag = np.abs(np.nan_to_num(pred)) * 2  # confidence |pred|/mag = 0.5: sure
    mag[0, 0, 1] = 10.0  # confidence 0.3: unsure of the direction
    true = np.zeros_like(pred) if truth else None
    if truth:
        true[0, 0, 0] = np.nan
    return AutofocusResult(
        frames=np.array(frames), focus_um=np.array([0.0, 4.0, 8.0])[list(frames)],
        predicted_um=pred, spread_um=np.zeros_like(pred), n_tiles=np.ones(pred.shape, int),
        true_um=true, error_um=None if true is None else pred - true,
        best_focus_um=np.zeros(grid) if truth else None, tile_origins=np.zeros((9, 2)),
        tile_region=np.zeros((9, 2)), tile_defocus_um=np.zeros((n, 9)),
        tile_content=np.ones((n, 9)), grid=grid, tile_px=224, stride=224, shape_yx=(448, 448),
        magnitude_um=mag, timings={"total_s": 1.234},
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Geometry, text, colours
# ------------------------------------------------------------------------------------------
def test_grid_geometry_centres_cells_on_their_regions():
    scale, translate = view.grid_geometry((300, 400), (3, 4))
    assert scale == (100.0, 100.0)
    assert translate == (49.5, 49.5)  # cell 0 centred on pixel 49.5: covers [−0.5, 99.5)
    scale, translate = view.grid_geometry((300, 400), (3, 4), (0.5, 2.0), (10.0, -4.0))
    assert scale == (50.0, 200.0)
    assert translate == (10.0 + 0.5 * 49.5, -4.0 + 2.0 * 49.5)


def test_region_text_reads_values_in_micrometres():
    assert view.signed_text(0.004) == "0.00 µm" and view.signed_text(-0.004) == "0.00 µm"
    assert view.signed_text(-1.236) == "-1.24 µm"
    assert view.region_text(np.nan) == "no estimate"
    assert view.region_text(0.5, 1.0, -0.5, has_truth=True) == (
        "pred +0.50 µm\ntrue +1.00 µm\nerror -0.50 µm"
    )
    assert view.region_text(np.nan, None, np.nan, has_truth=True) == "no estimate\ntrue –\nerror –"


def test_colour_limits():
    assert view.symmetric_limits(np.array([0.2, -0.3, np.nan])) == (-1.0, 1.0)  # the minimum
    assert view.symmetric_limits(np.array([0.2, -3.5, np.nan])) == (-3.5, 3.5)
    assert view.symmetric_limits(np.array([np.nan])) == (-1.0, 1.0)
    assert view.positive_limits(np.array([0.5, 2.5, np.nan])) == (0.0, 2.5)
    assert view.positive_limits(np.array([np.nan])) == (0.0, 1e-6)
    assert view.heatmap_look(np.array([2.0, -1.0]), "error") == {
        "colormap": "RdBu_r", "contrast_limits": (-2.0, 2.0)
    }  # fmt: skip
    assert view.heatmap_look(np.array([2.0, 0.5]), "magnitude") == {
        "colormap": "magma", "contrast_limits": (0.0, 2.0)
    }  # fmt: skip


def test_region_luminance_is_mean_displayed_brightness_per_region():
    frames = np.zeros((2, 4, 6), np.float64)
    frames[1, :2, :3] = 100.0  # frame 1, region (0, 0) bright
    frames[1, 2:, 3:] = 50.0
    lum = view.region_luminance(frames, np.array([1]), (2, 2), (0.0, 100.0))
    np.testing.assert_allclose(lum, [[[1.0, 0.0], [0.0, 0.5]]])
    # Contrast limits are applied and the result clipped to [0, 1]; RGB is reduced to luma.
    lum = view.region_luminance(frames, np.array([1]), (2, 2), (50.0, 75.0))
    np.testing.assert_allclose(lum, [[[1.0, 0.0], [0.0, 0.0]]])
    rgb = np.zeros((1, 2, 2, 3))
    rgb[..., 1] = 1.0  # pure green
    np.testing.assert_allclose(view.region_luminance(rgb, [0], (1, 1), (0, 1)), [[[0.7152]]])
    from napari_gplws.evaluation.metrics import MetricError

    with pytest.raises(MetricError, match="does not fit"):  # more regions than pixels
        view.region_luminance(frames, np.array([0]), (5, 2), (0.0, 1.0))


def test_weights_status_and_warning(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps({"status": "not trained"}), "utf-8")
    (tmp_path / "plain.json").write_text("{}", "utf-8")
    assert view.weights_status(tmp_path / "mine.safetensors") == "not trained"
    assert view.weights_status(tmp_path / "plain.safetensors") is None
    assert view.weights_status(tmp_path / "missing.safetensors") is None
    # One plain line in the dock; the card's own words go in its tooltip.
    line = view.weights_warning("not trained")
    assert "\n" not in line and "two frames" in line and "not trained" not in line
    assert "LDSE-NET weights: not trained" in view.weights_details("not trained")
    assert view.weights_warning(None) == "" == view.weights_details(None)


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------
def test_defocus_products_fill_the_analysed_frames_of_a_stack():
    res = make_result()
    grids, points, texts, scale, translate = view.defocus_products(
        res, n_frames=3, shape_yx=(448, 448), scale_yx=(0.5, 0.5), translate_yx=(0.0, 0.0),
        stack_scale=4.0, stack_translate=0.0,
    )  # fmt: skip
    assert set(grids) == {"predicted", "magnitude", "true", "error"}
    assert grids["predicted"].shape == (3, 2, 2) and grids["predicted"].dtype == np.float32
    assert np.isnan(grids["predicted"][1]).all()  # frame 1 was not analysed
    np.testing.assert_array_equal(grids["predicted"][2], np.float32(res.predicted_um[1]))
    assert points.shape == (8, 3) and points[4].tolist() == [2.0, 0.0, 0.0]
    assert scale == (4.0, 112.0, 112.0) and translate == (0.0, 55.75, 55.75)
    assert texts[0] == "pred +1.00 µm\ntrue –\nerror –"  # no truth in that region
    assert texts[1] == "pred -3.00 µm ?\ntrue 0.00 µm\nerror -3.00 µm"  # unsure direction
    assert texts[2] == "no estimate\ntrue 0.00 µm\nerror –"


def test_defocus_products_of_one_frame_without_truth():
    res = make_result(truth=False, frames=(0,))
    grids, points, texts, scale, translate = view.defocus_products(
        res, n_frames=None, shape_yx=(448, 448), scale_yx=(1.0, 1.0), translate_yx=(0.0, 0.0)
    )
    assert set(grids) == {"predicted", "magnitude"} and grids["predicted"].shape == (2, 2)
    assert points.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert texts == ["+1.00 µm", "-3.00 µm ?", "no estimate", "+0.50 µm"]
    assert scale == (224.0, 224.0) and translate == (111.5, 111.5)


def test_defocus_map_result_carries_metadata_rows_and_backdrop():
    res = make_result()
    frames = np.zeros((3, 448, 448), np.uint8)
    frames[2] = 255
    out = view.defocus_map_result(
        res, frames, name="z-scan", n_frames=3, shape_yx=(448, 448), scale_yx=(1.0, 1.0),
        translate_yx=(0.0, 0.0), contrast_limits=(0.0, 255.0), weights="ldse_default",
        weights_status="below target", device="cpu", pixel_size_um=0.25,
    )  # fmt: skip
    assert out.analysis == view.ANALYSIS_DEFOCUS and out.key == out.input_name == "z-scan"
    assert out.metadata["weights_status"] == "below target"
    assert out.metadata["frames"] == [0, 2] and out.metadata["focus_um"] == [0.0, 8.0]
    assert out.metadata["seconds"] == 1.234 and out.metadata["combined_frames"] is False
    assert [r["frame"] for r in out.frame_rows] == [0, 2]
    np.testing.assert_array_equal(out.backdrop, [0.0] * 4 + [1.0] * 4)
    np.testing.assert_array_equal(out.values_at_points("error")[:2], np.float32([np.nan, -3.0]))


def test_autofocus_input_shapes_the_data():
    rgba = np.zeros((5, 6, 4), np.uint8)
    source, frames = view.autofocus_input(
        rgba, n_frames=None, rgb=True, focus_um=None, pixel_size_um=None, name="a"
    )
    assert source.shape == (5, 6, 3) and frames.shape == (1, 5, 6, 3)
    one = np.zeros((1, 5, 6))  # a one-frame stack is one frame
    source, frames = view.autofocus_input(
        one, n_frames=None, rgb=False, focus_um=None, pixel_size_um=None, name="a"
    )
    assert source.shape == (5, 6) and frames.shape == (1, 5, 6)
    stack = np.zeros((3, 5, 6))
    source, frames = view.autofocus_input(
        stack, n_frames=3, rgb=False, focus_um=np.array([0.0, 1.0, 2.0]), pixel_size_um=0.5,
        name="s",
    )  # fmt: skip
    assert source.n_frames == 3 and source.pixel_size_um == 0.5 and source.source == "s"
    np.testing.assert_array_equal(source.focus_um, [0.0, 1.0, 2.0])
    assert frames is stack


def test_rmse_map_result_texts_and_geometry():
    rmse = np.array([[0.5, np.nan], [1.25, 0.0]])
    out = view.rmse_map_result(
        rmse, 0.8, units="µm", recon_name="rec", truth_name="gt", shape_yx=(20, 40),
        scale_yx=(1.0, 1.0), translate_yx=(0.0, 0.0),
    )  # fmt: skip
    assert out.key == "rec (RMSE)" and out.metadata["ground_truth"] == "gt"
    assert out.texts == ["0.50 µm", "no data", "1.25 µm", "0.00 µm"]
    assert out.scale == (10.0, 20.0) and out.translate == (4.5, 9.5)
    assert view.shown_quantity(out, "error") == "rmse"
    overall, status, rows = view.summary_texts(out)
    assert overall == "Overall RMSE 0.8 µm; worst region 1.25 µm." and rows == []
    assert status == "RMSE per region of 'rec' against 'gt' (µm)."
    out.overall_rmse = float("nan")
    assert view.summary_texts(out)[0] == "No pixel is valid in both maps."


def test_summary_texts_of_a_defocus_result():
    res = make_result()
    out = view.defocus_map_result(
        res, np.zeros((3, 448, 448)), name="z", n_frames=3, shape_yx=(448, 448),
        scale_yx=(1.0, 1.0), translate_yx=(0.0, 0.0), contrast_limits=(0.0, 1.0),
        weights="w", weights_status=None, device="cpu", pixel_size_um=None,
    )  # fmt: skip
    assert view.shown_quantity(out, "true") == "true"
    overall, status, rows = view.summary_texts(out)
    assert rows[0] == ["0", "0", "1.50", "1.75", "3/4"]
    assert rows[1] == ["2", "8", "0.75", "0.75", "3/4"]
    assert overall == "Mean |error| over 2 frame(s): 1.15 µm; 60 % of regions within ±0.5 µm."
    assert status == (
        "Done in 1.23 s: 2 frame(s), 0 of 18 tiles rejected as blank. "
        "Defocus = frame position − best focus (µm)."
    )
    one = make_result(truth=False, frames=(0,))
    out = view.defocus_map_result(
        one, np.zeros((1, 448, 448)), name="f", n_frames=None, shape_yx=(448, 448),
        scale_yx=(1.0, 1.0), translate_yx=(0.0, 0.0), contrast_limits=(0.0, 1.0),
        weights="w", weights_status=None, device="cpu", pixel_size_um=None,
    )  # fmt: skip
    assert view.shown_quantity(out, "true") == "predicted"  # no truth: falls back
    overall, _, rows = view.summary_texts(out)
    assert overall == "One frame: predicted defocus only (a stack gives the error too)."
    assert rows == [["0", "0", "1.50", "–", "3/4"]]


def test_output_layers_are_named_after_the_input():
    res = make_result()
    out = view.defocus_map_result(
        res, np.zeros((3, 448, 448)), name="z", n_frames=3, shape_yx=(448, 448),
        scale_yx=(1.0, 1.0), translate_yx=(0.0, 0.0), contrast_limits=(0.0, 1.0),
        weights="w", weights_status=None, device="cpu", pixel_size_um=None,
    )  # fmt: skip
    layers = view.output_layers(out, "error")
    heat, values = layers["heatmap"], layers["values"]
    assert heat.name == "z defocus map" and values.name == "z defocus values"
    assert heat.metadata["kind"] == "defocus map" and heat.metadata["shows"] == "error"
    assert values.metadata["kind"] == "defocus map values"
    assert heat.colormap.name == "RdBu_r" and tuple(heat.contrast_limits) == (-3.0, 3.0)
    assert heat.opacity == view.HEATMAP_OPACITY and heat.data.shape == (3, 2, 2)
    assert list(values.features["label"]) == out.texts
    assert set(values.features["text_colour"]) <= {"black", "white"}


# ------------------------------------------------------------------------------------------
# Layers offered as inputs
# ------------------------------------------------------------------------------------------
class FakeLayer:
    def __init__(self, name, shape, kind=None, scale=None):
        self.name, self.data, self.ndim = name, np.zeros(shape), len(shape)
        self.metadata = {} if kind is None else {"kind": kind}
        self.scale = np.ones(len(shape)) if scale is None else np.asarray(scale, float)

    def world_to_data(self, world):
        return np.asarray(world, float) / self.scale


def test_input_layers_are_ordered_and_recognised():
    stack = FakeLayer("stack", (4, 8, 8))
    frame = FakeLayer("frame", (8, 8))
    depth = FakeLayer("depth", (8, 8), kind="depth")
    assert view.order_images([depth, frame, stack]) == [stack, frame, depth]
    assert view.stack_length(stack) == 4
    assert view.stack_length(frame) is None and view.stack_length(None) is None
    assert view.stack_length(FakeLayer("one", (1, 8, 8))) is None
    assert [view.looks_like_truth(FakeLayer(n, (2, 2))) for n in ("Truth", "a gt", "gt b")] == [
        True, True, True,
    ]  # fmt: skip
    assert view.looks_like_truth(FakeLayer("x", (2, 2), kind="ground truth"))
    assert not view.looks_like_truth(FakeLayer("target", (2, 2)))


@pytest.mark.parametrize(("z_world", "frame"), [(0.0, 0), (2.9, 1), (3.1, 2), (99.0, 3)])
def test_frame_at_the_slider(z_world, frame):
    stack = FakeLayer("stack", (4, 8, 8), scale=(2.0, 1.0, 1.0))
    assert view.frame_at(stack, (z_world, 0.0, 0.0)) == frame
    assert view.frame_at(FakeLayer("f", (8, 8)), (0.0, 0.0)) is None
