"""The ``gplws`` command line: reconstruct, eval, bench, autofocus, batch, train, export.

Every command is a thin layer over the public API and the core: parse arguments, call
one function with a tqdm progress bar, write files, print a summary. Errors meant for
people (:class:`~napari_gplws.errors.GplwsError`) are printed without a traceback
and give exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 2, 130


class _Progress:
    """A tqdm bar that only appears for work longer than about a second."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc, self.enabled, self.bar, self.t0 = desc, enabled, None, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 1.0 and done < total:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", leave=False, file=sys.stderr)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parse_positions(text: str | None):
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        from napari_gplws.errors import GplwsError

        raise GplwsError(
            f"--focus-positions must be a comma-separated list of numbers in µm; got '{text}'."
        ) from None


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("focus positions and pixel size (override file metadata and sidecars)")
    g.add_argument("--focus-step", type=float, metavar="UM", help="focus step between frames in µm")
    g.add_argument("--focus-start", type=float, metavar="UM", help="focus position of frame 0 in µm (default 0)")
    g.add_argument("--focus-positions", metavar="UM,UM,...", help="one focus position per frame in µm")
    g.add_argument("--pixel-size", type=float, metavar="UM", help="lateral pixel size in µm")
    g.add_argument(
        "--axis-pick", action="append", metavar="AXIS=INDEX",
        help="for 4D/5D files, the index to keep on a time or channel axis (repeatable), e.g. T=0",
    )


def _read_input(args: argparse.Namespace):
    from napari_gplws.io._read import parse_axis_pick, read_stack

    return read_stack(
        args.input,
        focus_um=_parse_positions(args.focus_positions),
        focus_start_um=args.focus_start,
        focus_step_um=args.focus_step,
        pixel_size_um=args.pixel_size,
        axis_pick=parse_axis_pick(args.axis_pick) or None,
    )


# --- reconstruct ----------------------------------------------------------------------------
#: The TIFF converted to zarr by ``--out-of-core --keep-zarr``.
KEPT_INPUT_ZARR = "input.zarr"


def _all_output_names() -> tuple[str, ...]:
    """Everything a reconstruct run may leave in OUTDIR; a new run moves all of it aside."""
    from napari_gplws.api import OUTPUT_NAMES

    return OUTPUT_NAMES + ("result.zarr", KEPT_INPUT_ZARR)


