"""The CPU fast path of GPLWS-Net: the same numbers as the network, balanced tiles and
fine-grained progress."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import itertools

from napari_gplws.dff import _tiles
from napari_gplws.dff._tile_net import TTA_VIEWS, tile_outputs
from napari_gplws.dff._tiles import balanced_tile, focus_prior, pad_tile, space_to_depth, tile_grid
from napari_gplws.dff.network import DEFAULT_TTA, predict_depth
from napari_gplws.models.gplws import (
    GPLWSConfig,
    GPLWSNet,
    _pad_hw,
    _space_to_depth,
    cpu_has_bf16,
    full_resolution_stem,
    onednn_features,
)


@pytest.fixture(scope="module")
def net():
    """A small fused network with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = GPLWSNet(GPLWSConfig(widths=(8, 8, 16, 16)))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
    return model.reparameterize()


@pytest.mark.parametrize("backend", ["cv2", "scipy"])
@pytest.mark.parametrize("shape", [(5, 40, 37), (7, 64, 96), (3, 256, 256)])
def test_focus_prior_equals_the_networks(net, backend, shape) -> None:
    if backend == "cv2":
        pytest.importorskip("cv2")
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    with torch.inference_mode():
        ref = net.focus_energy(torch.from_numpy(x)[None, None])[0, 0].numpy()
    got = focus_prior(x, backend)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_padding_and_space_to_depth_equal_the_networks(net) -> None:
    x = np.random.default_rng(2).random((4, 50, 70), dtype=np.float32)
    xt = torch.from_numpy(x)[None, None]
    np.testing.assert_array_equal(pad_tile(x, 32), _pad_hw(xt, 14, 26)[0, 0].numpy())
    xp = pad_tile(x, 32)
    with torch.inference_mode():
        xpt = torch.from_numpy(xp)[None, None]
        ref = _space_to_depth(torch.cat([xpt, net.focus_energy(xpt)], 1), 4)[0].numpy()
    np.testing.assert_allclose(space_to_depth([xp, focus_prior(xp)], 4), ref, atol=1e-4)


def test_onednn_features_equal_the_networks(net) -> None:
    s = torch.rand(2, 32, 6, 16, 24)
    with torch.inference_mode():
        ref = net.forward_features(s)
        fp32 = onednn_features(net, s)
        bf16 = onednn_features(net, s, bf16=True)
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == ref.shape
    assert (fp32 - ref).abs().max() < 1e-4
    assert (bf16 - ref).abs().max() < 0.05 * ref.abs().max()
    assert not torch.equal(bf16, fp32)  # bfloat16 really ran


def test_full_resolution_stem_equals_space_to_depth_then_stem(net) -> None:
    """The rearranged kernel reads the planes directly: the same numbers as the stem on the
    space-to-depth copy, also at the borders (padding of one cell = s pixels)."""
    planes = torch.rand(2, 2, 5, 64, 96)
    with torch.inference_mode():
        ref = net.stem(_space_to_depth(planes, 4))
        got = full_resolution_stem(net)(planes)
        full = onednn_features(net, planes, full_resolution=True)
        plain = net.forward_features(_space_to_depth(planes, 4))
    assert got.shape == ref.shape == (2, 8, 5, 16, 24)
    assert (got - ref).abs().max() < 1e-5 * max(1.0, float(ref.abs().max()))
    assert (full - plain).abs().max() < 1e-4 * max(1.0, float(plain.abs().max()))
    unfused = GPLWSNet(GPLWSConfig(widths=(8, 8, 16, 16)))
    with pytest.raises(ValueError, match="fused"):
        full_resolution_stem(unfused)


def test_no_all_in_focus_when_the_caller_fuses_it_otherwise(net, tmp_path) -> None:
    from napari_gplws.models.registry import save_gplws
    from napari_gplws.stack import FocalStack

    path = save_gplws(net, tmp_path / "small.safetensors", {"name": "small"})
    frames = (np.random.default_rng(6).random((6, 70, 90)) * 255).astype(np.uint8)
    stack = FocalStack(frames)
    none = predict_depth(stack, device="cpu", weights=path, aif_mode="none")
    attention = predict_depth(stack, device="cpu", weights=path)
    assert none.aif is None and attention.aif.shape == (70, 90)
    np.testing.assert_array_equal(none.depth, attention.depth)
    np.testing.assert_array_equal(none.confidence, attention.confidence)
    with pytest.raises(Exception, match="aif_mode"):
        predict_depth(stack, device="cpu", weights=path, aif_mode="blend")


