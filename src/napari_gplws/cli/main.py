"""The ``gplws`` command line: reconstruct, eval, bench, autofocus, batch, train, export.

Every command is a thin layer over the public API and the core: parse arguments, call
one function with a tqdm progress bar, write files, print a summary. No traceback reaches
the user: errors meant for people (:class:`~napari_gplws.errors.GplwsError`), file-system
errors and unexpected exceptions are printed as one plain line. Exit codes: 0 success,
1 bad data, files or environment, 2 a wrong command line (bad option value, conflicting
flags), 130 cancelled; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from napari_gplws.cli._common import (
    CHUNK,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    THREADS,
    TILE_SIZE,
    WINDOW,
    GplwsParser,
    Limits,
    UsageError,
    _add_stack_options,
    add_align_options,
    add_gpu_options,
    add_number,
    add_pattern_option,
    check_device_text,
    check_method_text,
)
from napari_gplws.cli.reconstruct import KEPT_INPUT_ZARR, cmd_reconstruct
from napari_gplws.cli.tools import cmd_bench, cmd_eval, cmd_export


# --- train / export / autofocus ------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    if args.network == "gplws":
        from napari_gplws.cli.train import gplws_main as train_main
    else:
        from napari_gplws.cli.train import ldse_main as train_main
    return train_main(list(args.train_args))


def cmd_autofocus(args: argparse.Namespace) -> int:
    from napari_gplws.cli.autofocus import cli_autofocus
    from napari_gplws.models.cards import weights_summary_line
    from napari_gplws.models.registry import model_card

    card = model_card(args.weights)  # a broken card is a ModelError
    print(f"weights: {weights_summary_line(card, str(args.weights))}", file=sys.stderr)
    status = card.get("status")
    if status:
        # Users must know when the packaged weights fall short of their stated purpose.
        print(f"note: {args.weights} weights: {status}", file=sys.stderr)
    return cli_autofocus(args)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from napari_gplws.cli.calibrate import cmd_calibrate

    return cmd_calibrate(args)


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from napari_gplws import __version__

    parser = GplwsParser(
        prog="gplws",
        description=(
            "Height maps, all-in-focus images and autofocus diagnostics from microscope focus "
            "stacks. Depth is in µm when focus positions are known (from the file, a JSON "
            "sidecar or --focus-step), else in frame index."
        ),
    )
    parser.add_argument("--version", action="version", version=f"napari-gplws {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "reconstruct", help="depth map, all-in-focus image and confidence from one stack",
        description=(
            "Reconstruct one stack. Writes depth.tif (float32, unit and pixel size in the TIFF "
            "metadata), aif.tif (input dtype), confidence.tif (0..1) and report.json to OUTDIR. "
            "A zarr / OME-Zarr stack (or a TIFF with --out-of-core) is reconstructed chunk by "
            "chunk instead, into OUTDIR/result.zarr (arrays depth, confidence, aif) and "
            "report.json. Earlier outputs in OUTDIR are moved to a backup folder, never "
            "overwritten."
        ),
    )
    p.add_argument("input", nargs="?",
                   help="stack: TIFF/OME-TIFF/ImageJ TIFF, folder of frames, .npy/.npz, or zarr/OME-Zarr")
    p.add_argument("--sample", action="store_true", help="use the bundled synthetic sample instead of INPUT")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--method", default=None, type=check_method_text,
                   help="gplws (network, default when installed) or sml, tenengrad, glv, lapvar, rdf")
    p.add_argument("--device", default="auto", type=check_device_text,
                   help="auto, cpu, cuda, cuda:N, mps (network only)")
    add_number(p, "--window", limits=WINDOW, default=9, help="focus-measure window in pixels (classical methods)")
    p.add_argument("--no-refine", action="store_true", help="skip the edge-aware refinement (classical methods)")
    add_number(p, "--tile-size", limits=TILE_SIZE, default=None,
               help="network tile size in pixels (default: from memory; 256 out of core)")
    add_gpu_options(p)
    g = p.add_argument_group("out of core (zarr inputs are always processed this way)")
    g.add_argument("--out-of-core", action="store_true",
                   help="process a TIFF chunk by chunk (for stacks larger than memory): it is copied "
                        "to a temporary zarr in OUTDIR first, removed afterwards")
    add_number(g, "--chunk", limits=CHUNK, default=1024, metavar="PX",
               help="chunk side over y/x in pixels (default 1024; memory per thread ~ N×PX²)")
    add_number(g, "--threads", limits=THREADS, default=None, metavar="N",
               help="dask threads (default: usable cores, at most 8)")
    g.add_argument("--keep-zarr", action="store_true",
                   help=f"with --out-of-core, keep the converted TIFF as OUTDIR/{KEPT_INPUT_ZARR}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_stack_options(p)
    add_pattern_option(p)
    add_align_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "eval", help="metrics of methods over a dataset with ground truth",
        description=(
            "Run methods over a dataset with ground-truth depth and print the metric table "
            "(MSE, MAE, RMSE, AbsRel, SqRel, δ<1.25^i, within one focus step, bumpiness, "
            "seconds). DATASET holds one sub-folder per sample: the frames (or one stack file) "
            "and a ground-truth depth file named depth*, gt* or label* (float = µm; integer = "
            "frame index × --gt-scale)."
        ),
    )
    p.add_argument("dataset", nargs="?", help="dataset folder")
    add_number(p, "--synthetic", limits=Limits(int, 1, 10_000), metavar="N",
               help="use N stacks of the built-in synthetic benchmark instead")
    p.add_argument("--methods", help="comma-separated methods (default: all)")
    add_number(p, "--gt-scale", limits=Limits(float, 0, 1e6, lo_open=True), default=1.0,
               help="frame-index scale of integer ground truth")
    p.add_argument("--device", default="auto", type=check_device_text, help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "bench", help="speed and peak memory of each method on standard stack sizes",
        description=(
            "Median seconds and peak memory (RSS, each case in its own process) per method on "
            "stacks of 20×256×256, 10×600×800, 15×540×960 and 30×2048×2048 (uint8), with the "
            "thread count and the ratio to the default classical engine in the same run; then "
            "LDSE-NET's autofocus speed (ms per tile, s per 3×3 map of a 2592×1944 frame)."
        ),
    )
    p.add_argument("--sizes", help="comma-separated NxHxW, e.g. 20x256x256,10x600x800 "
                                   "[range: N 2…1000 frames, H and W 16…16384 px]")
    p.add_argument("--methods", help="comma-separated methods (default: sml and gplws when installed)")
    add_number(p, "--repeats", limits=Limits(int, 1, 100), default=3, help="timed runs per case (median)")
    p.add_argument("--device", default="cpu", type=check_device_text,
                   help="cpu, cuda, cuda:N or mps for the network (classical runs on the CPU)")
    add_gpu_options(p)
    p.add_argument("--markdown", metavar="PATH", help="also write the table to a Markdown file")
    p.add_argument(
        "--no-autofocus", action="store_true",
        help="skip the LDSE-NET table (ms per 224×224 tile, s per 3×3 map of a 2592×1944 frame)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "autofocus", help="signed defocus (µm) per region of one frame with LDSE-NET; focal error for a stack",
        description=(
            "Cut a frame into 224×224 tiles, drop blank ones, predict each tile's signed defocus "
            "in µm (frame position − best-focus position) with LDSE-NET and take the median per "
            "region of a 3×3 grid. For a stack with focus positions, also the true defocus per "
            "region (from its focus curve) and the focal error = predicted − true, per frame. "
            "Prints the table; with -o writes autofocus.csv, autofocus.json and autofocus.png."
        ),
    )
    from napari_gplws.cli.autofocus import add_autofocus_arguments

    _add_stack_options(p)
    add_autofocus_arguments(p)
    p.set_defaults(func=cmd_autofocus)

    p = sub.add_parser(
        "train", help="train GPLWS-Net or LDSE-NET (see `gplws train gplws --help`)",
        description=(
            "Train a network. `gplws train gplws ...` trains the depth-from-focus network on "
            "synthetic stacks (and optionally a Micro 3D-layout folder); `gplws train ldse ...` "
            "trains the single-frame defocus network on simulated tiles (and optionally real "
            "data). Checkpoints are written regularly; --resume continues; --max-minutes stops "
            "cleanly. Arguments after the network name go to its trainer (--help lists them)."
        ),
    )
    p.add_argument("network", choices=["gplws", "ldse"])
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="trainer arguments")
    p.set_defaults(func=cmd_train)

    from napari_gplws.cli.calibrate import add_calibrate_arguments

    p = sub.add_parser(
        "calibrate", help="calibrate autofocus to your microscope from a few of its focus stacks",
        description=(
            "Fine-tune the autofocus network (LDSE-NET) on focus stacks of one microscope that "
            "pass through focus, labelled from each tile's own focus curve; whole stacks are "
            "held out to score it. Time-boxed (--minutes) and resumable (--resume). The weights "
            "and their model card are written only if the held-out accuracy improved. Also "
            "available as `gplws autofocus calibrate`."
        ),
    )
    add_calibrate_arguments(p)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser(
        "export", help="export the fused GPLWS-Net to ONNX",
        description="Export the fused (re-parameterised) GPLWS-Net to an ONNX file.",
    )
    p.add_argument("--onnx", required=True, metavar="PATH", help="output .onnx file")
    p.add_argument("--weights", default="gplws_default", help="packaged weights name or .safetensors path")
    p.set_defaults(func=cmd_export)

    from napari_gplws.cli.batch import add_batch_arguments, cmd_batch

    p = sub.add_parser(
        "batch", help="reconstruct many stacks on a dask cluster (resumable)",
        description=(
            "One task per stack on a local dask cluster or --scheduler ADDRESS; writes "
            "OUTDIR/<stack>/{depth,aif,confidence}.tif + report.json (zarr / OME-Zarr stacks: "
            "chunk by chunk into OUTDIR/<stack>/result.zarr + report.json), manifest.json (checksums: a "
            "re-run skips finished stacks and redoes missing or corrupt ones) and summary.csv/json. "
            "A failing stack never stops the others; exit code 1 if any failed."
        ),
    )
    add_batch_arguments(p)
    p.set_defaults(func=cmd_batch)
    return parser


def _plain(exc: BaseException) -> str:
    """One line for an exception that is not a :class:`GplwsError`."""
    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return (
            f"cannot use{where}: {exc.strerror or exc}. Check the path, that the disk has room "
            "and that you may read and write there."
        )
    if isinstance(exc, MemoryError):
        return (
            "out of memory. Use --out-of-core (reconstruct), a smaller --tile-size or --chunk, "
            "or a machine with more memory."
        )
    text = " ".join(str(exc).split())[:300]
    return (
        f"unexpected {type(exc).__name__}: {text}. Run the command again with --debug to see "
        "the traceback, and report it."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gplws`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # `gplws autofocus calibrate …` is `gplws calibrate …`
        if argv[i : i + 2] == ["autofocus", "calibrate"] and all(a[:1] == "-" for a in argv[:i]):
            del argv[i]
            break
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_OK
    from napari_gplws.errors import Cancelled, GplwsError

    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except Cancelled as exc:
        print(f"gplws: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("gplws: interrupted; no outputs were written.", file=sys.stderr)
        return EXIT_CANCELLED
    except GplwsError as exc:
        if args.debug:
            raise
        text = " ".join(str(exc).split())
        print(f"gplws {args.command}: error: {text}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR
    except Exception as exc:  # never a traceback in a user's face (--debug shows it)
        if args.debug:
            raise
        print(f"gplws {args.command}: error: {_plain(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
