"""The model card of an LDSE-NET training run, and re-evaluating a card's weights.

:func:`run_card` assembles the card (data, optics, command, seed, steps, wall time,
parameter counts, held-out evaluation, validation history); :func:`write_weights_and_card`
evaluates the trained weights on the held-out simulated test set
(:mod:`napari_gplws.evaluation.defocus_metrics`) and writes weights + card through
:func:`napari_gplws.models.registry.save_ldse`; :func:`reevaluate_card` does the same for
an existing weights file, keeping its training record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gplws.evaluation.defocus_metrics import TEST_BANK_SEED, TEST_SEED, evaluate_held_out
from napari_gplws.models.cards import count_parameters  # also loads the card renderer now
from napari_gplws.models.ldse import LDSEConfig
from napari_gplws.models.registry import load_ldse, save_ldse
from napari_gplws.sim.defocus_tiles import DefocusSimulator, TileSet
from napari_gplws.sim.psf import Optics
from napari_gplws.sim.psf_bank import PSFBank
from napari_gplws.sim.specimens import TEST_SPECIMENS, TRAIN_SPECIMENS
from napari_gplws.training.ldse_config import VAL_SEED, LDSETrainConfig, optics_preset

__all__ = ["calibration_tiles", "reevaluate_card", "run_card", "write_weights_and_card"]


def calibration_tiles(sim: DefocusSimulator, n_fields: int, tile_px: int) -> TileSet:
    """Tiles of the training distribution that calibrate the classical |z|-only baseline.

    Rendered by the training simulator ``sim`` from seed ``VAL_SEED + 1`` (8 per field), so
    a training run and a later re-evaluation calibrate on the same tiles.
    """
    return sim.tiles(np.random.default_rng(VAL_SEED + 1), n_fields, 8, tile_px)


def write_weights_and_card(
    ema: nn.Module,
    model: nn.Module,
    cfg: LDSETrainConfig,
    *,
    sim: DefocusSimulator,
    optics: Optics,
    dof: float,
    step: int,
    wall_min: float,
    val: dict[str, Any],
    history: list[dict[str, Any]],
    device: str,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the EMA weights on the held-out test set, write them with their card.

    Parameters
    ----------
    ema
        The exponential-moving-average network (evaluated and written).
    model
        The trained network (its parameter count goes into the card).
    cfg
        The run's options; the weights go to ``cfg.weights_out``.
    sim
        The training simulator (renders the baseline's calibration tiles).
    optics, dof
        The simulated optics and their depth of field (µm).
    step, wall_min
        Steps done and wall time (minutes).
    val, history
        Final validation figures and their history.
    device
        torch device of the evaluation.
    say
        Logger.

    Returns
    -------
    test, baseline
        The network's and the classical baseline's figures on the held-out test set.
    """
    say("rendering the held-out test set…")
    calib = calibration_tiles(sim, cfg.n_calib_fields, cfg.full_px)
    evaluation = evaluate_held_out(
        ema,
        optics,
        calib,
        n_fields=cfg.n_test_fields,
        per_field=cfg.test_per_field,
        tile_px=cfg.full_px,
        n_configs=cfg.n_test_aberrations,
        step_um=cfg.psf_step_um,
        size_px=cfg.psf_size_px,
        device=device,
    )
    net_m, base_m = evaluation["test"], evaluation["baseline_abs_only"]
    card = run_card(cfg, model, optics, dof, step, wall_min, evaluation, val, history)
    save_ldse(ema, cfg.weights_out, card)
    say(
        f"wrote {cfg.weights_out} (+ .json, .md): test MAE|z|<=5 {net_m['mae_le5']:.3f} µm, "
        f"sign {net_m['sign_acc_ge1']:.3f}"
    )
    return net_m, base_m


