"""Training loop for GPLWS-Net (``gplws train gplws`` / ``python -m napari_gplws.training.gplws gplws``).

Trains on synthetic stacks rendered on the fly (:class:`.datasets.SyntheticFocusDataset`),
optionally mixed with stacks from the project simulator (:mod:`.synth`, kept in a small,
refreshed pool so that its cost does not dominate) and with a Micro 3D-layout folder.

The target is the in-focus *frame index* divided by ``N − 1``, so the µm values of a stack
never matter: the network predicts a probability over frames, and depth in µm comes from
the focus positions at inference time.

Loss: L1 on the normalised expected index, L1 on its spatial gradients (keeps surfaces
smooth, i.e. low bumpiness) and a small cross-entropy to a Gaussian soft target (sharp,
unimodal probabilities make the confidence and the all-in-focus image meaningful).

Adam, linear warm-up then cosine decay over the step budget *or* the time budget
(``--max-minutes``: the schedule follows wall time and the run stops cleanly and saves),
an exponential moving average of the weights (used for validation and export), text log
with validation metrics each epoch, checkpoints every few minutes and ``--resume``.
CUDA with mixed precision is used when present; on CPU the thread count is set.

At the end the EMA model is fused and written as safetensors with a model card
(:func:`.models.registry.save_gplws`), including held-out benchmark metrics against the
classical engine when :mod:`.evaluate` and :mod:`.focus` are available.

Public entry points: :func:`train_main` (argv list → exit code) and :func:`train_gplws`
(:class:`TrainConfig` → summary dict).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.device import torch_device

__all__ = ["TrainConfig", "gplws_loss", "make_batch", "train_gplws", "train_main", "validation_set"]

#: Seeds used for validation stacks (training uses ``seed`` and its successors, far below).
VAL_SEED = 900_000


@dataclass
class TrainConfig:
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

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------
# Data → tensors, loss
# ---------------------------------------------------------------------------------------


def make_batch(samples: list[Any], device: Any = "cpu") -> tuple[Any, Any]:
    """Stack :class:`.datasets.TrainingSample` objects into normalised input and target.

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
    t = torch.from_numpy(np.stack([np.asarray(s.depth_index, np.float32) for s in samples])).to(device)
    return x, t


