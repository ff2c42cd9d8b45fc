"""Autofocus calibration: a short calibration on tiny stacks of one simulated instrument
improves the held-out accuracy and records it; it is cancelled and resumed; stacks that do
not pass through focus are refused; the result works in autofocus() and the CLI; the
packaged weights are never touched."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_gplws.cli._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from napari_gplws.cli.main import main
from napari_gplws.defocus import autofocus, predict_defocus
from napari_gplws.errors import Cancelled, GplwsError, StackError
from napari_gplws.models.registry import WEIGHTS_DIR, model_card
from napari_gplws.sim.instrument import (
    INSTRUMENTS,
    coverslip_spherical_waves,
    instrument_simulator,
    instrument_stack,
)
from napari_gplws.stack import FocalStack
from napari_gplws.training.calibrate import CalibrationConfig, calibrate

PACKAGED = WEIGHTS_DIR / "ldse_default.safetensors"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sim():
    return instrument_simulator("dry_into_mount", defocus_max_um=4.0)


def _stacks(sim, n: int, seed: int, half: float = 3.5) -> list[FocalStack]:
    return [
        instrument_stack(sim, np.random.default_rng([seed, k]), n_frames=21, half_range_um=half,
                         centre_jitter_um=0.5, size_px=224, descending=bool(k % 2)).stack
        for k in range(n)
    ]


@pytest.fixture(scope="module")
def calibrated(sim, tmp_path_factory):
    """A 24 CPU-second calibration (cancelled once, then resumed) on six 224 px stacks."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cal") / "my_scope.safetensors"
    stacks = _stacks(sim, 6, 5)
    packaged_before = _digest(PACKAGED)
    # CPU-time box: the same number of steps on a busy machine as on an idle one.
    cfg = CalibrationConfig(minutes=0.4, lr=1e-3, batch_pairs=6, crop_px=128, evaluations=3,
                            threads=1, clock="cpu")
    calls = {"n": 0}

    def cancel_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 12

    with pytest.raises(Cancelled):
        calibrate(stacks, out, config=cfg, cancel=cancel_soon, command="pytest")
    assert (out.parent / "my_scope.calibration" / "calibrate.ckpt").is_file()
    assert not out.exists()  # nothing written before the end
    lines: list[str] = []
    res = calibrate(stacks, out, config=cfg, resume=True, command="pytest", log=lines.append)
    torch.set_num_threads(n)
    return {"res": res, "out": out, "lines": lines, "stacks": stacks,
            "packaged": (packaged_before, _digest(PACKAGED))}


def test_calibration_improves_held_out_accuracy_and_the_card_records_it(calibrated) -> None:
    res, out = calibrated["res"], calibrated["out"]
    assert any(line.startswith("resumed at step") for line in calibrated["lines"])
    assert res.kept and res.output == out and out.is_file()
    assert res.after["mae_le5"] < res.before["mae_le5"]
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["kind"] == "ldse-calibration" and card["improved"] is True
    ho = card["held_out"]
    assert ho["split"] == "whole stacks" and ho["stacks"] >= 1
    assert ho["before"] == res.before and ho["after"] == res.after
    # the default keeps the final weights: their figures are the last ones of the run
    last = {k: v for k, v in card["history"][-1].items() if k not in ("step", "minutes")}
    assert card["calibration"]["select"] == "last" and res.after == last
    assert card["history"][-1]["step"] == res.steps
    assert sum(s["held_out"] for s in card["stacks"]) == ho["stacks"]
    assert card["optics"]["pixel_size_um"] == 0.25
    assert card["wall_time_min"] > 0 and card["steps"] == res.steps > 12
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "Held-out fields of the calibration stacks" in md and "calibrated" in md
    assert "held-out stacks" in card["summary_line"]


def test_packaged_weights_are_untouched(calibrated, sim, tmp_path) -> None:
    before, after = calibrated["packaged"]
    assert before == after
    with pytest.raises(GplwsError, match="packaged weights folder"):
        calibrate(calibrated["stacks"], WEIGHTS_DIR / "mine.safetensors")
    assert not (WEIGHTS_DIR / "mine.safetensors").exists()


def test_calibrated_weights_work_in_autofocus_and_predict(calibrated) -> None:
    out, st = calibrated["out"], calibrated["stacks"][0]
    res = autofocus(st, weights=out, device="cpu", grid=(1, 1))
    assert res.weights == str(out) and np.isfinite(res.predicted_um).all()
    d = predict_defocus(st.frames[:3], weights=str(out), device="cpu")
    assert d.shape == (3,) and np.isfinite(d).all()
    assert model_card(out)["kind"] == "ldse-calibration"


