"""LDSE-NET: shapes and size, preprocessing, weight files, a tiny training run, the
real-data loaders with grouped splits, and the committed weights' quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws.errors import ModelError, StackError
from napari_gplws.models.cards import count_parameters
from napari_gplws.models.ldse import LDSEConfig, LDSENet, prepare_tiles
from napari_gplws.models.registry import load_ldse, save_ldse
from napari_gplws.stack import FocalStack
from napari_gplws.training.ldse_data import (
    concat_tilesets,
    grouped_split,
    load_jiang_tiles,
    parse_jiang_name,
    stack_defocus_tiles,
)

TINY = LDSEConfig(stem=8, growth=(4, 4, 4), layers=(1, 1, 1))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_network_output_shape_and_size() -> None:
    torch.manual_seed(0)
    net = LDSENet().eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 1, 224, 224)).shape == (2,)
        assert net(torch.zeros(3, 1, 128, 96)).shape == (3,)  # any size ≥ 32 px
    n = count_parameters(net)
    assert 50_000 < n < 250_000
    assert 4 * n <= 1_000_000  # float32 weights ≤ 1 MB
    # Tanh-gated SE and Tanh activations are present, as in the paper.
    assert any(isinstance(m, torch.nn.Tanh) for m in net.modules())


def test_spectrum_branch_is_rotation_invariant_and_sees_blur() -> None:
    from scipy import ndimage as ndi

    net = LDSENet().eval()
    branch = net.spectrum
    assert branch is not None and branch.bins == 48
    rng = np.random.default_rng(0)
    sharp = ndi.gaussian_filter(rng.standard_normal((96, 96)), 0.7).astype(np.float32)
    blurred = ndi.gaussian_filter(sharp, 3.0)
    x = torch.from_numpy(prepare_tiles(np.stack([sharp, blurred])))
    with torch.inference_mode():
        p = branch.profile(x)
        # Flips and quarter turns (the training augmentations) leave the rings unchanged.
        for view in (torch.rot90(x, 1, (2, 3)), torch.flip(x, (3,)), torch.flip(x, (2,))):
            np.testing.assert_allclose(branch.profile(view).numpy(), p.numpy(), atol=5e-3)
    assert p.shape == (2, 48)
    # Blur takes power out of the outer rings (high spatial frequencies) relative to the inner.
    outer, inner = slice(30, 48), slice(1, 8)
    contrast = (p[:, inner].mean(dim=1) - p[:, outer].mean(dim=1)).numpy()
    assert contrast[1] > contrast[0] + 3.0


def test_weights_written_before_the_spectrum_branch_still_load(tmp_path: Path) -> None:
    old = LDSEConfig.from_dict({"stem": 8, "growth": [4, 4, 4], "layers": [1, 1, 1]})
    assert old.spectrum_bins == 0
    net = LDSENet(old).eval()
    assert net.spectrum is None
    path = save_ldse(net, tmp_path / "old.safetensors")
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(load_ldse(path)(x).numpy(), net(x).numpy(), atol=1e-6)


def test_prepare_tiles_is_invariant_to_gain_and_offset_and_reads_rgb() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.6, (2, 64, 64)).astype(np.float32)
    a, b = prepare_tiles(x), prepare_tiles(0.5 * x + 0.1)
    assert a.shape == (2, 1, 64, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    rgb = np.repeat((x * 255).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_allclose(
        prepare_tiles(rgb), prepare_tiles((x * 255).astype(np.uint8)), atol=1e-4
    )
    flat = prepare_tiles(np.full((1, 32, 32), 100, np.uint8))
    assert np.all(np.isfinite(flat)) and np.abs(flat).max() < 1e-3  # not amplified into noise
    with pytest.raises(ValueError):
        prepare_tiles(np.zeros((2, 3, 32, 32)))


def test_weights_round_trip_and_errors(tmp_path: Path) -> None:
    net = LDSENet(TINY).eval()
    path = save_ldse(
        net, tmp_path / "w.safetensors", {"name": "tiny", "optics": {"pixel_size_um": 0.25}}
    )
    assert path.with_suffix(".json").is_file() and path.with_suffix(".md").is_file()
    loaded = load_ldse(path)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), atol=1e-6)
    with pytest.raises(ModelError, match="missing"):
        load_ldse(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(ModelError, match="LDSE"):
        load_ldse(tmp_path / "other.safetensors")


def test_a_tiny_training_run_lowers_the_loss() -> None:
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf_bank import psf_bank

    torch.manual_seed(0)
    bank = psf_bank(n_configs=1, seed=0, defocus_max_um=4.0, step_um=1.0, size_px=33)
    sim = DefocusSimulator(bank, ("he_tissue", "bf_noise"), defocus_max_um=4.0, p_jpeg=0.0)
    ts = sim.tiles(np.random.default_rng(0), n_fields=4, per_field=4, tile_px=64)
    x = torch.from_numpy(prepare_tiles(ts.tiles))
    y = torch.from_numpy(ts.defocus_um)
    net = LDSENet(TINY)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_defocus_metrics_judge_the_direction_confidence() -> None:
    from napari_gplws.evaluation.defocus_metrics import defocus_metrics

    true = np.array([3.0, -3.0, 2.0, -2.0, 0.5])
    # Confident tiles (|pred| / magnitude >= 0.5) have the right sign, unsure ones the wrong.
    pred = np.array([2.9, -2.0, -0.2, 0.1, 0.4])
    mag = np.array([3.0, 3.0, 2.0, 2.0, 0.5])
    m = defocus_metrics(pred, true, 1.3, magnitude_um=mag)
    assert m["sign_acc_ge1"] == pytest.approx(0.5)
    assert m["confident_fraction_ge1"] == pytest.approx(0.5)  # 2 of the 4 tiles with |z| >= 1
    assert m["sign_acc_confident_ge1"] == pytest.approx(1.0)
    assert "sign_acc_confident_ge1" not in defocus_metrics(pred, true, 1.3)


def test_train_ldse_runs_checkpoints_resumes_and_writes_a_card(tmp_path: Path) -> None:
    from napari_gplws.training.ldse import train_ldse
    from napari_gplws.training.ldse_config import LDSETrainConfig

    cfg = LDSETrainConfig(
        out_dir=str(tmp_path / "run"),
        steps=3,
        batch_size=4,
        n_aberrations=1,
        psf_step_um=1.0,
        psf_size_px=33,
        crop_px=48,
        full_px=64,
        per_field=2,
        buffer_size=32,
        n_val_fields=1,
        n_test_fields=2,
        test_per_field=2,
        n_test_aberrations=1,
        n_calib_fields=2,
        threads=1,
        log_every=1,
        warmup_steps=1,
        config=TINY.to_dict(),
        weights_out=str(tmp_path / "w.safetensors"),
        command="pytest",
    )
    summary = train_ldse(cfg)
    assert summary["steps"] == 3 and (tmp_path / "run" / "last.ckpt").is_file()
    card = json.loads((tmp_path / "w.json").read_text(encoding="utf-8"))
    for key in (
        "command",
        "seed",
        "steps",
        "wall_time_min",
        "optics",
        "test",
        "baseline_abs_only",
        "sign_convention",
    ):
        assert key in card
    assert {
        "mae_le5",
        "sign_acc_ge1",
        "rmse",
        "median",
        "p90",
        "within_dof_half",
        "per_bin",
    } <= set(card["test"])
    # The card states the measured figures against the accuracy target, and breaks the test
    # set down by modality, specimen and aberration configuration.
    assert card["status"].startswith("Target not yet met. Target on the held-out simulated")
    assert 0.0 <= card["test"]["confident_fraction_ge1"] <= 1.0
    assert {"mae_abs_le5", "median_abs", "p90_abs"} <= set(card["test_magnitude"])
    assert set(card["per_modality"]) <= {"brightfield", "fluorescence"}
    assert sum(v["n"] for v in card["per_aberration"].values()) == card["test"]["n"]
    assert card["regions"]["tiles_per_region"] == 4 and card["regions"]["n"] == 8  # 2 fields × 4 z
    assert [p["step_um"] for p in card["pairs"]] == [2.0, 4.0]
    assert all(p["n"] == 2 * 8 for p in card["pairs"])  # 2 fields × 8 pairs
    md = (tmp_path / "w.md").read_text(encoding="utf-8")
    assert "### Per modality" in md and "### Two frames a known step apart" in md
    # Re-evaluating the written weights reproduces the card's figures.
    from napari_gplws.training.ldse_card import reevaluate_card

    again = reevaluate_card(tmp_path / "w.safetensors", log=lambda _msg: None)
    assert again["command"] == "pytest" and again["steps"] == 3
    for key in ("mae_le5", "sign_acc_ge1", "rmse"):
        assert again["test"][key] == pytest.approx(card["test"][key], abs=1e-5)
    assert again["pairs"][-1]["mae_le5"] == pytest.approx(card["pairs"][-1]["mae_le5"], abs=1e-5)
    assert again["baseline_abs_only"]["mae_abs_le5"] == pytest.approx(
        card["baseline_abs_only"]["mae_abs_le5"], abs=1e-6
    )
    cfg.steps, cfg.resume, cfg.weights_out = 5, True, None
    assert train_ldse(cfg)["steps"] == 5  # continued from step 3
    assert "resumed" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")


# --- real-data loaders ---------------------------------------------------------------------
def _write(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img)


def test_jiang_layout_loader_and_grouped_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels_nm = [-1250, -500, 0, 730, 2000]
    for f in range(4):
        for k, nm in enumerate(labels_nm):
            _write(
                tmp_path / "train" / f"field{f}" / f"Seg{k + 1}_defocus{nm}.png",
                rng.integers(0, 255, (240, 230, 3), dtype=np.uint8),
            )
    _write(
        tmp_path / "test" / "fieldA" / "defocus-1500.png",
        rng.integers(0, 255, (448, 672), dtype=np.uint8),
    )
    _write(tmp_path / "train" / "field0" / "notes.png", np.zeros((8, 8), np.uint8))  # ignored
    assert parse_jiang_name("Seg3_defocus-1250.jpg") == (3, -1.25)
    assert parse_jiang_name("defocus730.JPG") == (None, 0.73)
    assert parse_jiang_name("img_001.jpg") is None

    train = load_jiang_tiles(tmp_path, "train", tile_px=224)
    assert train.tiles.shape == (20, 224, 224) and train.tiles.dtype == np.uint8
    assert sorted(set(np.round(train.defocus_um, 3))) == [-1.25, -0.5, 0.0, 0.73, 2.0]
    assert len(np.unique(train.field_id)) == 4
    test = load_jiang_tiles(tmp_path, "test", tile_px=224)
    assert len(test) == 6 and np.all(test.defocus_um == -1.5)  # 448×672 → 2×3 tiles
    flipped = load_jiang_tiles(tmp_path, "test", tile_px=224, sign=-1)
    assert np.all(flipped.defocus_um == 1.5)

    tr, va = grouped_split(train.field_id, val_fraction=0.25, seed=0)
    assert len(tr) + len(va) == len(train) and len(va) == 5
    assert not set(train.field_id[tr]) & set(train.field_id[va])
    with pytest.raises(StackError, match="No"):
        load_jiang_tiles(tmp_path / "test", "train")


def test_stack_loader_labels_from_focus_curves() -> None:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(1)
    sharp = ndi.gaussian_filter(rng.random((128, 256)), 1.0)
    sharp[:, 128:] = 0.5 + 0.001 * rng.standard_normal((128, 128))  # right half blank
    focus = np.arange(9, dtype=float) * 1.0  # µm
    best = 3.4
    frames = np.stack(
        [ndi.gaussian_filter(sharp, 0.3 + 1.2 * abs(z - best)) for z in focus]
    ).astype(np.float32)
    st = FocalStack(frames, focus_um=focus)
    ts = stack_defocus_tiles(st, tile_px=64, max_abs_um=None)
    # Only the textured half gives tiles: 2 rows × 2 columns of positions, 9 frames each.
    assert len(np.unique(ts.field_id)) == 4 and len(ts) == 36
    for fid in np.unique(ts.field_id):
        lab = ts.defocus_um[ts.field_id == fid]
        np.testing.assert_allclose(lab, focus - best, atol=0.3)
    both = concat_tilesets([ts, ts])
    assert len(np.unique(both.field_id)) == 8
    with pytest.raises(StackError, match="focus positions"):
        stack_defocus_tiles(FocalStack(frames))


# --- committed weights ---------------------------------------------------------------------
def _packaged_card() -> dict:
    from napari_gplws.models.registry import model_card, weights_path

    if not weights_path("ldse_default").is_file():
        pytest.skip("ldse_default weights not installed yet (training in progress)")
    return model_card("ldse_default")


def test_committed_weights_load_and_estimate_how_far_out_of_focus() -> None:
    card = _packaged_card()
    for key in ("command", "seed", "steps", "wall_time_min", "optics", "test", "baseline_abs_only"):
        assert key in card
    assert card["weight_bytes_float32"] <= 1_000_000
    from napari_gplws.defocus.analyse import predict_defocus
    from napari_gplws.sim.defocus_tiles import DefocusSimulator
    from napari_gplws.sim.psf import Optics
    from napari_gplws.sim.psf_bank import PSFBank
    from napari_gplws.sim.specimens import TEST_SPECIMENS

    # A few fresh held-out tiles (test specimens, an aberration seed never used).
    optics = Optics.from_dict(card["optics"])
    bank = PSFBank(optics, n_configs=1, seed=123, defocus_max_um=4.0, step_um=0.5, size_px=65)
    sim = DefocusSimulator(bank, TEST_SPECIMENS, defocus_max_um=4.0, p_near=0.0)
    ts = sim.tiles(np.random.default_rng(7), 6, 3, 224, defocus_um=[0.0, 1.5, 3.5])
    signed, magnitude = predict_defocus(ts.tiles, device="cpu", return_magnitude=True)
    assert np.all(np.isfinite(signed)) and np.all(magnitude >= np.abs(signed) - 1e-5)
    truth = np.abs(ts.defocus_um)
    # How far out of focus: in-focus tiles read clearly lower than tiles 3.5 µm away.
    assert np.median(magnitude[truth == 0]) + 1.0 < np.median(magnitude[truth == 3.5])
    assert np.mean(np.abs(magnitude - truth)) < 2.0  # 1.33 µm with the packaged weights


def test_committed_weights_reach_the_figures_their_card_states() -> None:
    """Render the card's held-out test set again and predict it: the committed weights must
    give the card's figures (this also catches a simulator change that silently moves the
    test set away from what the card describes)."""
    card = _packaged_card()
    from napari_gplws.evaluation.defocus_metrics import (
        TEST_BANK_SEED,
        defocus_metrics,
        magnitude_metrics,
        pair_test,
        predict_tile_parts,
        test_set,
    )
    from napari_gplws.models.registry import load_ldse
    from napari_gplws.sim.psf import Optics
    from napari_gplws.sim.psf_bank import PSFBank

    tc = card["train_config"]
    optics = Optics.from_dict(card["optics"])
    bank = PSFBank(
        optics,
        n_configs=tc["n_test_aberrations"],
        seed=TEST_BANK_SEED,
        step_um=tc["psf_step_um"],
        size_px=tc["psf_size_px"],
    )
    ts = test_set(optics, tc["n_test_fields"], tc["test_per_field"], tc["full_px"], bank=bank)
    model = load_ldse("ldse_default")
    signed, magnitude = predict_tile_parts(model, ts.tiles)
    got = defocus_metrics(signed, ts.defocus_um, card["test"]["dof_um"])
    for key in ("mae_le5", "sign_acc_ge1", "mae", "rmse"):
        assert got[key] == pytest.approx(card["test"][key], abs=2e-3), key
    mag = magnitude_metrics(magnitude, ts.defocus_um, card["test"]["dof_um"])
    assert mag["mae_abs_le5"] == pytest.approx(card["test_magnitude"]["mae_abs_le5"], abs=2e-3)
    # Better than the classical |z|-only baseline at telling how far out of focus.
    assert mag["mae_abs_le5"] < 0.6 * card["baseline_abs_only"]["mae_abs_le5"]
    # Two frames 4 µm apart: the card's figures, and a direction far better than one frame's.
    stated = card["pairs"][-1]
    pairs = pair_test(
        model, optics, n_fields=tc["n_test_fields"], tile_px=tc["full_px"], bank=bank,
        step_um=stated["step_um"],
    )  # fmt: skip
    for key in ("mae_le5", "sign_acc_ge1"):
        assert pairs[key] == pytest.approx(stated[key], abs=2e-3), key
    assert pairs["sign_acc_ge1"] >= 0.9 > card["test"]["sign_acc_ge1"]


def test_committed_weights_meet_the_accuracy_target() -> None:
    """Target: signed MAE ≤ 0.5 µm for |z| ≤ 5 µm and ≥ 90 % correct sign for |z| ≥ 1 µm on
    the held-out simulated test set (numbers from the model card). Reported as xfail, with
    the measured values, while the packaged weights do not yet meet it."""
    from napari_gplws.evaluation.defocus_metrics import TARGET_MAE_LE5_UM, TARGET_SIGN_ACC_GE1

    card = _packaged_card()
    mae, sign = card["test"]["mae_le5"], card["test"]["sign_acc_ge1"]
    if mae > TARGET_MAE_LE5_UM or sign < TARGET_SIGN_ACC_GE1:
        pytest.xfail(
            f"target not yet met: signed MAE(|z|≤5) {mae:.2f} µm (target ≤ "
            f"{TARGET_MAE_LE5_UM}), sign accuracy(|z|≥1) {sign:.2f} (target ≥ "
            f"{TARGET_SIGN_ACC_GE1})"
        )
    assert mae <= TARGET_MAE_LE5_UM and sign >= TARGET_SIGN_ACC_GE1


def test_committed_card_states_its_figures_against_the_target() -> None:
    """The packaged card's status is the one the evaluation code writes for its figures."""
    from napari_gplws.evaluation.defocus_metrics import target_status
    from napari_gplws.models.registry import weights_path

    card = _packaged_card()
    status = target_status(card["test"], card["test_magnitude"], card["baseline_abs_only"])
    assert card["status"] == status
    md = weights_path("ldse_default").with_suffix(".md").read_text(encoding="utf-8")
    assert f"## Status\n\n{status}\n" in md
