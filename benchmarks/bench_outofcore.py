"""Benchmark of the out-of-core (zarr + dask) classical reconstruction: peak memory and speed.

Writes a synthetic ``N×H×W`` uint8 zarr stack (tiles of a few synthetic stacks, flipped so
neighbouring tiles differ; making the full field physically would take minutes per tile),
then reconstructs it in a *child process* and reports the child's peak resident memory
(``ru_maxrss``), so the numbers cover only the reconstruction. It also checks the
out-of-core result against the in-memory engine on a crop (the crop saved as its own zarr).

Usage::

    python benchmarks/bench_outofcore.py --frames 30 --size 8192 --chunk 1024 --workdir /tmp/ooc
    python benchmarks/bench_outofcore.py --frames 30 --size 2048   # a quick run

Prints a Markdown table you can paste into docs/batch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_zarr(path: Path, n: int, size: int, tile: int, chunk: int, n_base: int = 4) -> float:
    """Write an ``(n, size, size)`` uint8 zarr stack; return seconds taken."""
    import zarr

    from napari_gplws.sim.focus_stacks import synthetic_stack

    t0 = time.perf_counter()
    focus = np.linspace(0.0, 2.0 * (n - 1), n)
    bases = [
        synthetic_stack(family="waves", n_frames=n, shape=(tile, tile), focus_um=focus, seed=s).stack.frames
        for s in range(n_base)
    ]
    if path.exists():
        shutil.rmtree(path)
    z = zarr.open_array(str(path), mode="w", shape=(n, size, size), chunks=(1, chunk, chunk), dtype="uint8")
    z.attrs.update(focus_um=focus.tolist(), pixel_size_um=0.5)
    k = 0
    for y0 in range(0, size, chunk):  # whole zarr chunks at a time: no read-modify-write
        for x0 in range(0, size, chunk):
            h0, w0 = min(chunk, size - y0), min(chunk, size - x0)
            block = np.empty((n, h0, w0), np.uint8)
            for y in range(0, h0, tile):
                for x in range(0, w0, tile):
                    b = bases[k % n_base]
                    if (k // n_base) % 2:
                        b = b[:, ::-1]
                    if (k // (2 * n_base)) % 2:
                        b = b[:, :, ::-1]
                    h, w = min(tile, h0 - y), min(tile, w0 - x)
                    block[:, y : y + h, x : x + w] = b[:, :h, :w]
                    k += 1
            z[:, y0 : y0 + h0, x0 : x0 + w0] = block
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """Run the out-of-core reconstruction and print its timings as JSON."""
    from napari_gplws.dff.outofcore_classical import reconstruct_zarr

    r = reconstruct_zarr(args.src, args.out, chunk=args.chunk, threads=args.threads, measure=args.measure)
    print(json.dumps(r.timings))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", type=int, default=2048, help="H = W in pixels")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=512, help="side of the synthetic tiles")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measure", default="sml")
    ap.add_argument("--crop", type=int, default=1024, help="side of the in-memory comparison crop (0: skip)")
    ap.add_argument("--workdir", default="/tmp/gplws-ooc-bench")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src, out = work / "stack.zarr", work / "out.zarr"
    t_make = make_zarr(src, args.frames, args.size, args.tile, args.chunk)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", "--src", str(src), "--out", str(out), "--chunk", str(args.chunk),
         "--threads", str(args.threads), "--measure", args.measure],
        check=True, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30  # Linux: KiB
    timings = json.loads(proc.stdout.strip().splitlines()[-1])
    stack_gib = args.frames * args.size**2 / 2**30

    diff = "skipped"
    if args.crop:
        import zarr

        from napari_gplws.dff.classical import depth_from_focus
        from napari_gplws.dff.outofcore_classical import reconstruct_zarr
        from napari_gplws.stack import FocalStack

        zs = zarr.open_array(str(src), mode="r")
        c = min(args.crop, args.size)
        frames = np.asarray(zs[:, :c, :c])
        focus = np.asarray(zs.attrs["focus_um"])
        crop = zarr.open_array(str(work / "crop.zarr"), mode="w", shape=frames.shape,
                               chunks=(1, 256, 256), dtype=frames.dtype)
        crop[...] = frames
        crop.attrs.update(focus_um=focus.tolist())
        ref = depth_from_focus(FocalStack(frames, focus_um=focus), measure=args.measure)
        r = reconstruct_zarr(work / "crop.zarr", work / "crop-out.zarr", chunk=256, measure=args.measure)
        o = r.open()
        d = float(np.abs(o["depth"].compute() - ref.depth).max())
        a = float(np.mean(o["aif"].compute() != ref.aif))
        diff = f"max |Δdepth| {d:.2e} µm, AiF pixels differing {a:.1e} ({c}×{c} crop, chunk 256)"

    print()
    print("| stack (N×H×W, uint8) | stack size | chunk | threads | peak RSS | focus pass | stats | refine+write | total | Mpx/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    mpx = args.size**2 / 1e6 / timings["total"]
    print(
        f"| {args.frames}×{args.size}×{args.size} | {stack_gib:.2f} GiB | {args.chunk} | {args.threads} | "
        f"{peak_gib:.2f} GiB | {timings['focus']:.1f} s | {timings['stats']:.1f} s | {timings['write']:.1f} s | "
        f"{timings['total']:.1f} s | {mpx:.2f} |"
    )
    print()
    print(f"measure {args.measure}; synthetic stack written in {t_make:.1f} s; child wall {wall:.1f} s; "
          f"{os.cpu_count()} CPUs")
    print(f"in-memory check: {diff}")


if __name__ == "__main__":
    main()
