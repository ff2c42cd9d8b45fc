"""Areal surface parameters against closed-form values; profiles along lines."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_gplws.errors import GplwsError
from napari_gplws.metrology.profile import height_profile, step_height, write_profile_csv
from napari_gplws.metrology.roughness import level_plane, surface_parameters, write_parameters_csv


def test_plane_levelling_removes_tilt_exactly():
    rr, cc = np.indices((50, 70), dtype=np.float64)
    z = 5.0 + 0.3 * cc - 0.2 * rr
    lev, (a, b, c) = level_plane(z, spacing_yx=(0.5, 0.5))
    np.testing.assert_allclose(lev, 0.0, atol=1e-9)
    assert (a, b, c) == pytest.approx((5.0, 0.6, -0.4))
    p = surface_parameters(z, spacing_yx=(0.5, 0.5))
    assert p.values["Sa"] == pytest.approx(0.0, abs=1e-9) and p.values["Sz"] == pytest.approx(
        0.0, abs=1e-9
    )


def test_sinusoid_on_a_tilt_has_the_textbook_values():
    # z = A cos(2πx/λ) over whole periods, plus a tilt: Sa = 2A/π, Sq = A/√2, Sp = Sv = A,
    # Ssk = 0, Sku = 1.5. The cosine is even about the centre, so the levelling plane takes
    # none of it.
    amp, lam = 2.0, 40
    rr, cc = np.indices((80, 4 * lam), dtype=np.float64)
    wave = amp * np.cos(2 * np.pi * (cc - (4 * lam - 1) / 2) / lam)
    p = surface_parameters(wave + 0.01 * cc + 0.02 * rr)
    v = p.values
    assert v["Sa"] == pytest.approx(2 * amp / np.pi, rel=5e-3)
    assert v["Sq"] == pytest.approx(amp / np.sqrt(2), rel=5e-3)
    assert v["Sp"] == pytest.approx(amp, rel=2e-2) and v["Sv"] == pytest.approx(amp, rel=2e-2)
    assert v["Sz"] == pytest.approx(v["Sp"] + v["Sv"])
    assert v["Ssk"] == pytest.approx(0.0, abs=1e-2) and v["Sku"] == pytest.approx(1.5, rel=1e-2)


def test_sv_is_positive_and_skew_sign_follows_pits():
    z = np.zeros((40, 40))
    z[10:14, 10:14] = -5.0  # one pit
    v = surface_parameters(z, level=False).values
    assert v["Sv"] > v["Sp"] > 0 and v["Ssk"] < 0


def test_region_and_mask_select_pixels_and_nan_is_ignored():
    z = np.zeros((60, 60))
    z[:, 30:] = np.random.default_rng(0).normal(0, 1, (60, 30))
    z[0, 0] = np.nan
    flat = surface_parameters(z, region=(5, 25, 2, 28))
    assert flat.values["Sq"] == pytest.approx(0.0, abs=1e-12) and flat.n_pixels == 20 * 26
    rough = surface_parameters(z, region=(0, 60, 30, 60))
    assert rough.values["Sq"] == pytest.approx(1.0, rel=0.1)
    mask = np.zeros_like(z, bool)
    mask[10:20, 40:50] = True
    assert surface_parameters(z, mask=mask).n_pixels == 100
    with pytest.raises(GplwsError, match="rectangle"):
        surface_parameters(z, region=(100, 120, 0, 10))


def test_parameters_csv_has_units_in_the_header(tmp_path):
    z = np.random.default_rng(2).normal(0, 1, (20, 20))
    rows = [
        surface_parameters(z, label="whole map"),
        surface_parameters(z, region=(0, 10, 0, 10), label="box"),
    ]
    out = write_parameters_csv(tmp_path / "p.csv", rows, source="stack")
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["region"] for r in table] == ["whole map", "box"]
    assert float(table[0]["Sq_µm"]) == pytest.approx(rows[0].values["Sq"], rel=1e-5)


def test_profile_length_and_heights_with_anisotropic_pixels():
    d = np.tile(np.arange(50, dtype=np.float64), (40, 1)) * 0.1  # height = 0.1·col
    p = height_profile(d, [(10, 5), (10, 45)], spacing_yx=(2.0, 0.5))
    assert p.length == pytest.approx(40 * 0.5)
    np.testing.assert_allclose(p.height, 0.1 * p.cols, atol=1e-9)
    vertical = height_profile(d, [(0, 7), (30, 7)], spacing_yx=(2.0, 0.5))
    assert vertical.length == pytest.approx(60.0) and np.allclose(vertical.height, 0.7)


def test_polyline_off_map_and_step_height(tmp_path):
    d = np.zeros((20, 40))
    d[:, 20:] = 3.0
    p = height_profile(d, [(10, 2), (10, 38), (30, 38)])
    assert np.isnan(p.height[-1]) and np.isfinite(p.height[0])
    assert step_height(p, 5.0, 30.0) == pytest.approx(3.0)
    assert step_height(p, 5.0, 30.0, half_width=3.0) == pytest.approx(3.0)
    out = write_profile_csv(tmp_path / "p.csv", p, markers=(5.0, 30.0), source="d")
    text = out.read_text(encoding="utf-8")
    assert "step height B−A: 3 µm" in text and text.count("\n") > len(p.distance)
    with pytest.raises(GplwsError, match="zero length"):
        height_profile(d, [(1, 1), (1, 1)])
