"""Training: synthetic renderer, Micro 3D loader, loss that falls, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws.cli.train import gplws_main
from napari_gplws.errors import StackError
from napari_gplws.io.micro3d import Micro3DDataset
from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet
from napari_gplws.training.gplws import TrainConfig, gplws_loss, make_batch, train_gplws
from napari_gplws.training.gplws_data import (
    TRAIN_FAMILIES,
    SyntheticFocusDataset,
    micro3d_training_sample,
    render_height,
)


@pytest.mark.parametrize("family", TRAIN_FAMILIES)
def test_every_height_family_renders(family: str) -> None:
    z = render_height(family, 24, 30, np.random.default_rng(0))
    assert z.shape == (24, 30) and z.dtype == np.float32
    assert z.min() >= 0.0 and z.max() <= 1.0


def test_synthetic_dataset_sample_and_batch() -> None:
    ds = SyntheticFocusDataset(seed=3)
    s = ds.sample(n_frames=9, size=(40, 33), rgb=True, dtype="uint16")
    assert s.frames.shape == (9, 40, 33, 3) and s.frames.dtype == np.uint16
    assert s.depth_index.shape == (40, 33)
    assert s.depth_index.min() >= 0 and s.depth_index.max() <= 8
    b = ds.batch(3, n_frames=7, size=32)
    x, t = make_batch(b)
    assert x.shape[0] == 3 and x.shape[2:] == (7, 32, 32) and t.shape == (3, 32, 32)
    # the same seed gives the same data
    a1 = SyntheticFocusDataset(seed=5).sample(n_frames=6, size=(16, 16))
    a2 = SyntheticFocusDataset(seed=5).sample(n_frames=6, size=(16, 16))
    np.testing.assert_array_equal(a1.frames, a2.frames)


def test_sharpest_frame_matches_ground_truth() -> None:
    """The renderer's frames are sharpest where the label says (sanity of the labels)."""
    from scipy import ndimage as ndi

    ds = SyntheticFocusDataset(seed=1)
    s = ds.sample(n_frames=12, size=(64, 64), rgb=False, family="plane", dtype="float32")
    f = s.frames.astype(np.float64)
    energy = np.stack([ndi.uniform_filter(ndi.laplace(fr) ** 2, 9) for fr in f])
    err = np.abs(np.argmax(energy, 0) - s.depth_index)
    assert np.median(err) <= 1.5


def test_tiny_training_loss_falls() -> None:
    torch.manual_seed(0)
    net = GPLWSNet(GPLWSConfig(widths=(8, 8, 16, 16)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, t = make_batch(SyntheticFocusDataset(seed=0).batch(4, n_frames=8, size=32))
    losses = []
    for _ in range(30):
        loss, _ = gplws_loss(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])


def test_train_writes_weights_and_resumes(tmp_path) -> None:
    from napari_gplws.models.registry import load_gplws, model_card

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), steps=3, batch_size=2, n_choices=(6,), size_choices=(32,),
        widths=(8, 8, 8, 8), epoch_steps=2, n_val=2, synth_fraction=0.0, benchmark=0,
        weights_out=str(tmp_path / "w" / "model.safetensors"), warmup_steps=1,
    )
    out = train_gplws(cfg)
    assert out["steps"] == 3
    assert (tmp_path / "run" / "last.ckpt").is_file()
    assert "val rmse" in (tmp_path / "run" / "train.log").read_text()
    net = load_gplws(tmp_path / "w" / "model.safetensors")
    assert net.is_fused
    card = model_card(tmp_path / "w" / "model.safetensors")
    assert card["steps"] == 3 and card["params_fused"] < card["params_train"]
    cfg.steps, cfg.resume = 5, True
    out2 = train_gplws(cfg)
    assert out2["steps"] == 5
    assert "resumed" in (tmp_path / "run" / "train.log").read_text()


