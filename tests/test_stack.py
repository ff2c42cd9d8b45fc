"""FocalStack validation and the index <-> position mapping."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.errors import FocusPositionError, StackError
from napari_gplws.stack import (
    FocalStack,
    index_to_position,
    position_to_index,
    uniform_positions,
)


def test_units_follow_focus_positions():
    frames = np.zeros((4, 5, 6), np.uint16)
    assert FocalStack(frames).units == "frame"
    s = FocalStack(frames, focus_um=[10, 8, 6, 4], pixel_size_um=0.5)
    assert s.units == "µm" and s.focus_step_um == 2.0 and s.is_uniform
    assert s.frames is frames  # no copy, dtype kept
    np.testing.assert_array_equal(FocalStack(frames).positions, [0, 1, 2, 3])


@pytest.mark.parametrize(
    "shape, match",
    [((1, 4, 4), "only 1 frame"), ((4, 4), r"\(N, H, W\)"), ((2, 3, 4, 4), "RGBA"), ((2, 3, 4, 5, 6), "time or channel")],
)
def test_bad_shapes(shape, match):
    with pytest.raises(StackError, match=match):
        FocalStack(np.zeros(shape, np.uint8), source="x.tif")


def test_nan_names_the_frames():
    f = np.zeros((3, 4, 4), np.float32)
    f[2, 1, 1] = np.nan
    with pytest.raises(StackError, match=r"NaN.*\[2\].*'x.tif'|'x.tif'.*NaN"):
        FocalStack(f, source="x.tif")


@pytest.mark.parametrize(
    "focus, match",
    [([0, 1], "2 focus positions for 3"), ([0, 1, 1], "strictly"), ([0, 2, 1], "strictly"), ([0, np.nan, 2], "NaN")],
)
def test_bad_focus_positions(focus, match):
    with pytest.raises(FocusPositionError, match=match):
        FocalStack(np.zeros((3, 4, 4)), focus_um=focus)


def test_pixel_size_must_be_positive():
    with pytest.raises(StackError, match="Pixel size"):
        FocalStack(np.zeros((3, 4, 4)), pixel_size_um=0)


def test_index_position_mapping_uneven_and_decreasing():
    pos = np.array([50.0, 49.0, 46.0, 40.0])  # decreasing, uneven
    # Halfway between frames 1 and 2 is halfway between 49 and 46.
    assert index_to_position(1.5, pos) == pytest.approx(47.5)
    idx = np.array([0.0, 0.25, 1.5, 2.9, 3.0])
    np.testing.assert_allclose(position_to_index(index_to_position(idx, pos), pos), idx)


def test_uniform_positions():
    np.testing.assert_allclose(uniform_positions(3, 5.0, -0.5), [5.0, 4.5, 4.0])
    with pytest.raises(FocusPositionError):
        uniform_positions(3, 0.0, 0.0)
