"""Ground-truth encodings recognised from the stored values and the number of frames."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.io.micro3d import propose_gt_scale


@pytest.mark.parametrize("factor, scale", [(1, 1.0), (10, 0.1), (100, 0.01), (1000, 0.001)])
def test_index_times_a_power_of_ten_is_recognised(factor, scale):
    idx = np.linspace(0, 19, 400).reshape(20, 20)
    raw = np.rint(idx * factor).astype(np.uint16 if factor < 100 else np.uint32)
    p = propose_gt_scale(raw, 20)
    assert p.kind == "index" and p.scale == scale
    assert p.fits == (scale == 1.0)  # the scale in use (1.0) fits only plain indices
    if not p.fits:
        assert f"use index scale {scale:g}" in p.message and p.in_range < 0.5


def test_the_scale_in_use_is_accepted_when_it_fits():
    raw = (np.arange(100).reshape(10, 10) * 19).astype(np.uint16)  # index × 100, 0 … 18.8
    p = propose_gt_scale(raw, 20, scale=0.01)
    assert p.fits and p.scale == 0.01 and p.in_range == 1.0


def test_float_um_and_unknown_encodings():
    focus = 10.0 + 2.0 * np.arange(12)
    um = np.random.default_rng(0).uniform(10, 32, (8, 8)).astype(np.float32)
    p = propose_gt_scale(um, 12, focus_um=focus)
    assert p.kind == "um" and p.fits and "µm" in p.message
    p = propose_gt_scale(np.full((4, 4), 60000, np.uint16), 12)
    assert p.kind == "unknown" and not p.fits and "no common encoding" in p.message