def test_distillation_fine_tunes_the_given_weights_towards_the_teacher(tmp_path) -> None:
    """--init-weights starts from a trained network (not from scratch) and --teacher-weights
    adds the teacher's view-averaged probability as a target; the card records both."""
    from napari_gplws.models.registry import load_gplws, model_card, save_gplws
    from napari_gplws.training.gplws import distill_loss, teacher_probability

    torch.manual_seed(3)
    start = GPLWSNet(GPLWSConfig(widths=(8, 8, 8, 8))).reparameterize()
    init = save_gplws(start, tmp_path / "start.safetensors", {"name": "start"})
    x, t = make_batch(SyntheticFocusDataset(seed=1).batch(2, n_frames=6, size=32))
    with torch.no_grad():
        p1 = teacher_probability(start, x, 1)
        p4 = teacher_probability(start, x, 4)
        own = torch.softmax(start(x), 1)
    assert torch.allclose(p1, own, atol=1e-5)  # one view is the plain forward pass
    assert torch.allclose(p4.sum(1), torch.ones_like(p4[:, 0]), atol=1e-5)
    assert not torch.allclose(p4, p1, atol=1e-4)  # the other views really ran
    same, _ = distill_loss(start(x), own)
    other, _ = distill_loss(start(x), torch.roll(own, 2, dims=1))
    assert float(same.detach()) < 1e-4 < float(other.detach())
    before = {k: v.clone() for k, v in start.state_dict().items()}
    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), steps=2, batch_size=2, n_choices=(6,), size_choices=(32,),
        epoch_steps=2, n_val=2, synth_fraction=0.0, benchmark=0, warmup_steps=1, lr=1e-3,
        init_weights=str(init), teacher_weights=str(init), teacher_views=2,
        weights_out=str(tmp_path / "w" / "tuned.safetensors"),
    )
    train_gplws(cfg)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "distill" in log and "params 1" in log
    tuned = load_gplws(tmp_path / "w" / "tuned.safetensors").state_dict()
    assert set(tuned) == set(before)  # the same (fused) network, fine-tuned
    changed = max(float((tuned[k] - before[k]).abs().max()) for k in before)
    assert 0 < changed < 0.05  # moved a little from the start, not re-initialised
    card = model_card(tmp_path / "w" / "tuned.safetensors")
    assert card["init_weights"] == str(init)
    assert card["teacher"] == {"weights": str(init), "views": 2, "weight": 1.0}


def test_train_main_parses_arguments(tmp_path) -> None:
    rc = gplws_main([
        "gplws", "--out-dir", str(tmp_path), "--steps", "1", "--batch-size", "1", "--n-choices", "4",
        "--size-choices", "32", "--widths", "8", "8", "8", "8", "--synth-fraction", "0", "--benchmark", "0",
    ])
    assert rc == 0 and (tmp_path / "final.safetensors").is_file()


# ---------------------------------------------------------------------------------------
# Micro 3D-layout folders
# ---------------------------------------------------------------------------------------


def _write_micro3d(root, names=("s1", "s2", "s3"), n=11, h=12, w=10):
    from PIL import Image

    for j, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True)
        for k in range(n):  # frame k has the constant value k*10+j: order is checkable
            Image.fromarray(np.full((h, w), k * 10 + j, np.uint8)).save(d / f"{k}.png")
        gt = (np.arange(h * w).reshape(h, w) % n).astype(np.uint8) * 10  # index × 10
        Image.fromarray(gt).save(d / "depth.png")


def test_micro3d_loader_natural_order_and_scale(tmp_path) -> None:
    _write_micro3d(tmp_path)
    ds = Micro3DDataset(tmp_path, gt_pattern="depth*", gt_scale=0.1)
    assert len(ds) == 3
    s = ds[1]
    assert s.name == "s2" and s.frames.shape == (11, 12, 10)
    np.testing.assert_array_equal(s.frames[:, 0, 0], np.arange(11) * 10 + 1)  # 2 before 10
    np.testing.assert_allclose(s.depth_index, (np.arange(120).reshape(12, 10) % 11), atol=1e-5)
    ts = micro3d_training_sample(ds, 0, np.random.default_rng(0), crop=8)
    assert ts.frames.shape == (11, 8, 8) and ts.depth_index.shape == (8, 8)


