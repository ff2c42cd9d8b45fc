"""Train LDSE-NET (single-tile signed defocus): the loss and the training loop.

``gplws train ldse --max-minutes 60 --weights-out W.safetensors`` (the command line is in
:mod:`napari_gplws.cli.train`) runs :func:`train_ldse` on tiles rendered on the fly by
:mod:`napari_gplws.sim.defocus_tiles` and, optionally, on real data (:mod:`.ldse_data`: the
Jiang et al. 2018 layout with ``--jiang DIR`` and focal stacks with known focus positions
with ``--stacks PATH ...``). It uses

* MSE loss on the defocus in µm (plus auxiliary losses on its magnitude and sign,
  :func:`ldse_loss`), Adam, a linear warm-up then a cosine decay over the time
  or step budget, an exponential moving average (EMA) of the weights for evaluation;
* 128×128 crops for the first 80 % of the budget and 224×224 tiles afterwards (the network
  pools globally, so it runs at any size; the end of training matches the use);
* a ring buffer of rendered tiles (half of every batch is freshly rendered, tiles are
  augmented by flips and 90° rotations), so rendering does not dominate the step time;
* splits grouped by field of view (validation fields are rendered from a separate seed; real
  data are split by field/stack), fixed seeds, checkpoints every ``ckpt_minutes`` to
  ``OUT_DIR/last.ckpt``, ``resume``, and a clean stop at ``max_minutes``.

At the end it evaluates the EMA weights on the held-out simulated test set beside a
classical |z|-only baseline (:mod:`napari_gplws.evaluation.defocus_metrics`) and writes the
weights with a model card (:mod:`.ldse_card`). The options are :class:`.LDSETrainConfig`.

It does not define the network (:mod:`napari_gplws.models.ldse`) nor tile wide fields
(:mod:`napari_gplws.defocus`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gplws._shared.device import torch_device
from napari_gplws.evaluation.defocus_metrics import defocus_metrics, predict_tiles
from napari_gplws.models.cards import count_parameters
from napari_gplws.models.ldse import LDSEConfig, LDSENet, prepare_tiles
from napari_gplws.models.registry import LDSE_FORMAT, read_weights
from napari_gplws.sim.defocus_tiles import DefocusSimulator
from napari_gplws.sim.psf import depth_of_field_um
from napari_gplws.sim.psf_bank import PSFBank
from napari_gplws.sim.specimens import TRAIN_SPECIMENS
from napari_gplws.training._common import (
    cosine_lr_factor,
    load_checkpoint,
    run_logger,
    save_checkpoint,
)
from napari_gplws.training.ldse_card import write_weights_and_card
from napari_gplws.training.ldse_config import VAL_SEED, LDSETrainConfig, optics_preset
from napari_gplws.training.ldse_data import TileBuffer, augment_tiles, real_tile_source

__all__ = ["LDSETrainConfig", "ldse_loss", "train_ldse"]

#: Command lines of GPLWS-Net trainings (current and former module paths), found with
#: ``pgrep -f`` so that this run leaves them the CPU cores.
_GPLWS_TRAINING_PATTERN = r"train(ing\.gplws)? gplws"


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
    ill-defined). See :class:`napari_gplws.models.ldse.LDSENet` for why the head is
    factorised. When ``stats`` is given it receives the batch's sign hits and count for
    ``|z| ≥ 1 µm``.
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
    """Whether a GPLWS-Net training runs on this machine (``pgrep``; ``False`` without it)."""
    try:
        r = subprocess.run(
            ["pgrep", "-f", _GPLWS_TRAINING_PATTERN],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return bool(r.stdout.strip())
    except Exception:  # noqa: BLE001 - pgrep missing: assume alone
        return False


def _auto_threads() -> int:
    """Threads for this run: 1 beside a GPLWS-Net training, else up to 2."""
    return 1 if _gplws_training_alive() else min(2, os.cpu_count() or 1)


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move the EMA network's floating-point state towards ``model``'s; copy the rest."""
    with torch.no_grad():
        pairs = zip(ema.state_dict().items(), model.state_dict().items(), strict=True)
        for (_k, e), (_, m) in pairs:
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
        state, _meta = read_weights(p, LDSE_FORMAT, "LDSE-NET")
        return {k: v.to(device) for k, v in state.items()}
    return load_checkpoint(p, device)["ema"]


def train_ldse(cfg: LDSETrainConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train LDSE-NET according to ``cfg`` (see the module notes).

    Parameters
    ----------
    cfg
        Training options; ``cfg.out_dir`` receives ``train.log`` and ``last.ckpt``;
        ``cfg.weights_out`` (optional) receives the EMA weights and their model card.
    log
        Also receives every log line (without the time stamp).

    Returns
    -------
    dict
        ``steps``, ``wall_time_min``, ``validation`` (final figures), ``history`` and, when
        weights were written, ``test`` and ``baseline`` (held-out test set).
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = run_logger(out / "train.log", log)

    threads = cfg.threads or _auto_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    aug_rng = np.random.default_rng([cfg.seed, 1])
    optics = optics_preset(cfg.optics)
    dof = depth_of_field_um(optics)
    device = torch_device(cfg.device)
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
    real = real_tile_source(cfg, say)

    model = LDSENet(LDSEConfig(**cfg.config)).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed_prev = 0, 0.0
    ckpt = out / "last.ckpt"
    if cfg.resume and ckpt.is_file():
        state = load_checkpoint(ckpt, device)
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
    buffers: dict[tuple[int, bool], TileBuffer] = {}
    field_id = 0
    losses: list[float] = []
    sign_hits: list[tuple[float, float]] = []
    history: list[dict[str, Any]] = []

    def frac_done() -> float:
        f_steps = step / cfg.steps
        f_time = (time.perf_counter() - t0) / budget_s if budget_s else 0.0
        return max(f_steps, f_time)

    def save_ckpt() -> None:
        save_checkpoint(
            ckpt,
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed_s": time.perf_counter() - t0,
                "rng": rng.bit_generator.state,
                "config": cfg.to_dict(),
            },
        )

    while step < cfg.steps and (budget_s is None or time.perf_counter() - t0 < budget_s):
        frac = frac_done()
        sign_stage = frac < cfg.sign_stage_fraction
        px = cfg.full_px if frac >= 1 - cfg.full_fraction else cfg.crop_px
        bs = cfg.batch_size if px == cfg.crop_px else max(cfg.batch_size // 2, 4)
        buf = buffers.setdefault(
            (px, sign_stage),
            TileBuffer(cfg.buffer_size if px == cfg.crop_px else cfg.buffer_size // 3, px),
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
        xb = augment_tiles(xb, aug_rng)
        lr = cfg.lr * cosine_lr_factor(step, frac, cfg.warmup_steps, cfg.min_lr_ratio)
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
                f"val step {step}: MAE {m['mae']:.3f} MAE|z|<=5 {m['mae_le5']:.3f} "
                f"sign {m['sign_acc_ge1']:.3f}"
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
        net_m, base_m = write_weights_and_card(
            ema, model, cfg, sim=sim, optics=optics, dof=dof, step=step, wall_min=wall_min,
            val=val_m, history=history, device=str(device), say=say,
        )
        summary["test"] = net_m
        summary["baseline"] = base_m
    return summary