def gplws_loss(logits: Any, target: Any, ce_weight: float = 0.02, grad_weight: float = 1.0) -> tuple[Any, dict[str, float]]:
    """Training loss on normalised index units (see module docstring).

    Parameters
    ----------
    logits
        ``(B, N, H, W)`` network output.
    target
        ``(B, H, W)`` in-focus frame index (fractional).
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


# ---------------------------------------------------------------------------------------
# Data sources
# ---------------------------------------------------------------------------------------


class _SynthPool:
    """A pool of stacks from :func:`.synth.random_training_stack`, refreshed as it is used.

    Pool stacks have ``n_frames[1]`` frames; each batch takes, per sample, a random crop, a
    random frame stride (1–3, i.e. a coarser focus step) and a sub-range of ``n`` frames
    (one ``n`` per batch) placed over the surface, plus rotations and reversed order.
    """

    def __init__(self, size: int, seed: int, n_frames: tuple[int, int], shape: int = 128, refresh: int = 2) -> None:
        from napari_gplws.sim import focus_stacks  # noqa: F401 - fail early when the simulator is missing

        self.rng = np.random.default_rng(seed + 17)
        self.n_frames, self.shape, self.refresh = n_frames, shape, refresh
        self.pool = [self._make() for _ in range(size)]

    def _make(self) -> Any:
        from napari_gplws.sim.focus_stacks import random_training_stack
        from napari_gplws.stack import position_to_index
        from napari_gplws.training.gplws_data import TrainingSample

        nmax = self.n_frames[1]
        s = random_training_stack(self.rng, shape=(self.shape, self.shape), n_frames=(nmax, nmax))
        idx = position_to_index(s.depth_um, s.stack.positions).astype(np.float32)
        return TrainingSample(np.asarray(s.stack.frames), idx, s.params.family)

    def batch(self, batch_size: int, crop: int, n: int) -> list[Any]:
        from napari_gplws.training.gplws_data import TrainingSample

        rng = self.rng
        for _ in range(self.refresh):
            self.pool[int(rng.integers(len(self.pool)))] = self._make()
        out = []
        for _ in range(batch_size):
            s = self.pool[int(rng.integers(len(self.pool)))]
            nmax = s.frames.shape[0]
            stride = int(rng.integers(1, max(1, (nmax - 1) // max(n - 1, 1)) + 1))
            stride = min(stride, 3)
            span = (n - 1) * stride
            h, w = s.depth_index.shape
            c = min(crop, h, w)
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            d = s.depth_index[y0 : y0 + c, x0 : x0 + c]
            lo, hi = float(d.min()), float(d.max())
            a, b = max(0.0, hi - span), min(lo, float(nmax - 1 - span))
            start = int(round(rng.uniform(a, b))) if a <= b else int(rng.integers(0, nmax - span))
            start = int(np.clip(start, 0, nmax - 1 - span))
            f = s.frames[start : start + span + 1 : stride, y0 : y0 + c, x0 : x0 + c]
            d = np.clip((d - start) / stride, 0, n - 1)
            k = int(rng.integers(4))
            f, d = np.rot90(f, k, axes=(1, 2)), np.rot90(d, k)
            if rng.random() < 0.5:
                f, d = f[:, :, ::-1], d[:, ::-1]
            if rng.random() < 0.5:
                f, d = f[::-1], (n - 1) - d
            out.append(TrainingSample(np.ascontiguousarray(f), np.ascontiguousarray(d, dtype=np.float32), s.family))
        return out


class _Sources:
    """Draws training batches from the renderer, the synth pool and a Micro 3D folder."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None]) -> None:
        from napari_gplws.io.micro3d import Micro3DDataset
        from napari_gplws.training.gplws_data import RenderConfig, SyntheticFocusDataset

        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed + 1)
        rc = RenderConfig(n_frames=tuple(cfg.n_frames), size=tuple(cfg.size))  # type: ignore[arg-type]
        self.render = SyntheticFocusDataset(rc, seed=cfg.seed)
        self.pool = None
        if cfg.synth_fraction > 0:
            try:
                t0 = time.perf_counter()
                self.pool = _SynthPool(cfg.synth_pool, cfg.seed, tuple(cfg.n_frames))  # type: ignore[arg-type]
                log(f"synth pool of {cfg.synth_pool} stacks built in {time.perf_counter() - t0:.1f} s")
            except Exception as exc:  # noqa: BLE001 - the renderer alone still trains
                log(f"synth pool unavailable ({type(exc).__name__}: {exc}); using the renderer only")
        self.micro = None
        if cfg.micro3d:
            self.micro = Micro3DDataset(
                cfg.micro3d, cfg.gt_pattern, cfg.gt_units, cfg.gt_scale, split_file=cfg.split_file, split="train"
            )
            log(f"Micro 3D dataset '{cfg.micro3d}': {len(self.micro)} training samples")

    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "render": self.render.rng.bit_generator.state}

    def set_state(self, st: dict[str, Any]) -> None:
        self.rng.bit_generator.state = st["rng"]
        self.render.rng.bit_generator.state = st["render"]

    def batch(self) -> list[Any]:
        cfg, rng = self.cfg, self.rng
        crop = int(rng.choice(list(cfg.size_choices)))
        n = int(rng.choice(list(cfg.n_choices)))
        if self.micro is not None and rng.random() < cfg.micro3d_fraction:
            idx = rng.integers(0, len(self.micro), cfg.batch_size)
            from napari_gplws.training.gplws_data import micro3d_training_sample

            out = [micro3d_training_sample(self.micro, int(i), rng, crop) for i in idx]
            return [s for s in out if s.frames.shape == out[0].frames.shape]
        if self.pool is not None and rng.random() < cfg.synth_fraction:
            return self.pool.batch(cfg.batch_size, crop, n)
        return self.render.batch(cfg.batch_size, n_frames=n, size=crop)