def test_micro3d_split_files(tmp_path) -> None:
    _write_micro3d(tmp_path / "data")
    (tmp_path / "train.txt").write_text("s1\ns3\n")
    assert Micro3DDataset(tmp_path / "data", split_file=tmp_path / "train.txt").names == ["s1", "s3"]
    (tmp_path / "split.json").write_text(json.dumps({"train": ["s2"], "test": ["s1"]}))
    ds = Micro3DDataset(tmp_path / "data", split_file=tmp_path / "split.json", split="test")
    assert ds.names == ["s1"]
    (tmp_path / "bad.txt").write_text("nope\n")
    with pytest.raises(StackError, match="missing"):
        Micro3DDataset(tmp_path / "data", split_file=tmp_path / "bad.txt")


def test_micro3d_float_um_ground_truth(tmp_path) -> None:
    import tifffile
    from PIL import Image

    d = tmp_path / "a"
    d.mkdir()
    for k in range(5):
        Image.fromarray(np.full((6, 6), k, np.uint8)).save(d / f"img_{k}.png")
    tifffile.imwrite(d / "gt_depth.tif", np.full((6, 6), 7.0, np.float32))  # µm
    ds = Micro3DDataset(tmp_path, gt_pattern="gt*", gt_units="um", focus_start_um=3.0, focus_step_um=2.0)
    np.testing.assert_allclose(ds[0].depth_index, 2.0)
    with pytest.raises(StackError, match="ground-truth"):
        Micro3DDataset(tmp_path, gt_pattern="nothing*")[0]


# ---------------------------------------------------------------------------------------
# Command lines recorded in the packaged model cards
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["gplws", "ldse"])
def test_recorded_training_commands_still_parse(network: str) -> None:
    """The exact command in each packaged card parses with today's parser into options whose
    values are the recorded ones (nothing is trained)."""
    import shlex

    from napari_gplws.cli import train as cli_train
    from napari_gplws.models.registry import model_card, weights_path

    name = f"{network}_default"
    if not weights_path(name).is_file():
        pytest.skip(f"{name} weights not installed")
    command = model_card(name)["command"]
    words = shlex.split(command)
    old_module = {"gplws": "napari_gplws.core.train", "ldse": "napari_gplws.core.train_ldse"}
    assert words[:3] == ["python", "-m", old_module[network]]
    args = words[3:]
    if args and args[0] == network:
        args = args[1:]
    build = {"gplws": cli_train.build_gplws_parser, "ldse": cli_train.build_ldse_parser}
    to_config = {"gplws": cli_train.gplws_config, "ldse": cli_train.ldse_config}
    cfg = to_config[network](build[network]().parse_args(args), args)
    assert cfg.weights_out == f"src/napari_gplws/weights/{name}.safetensors"
    assert cfg.seed == model_card(name)["seed"] and (cfg.resume or cfg.init_weights)
    assert cfg.command == f"gplws train {network} " + shlex.join(args)
    recorded = model_card(name).get("train_config")
    if recorded:  # the LDSE card keeps the options it ran with (options added later aside)
        options = cfg.to_dict()
        for key in (set(options) & set(recorded)) - {"command"}:
            assert recorded[key] == options[key], key


@pytest.mark.parametrize(
    ("module", "prog"),
    [("napari_gplws.core.train", "gplws train gplws"),
     ("napari_gplws.core.train_ldse", "gplws train ldse")],
)
def test_old_training_commands_forward_with_a_deprecation_warning(module: str, prog: str) -> None:
    import subprocess
    import sys

    args = ["gplws", "--help"] if module.endswith(".train") else ["--help"]
    r = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-m", module, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {prog}")
    assert "DeprecationWarning" in r.stderr
