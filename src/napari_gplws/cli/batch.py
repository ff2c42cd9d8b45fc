"""Argument wiring of ``gplws batch`` (hooked into :mod:`napari_gplws.cli.main`).

:func:`add_batch_arguments` declares the options on an argparse (sub)parser and
:func:`cmd_batch` runs :func:`napari_gplws.batching.run.batch` with a tqdm bar, prints the
dashboard address and a one-line-per-failure summary, and returns the exit code:
0 when every stack succeeded (or was already done), 1 when any stack failed.
Zarr / OME-Zarr inputs are reconstructed out of core (``<stack>/result.zarr`` +
``report.json``; ``--chunk`` sets the chunk size). Errors about the batch as a whole (no inputs, unreachable scheduler) are raised as
:class:`~napari_gplws.errors.GplwsError` for :func:`napari_gplws.cli.main.main` to print.
"""

from __future__ import annotations

import argparse
import sys

from napari_gplws.cli._common import (
    CHUNK,
    FOCUS_START,
    FOCUS_STEP,
    PIXEL_SIZE,
    TILE_SIZE,
    WINDOW,
    Limits,
    add_align_options,
    add_gpu_options,
    add_number,
    add_pattern_option,
    check_device_text,
    check_method_text,
    check_output_folder,
)

EXIT_OK, EXIT_SOME_FAILED = 0, 1
#: Local cluster size: workers, and threads per worker.
WORKERS = Limits(int, 1, 256)
THREADS_PER_WORKER = Limits(int, 1, 256)


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gplws batch`` arguments to ``p``."""
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="stack paths (files, folders of frames, zarr / OME-Zarr stores), glob patterns "
             "(quoted) or .txt files listing one path per line",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder: one sub-folder per stack, manifest.json, summary.csv/.json")
    p.add_argument("--method", default=None, type=check_method_text,
                   help="gplws, sml, tenengrad, glv, lapvar or rdf (default: gplws if installed, else sml)")
    p.add_argument("--scheduler", default="local",
                   help="'local' (start a LocalCluster, default) or a scheduler address, e.g. tcp://host:8786")
    add_number(p, "--workers", limits=WORKERS, default=2, help="local cluster workers (default 2)")
    add_number(p, "--threads-per-worker", limits=THREADS_PER_WORKER, default=1,
               help="threads per local worker (default 1)")
    p.add_argument("--threads", action="store_true",
                   help="local workers as threads in this process instead of processes")
    p.add_argument("--device", default="auto", type=check_device_text,
                   help="auto, cpu, cuda, cuda:N or mps (network only; checked once before the "
                        "local cluster starts)")
    add_number(p, "--window", limits=WINDOW, default=9, help="focus-measure window in pixels (classical)")
    p.add_argument("--no-refine", action="store_true", help="skip the depth refinement (classical)")
    add_number(p, "--tile-size", limits=TILE_SIZE, default=None, help="network tile size in pixels")
    add_gpu_options(p)
    add_number(p, "--focus-step", limits=FOCUS_STEP, metavar="UM", help="focus step between frames in µm")
    add_number(p, "--focus-start", limits=FOCUS_START, metavar="UM", help="focus position of frame 0 in µm")
    add_number(p, "--pixel-size", limits=PIXEL_SIZE, metavar="UM", help="lateral pixel size in µm")
    add_pattern_option(p)
    add_number(p, "--chunk", limits=CHUNK, default=1024, metavar="PX",
               help="zarr stacks (reconstructed out of core): chunk side over y/x in pixels "
                    "(default 1024)")
    p.add_argument("--force", action="store_true", help="redo every stack, ignoring the manifest")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_align_options(p)


def cmd_batch(args: argparse.Namespace) -> int:
    """Run ``gplws batch``; return 0 when no stack failed, 1 otherwise."""
    from napari_gplws.batching.run import batch

    _check_batch_arguments(args)

    bar = None
    if not getattr(args, "quiet", False):
        from tqdm import tqdm

        bar = tqdm(total=0, desc="batch", unit="stack", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        summary = batch(
            args.inputs, args.output, method=args.method, scheduler=args.scheduler,
            workers=args.workers, threads_per_worker=args.threads_per_worker, progress=progress,
            processes=not args.threads, device=args.device, window=args.window,
            refine=not args.no_refine, tile_size=args.tile_size,
            precision=args.precision, compile=args.compile, tta=args.tta,
            read_options={"focus_step_um": args.focus_step, "focus_start_um": args.focus_start,
                          "pixel_size_um": args.pixel_size, "pattern": args.pattern},
            force=args.force, log=lambda msg: print(msg, file=sys.stderr, flush=True),
            chunk=args.chunk, align=args.align or "auto", align_model=args.align_model,
            reference=args.reference, crop_common=args.crop_common, fusion=args.fusion or "pyramid",
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{len(summary.records)} stacks: {summary.n_done} done, {summary.n_skipped} already done "
        f"(skipped), {summary.n_failed} failed; {summary.seconds:.1f} s; "
        f"summary in {summary.outdir / 'summary.csv'}"
    )
    for r in summary.failed:
        print(f"FAILED {r.name} ({r.input}): {r.error}", file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


def _check_batch_arguments(args: argparse.Namespace) -> None:
    """Checks made once, before any cluster starts: the output folder, and a device the
    local workers would all fail to find.

    Raises
    ------
    GplwsError
        The output folder is a file or not writable; the device is not available here.
    """
    local = str(args.scheduler).strip().lower() == "local"
    check_output_folder(args.output)
    if local and args.device not in ("auto", "cpu"):
        # Checked here, once: otherwise every worker fails with the same error, one stack at a time.
        from napari_gplws._shared.device import resolve_device

        resolve_device(args.device)