def test_cli_autofocus_says_which_weights(calibrated, tmp_path, capsys) -> None:
    import tifffile

    st = calibrated["stacks"][0]
    tif = tmp_path / "s.tif"
    tifffile.imwrite(tif, st.frames[::5])
    assert main(["autofocus", str(tif), "--frame", "0", "--weights", str(calibrated["out"]),
                 "-q", "--device", "cpu"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "weights: my_scope: calibrated on 6 stacks" in err


def test_resume_refuses_a_checkpoint_of_other_inputs(calibrated) -> None:
    cfg = CalibrationConfig(minutes=0.2, seed=3, threads=1)
    with pytest.raises(GplwsError, match="other stacks or options"):
        calibrate(calibrated["stacks"][:4], calibrated["out"], config=cfg, resume=True)


def test_stacks_that_miss_focus_are_refused_by_name(sim) -> None:
    good = _stacks(sim, 2, 9)
    s = good[0]
    z = s.focus_um - s.focus_um[np.argmin(np.abs(s.focus_um - np.median(s.focus_um)))]
    one_side = FocalStack(s.frames[z > 1.0], focus_um=s.focus_um[z > 1.0], source="above.tif")
    with pytest.raises(StackError, match=r"above\.tif.*pass through focus|pass through focus.*above\.tif"):
        calibrate([one_side, good[1]], "unused.safetensors", config=CalibrationConfig(minutes=0.1))
    no_pos = FocalStack(s.frames, source="nopos.tif")
    with pytest.raises(StackError, match="no focus positions"):
        calibrate([no_pos], "unused.safetensors")


def test_options_outside_their_ranges_are_refused() -> None:
    for bad in ({"minutes": 0.0}, {"lr": 1.0}, {"crop_px": 300}, {"unfreeze": "some"},
                {"select": "first"}):
        with pytest.raises(GplwsError):
            CalibrationConfig(**bad).check()
    assert main(["calibrate", "a.tif", "-o", "x.safetensors", "--minutes", "500"]) == EXIT_USAGE


def test_the_magnitude_learns_from_the_magnitude_loss_alone() -> None:
    """The signed loss must not inflate the magnitude to make up for an unsure direction."""
    from napari_gplws.training.calibrate import _base_model, _loss

    x = torch.randn(4, 1, 64, 64)
    y = torch.tensor([2.0, -3.0, 1.5, -0.8])
    for detach, moves in ((True, False), (False, True)):
        model = _base_model("ldse_default")  # a trainable copy
        cfg = CalibrationConfig(signed_weight=1.0, abs_weight=0.0, sign_weight=0.0,
                                pair_weight=1.0, magnitude_from_abs=detach)
        model.eval()
        _loss(model, x, y, cfg).backward()
        grad = model.head.weight.grad
        assert grad[1].abs().sum() > 0  # the direction row learns from the signed terms
        assert bool(grad[0].abs().sum() > 0) is moves  # the magnitude row only if asked


def test_cli_refuses_stacks_that_do_not_pass_through_focus(sim, tmp_path, capsys) -> None:
    import tifffile

    st = _stacks(sim, 1, 4)[0]
    tif = tmp_path / "top.tif"
    tifffile.imwrite(tif, st.frames[-6:])  # the last frames only: all above focus
    code = main(["autofocus", "calibrate", str(tif), str(tif), "-o", str(tmp_path / "w.safetensors"),
                 "--focus-step", "0.5", "--minutes", "0.1", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and "pass through focus" in err and "top.tif" in err
    assert not (tmp_path / "w.safetensors").exists()


def test_instrument_simulator_has_one_fixed_asymmetric_psf() -> None:
    sim = instrument_simulator("oil_coverslip", defocus_max_um=3.0, psf_size_px=33)
    assert sim.bank.n_configs == 1
    p_plus, p_minus = sim.bank.psf(0, 2.0), sim.bank.psf(0, -2.0)
    assert not np.allclose(p_plus, p_minus, atol=1e-4)  # the sign is in the PSF
    assert coverslip_spherical_waves(INSTRUMENTS["oil_coverslip"]) != 0.0
    assert coverslip_spherical_waves(INSTRUMENTS["dry_into_mount"]) == 0.0
    s = instrument_stack(sim, np.random.default_rng(0), n_frames=5, half_range_um=2.0,
                         size_px=64, origin_um=50.0)
    assert np.allclose(s.true_defocus_um, s.stack.focus_um - 50.0)
