"""Train LDSE-NET (single-tile signed defocus) and write its weights and model card.

``python -m napari_gplws.training.ldse --max-minutes 60 --weights-out W.safetensors``
(also reachable as ``gplws train ldse``) trains on tiles rendered on the fly by
:mod:`.defocus_sim` and, optionally, on real data (:mod:`.autofocus_data`: the Jiang et al.
2018 layout with ``--jiang DIR`` and focal stacks with known focus positions with
``--stacks PATH ...``). It uses

* MSE loss on the defocus in µm (plus auxiliary losses on its magnitude and sign,
  :func:`ldse_loss`), Adam, a linear warm-up then a cosine decay over the time
  or step budget, an exponential moving average (EMA) of the weights for evaluation;
* 128×128 crops for the first 80 % of the budget and 224×224 tiles afterwards (the network
  pools globally, so it runs at any size; the end of training matches the use);
* a ring buffer of rendered tiles (half of every batch is freshly rendered, tiles are
  augmented by flips and 90° rotations), so rendering does not dominate the step time;
* splits grouped by field of view (validation fields are rendered from a separate seed; real
  data are split by field/stack), fixed seeds, checkpoints every ``--ckpt-minutes`` to
  ``OUT_DIR/last.ckpt``, ``--resume``, and a clean stop at ``--max-minutes``.

At the end it evaluates the EMA weights on the held-out simulated test set
(:data:`.defocus_sim.TEST_SPECIMENS`, aberration configurations from a seed never used in
training) beside a classical |z|-only baseline (:func:`fit_abs_baseline`) and writes the
weights (safetensors) with a model card (JSON + Markdown).

It does not define the network (:mod:`.models.ldse`) nor tile wide fields
(:mod:`.autofocus`).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gplws.defocus.analyse import CONFIDENT_DIRECTION
from napari_gplws.dff.measures import focus_measure
from napari_gplws.models.ldse import FORMAT as LDSE_FORMAT
from napari_gplws.models.ldse import (
    LDSEConfig,
    LDSENet,
    count_parameters,
    prepare_tiles,
    save_ldse,
)
from napari_gplws.models.registry import card_markdown  # noqa: F401 - loaded now: used when the card is written
from napari_gplws.sim.defocus_tiles import (
    PHASE_RAD,
    TEST_SPECIMENS,
    TRAIN_SPECIMENS,
    DefocusSimulator,
    PSFBank,
    TileSet,
)
from napari_gplws.sim.psf import PRESETS, Optics, depth_of_field_um

__all__ = [
    "LDSETrainConfig",
    "build_parser",
    "defocus_metrics",
    "evaluate_held_out",
    "fit_abs_baseline",
    "ldse_loss",
    "magnitude_metrics",
    "predict_tile_parts",
    "predict_tiles",
    "reevaluate_card",
    "test_set",
    "train_ldse",
    "train_main",
]

VAL_SEED = 1_000_003
TEST_SEED = 2_000_003
TEST_BANK_SEED = 17
REGION_TEST_SEED = 3_000_003
PAIR_TEST_SEED = 4_000_003
#: Focus steps (µm) between the two frames of the card's :func:`pair_test` entries.
PAIR_STEPS_UM = (2.0, 4.0)


@dataclass
class LDSETrainConfig:
    """Options of an LDSE-NET training run (all have command-line equivalents)."""

    out_dir: str = "runs/ldse"
    steps: int = 1_000_000
    max_minutes: float | None = None
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    seed: int = 0
    optics: str = "20x"
    n_aberrations: int = 8
    psf_step_um: float = 0.25
    psf_size_px: int = 113
    crop_px: int = 128
    full_px: int = 224
    full_fraction: float = 0.2
    fresh_fraction: float = 0.5
    buffer_size: int = 3072
    per_field: int = 6
    ema_decay: float = 0.998
    aux_abs_weight: float = 1.0
    aux_sign_weight: float = 0.5
    signed_weight: float = 1.0
    phase_rad: tuple[float, float] = PHASE_RAD
    p_phase: float = 0.8
    p_near: float = 0.6
    sign_stage_fraction: float = 0.0
    sign_stage_phase_rad: tuple[float, float] = (0.8, 1.5)
    init_weights: str | None = None
    ckpt_minutes: float = 4.0
    val_minutes: float = 8.0
    resume: bool = False
    device: str = "cpu"
    threads: int = 0
    n_val_fields: int = 48
    n_test_fields: int = 80
    n_test_aberrations: int = 4
    n_calib_fields: int = 64
    test_per_field: int = 8
    jiang: str | None = None
    stacks: tuple[str, ...] = ()
    stack_focus_step_um: float | None = None
    real_fraction: float = 0.5
    weights_out: str | None = None
    command: str = ""
    log_every: int = 25
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------------
# Metrics and the classical baseline
# ------------------------------------------------------------------------------------------
def defocus_metrics(
    pred_um: np.ndarray,
    true_um: np.ndarray,
    dof_um: float,
    bin_um: float = 1.0,
    max_um: float = 10.0,
    magnitude_um: np.ndarray | None = None,
    confident: float = CONFIDENT_DIRECTION,
    confidence: np.ndarray | None = None,
) -> dict[str, Any]:
    """Error statistics of signed defocus predictions (all in µm).

    Returns MAE, RMSE, median and 90th percentile of the absolute error over all tiles;
    ``mae_le5`` (MAE for ``|z| ≤ 5``); ``sign_acc_ge1`` (fraction of correct signs for
    ``|z| ≥ 1``); ``within_dof_half`` (fraction with error ≤ DOF/2) and ``per_bin``: MAE and
    count per 1 µm bin of the true defocus. NaN predictions are excluded and counted.

    With the unsigned ``magnitude_um`` of the same tiles, also the direction confidence
    ``|pred| / magnitude`` is judged: ``confident_fraction_ge1`` (share of ``|z| ≥ 1``
    tiles with confidence ≥ ``confident``) and ``sign_acc_confident_ge1`` (their sign
    accuracy). A ``confidence`` array (e.g. of the multi-frame fit) is judged the same way.
    """
    p = np.asarray(pred_um, np.float64).ravel()
    t = np.asarray(true_um, np.float64).ravel()
    ok = np.isfinite(p)
    n_nan = int((~ok).sum())
    conf = None
    if magnitude_um is not None:
        mag = np.asarray(magnitude_um, np.float64).ravel()[ok]
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = np.where(mag > 0, np.abs(p[ok]) / mag, 0.0)
    if confidence is not None:
        conf = np.asarray(confidence, np.float64).ravel()[ok]
    p, t = p[ok], t[ok]
    e = np.abs(p - t)
    le5 = np.abs(t) <= 5.0
    ge1 = np.abs(t) >= 1.0
    edges = np.arange(-max_um, max_um + 1e-9, bin_um)
    per_bin = []
    for lo, hi in itertools.pairwise(edges):
        m = (t >= lo) & (t < hi) if hi < edges[-1] else (t >= lo) & (t <= hi)
        per_bin.append(
            {
                "bin_um": [float(lo), float(hi)],
                "n": int(m.sum()),
                "mae": float(e[m].mean()) if m.any() else None,
                "bias": float((p[m] - t[m]).mean()) if m.any() else None,
            }
        )
    extra: dict[str, Any] = {}
    if conf is not None:
        sure = ge1 & (conf >= confident)
        extra = {
            "confident_threshold": float(confident),
            "confident_fraction_ge1": float(sure.sum() / max(ge1.sum(), 1)),
            "sign_acc_confident_ge1": (
                float((np.sign(p[sure]) == np.sign(t[sure])).mean()) if sure.any() else None
            ),
        }
    return {
        **extra,
        "n": len(t),
        "n_nan": n_nan,
        "mae": float(e.mean()),
        "rmse": float(np.sqrt((e**2).mean())),
        "median": float(np.median(e)),
        "p90": float(np.percentile(e, 90)),
        "mae_le5": float(e[le5].mean()) if le5.any() else None,
        "sign_acc_ge1": float((np.sign(p[ge1]) == np.sign(t[ge1])).mean()) if ge1.any() else None,
        "within_dof_half": float((e <= dof_um / 2).mean()),
        "mae_abs_le5": float(np.abs(np.abs(p) - np.abs(t))[le5].mean()) if le5.any() else None,
        "dof_um": float(dof_um),
        "per_bin": per_bin,
    }


def _sharpness_feature(tiles: np.ndarray) -> np.ndarray:
    """log mean sum-modified-Laplacian of each standardised tile (classical focus cue)."""
    x = prepare_tiles(tiles)[:, 0]
    return np.array([np.log(float(focus_measure(t, "sml", 9).mean()) + 1e-6) for t in x])


def fit_abs_baseline(
    tiles: np.ndarray, defocus_um: np.ndarray, n_bins: int = 24
) -> dict[str, list[float]]:
    """Calibrate a classical |z| estimator: the sharpness feature mapped to |defocus|.

    The feature is the log of the mean sum-modified-Laplacian (window 9) of the
    standardised tile; it is binned into quantiles, the mean |z| per bin is made monotone
    (sharper → closer to focus), and :func:`abs_baseline_predict` interpolates. It cannot
    tell the sign: it is the "|z| only" reference of the model card.
    """
    f = _sharpness_feature(tiles)
    z = np.abs(np.asarray(defocus_um, np.float64))
    qs = np.quantile(f, np.linspace(0, 1, n_bins + 1))
    xs, ys = [], []
    for lo, hi in itertools.pairwise(qs):
        m = (f >= lo) & (f <= hi)
        if m.any():
            xs.append(float(f[m].mean()))
            ys.append(float(z[m].mean()))
    ys = list(np.maximum.accumulate(np.asarray(ys)[::-1])[::-1])  # non-increasing with sharpness
    return {"feature": xs, "abs_defocus_um": [float(v) for v in ys]}


def abs_baseline_predict(model: dict[str, list[float]], tiles: np.ndarray) -> np.ndarray:
    """|z| (µm) from the calibrated classical baseline of :func:`fit_abs_baseline`."""
    return np.interp(_sharpness_feature(tiles), model["feature"], model["abs_defocus_um"])


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def _optics(name: str) -> Optics:
    if name not in PRESETS:
        raise ValueError(f"Unknown optics preset '{name}'; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90° rotations of a batch ``(B, 1, H, W)`` (one draw per tile)."""
    out = np.empty_like(x)
    for i in range(len(x)):
        t = x[i, 0]
        if rng.random() < 0.5:
            t = t[:, ::-1]
        out[i, 0] = np.rot90(t, int(rng.integers(4)))
    return out


