"""Command lines of the two trainers: ``gplws train gplws …`` and ``gplws train ldse …``.

:func:`gplws_main` and :func:`ldse_main` take the arguments after the network name (a
leading network name is accepted and ignored), build the training options
(:class:`napari_gplws.training.gplws.TrainConfig`,
:class:`napari_gplws.training.ldse_config.LDSETrainConfig`), run the trainer and return
an exit code. :func:`build_gplws_parser` and :func:`build_ldse_parser` are their parsers,
:func:`gplws_config` and :func:`ldse_config` turn parsed arguments into options without
training (used to check that the commands recorded in model cards still parse).

``python -m napari_gplws.cli.train gplws|ldse …`` runs them too (:func:`main`); the older
``python -m napari_gplws.core.train …`` and ``… core.train_ldse …`` forward here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from napari_gplws.cli._common import TTA, GplwsParser, Limits, add_number, check_device_text
from napari_gplws.sim.psf import PRESETS
from napari_gplws.training.gplws import TrainConfig
from napari_gplws.training.ldse_config import LDSETrainConfig

__all__ = [
    "build_gplws_parser",
    "build_ldse_parser",
    "gplws_config",
    "gplws_main",
    "ldse_config",
    "ldse_main",
    "main",
]


#: Ranges of the trainers' numeric options (see ``docs/cli.md``).
STEPS = Limits(int, 1, 100_000_000)
MINUTES = Limits(float, 0, 1e6, lo_open=True, unit="min")
BATCH_SIZE = Limits(int, 1, 4096)
LR = Limits(float, 0, 1, lo_open=True)
SEED = Limits(int, 0, 2**32 - 1)
FRACTION = Limits(float, 0.0, 1.0)
N_FRAMES = Limits(int, 2, 512)
SIZE_PX = Limits(int, 32, 4096, unit="px")
WIDTH = Limits(int, 1, 1024)
S2D = Limits(int, 2, 4)
COUNT = Limits(int, 1, 1_000_000)
COUNT0 = Limits(int, 0, 1_000_000)
TRAIN_THREADS = Limits(int, 0, 1024)
LOSS_WEIGHT = Limits(float, 0.0, 1e6)
PHASE_RAD = Limits(float, 0.0, 10.0, unit="rad")
GT_SCALE = Limits(float, 0, 1e6, lo_open=True)
STACK_STEP = Limits(float, 0, 1e5, lo_open=True, unit="µm")
CROP_PX = Limits(int, 32, 224, unit="px")


def _command(network: str, argv: Sequence[str]) -> str:
    """The command line recorded in the model card."""
    return f"gplws train {network} " + " ".join(shlex.quote(x) for x in argv)


def _strip_network(argv: Sequence[str] | None, network: str) -> list[str]:
    """``argv`` (default: ``sys.argv[1:]``) without a leading network name."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[1:] if args and args[0] == network else args


# ------------------------------------------------------------------------------------------
# GPLWS-Net
# ------------------------------------------------------------------------------------------
def build_gplws_parser() -> argparse.ArgumentParser:
    """Argument parser of ``gplws train gplws``."""
    d = TrainConfig()
    p = GplwsParser(
        prog="gplws train gplws", description="Train GPLWS-Net on synthetic stacks."
    )
    p.add_argument(
        "--out-dir", default=d.out_dir, help="folder for log and checkpoints (default %(default)s)"
    )
    add_number(p, "--steps", limits=STEPS, default=d.steps)
    add_number(p, "--max-minutes", limits=MINUTES, default=None, help="stop cleanly after this wall time"
    )
    add_number(p, "--batch-size", limits=BATCH_SIZE, default=d.batch_size)
    add_number(p, "--lr", limits=LR, default=d.lr)
    add_number(p, "--seed", limits=SEED, default=d.seed)
    add_number(p, "--n-frames", limits=N_FRAMES, nargs=2, default=list(d.n_frames), metavar=("MIN", "MAX")
    )
    add_number(p, "--size", limits=SIZE_PX, nargs=2, default=list(d.size), metavar=("MIN", "MAX"))
    add_number(p, "--n-choices", limits=N_FRAMES, nargs="+", default=list(d.n_choices),
        help="stack lengths used in training (few fixed shapes train faster on CPU)",
    )
    add_number(p, "--size-choices", limits=SIZE_PX, nargs="+", default=list(d.size_choices))
    add_number(p, "--widths", limits=WIDTH, nargs=4, default=list(d.widths))
    add_number(p, "--s2d", limits=S2D, default=d.s2d, choices=[2, 4], help="space-to-depth factor")
    add_number(p, "--epoch-steps", limits=COUNT, default=d.epoch_steps)
    add_number(p, "--ckpt-minutes", limits=MINUTES, default=d.ckpt_minutes)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.ckpt")
    p.add_argument("--device", default=d.device, type=check_device_text, help="auto, cpu or cuda")
    add_number(p, "--threads", limits=TRAIN_THREADS, default=d.threads)
    add_number(p, "--synth-fraction", limits=FRACTION, default=d.synth_fraction,
        help="fraction of batches from napari_gplws.sim.focus_stacks stacks (pooled)",
    )
    add_number(p, "--synth-pool", limits=COUNT, default=d.synth_pool)
    p.add_argument("--micro3d", default=None, help="Micro 3D-layout dataset folder")
    add_number(p, "--micro3d-fraction", limits=FRACTION, default=d.micro3d_fraction)
    p.add_argument("--gt-pattern", default=d.gt_pattern)
    p.add_argument("--gt-units", default=d.gt_units, choices=["index", "um"])
    add_number(p, "--gt-scale", limits=GT_SCALE, default=d.gt_scale)
    p.add_argument("--split-file", default=None)
    p.add_argument(
        "--weights-out", default=None, help="also write fused weights + model card here"
    )
    add_number(p, "--benchmark", limits=COUNT0, default=d.benchmark, help="held-out stacks for the model card"
    )
    add_number(p, "--log-every", limits=COUNT, default=d.log_every)
    p.add_argument(
        "--init-weights", default=None,
        help="start from these fused weights (fine-tuning; the network's shape comes from the file)",
    )
    p.add_argument(
        "--teacher-weights", default=None,
        help="distil from this network: its probability over the frames is a second target",
    )
    add_number(p, "--teacher-views", limits=TTA, default=d.teacher_views, choices=[1, 2, 4, 8],
        help="test-time-augmentation views averaged for the teacher's probability",
    )
    add_number(p, "--distill-weight", limits=LOSS_WEIGHT, default=d.distill_weight,
        help="weight of the distillation term against the ground-truth loss (1)",
    )
    return p


