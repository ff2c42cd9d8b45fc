"""Calibrate LDSE-NET to one microscope: fine-tune on the user's own focus stacks.

The sign of a single frame's defocus is written in the asymmetry of one microscope's PSF
(objective, immersion, coverslip, mounting). Weights trained across many optics learn what
they share; :func:`calibrate` teaches them one instrument's asymmetry from a few z-stacks
that pass through focus, with no labelling:

1. **Labels from the stacks themselves.** Each stack is cut into 224×224 tiles and each
   tile position's focus curve gives its best focus
   (:func:`napari_gplws.training.ldse_data.stack_defocus_tiles`); a tile's label is
   ``frame position − best focus`` in µm of drive travel. A stack whose tiles do not reach
   1 µm on both sides of focus is refused, naming the stack.
2. **Held-out fields of the user's own stacks.** With three stacks or more, whole stacks
   are held out (an eighth, at least one: 2 of 16); with fewer, whole tile positions. The
   before/after figures, and the choice to keep the weights, use these held-out fields only.
3. **Fine-tuning** from the packaged weights (or any LDSE-NET file): Adam with a short
   warm-up and a cosine decay over the time box; a Huber loss on the signed defocus, on its
   magnitude, a cross-entropy on the sign, and a *pair-consistency* term: two frames of one
   field ``Δ`` apart must differ by ``Δ`` (exact, since the drive positions are known, even
   where the focus-curve label is off); flips and quarter turns only (blur or any other
   change of the PSF would erase the asymmetry the sign is read from); both frames of a
   pair get the same crop and turn. The batch-norm statistics stay those of the
   pre-training (``train_bn=False``, measured better in docs/autofocus.md). The magnitude
   learns from ``|z|`` alone (``magnitude_from_abs``): the signed terms train the direction
   only, else they inflate the magnitude by ``1 / |tanh(sign logit)|`` to make up for an
   unsure direction. An exponential moving average of the weights is scored on the
   held-out fields at regular times (the card's ``history``); the final average is kept
   (``select="last"``; ``"best"`` keeps the best-scoring one, which on a few held-out
   stacks chose worse weights for other fields: docs/autofocus.md).
4. **Kept only if better.** The weights and a model card (stacks, their focus range and
   step, optics if given, held-out sign accuracy, MAE and magnitude MAE before and after,
   wall and CPU time, the command) are written through
   :func:`napari_gplws.models.registry.save_ldse` only when the held-out signed MAE
   (``|z| ≤ 5 µm``) improved; otherwise nothing is written and the result says so.

Time-boxed (``minutes``, wall clock) and resumable: a checkpoint is written every minute
and on cancel to ``work_dir/calibrate.ckpt`` together with a fingerprint of the inputs;
``resume=True`` continues it (the time already spent counts). The command line is
``gplws calibrate`` (:mod:`napari_gplws.cli.calibrate`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.defocus import MIN_CONTENT
from napari_gplws.errors import Cancelled, GplwsError, StackError
from napari_gplws.models.registry import WEIGHTS_DIR, model_card, save_ldse
from napari_gplws.sim.defocus_tiles import TileSet
from napari_gplws.stack import FocalStack
from napari_gplws.training._common import (
    ConfigMixin,
    cosine_lr_factor,
    load_checkpoint,
    save_checkpoint,
)
from napari_gplws.training.ldse_data import concat_tilesets, stack_defocus_tiles

__all__ = [
    "LIMITS",
    "CalibrationConfig",
    "CalibrationData",
    "CalibrationResult",
    "calibrate",
    "calibration_data",
    "held_out_metrics",
    "predict_parts",
]

#: Ranges of the numeric options: (low, high), both included.
LIMITS: dict[str, tuple[float, float]] = {
    "minutes": (0.1, 240.0),
    "lr": (1e-6, 1e-2),
    "batch_pairs": (2, 64),
    "crop_px": (64, 224),
    "val_fraction": (0.05, 0.5),
    "seed": (0, 2**31 - 1),
    "threads": (0, 256),
    "signed_weight": (0.0, 10.0),
    "abs_weight": (0.0, 10.0),
    "sign_weight": (0.0, 10.0),
    "pair_weight": (0.0, 10.0),
    "ema_decay": (0.0, 0.9999),
    "max_abs_um": (2.0, 20.0),
    "evaluations": (1, 100),
    "max_val_tiles": (16, 100_000),
    "min_content": (0.0, 1.0),
}
UNFREEZE = ("all", "late", "head")
#: Tiles within this distance of focus carry no sign label (the sign is ill-defined there).
_NEAR_UM = 0.5
_MIN_SIDE_UM = 1.0


@dataclass
class CalibrationConfig(ConfigMixin):
    """Options of a calibration (each has a command-line flag; ranges in :data:`LIMITS`)."""

    minutes: float = 9.5
    lr: float = 3e-4
    batch_pairs: int = 8
    crop_px: int = 160
    val_fraction: float = 0.125
    seed: int = 0
    threads: int = 0
    signed_weight: float = 1.0
    abs_weight: float = 1.0
    sign_weight: float = 1.0
    pair_weight: float = 0.5
    ema_decay: float = 0.998
    unfreeze: str = "all"
    train_bn: bool = False
    magnitude_from_abs: bool = True
    select: str = "last"
    clock: str = "wall"
    max_abs_um: float = 8.0
    evaluations: int = 6
    max_val_tiles: int = 400
    min_content: float = MIN_CONTENT
    tile_px: int = 224

    def check(self) -> None:
        """Refuse values outside :data:`LIMITS` (a :class:`GplwsError` naming the option)."""
        for name, (lo, hi) in LIMITS.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise GplwsError(
                    f"Calibration option {name}={v!r} is outside its range {lo:g}…{hi:g}."
                )
        if self.unfreeze not in UNFREEZE:
            raise GplwsError(
                f"Calibration option unfreeze={self.unfreeze!r}: choose one of {', '.join(UNFREEZE)}."
            )
        if self.select not in ("last", "best"):
            raise GplwsError(f"Calibration option select={self.select!r}: choose 'last' or 'best'.")
        if self.clock not in ("wall", "cpu"):
            raise GplwsError(f"Calibration option clock={self.clock!r}: choose 'wall' or 'cpu'.")
        if self.crop_px > self.tile_px:
            raise GplwsError(f"crop_px {self.crop_px} exceeds the tile size {self.tile_px} px.")


@dataclass
class CalibrationData:
    """Labelled tiles of the calibration stacks and how they are grouped."""

    tiles: TileSet
    stack_id: np.ndarray
    stacks: list[dict[str, Any]]
    pixel_size_um: float | None
    train_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    val_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    split: str = ""


@dataclass
class CalibrationResult:
    """What :func:`calibrate` did: ``kept`` says whether ``output`` was written."""

    kept: bool
    output: Path | None
    before: dict[str, Any]
    after: dict[str, Any]
    card: dict[str, Any]
    message: str
    steps: int
    wall_min: float


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def _describe(st: FocalStack) -> str:
    return repr(str(st.source)) if st.source else "(unnamed stack)"


def calibration_data(
    stacks: Sequence[FocalStack | str | Path],
    cfg: CalibrationConfig,
    *,
    focus_step_um: float | None = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> CalibrationData:
    """Labelled tiles of every stack, refused when a stack does not pass through focus.

    Raises
    ------
    StackError
        Fewer than one stack, a stack without focus positions, or stacks that do not reach
        1 µm on both sides of focus (all such stacks are named in one message).
    """
    if not stacks:
        raise StackError("Calibration needs at least one focus stack (two or more recommended).")
    sets, infos, bad, px_all = [], [], [], []
    for k, item in enumerate(stacks):
        check_cancel(cancel)
        st = item
        if not isinstance(st, FocalStack):
            from napari_gplws.io import read_stack

            st = read_stack(item, focus_step_um=focus_step_um)
        name = _describe(st)
        if st.focus_um is None:
            raise StackError(
                f"The stack {name} has no focus positions; calibration needs them. Give the "
                "focus step (--focus-step) or a sidecar with the positions."
            )
        try:
            ts = stack_defocus_tiles(
                st, cfg.tile_px, max_abs_um=cfg.max_abs_um, min_content=cfg.min_content
            )
        except StackError:
            bad.append(
                f"{name}: no tile has its focus peak inside the stack (or every tile is blank: "
                f"less than {cfg.min_content:.0%} of it shows specimen; sparse fluorescence may "
                "need a lower blank-tile threshold)"
            )
            continue
        lo, hi = float(ts.defocus_um.min()), float(ts.defocus_um.max())
        if lo > -_MIN_SIDE_UM or hi < _MIN_SIDE_UM:
            bad.append(f"{name}: it covers {lo:+.1f}…{hi:+.1f} µm about focus")
            continue
        pos = np.asarray(st.focus_um, np.float64)
        step = float(np.median(np.abs(np.diff(pos)))) if len(pos) > 1 else 0.0
        infos.append(
            {
                "source": str(st.source or f"stack {k + 1}"),
                "frames": int(st.n_frames),
                "shape_yx": list(st.shape_yx),
                "focus_range_um": [float(pos.min()), float(pos.max())],
                "focus_step_um": round(step, 4),
                "pixel_size_um": st.pixel_size_um,
                "tiles": len(ts),
                "fields": int(len(np.unique(ts.field_id))),
                "defocus_range_um": [round(lo, 2), round(hi, 2)],
            }
        )
        sets.append(ts)
        px_all.append(st.pixel_size_um)
        report(progress, k + 1, len(stacks))
    if bad:
        raise StackError(
            "These stacks do not pass through focus (at least 1 µm on both sides of the "
            "sharpest frame is needed, over the whole field): " + "; ".join(bad) + ". Take "
            "them again over a wider focus range centred on focus (e.g. ±6 µm), or leave "
            "them out."
        )
    known = {round(float(p), 6) for p in px_all if p is not None}
    if len(known) > 1:
        raise StackError(
            f"The stacks have different pixel sizes ({', '.join(f'{p:g}' for p in sorted(known))} "
            "µm); calibrate one objective and camera at a time."
        )
    tiles = concat_tilesets(sets)
    stack_id = np.concatenate([np.full(len(s), i) for i, s in enumerate(sets)])
    data = CalibrationData(tiles, stack_id, infos, known.pop() if known else None)
    _split(data, cfg)
    return data


def _split(data: CalibrationData, cfg: CalibrationConfig) -> None:
    """Hold out whole stacks (three or more stacks) or else whole tile positions."""
    n_stacks = len(data.stacks)
    groups, data.split = (
        (data.stack_id, "whole stacks") if n_stacks >= 3 else (data.tiles.field_id, "whole fields")
    )
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise StackError(
            "Calibration needs at least two fields to hold one out: give two or more stacks, "
            "or stacks wide enough for two 224×224 tiles."
        )
    order = np.random.default_rng([cfg.seed, 11]).permutation(uniq)
    n_val = min(max(round(cfg.val_fraction * len(uniq)), 1), len(uniq) - 1)
    is_val = np.isin(groups, order[:n_val])
    data.train_idx, data.val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    for i, info in enumerate(data.stacks):
        info["held_out"] = bool(is_val[data.stack_id == i].all())


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
def predict_parts(model: Any, tiles: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Signed defocus and magnitude (µm) of ``tiles`` by ``model`` (eval mode, CPU)."""
    import torch

    from napari_gplws.models.ldse import prepare_tiles

    model.eval()
    signed, mag = [], []
    with torch.inference_mode():
        for i in range(0, len(tiles), batch):
            m, s = model.forward_parts(torch.from_numpy(prepare_tiles(tiles[i : i + batch])))
            mag.append(m.numpy())
            signed.append((m * torch.tanh(s)).numpy())
    return np.concatenate(signed), np.concatenate(mag)