def run_card(
    cfg: LDSETrainConfig,
    model: nn.Module,
    optics: Optics,
    dof: float,
    step: int,
    wall_min: float,
    evaluation: dict[str, Any],
    val: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """The model card of a finished training run (JSON-serialisable).

    Parameters
    ----------
    cfg
        The run's options (recorded as ``train_config``; ``command`` and ``seed`` too).
    model
        The trained network (its parameters are counted).
    optics
        The simulated optics the run trained for.
    dof
        Their depth of field (µm).
    step, wall_min
        Steps done and wall time (minutes).
    evaluation
        :func:`napari_gplws.evaluation.defocus_metrics.evaluate_held_out` of the weights.
    val
        :func:`~napari_gplws.evaluation.defocus_metrics.defocus_metrics` on the validation
        fields.
    history
        Validation figures during the run.

    Returns
    -------
    dict
        The card, as :func:`napari_gplws.models.registry.save_ldse` writes it.
    """
    n_params = count_parameters(model)
    net = evaluation["test"]
    return {
        "name": "LDSE-NET default",
        "summary": "Signed defocus (µm of focus-drive travel) of one 224×224 microscope tile.",
        "sign_convention": (
            "defocus = frame position − best-focus position; positive = the objective is closer "
            "to the specimen than at best focus (focal plane deeper than the object). Best focus "
            "= maximum image sharpness (gradient energy of the PSF), as a focus curve measures it."
        ),
        "optics": {
            **optics.to_dict(),
            "depth_of_field_um": dof,
            "specimen_depth_um": [2.0, 25.0],
            "n_sample_range": [1.33, 1.52],
            "zernike_rms_waves": 0.04,
        },
        "other_optics": (
            "Resample frames to the trained pixel size (autofocus(..., pixel_size_um=...) does "
            "this); for another NA, wavelength or immersion, fine-tune on your own focal stacks "
            "(--stacks, labels from each tile's focus curve) or on simulated tiles "
            "(--optics). The sign is learnt from the spherical aberration of a dry objective "
            "focusing into a denser medium; optics with opposite aberration flip it."
        ),
        "data": (
            "Simulated tiles (napari_gplws.sim.defocus_tiles): scalar pupil PSF with "
            "index-mismatch spherical aberration and random Zernikes; specimens "
            f"{', '.join(TRAIN_SPECIMENS)}; "
            "shot/read noise, 8-bit, JPEG for half the fields."
            + (
                f" Real: jiang={cfg.jiang}, stacks={list(cfg.stacks)}."
                if cfg.jiang or cfg.stacks
                else ""
            )
        ),
        "test_set": (
            f"{net['n']} tiles of {cfg.full_px}×{cfg.full_px} px: specimens never used in "
            f"training ({', '.join(TEST_SPECIMENS)}), {cfg.n_test_aberrations} aberration "
            f"configurations from seed {TEST_BANK_SEED} (never used in training), defocus "
            f"uniform in ±10 µm, seed {TEST_SEED}."
        ),
        "command": cfg.command,
        "seed": cfg.seed,
        "steps": step,
        "wall_time_min": round(wall_min, 1),
        "device": f"{cfg.device} ({torch.get_num_threads()} threads at the end)",
        "params_train": n_params,
        "weight_bytes_float32": 4 * n_params,
        "config": LDSEConfig(**cfg.config).to_dict(),
        "train_config": cfg.to_dict(),
        **evaluation,
        "validation": {
            k: val[k] for k in ("n", "mae", "mae_le5", "sign_acc_ge1", "rmse", "within_dof_half")
        },
        "history": history,
    }


def reevaluate_card(
    weights: str | Path, device: str = "cpu", log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Evaluate a weights file on the held-out test set again and rewrite its model card.

    ``gplws train ldse --evaluate WEIGHTS`` runs this.

    The card's training record (command, seed, steps, history, ``train_config``) is kept;
    the evaluation entries (``test``, ``test_magnitude``, ``baseline_abs_only``, the
    breakdowns and ``status``) are replaced, so a card always matches the current test-set
    code. The classical baseline is calibrated on the same training-distribution tiles a
    training run uses (same seed, bank and simulator settings).

    Parameters
    ----------
    weights
        A ``.safetensors`` file with its ``.json`` card beside it.
    device
        torch device of the evaluation.
    log
        Receives progress lines.

    Returns
    -------
    dict
        The rewritten card.
    """
    path = Path(weights)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    tc = {**LDSETrainConfig().to_dict(), **card.get("train_config", {})}
    optics = optics_preset(str(tc["optics"]))
    log(f"building the training PSF bank ({tc['n_aberrations']} aberrations) for the baseline…")
    bank = PSFBank(
        optics,
        n_configs=int(tc["n_aberrations"]),
        seed=int(tc["seed"]),
        step_um=float(tc["psf_step_um"]),
        size_px=int(tc["psf_size_px"]),
    )
    sim = DefocusSimulator(
        bank,
        TRAIN_SPECIMENS,
        p_phase=float(tc["p_phase"]),
        phase_rad=tuple(tc["phase_rad"]),
        p_near=float(tc["p_near"]),
    )
    calib = calibration_tiles(sim, int(tc["n_calib_fields"]), int(tc["full_px"]))
    log("evaluating on the held-out test set…")
    model = load_ldse(path, device=device)
    evaluation = evaluate_held_out(
        model,
        optics,
        calib,
        n_fields=int(tc["n_test_fields"]),
        per_field=int(tc["test_per_field"]),
        tile_px=int(tc["full_px"]),
        n_configs=int(tc["n_test_aberrations"]),
        step_um=float(tc["psf_step_um"]),
        size_px=int(tc["psf_size_px"]),
        device=device,
    )
    card.update(evaluation)
    save_ldse(model, path, card)
    t = evaluation["test"]
    log(
        f"rewrote {card_path.name}: MAE|z|<=5 {t['mae_le5']:.3f} µm, sign {t['sign_acc_ge1']:.3f}, "
        f"magnitude MAE|z|<=5 {evaluation['test_magnitude']['mae_abs_le5']:.3f} µm"
    )
    return card