def gplws_config(a: argparse.Namespace, argv: Sequence[str]) -> TrainConfig:
    """GPLWS-Net training options from parsed arguments; ``argv`` is recorded as the command.

    Parameters
    ----------
    a
        Arguments parsed by :func:`build_gplws_parser`.
    argv
        The arguments as given (after the network name).

    Returns
    -------
    TrainConfig
        The options of the run.
    """
    return TrainConfig(
        out_dir=a.out_dir, steps=a.steps, max_minutes=a.max_minutes, batch_size=a.batch_size,
        lr=a.lr, seed=a.seed, n_frames=tuple(a.n_frames), size=tuple(a.size),
        n_choices=tuple(a.n_choices), size_choices=tuple(a.size_choices),
        widths=tuple(a.widths), s2d=a.s2d, epoch_steps=a.epoch_steps,
        ckpt_minutes=a.ckpt_minutes, resume=a.resume, device=a.device, threads=a.threads,
        synth_fraction=a.synth_fraction, synth_pool=a.synth_pool, micro3d=a.micro3d,
        micro3d_fraction=a.micro3d_fraction, gt_pattern=a.gt_pattern, gt_units=a.gt_units,
        gt_scale=a.gt_scale, split_file=a.split_file, weights_out=a.weights_out,
        benchmark=a.benchmark, log_every=a.log_every, init_weights=a.init_weights,
        teacher_weights=a.teacher_weights, teacher_views=a.teacher_views,
        distill_weight=a.distill_weight, command=_command("gplws", argv),
    )  # type: ignore[arg-type]


def gplws_main(argv: Sequence[str] | None = None) -> int:
    """``gplws train gplws``: train GPLWS-Net; returns an exit code (130 when interrupted).

    Parameters
    ----------
    argv
        Arguments, e.g. ``["--max-minutes", "60", ...]``; a leading ``"gplws"`` is
        accepted and ignored. Default: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success.
    """
    from napari_gplws.training.gplws import train_gplws

    args = _strip_network(argv, "gplws")
    cfg = gplws_config(build_gplws_parser().parse_args(args), args)
    try:
        summary = train_gplws(cfg)
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(json.dumps(dict(summary), default=str))
    return 0


