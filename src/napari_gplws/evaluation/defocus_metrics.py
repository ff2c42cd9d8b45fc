"""How well LDSE-NET tells the signed defocus of a tile: the held-out tests of its model card.

* :func:`defocus_metrics` and :func:`magnitude_metrics` — error statistics of signed and
  unsigned predictions (MAE, RMSE, percentiles, sign accuracy, per-bin errors, how often
  a confident direction is right);
* :func:`fit_abs_baseline` / :func:`abs_baseline_predict` — the classical |z|-only
  reference (a focus measure calibrated to |defocus|), which cannot tell the sign;
* :func:`test_set` — the held-out simulated test set (specimens and aberration
  configurations never used in training, defocus uniform in ±10 µm);
* :func:`evaluate_held_out` — everything the model card reports: the tile test, its
  breakdowns, :func:`region_test` (median over a region, as a focal-error map shows),
  :func:`pair_test` / :func:`frames_test` (direction from frames at known focus steps) and
  :func:`target_status`, the measured figures against the project's accuracy target.

Used by the trainer (:mod:`napari_gplws.training.ldse`) at the end of a run and to
re-evaluate a weights file; nothing here trains.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gplws.defocus import CONFIDENT_DIRECTION
from napari_gplws.dff.measures import focus_measure
from napari_gplws.models.ldse import LDSENet, prepare_tiles
from napari_gplws.sim.defocus_tiles import DefocusSimulator, TileSet
from napari_gplws.sim.psf import Optics, depth_of_field_um
from napari_gplws.sim.psf_bank import PSFBank
from napari_gplws.sim.specimens import PHASE_RAD, TEST_SPECIMENS

__all__ = [
    "PAIR_STEPS_UM",
    "TARGET_MAE_LE5_UM",
    "TARGET_SIGN_ACC_GE1",
    "TEST_BANK_SEED",
    "TEST_SEED",
    "abs_baseline_predict",
    "defocus_metrics",
    "evaluate_held_out",
    "fit_abs_baseline",
    "frames_test",
    "magnitude_metrics",
    "pair_test",
    "predict_tile_parts",
    "predict_tiles",
    "region_test",
    "target_status",
    "test_set",
]

#: Seeds of the held-out tests: tiles, aberration configurations (PSF bank), regions, pairs.
TEST_SEED = 2_000_003
TEST_BANK_SEED = 17
REGION_TEST_SEED = 3_000_003
PAIR_TEST_SEED = 4_000_003
#: Focus steps (µm) between the two frames of the card's :func:`pair_test` entries.
PAIR_STEPS_UM = (2.0, 4.0)


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

    Parameters
    ----------
    pred_um, true_um
        Predicted and true signed defocus (µm), any shape.
    dof_um
        Depth of field (µm) of the optics.
    bin_um, max_um
        Width and half-range (µm) of the per-bin table.
    magnitude_um, confidence
        Optional unsigned prediction, or direction confidence, of the same tiles.
    confident
        Confidence from which a direction counts as confident.

    Returns
    -------
    dict
        The statistics above (``None`` where a subset is empty) and ``dof_um``.
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

    Parameters
    ----------
    tiles, defocus_um
        Calibration tiles ``(M, H, W[, 3])`` and their true defocus (µm).
    n_bins
        Quantile bins of the feature.

    Returns
    -------
    dict
        ``feature`` (bin centres) and ``abs_defocus_um`` (mean |z| per bin).
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

    Specimens from :data:`napari_gplws.sim.defocus_tiles.TEST_SPECIMENS` (never used in
    training), aberration configurations drawn from :data:`TEST_BANK_SEED` (never used in
    training), defocus uniform in ±10 µm, ``per_field`` values per field.
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


def magnitude_metrics(
    magnitude_um: np.ndarray, true_um: np.ndarray, dof_um: float
) -> dict[str, float]:
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


#: Accuracy target for LDSE-NET on the held-out simulated test set: signed MAE (µm) for
#: ``|z| ≤ 5 µm`` at most this, and sign accuracy for ``|z| ≥ 1 µm`` at least this.
TARGET_MAE_LE5_UM = 0.5
TARGET_SIGN_ACC_GE1 = 0.9


def target_status(net: dict[str, Any], magnitude: dict[str, float], base: dict[str, Any]) -> str:
    """One paragraph for the model card: the measured figures against the accuracy target.

    Parameters
    ----------
    net
        :func:`defocus_metrics` of the network on the held-out test set (with the
        direction-confidence entries when available).
    magnitude
        :func:`magnitude_metrics` of the network's magnitude output.
    base
        :func:`magnitude_metrics` of the classical |z|-only baseline.

    Returns
    -------
    str
        Whether the target is met, the target, the measured figures and how far to trust
        the sign.
    """
    mae, sign = net["mae_le5"], net["sign_acc_ge1"]
    met = mae <= TARGET_MAE_LE5_UM and sign >= TARGET_SIGN_ACC_GE1
    head = "Target met" if met else "Target not yet met"
    return (
        f"{head}. Target on the held-out simulated test set: signed MAE <= "
        f"{TARGET_MAE_LE5_UM} µm for |z| <= 5 µm and sign accuracy >= "
        f"{TARGET_SIGN_ACC_GE1:.0%} for |z| >= 1 µm; measured: MAE {mae:.2f} µm, sign "
        f"accuracy {sign:.2f}. How far out of focus (the magnitude output, any direction): "
        f"MAE {magnitude['mae_abs_le5']:.2f} µm for |z| <= 5, against "
        f"{base['mae_abs_le5']:.2f} µm for the classical focus-measure baseline. "
        + (
            f"Where the network is confident of the direction (confidence >= "
            f"{net['confident_threshold']}, {net['confident_fraction_ge1']:.0%} of the tiles with "
            f"|z| >= 1) the sign is right {net['sign_acc_confident_ge1']:.0%} of the time. "
            if net.get("sign_acc_confident_ge1") is not None
            else ""
        )
        + (
            ""
            if sign >= TARGET_SIGN_ACC_GE1
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
    ``baseline_abs_only``, ``per_specimen``, ``per_aberration``, ``per_modality``,
    ``regions`` (:func:`region_test`), ``pairs`` (:func:`pair_test` for each of
    :data:`PAIR_STEPS_UM`) and ``status`` (:func:`target_status`) entries.

    Parameters
    ----------
    model
        The network to evaluate.
    optics
        The simulated optics.
    calibration
        Tiles of the training distribution for the baseline.
    n_fields, per_field, tile_px
        Size of the test set (:func:`test_set`).
    n_configs, step_um, size_px
        Aberration configurations of the held-out PSF bank, its focus step and size.
    device
        torch device.
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
        "status": target_status(net_m, mag_m, base_m),
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
    as :func:`napari_gplws.defocus.autofocus` does. Returns :func:`defocus_metrics` of the regions
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
    from :func:`napari_gplws.defocus.fit.fit_best_focus` of all tiles' magnitudes and sign
    logits.
    Returns :func:`defocus_metrics` of those estimates (``confident`` = the fit's
    confidence) beside the single-frame figures of the same first tiles, and the offsets.

    Parameters
    ----------
    model, optics
        The network and the simulated optics.
    offsets_um
        Focus offsets (µm) of the frames after the first (one direction).
    n_fields, sets_per_field, tile_px
        Size of the test.
    n_configs, psf_step_um, size_px, bank
        The held-out PSF bank, or how to build it.
    device
        torch device.
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
