"""``gplws reconstruct``: one stack in, depth/aif/confidence/report out (in memory or out of core).

Earlier outputs in the folder are moved into a ``backup-…`` sub-folder, never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from napari_gplws.cli._common import EXIT_OK, _parse_positions, _Progress, _read_input

# --- reconstruct ----------------------------------------------------------------------------
_NOT_ALIGNED_OUT_OF_CORE = (
    "not measured: out of core the frames are used as they are. If they move (doubled edges "
    "in the all-in-focus image), reconstruct the stack in memory, without --out-of-core"
)
#: The TIFF converted to zarr by ``--out-of-core --keep-zarr``.
KEPT_INPUT_ZARR = "input.zarr"


def _all_output_names() -> tuple[str, ...]:
    """Everything a reconstruct run may leave in OUTDIR; a new run moves all of it aside."""
    from napari_gplws.api import OUTPUT_NAMES

    return OUTPUT_NAMES + ("result.zarr", KEPT_INPUT_ZARR)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from napari_gplws.cli._common import UsageError, check_output_folder

    if args.sample == (args.input is not None):
        raise UsageError("Give either an INPUT stack or --sample, not both (and not neither).")
    check_output_folder(args.output)
    _check_output_is_not_input(args)
    outdir = Path(args.output)
    created = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        return _reconstruct_locked(args, outdir)
    finally:
        if created:  # a refused or failed run leaves no empty folder behind
            with contextlib.suppress(OSError):
                outdir.rmdir()  # only succeeds when the folder is still empty


def _reconstruct_locked(args: argparse.Namespace, outdir: Path) -> int:
    from napari_gplws._shared.files import OutputLock
    from napari_gplws.cli._common import UsageError

    with OutputLock(outdir):  # one writer per output folder; a second run is refused
        if args.input is not None:
            from napari_gplws.io.zarr import is_zarr_path

            if args.out_of_core or is_zarr_path(args.input):
                if getattr(args, "pattern", None):
                    raise UsageError(
                        "--pattern chooses the frames of a folder; it does not apply out of "
                        "core (zarr inputs, --out-of-core TIFFs). Drop --pattern."
                    )
                if getattr(args, "fusion", None) == "pyramid":
                    raise UsageError(
                        "--fusion pyramid works on stacks read into memory; out of core (zarr "
                        "inputs, --out-of-core) the all-in-focus image is made by selection. "
                        "Drop --fusion, or reconstruct a TIFF or folder without --out-of-core."
                    )
                if getattr(args, "align", None) == "on":
                    raise UsageError(
                        "--align on works on stacks read into memory; it is not available out "
                        "of core (zarr inputs, --out-of-core). Drop --align, or reconstruct a "
                        "TIFF or folder without --out-of-core."
                    )
                return _reconstruct_out_of_core(args)
        return _reconstruct_in_memory(args)


def _check_output_is_not_input(args: argparse.Namespace) -> None:
    """Refuse an output folder that is the input folder, or lies inside a zarr input."""
    if args.input is None:
        return
    from napari_gplws.errors import GplwsError
    from napari_gplws.io.zarr import is_zarr_path

    try:
        out, src = Path(args.output).resolve(), Path(args.input).resolve()
    except (OSError, RuntimeError):
        return  # an unreadable input is reported, with its name, when it is read
    if out == src:
        raise GplwsError(
            f"The output folder '{args.output}' is the input '{args.input}'; the results would "
            "be read back as frames next time. Choose another output folder, e.g. "
            f"-o '{Path(args.input).name}-results'."
        )
    if src in out.parents and is_zarr_path(src):
        raise GplwsError(
            f"The output folder '{args.output}' lies inside the zarr store '{args.input}'; "
            "writing there would damage the input. Choose an output folder outside it."
        )


def _reconstruct_in_memory(args: argparse.Namespace) -> int:
    """``gplws reconstruct`` for a stack that fits in memory (the output folder is held)."""
    from napari_gplws._shared.files import backup_outputs
    from napari_gplws.api import OUTPUT_NAMES, reconstruct

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
            align=args.align or "auto", align_model=args.align_model, reference=args.reference,
            crop_common=args.crop_common, fusion=args.fusion or "pyramid",
        )
    finally:
        bar.close()
    result.timings["read"] = t_read

    outdir = Path(args.output)
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
    if result.alignment is not None:
        print(f"alignment: {result.alignment.reason}")
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
    from napari_gplws.cli._common import UsageError

    if any(v != 0 for v in parse_axis_pick(args.axis_pick).values()):
        raise UsageError(
            f"--axis-pick cannot be used out of core ('{src}'); extract the stack first (e.g. in "
            "Fiji), or read it in memory without --out-of-core."
        )
    if args.chunk < 16:
        raise UsageError(f"--chunk must be at least 16 pixels; got {args.chunk}.")
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
        print("note: --precision and --compile do not apply out of core (the default precision "
              "is used: bf16 on CPUs and GPUs that have it, fp32 elsewhere)", file=sys.stderr)
    if network and args.tta is not None:
        raise UsageError("--tta applies to in-memory stacks only; out of core the network runs "
                         "its default views. Drop --tta.")

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
    align_mode = getattr(args, "align", None) or "auto"
    report["alignment"] = {
        "mode": align_mode,
        "aligned": False,
        "reason": "alignment is off" if align_mode == "off" else _NOT_ALIGNED_OUT_OF_CORE,
    }
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
    if align_mode != "off":
        print(f"alignment: {_NOT_ALIGNED_OUT_OF_CORE}")
    print(
        f"{report['seconds']['total']:.2f} s in all; wrote result.zarr (depth, confidence, aif) "
        f"and report.json to {outdir}"
    )
    if kept is not None:
        print(f"the converted input is kept as {kept}")
    if backup is not None:
        print(f"earlier outputs were moved to {backup}")
    return EXIT_OK