# ------------------------------------------------------------------------------------------
# LDSE-NET
# ------------------------------------------------------------------------------------------
def build_ldse_parser() -> argparse.ArgumentParser:
    """Argument parser of ``gplws train ldse``."""
    d = LDSETrainConfig()
    p = GplwsParser(
        prog="gplws train ldse", description="Train LDSE-NET (single-tile signed defocus)."
    )
    p.add_argument("--out-dir", default=d.out_dir, help="log and checkpoints (default %(default)s)")
    add_number(p, "--steps", limits=STEPS, default=d.steps)
    add_number(p, "--max-minutes", limits=MINUTES, default=None, help="stop cleanly after this wall time"
    )
    add_number(p, "--batch-size", limits=BATCH_SIZE, default=d.batch_size)
    add_number(p, "--lr", limits=LR, default=d.lr)
    add_number(p, "--seed", limits=SEED, default=d.seed)
    p.add_argument("--optics", default=d.optics, choices=sorted(PRESETS))
    add_number(p, "--n-aberrations", limits=COUNT, default=d.n_aberrations)
    add_number(p, "--crop-px", limits=CROP_PX, default=d.crop_px)
    add_number(p, "--full-fraction", limits=FRACTION, default=d.full_fraction,
        help="final fraction of the budget trained on full 224 px tiles",
    )
    add_number(p, "--ckpt-minutes", limits=MINUTES, default=d.ckpt_minutes)
    add_number(p, "--val-minutes", limits=MINUTES, default=d.val_minutes)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.ckpt")
    p.add_argument(
        "--evaluate", default=None, metavar="WEIGHTS",
        help="do not train: evaluate WEIGHTS (.safetensors) on the held-out test set and "
        "rewrite its model card",
    )
    p.add_argument("--device", default=d.device, type=check_device_text, help="cpu or cuda")
    add_number(p, "--threads", limits=TRAIN_THREADS, default=d.threads, help="0: 1 while a GPLWS training runs, else 2"
    )
    add_number(p, "--n-test-fields", limits=COUNT, default=d.n_test_fields)
    add_number(p, "--n-test-aberrations", limits=COUNT, default=d.n_test_aberrations)
    add_number(p, "--n-val-fields", limits=COUNT, default=d.n_val_fields)
    p.add_argument("--jiang", default=None, help="Jiang et al. 2018 dataset folder (real tiles)")
    p.add_argument(
        "--stacks", nargs="*", default=[], help="focal stacks with focus positions (real tiles)"
    )
    add_number(p, "--stack-focus-step", limits=STACK_STEP, default=None,
        help="focus step (µm) when the stacks lack it",
    )
    add_number(p, "--real-fraction", limits=FRACTION, default=d.real_fraction)
    p.add_argument("--weights-out", default=None, help="write weights + model card here at the end")
    add_number(p, "--aux-abs-weight", limits=LOSS_WEIGHT, default=d.aux_abs_weight)
    add_number(p, "--aux-sign-weight", limits=LOSS_WEIGHT, default=d.aux_sign_weight)
    add_number(p, "--signed-weight", limits=LOSS_WEIGHT, default=d.signed_weight,
        help="weight of the MSE on the signed defocus (µm²); with MSE terms of 5-20 µm² the "
        "sign's cross-entropy is drowned unless the MSE weights are small (e.g. 0.04 = (1/5 µm)²)",
    )
    add_number(p, "--phase-rad", limits=PHASE_RAD, nargs=2, default=list(d.phase_rad), metavar=("LO", "HI"),
        help="peak phase delay range (rad) of simulated brightfield specimens "
        "(default %(default)s)",
    )
    add_number(p, "--p-phase", limits=FRACTION, default=d.p_phase,
        help="probability that a simulated brightfield field is also a phase object",
    )
    add_number(p, "--p-near", limits=FRACTION, default=d.p_near,
        help="fraction of simulated defocus values drawn within ±5.5 µm (the rest uniform in "
        "±10 µm; 0 = uniform over the whole range, as the held-out test set)",
    )
    add_number(p, "--sign-stage-fraction", limits=FRACTION, default=d.sign_stage_fraction,
        help="first fraction of the budget trained on magnitude + sign only, every brightfield "
        "field a strong phase object (see --sign-stage-phase-rad)",
    )
    add_number(p, "--sign-stage-phase-rad", limits=PHASE_RAD, nargs=2, default=list(d.sign_stage_phase_rad),
        metavar=("LO", "HI"), help="phase range (rad) during the sign stage (default %(default)s)",
    )
    p.add_argument(
        "--init-weights", default=None,
        help="start from these weights (a .ckpt's EMA model or a .safetensors file), "
        "fresh optimiser",
    )
    add_number(p, "--log-every", limits=COUNT, default=d.log_every)
    return p


def ldse_config(a: argparse.Namespace, argv: Sequence[str]) -> LDSETrainConfig:
    """LDSE-NET training options from parsed arguments; ``argv`` is recorded as the command.

    Parameters
    ----------
    a
        Arguments parsed by :func:`build_ldse_parser`.
    argv
        The arguments as given (after the network name).

    Returns
    -------
    LDSETrainConfig
        The options of the run.
    """
    return LDSETrainConfig(
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
        command=_command("ldse", argv),
    )


def ldse_main(argv: Sequence[str] | None = None) -> int:
    """``gplws train ldse``: train LDSE-NET, or re-evaluate weights with ``--evaluate``.

    Parameters
    ----------
    argv
        Arguments; a leading ``"ldse"`` is accepted and ignored. Default: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 130 when interrupted.
    """
    args = _strip_network(argv, "ldse")
    a = build_ldse_parser().parse_args(args)
    if a.evaluate:
        from napari_gplws.training.ldse_card import reevaluate_card

        reevaluate_card(a.evaluate, device=a.device)
        return 0
    cfg = ldse_config(a, args)
    from napari_gplws.training.ldse import train_ldse

    try:
        summary = train_ldse(cfg)
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, default=str)[:4000])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m napari_gplws.cli.train gplws|ldse …``: run one trainer's command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    mains = {"gplws": gplws_main, "ldse": ldse_main}
    if not args or args[0] not in mains:
        print("usage: python -m napari_gplws.cli.train {gplws,ldse} ...", file=sys.stderr)
        return 2
    return mains[args[0]](args[1:])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
