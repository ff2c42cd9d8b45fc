"""Tests of the synthetic focus-stack generator (napari_gplws.sim.focus_stacks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_gplws.errors import FocusPositionError
from napari_gplws.sim import focus_stacks as synth
from napari_gplws.sim import textures
from napari_gplws.sim.defocus_render import defocus_render
from napari_gplws.sim.focus_stacks import (
    SynthError,
    SyntheticStack,
    SynthParams,
    random_training_stack,
    synthesize,
    synthetic_stack,
)
from napari_gplws.sim.heights import HEIGHT_FAMILIES, height_map
from napari_gplws.sim.textures import SKIMAGE_TEXTURES, TEXTURES, available_textures, texture_image
from napari_gplws.stack import FocalStack, position_to_index

SMALL = dict(n_frames=8, shape=(48, 56))
NOISELESS = dict(photons=None, read_noise=0.0, bit_depth=32)


def sharpest_frame(frames: np.ndarray, window: int = 9) -> np.ndarray:
    """Index of the frame with the largest local variance, per pixel (independent of synth)."""
    f = frames.astype(np.float64)
    if f.ndim == 4:
        f = f.mean(axis=-1)
    mean = ndi.uniform_filter(f, size=(1, window, window))
    mean_sq = ndi.uniform_filter(f * f, size=(1, window, window))
    return np.argmax(mean_sq - mean * mean, axis=0)


def fine_texture(shape: tuple[int, int], seed: int = 5) -> np.ndarray:
    """White noise lightly smoothed: strong focus cue everywhere."""
    rng = np.random.default_rng(seed)
    return np.clip(ndi.gaussian_filter(rng.random(shape), 0.7) * 2.5 - 0.75, 0, 1)


# --- determinism ------------------------------------------------------------------------
def test_same_seed_same_arrays_different_seed_differs():
    a = synthetic_stack(family="pits", seed=3, **SMALL)
    b = synthetic_stack(family="pits", seed=3, **SMALL)
    c = synthetic_stack(family="pits", seed=4, **SMALL)
    np.testing.assert_array_equal(a.stack.frames, b.stack.frames)
    np.testing.assert_array_equal(a.depth_um, b.depth_um)
    np.testing.assert_array_equal(a.texture, b.texture)
    np.testing.assert_array_equal(a.stack.focus_um, b.stack.focus_um)
    assert not np.array_equal(a.depth_um, c.depth_um)
    assert not np.array_equal(a.stack.frames, c.stack.frames)


def test_noise_settings_do_not_change_surface_or_texture():
    # Height, texture and noise use independent random streams.
    a = synthetic_stack(seed=11, **SMALL)
    b = synthetic_stack(seed=11, photons=200.0, read_noise=0.02, **SMALL)
    np.testing.assert_array_equal(a.depth_um, b.depth_um)
    np.testing.assert_array_equal(a.texture, b.texture)
    assert not np.array_equal(a.stack.frames, b.stack.frames)


# --- shapes, dtypes, metadata -----------------------------------------------------------
@pytest.mark.parametrize(
    "bit_depth, rgb, dtype",
    [
        (8, False, np.uint8),
        (16, False, np.uint16),
        (32, False, np.float32),
        (8, True, np.uint8),
        (16, True, np.uint16),
        (32, True, np.float32),
    ],
)
def test_shapes_and_dtypes(bit_depth, rgb, dtype):
    s = synthetic_stack(bit_depth=bit_depth, rgb=rgb, texture="noise", seed=1, **SMALL)
    assert isinstance(s, SyntheticStack) and isinstance(s.stack, FocalStack)
    expected = (8, 48, 56, 3) if rgb else (8, 48, 56)
    assert s.stack.frames.shape == expected
    assert s.stack.frames.dtype == dtype
    assert s.depth_um.shape == (48, 56) and s.depth_um.dtype == np.float32
    assert s.texture.shape == expected[1:] and s.texture.dtype == np.float32
    assert s.stack.units == "µm" and s.stack.pixel_size_um == 1.0
    if dtype == np.float32:
        assert s.stack.frames.min() >= 0.0 and s.stack.frames.max() <= 1.0
    else:  # the signal uses a good part of the integer range
        assert s.stack.frames.max() > 0.5 * np.iinfo(dtype).max


def test_metadata_records_parameters_and_is_json():
    s = synthetic_stack(family="caps", texture="coins", seed=9, pixel_size_um=0.25, **SMALL)
    meta = s.stack.metadata
    json.dumps(meta)  # plain JSON types only
    assert s.stack.source == "synthetic:caps:9"
    assert meta["family"] == "caps" and meta["texture"] == "coins" and meta["seed"] == 9
    assert meta["n_frames"] == 8 and meta["shape"] == [48, 56]
    assert meta["depth_range_um"] == [0.0, 40.0] and meta["pixel_size_um"] == 0.25
    assert meta["focus_um"] == s.stack.focus_um.tolist()
    assert s.params.texture == "coins"


def test_random_texture_name_is_recorded():
    s = synthetic_stack(seed=2, **SMALL)
    assert s.stack.metadata["texture"] in TEXTURES
    assert s.params.texture == s.stack.metadata["texture"]


# --- ground truth -----------------------------------------------------------------------
@pytest.mark.parametrize("family", HEIGHT_FAMILIES)
def test_each_family_renders_with_ground_truth_in_focus_range(family):
    s = synthetic_stack(family=family, depth_range_um=(5.0, 25.0), seed=21, **SMALL)
    d, f = s.depth_um, s.stack.focus_um
    assert np.isfinite(d).all()
    assert d.min() >= 5.0 - 1e-4 and d.max() <= 25.0 + 1e-4
    assert f.min() < d.min() and d.max() < f.max()  # every pixel is in focus somewhere
    assert np.all(np.diff(f) > 0)
    assert d.max() - d.min() > 1.0  # the surface is not flat
    assert s.stack.source == f"synthetic:{family}:21"


@pytest.mark.parametrize("family", HEIGHT_FAMILIES)
def test_height_map_is_normalised(family):
    h = height_map(family, (40, 30), np.random.default_rng(0))
    assert h.shape == (40, 30) and h.dtype == np.float64
    assert h.min() == 0.0 and h.max() == 1.0


def test_height_map_options_and_errors():
    h = height_map("plane", (10, 10), np.random.default_rng(0), angle=0.0)
    np.testing.assert_allclose(h[0], np.linspace(0, 1, 10))  # increases along x only
    np.testing.assert_allclose(h[:, 3], h[0, 3])
    with pytest.raises(SynthError, match="Unknown height-map family"):
        height_map("volcano", (10, 10), np.random.default_rng(0))
    with pytest.raises(SynthError, match="Bad option"):
        height_map("plane", (10, 10), np.random.default_rng(0), n_levels=3)


def test_invert_height_mirrors_depth():
    a = synthetic_stack(family="caps", seed=4, **SMALL)
    b = synthetic_stack(family="caps", seed=4, invert_height=True, **SMALL)
    np.testing.assert_allclose(a.depth_um + b.depth_um, 40.0, atol=1e-4)


# --- the optics -------------------------------------------------------------------------
def test_flat_surface_is_a_plain_gaussian_blur():
    # Constant depth: every frame must equal gaussian_filter(mode="reflect") with
    # sigma = sqrt(floor² + (k·|z - f|)²).
    tex = fine_texture((40, 52))
    depth = np.full((40, 52), 10.0)
    focus = np.array([10.0, 12.0, 4.0, 30.0])
    out = defocus_render(tex, depth, focus, blur_px_per_um=0.5, blur_floor_px=1.0)
    for frame, f in zip(out, focus, strict=True):
        sigma = np.sqrt(1.0 + (0.5 * abs(f - 10.0)) ** 2)
        ref = ndi.gaussian_filter(tex, sigma, mode="reflect", truncate=6.0)
        np.testing.assert_allclose(frame, ref, atol=2e-3)


def test_rgb_render_blurs_each_channel_like_gray():
    tex = fine_texture((32, 32))
    rgb = np.stack([tex, 1 - tex, 0.5 * tex], axis=-1)
    depth = np.add.outer(np.arange(32.0), np.arange(32.0)) / 62 * 20
    focus = np.linspace(0, 20, 5)
    out = defocus_render(rgb, depth, focus, blur_px_per_um=0.4)
    assert out.shape == (5, 32, 32, 3)
    gray = defocus_render(tex, depth, focus, blur_px_per_um=0.4)
    np.testing.assert_allclose(out[..., 0], gray, atol=1e-5)


def _agreement(s: SyntheticStack, margin: int = 12) -> float:
    """Fraction of interior pixels whose sharpest frame is within 1 frame of the truth."""
    best = sharpest_frame(s.stack.frames)
    truth = position_to_index(s.depth_um, s.stack.focus_um)
    err = np.abs(best - truth)[margin:-margin, margin:-margin]
    return float(np.mean(err <= 1.0))


def test_sharpest_frame_matches_ground_truth_on_a_plane():
    s = synthetic_stack(
        family="plane", texture=fine_texture((96, 96)), n_frames=20, shape=(96, 96), seed=0
    )
    assert _agreement(s) > 0.9


def test_decreasing_focus_positions_reverse_the_frames():
    f = synth._default_focus(0.0, 40.0, 12)
    kw = dict(
        family="waves",
        texture=fine_texture((64, 64)),
        n_frames=12,
        shape=(64, 64),
        seed=8,
        **NOISELESS,
    )
    up = synthetic_stack(focus_um=f, **kw)
    down = synthetic_stack(focus_um=f[::-1], **kw)
    assert np.all(np.diff(down.stack.focus_um) < 0)
    np.testing.assert_array_equal(up.depth_um, down.depth_um)
    np.testing.assert_allclose(down.stack.frames, up.stack.frames[::-1], atol=1e-5)
    assert _agreement(down) > 0.75  # waves are steep here: 12 frames of 3.6 µm


def test_uneven_decreasing_focus_positions():
    steps = np.linspace(1.0, 3.0, 19)
    focus = 42.0 - np.concatenate([[0.0], np.cumsum(steps)])  # 42 -> 2 µm, uneven
    s = synthetic_stack(
        family="plane",
        texture=fine_texture((96, 96)),
        n_frames=20,
        shape=(96, 96),
        depth_range_um=(5.0, 39.0),
        focus_um=focus,
        seed=1,
    )
    np.testing.assert_allclose(s.stack.focus_um, focus)
    assert _agreement(s) > 0.85


def test_bad_parameters_raise_readable_errors():
    with pytest.raises(SynthError, match="family"):
        synthetic_stack(family="spikes", **SMALL)
    with pytest.raises(SynthError, match="texture"):
        synthetic_stack(texture="lena", **SMALL)
    with pytest.raises(SynthError, match="at least 2 frames"):
        synthetic_stack(n_frames=1, shape=(16, 16))
    with pytest.raises(SynthError, match="bit_depth"):
        synthetic_stack(bit_depth=12, **SMALL)
    with pytest.raises(SynthError, match="depth_range_um"):
        synthetic_stack(depth_range_um=(10.0, 10.0), **SMALL)
    with pytest.raises(FocusPositionError):
        synthetic_stack(focus_um=[0, 1, 2, 2, 3, 4, 5, 6], **SMALL)
    with pytest.raises(FocusPositionError):
        synthetic_stack(focus_um=[0, 1, 2], **SMALL)


# --- textures ---------------------------------------------------------------------------
def test_bundled_textures_ship_with_scikit_image():
    # Every image texture is a file inside the installed scikit-image package: no download.
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for name in SKIMAGE_TEXTURES:
        assert (folder / textures._SKIMAGE_FILES[name][1]).is_file(), name
    assert set(available_textures()) == set(TEXTURES)


@pytest.mark.parametrize("name", TEXTURES)
def test_each_texture(name):
    rng = np.random.default_rng(0)
    gray = texture_image(name, (40, 48), rng)
    rgb = texture_image(name, (40, 48), rng, rgb=True)
    assert gray.shape == (40, 48) and rgb.shape == (40, 48, 3)
    for img in (gray, rgb):
        assert img.dtype == np.float32 and img.min() >= 0.0 and img.max() <= 1.0
    assert gray.std() > 0.02  # some texture


def test_texture_views_vary_with_the_generator():
    a = texture_image("camera", (32, 32), np.random.default_rng(1))
    b = texture_image("camera", (32, 32), np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_texture_array_override():
    tex = (fine_texture((48, 56)) * 255).astype(np.uint8)
    s = synthetic_stack(texture=tex, intensity_range=(0.0, 1.0), seed=0, **SMALL)
    np.testing.assert_allclose(s.texture, tex / 255.0, atol=1e-6)
    assert s.stack.metadata["texture"] == "array"


# --- noise ------------------------------------------------------------------------------
def test_noise_statistics():
    # Mean preserved; variance = signal/photons + read² (both below and above the
    # Poisson/Gaussian switch at 30 expected electrons).
    rng = np.random.default_rng(0)
    for level, photons in ((0.5, 2000.0), (0.01, 1000.0)):  # 1000 and 10 electrons
        signal = np.full(200_000, level, np.float32)
        out = synth._add_noise(signal, photons, 0.004, rng)
        expected_var = level / photons + 0.004**2
        assert abs(out.mean() - level) < 4 * np.sqrt(expected_var / signal.size) + 1e-4
        assert out.var() == pytest.approx(expected_var, rel=0.05)


# --- random configurations --------------------------------------------------------------
def test_params_sample_is_valid_varied_and_deterministic():
    a = [SynthParams.sample(np.random.default_rng(i), shape=(40, 40)) for i in range(40)]
    b = [SynthParams.sample(np.random.default_rng(i), shape=(40, 40)) for i in range(40)]
    assert a == b
    assert {p.family for p in a} == set(HEIGHT_FAMILIES)
    assert {p.bit_depth for p in a} == {8, 16, 32}
    assert {p.rgb for p in a} == {True, False}
    assert all(8 <= p.n_frames <= 32 for p in a)
    assert any(p.focus_um[0] > p.focus_um[-1] for p in a)
    for p in a:
        f = np.asarray(p.focus_um)
        assert min(f) <= min(p.depth_range_um) and max(p.depth_range_um) <= max(f)
        synth._validate(p)


def test_random_training_stack_renders():
    s = random_training_stack(np.random.default_rng(123), shape=(40, 40))
    assert s.stack.frames.shape[1:3] == (40, 40)
    assert s.stack.n_frames == s.params.n_frames
    again = synthesize(s.params, np.random.default_rng(7))
    assert again.stack.frames.shape == s.stack.frames.shape


# --- speed (reported, not asserted) -----------------------------------------------------
def test_render_time_is_reported(record_property):
    synthetic_stack(shape=(64, 64), n_frames=5)  # imports and caches
    t0 = time.perf_counter()
    s = synthetic_stack(n_frames=20, shape=(256, 256), seed=0)
    seconds = time.perf_counter() - t0
    record_property("synthetic_stack_20x256x256_s", seconds)
    print(f"synthetic_stack 20×256×256: {seconds:.3f} s")
    assert s.stack.frames.shape == (20, 256, 256)