def validation_set(n: int = 24, seed: int = VAL_SEED) -> list[Any]:
    """Fixed validation stacks (seeds never used in training), 96×96, N in {10, 20, 32, 48}.

    Half come from the training renderer, half from :mod:`.synth` when it is available.
    """
    from napari_gplws.training.gplws_data import RenderConfig, SyntheticFocusDataset, TrainingSample

    ds = SyntheticFocusDataset(RenderConfig(), seed=seed)
    n_synth = n // 2
    try:
        from napari_gplws.sim.focus_stacks import random_training_stack
        from napari_gplws.stack import position_to_index
    except Exception:  # noqa: BLE001
        n_synth = 0
    out = []
    for i in range(n - n_synth):
        nf = (10, 20, 32, 48)[i % 4]
        out.append(ds.sample(n_frames=nf, size=(96, 96), rgb=(i % 5 == 4)))
    rng = np.random.default_rng(seed + 1)
    for i in range(n_synth):
        nf = (10, 20, 32, 48)[i % 4]
        s = random_training_stack(rng, shape=(96, 96), n_frames=(nf, nf))
        idx = position_to_index(s.depth_um, s.stack.positions).astype(np.float32)
        out.append(TrainingSample(np.asarray(s.stack.frames), idx, "synth:" + s.params.family))
    return out


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
    return {"rmse": float(np.mean(rmse)), "mae": float(np.mean(mae)), "bump": float(np.mean(bump))}


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
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = step / max(cfg.steps, 1)
    if cfg.max_minutes:
        frac = max(frac, elapsed_s / (cfg.max_minutes * 60.0))
    frac = min(frac, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def _save_ckpt(path: Path, payload: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train_gplws(cfg: TrainConfig, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
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

    from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet, count_parameters

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train.log"

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    device = torch_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    use_amp = device.type == "cuda"

    model = GPLWSNet(GPLWSConfig(widths=tuple(cfg.widths), s2d=cfg.s2d)).to(device)  # type: ignore[arg-type]
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, elapsed, epoch = 0, 0.0, 0
    best: dict[str, float] | None = None
    sources = _Sources(cfg, log)
    ckpt_path = out / "last.ckpt"
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
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
        log(f"device {device}, threads {torch.get_num_threads()}, params {count_parameters(model)}")

    val = validation_set(cfg.n_val)
    classical = _classical_val(val)
    if classical is not None:
        log(f"classical sml on validation: rmse {classical['rmse']:.4f} bump {classical['bump']:.4f}")

    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    pool = ThreadPoolExecutor(1)
    future = pool.submit(sources.batch)
    t_start = time.perf_counter() - elapsed
    t_ckpt = time.perf_counter()
    run_loss, run_n, t_data, t_step = 0.0, 0, 0.0, 0.0

    def checkpoint() -> None:
        _save_ckpt(
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
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema_params, model_params):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        step += 1
        run_loss += loss.item()
        run_n += 1
        t_data += t1 - t0
        t_step += time.perf_counter() - t1
        if progress is not None:
            progress(step, cfg.steps)
        if step % cfg.log_every == 0:
            log(
                f"step {step} loss {run_loss / run_n:.4f} (l1 {parts['l1']:.4f} grad {parts['grad']:.4f} "
                f"ce {parts['ce']:.3f}) lr {opt.param_groups[0]['lr']:.2e} N {x.shape[2]} size {x.shape[-1]} "
                f"data {t_data / run_n:.2f}s step {t_step / run_n:.2f}s elapsed {(time.perf_counter() - t_start) / 60:.1f} min"
            )
            run_loss, run_n, t_data, t_step = 0.0, 0, 0.0, 0.0
        if step % cfg.epoch_steps == 0:
            epoch += 1
            last_val = _validate(ema, val, device)
            ref = f" (classical sml rmse {classical['rmse']:.4f})" if classical else ""
            log(f"epoch {epoch} step {step} val rmse {last_val['rmse']:.4f} mae {last_val['mae']:.4f} bump {last_val['bump']:.4f}{ref}")
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
    log(f"stopped ({stop_reason}) at step {step}, epoch {epoch}, {wall:.1f} min; final val {last_val}")

    params_train = count_parameters(ema)
    fused = copy.deepcopy(ema).cpu().reparameterize()
    params_fused = count_parameters(fused)
    card = {
        "name": "gplws_default",
        "summary": "GPLWS-Net depth-from-focus network, fused (re-parameterised) weights.",
        "data": (
            "Synthetic focus stacks rendered on the fly by napari_gplws.training.gplws_data."
            "SyntheticFocusDataset (all height families, N in {8,12,16,20,24,32}, crops 64/96 px, textures with "
            "textureless patches, blur per step, noise, gamma, drift, 8/16-bit/float, gray+colour, "
            "flips, 90-degree rotations, reversed order)"
            + (f", mixed {cfg.synth_fraction:.0%} with napari_gplws.sim.focus_stacks stacks" if sources.pool is not None else "")
            + (f", Micro 3D folder {cfg.micro3d}" if cfg.micro3d else "")
            + ". No real microscope data."
        ),
        "command": cfg.command or "python -m napari_gplws.training.gplws gplws",
        "seed": cfg.seed,
        "steps": step,
        "epochs": epoch,
        "epoch_steps": cfg.epoch_steps,
        "batch_size": cfg.batch_size,
        "wall_time_min": round(wall, 1),
        "device": f"{device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else str(device),
        "params_train": params_train,
        "params_fused": params_fused,
        "config": fused.config.to_dict(),
        "input_normalisation": "per stack: (x - p0.5) / (p99.5 - p0.5); colour reduced to Rec.601 luma",
        "output": "softmax over frames; depth = sum_k p_k * position_k; confidence = 1 - entropy/log N",
        "validation": {"final_ema": last_val, "best": best, "classical_sml": classical},
    }
    from napari_gplws.models.registry import save_gplws

    final = save_gplws(copy.deepcopy(fused), out / "final.safetensors", card)
    log(f"fused weights written to {final} (params {params_train} -> {params_fused})")
    weights = final
    if cfg.weights_out:
        card["benchmark"] = _benchmark_for_card(final, cfg.benchmark, log)
        weights = save_gplws(fused, Path(cfg.weights_out), card)
        save_gplws(copy.deepcopy(fused), out / "final.safetensors", card)
        log(f"packaged weights + model card written to {weights}")
    return {"steps": step, "epochs": epoch, "wall_time_min": wall, "val": last_val, "weights": str(weights)}


def _benchmark_for_card(weights: Path, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Held-out benchmark metrics (network vs classical) for the model card; never raises."""
    if n <= 0:
        return {}
    try:
        from napari_gplws.evaluation.depth_benchmark import evaluate
        from napari_gplws.evaluation.metrics import format_table

        t0 = time.perf_counter()
        rows = evaluate(n=n, device="cpu", weights=str(weights))
        table = format_table(rows)
        log(f"benchmark ({n} stacks, {time.perf_counter() - t0:.0f} s):\n{table}")
        return {
            "description": f"napari_gplws.evaluation.depth_benchmark.synthetic_benchmark(n={n}) (seeds never used in training)",
            "rows": rows,
            "table": table,
        }
    except Exception as exc:  # noqa: BLE001 - the weights are still written
        log(f"benchmark skipped: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``gplws train gplws``."""
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="gplws train gplws", description="Train GPLWS-Net on synthetic stacks.")
    p.add_argument("--out-dir", default=d.out_dir, help="folder for log and checkpoints (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--n-frames", type=int, nargs=2, default=list(d.n_frames), metavar=("MIN", "MAX"))
    p.add_argument("--size", type=int, nargs=2, default=list(d.size), metavar=("MIN", "MAX"))
    p.add_argument("--n-choices", type=int, nargs="+", default=list(d.n_choices),
                   help="stack lengths used in training (few fixed shapes train faster on CPU)")
    p.add_argument("--size-choices", type=int, nargs="+", default=list(d.size_choices))
    p.add_argument("--widths", type=int, nargs=4, default=list(d.widths))
    p.add_argument("--s2d", type=int, default=d.s2d, choices=[2, 4], help="space-to-depth factor")
    p.add_argument("--epoch-steps", type=int, default=d.epoch_steps)
    p.add_argument("--ckpt-minutes", type=float, default=d.ckpt_minutes)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.ckpt")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--synth-fraction", type=float, default=d.synth_fraction,
                   help="fraction of batches from core.synth stacks (pooled)")
    p.add_argument("--synth-pool", type=int, default=d.synth_pool)
    p.add_argument("--micro3d", default=None, help="Micro 3D-layout dataset folder")
    p.add_argument("--micro3d-fraction", type=float, default=d.micro3d_fraction)
    p.add_argument("--gt-pattern", default=d.gt_pattern)
    p.add_argument("--gt-units", default=d.gt_units, choices=["index", "um"])
    p.add_argument("--gt-scale", type=float, default=d.gt_scale)
    p.add_argument("--split-file", default=None)
    p.add_argument("--weights-out", default=None, help="also write fused weights + model card here")
    p.add_argument("--benchmark", type=int, default=d.benchmark, help="held-out stacks for the model card")
    p.add_argument("--log-every", type=int, default=d.log_every)
    return p


def train_main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``train_main(["--max-minutes", "60", ...])``; returns an exit code.

    A leading ``"gplws"`` (the network name) is accepted and ignored.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "gplws":
        argv = argv[1:]
    a = build_parser().parse_args(argv)
    cfg = TrainConfig(
        out_dir=a.out_dir, steps=a.steps, max_minutes=a.max_minutes, batch_size=a.batch_size, lr=a.lr,
        seed=a.seed, n_frames=tuple(a.n_frames), size=tuple(a.size),
        n_choices=tuple(a.n_choices), size_choices=tuple(a.size_choices), widths=tuple(a.widths), s2d=a.s2d,
        epoch_steps=a.epoch_steps, ckpt_minutes=a.ckpt_minutes, resume=a.resume, device=a.device,
        threads=a.threads, synth_fraction=a.synth_fraction, synth_pool=a.synth_pool, micro3d=a.micro3d,
        micro3d_fraction=a.micro3d_fraction, gt_pattern=a.gt_pattern, gt_units=a.gt_units,
        gt_scale=a.gt_scale, split_file=a.split_file, weights_out=a.weights_out, benchmark=a.benchmark,
        log_every=a.log_every,
        command="python -m napari_gplws.training.gplws gplws " + " ".join(shlex.quote(x) for x in argv),
    )  # type: ignore[arg-type]
    try:
        summary = train_gplws(cfg)
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items()}, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(train_main())
