"""PSF model (against the Airy pattern, symmetry, asymmetry) and the defocus simulator."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.sim.defocus_tiles import DefocusSimulator
from napari_gplws.sim.psf import (
    OPTICS_20X,
    ZERNIKE_NAMES,
    Optics,
    airy_pattern,
    best_focus_um,
    depth_of_field_um,
    psf_2d,
    zernike,
)
from napari_gplws.sim.psf_bank import PSFBank, psf_bank
from napari_gplws.sim.specimens import SPECIMENS, TEST_SPECIMENS, TRAIN_SPECIMENS, specimen_image


def _radius_um(size: int, px: float) -> np.ndarray:
    c = size // 2
    yy, xx = np.mgrid[:size, :size] - c
    return np.hypot(yy, xx) * px


@pytest.mark.parametrize("na,lam", [(0.75, 0.55), (0.3, 0.48)])
def test_in_focus_psf_matches_airy_pattern(na: float, lam: float) -> None:
    optics = Optics(na=na, wavelengths_um=(lam,))
    px = 0.05 if na > 0.5 else 0.1
    p = psf_2d(optics, 0.0, 0.0, size_px=65, pixel_size_um=px, oversample=1)
    airy = airy_pattern(_radius_um(65, px), na, lam)
    assert np.abs(p / p.max() - airy).max() < 5e-3
    assert p.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(p), p.shape) == (32, 32)


def test_matched_indices_give_a_psf_symmetric_about_focus() -> None:
    optics = Optics(n_immersion=1.0, n_sample=1.0, na=0.75)
    depth = 8.0
    bf = best_focus_um(optics, depth)
    assert bf == pytest.approx(depth, abs=0.01)  # no focal shift without a mismatch
    for d in (0.7, 2.0, 5.0):
        up = psf_2d(optics, bf + d, depth, size_px=41)
        down = psf_2d(optics, bf - d, depth, size_px=41)
        assert np.abs(up - down).max() <= 1e-6 * up.max()


def test_index_mismatch_makes_the_psf_asymmetric_and_shifts_focus() -> None:
    optics = OPTICS_20X  # dry objective into n = 1.45
    depth = 10.0
    bf = best_focus_um(optics, depth)
    # The focus shifts towards the coverslip (drive travel < depth): roughly depth · n_i / n_s.
    assert 0.5 * depth / 1.45 < bf < depth
    for d in (1.0, 2.0):
        up = psf_2d(optics, bf + d, depth, size_px=41)
        down = psf_2d(optics, bf - d, depth, size_px=41)
        assert np.abs(up - down).max() > 0.05 * max(up.max(), down.max())
    # Peak intensity is highest at the best focus found.
    peaks = [
        psf_2d(optics, bf + d, depth, size_px=21, oversample=1).max() for d in (-0.5, 0.0, 0.5)
    ]
    assert peaks[1] >= max(peaks[0], peaks[2])


def test_defocus_widens_the_psf_monotonically() -> None:
    optics = Optics(n_sample=1.0)
    r = _radius_um(41, optics.pixel_size_um)
    widths = [
        float(np.sqrt((psf_2d(optics, d, 0.0, size_px=41) * r**2).sum())) for d in (0.0, 2.0, 4.0)
    ]
    assert widths[0] < widths[1] < widths[2]


def test_zernike_terms_have_unit_rms_over_the_disc() -> None:
    yy, xx = np.mgrid[-1:1:401j, -1:1:401j]
    rho, phi = np.hypot(yy, xx), np.arctan2(yy, xx)
    inside = rho <= 1
    for name in ZERNIKE_NAMES:
        z = zernike(name, rho[inside], phi[inside])
        assert np.sqrt((z**2).mean()) == pytest.approx(1.0, rel=0.02), name


def test_depth_of_field_of_the_default_optics() -> None:
    assert 1.0 < depth_of_field_um(OPTICS_20X) < 1.6


@pytest.fixture(scope="module")
def tiny_bank() -> PSFBank:
    return psf_bank(n_configs=1, seed=0, defocus_max_um=4.0, step_um=1.0, size_px=33)


def test_psf_bank_interpolates_between_grid_points(tiny_bank: PSFBank) -> None:
    a, b = tiny_bank.psf(0, 1.0), tiny_bank.psf(0, 2.0)
    mid = tiny_bank.psf(0, 1.5)
    np.testing.assert_allclose(mid, 0.5 * (a + b), atol=1e-7)
    assert mid.sum() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="outside"):
        tiny_bank.psf(0, 5.0)


def test_simulator_is_deterministic_and_labels_match(tiny_bank: PSFBank) -> None:
    sim = DefocusSimulator(tiny_bank, TRAIN_SPECIMENS, defocus_max_um=3.0)
    a = sim.tiles(np.random.default_rng(5), n_fields=3, per_field=2, tile_px=48)
    b = sim.tiles(np.random.default_rng(5), n_fields=3, per_field=2, tile_px=48)
    c = sim.tiles(np.random.default_rng(6), n_fields=3, per_field=2, tile_px=48)
    assert a.tiles.shape == (6, 48, 48) and a.tiles.dtype == np.uint8
    np.testing.assert_array_equal(a.tiles, b.tiles)
    np.testing.assert_array_equal(a.defocus_um, b.defocus_um)
    assert not np.array_equal(a.tiles, c.tiles)
    assert np.all(np.abs(a.defocus_um) <= 3.0)
    assert list(a.field_id) == [0, 0, 1, 1, 2, 2]


def test_simulated_blur_grows_with_defocus(tiny_bank: PSFBank) -> None:
    sim = DefocusSimulator(
        tiny_bank, ("he_tissue",), p_jpeg=0.0, p_partial=0.0, p_phase=0.0, defocus_max_um=3.0
    )
    t, _, _ = sim.render_field(np.random.default_rng(0), [0.0, 3.0], tile_px=64)
    # Contrast of 4×4 block means (block averaging keeps the shot noise out of the measure).
    contrast = [x.astype(float).reshape(16, 4, 16, 4).mean(axis=(1, 3)).std() for x in t]
    assert contrast[0] > 1.2 * contrast[1]


def test_rgb_tiles_and_specimen_split() -> None:
    assert not set(TRAIN_SPECIMENS) & set(TEST_SPECIMENS)
    assert set(TRAIN_SPECIMENS) | set(TEST_SPECIMENS) <= set(SPECIMENS)
    rng = np.random.default_rng(0)
    he = specimen_image("he_tissue", (40, 40), rng)
    fl = specimen_image("fluo_spots", (40, 40), rng)
    assert he.shape == (40, 40, 3) and fl.shape == (40, 40)
    assert np.median(fl) < 0.3  # dark background
    with pytest.raises(ValueError, match="Unknown specimen"):
        specimen_image("nope", (8, 8), rng)


def test_phase_contrast_flips_sign_through_focus(tiny_bank: PSFBank) -> None:
    sim = DefocusSimulator(tiny_bank, ("he_tissue",), defocus_max_um=3.0)
    _, grid = sim._phase_object(np.ones((32, 32), np.float32), np.random.default_rng(0), 32)
    up, down = sim._phase_transfer(grid, 2.0), sim._phase_transfer(grid, -2.0)
    np.testing.assert_allclose(up, -down, atol=1e-7)
    assert np.abs(up).max() > 0.1
    assert np.all(sim._phase_transfer(grid, 0.0) == 0)


def test_phase_objects_delay_light_never_advance_it(tiny_bank: PSFBank) -> None:
    # Cells are denser than their medium: a zero-mean phase field would look the same,
    # contrast-inverted, on both sides of focus and hide the direction of defocus.
    from scipy import fft as sfft

    sim = DefocusSimulator(tiny_bank, ("bf_cells",), defocus_max_um=3.0)
    rng = np.random.default_rng(1)
    spec = specimen_image("bf_cells", (64, 64), rng, tiny_bank.optics.pixel_size_um)
    phase_spec, _ = sim._phase_object(spec, rng, 64)
    phi = sfft.irfft2(phase_spec, s=(64, 64))
    assert phi.min() > -1e-4 and phi.max() > 0.1


def test_brightfield_phase_contrast_tells_above_from_below_focus(tiny_bank: PSFBank) -> None:
    """The cue LDSE-NET learns the sign from: phase objects look dark on one side of focus and
    bright on the other, so the same field's fine detail is skewed differently above and
    below focus (a zero-mean phase field, or none, would leave it unchanged)."""
    from scipy import ndimage as ndi
    from scipy.stats import skew

    sim = DefocusSimulator(
        tiny_bank, ("bf_cells",), p_phase=1.0, phase_rad=(1.0, 1.5), p_jpeg=0.0,
        p_partial=0.0, defocus_max_um=3.0,
    )
    rng = np.random.default_rng(0)
    flips = []
    for _ in range(6):
        tiles, _, _ = sim.render_field(rng, [-2.0, 2.0], tile_px=96)
        x = tiles.astype(np.float32)
        fine = x - ndi.gaussian_filter(x, (0, 3, 3))
        s_below, s_above = (skew(t.ravel()) for t in fine)
        flips.append(s_above - s_below)
    assert min(flips) > 0.2, flips  # 0.3-2.0 here
