"""The multi-frame direction fit: exact on exact magnitudes, the global minimum of its cost,
the sign prior only where the geometry is ambiguous, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.defocus.fit import MAGNITUDE_SIGMA_UM, fit_best_focus


@pytest.mark.parametrize("best", [-7.0, -3.0, 0.4, 1.0, 2.0, 3.0, 9.5])
def test_exact_magnitudes_give_the_best_focus_and_every_direction(best: float) -> None:
    pos = np.array([0.0, 2.0])
    fit = fit_best_focus(pos, np.abs(pos - best))
    assert fit.best_focus_um == pytest.approx(best, abs=1e-9)
    np.testing.assert_allclose(fit.defocus_um, pos - best, atol=1e-9)
    assert fit.rms_residual_um == pytest.approx(0.0, abs=1e-9)
    # A frame well away from focus is sure of its direction; one at focus is not.
    far = np.abs(pos - best) >= 2.5
    assert (fit.confidence[far] > 0.5).all()
    assert (fit.confidence[np.abs(pos - best) < 1e-9] == 0).all()


def _cost(
    b: np.ndarray, p: np.ndarray, m: np.ndarray, lam: np.ndarray, w: np.ndarray
) -> np.ndarray:
    s = np.where(p[None] - b[:, None] > 0, 1.0, -1.0)
    geo = (w * (np.abs(p[None] - b[:, None]) - m) ** 2).sum(1) / MAGNITUDE_SIGMA_UM**2
    return geo + np.logaddexp(0.0, -s * lam).sum(1)


def test_the_fit_is_the_global_minimum_of_its_cost() -> None:
    rng = np.random.default_rng(0)
    grid = np.linspace(-30, 30, 60001)
    for _ in range(40):
        n = int(rng.integers(2, 6))
        p = np.sort(rng.uniform(-5, 5, n))
        m = np.abs(p - rng.uniform(-8, 8)) + rng.normal(0, 1.0, n)
        m = np.maximum(m, 0.0)
        lam = rng.normal(0, 1.5, n)
        w = rng.integers(1, 5, n).astype(float)
        fit = fit_best_focus(p, m, lam, weights=w)
        c_grid = _cost(grid, p, m, lam, w / w.mean())
        # At a frame's own position the prior jumps; the fit may sit at either limit.
        b = fit.best_focus_um + np.array([-1e-9, 0.0, 1e-9])
        c_fit = _cost(b, p, m, lam, w / w.mean()).min()
        assert c_fit <= c_grid.min() + 1e-6
        assert abs(fit.best_focus_um - grid[np.argmin(c_grid)]) < 0.05 or np.isclose(
            c_fit, c_grid.min(), atol=1e-4
        )


def test_the_sign_prior_decides_only_where_the_geometry_cannot() -> None:
    pos = [0.0, 2.0]
    # 6 and 6.3 µm: about as consistent with focus below (5.9 / 7.9) as above (6.1 / 4.1)…
    both = [6.0, 6.3]
    up = fit_best_focus(pos, both, sign_logits=[3.0, 3.0])
    down = fit_best_focus(pos, both, sign_logits=[-3.0, -3.0])
    assert (up.defocus_um > 0).all() and (down.defocus_um < 0).all()
    assert fit_best_focus(pos, both).confidence.max() < 0.5  # geometry alone is unsure
    # …whereas 3 → 5 µm can only mean focus 3 µm below frame 0, whatever the network's sign.
    clear = fit_best_focus(pos, [3.0, 5.0], sign_logits=[-2.0, -2.0])
    assert clear.best_focus_um == pytest.approx(-3.0, abs=0.3)
    assert (clear.defocus_um > 0).all()


def test_unusable_frames_are_skipped_and_too_few_give_no_estimate() -> None:
    fit = fit_best_focus([0.0, 1.0, 2.0], [3.0, np.nan, 5.0])
    assert fit.best_focus_um == pytest.approx(-3.0)
    assert np.isfinite(fit.defocus_um).all()  # every frame with a position gets a value
    none = fit_best_focus([0.0, 2.0], [3.0, np.nan])
    assert np.isnan(none.best_focus_um) and np.isnan(none.defocus_um).all()
    same = fit_best_focus([1.0, 1.0], [3.0, 3.0])
    assert np.isnan(same.best_focus_um)  # no step between the frames: no direction
    zero_w = fit_best_focus([0.0, 2.0], [3.0, 5.0], weights=[1.0, 0.0])
    assert np.isnan(zero_w.best_focus_um)


def test_bad_arguments_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="one value per frame"):
        fit_best_focus([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="sigma_um must be positive"):
        fit_best_focus([0.0, 1.0], [1.0, 2.0], sigma_um=0.0)
