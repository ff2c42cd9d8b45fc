"""Train GPLWS-Net (depth from focus): the options, batches, loss and the training loop.

``gplws train gplws --max-minutes 60 --weights-out W.safetensors`` (the command line is in
:mod:`napari_gplws.cli.train`) runs :func:`train_gplws` on synthetic stacks rendered on the
fly (:class:`.gplws_data.SyntheticFocusDataset`), optionally mixed with stacks from the
project simulator (:mod:`napari_gplws.sim.focus_stacks`, kept in a small, refreshed pool so
that its cost does not dominate) and with a Micro 3D-layout folder (:mod:`.gplws_sources`).

The target is the in-focus *frame index* divided by ``N − 1``, so the µm values of a stack
never matter: the network predicts a probability over frames, and depth in µm comes from
the focus positions at inference time.

Loss: L1 on the normalised expected index, L1 on its spatial gradients (keeps surfaces
smooth, i.e. low bumpiness) and a small cross-entropy to a Gaussian soft target (sharp,
unimodal probabilities make the confidence and the all-in-focus image meaningful).

Adam, linear warm-up then cosine decay over the step budget *or* the time budget
(``max_minutes``: the schedule follows wall time and the run stops cleanly and saves),
an exponential moving average of the weights (used for validation and export), text log
with validation metrics each epoch, checkpoints every few minutes and ``resume``.
CUDA with mixed precision is used when present; on CPU the thread count is set.

At the end the EMA model is fused and written as safetensors with a model card
(:mod:`.gplws_card`), including held-out benchmark metrics against the classical engine.
torch is imported when a function needs it, not at import.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.device import torch_device
from napari_gplws.training._common import (
    ConfigMixin,
    cosine_lr_factor,
    load_checkpoint,
    run_logger,
    save_checkpoint,
)
from napari_gplws.training.gplws_card import run_card, write_weights_and_card
from napari_gplws.training.gplws_sources import TrainingSources, validation_set

__all__ = [
    "TrainConfig", "distill_loss", "gplws_loss", "make_batch", "teacher_probability",
    "train_gplws", "validation_set",
]


@dataclass
class TrainConfig(ConfigMixin):
    """Options of a GPLWS-Net training run (all have command-line equivalents)."""

    out_dir: str = "runs/gplws"
    steps: int = 100_000
    max_minutes: float | None = None
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.03
    seed: int = 0
    n_frames: tuple[int, int] = (8, 32)
    size: tuple[int, int] = (64, 112)
    #: Stack lengths and crop sizes actually used: a few fixed shapes, because the CPU
    #: convolution back-end compiles kernels per shape (every new shape costs seconds).
    n_choices: tuple[int, ...] = (8, 12, 16, 20, 24, 32)
    size_choices: tuple[int, ...] = (64, 96)
    widths: tuple[int, int, int, int] = (16, 24, 32, 48)
    s2d: int = 4
    epoch_steps: int = 150
    ckpt_minutes: float = 4.0
    resume: bool = False
    device: str = "auto"
    threads: int = 2
    ema_decay: float = 0.998
    synth_fraction: float = 0.5
    synth_pool: int = 48
    micro3d: str | None = None
    micro3d_fraction: float = 1.0
    gt_pattern: str = "*depth*"
    gt_units: str = "index"
    gt_scale: float = 1.0
    split_file: str | None = None
    weights_out: str | None = None
    benchmark: int = 30
    n_val: int = 24
    command: str = ""
    log_every: int = 25
    #: Start from these fused weights (fine-tuning) instead of a random network; the
    #: network's shape then comes from the file.
    init_weights: str | None = None
    #: Distil from this fused network: its probability, averaged over ``teacher_views``
    #: test-time-augmentation views, is a second target beside the ground truth.
    teacher_weights: str | None = None
    teacher_views: int = 4
    distill_weight: float = 1.0


# ---------------------------------------------------------------------------------------
# Data → tensors, loss
# ---------------------------------------------------------------------------------------


def make_batch(samples: list[Any], device: Any = "cpu") -> tuple[Any, Any]:
    """Stack :class:`.gplws_data.TrainingSample` objects into normalised input and target.

    Returns
    -------
    x, target
        ``x`` float32 ``(B, C, N, H, W)`` normalised per stack; ``target`` ``(B, H, W)``
        in-focus frame index.
    """
    import torch

    from napari_gplws.models.gplws import normalize_stack

    rgb = any(np.ndim(s.frames) == 4 for s in samples)
    arrs = []
    for s in samples:
        f = np.asarray(s.frames, dtype=np.float32)
        f = f[None] if f.ndim == 3 else np.moveaxis(f, -1, 0)
        if rgb and f.shape[0] == 1:  # gray in a colour batch: replicate (its luma is unchanged)
            f = np.repeat(f, 3, axis=0)
        arrs.append(f)
    x = torch.from_numpy(np.stack(arrs)).to(device)
    x = normalize_stack(x)
    depth = np.stack([np.asarray(s.depth_index, np.float32) for s in samples])
    t = torch.from_numpy(depth).to(device)
    return x, t


def gplws_loss(
    logits: Any, target: Any, ce_weight: float = 0.02, grad_weight: float = 1.0
) -> tuple[Any, dict[str, float]]:
    """Training loss on normalised index units (see module docstring).

    Parameters
    ----------
    logits
        ``(B, N, H, W)`` network output.
    target
        ``(B, H, W)`` in-focus frame index (fractional).
    ce_weight, grad_weight
        Weights of the cross-entropy and of the gradient term (the L1 term has weight 1).

    Returns
    -------
    loss, parts
        The scalar loss tensor and its parts ``l1``, ``grad``, ``ce`` as floats.
    """
    import torch
    import torch.nn.functional as F

    n = logits.shape[1]
    logp = F.log_softmax(logits.float(), dim=1)
    p = logp.exp()
    k = torch.arange(n, device=logits.device, dtype=p.dtype).reshape(1, n, 1, 1)
    pred = (p * k).sum(1)
    scale = 1.0 / max(n - 1, 1)
    l1 = (pred - target).abs().mean() * scale
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    lg = (dx.abs().mean() + dy.abs().mean()) * scale
    soft = torch.exp(-0.5 * ((k - target[:, None]) / 1.0) ** 2)
    soft = soft / soft.sum(1, keepdim=True)
    ce = -(soft * logp).sum(1).mean() / math.log(max(n, 2))
    loss = l1 + grad_weight * lg + ce_weight * ce
    return loss, {"l1": l1.item(), "grad": lg.item(), "ce": ce.item()}


def distill_loss(logits: Any, teacher_prob: Any, kl_weight: float = 0.05) -> tuple[Any, float]:
    """Distillation loss: L1 between the expected indices of the student and the teacher
    (normalised by N − 1, as the ground-truth term) plus ``kl_weight`` × KL(teacher ‖
    student) / log N, which also carries the teacher's confidence.

    Parameters
    ----------
    logits
        ``(B, N, H, W)`` student output.
    teacher_prob
        ``(B, N, H, W)`` teacher probability (sums to 1 over N).

    Returns
    -------
    loss, l1
        The scalar loss tensor and its expected-index part as a float.
    """
    import torch
    import torch.nn.functional as F

    n = logits.shape[1]
    logp = F.log_softmax(logits.float(), dim=1)
    k = torch.arange(n, device=logits.device, dtype=logp.dtype).reshape(1, n, 1, 1)
    scale = 1.0 / max(n - 1, 1)
    l1 = ((logp.exp() * k).sum(1) - (teacher_prob * k).sum(1)).abs().mean() * scale
    kl = (teacher_prob * (torch.log(teacher_prob.clamp_min(1e-12)) - logp)).sum(1).mean()
    return l1 + kl_weight * kl / math.log(max(n, 2)), l1.item()


def _view(x: Any, turns: int, mirror: bool) -> Any:
    import torch

    x = torch.flip(x, (-1,)) if mirror else x
    return torch.rot90(x, turns, (-2, -1)) if turns else x


def _unview(x: Any, turns: int, mirror: bool) -> Any:
    import torch

    x = torch.rot90(x, -turns, (-2, -1)) if turns else x
    return torch.flip(x, (-1,)) if mirror else x


def teacher_probability(teacher: Any, x: Any, views: int) -> Any:
    """The teacher's softmax probability ``(B, N, H, W)`` averaged over ``views``
    test-time-augmentation views of ``x`` ``(B, C, N, H, W)`` (quarter turns only when
    the crops are square)."""
    import torch

    from napari_gplws.dff.network import TTA_VIEW_PAIRS as TTA_VIEWS

    chosen = [v for v in TTA_VIEWS[views] if v[0] % 2 == 0 or x.shape[-1] == x.shape[-2]]
    with torch.no_grad():  # not inference mode: the result enters the training graph
        acc = None
        for turns, mirror in chosen:
            p = torch.softmax(teacher(_view(x, turns, mirror).contiguous()).float(), dim=1)
            p = _unview(p, turns, mirror)
            acc = p if acc is None else acc.add_(p)
        assert acc is not None
        return acc / len(chosen)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _validate(model: Any, val: list[Any], device: Any) -> dict[str, float]:
    """Mean normalised RMSE/MAE (index/(N−1)) and bumpiness ratio of a model on ``val``."""
    import torch

    from napari_gplws.models.gplws import depth_from_logits

    model.eval()
    rmse, mae, bump = [], [], []
    with torch.inference_mode():
        for s in val:
            x, t = make_batch([s], device)
            d, _, _ = depth_from_logits(model(x))
            n1 = max(s.frames.shape[0] - 1, 1)
            e = (d - t)[0].cpu().numpy() / n1
            rmse.append(float(np.sqrt(np.mean(e**2))))
            mae.append(float(np.mean(np.abs(e))))
            bump.append(_bumpiness(d[0].cpu().numpy() / n1, t[0].cpu().numpy() / n1))
    return {
        "rmse": float(np.mean(rmse)), "mae": float(np.mean(mae)), "bump": float(np.mean(bump))
    }


def _bumpiness(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Frobenius norm of the Hessian of the error (as in the paper's bumpiness)."""
    e = pred - gt
    gy, gx = np.gradient(e)
    gyy, gyx = np.gradient(gy)
    gxy, gxx = np.gradient(gx)
    return float(np.mean(np.sqrt(gxx**2 + gyy**2 + gxy**2 + gyx**2)))


