"""The ``gplws calibrate`` command: calibrate autofocus (LDSE-NET) to your own microscope.

``gplws calibrate STACK [STACK …] -o my_scope.safetensors --minutes 9.5`` reads focus stacks
of one microscope (TIFF, OME, folders of frames, anything :func:`napari_gplws.io.read_stack`
reads; focus positions from metadata, a sidecar or the stack options, which then apply to
every stack), runs :func:`napari_gplws.training.calibrate.calibrate` with a progress bar,
and prints the held-out figures before and after. ``gplws autofocus calibrate …`` is the
same command. The weights and their model card are written only when the held-out accuracy
improved; then ``gplws autofocus --weights my_scope.safetensors`` uses them.

What it is not: the calibration itself (:mod:`napari_gplws.training.calibrate`).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from napari_gplws.cli._common import (
    EXIT_ERROR,
    EXIT_OK,
    Limits,
    _add_stack_options,
    _parse_positions,
    add_number,
    check_output_file,
)
from napari_gplws.errors import GplwsError

__all__ = ["add_calibrate_arguments", "cmd_calibrate"]

_L = {
    "minutes": Limits(float, 0.1, 240.0, unit="min"),
    "threads": Limits(int, 0, 256),
    "seed": Limits(int, 0, 2**31 - 1),
    "val_fraction": Limits(float, 0.05, 0.5),
    "lr": Limits(float, 1e-6, 1e-2),
    "weight": Limits(float, 0.0, 10.0),
    "fraction": Limits(float, 0.0, 1.0),
}
#: Prefix of the machine-readable progress lines (``--progress-lines``, used by the dock).
PROGRESS_PREFIX = "GPLWS-PROGRESS"


def add_calibrate_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gplws calibrate`` arguments (stacks, -o, --minutes, … and the stack options)."""
    p.add_argument("stacks", nargs="+", metavar="STACK",
                   help="focus stacks of one microscope that pass through focus (2 or more; 8–16 "
                        "recommended), each a file or folder read_stack understands")
    p.add_argument("-o", "--output", required=True, metavar="WEIGHTS.safetensors",
                   help="calibrated weights to write (the model card goes beside it)")
    add_number(p, "--minutes", limits=_L["minutes"], default=9.5,
               help="time box of the fine-tuning, wall clock (default 9.5)")
    p.add_argument("--base-weights", default="ldse_default", metavar="NAME|PATH",
                   help="LDSE-NET weights to start from (default: the packaged ldse_default)")
    p.add_argument("--optics", default=None, metavar="TEXT",
                   help='what you know of the optics, recorded in the card, e.g. "40x/0.95 dry"')
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted calibration of the same stacks and options")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="checkpoint and log folder (default: OUTPUT without suffix + .calibration)")
    add_number(p, "--threads", limits=_L["threads"], default=0,
               help="CPU threads (0: up to 2)")
    add_number(p, "--seed", limits=_L["seed"], default=0, help="random seed (split, batches)")
    add_number(p, "--val-fraction", limits=_L["val_fraction"], default=None,
               help="share of stacks held out to score the weights (default 0.125: 2 of 16, "
                    "at least 1)")
    add_number(p, "--min-content", limits=_L["fraction"], default=None,
               help="blank-tile threshold, as in gplws autofocus (default 0.2; lower it for "
                    "sparse fluorescence)")
    g = p.add_argument_group("fine-tuning recipe (the defaults are the measured ones)")
    add_number(g, "--lr", limits=_L["lr"], default=None, help="learning rate")
    add_number(g, "--sign-weight", limits=_L["weight"], default=None,
               help="weight of the sign loss")
    add_number(g, "--pair-weight", limits=_L["weight"], default=None,
               help="weight of the pair-consistency loss (two frames Δ apart differ by Δ)")
    add_number(g, "--abs-weight", limits=_L["weight"], default=None,
               help="weight of the magnitude loss")
    g.add_argument("--unfreeze", choices=("all", "late", "head"), default=None,
                   help="which layers are fine-tuned (default all)")
    g.add_argument("--select", choices=("last", "best"), default=None,
                   help="weights to keep: the final ones (default) or those with the lowest "
                        "held-out error during the run")
    p.add_argument("-q", "--quiet", action="store_true", help="do not show progress")
    p.add_argument("--progress-lines", action="store_true", help=argparse.SUPPRESS)
    if "focus_step" not in {a.dest for a in p._actions}:
        _add_stack_options(p)


def _read(args: argparse.Namespace) -> list[Any]:
    from napari_gplws.io import parse_axis_pick, read_stack

    out = []
    for path in args.stacks:
        out.append(read_stack(
            path,
            focus_um=_parse_positions(getattr(args, "focus_positions", None)),
            focus_start_um=getattr(args, "focus_start", None),
            focus_step_um=getattr(args, "focus_step", None),
            pixel_size_um=getattr(args, "pixel_size", None),
            axis_pick=parse_axis_pick(getattr(args, "axis_pick", None)) or None,
        ))
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run the calibration; exit code 0 when the weights were kept, 1 when not."""
    from napari_gplws.training.calibrate import CalibrationConfig, calibrate

    out = check_output_file(args.output, "-o/--output", create_parent=True)
    if out.suffix != ".safetensors":
        raise GplwsError(f"-o/--output '{out}' must end in .safetensors.")
    cfg = CalibrationConfig(minutes=args.minutes, threads=args.threads, seed=args.seed)
    for name in ("val_fraction", "lr", "sign_weight", "pair_weight", "abs_weight", "unfreeze",
                 "select", "min_content"):
        if getattr(args, name, None) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.check()
    print(f"starting from weights: {args.base_weights}; reading {len(args.stacks)} stacks…",
          flush=True)
    stop = {"now": False}

    def on_term(_sig: int, _frame: Any) -> None:
        stop["now"] = True  # the loop saves its checkpoint, then stops

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        stacks = _read(args)
    except BaseException:
        signal.signal(signal.SIGTERM, old)
        raise
    bar = None
    if not args.quiet and not args.progress_lines:
        from tqdm import tqdm

        bar = tqdm(total=int(args.minutes * 60), desc="calibrating", unit="s", leave=False,
                   file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if args.progress_lines:
            print(f"{PROGRESS_PREFIX} {done} {total}", flush=True)
        elif bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    def log(msg: str) -> None:
        (bar.write if bar is not None else print)(msg)
        sys.stdout.flush()

    try:
        res = calibrate(
            stacks, out, base_weights=args.base_weights, config=cfg, work_dir=args.work_dir,
            resume=args.resume, optics_note=args.optics,
            command="gplws calibrate " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else []),
            progress=progress, cancel=lambda: stop["now"], log=log,
        )
    finally:
        signal.signal(signal.SIGTERM, old)
        if bar is not None:
            bar.close()
    b, a = res.before, res.after
    print(f"held-out {res.card['held_out']['split']} ({res.card['held_out']['tiles']} tiles):")
    print(f"  {'':24} {'before':>8} {'after':>8}")
    for key, label in (("sign_acc_ge1", "sign, |z| ≥ 1 µm"), ("mae_le5", "MAE, |z| ≤ 5 µm"),
                       ("mag_mae_le5", "|z| MAE, |z| ≤ 5 µm")):
        print(f"  {label:24} {_f(b.get(key)):>8} {_f(a.get(key)):>8}")
    print(res.message)
    if res.kept:
        print(res.card["summary_line"])
        print(f"use it: gplws autofocus IMAGE --weights {Path(out)}")
        return EXIT_OK
    return EXIT_ERROR


def _f(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"
