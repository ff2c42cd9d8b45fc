"""Errors per grid region (core, no display): RMSE of a depth map against its ground truth,
the region partition shared with autofocus, per-frame summaries, and keeping old files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_gplws.defocus import region_bounds
from napari_gplws.evaluation.metrics import MetricError
from napari_gplws.evaluation.region_error import (
    common_units,
    frame_error_summary,
    overall_rmse,
    region_rmse,
)


def offset_maps(shape=(60, 90), grid=(3, 3)):
    """Truth 5 µm everywhere; the reconstruction is off by a known constant per region."""
    truth = np.full(shape, 5.0)
    offsets = np.arange(grid[0] * grid[1], dtype=float).reshape(grid) * 0.5 - 1.0
    depth = truth.copy()
    for i, row in enumerate(region_bounds(shape, grid)):
        for j, (y0, y1, x0, x1) in enumerate(row):
            depth[y0:y1, x0:x1] += offsets[i, j]
    return depth, truth, offsets


def test_constant_offsets_give_their_size_per_region():
    depth, truth, offsets = offset_maps()
    np.testing.assert_allclose(region_rmse(depth, truth), np.abs(offsets))
    assert overall_rmse(depth, truth) == pytest.approx(math.sqrt(np.mean(offsets**2)))


def test_region_rmse_is_a_root_mean_square_inside_a_region():
    truth = np.zeros((4, 4))
    depth = np.zeros((4, 4))
    depth[:2, :2] = [[3.0, 4.0], [0.0, 0.0]]  # region (0, 0): sqrt((9 + 16) / 4) = 2.5
    out = region_rmse(depth, truth, (2, 2))
    assert out[0, 0] == pytest.approx(2.5) and np.all(out.ravel()[1:] == 0)


def test_nans_are_ignored_and_an_empty_region_is_nan():
    depth, truth, offsets = offset_maps()
    truth[0:20, 0:30] = np.nan  # all of region (0, 0)
    depth[25, 40] = np.nan  # one pixel of region (1, 1): ignored
    depth[30:40, 60:90] = np.inf  # part of region (1, 2): ignored
    out = region_rmse(depth, truth)
    assert np.isnan(out[0, 0])
    mask = np.isfinite(out)
    np.testing.assert_allclose(out[mask], np.abs(offsets)[mask])


def test_shape_mismatch_and_bad_grids_raise_clear_errors():
    with pytest.raises(MetricError, match=r"'a' is 10×12 pixels but the 'b' is 10×10"):
        region_rmse(np.zeros((10, 12)), np.zeros((10, 10)), labels=("'a'", "'b'"))
    with pytest.raises(MetricError, match="2-D"):
        region_rmse(np.zeros((2, 10, 10)), np.zeros((2, 10, 10)))
    with pytest.raises(MetricError, match="at least"):
        region_rmse(np.zeros((10, 10)), np.zeros((10, 10)), (0, 3))
    with pytest.raises(MetricError, match="does not fit"):
        region_rmse(np.zeros((2, 10)), np.zeros((2, 10)), (3, 3))


def test_region_errors_and_autofocus_share_one_region_partition():
    from napari_gplws.defocus import region_focus_curves
    from napari_gplws.dff.measures import focus_measure
    from napari_gplws.evaluation import region_error

    assert region_error.region_bounds is region_bounds  # one definition, not a copy
    assert region_error.check_grid((2.0, 3), (10, 10)) == (2, 3)
    with pytest.raises(MetricError, match="does not fit"):
        region_error.check_grid((3, 11), (10, 10))
    for shape, grid in (((500, 700), (3, 3)), ((97, 50), (5, 3)), ((672, 672), (3, 3))):
        bounds = region_bounds(shape, grid)
        assert len(bounds) == grid[0] and all(len(row) == grid[1] for row in bounds)
        assert all(type(v) is int for row in bounds for b in row for v in b)
        cover = np.zeros(shape, int)
        for row in bounds:
            for y0, y1, x0, x1 in row:
                cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()  # every pixel in exactly one region
    assert region_bounds((500, 700))[1][2] == (167, 333, 467, 700)
    assert region_bounds((97, 50), (5, 3))[0] == [(0, 19, 0, 17), (0, 19, 17, 33), (0, 19, 33, 50)]

    # The RMSE per region and the autofocus focus curves cut the map the same way.
    shape, grid = (97, 50), (3, 3)
    y0, y1, x0, x1 = region_bounds(shape, grid)[1][2]
    frame = np.zeros(shape)
    frame[y0:y1, x0:x1] = 1.0
    rmse = region_rmse(frame, np.zeros(shape), grid)
    assert np.flatnonzero(rmse.ravel()).tolist() == [5] and rmse[1, 2] == 1.0
    texture = np.random.default_rng(0).random(shape)
    sml = focus_measure(texture, "sml", 9)
    curves = region_focus_curves(texture[None], grid, window=9)
    bounds = region_bounds(shape, grid)
    expected = [[sml[a:b, c:d].mean(dtype=np.float64) for a, b, c, d in row] for row in bounds]
    np.testing.assert_allclose(curves[0], expected, rtol=1e-12)


def test_common_units():
    assert common_units("µm", None) == "µm"
    assert common_units(None, None) == "µm"
    assert common_units("frame", "frame") == "frame"
    with pytest.raises(MetricError, match="in µm but the ground truth is in frame"):
        common_units("µm", "frame")


def test_frame_error_summary_means_over_regions_with_values():
    from napari_gplws.defocus import AutofocusResult

    pred = np.array([[[1.0, -3.0], [np.nan, 0.5]], [[np.nan] * 2] * 2])
    true = np.zeros_like(pred)
    true[0, 0, 0] = np.nan
    res = AutofocusResult(
        frames=np.array([0, 4]), focus_um=np.array([0.0, 8.0]), predicted_um=pred,
        spread_um=np.zeros_like(pred), n_tiles=np.ones(pred.shape, int), true_um=true,
        error_um=pred - true, best_focus_um=np.zeros((2, 2)), tile_origins=np.zeros((4, 2)),
        tile_region=np.zeros((4, 2)), tile_defocus_um=np.zeros((2, 4)),
        tile_content=np.ones((2, 4)), grid=(2, 2), tile_px=224, stride=224, shape_yx=(448, 448),
    )  # fmt: skip
    first, second = frame_error_summary(res)
    assert first["frame"] == 0 and first["focus_um"] == 0.0
    assert first["mean_abs_predicted_um"] == pytest.approx((1 + 3 + 0.5) / 3)
    assert first["mean_abs_error_um"] == pytest.approx((3 + 0.5) / 2)  # region (0,0) has no truth
    assert (first["regions_estimated"], first["regions"]) == (3, 4)
    assert second["frame"] == 4 and second["mean_abs_predicted_um"] is None
    assert second["mean_abs_error_um"] is None and second["regions_estimated"] == 0


def test_move_aside_keeps_the_old_file(tmp_path):
    from napari_gplws._shared.files import move_aside

    target = tmp_path / "table.csv"
    assert move_aside(target) is None
    target.write_text("first")
    first = move_aside(target)
    assert not target.exists() and first.read_text() == "first"
    assert first.name.startswith("table.backup-") and first.suffix == ".csv"
    target.write_text("second")
    second = move_aside(target)
    assert second != first and second.read_text() == "second" and first.read_text() == "first"
