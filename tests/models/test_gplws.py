"""GPLWS-Net: shapes, structural re-parameterisation, depth maths, weights files."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws.errors import ModelError
from napari_gplws.models.gplws import (
    GPLWSConfig,
    GPLWSNet,
    RepConv3d,
    count_parameters,
    depth_from_logits,
    normalize_stack,
)
from napari_gplws.models.registry import load_gplws, model_card, save_gplws


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics so that fusing is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)


@pytest.mark.parametrize(
    "c,n,h,w",
    [(1, 2, 5, 7), (1, 3, 16, 16), (3, 7, 33, 50), (1, 20, 31, 17), (1, 100, 19, 23)],
)
def test_output_shape_any_n_and_size(c: int, n: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    net = GPLWSNet().eval()
    with torch.inference_mode():
        logits = net(torch.rand(2, c, n, h, w))
    assert logits.shape == (2, n, h, w)
    assert torch.isfinite(logits).all()


def test_rejects_bad_channel_count() -> None:
    with pytest.raises(ValueError, match="C = 1 or 3"):
        GPLWSNet()(torch.rand(1, 2, 4, 16, 16))


def test_repconv_identity_branch_with_groups_fuses_exactly() -> None:
    torch.manual_seed(1)
    conv = RepConv3d(8, 8, 3, groups=4)
    _randomise_bn(conv)
    conv.eval()
    x = torch.randn(2, 8, 5, 9, 11)
    with torch.no_grad():
        a = conv(x)
        conv.fuse()
        b = conv(x)
    assert conv.fused is not None and conv.bn_id is None
    assert (a - b).abs().max().item() <= 1e-5


def test_reparameterize_same_output_fewer_parameters() -> None:
    torch.manual_seed(2)
    net = GPLWSNet()
    # one optimisation step so that weights and BN statistics are not at their init
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    net(torch.rand(2, 1, 6, 32, 32)).pow(2).mean().backward()
    opt.step()
    _randomise_bn(net, 3)
    net.eval()
    x = torch.rand(1, 1, 9, 45, 70)
    with torch.no_grad():
        before = net(x)
        p_before = count_parameters(net)
        net.reparameterize()
        after = net(x)
    assert net.is_fused
    assert count_parameters(net) < p_before
    assert (before - after).abs().max().item() <= 1e-4


def test_parameter_count_is_lightweight() -> None:
    net = GPLWSNet()
    assert 20_000 < count_parameters(net) < 600_000


def test_depth_from_logits_units_follow_positions() -> None:
    n = 5
    positions = torch.tensor([10.0, 12.0, 15.0, 16.0, 20.0])  # uneven, µm
    logits = torch.full((1, n, 2, 2), -30.0)
    logits[0, 2, 0, 0] = 30.0  # certain: frame 2
    logits[0, :, 1, 1] = 0.0  # uniform
    depth, conf, prob = depth_from_logits(logits, positions)
    assert depth[0, 0, 0].item() == pytest.approx(15.0, abs=1e-4)
    assert depth[0, 1, 1].item() == pytest.approx(float(positions.mean()), abs=1e-4)
    assert conf[0, 0, 0].item() > 0.99 and conf[0, 1, 1].item() < 0.01
    assert torch.allclose(prob.sum(1), torch.ones(1, 2, 2))
    idx, _, _ = depth_from_logits(logits)
    assert idx[0, 0, 0].item() == pytest.approx(2.0, abs=1e-4)


def test_normalize_stack_same_for_8_and_16_bit() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((1, 1, 4, 32, 32))
    u8 = torch.from_numpy(np.round(base * 200 + 20).astype(np.uint8).astype(np.float32))
    u16 = torch.from_numpy(np.round(base * 200 + 20).astype(np.float32) * 257.0)
    a, b = normalize_stack(u8), normalize_stack(u16)
    assert torch.allclose(a, b, atol=1e-5)
    assert 0.0 <= float(torch.quantile(a.flatten(), 0.5)) <= 1.0


def test_save_load_roundtrip(tmp_path) -> None:
    torch.manual_seed(4)
    net = GPLWSNet(GPLWSConfig(widths=(8, 16, 16, 16)))
    _randomise_bn(net)
    net.eval()
    x = torch.rand(1, 1, 6, 32, 32)
    with torch.no_grad():
        ref = net(x)
    path = save_gplws(net, tmp_path / "w.safetensors", {"name": "test", "seed": 1})
    assert path.read_bytes()[:8] != b"\x80\x02"  # not a pickle
    loaded = load_gplws(path)
    assert loaded is load_gplws(path)  # cached
    assert loaded.config.widths == (8, 16, 16, 16)
    with torch.no_grad():
        assert (loaded(x) - ref).abs().max().item() <= 1e-5
    assert model_card(path)["seed"] == 1
    assert (tmp_path / "w.md").is_file()


def test_missing_or_foreign_weights_raise_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="missing"):
        load_gplws(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="format"):
        load_gplws(tmp_path / "other.safetensors")


def test_one_cache_keeps_the_networks_apart(tmp_path) -> None:
    """GPLWS-Net and LDSE-NET weights share one cache, keyed by network: a GPLWS file
    loaded once is not handed out as LDSE-NET, and writing weights empties the cache."""
    from napari_gplws.models.ldse import LDSEConfig, LDSENet
    from napari_gplws.models.registry import load_ldse, save_ldse

    path = save_gplws(GPLWSNet(GPLWSConfig(widths=(8, 8, 8, 8))), tmp_path / "g.safetensors")
    gplws = load_gplws(path)
    with pytest.raises(ModelError, match="LDSE"):
        load_ldse(path)
    ldse_path = save_ldse(
        LDSENet(LDSEConfig(stem=8, growth=(4, 4, 4), layers=(1, 1, 1))), tmp_path / "l.safetensors"
    )
    assert load_gplws(path) is not gplws  # the save emptied the cache
    assert load_ldse(ldse_path) is load_ldse(ldse_path)


def test_importing_the_models_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, napari_gplws.models as m; m.DEFAULT_GPLWS; m.has_default_weights('ldse'); "
        "m.card_markdown({}); sys.exit('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