def add_gpu_options(p: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``: how the network runs (mostly for GPUs)."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="network arithmetic: auto = bf16/fp16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (pays off over many stacks of one size)")
    p.add_argument("--tta", type=int, default=None, choices=(1, 2, 4, 8),
                   help="average the network over this many flipped/turned views (default 2; 1 is "
                        "twice as fast and about 3 %% less accurate)")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from napari_gplws._shared.files import backup_outputs
    from napari_gplws.api import OUTPUT_NAMES, reconstruct

    if args.sample == (args.input is not None):
        from napari_gplws.errors import GplwsError

        raise GplwsError("Give either an INPUT stack or --sample, not both (and not neither).")
    if args.input is not None:
        from napari_gplws.io.zarr import is_zarr_path

        if args.out_of_core or is_zarr_path(args.input):
            return _reconstruct_out_of_core(args)
    t0 = time.perf_counter()
    if args.sample:
        from napari_gplws._sample_data import make_sample

        stack = make_sample().stack
    else:
        stack = _read_input(args)
    t_read = time.perf_counter() - t0

    bar = _Progress(f"reconstruct ({args.method or 'default'})", enabled=not args.quiet)
    try:
        result = reconstruct(
            stack, method=args.method, device=args.device, window=args.window,
            refine=not args.no_refine, tile_size=args.tile_size, progress=bar,
            precision=args.precision, compile=args.compile, tta=args.tta,
        )
    finally:
        bar.close()
    result.timings["read"] = t_read

    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    backup = backup_outputs(outdir, _all_output_names())
    extra = {} if backup is None else {"previous_outputs_moved_to": str(backup)}
    report = result.save(outdir, started_at=t0, extra_report=extra)

    lo, hi = report["depth_range"]
    print(
        f"{stack.source}: {stack.n_frames} frames of {stack.shape_yx[1]}×{stack.shape_yx[0]} px, "
        f"method {result.method} on {result.device}"
    )
    print(f"depth {lo:.3f} … {hi:.3f} {result.units}, mean confidence {report['mean_confidence']:.2f}")
    print(f"{result.timings['total']:.2f} s in all; wrote {', '.join(OUTPUT_NAMES)} to {outdir}")
    if backup is not None:
        print(f"earlier outputs were moved to {backup}")
    return EXIT_OK


def _require_dask(what: str) -> None:
    """Raise a :class:`GplwsError` naming the extra to install when dask or zarr is missing."""
    try:
        import dask.array  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        from napari_gplws.errors import GplwsError

        raise GplwsError(
            f"{what} needs dask and zarr ({exc.name} is not installed); install them with "
            "`pip install \"napari-gplws[batch]\"`."
        ) from None


def _reconstruct_out_of_core(args: argparse.Namespace) -> int:
    """``gplws reconstruct`` for a zarr stack, or a TIFF with ``--out-of-core``: chunk by chunk.

    Writes ``OUTDIR/result.zarr`` (arrays depth, confidence, aif) and ``OUTDIR/report.json``.
    Everything is computed into hidden names in OUTDIR first; earlier outputs are moved to a
    backup folder only once the new ones are complete.
    """
    import os
    import shutil

    from napari_gplws._shared.files import backup_outputs
    from napari_gplws.dff.outofcore import ZARR_OUTPUT_NAMES, reconstruct_out_of_core
    from napari_gplws.errors import GplwsError
    from napari_gplws.io import parse_axis_pick
    from napari_gplws.io.zarr import is_zarr_path, open_zarr_stack, tiff_to_zarr

    src = Path(args.input)
    _require_dask(f"Reconstructing '{src}' out of core")
    if any(v != 0 for v in parse_axis_pick(args.axis_pick).values()):
        raise GplwsError(
            f"--axis-pick cannot be used out of core ('{src}'); extract the stack first (e.g. in "
            "Fiji), or read it in memory without --out-of-core."
        )
    if args.chunk < 16:
        raise GplwsError(f"--chunk must be at least 16 pixels; got {args.chunk}.")
    units = {
        "focus_um": _parse_positions(args.focus_positions),
        "focus_start_um": args.focus_start,
        "focus_step_um": args.focus_step,
        "pixel_size_um": args.pixel_size,
    }
    zarr_in = is_zarr_path(src)
    if not zarr_in:
        if not src.exists():
            raise GplwsError(f"'{src}' does not exist; check the path (and its spelling).")
        if src.suffix.lower() not in (".tif", ".tiff"):
            raise GplwsError(
                f"--out-of-core reads TIFF and zarr stacks; '{src}' is neither. Convert it to a "
                "multi-page TIFF or a zarr array (N, H, W[, 3]), or drop --out-of-core."
            )
    if args.method is not None:
        from napari_gplws.dff.methods import is_network, resolve_method

        network = is_network(resolve_method(args.method))
    else:
        from napari_gplws.dff.methods import default_method

        network = default_method() == "gplws"
    if network and (args.precision != "auto" or args.compile):
        print("note: --precision and --compile do not apply out of core (autocast on CUDA, "
              "fp32 elsewhere)", file=sys.stderr)
    if network and args.tta not in (None, 1):
        from napari_gplws.errors import GplwsError

        raise GplwsError("--tta applies to in-memory stacks only; out of core the network runs one view (--tta 1).")
    if network:
        print("note: out of core the network runs one view (no test-time augmentation; "
              "in memory the default is 2 views)", file=sys.stderr)

    t0 = time.perf_counter()
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp_result = outdir / f".result.zarr.partial-{tag}"
    converted: Path | None = None
    timings: dict[str, float] = {}
    try:
        if zarr_in:
            stack = open_zarr_stack(src, **units)
        else:
            converted = outdir / f".input.zarr.partial-{tag}"
            bar = _Progress("convert TIFF to zarr", enabled=not args.quiet)
            try:
                tiff_to_zarr(src, converted, chunk=args.chunk, threads=args.threads, progress=bar, **units)
            finally:
                bar.close()
            timings["convert"] = time.perf_counter() - t0
            stack = open_zarr_stack(converted)
        bar = _Progress(f"reconstruct out of core ({args.method or 'default'})", enabled=not args.quiet)
        try:
            result = reconstruct_out_of_core(
                stack, tmp_result, method=args.method, device=args.device, window=args.window,
                refine=not args.no_refine, tile_size=args.tile_size, chunk=args.chunk,
                threads=args.threads, progress=bar,
            )
        finally:
            bar.close()
        timings.update(result.timings)
        timings["reconstruct"] = timings.pop("total", 0.0)
        result.timings = timings
        report = result.report(threads=args.threads, name="result.zarr")

        backup = backup_outputs(outdir, _all_output_names())
        os.replace(tmp_result, outdir / "result.zarr")
        result.path = outdir / "result.zarr"
        kept = None
        if converted is not None and args.keep_zarr:
            kept = outdir / KEPT_INPUT_ZARR
            os.replace(converted, kept)
            converted = None
    finally:
        shutil.rmtree(tmp_result, ignore_errors=True)
        if converted is not None:
            shutil.rmtree(converted, ignore_errors=True)

    report["input"]["source"] = str(src)
    if not zarr_in:
        report["input"]["format"] = "tiff"
        report["input"]["read_via"] = (
            f"converted to zarr, kept as {kept}" if kept is not None
            else "converted to a temporary zarr in OUTDIR (removed afterwards)"
        )
    report["seconds"]["total"] = round(time.perf_counter() - t0, 4)
    report["outputs"] = {n: str(outdir / n) for n in ZARR_OUTPUT_NAMES}
    if kept is not None:
        report["outputs"][KEPT_INPUT_ZARR] = str(kept)
    if backup is not None:
        report["previous_outputs_moved_to"] = str(backup)
    (outdir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")

    n, h, w = report["input"]["shape"][:3]
    lo, hi = report["depth_range"]
    print(
        f"{src}: {n} frames of {w}×{h} px, method {result.method} on {result.device}, "
        f"out of core (chunk {args.chunk} px)"
    )
    print(f"depth {lo:.3f} … {hi:.3f} {result.units}, mean confidence {report['mean_confidence']:.2f}")
    print(
        f"{report['seconds']['total']:.2f} s in all; wrote result.zarr (depth, confidence, aif) "
        f"and report.json to {outdir}"
    )
    if kept is not None:
        print(f"the converted input is kept as {kept}")
    if backup is not None:
        print(f"earlier outputs were moved to {backup}")
    return EXIT_OK


# --- eval -----------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from napari_gplws.evaluation.depth_benchmark import (
        evaluate,
        load_eval_dataset,
        synthetic_benchmark,
    )
    from napari_gplws.evaluation.metrics import format_table

    if args.synthetic:
        samples = synthetic_benchmark(n=args.synthetic)
        name = f"synthetic benchmark ({args.synthetic} stacks)"
    else:
        if args.dataset is None:
            from napari_gplws.errors import GplwsError

            raise GplwsError("Give a DATASET folder, or --synthetic N for the built-in benchmark.")
        samples = load_eval_dataset(args.dataset, gt_scale=args.gt_scale)
        name = str(args.dataset)
    methods = args.methods.split(",") if args.methods else None
    bar = _Progress("eval", enabled=not args.quiet)
    try:
        table = evaluate(samples, methods=methods, device=args.device, progress=bar)
    finally:
        bar.close()
    print(f"# {name}\n")
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": name, "metrics": table}, indent=2), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return EXIT_OK


# --- bench ----------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from napari_gplws.evaluation.speed import run_bench

    sizes = None
    if args.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    methods = args.methods.split(",") if args.methods else None
    text = run_bench(sizes=sizes, methods=methods, repeats=args.repeats, device=args.device, echo=print,
                     precision=args.precision, compile=args.compile, tta=args.tta,
                     autofocus=not args.no_autofocus)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
        print(f"wrote {args.markdown}")
    return EXIT_OK


# --- train / export / autofocus ------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    if args.network == "gplws":
        from napari_gplws.training.gplws import train_main
    else:
        from napari_gplws.training.ldse import train_main
    return train_main(list(args.train_args))


def cmd_export(args: argparse.Namespace) -> int:
    from napari_gplws.models.onnx import export_onnx

    path = export_onnx(args.onnx, weights=args.weights)
    print(f"wrote {path} (fused GPLWS-Net; input: normalised (B, 1, N, H, W) float32, output: logits over N)")
    return EXIT_OK


def cmd_autofocus(args: argparse.Namespace) -> int:
    from napari_gplws.cli.autofocus import cli_autofocus

    card = Path(__file__).resolve().parents[1] / "weights" / f"{args.weights}.json"
    if card.is_file():
        status = json.loads(card.read_text(encoding="utf-8")).get("status")
        if status:
            # Users must know when the packaged weights fall short of their stated purpose.
            print(f"note: {args.weights} weights: {status}", file=sys.stderr)
    return cli_autofocus(args)


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from napari_gplws import __version__

    parser = argparse.ArgumentParser(
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
    p.add_argument("--method", default=None, help="gplws (network, default when installed) or sml, tenengrad, glv, lapvar, rdf")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (network only)")
    p.add_argument("--window", type=int, default=9, help="focus-measure window in pixels (classical methods)")
    p.add_argument("--no-refine", action="store_true", help="skip the edge-aware refinement (classical methods)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="network tile size in pixels (default: from memory; 256 out of core)")
    add_gpu_options(p)
    g = p.add_argument_group("out of core (zarr inputs are always processed this way)")
    g.add_argument("--out-of-core", action="store_true",
                   help="process a TIFF chunk by chunk (for stacks larger than memory): it is copied "
                        "to a temporary zarr in OUTDIR first, removed afterwards")
    g.add_argument("--chunk", type=int, default=1024, metavar="PX",
                   help="chunk side over y/x in pixels (default 1024; memory per thread ~ N×PX²)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="dask threads (default: usable cores, at most 8)")
    g.add_argument("--keep-zarr", action="store_true",
                   help=f"with --out-of-core, keep the converted TIFF as OUTDIR/{KEPT_INPUT_ZARR}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_stack_options(p)
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
    p.add_argument("--synthetic", type=int, metavar="N", help="use N stacks of the built-in synthetic benchmark instead")
    p.add_argument("--methods", help="comma-separated methods (default: all)")
    p.add_argument("--gt-scale", type=float, default=1.0, help="frame-index scale of integer ground truth")
    p.add_argument("--device", default="auto")
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
    p.add_argument("--sizes", help="comma-separated NxHxW, e.g. 20x256x256,10x600x800")
    p.add_argument("--methods", help="comma-separated methods (default: sml and gplws when installed)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps for the network (classical runs on the CPU)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gplws`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"gplws: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
