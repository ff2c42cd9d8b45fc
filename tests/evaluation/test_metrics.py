"""Tests of the depth metrics (napari_gplws.evaluation.metrics), pinned by hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters

from napari_gplws.evaluation.metrics import (
    METRIC_KEYS,
    SCHARR_X,
    SCHARR_Y,
    MetricError,
    abs_rel,
    bumpiness,
    delta_accuracy,
    depth_metrics,
    format_table,
    hessian_norm,
    mae,
    mse,
    rmse,
    sq_rel,
    valid_mask,
    within_step,
)

# pred − gt = [0, 1, −1, 2] with gt = [1, 1, 4, 4]
PRED = np.array([[1.0, 2.0], [3.0, 6.0]])
GT = np.array([[1.0, 1.0], [4.0, 4.0]])


# --- point-wise metrics on a 2×2 example ----------------------------------------------
def test_point_metrics_by_hand():
    # MSE    = (0² + 1² + 1² + 2²) / 4            = 6/4 = 1.5
    # MAE    = (0 + 1 + 1 + 2) / 4                = 1.0
    # RMSE   = sqrt(1.5)
    # AbsRel = (0/1 + 1/1 + 1/4 + 2/4) / 4        = 1.75/4 = 0.4375
    # SqRel  = (0/1 + 1/1 + 1/4 + 4/4) / 4        = 2.25/4 = 0.5625
    assert mse(PRED, GT) == pytest.approx(1.5)
    assert mae(PRED, GT) == pytest.approx(1.0)
    assert rmse(PRED, GT) == pytest.approx(math.sqrt(1.5))
    assert abs_rel(PRED, GT) == pytest.approx(0.4375)
    assert sq_rel(PRED, GT) == pytest.approx(0.5625)


def test_delta_accuracies_by_hand():
    # max(p/g, g/p) = [1/1, 2/1, 4/3, 6/4] = [1, 2, 1.333, 1.5]
    # < 1.25        : {1}                  -> 1/4
    # < 1.5625      : {1, 1.333, 1.5}      -> 3/4
    # < 1.953125    : {1, 1.333, 1.5}      -> 3/4   (2 is not below 1.25³)
    assert delta_accuracy(PRED, GT, threshold=1.25) == pytest.approx(0.25)
    assert delta_accuracy(PRED, GT, threshold=1.25**2) == pytest.approx(0.75)
    assert delta_accuracy(PRED, GT, threshold=1.25**3) == pytest.approx(0.75)


def test_within_step_by_hand():
    # |p − g| = [0, 1, 1, 2]; ≤ 1 -> 3/4; ≤ 0.5 -> 1/4; ≤ 2 -> 4/4
    assert within_step(PRED, GT, 1.0) == pytest.approx(0.75)
    assert within_step(PRED, GT, 0.5) == pytest.approx(0.25)
    assert within_step(PRED, GT, 2.0) == pytest.approx(1.0)
    with pytest.raises(MetricError, match="step"):
        within_step(PRED, GT, 0.0)


def test_mask_is_honoured():
    # Drop pixel (1, 0) (diff −1, g 4): diffs [0, 1, 2], g [1, 1, 4]
    # MSE = (0 + 1 + 4)/3 = 5/3; MAE = 3/3 = 1; AbsRel = (0 + 1 + 2/4)/3 = 0.5
    # SqRel = (0 + 1 + 4/4)/3 = 2/3; δ1: ratios [1, 2, 1.5] -> 1/3; ≤1 step: [0, 1] -> 2/3
    mask = np.array([[True, True], [False, True]])
    m = depth_metrics(PRED, GT, mask=mask, focus_step=1.0)
    assert m["MSE"] == pytest.approx(5 / 3)
    assert m["MAE"] == pytest.approx(1.0)
    assert m["RMSE"] == pytest.approx(math.sqrt(5 / 3))
    assert m["AbsRel"] == pytest.approx(0.5)
    assert m["SqRel"] == pytest.approx(2 / 3)
    assert m["Delta1"] == pytest.approx(1 / 3)
    assert m["WithinStep"] == pytest.approx(2 / 3)


def test_non_finite_ground_truth_is_excluded_by_default():
    gt = GT.copy()
    gt[1, 0] = np.nan  # same pixel as the mask above
    assert mse(PRED, gt) == pytest.approx(5 / 3)
    assert valid_mask(gt).tolist() == [[True, True], [False, True]]
    pred = PRED.copy()
    pred[1, 0] = np.nan  # a NaN prediction where the truth is invalid is fine
    assert mae(pred, gt) == pytest.approx(1.0)


def test_relative_metrics_exclude_non_positive_truth():
    # g = [0, −1, 2, 4], p = [1, 1, 3, 4]
    # MSE over all four: (1 + 4 + 1 + 0)/4 = 1.5
    # AbsRel over g > 0 only: (1/2 + 0/4)/2 = 0.25; SqRel: (1/2 + 0)/2 = 0.25
    # δ1 over g > 0: ratios [1.5, 1] -> 1/2
    gt = np.array([[0.0, -1.0], [2.0, 4.0]])
    pred = np.array([[1.0, 1.0], [3.0, 4.0]])
    assert mse(pred, gt) == pytest.approx(1.5)
    assert abs_rel(pred, gt) == pytest.approx(0.25)
    assert sq_rel(pred, gt) == pytest.approx(0.25)
    assert delta_accuracy(pred, gt) == pytest.approx(0.5)


def test_non_positive_prediction_is_a_delta_miss():
    # g = [1, 1], p = [0, 1]: the first has no finite ratio -> miss; δ1 = 1/2
    assert delta_accuracy(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    assert delta_accuracy(np.array([-1.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_empty_selection_gives_nan():
    gt = np.array([[-1.0, 0.0]])
    pred = np.array([[1.0, 1.0]])
    assert math.isnan(abs_rel(pred, gt)) and math.isnan(delta_accuracy(pred, gt))
    nothing = np.zeros((1, 2), bool)
    assert math.isnan(mse(pred, gt, nothing)) and math.isnan(rmse(pred, gt, nothing))


def test_bad_inputs_raise_readable_errors():
    with pytest.raises(MetricError, match="different shapes"):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(MetricError, match="mask"):
        mse(PRED, GT, mask=np.ones((3, 3), bool))
    bad = PRED.copy()
    bad[0, 0] = np.inf
    with pytest.raises(MetricError, match="NaN or infinite"):
        mae(bad, GT)


# --- bumpiness -------------------------------------------------------------------------
def test_scharr_kernels_are_the_normalised_skimage_ones():
    # The DDFF toolbox calls skimage.filters.scharr_v (d/dx) and scharr_h (d/dy).
    rng = np.random.default_rng(0)
    img = rng.random((12, 14))
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(
        ndi.correlate(img, SCHARR_X)[inner], filters.scharr_v(img)[inner], atol=1e-12
    )
    np.testing.assert_allclose(
        ndi.correlate(img, SCHARR_Y)[inner], filters.scharr_h(img)[inner], atol=1e-12
    )
    # The DDFF recipe composed with skimage gives the same Hessian norm in the interior.
    dx, dy = filters.scharr_v(img), filters.scharr_h(img)
    ref = np.sqrt(
        filters.scharr_v(dx) ** 2
        + filters.scharr_h(dx) ** 2
        + filters.scharr_h(dy) ** 2
        + filters.scharr_v(dy) ** 2
    )
    np.testing.assert_allclose(hessian_norm(img)[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-12)


def test_bumpiness_of_a_single_spike_by_hand():
    # 5×5 diff, a·δ at the centre: only the centre is scored (its 5×5 support is the image).
    # With K = SCHARR_X = s ⊗ e, s = [3, 10, 3]/16, e = [−1, 0, 1] (odd in x, even in y):
    #   dxx(centre) = Σ K[i,j]·K[2−i,2−j]·a = −a·Σ K²
    #               = −a·2·(9 + 100 + 9)/256 = −a·236/256
    #   dyy(centre) = the same by symmetry
    #   dxy(centre) = dyx(centre) = −a·(Σ_i e_i s_i)² = 0   (e·s = (−3 + 0 + 3)/16 = 0)
    #   norm = a·√2·236/256;  bumpiness = 100·min(norm, 0.05)
    a = 0.01
    diff = np.zeros((5, 5))
    diff[2, 2] = a
    expected = 100 * a * math.sqrt(2) * 236 / 256  # = 1.30372...
    assert bumpiness(diff, np.zeros((5, 5))) == pytest.approx(expected, rel=1e-12)
    # a large spike saturates at the clip: 100·0.05 = 5
    assert bumpiness(diff * 100, np.zeros((5, 5))) == pytest.approx(5.0)


def test_bumpiness_of_a_parabola_by_hand():
    # diff = c·x²: one Scharr pass gives (x+1)²c − (x−1)²c = 4cx, the second 4c·2 = 8c;
    # dxy = dyx = dyy = 0 (no dependence on y). Every interior pixel: norm = 8c.
    # c = 0.001 -> bumpiness = 100·0.008 = 0.8
    x = np.arange(9.0)
    gt = np.full((8, 9), 3.0)
    pred = gt + 0.001 * x[None, :] ** 2
    assert bumpiness(pred, gt) == pytest.approx(0.8, rel=1e-12)


def test_bumpiness_zero_for_constant_and_linear_errors():
    rng = np.random.default_rng(1)
    gt = rng.random((20, 24)) * 10
    yy, xx = np.mgrid[0:20, 0:24].astype(float)
    assert bumpiness(gt, gt) == 0.0
    assert bumpiness(gt + 2.5, gt) == pytest.approx(0.0, abs=1e-12)
    assert bumpiness(gt + 0.3 * xx - 0.7 * yy + 1.0, gt) == pytest.approx(0.0, abs=1e-12)


def test_bumpiness_positive_on_a_bumpy_error():
    rng = np.random.default_rng(2)
    gt = np.full((32, 32), 5.0)
    b = bumpiness(gt + 0.01 * rng.standard_normal((32, 32)), gt)
    assert 0.0 < b <= 5.0


def test_bumpiness_honours_mask_and_border():
    # A ramp error with one wild pixel: masking that pixel out removes every scored pixel
    # whose 5×5 neighbourhood touches it, so the result is exactly 0 again.
    yy, xx = np.mgrid[0:15, 0:15].astype(float)
    gt = np.ones((15, 15))
    pred = gt + 0.1 * xx
    pred[7, 7] += 50.0
    mask = np.ones((15, 15), bool)
    mask[7, 7] = False
    assert bumpiness(pred, gt) > 0
    assert bumpiness(pred, gt, mask) == pytest.approx(0.0, abs=1e-12)
    # fewer than 5×5 valid pixels: nothing to score
    assert math.isnan(bumpiness(np.zeros((4, 4)), np.zeros((4, 4))))
    with pytest.raises(MetricError, match="2-D"):
        bumpiness(np.zeros((3, 5, 5)), np.zeros((3, 5, 5)))


# --- all at once and the table ----------------------------------------------------------
def test_depth_metrics_has_every_key_and_matches_the_functions():
    rng = np.random.default_rng(3)
    gt = 5 + rng.random((16, 16)) * 10
    pred = gt + rng.normal(0, 0.5, gt.shape)
    m = depth_metrics(pred, gt, focus_step=1.0)
    assert tuple(m) == METRIC_KEYS
    assert all(isinstance(v, float) for v in m.values())
    assert m["MSE"] == pytest.approx(mse(pred, gt))
    assert m["AbsRel"] == pytest.approx(abs_rel(pred, gt))
    assert m["Delta2"] == pytest.approx(delta_accuracy(pred, gt, threshold=1.5625))
    assert m["WithinStep"] == pytest.approx(within_step(pred, gt, 1.0))
    assert m["Bumpiness"] == pytest.approx(bumpiness(pred, gt))
    assert math.isnan(depth_metrics(pred, gt)["WithinStep"])  # no step given
    exact = depth_metrics(gt, gt, focus_step=1.0)
    assert (
        exact["MSE"] == 0
        and exact["Delta1"] == 1
        and exact["WithinStep"] == 1
        and exact["Bumpiness"] == 0
    )


def test_format_table_markdown():
    rows = {
        "sml": {"MAE": 1.5, "RMSE": 2.0, "Delta1": float("nan"), "seconds": 0.12345},
        "gplws": {"MAE": 0.25, "RMSE": 0.5},
    }
    expected = (
        "| method | MAE ↓ | RMSE ↓ | δ<1.25 ↑ | s/stack ↓ |\n"
        "|---|---:|---:|---:|---:|\n"
        "| sml | 1.5 | 2 | – | 0.1235 |\n"
        "| gplws | 0.25 | 0.5 | – | – |"
    )
    assert format_table(rows) == expected
    with_units = format_table(rows, columns=("RMSE",), units="µm")
    assert with_units.splitlines()[0] == "| method | RMSE ↓ |"
    assert "µm" in with_units.splitlines()[-1]
