"""The ``gplws autofocus`` command: arguments, reading the input, printing and writing results.

``gplws autofocus INPUT`` reads one image or a focal stack, runs
:func:`napari_gplws.defocus.autofocus`, prints the region table of one frame and, with
``-o OUTDIR``, writes ``autofocus.csv``, ``autofocus.json`` and ``autofocus.png`` (earlier
files of these names are first moved into a ``backup-*`` folder). The sub-command itself is
registered by :mod:`napari_gplws.cli.main`, which adds the stack options it shares with the
other commands. What it is not: the computation (:mod:`napari_gplws.defocus`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.files import OutputLock, backup_outputs
from napari_gplws.cli._common import (
    FOCUS_START,
    FOCUS_STEP,
    PIXEL_SIZE,
    Limits,
    add_number,
    check_axis_pick_text,
    check_device_text,
    check_output_folder,
    check_positions_text,
)
from napari_gplws.defocus import MIN_CONTENT, autofocus, plot_heatmap
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.stack import FocalStack

__all__ = ["OUTPUT_NAMES", "add_autofocus_arguments", "cli_autofocus", "read_autofocus_input"]

#: The files ``-o OUTDIR`` writes: the region table, the whole result, the heatmap.
OUTPUT_NAMES = ("autofocus.csv", "autofocus.json", "autofocus.png")
#: Ranges of the numeric options (see ``docs/cli.md``).
FRAME = Limits(int, 0, 1_000_000)
STRIDE = Limits(int, 16, 4096, unit="px")
MIN_CONTENT_LIMITS = Limits(float, 0.0, 1.0)
#: Regions per side of ``--grid ROWSxCOLS``.
GRID_SIDE = Limits(int, 1, 32)


def check_grid_text(text: str) -> tuple[int, int]:
    """argparse ``type=`` for ``--grid``: ``ROWSxCOLS``, each 1…32."""
    try:
        gy, gx = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        gy = gx = -1
    if not (1 <= gy <= GRID_SIDE.hi and 1 <= gx <= GRID_SIDE.hi):  # type: ignore[operator]
        raise argparse.ArgumentTypeError(
            f"must look like ROWSxCOLS with each side {GRID_SIDE.text}, e.g. 3x3; got '{text}'"
        )
    return gy, gx


def add_autofocus_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gplws autofocus`` arguments (INPUT, --frame, -o, --device, --grid, --stride,
    --min-content, --weights, -q). Stack options (focus positions, pixel size, axis pick)
    are added by the caller (the CLI's shared helper) or by this function when absent."""
    p.add_argument(
        "input", help="one image (TIFF/PNG/JPG) or a stack (TIFF, folder of frames, .npy/.npz)"
    )
    add_number(
        p, "--frame", limits=FRAME, default=None, metavar="K",
        help="analyse only frame K of a stack (0-based; below the number of frames)",
    )
    p.add_argument(
        "-o", "--output", default=None, metavar="OUTDIR", help="write autofocus.csv/.json/.png here"
    )
    p.add_argument(
        "--device", default="auto", type=check_device_text, help="auto, cpu, cuda, cuda:N, mps"
    )
    p.add_argument(
        "--grid", default=(3, 3), type=check_grid_text,
        help=f"regions ROWSxCOLS (default 3x3) [range: {GRID_SIDE.text} each]",
    )
    add_number(p, "--stride", limits=STRIDE, default=None, help="tile stride in pixels (default 224)")
    add_number(
        p, "--min-content", limits=MIN_CONTENT_LIMITS, default=MIN_CONTENT,
        help="blank-tile threshold: the fraction of a tile that must show specimen",
    )
    p.add_argument(
        "--weights", default="ldse_default", help="packaged weights name or .safetensors path"
    )
    p.add_argument(
        "--combine-frames",
        action="store_true",
        help="stack of 2+ frames with focus positions: take each region's direction from all "
        "frames together (two frames a known step apart suffice)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not show progress")
    known = {a.dest for a in p._actions}
    if "focus_step" not in known:
        add_number(p, "--focus-step", limits=FOCUS_STEP, metavar="UM",
                   help="focus step between frames in µm")
        add_number(p, "--focus-start", limits=FOCUS_START, metavar="UM",
                   help="focus position of frame 0 in µm")
        p.add_argument(
            "--focus-positions", type=check_positions_text, metavar="UM,UM,...",
            help="one focus position per frame in µm",
        )
        add_number(p, "--pixel-size", limits=PIXEL_SIZE, metavar="UM", help="lateral pixel size in µm")
        p.add_argument(
            "--axis-pick", action="append", type=check_axis_pick_text, metavar="AXIS=INDEX",
            help="index on extra axes, e.g. T=0",
        )