def _random_crop(tiles: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = tiles.shape[1:3]
    if h == size and w == size:
        return tiles
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return tiles[:, y : y + size, x : x + size]


class _Buffer:
    """Ring buffer of prepared tiles ``(N, 1, S, S)`` float32 with labels."""

    def __init__(self, size: int, px: int) -> None:
        self.x = np.zeros((size, 1, px, px), np.float32)
        self.y = np.zeros(size, np.float32)
        self.n = 0
        self.pos = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        for i in range(len(x)):
            self.x[self.pos] = x[i]
            self.y[self.pos] = y[i]
            self.pos = (self.pos + 1) % len(self.y)
            self.n = min(self.n + 1, len(self.y))

    def sample(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, self.n, k)
        return self.x[idx], self.y[idx]


def test_set(
    optics: Optics,
    n_fields: int = 80,
    per_field: int = 8,
    tile_px: int = 224,
    n_configs: int = 4,
    seed: int = TEST_SEED,
    bank: PSFBank | None = None,
    step_um: float = 0.25,
    size_px: int = 113,
    phase_rad: tuple[float, float] = PHASE_RAD,
) -> TileSet:
    """The project's held-out simulated test set.

    Specimens from :data:`.defocus_sim.TEST_SPECIMENS` (never used in training), aberration
    configurations drawn from :data:`TEST_BANK_SEED` (never used in training), defocus
    uniform in ±10 µm, ``per_field`` values per field.
    """
    bank = bank or PSFBank(
        optics, n_configs=n_configs, seed=TEST_BANK_SEED, step_um=step_um, size_px=size_px
    )
    sim = DefocusSimulator(bank, TEST_SPECIMENS, p_near=0.0, phase_rad=phase_rad)
    return sim.tiles(np.random.default_rng(seed), n_fields, per_field, tile_px)


@torch.inference_mode()
def predict_tiles(
    model: nn.Module, tiles: np.ndarray, batch: int = 64, device: str = "cpu"
) -> np.ndarray:
    """Defocus (µm) of raw tiles with a model in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(prepare_tiles(tiles[i : i + batch])).to(device)
        out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@torch.inference_mode()
def predict_tile_parts(
    model: LDSENet, tiles: np.ndarray, batch: int = 64, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """``(signed defocus, magnitude)`` in µm of raw tiles with a model in eval mode."""
    model.eval()
    signed, magnitude = [], []
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(prepare_tiles(tiles[i : i + batch])).to(device)
        m, s = model.forward_parts(x)
        signed.append((m * torch.tanh(s)).float().cpu().numpy())
        magnitude.append(m.float().cpu().numpy())
    if not signed:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(signed), np.concatenate(magnitude)


def magnitude_metrics(magnitude_um: np.ndarray, true_um: np.ndarray, dof_um: float) -> dict[str, float]:
    """Errors of an unsigned estimate against ``|z|`` (µm): MAE (all, ``|z| ≤ 5``), median,
    90th percentile and the fraction within DOF/2."""
    e = np.abs(np.asarray(magnitude_um, np.float64) - np.abs(np.asarray(true_um, np.float64)))
    le5 = np.abs(true_um) <= 5
    return {
        "mae_abs": float(e.mean()),
        "mae_abs_le5": float(e[le5].mean()),
        "median_abs": float(np.median(e)),
        "p90_abs": float(np.percentile(e, 90)),
        "within_dof_half_abs": float((e <= dof_um / 2).mean()),
    }


#: Issue 4's quality bar on the held-out simulated test set.
BAR_MAE_LE5_UM = 0.5
BAR_SIGN_ACC_GE1 = 0.9


def bar_status(net: dict[str, Any], magnitude: dict[str, float], base: dict[str, Any]) -> str:
    """One paragraph for the model card: where the weights stand against issue 4's bar."""
    mae, sign = net["mae_le5"], net["sign_acc_ge1"]
    met = mae <= BAR_MAE_LE5_UM and sign >= BAR_SIGN_ACC_GE1
    head = (
        "Meets the issue-4 bar"
        if met
        else "Below the issue-4 bar"
    )
    return (
        f"{head} (MAE <= {BAR_MAE_LE5_UM} µm for |z| <= 5, sign >= {BAR_SIGN_ACC_GE1:.0%} for "
        f"|z| >= 1): MAE {mae:.2f} µm, sign accuracy {sign:.2f}. How far out of focus (the "
        f"magnitude output, any direction): MAE {magnitude['mae_abs_le5']:.2f} µm for |z| <= 5, "
        f"against {base['mae_abs_le5']:.2f} µm for the classical focus-measure baseline. "
        + (
            f"Where the network is confident of the direction (confidence >= "
            f"{net['confident_threshold']}, {net['confident_fraction_ge1']:.0%} of the tiles with "
            f"|z| >= 1) the sign is right {net['sign_acc_confident_ge1']:.0%} of the time. "
            if net.get("sign_acc_confident_ge1") is not None
            else ""
        )
        + (
            ""
            if sign >= BAR_SIGN_ACC_GE1
            else "Elsewhere the direction is a hint, not a measurement: trust the magnitude, and "
            "the sign only where the confidence is high (marked in the CLI table and the "
            "focal-error map; docs/autofocus.md, 'How far to trust the sign')."
        )
    )


def evaluate_held_out(
    model: LDSENet,
    optics: Optics,
    calibration: TileSet,
    *,
    n_fields: int = 80,
    per_field: int = 8,
    tile_px: int = 224,
    n_configs: int = 4,
    step_um: float = 0.25,
    size_px: int = 113,
    device: str = "cpu",
) -> dict[str, Any]:
    """Everything the model card reports about the held-out simulated test set.

    ``calibration`` (tiles of the training distribution) calibrates the classical |z|-only
    baseline. Returns the card's ``test`` (signed metrics), ``test_magnitude``,
    ``baseline_abs_only``, ``per_specimen``, ``per_aberration`` and ``status`` entries.
    """
    dof = depth_of_field_um(optics)
    # One held-out bank for the tile test and the region test (building it is the slow part).
    bank = PSFBank(
        optics, n_configs=n_configs, seed=TEST_BANK_SEED, step_um=step_um, size_px=size_px
    )
    test = test_set(optics, n_fields, per_field, tile_px, bank=bank)
    pred, mag = predict_tile_parts(model, test.tiles, device=device)
    net_m = defocus_metrics(pred, test.defocus_um, dof, magnitude_um=mag)
    mag_m = magnitude_metrics(mag, test.defocus_um, dof)
    base = fit_abs_baseline(calibration.tiles, calibration.defocus_um)
    base_m: dict[str, Any] = {
        **magnitude_metrics(abs_baseline_predict(base, test.tiles), test.defocus_um, dof),
        "sign_acc_ge1": 0.5,
        "note": "predicts |z| only; sign accuracy of a coin flip",
    }

    def breakdown(groups: np.ndarray) -> dict[str, Any]:
        out = {}
        for name in np.unique(groups):
            m = groups == name
            mm = defocus_metrics(pred[m], test.defocus_um[m], dof, magnitude_um=mag[m])
            out[str(name)] = {
                k: mm[k]
                for k in (
                    "n", "mae", "mae_le5", "sign_acc_ge1", "confident_fraction_ge1",
                    "sign_acc_confident_ge1",
                )
            }
            out[str(name)]["mae_abs_le5"] = magnitude_metrics(mag[m], test.defocus_um[m], dof)[
                "mae_abs_le5"
            ]
        return out

    brightfield = np.array([not str(n).startswith("fluo") for n in test.specimen])
    regions = region_test(
        model, optics, n_fields=max(2, n_fields // 2), tile_px=tile_px, bank=bank, device=device
    )
    pairs = [
        pair_test(
            model,
            optics,
            n_fields=n_fields,
            tile_px=tile_px,
            bank=bank,
            device=device,
            step_um=step,
        )
        for step in PAIR_STEPS_UM
    ]
    return {
        "test": net_m,
        "test_magnitude": mag_m,
        "baseline_abs_only": base_m,
        "per_specimen": breakdown(test.specimen),
        "per_aberration": breakdown(test.aberration),
        "per_modality": breakdown(np.where(brightfield, "brightfield", "fluorescence")),
        "regions": regions,
        "pairs": pairs,
        "status": bar_status(net_m, mag_m, base_m),
    }


def region_test(
    model: LDSENet,
    optics: Optics,
    *,
    n_fields: int = 40,
    defocus_per_field: int = 4,
    tiles_per_side: int = 2,
    tile_px: int = 224,
    n_configs: int = 4,
    step_um: float = 0.25,
    size_px: int = 113,
    bank: PSFBank | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """What a user sees in a focal-error map: the median over the tiles of one region.

    Held-out specimens and aberrations as in :func:`test_set` (another seed); each field is
    rendered ``tiles_per_side × tiles_per_side`` tiles wide at ``defocus_per_field`` defocus
    values (uniform in ±10 µm), each tile is predicted and the region reports the median,
    as :func:`.autofocus.autofocus` does. Returns :func:`defocus_metrics` of the regions
    (without the per-bin table) and the number of tiles per region.
    """
    bank = bank or PSFBank(
        optics, n_configs=n_configs, seed=TEST_BANK_SEED, step_um=step_um, size_px=size_px
    )
    sim = DefocusSimulator(bank, TEST_SPECIMENS, p_near=0.0)
    rng = np.random.default_rng(REGION_TEST_SEED)
    k = tiles_per_side
    preds, mags, truth = [], [], []
    for _ in range(n_fields):
        dz = sim.draw_defocus(rng, defocus_per_field)
        frames, _, _ = sim.render_field(rng, dz, tile_px=k * tile_px)
        tiles = frames.reshape(len(dz), k, tile_px, k, tile_px, *frames.shape[3:])
        tiles = np.moveaxis(tiles, 3, 2).reshape(
            len(dz) * k * k, tile_px, tile_px, *frames.shape[3:]
        )
        p, mg = predict_tile_parts(model, tiles, device=device)
        preds.append(np.median(p.reshape(len(dz), k * k), axis=1))
        mags.append(np.median(mg.reshape(len(dz), k * k), axis=1))
        truth.append(dz)
    m = defocus_metrics(
        np.concatenate(preds),
        np.concatenate(truth),
        depth_of_field_um(optics),
        magnitude_um=np.concatenate(mags),
    )
    m.pop("per_bin")
    return {**m, "tiles_per_region": k * k, "region_um": k * tile_px * optics.pixel_size_um}


def pair_test(
    model: LDSENet,
    optics: Optics,
    *,
    n_fields: int = 40,
    pairs_per_field: int = 8,
    step_um: float = PAIR_STEPS_UM[-1],
    tile_px: int = 224,
    bank: PSFBank | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Direction from two frames ``step_um`` apart: :func:`frames_test` with offsets
    ``(0, step_um)``; the result also holds ``step_um``."""
    return {
        **frames_test(
            model,
            optics,
            (0.0, step_um),
            n_fields=n_fields,
            sets_per_field=pairs_per_field,
            tile_px=tile_px,
            bank=bank,
            device=device,
        ),
        "step_um": step_um,
    }


def frames_test(
    model: LDSENet,
    optics: Optics,
    offsets_um: Sequence[float],
    *,
    n_fields: int = 40,
    sets_per_field: int = 8,
    tile_px: int = 224,
    n_configs: int = 4,
    psf_step_um: float = 0.25,
    size_px: int = 113,
    bank: PSFBank | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Direction from several frames at known focus offsets (``combine_frames=True``).

    Held-out specimens and aberrations as in :func:`test_set` (another seed). Each set is
    one tile at a defocus ``z`` uniform in ±10 µm and the same tile after moving the focus
    drive by each of ``offsets_um`` (all in one direction, chosen at random and flipped
    when the last frame would leave the simulated range); the first tile's defocus is taken
    from :func:`.defocus_fit.fit_best_focus` of all tiles' magnitudes and sign logits.
    Returns :func:`defocus_metrics` of those estimates (``confident`` = the fit's
    confidence) beside the single-frame figures of the same first tiles, and the offsets.
    """
    from napari_gplws.defocus.fit import fit_best_focus

    offs = np.asarray(offsets_um, np.float64)
    bank = bank or PSFBank(
        optics, n_configs=n_configs, seed=TEST_BANK_SEED, step_um=psf_step_um, size_px=size_px
    )
    sim = DefocusSimulator(bank, TEST_SPECIMENS, p_near=0.0)
    rng = np.random.default_rng(PAIR_TEST_SEED)
    lim = sim.defocus_max_um
    reach = float(np.abs(offs).max())
    z_all, sgn_all, mags, logits = [], [], [], []
    for _ in range(n_fields):
        z = sim.draw_defocus(rng, sets_per_field)
        sgn = np.where(rng.random(sets_per_field) < 0.5, 1.0, -1.0)
        sgn = np.where(np.abs(z + sgn * reach) > lim, -sgn, sgn)
        zz = (z[None] + sgn[None] * offs[:, None]).astype(np.float32)  # (K, sets)
        frames, _, _ = sim.render_field(rng, zz.ravel(), tile_px=tile_px)
        x = torch.from_numpy(prepare_tiles(frames)).to(device)
        with torch.inference_mode():
            model.eval()
            m, s = model.forward_parts(x)
        mags.append(m.float().cpu().numpy().reshape(len(offs), -1).T)
        logits.append(s.float().cpu().numpy().reshape(len(offs), -1).T)
        z_all.append(z)
        sgn_all.append(sgn)
    z, sgn = np.concatenate(z_all), np.concatenate(sgn_all)
    mag, logit = np.concatenate(mags), np.concatenate(logits)
    est = np.empty(len(z))
    conf = np.empty(len(z))
    for i in range(len(z)):
        f = fit_best_focus(sgn[i] * offs, mag[i], logit[i])
        est[i], conf[i] = f.defocus_um[0], f.confidence[0]
    dof = depth_of_field_um(optics)
    multi = defocus_metrics(est, z, dof, confidence=conf)
    multi.pop("per_bin")
    single = defocus_metrics(mag[:, 0] * np.tanh(logit[:, 0]), z, dof, magnitude_um=mag[:, 0])
    return {
        **multi,
        "offsets_um": [float(v) for v in offs],
        "single_frame": {k: single[k] for k in ("mae_le5", "sign_acc_ge1", "mae")},
    }


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def ldse_loss(
    model: LDSENet,
    x: torch.Tensor,
    y: torch.Tensor,
    abs_weight: float = 1.0,
    sign_weight: float = 0.5,
    signed_weight: float = 1.0,
    stats: dict[str, float] | None = None,
) -> torch.Tensor:
    """MSE on the signed defocus plus auxiliary terms on its parts.

    ``signed_weight · MSE(m·tanh(s), z) + abs_weight · MSE(m, |z|) + sign_weight · BCE(s, z > 0)``,
    the sign term counting only tiles with ``|z| > 0.5 µm`` (closer to focus the sign is
    ill-defined). See :class:`.models.ldse.LDSENet` for why the head is factorised. When
    ``stats`` is given it receives the batch's sign hits and count for ``|z| ≥ 1 µm``.
    """
    magnitude, sign_logit = model.forward_parts(x)
    loss = abs_weight * nn.functional.mse_loss(magnitude, y.abs())
    if signed_weight:
        loss = loss + signed_weight * nn.functional.mse_loss(
            magnitude * torch.tanh(sign_logit), y
        )
    if sign_weight:
        w = (y.abs() > 0.5).float()
        bce = nn.functional.binary_cross_entropy_with_logits(
            sign_logit, (y > 0).float(), weight=w, reduction="sum"
        )
        loss = loss + sign_weight * bce / w.sum().clamp(min=1.0)
    if stats is not None:
        far = y.abs() >= 1.0
        stats["sign_hits"] = float(((sign_logit > 0) == (y > 0))[far].sum())
        stats["sign_n"] = float(far.sum())
    return loss


def _gplws_training_alive() -> bool:
    try:
        r = subprocess.run(
            ["pgrep", "-f", "napari_gplws.training.gplws gplws"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return bool(r.stdout.strip())
    except Exception:  # noqa: BLE001 - pgrep missing: assume alone
        return False


def _auto_threads() -> int:
    return 1 if _gplws_training_alive() else min(2, os.cpu_count() or 1)


def _lr_factor(cfg: LDSETrainConfig, step: int, frac: float) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * min(frac, 1.0))
    )


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for (k, e), (_, m) in zip(ema.state_dict().items(), model.state_dict().items()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(m.detach(), alpha=1 - decay)
            else:
                e.copy_(m)


def _initial_weights(path: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Network weights to start a fine-tuning from: the EMA model of a training checkpoint
    (``.ckpt``) or packaged weights (``.safetensors``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--init-weights: '{p}' does not exist.")
    if p.suffix == ".safetensors":
        from napari_gplws.models.registry import read_weights

        state, _meta = read_weights(p, LDSE_FORMAT, "LDSE-NET")
        return {k: v.to(device) for k, v in state.items()}
    ck = torch.load(p, map_location=device, weights_only=True)
    return ck["ema"]


def train_ldse(cfg: LDSETrainConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a training; returns a summary (and writes weights + card when ``weights_out``)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "train.log", "a", encoding="utf-8")  # noqa: SIM115 - closed at the end

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()
        if log is not None:
            log(msg)

    threads = cfg.threads or _auto_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    aug_rng = np.random.default_rng([cfg.seed, 1])
    optics = _optics(cfg.optics)
    dof = depth_of_field_um(optics)
    device = torch.device(cfg.device)
    say(f"LDSE-NET training: {json.dumps(cfg.to_dict())}")
    say(f"threads {threads}; building training PSF bank ({cfg.n_aberrations} aberrations)…")
    t_bank = time.perf_counter()
    bank = PSFBank(
        optics,
        n_configs=cfg.n_aberrations,
        seed=cfg.seed,
        step_um=cfg.psf_step_um,
        size_px=cfg.psf_size_px,
    )
    sim = DefocusSimulator(
        bank,
        TRAIN_SPECIMENS,
        p_phase=cfg.p_phase,
        phase_rad=tuple(cfg.phase_rad),
        p_near=cfg.p_near,
    )
    # Sign stage: every brightfield field is a strong phase object, and the loss is on the
    # magnitude and the sign only. Learning the sign from the start on the full mix (weak or
    # no phase in many fields) stayed at chance (docs/autofocus.md, "Why the sign is not
    # learnt yet"); a probe on strong-phase fields learnt it within a few hundred steps.
    sign_sim = DefocusSimulator(
        bank,
        TRAIN_SPECIMENS,
        p_phase=1.0,
        phase_rad=tuple(cfg.sign_stage_phase_rad),
        p_near=cfg.p_near,
    )
    say(f"bank ready in {time.perf_counter() - t_bank:.0f} s")
    val = sim.tiles(
        np.random.default_rng(VAL_SEED), cfg.n_val_fields, 4, cfg.full_px
    )  # fields disjoint from training
    real = _real_source(cfg, say)

    model = LDSENet(LDSEConfig(**cfg.config)).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed_prev = 0, 0.0
    ckpt = out / "last.ckpt"
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, elapsed_prev = int(state["step"]), float(state["elapsed_s"])
        rng.bit_generator.state = state["rng"]
        say(f"resumed from {ckpt} at step {step} ({elapsed_prev / 60:.1f} min)")
    elif cfg.init_weights:
        init = _initial_weights(cfg.init_weights, device)
        model.load_state_dict(init)
        ema.load_state_dict(init)
        say(f"initialised from {cfg.init_weights} (fresh optimiser and schedule)")
    say(f"parameters {count_parameters(model)}")

    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    t0 = time.perf_counter() - elapsed_prev
    last_ckpt = last_val = last_thread_check = time.perf_counter()
    buffers: dict[int, _Buffer] = {}
    field_id = 0
    losses: list[float] = []
    sign_hits: list[tuple[float, float]] = []
    history: list[dict[str, Any]] = []

    def frac_done() -> float:
        f_steps = step / cfg.steps
        f_time = (time.perf_counter() - t0) / budget_s if budget_s else 0.0
        return max(f_steps, f_time)

    def save_ckpt() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed_s": time.perf_counter() - t0,
                "rng": rng.bit_generator.state,
                "config": cfg.to_dict(),
            },
            tmp,
        )
        os.replace(tmp, ckpt)

    while step < cfg.steps and (budget_s is None or time.perf_counter() - t0 < budget_s):
        frac = frac_done()
        sign_stage = frac < cfg.sign_stage_fraction
        px = cfg.full_px if frac >= 1 - cfg.full_fraction else cfg.crop_px
        bs = cfg.batch_size if px == cfg.crop_px else max(cfg.batch_size // 2, 4)
        buf = buffers.setdefault(
            (px, sign_stage),
            _Buffer(cfg.buffer_size if px == cfg.crop_px else cfg.buffer_size // 3, px),
        )
        n_fresh = max(1, round(bs * cfg.fresh_fraction)) if buf.n >= bs * 4 else bs
        n_fields = max(1, math.ceil(n_fresh / cfg.per_field))
        if real is not None and rng.random() < cfg.real_fraction:
            tiles, labels = real(rng, n_fields * cfg.per_field, px)
        else:
            ts = (sign_sim if sign_stage else sim).tiles(
                rng, n_fields, cfg.per_field, px, first_field_id=field_id
            )
            field_id += n_fields
            tiles, labels = ts.tiles, ts.defocus_um
        buf.add(prepare_tiles(tiles), labels)
        xb, yb = buf.sample(bs, rng)
        xb = _augment(xb, aug_rng)
        lr = cfg.lr * _lr_factor(cfg, step, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
        y = torch.from_numpy(yb).to(device)
        stats: dict[str, float] = {}
        loss = ldse_loss(
            model,
            x,
            y,
            cfg.aux_abs_weight,
            cfg.aux_sign_weight,
            signed_weight=0.0 if sign_stage else cfg.signed_weight,
            stats=stats,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        _ema_update(ema, model, cfg.ema_decay if step > 200 else 0.9)
        step += 1
        losses.append(loss.item())
        sign_hits.append((stats["sign_hits"], stats["sign_n"]))
        now = time.perf_counter()
        if step % cfg.log_every == 0:
            hits, n = np.sum(sign_hits[-cfg.log_every :], axis=0)
            say(
                f"step {step} loss {np.mean(losses[-cfg.log_every :]):.3f} "
                f"train sign {hits / max(n, 1):.2f} lr {lr:.2e} px {px}"
                f"{' sign-stage' if sign_stage else ''} {(now - t0) / 60:.1f} min ({frac:.0%})"
            )
        if not cfg.threads and now - last_thread_check > 120:
            last_thread_check = now
            want = _auto_threads()
            if want != torch.get_num_threads():
                torch.set_num_threads(want)
                say(f"threads -> {want}")
        if now - last_ckpt > cfg.ckpt_minutes * 60:
            save_ckpt()
            last_ckpt = now
        if now - last_val > cfg.val_minutes * 60:
            last_val = now
            m = defocus_metrics(
                predict_tiles(ema, val.tiles, device=str(device)), val.defocus_um, dof
            )
            history.append(
                {
                    "step": step,
                    "minutes": (now - t0) / 60,
                    **{k: m[k] for k in ("mae", "mae_le5", "sign_acc_ge1")},
                }
            )
            say(
                f"val step {step}: MAE {m['mae']:.3f} MAE|z|<=5 {m['mae_le5']:.3f} sign {m['sign_acc_ge1']:.3f}"
            )
    save_ckpt()
    wall_min = (time.perf_counter() - t0) / 60
    say(f"training stopped at step {step} after {wall_min:.1f} min; evaluating…")
    val_m = defocus_metrics(predict_tiles(ema, val.tiles, device=str(device)), val.defocus_um, dof)
    summary: dict[str, Any] = {
        "steps": step,
        "wall_time_min": round(wall_min, 1),
        "validation": val_m,
        "history": history,
    }
    if cfg.weights_out:
        say("rendering the held-out test set…")
        calib = sim.tiles(np.random.default_rng(VAL_SEED + 1), cfg.n_calib_fields, 8, cfg.full_px)
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
            device=str(device),
        )
        net_m, base_m = evaluation["test"], evaluation["baseline_abs_only"]
        card = _model_card(cfg, model, optics, dof, step, wall_min, evaluation, val_m, history)
        save_ldse(ema, cfg.weights_out, card)
        say(
            f"wrote {cfg.weights_out} (+ .json, .md): test MAE|z|<=5 {net_m['mae_le5']:.3f} µm, "
            f"sign {net_m['sign_acc_ge1']:.3f}"
        )
        summary["test"] = net_m
        summary["baseline"] = base_m
    log_file.close()
    return summary


def reevaluate_card(
    weights: str | Path, device: str = "cpu", log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Evaluate a weights file on the held-out test set again and rewrite its model card.

    The card's training record (command, seed, steps, history, ``train_config``) is kept;
    the evaluation entries (``test``, ``test_magnitude``, ``baseline_abs_only``, the
    breakdowns and ``status``) are replaced, so a card always matches the current test-set
    code. The classical baseline is calibrated on the same training-distribution tiles a
    training run uses (same seed, bank and simulator settings).
    """
    from napari_gplws.models.ldse import load_ldse

    path = Path(weights)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    tc = {**LDSETrainConfig().to_dict(), **card.get("train_config", {})}
    optics = _optics(str(tc["optics"]))
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
    calib = sim.tiles(
        np.random.default_rng(VAL_SEED + 1), int(tc["n_calib_fields"]), 8, int(tc["full_px"])
    )
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


def _real_source(
    cfg: LDSETrainConfig, say: Callable[[str], None]
) -> Callable[..., tuple[np.ndarray, np.ndarray]] | None:
    """Sampler over real labelled tiles (training split only), or ``None``."""
    if not cfg.jiang and not cfg.stacks:
        return None
    from napari_gplws.training import ldse_data as ad

    sets = []
    if cfg.jiang:
        sets.append(ad.load_jiang_tiles(cfg.jiang, split="train", tile_px=cfg.full_px))
    for path in cfg.stacks:
        sets.append(
            ad.stack_defocus_tiles(path, tile_px=cfg.full_px, focus_step_um=cfg.stack_focus_step_um)
        )
    tiles = ad.concat_tilesets(sets)
    train_idx, _ = ad.grouped_split(tiles.field_id, val_fraction=0.15, seed=cfg.seed)
    say(
        f"real data: {len(train_idx)} training tiles from {len(np.unique(tiles.field_id[train_idx]))} fields"
    )

    def sample(rng: np.random.Generator, k: int, px: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.choice(train_idx, size=k)
        return _random_crop(tiles.tiles[idx], px, rng), tiles.defocus_um[idx]

    return sample


def _model_card(
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
            "Simulated tiles (napari_gplws.sim.defocus_tiles): scalar pupil PSF with index-mismatch "
            f"spherical aberration and random Zernikes; specimens {', '.join(TRAIN_SPECIMENS)}; "
            "shot/read noise, 8-bit, JPEG for half the fields."
            + (
                f" Real: jiang={cfg.jiang}, stacks={list(cfg.stacks)}."
                if cfg.jiang or cfg.stacks
                else ""
            )
        ),
        "test_set": (
            f"{net['n']} tiles of {cfg.full_px}×{cfg.full_px} px: specimens never used in training "
            f"({', '.join(TEST_SPECIMENS)}), {cfg.n_test_aberrations} aberration configurations from "
            f"seed {TEST_BANK_SEED} (never used in training), defocus uniform in ±10 µm, seed {TEST_SEED}."
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


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``gplws train ldse``."""
    d = LDSETrainConfig()
    p = argparse.ArgumentParser(
        prog="gplws train ldse", description="Train LDSE-NET (single-tile signed defocus)."
    )
    p.add_argument("--out-dir", default=d.out_dir, help="log and checkpoints (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument(
        "--max-minutes", type=float, default=None, help="stop cleanly after this wall time"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--optics", default=d.optics, choices=sorted(PRESETS))
    p.add_argument("--n-aberrations", type=int, default=d.n_aberrations)
    p.add_argument("--crop-px", type=int, default=d.crop_px)
    p.add_argument(
        "--full-fraction",
        type=float,
        default=d.full_fraction,
        help="final fraction of the budget trained on full 224 px tiles",
    )
    p.add_argument("--ckpt-minutes", type=float, default=d.ckpt_minutes)
    p.add_argument("--val-minutes", type=float, default=d.val_minutes)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.ckpt")
    p.add_argument(
        "--evaluate", default=None, metavar="WEIGHTS",
        help="do not train: evaluate WEIGHTS (.safetensors) on the held-out test set and "
        "rewrite its model card",
    )
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument(
        "--threads", type=int, default=d.threads, help="0: 1 while a GPLWS training runs, else 2"
    )
    p.add_argument("--n-test-fields", type=int, default=d.n_test_fields)
    p.add_argument("--n-test-aberrations", type=int, default=d.n_test_aberrations)
    p.add_argument("--n-val-fields", type=int, default=d.n_val_fields)
    p.add_argument("--jiang", default=None, help="Jiang et al. 2018 dataset folder (real tiles)")
    p.add_argument(
        "--stacks", nargs="*", default=[], help="focal stacks with focus positions (real tiles)"
    )
    p.add_argument(
        "--stack-focus-step",
        type=float,
        default=None,
        help="focus step (µm) when the stacks lack it",
    )
    p.add_argument("--real-fraction", type=float, default=d.real_fraction)
    p.add_argument("--weights-out", default=None, help="write weights + model card here at the end")
    p.add_argument("--aux-abs-weight", type=float, default=d.aux_abs_weight)
    p.add_argument("--aux-sign-weight", type=float, default=d.aux_sign_weight)
    p.add_argument(
        "--signed-weight", type=float, default=d.signed_weight,
        help="weight of the MSE on the signed defocus (µm²); with MSE terms of 5-20 µm² the "
        "sign's cross-entropy is drowned unless the MSE weights are small (e.g. 0.04 = (1/5 µm)²)",
    )
    p.add_argument(
        "--phase-rad", type=float, nargs=2, default=list(d.phase_rad), metavar=("LO", "HI"),
        help="peak phase delay range (rad) of simulated brightfield specimens (default %(default)s)",
    )
    p.add_argument(
        "--p-phase", type=float, default=d.p_phase,
        help="probability that a simulated brightfield field is also a phase object",
    )
    p.add_argument(
        "--p-near", type=float, default=d.p_near,
        help="fraction of simulated defocus values drawn within ±5.5 µm (the rest uniform in "
        "±10 µm; 0 = uniform over the whole range, as the held-out test set)",
    )
    p.add_argument(
        "--sign-stage-fraction", type=float, default=d.sign_stage_fraction,
        help="first fraction of the budget trained on magnitude + sign only, every brightfield "
        "field a strong phase object (see --sign-stage-phase-rad)",
    )
    p.add_argument(
        "--sign-stage-phase-rad", type=float, nargs=2, default=list(d.sign_stage_phase_rad),
        metavar=("LO", "HI"), help="phase range (rad) during the sign stage (default %(default)s)",
    )
    p.add_argument(
        "--init-weights", default=None,
        help="start from these weights (a .ckpt's EMA model or a .safetensors file), fresh optimiser",
    )
    p.add_argument("--log-every", type=int, default=d.log_every)
    return p


def train_main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; a leading ``"ldse"`` (the network name) is accepted and ignored."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ldse":
        argv = argv[1:]
    a = build_parser().parse_args(argv)
    if a.evaluate:
        reevaluate_card(a.evaluate, device=a.device)
        return 0
    cfg = LDSETrainConfig(
        out_dir=a.out_dir,
        steps=a.steps,
        max_minutes=a.max_minutes,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        optics=a.optics,
        n_aberrations=a.n_aberrations,
        crop_px=a.crop_px,
        full_fraction=a.full_fraction,
        ckpt_minutes=a.ckpt_minutes,
        val_minutes=a.val_minutes,
        resume=a.resume,
        device=a.device,
        threads=a.threads,
        n_test_fields=a.n_test_fields,
        n_test_aberrations=a.n_test_aberrations,
        n_val_fields=a.n_val_fields,
        jiang=a.jiang,
        stacks=tuple(a.stacks),
        stack_focus_step_um=a.stack_focus_step,
        real_fraction=a.real_fraction,
        weights_out=a.weights_out,
        log_every=a.log_every,
        aux_abs_weight=a.aux_abs_weight,
        aux_sign_weight=a.aux_sign_weight,
        signed_weight=a.signed_weight,
        phase_rad=(float(a.phase_rad[0]), float(a.phase_rad[1])),
        p_phase=a.p_phase,
        p_near=a.p_near,
        sign_stage_fraction=a.sign_stage_fraction,
        sign_stage_phase_rad=(float(a.sign_stage_phase_rad[0]), float(a.sign_stage_phase_rad[1])),
        init_weights=a.init_weights,
        command="python -m napari_gplws.training.ldse " + " ".join(shlex.quote(x) for x in argv),
    )
    try:
        summary = train_ldse(cfg)
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, default=str)[:4000])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(train_main())
