"""Tests of the Laplacian-pyramid all-in-focus fusion (napari_gplws.dff.fusion)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from napari_gplws.api import reconstruct
from napari_gplws.dff import fusion as fusion_module
from napari_gplws.dff.fusion import fuse_pyramid, pyramid_levels
from napari_gplws.errors import StackError
from napari_gplws.sim.focus_stacks import synthetic_stack


def _psnr(aif: np.ndarray, ideal: np.ndarray) -> float:
    a = aif.astype(np.float64) / np.iinfo(aif.dtype).max
    if a.ndim == 3 and ideal.ndim == 2:
        a = a.mean(axis=-1)
    m = 12
    return float(10 * np.log10(1.0 / np.mean((a - ideal)[m:-m, m:-m] ** 2)))


def _texture(s) -> np.ndarray:
    return np.asarray(s.texture, np.float64)


def test_identical_frames_come_back_unchanged():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    out = fuse_pyramid(np.stack([frame] * 5))
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.abs(out.astype(int) - frame).max() <= 1  # rounding only


def test_takes_each_half_from_the_frame_where_it_is_sharp():
    rng = np.random.default_rng(1)
    sharp = rng.random((96, 96)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(sharp, 4.0).astype(np.float32)
    left = sharp.copy()
    left[:, 48:] = blurred[:, 48:]
    right = blurred.copy()
    right[:, 48:] = sharp[:, 48:]
    out = fuse_pyramid(np.stack([left, right]))
    err_fused = np.abs(out - sharp)[8:-8, 8:40].mean() + np.abs(out - sharp)[8:-8, 56:-8].mean()
    err_either = min(np.abs(left - sharp)[8:-8, 56:-8].mean(), np.abs(right - sharp)[8:-8, 8:40].mean())
    assert err_fused < 0.25 * err_either


@pytest.mark.parametrize(("rgb", "bits"), [(False, 8), (True, 16)])
def test_as_sharp_as_selection_on_a_smooth_scene_colour_and_16_bit(rgb, bits):
    s = synthetic_stack(family="smooth", n_frames=14, shape=(160, 160), seed=3, rgb=rgb, bit_depth=bits)
    sel = reconstruct(s.stack, method="sml", align="off")
    pyr = reconstruct(s.stack, method="sml", align="off", fusion="pyramid")
    assert pyr.aif.dtype == sel.aif.dtype and pyr.aif.shape == sel.aif.shape
    assert pyr.parameters["fusion"] == "pyramid" and pyr.timings["fusion"] > 0
    assert _psnr(pyr.aif, _texture(s)) >= _psnr(sel.aif, _texture(s)) - 0.5
    if rgb:  # colour kept: the channels are not collapsed to grey
        assert np.abs(pyr.aif[..., 0].astype(int) - pyr.aif[..., 2]).mean() > 1.0
    # reversed focus order gives the same picture (up to the rounding of float sums)
    rev = s.stack.with_(frames=s.stack.frames[::-1].copy(), focus_um=s.stack.focus_um[::-1].copy())
    assert np.abs(fuse_pyramid(rev.frames).astype(np.int64) - pyr.aif).max() <= 1


def test_options_out_of_range_are_refused():
    frames = np.zeros((3, 32, 32), np.uint8)
    with pytest.raises(StackError, match="sharpness"):
        fuse_pyramid(frames, sharpness=0.5)
    with pytest.raises(StackError, match="levels"):
        fuse_pyramid(frames, levels=40)
    with pytest.raises(StackError, match="fusion"):
        reconstruct(frames, method="sml", fusion="wavelet")
    assert pyramid_levels((2048, 1536)) == 7 and pyramid_levels((20, 20)) == 1


def test_weights_do_not_underflow_on_faint_frames():
    """Band energies of faint frames raised to a high power must not vanish in float32."""
    s = synthetic_stack(family="smooth", n_frames=10, shape=(96, 96), seed=5, bit_depth=32)
    frames = s.stack.frames.astype(np.float32)
    ref = fuse_pyramid(frames, sharpness=16)
    faint = fuse_pyramid(frames * np.float32(1e-4), sharpness=16)
    assert np.isfinite(faint).all()
    np.testing.assert_allclose(faint, ref * 1e-4, rtol=1e-3, atol=1e-7)


def test_reconstruct_blends_beside_the_engine_and_gives_the_same_image():
    """The blend runs in a background thread while the depth engine works: the image is the
    one ``fuse_pyramid`` gives, and its own time is reported."""
    from napari_gplws.api import reconstruct

    s = synthetic_stack(family="waves", n_frames=8, shape=(96, 80), seed=5).stack
    r = reconstruct(s, method="sml", align="off")
    np.testing.assert_array_equal(r.aif, fuse_pyramid(s.frames))
    assert r.parameters["fusion"] == "pyramid" and 0 < r.timings["fusion"] < r.timings["total"]


def test_a_failed_or_cancelled_engine_stops_the_background_blend(monkeypatch):
    """When the depth engine raises, the blend is told to stop and waited for, and the
    engine's error is the one the caller sees; a cancel reaches the blend too."""
    import threading

    from napari_gplws._shared.callbacks import Cancelled
    from napari_gplws.api import reconstruct
    from napari_gplws.dff import classical
    from napari_gplws.dff.fusion import BackgroundFusion

    s = synthetic_stack(family="plane", n_frames=6, shape=(64, 64), seed=1).stack
    frames_seen = []
    started = threading.Event()
    real = fusion_module.fuse_pyramid

    def slow_blend(frames, cancel=None, **kw):
        def watch():
            started.set()
            frames_seen.append(1)
            return cancel()
        return real(frames, cancel=watch, **kw)

    monkeypatch.setattr(fusion_module, "fuse_pyramid", slow_blend)

    def broken_engine(*a, **k):
        started.wait(5)
        raise RuntimeError("engine broke")

    monkeypatch.setattr(classical, "depth_from_focus", broken_engine)
    with pytest.raises(RuntimeError, match="engine broke"):
        reconstruct(s, method="sml", align="off")
    assert 1 <= len(frames_seen) < s.frames.shape[0]  # stopped before the last frame

    blend = BackgroundFusion(s.frames, cancel=lambda: True)
    with pytest.raises(Cancelled):
        blend.result()
    blend.stop()  # stopping a finished blend is harmless