def read_autofocus_input(args: argparse.Namespace) -> tuple[Any, np.ndarray | None]:
    """Read INPUT as a :class:`~napari_gplws.stack.FocalStack` or, for one image, an array.

    Returns ``(data, first frame)``; the stack options (``--focus-step``…) give the focus
    positions and pixel size.
    """
    from napari_gplws.io import parse_axis_pick, read_stack

    path = Path(args.input)
    positions = None
    if getattr(args, "focus_positions", None):
        try:
            positions = [
                float(v)
                for v in str(args.focus_positions).replace(";", ",").split(",")
                if v.strip()
            ]
        except ValueError:
            raise GplwsError(
                f"--focus-positions must be numbers in µm; got '{args.focus_positions}'."
            ) from None
    try:
        st = read_stack(
            path,
            focus_um=positions,
            focus_start_um=getattr(args, "focus_start", None),
            focus_step_um=getattr(args, "focus_step", None),
            pixel_size_um=getattr(args, "pixel_size", None),
            axis_pick=parse_axis_pick(getattr(args, "axis_pick", None)) or None,
        )
        return st, st.frames[0]
    except StackError:
        single = _read_single_image(path)  # one frame: not a stack, but fine for autofocus
        if single is None:
            raise
        return single, single


def _read_single_image(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        import imageio.v3 as iio

        a = np.asarray(iio.imread(path))
    except Exception:  # noqa: BLE001 - caller re-raises the stack reader's message
        return None
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    return None


def cli_autofocus(args: argparse.Namespace) -> int:
    """``gplws autofocus INPUT [--frame K] [-o OUTDIR]``: print the grid, write CSV, JSON, PNG.

    Prints the 3×3 table (predicted / true / error in µm for a stack with focus positions,
    predicted only for a single image) of the chosen frame (``--frame``, default: every
    frame of a stack is analysed and the first one printed, plus a summary). With ``-o``,
    writes ``autofocus.csv`` (one row per frame and region), ``autofocus.json`` and
    ``autofocus.png`` (heatmap of the printed frame); earlier files of these names are moved
    into a ``backup-*`` folder. Returns the exit code (0).
    """
    if args.output:
        check_output_folder(args.output)
    data, first = read_autofocus_input(args)
    grid = args.grid if isinstance(args.grid, tuple) else check_grid_text(str(args.grid))
    gy, gx = grid
    pbar = None
    if not getattr(args, "quiet", False):
        try:
            from tqdm import tqdm

            pbar = tqdm(total=1, desc="autofocus", unit="step", leave=False)
        except ImportError:  # pragma: no cover
            pbar = None

    def progress(done: int, total: int) -> None:
        if pbar is not None:
            pbar.total = total
            pbar.n = done
            pbar.refresh()

    try:
        res = autofocus(
            data,
            frame=args.frame,
            grid=(gy, gx),
            device=args.device,
            progress=progress,
            stride=args.stride,
            min_content=args.min_content,
            weights=args.weights,
            combine_frames=getattr(args, "combine_frames", False),
        )
    finally:
        if pbar is not None:
            pbar.close()
    shown = int(res.frames[0])
    print(res.format_table(shown))
    s = res.summary()
    if len(res.frames) > 1 and s.get("mean_abs_error_um") is not None:
        print(
            f"all {len(res.frames)} frames: mean |error| {s['mean_abs_error_um']:.2f} µm, "
            f"{100 * s['within_0_5_um']:.0f} % of regions within ±0.5 µm"
        )
    if res.true_um is None and isinstance(data, FocalStack):
        print(
            "(no focus positions: give --focus-step or --focus-positions to get true defocus "
            "and error)"
        )
    if args.output:
        _refuse_infinite(res, Path(args.output))
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        with OutputLock(out):  # one writer per output folder
            backup = backup_outputs(out, OUTPUT_NAMES)
            res.to_csv(out / OUTPUT_NAMES[0])
            res.to_json(out / OUTPUT_NAMES[1])
            img = data.frames[shown] if isinstance(data, FocalStack) else first
            plot_heatmap(res, out / OUTPUT_NAMES[2], frame=shown, image=img)
        print(
            f"wrote {out / OUTPUT_NAMES[0]}, {OUTPUT_NAMES[1]}, {OUTPUT_NAMES[2]}"
            + (f" (earlier files moved to {backup})" if backup else "")
        )
    return 0


def _refuse_infinite(res: Any, out: Path) -> None:
    """Raise rather than write a result holding ±infinity (NaN means "no estimate")."""
    for name in ("predicted_um", "true_um", "error_um", "spread_um", "best_focus_um"):
        a = getattr(res, name, None)
        if a is not None and np.isinf(np.asarray(a, np.float64)).any():
            raise GplwsError(
                f"The autofocus result holds infinite values ({name}); nothing was written to "
                f"'{out}'. Check the focus positions (--focus-step, --focus-positions) and the "
                "weights (--weights)."
            )