def _classical_val(val: list[Any]) -> dict[str, float] | None:
    """The classical engine's numbers on the validation set (None when unavailable)."""
    try:
        from napari_gplws.dff.classical import depth_from_focus
        from napari_gplws.stack import FocalStack
    except Exception:  # noqa: BLE001
        return None
    rmse, bump = [], []
    for s in val:
        try:
            r = depth_from_focus(FocalStack(s.frames), measure="sml")
        except Exception:  # noqa: BLE001
            return None
        n1 = max(s.frames.shape[0] - 1, 1)
        d = np.asarray(r.depth, np.float64) / n1
        t = s.depth_index / n1
        rmse.append(float(np.sqrt(np.mean((d - t) ** 2))))
        bump.append(_bumpiness(d, t))
    return {"rmse": float(np.mean(rmse)), "bump": float(np.mean(bump))}



# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _lr_factor(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """Learning-rate multiplier: the budget used is the step fraction or, with a time
    budget, the wall-time fraction, whichever is further."""
    frac = step / max(cfg.steps, 1)
    if cfg.max_minutes:
        frac = max(frac, elapsed_s / (cfg.max_minutes * 60.0))
    return cosine_lr_factor(step, frac, cfg.warmup_steps, cfg.min_lr_ratio)


def train_gplws(
    cfg: TrainConfig, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Train GPLWS-Net according to ``cfg``; returns a summary (and writes weights if asked).

    Parameters
    ----------
    cfg
        Training options; ``cfg.out_dir`` receives ``train.log``, ``last.ckpt`` and
        ``final.safetensors``; ``cfg.weights_out`` (optional) receives the fused weights and
        model card as well.
    progress
        Optional ``progress(step, total_steps)`` callback.

    Returns
    -------
    dict
        ``steps``, ``wall_time_min``, ``val`` (last validation metrics), ``weights`` (path).
    """
    import torch

    from napari_gplws.models.cards import count_parameters
    from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = run_logger(out / "train.log")

    device = torch_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    use_amp = device.type == "cuda"

    if cfg.init_weights:
        from napari_gplws.models.registry import load_gplws

        # a fresh, trainable copy of the fused network (the loader's copy is shared)
        model = copy.deepcopy(load_gplws(cfg.init_weights, device="cpu")).to(device)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        net_config = GPLWSConfig(widths=tuple(cfg.widths), s2d=cfg.s2d)  # type: ignore[arg-type]
        model = GPLWSNet(net_config).to(device)
    teacher = None
    if cfg.teacher_weights:
        from napari_gplws.models.registry import load_gplws

        teacher = load_gplws(cfg.teacher_weights, device=str(device))
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, elapsed, epoch = 0, 0.0, 0
    best: dict[str, float] | None = None
    sources = TrainingSources(cfg, log)
    ckpt_path = out / "last.ckpt"
    if cfg.resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, device)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, epoch = ck["step"], ck["elapsed"], ck["epoch"]
        best = ck.get("best")
        sources.set_state(ck["sources"])
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {ckpt_path} at step {step} ({elapsed / 60:.1f} min)")
    else:
        log(f"config {json.dumps(cfg.to_dict())}")
        n_params = count_parameters(model)
        log(f"device {device}, threads {torch.get_num_threads()}, params {n_params}")

    val = validation_set(cfg.n_val)
    classical = _classical_val(val)
    if classical is not None:
        log(
            f"classical sml on validation: rmse {classical['rmse']:.4f} "
            f"bump {classical['bump']:.4f}"
        )

    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    pool = ThreadPoolExecutor(1)
    future = pool.submit(sources.batch)
    t_start = time.perf_counter() - elapsed
    t_ckpt = time.perf_counter()
    run_loss, run_n, t_data, t_step = 0.0, 0, 0.0, 0.0

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed": time.perf_counter() - t_start,
                "epoch": epoch,
                "best": best,
                "sources": sources.state(),
                "torch_rng": torch.get_rng_state(),
                "config": cfg.to_dict(),
            },
        )

    last_val: dict[str, float] = {}
    stop_reason = "steps"
    while step < cfg.steps:
        elapsed = time.perf_counter() - t_start
        if cfg.max_minutes is not None and elapsed >= cfg.max_minutes * 60:
            stop_reason = "time budget"
            break
        t0 = time.perf_counter()
        samples = future.result()
        future = pool.submit(sources.batch)
        x, t = make_batch(samples, device)
        t1 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(cfg, step, elapsed)
        model.train()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
        loss, parts = gplws_loss(logits.float(), t)
        if teacher is not None:
            dl, parts["distill"] = distill_loss(
                logits.float(), teacher_probability(teacher, x, cfg.teacher_views)
            )
            loss = loss + cfg.distill_weight * dl
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema_params, model_params, strict=True):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
            for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
                be.copy_(bm)
        step += 1
        run_loss += loss.item()
        run_n += 1
        t_data += t1 - t0
        t_step += time.perf_counter() - t1
        if progress is not None:
            progress(step, cfg.steps)
        if step % cfg.log_every == 0:
            minutes = (time.perf_counter() - t_start) / 60
            log(
                f"step {step} loss {run_loss / run_n:.4f} (l1 {parts['l1']:.4f} "
                f"grad {parts['grad']:.4f} ce {parts['ce']:.3f}"
                + (f" distill {parts['distill']:.4f}" if "distill" in parts else "") + ") "
                + f"lr {opt.param_groups[0]['lr']:.2e} N {x.shape[2]} size {x.shape[-1]} "
                f"data {t_data / run_n:.2f}s step {t_step / run_n:.2f}s elapsed {minutes:.1f} min"
            )
            run_loss, run_n, t_data, t_step = 0.0, 0, 0.0, 0.0
        if step % cfg.epoch_steps == 0:
            epoch += 1
            last_val = _validate(ema, val, device)
            ref = f" (classical sml rmse {classical['rmse']:.4f})" if classical else ""
            log(
                f"epoch {epoch} step {step} val rmse {last_val['rmse']:.4f} "
                f"mae {last_val['mae']:.4f} bump {last_val['bump']:.4f}{ref}"
            )
            if best is None or last_val["rmse"] < best["rmse"]:
                best = dict(last_val, step=step)
        if time.perf_counter() - t_ckpt > cfg.ckpt_minutes * 60:
            checkpoint()
            t_ckpt = time.perf_counter()
            log(f"checkpoint {ckpt_path} at step {step}")
    pool.shutdown(wait=True)
    wall = (time.perf_counter() - t_start) / 60
    checkpoint()
    last_val = _validate(ema, val, device)
    log(
        f"stopped ({stop_reason}) at step {step}, epoch {epoch}, {wall:.1f} min; "
        f"final val {last_val}"
    )

    params_train = count_parameters(ema)
    fused = copy.deepcopy(ema).cpu().reparameterize()
    card = run_card(
        cfg, step=step, epoch=epoch, wall_min=wall, device=device,
        params_train=params_train, params_fused=count_parameters(fused),
        config=fused.config.to_dict(), synth_pool=sources.pool is not None,
        validation={"final_ema": last_val, "best": best, "classical_sml": classical},
    )
    weights = write_weights_and_card(fused, card, out, cfg, log)
    return {
        "steps": step, "epochs": epoch, "wall_time_min": wall, "val": last_val,
        "weights": str(weights),
    }
