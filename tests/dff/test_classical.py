"""Tests of the classical depth-from-focus engine (:mod:`napari_gplws.dff.classical`).

Stacks are rendered here by a small helper (:func:`render_stack`) rather than by
:mod:`napari_gplws.sim.focus_stacks`, so that these tests depend only on the code they test:
a random texture is Gaussian-blurred, per pixel, with a sigma proportional to
``|depth − focus position|``. All tests are headless and take a few seconds in total.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_gplws.dff.classical import FOCUS_MEASURES, FocusResult, depth_from_focus, focus_measure
from napari_gplws.dff.measures import (
    SML_STEP,
    luminance,
    measure_halo,
    measure_into,
    n_work_buffers,
)
from napari_gplws.dff.peaks import peak_offset
from napari_gplws.dff.refine import refine_index
from napari_gplws.errors import Cancelled, StackError
from napari_gplws.stack import FocalStack

MEASURES = sorted(FOCUS_MEASURES)


# --------------------------------------------------------------------------------------
# synthetic stacks
# --------------------------------------------------------------------------------------
def render_stack(
    depth_um: np.ndarray,
    focus_um: np.ndarray,
    *,
    blur_per_um: float = 0.8,
    noise: float = 0.0,
    texture_amp: np.ndarray | float = 1.0,
    texture_offset: np.ndarray | float = 0.0,
    dtype: type = np.uint8,
    rgb: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Frames of a textured surface at ``depth_um`` seen at each of ``focus_um``.

    Each frame is the texture blurred per pixel with ``sigma = blur_per_um·|depth − f|``
    (interpolated between pre-blurred levels), plus Gaussian noise of std ``noise``
    (in units of the [0, 1] texture range), scaled to ``dtype``. ``texture_amp`` scales
    the texture's contrast and ``texture_offset`` shifts its brightness, per pixel.
    """
    rng = np.random.default_rng(seed)
    shape = depth_um.shape
    tex = ndi.gaussian_filter(rng.random(shape), 1.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    tex = 0.5 + np.asarray(texture_amp) * (tex - 0.5) + np.asarray(texture_offset)
    focus_um = np.asarray(focus_um, float)
    sig = blur_per_um * np.abs(depth_um[None] - focus_um[:, None, None])
    ds = 0.25
    levels = np.arange(0.0, sig.max() + 2 * ds, ds)
    blurred = np.stack([tex if s == 0 else ndi.gaussian_filter(tex, s) for s in levels])
    j = sig / ds
    j0 = np.minimum(np.floor(j).astype(int), len(levels) - 2)
    w = j - j0
    yy, xx = np.indices(shape)
    frames = (1 - w) * blurred[j0, yy, xx] + w * blurred[j0 + 1, yy, xx]
    frames = frames + noise * rng.standard_normal(frames.shape)
    if rgb:
        frames = np.stack([frames, 0.9 * frames, 0.8 * frames], axis=-1)
    if np.dtype(dtype).kind == "u":
        top = np.iinfo(dtype).max
        frames = np.clip(np.rint(0.1 * top + 0.8 * top * frames), 0, top)
    return frames.astype(dtype)


def tilted_plane(shape=(96, 96), lo=2.0, hi=12.0) -> np.ndarray:
    """Depth (µm) rising linearly from ``lo`` at the left edge to ``hi`` at the right."""
    return np.broadcast_to(np.linspace(lo, hi, shape[1]), shape).copy()


def rmse(a: np.ndarray, b: np.ndarray, margin: int = 6) -> float:
    """RMSE over the interior (a ``margin`` frame of pixels is left out)."""
    s = (slice(margin, -margin),) * 2
    return float(np.sqrt(np.mean((np.asarray(a, float)[s] - np.asarray(b, float)[s]) ** 2)))


@pytest.fixture(scope="module")
def plane_stack():
    """15 frames, 1 µm apart, of a plane tilted over 2–12 µm; truth in µm."""
    focus = np.arange(15, dtype=float)
    depth = tilted_plane()
    frames = render_stack(depth, focus, noise=0.01)
    return FocalStack(frames, focus_um=focus), depth


# --------------------------------------------------------------------------------------
# focus measures
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("measure", MEASURES)
def test_each_measure_peaks_at_the_in_focus_frame(measure):
    depth = np.full((48, 48), 4.0)
    focus = np.arange(9, dtype=float)
    frames = render_stack(depth, focus, noise=0.005)
    curve = [
        float(focus_measure(f.astype(np.float32), measure, 9)[8:-8, 8:-8].mean()) for f in frames
    ]
    assert int(np.argmax(curve)) == 4, curve
    fm = focus_measure(frames[4].astype(np.float32), measure)
    assert fm.dtype == np.float32 and fm.shape == frames[4].shape and (fm >= 0).all()


def test_sml_matches_its_textbook_definition():
    # The kernel filters transposed copies for speed; it must equal the plain recipe.
    rng = np.random.default_rng(3)
    frame = (rng.random((50, 70)) * 255).astype(np.float32)
    d2 = np.zeros(2 * SML_STEP + 1)
    d2[[0, SML_STEP, -1]] = (1.0, -2.0, 1.0)  # 2·I(x) − I(x ± step), up to the sign
    ml = np.abs(ndi.correlate1d(frame, d2, axis=0)) + np.abs(ndi.correlate1d(frame, d2, axis=1))
    np.testing.assert_allclose(
        focus_measure(frame, "sml", 7), ndi.uniform_filter(ml, 7), rtol=1e-5, atol=1e-3
    )


def test_unknown_measure_and_bad_window_are_refused():
    frame = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="sml") as info:
        focus_measure(frame, "sharpness")
    assert isinstance(info.value, StackError)
    for bad in (4, 0, -3, 2.5):
        with pytest.raises(StackError, match="odd"):
            focus_measure(frame, "sml", bad)
    stack = FocalStack(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(StackError, match="tenengrad"):
        depth_from_focus(stack, measure="nope")
    with pytest.raises(StackError, match="parabolic"):
        depth_from_focus(stack, interpolation="cubic")


def test_colour_frame_is_measured_on_its_luminance():
    rng = np.random.default_rng(1)
    rgb = rng.random((20, 24, 3)).astype(np.float32)
    expected = focus_measure(0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2])
    np.testing.assert_allclose(focus_measure(rgb), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("measure", MEASURES)
def test_banded_kernel_matches_whole_frame(measure):
    # The engine computes bands with a halo; the halo must make them exact.
    rng = np.random.default_rng(2)
    frame = (rng.random((64, 40)) * 200).astype(np.float32)
    full = focus_measure(frame, measure, 7)
    halo = measure_halo(measure, 7)
    y0, y1 = 20, 36
    h0, h1 = y0 - halo, y1 + halo
    src = luminance(frame[h0:h1])
    out = np.empty_like(src)
    work = [np.empty_like(src) for _ in range(n_work_buffers(measure))]
    band = measure_into(src, measure, 7, out, work)[y0 - h0 : y1 - h0]
    np.testing.assert_allclose(band, full[y0:y1], rtol=1e-4, atol=1e-3 * float(full.max()))


# --------------------------------------------------------------------------------------
# sub-frame peak
# --------------------------------------------------------------------------------------
def test_peak_offset_recovers_gaussian_and_parabola_vertices():
    x = np.array([-1.0, 0.0, 1.0])
    for true in (-0.4, -0.1, 0.0, 0.25, 0.45):
        g = np.exp(-((x - true) ** 2) / (2 * 0.8**2))
        assert peak_offset(g[:1], g[1:2], g[2:], "gaussian")[0] == pytest.approx(true, abs=1e-5)
        p = 5.0 - (x - true) ** 2
        assert peak_offset(p[:1], p[1:2], p[2:], "parabolic")[0] == pytest.approx(true, abs=1e-5)
    # A zero neighbour makes the log fit impossible: falls back to the parabola.
    lcr = (np.array([0.0]), np.array([2.0]), np.array([1.0]))
    assert peak_offset(*lcr, "gaussian")[0] == pytest.approx(peak_offset(*lcr, "parabolic")[0])
    # Clamped to half a frame; no bend -> no offset.
    assert peak_offset(np.array([1.0]), np.array([1.0]), np.array([0.0]), "parabolic")[0] == -0.5
    assert peak_offset(np.array([1.0]), np.array([1.0]), np.array([1.0]), "gaussian")[0] == 0.0


# --------------------------------------------------------------------------------------
# depth
# --------------------------------------------------------------------------------------
def test_tilted_plane_depth_is_recovered(plane_stack):
    stack, truth = plane_stack
    res = depth_from_focus(stack)
    assert isinstance(res, FocusResult)
    assert res.units == "µm"
    assert res.index.dtype == res.depth.dtype == res.confidence.dtype == np.float32
    assert res.depth.shape == truth.shape
    # Bound: 0.15 frames (here 1 frame = 1 µm), half the 0.29-frame RMSE that rounding to
    # whole frames alone gives (1/sqrt(12)), so only a working sub-frame fit passes; it
    # leaves room for the texture's random local contrast and for the focus window
    # straddling a slope of 0.1 µm/px (measured: 0.03). A method off by one frame in 1 pixel
    # out of 50, or biased by a sixth of a frame, fails.
    assert rmse(res.depth, truth) < 0.15
    assert set(res.timings) >= {"focus", "fit", "refine", "aif", "total"}


def test_depth_in_um_for_decreasing_and_uneven_focus_positions():
    truth = tilted_plane(lo=19.0, hi=47.0)
    # decreasing drive, steps growing from 1.5 to 3.5 µm
    steps = np.linspace(1.5, 3.5, 15)
    focus = 50.0 - np.concatenate([[0.0], np.cumsum(steps)])[:15]
    frames = render_stack(truth, focus, blur_per_um=0.5, noise=0.01)
    res = depth_from_focus(FocalStack(frames, focus_um=focus))
    step = float(np.median(np.abs(np.diff(focus))))
    # Same 0.15-frame bound as the uniform case, in µm of the median step (measured: 0.04).
    assert rmse(res.depth, truth) < 0.15 * step
    # And without positions the depth is the frame index.
    res_idx = depth_from_focus(FocalStack(frames))
    assert res_idx.units == "frame"
    np.testing.assert_allclose(res_idx.depth, res_idx.index)


def test_subframe_interpolation_beats_integer_frames(plane_stack):
    stack, truth = plane_stack
    err = {
        m: rmse(depth_from_focus(stack, interpolation=m, refine=False).depth, truth)
        for m in ("none", "parabolic", "gaussian")
    }
    # Integer frames alone have a quantisation error of 1/sqrt(12) ≈ 0.29 frames.
    assert err["gaussian"] < 0.8 * err["none"], err
    assert err["parabolic"] < 0.9 * err["none"], err


@pytest.mark.parametrize("with_step", [False, True])
def test_refinement_reduces_error_on_a_noisy_stack_and_keeps_a_step(with_step):
    shape = (96, 96)
    truth = tilted_plane(shape, 3.0, 9.0)
    if with_step:
        truth[:, 48:] += 4.0  # a 4 µm step in the middle, inside continuous texture
    focus = np.arange(16, dtype=float)
    # Noise of 10 % of the texture range: enough for wrong peaks (outliers) in the raw map.
    frames = render_stack(truth, focus, noise=0.1, seed=3)
    stack = FocalStack(frames, focus_um=focus)
    raw = depth_from_focus(stack, refine=False)
    ref = depth_from_focus(stack, refine=True)
    # Measured 0.93 -> 0.15 µm (plane) and 1.01 -> 0.43 µm (step, which the refinement
    # smooths over a few pixels, hence the looser bound).
    assert rmse(ref.depth, truth) < (0.3 if not with_step else 0.6) * rmse(raw.depth, truth)
    # 8 px either side of the middle the depth difference is kept (truth 5.0 µm with the
    # step, 1.0 µm without), not smoothed away.
    jump = np.median(ref.depth[10:-10, 56] - ref.depth[10:-10, 40])
    assert jump == pytest.approx(truth[0, 56] - truth[0, 40], abs=0.5)


def test_refine_index_fills_low_confidence_pixels_from_confident_neighbours():
    d = np.full((40, 40), 5.0, np.float32)
    c = np.ones_like(d)
    d[18:22, 18:22] = 30.0  # wrong and unsure
    c[18:22, 18:22] = 0.0
    guide = np.full_like(d, 0.5)
    out = refine_index(d, c, guide, radius=4)
    assert np.abs(out[18:22, 18:22] - 5.0).max() < 1.0


# --------------------------------------------------------------------------------------
# confidence
# --------------------------------------------------------------------------------------
def test_confidence_in_unit_range_and_low_on_flat_region():
    shape = (96, 96)
    amp = np.ones(shape)
    amp[:, 56:] = 0.0  # right part: no texture at all
    truth = np.full(shape, 6.0)
    frames = render_stack(truth, np.arange(12.0), texture_amp=amp, noise=0.01)
    res = depth_from_focus(FocalStack(frames))
    c = res.confidence
    assert c.min() >= 0.0 and c.max() <= 1.0
    textured, flat = np.median(c[8:-8, 8:40]), np.median(c[8:-8, 72:-4])
    assert flat < 0.2 and textured > 0.5 and textured > 3 * flat, (textured, flat)
    # a constant stack: confidence 0, no NaN
    res0 = depth_from_focus(FocalStack(np.full((4, 16, 16), 7, np.uint8)))
    assert np.isfinite(res0.depth).all() and (res0.confidence == 0).all()


# --------------------------------------------------------------------------------------
# all-in-focus image
# --------------------------------------------------------------------------------------
def _sharpness(img: np.ndarray) -> float:
    return float(focus_measure(luminance(img), "sml")[6:-6, 6:-6].mean())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("blend", [False, True])
def test_aif_is_sharper_than_every_frame_and_keeps_dtype(plane_stack, dtype, blend):
    stack, truth = plane_stack
    frames = render_stack(truth, stack.focus_um, noise=0.01, dtype=dtype)
    res = depth_from_focus(FocalStack(frames, focus_um=stack.focus_um), aif_blend=blend)
    assert res.aif.dtype == frames.dtype and res.aif.shape == frames.shape[1:]
    best_frame = max(_sharpness(f) for f in frames)
    assert _sharpness(res.aif) > 1.3 * best_frame


def test_aif_keeps_colour_and_takes_pixels_from_the_input():
    truth = tilted_plane((64, 64))
    focus = np.arange(15.0)
    frames = render_stack(truth, focus, rgb=True)
    res = depth_from_focus(FocalStack(frames, focus_um=focus))
    assert res.aif.shape == (64, 64, 3) and res.aif.dtype == np.uint8
    # No blending: every pixel is copied from the frame at the rounded index.
    k = np.clip(np.rint(res.index).astype(int), 0, len(focus) - 1)
    np.testing.assert_array_equal(res.aif, np.take_along_axis(frames, k[None, ..., None], 0)[0])


# --------------------------------------------------------------------------------------
# callbacks, threads
# --------------------------------------------------------------------------------------
def test_progress_reaches_total_and_cancel_raises(plane_stack):
    stack, _ = plane_stack
    calls: list[tuple[int, int]] = []
    depth_from_focus(stack, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == 2 * stack.n_frames
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    seen = []

    def cancel() -> bool:
        seen.append(1)
        return len(seen) > 3

    with pytest.raises(Cancelled):
        depth_from_focus(stack, cancel=cancel)


def test_bands_and_threads_do_not_change_the_result(plane_stack, monkeypatch):
    import napari_gplws.dff._engine as focus_module

    stack, _ = plane_stack
    whole = depth_from_focus(stack, threads=1)
    # Force many thin bands (the engine's halo must make them seamless) on 3 threads.
    monkeypatch.setattr(focus_module, "_BAND_PIXELS", 96 * 8)
    monkeypatch.setattr(focus_module, "_MIN_BAND_ROWS", 8)
    banded = depth_from_focus(stack, threads=3)
    np.testing.assert_allclose(banded.index, whole.index, atol=1e-4)
    np.testing.assert_allclose(banded.confidence, whole.confidence, atol=1e-5)
    assert np.mean(banded.aif != whole.aif) < 1e-3