def held_out_metrics(pred: np.ndarray, magnitude: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """The calibration's three figures (µm): ``sign_acc_ge1`` (share of correct signs for
    ``|z| ≥ 1``), ``mae_le5`` (signed MAE for ``|z| ≤ 5``) and ``mag_mae_le5`` (MAE of the
    magnitude against ``|z|`` for ``|z| ≤ 5``), with the tile counts."""
    p, m, z = (np.asarray(a, np.float64).ravel() for a in (pred, magnitude, true))
    ge1, le5 = np.abs(z) >= 1.0, np.abs(z) <= 5.0

    def mean(a: np.ndarray) -> float | None:
        return round(float(a.mean()), 4) if a.size else None

    return {
        "sign_acc_ge1": mean((np.sign(p[ge1]) == np.sign(z[ge1])).astype(float)),
        "mae_le5": mean(np.abs(p[le5] - z[le5])),
        "mag_mae_le5": mean(np.abs(m[le5] - np.abs(z[le5]))),
        "n_ge1": int(ge1.sum()),
        "n_le5": int(le5.sum()),
    }


def _val_subset(data: CalibrationData, cfg: CalibrationConfig) -> np.ndarray:
    idx = data.val_idx
    if len(idx) > cfg.max_val_tiles:
        idx = idx[np.linspace(0, len(idx) - 1, cfg.max_val_tiles).round().astype(int)]
    return idx


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def _pairs_by_field(data: CalibrationData) -> dict[int, np.ndarray]:
    fid = data.tiles.field_id[data.train_idx]
    return {int(f): data.train_idx[fid == f] for f in np.unique(fid)}


def _draw_batch(
    data: CalibrationData, by_field: dict[int, np.ndarray], cfg: CalibrationConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``2 × batch_pairs`` tiles: pairs of frames of one field (same crop and turn)."""
    from napari_gplws.models.ldse import prepare_tiles

    fields = list(by_field)
    xs, ys = [], []
    t, z = data.tiles.tiles, data.tiles.defocus_um
    side = t.shape[1]
    for _ in range(cfg.batch_pairs):
        members = by_field[fields[int(rng.integers(len(fields)))]]
        i, j = rng.choice(members, 2, replace=len(members) < 2)
        y0, x0 = (int(v) for v in rng.integers(0, side - cfg.crop_px + 1, 2))
        pair = prepare_tiles(t[[i, j], y0 : y0 + cfg.crop_px, x0 : x0 + cfg.crop_px])[:, 0]
        if rng.random() < 0.5:
            pair = pair[:, :, ::-1]
        xs.append(np.rot90(pair, int(rng.integers(4)), axes=(1, 2)))
        ys.append(z[[i, j]])
    x = np.ascontiguousarray(np.stack(xs).reshape(-1, 1, cfg.crop_px, cfg.crop_px))
    return x, np.concatenate(ys).astype(np.float32)


def _loss(model: Any, x: Any, y: Any, cfg: CalibrationConfig) -> Any:
    """Huber on signed value and magnitude, cross-entropy on the sign, pair consistency.

    With ``magnitude_from_abs`` the magnitude learns from ``|z|`` alone: the signed terms
    reach it only through the sign (else they inflate it by ``1 / |tanh(sign logit)|`` to
    make up for the shrinkage of an uncertain direction).
    """
    import torch
    from torch.nn import functional as F

    m, s = model.forward_parts(x)
    signed = (m.detach() if cfg.magnitude_from_abs else m) * torch.tanh(s)
    loss = cfg.signed_weight * F.smooth_l1_loss(signed, y)
    loss = loss + cfg.abs_weight * F.smooth_l1_loss(m, y.abs())
    w = (y.abs() > _NEAR_UM).float()
    bce = F.binary_cross_entropy_with_logits(s, (y > 0).float(), weight=w, reduction="sum")
    loss = loss + cfg.sign_weight * bce / w.sum().clamp(min=1.0)
    if cfg.pair_weight:
        d_pred, d_true = signed[0::2] - signed[1::2], y[0::2] - y[1::2]
        loss = loss + cfg.pair_weight * F.smooth_l1_loss(d_pred, d_true)
    return loss


def _trainable(model: Any, unfreeze: str) -> list[Any]:
    """Parameters to fine-tune: all, the last dense block and the head, or the head only."""
    names = {
        "all": ("",),
        "late": ("features.", "se.", "spectrum.", "head."),
        "head": ("se.", "spectrum.mlp", "head."),
    }[unfreeze]
    n_feat = len(model.features)
    late_from = max(n_feat - 6, 0)  # the last four dense layers, final BN and ReLU
    params = []
    for name, p in model.named_parameters():
        ok = any(name.startswith(n) for n in names)
        if unfreeze == "late" and name.startswith("features."):
            ok = int(name.split(".")[1]) >= late_from
        p.requires_grad_(ok)
        if ok:
            params.append(p)
    return params


def _fingerprint(data: CalibrationData, cfg: CalibrationConfig, base: str) -> str:
    keys = {k: v for k, v in cfg.to_dict().items() if k not in ("minutes", "threads", "evaluations")}
    blob = json.dumps([data.stacks, keys, base, len(data.tiles)], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _base_model(base: str | Path) -> Any:
    """A trainable copy of the base LDSE-NET (checked and loaded by the registry)."""
    import torch

    from napari_gplws.models.registry import load_ldse

    model = copy.deepcopy(load_ldse(base, "cpu")).to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def calibrate(
    stacks: Sequence[FocalStack | str | Path],
    output: str | Path,
    *,
    base_weights: str | Path = "ldse_default",
    config: CalibrationConfig | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    focus_step_um: float | None = None,
    optics_note: str | None = None,
    command: str = "",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    log: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Fine-tune LDSE-NET on focus stacks of one microscope (see the module notes).

    Parameters
    ----------
    stacks
        :class:`FocalStack` objects with focus positions, or paths
        :func:`napari_gplws.io.read_stack` reads (``focus_step_um`` when the files lack
        positions).
    output
        The ``.safetensors`` file to write (its model card goes beside it).
    base_weights
        LDSE-NET weights to start from (packaged name or path).
    config
        Options (:class:`CalibrationConfig`; defaults when ``None``).
    work_dir
        Folder for the checkpoint and log (default ``<output>.calibration/``).
    resume
        Continue the checkpoint in ``work_dir`` if it was made from the same inputs.
    optics_note
        What the user knows of the optics (recorded in the card), e.g. ``"20x/0.75 dry"``.
    command
        The command line, recorded in the card.
    progress, cancel
        ``progress(seconds done, seconds budget)``; ``cancel()`` is checked every step (the
        checkpoint is saved first, so ``resume`` can continue).
    log
        Receives one line per event.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    StackError
        Stacks without focus positions or that do not pass through focus.
    GplwsError
        Options outside their ranges, or ``output`` inside the packaged weights folder.
    Cancelled
        When ``cancel()`` returned True.
    """
    import torch

    cfg = config or CalibrationConfig()
    cfg.check()
    output = Path(output)
    if output.suffix != ".safetensors":
        raise GplwsError(f"The calibrated weights file '{output}' must end in .safetensors.")
    if output.resolve().parent == WEIGHTS_DIR.resolve():
        raise GplwsError(
            f"'{output}' is inside the packaged weights folder; write calibrated weights "
            "elsewhere (the packaged ones must stay as shipped)."
        )
    say = log or (lambda _m: None)
    base = str(base_weights)
    base_card = model_card(base)
    work = Path(work_dir) if work_dir else output.with_name(output.stem + ".calibration")
    work.mkdir(parents=True, exist_ok=True)
    t0, cpu_start = time.perf_counter(), time.process_time()
    data = calibration_data(stacks, cfg, focus_step_um=focus_step_um, cancel=cancel)
    say(
        f"{len(data.tiles)} labelled tiles from {len(data.stacks)} stacks; held out: "
        f"{data.split}, {len(data.val_idx)} tiles"
    )
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or min(2, torch.get_num_threads()))
    try:
        return _run(data, cfg, output, base, base_card, work, resume, optics_note, command,
                    progress, cancel, say, (t0, cpu_start))
    finally:
        torch.set_num_threads(threads_before)


def _run(
    data: CalibrationData, cfg: CalibrationConfig, output: Path, base: str,
    base_card: dict[str, Any], work: Path, resume: bool, optics_note: str | None,
    command: str, progress: ProgressFn, cancel: CancelFn, say: Callable[[str], None],
    started: tuple[float, float],
) -> CalibrationResult:
    import torch

    from napari_gplws.training.calibrate_card import calibration_card

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 3])
    model = _base_model(base)
    val = _val_subset(data, cfg)
    vt, vz = data.tiles.tiles[val], data.tiles.defocus_um[val]
    before = held_out_metrics(*predict_parts(model, vt), vz)
    say(f"held-out before: {json.dumps(before)}")
    ema = copy.deepcopy(model).eval()
    params = _trainable(model, cfg.unfreeze)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    fp = _fingerprint(data, cfg, base)
    ckpt = work / "calibrate.ckpt"
    step, spent, best_state, best, history = 0, 0.0, None, before, []
    if resume and ckpt.is_file():
        st = load_checkpoint(ckpt, "cpu")
        if st.get("fingerprint") != fp:
            raise GplwsError(
                f"The checkpoint '{ckpt}' was made from other stacks or options; run without "
                "resume (or delete it) to start afresh."
            )
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, spent = int(st["step"]), float(st["spent_s"])
        best_state, best = st.get("best_state"), json.loads(st["best"])
        history = json.loads(st["history"])
        rng.bit_generator.state = json.loads(st["rng"])
        say(f"resumed at step {step} after {spent / 60:.1f} min")
    budget = cfg.minutes * 60.0
    # The time box counts wall-clock seconds, or this process's CPU seconds (clock="cpu":
    # comparable runs on a shared machine).
    tick = time.perf_counter if cfg.clock == "wall" else time.process_time
    t0 = tick() - spent
    evals_at = [budget * (k + 1) / cfg.evaluations for k in range(cfg.evaluations)]
    next_eval = next((e for e in evals_at if e > spent), budget)
    last_ckpt = time.perf_counter()
    by_field = _pairs_by_field(data)

    def save() -> None:
        save_checkpoint(ckpt, {
            "fingerprint": fp, "model": model.state_dict(), "ema": ema.state_dict(),
            "opt": opt.state_dict(), "step": step, "spent_s": tick() - t0,
            "best_state": best_state, "best": json.dumps(best), "history": json.dumps(history),
            "rng": json.dumps(rng.bit_generator.state),
        })

    def evaluate(final: bool = False) -> None:
        """Score the moving average; keep it if it is the one ``cfg.select`` asks for."""
        nonlocal best, best_state
        m = held_out_metrics(*predict_parts(ema, vt), vz)
        history.append({"step": step, "minutes": round((tick() - t0) / 60, 2), **m})
        # "best": the lowest held-out MAE so far; "last": the final weights, if they beat
        # the base weights (measured better on other fields: docs/autofocus.md).
        ref = before if cfg.select == "last" else best
        if (final or cfg.select == "best") and m["mae_le5"] is not None and (
            ref["mae_le5"] is None or m["mae_le5"] < ref["mae_le5"]
        ):
            best, best_state = m, {k: v.clone() for k, v in ema.state_dict().items()}
        say(f"step {step}: held-out sign {m['sign_acc_ge1']} MAE {m['mae_le5']} µm "
            f"|z| MAE {m['mag_mae_le5']} µm")

    try:
        while (elapsed := tick() - t0) < budget:
            check_cancel(cancel)
            frac = elapsed / budget
            for g in opt.param_groups:
                g["lr"] = cfg.lr * cosine_lr_factor(step, frac, 20, 0.05)
            model.train()
            if not cfg.train_bn:
                for mod in model.modules():
                    if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                        mod.eval()
            x, y = _draw_batch(data, by_field, cfg, rng)
            loss = _loss(model, torch.from_numpy(x), torch.from_numpy(y), cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            _ema(ema, model, cfg.ema_decay if step >= 50 else 0.5)
            step += 1
            now = tick() - t0
            report(progress, int(min(now, budget)), int(budget))
            if now >= next_eval and now < budget:
                evaluate()
                next_eval = next((e for e in evals_at if e > tick() - t0), budget + 1)
            if time.perf_counter() - last_ckpt > 60:
                save()
                last_ckpt = time.perf_counter()
    except (Cancelled, KeyboardInterrupt):  # Cancel, SIGTERM or Ctrl-C: resumable
        save()
        say(f"cancelled at step {step}; the checkpoint is kept in {work} (resume continues it)")
        raise
    if not history or history[-1]["step"] != step:
        evaluate(final=True)
    save()
    wall = (time.perf_counter() - started[0]) / 60
    cpu = (time.process_time() - started[1]) / 60
    improved = best_state is not None
    if improved:
        model.load_state_dict(best_state)
    card = calibration_card(
        data=data, cfg=cfg, base=base, base_card=base_card, before=before, after=best,
        history=history, steps=step, wall_min=wall, cpu_min=cpu, optics_note=optics_note,
        command=command, output=output, config=model.config.to_dict(), improved=improved,
    )
    if improved:
        save_ldse(model.eval(), output, card)
        msg = f"kept: held-out MAE {before['mae_le5']} → {best['mae_le5']} µm; wrote {output}"
    else:
        msg = (
            f"not kept: no held-out improvement over '{base}' (MAE {before['mae_le5']} µm); "
            f"nothing was written to {output}"
        )
    say(msg)
    return CalibrationResult(improved, output if improved else None, before, best, card, msg,
                             step, round(wall, 2))


def _ema(ema: Any, model: Any, decay: float) -> None:
    import torch

    with torch.no_grad():
        for (_, e), (_, m) in zip(ema.state_dict().items(), model.state_dict().items(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(m.detach(), alpha=1 - decay)
            else:
                e.copy_(m)