@pytest.mark.parametrize("tta", [1, 2, 8])
@pytest.mark.parametrize("shape", [(6, 64, 96), (5, 50, 70)])  # multiple of 32, and padded
def test_cpu_fast_path_equals_the_plain_network(net, tta, shape) -> None:
    """Every view, shared prior or not, lands back in place with the network's numbers."""
    rng = np.random.default_rng(3)
    x = rng.random((2, *shape), dtype=np.float32)
    raw = (x * 200 + 10).astype(np.float32)
    rel = np.linspace(0.0, 7.0, shape[0])
    views = TTA_VIEWS[tta]
    with torch.inference_mode():
        fast = tile_outputs(net, x, views, "cpu", None, True, rel, raw=raw, luma_range=(10.0, 200.0))
        plain = tile_outputs(net, x, views, "cpu", None, False, rel, raw=raw, luma_range=(10.0, 200.0))
    for key in ("index", "depth", "confidence", "aif"):
        assert fast[key].shape == plain[key].shape == (2, *shape[1:])
        np.testing.assert_allclose(fast[key].numpy(), plain[key].numpy(), atol=2e-4 * max(1.0, float(plain[key].abs().max())))


def test_rgb_all_in_focus_on_the_fast_path(net) -> None:
    rng = np.random.default_rng(4)
    raw = rng.random((1, 5, 40, 36, 3), dtype=np.float32) * 255
    x = raw @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    with torch.inference_mode():
        fast = tile_outputs(net, x, TTA_VIEWS[2], "cpu", None, True, raw=raw, luma_range=(0.0, 255.0))
        plain = tile_outputs(net, x, TTA_VIEWS[2], "cpu", None, False, raw=raw, luma_range=(0.0, 255.0))
    assert fast["aif"].shape == (1, 40, 36, 3)
    np.testing.assert_allclose(fast["aif"].numpy(), plain["aif"].numpy(), atol=0.05)


def test_balanced_tiles_cover_with_few_pixels_twice() -> None:
    for length in (700, 1000, 1536, 2048, 2592):
        side = balanced_tile(length, 736, 96, 32)
        spans = tile_grid(length, side, 96, 32)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(b - a >= 96 for (_, b), (a, _) in itertools.pairwise(spans))
        assert sum(b - a for a, b in spans) / length < 1.2  # the old grid: up to 1.4
        assert side <= 736 + 32
    assert balanced_tile(500, 736, 96, 32) == 500


def test_auto_tiles_of_a_camera_frame_stay_small_enough_for_frequent_progress() -> None:
    """30×2048×2048: every tile holds at most MAX_CPU_TILE_VOXELS, so with 2 views the dock
    gets at least 18 progress steps (one per view of a tile, about every half second)."""
    side = _tiles.auto_tile_size(30, "cpu", budget_bytes=1 << 40)
    assert 30 * side * side <= _tiles.MAX_CPU_TILE_VOXELS
    ty = balanced_tile(2048, side, 96, 32)
    spans = tile_grid(2048, ty, 96, 32)
    assert all(30 * (b - a) ** 2 <= 1.1 * _tiles.MAX_CPU_TILE_VOXELS for a, b in spans)
    assert len(spans) ** 2 * 2 >= 18


def test_progress_moves_once_per_view_of_every_tile(net, tmp_path, monkeypatch) -> None:
    from napari_gplws.models.registry import save_gplws
    from napari_gplws.sim.focus_stacks import synthetic_stack

    weights = str(save_gplws(net, tmp_path / "w.safetensors", {"name": "small"}))
    s = synthetic_stack(family="waves", n_frames=8, shape=(300, 330), seed=2).stack
    cap = 8 * 128 * 128  # a large stack in miniature: tiles of at most 128² px
    monkeypatch.setattr(_tiles, "MAX_CPU_TILE_VOXELS", cap)
    calls: list[tuple[int, int]] = []
    r = predict_depth(s, device="cpu", weights=weights, tta=2, progress=lambda d, t: calls.append((d, t)))
    tiles = r.params["tiles"]
    assert tiles >= 4 and r.params["tile_size"] <= max(192, math.isqrt(cap // 8)) + 32
    assert len(calls) == 2 * tiles  # one step per view of each tile
    assert [d for d, _ in calls] == list(range(1, 2 * tiles + 1))
    assert {t for _, t in calls} == {2 * tiles}
    # the second run gives the same result and the same steps
    calls2: list[tuple[int, int]] = []
    r2 = predict_depth(s, device="cpu", weights=weights, tta=2, progress=lambda d, t: calls2.append((d, t)))
    assert calls2 == calls
    np.testing.assert_array_equal(r2.depth, r.depth)


def test_cpu_default_precision_follows_the_cpu(net, tmp_path) -> None:
    from napari_gplws.models.registry import save_gplws
    from napari_gplws.sim.focus_stacks import synthetic_stack

    weights = str(save_gplws(net, tmp_path / "w.safetensors", {"name": "small"}))
    s = synthetic_stack(family="waves", n_frames=6, shape=(64, 64), seed=2).stack
    r = predict_depth(s, device="cpu", weights=weights)
    assert r.params["precision"] == ("bfloat16" if cpu_has_bf16() else "fp32")
    assert r.params["runtime"] == "onednn" and r.params["tta"] == DEFAULT_TTA == 1
