"""The public API: reconstruct() routes, validates and keeps units."""

from __future__ import annotations

import numpy as np
import pytest

import napari_gplws
from napari_gplws.errors import Cancelled, FocusPositionError, StackError


def test_reconstruct_stack_keeps_units_and_dtype(small_synthetic):
    r = napari_gplws.reconstruct(small_synthetic.stack, method="sml")
    assert r.units == "µm"
    assert r.depth.shape == (96, 96) and r.depth.dtype == np.float32
    assert r.aif.dtype == small_synthetic.stack.frames.dtype
    assert r.confidence.min() >= 0 and r.confidence.max() <= 1
    assert r.timings["total"] > 0
    rmse = np.sqrt(np.mean((r.depth - small_synthetic.depth_um) ** 2))
    assert rmse < 2 * small_synthetic.stack.focus_step_um


def test_reconstruct_plain_array_is_in_frames_and_positions_map_to_um(small_synthetic):
    frames = small_synthetic.stack.frames
    r_idx = napari_gplws.reconstruct(frames, method="sml")
    assert r_idx.units == "frame"
    assert r_idx.depth.min() >= 0 and r_idx.depth.max() <= len(frames) - 1
    pos = np.linspace(50.0, 10.0, len(frames))  # decreasing focus drive
    r_um = napari_gplws.reconstruct(frames, focus_positions=pos, method="sml")
    assert r_um.units == "µm"
    np.testing.assert_allclose(r_um.depth, np.interp(r_idx.depth, np.arange(len(pos)), pos), atol=1e-3)


def test_reconstruct_rejects_bad_input():
    with pytest.raises(StackError, match="Unknown method"):
        napari_gplws.reconstruct(np.zeros((3, 8, 8)), method="nope")
    with pytest.raises(FocusPositionError):
        napari_gplws.reconstruct(np.zeros((3, 8, 8)), focus_positions=[0, 1], method="sml")
    with pytest.raises(StackError, match="NaN"):
        napari_gplws.reconstruct(np.full((3, 8, 8), np.nan), method="sml")
    with pytest.raises(StackError):
        napari_gplws.reconstruct({"not": "a stack"}, method="sml")


def test_cancel_returns_nothing(small_synthetic):
    with pytest.raises(Cancelled):
        napari_gplws.reconstruct(small_synthetic.stack, method="sml", cancel=lambda: True)


def test_progress_reaches_total(small_synthetic):
    calls = []
    napari_gplws.reconstruct(small_synthetic.stack, method="tenengrad", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]


def test_report_is_json_able(small_synthetic):
    import json

    r = napari_gplws.reconstruct(small_synthetic.stack, method="glv")
    rep = json.loads(json.dumps(r.report()))
    assert rep["units"]["depth"] == "µm" and rep["method"] == "glv"


def test_save_writes_nothing_when_any_output_is_not_finite(tmp_path, small_synthetic):
    import napari_gplws
    from napari_gplws.errors import GplwsError

    r = napari_gplws.reconstruct(small_synthetic.stack, method="sml")
    r.confidence = r.confidence.copy()
    r.confidence[0, 0] = np.nan
    with pytest.raises(GplwsError, match="confidence.*nothing was written"):
        r.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
