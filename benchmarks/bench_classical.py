"""Timing and memory of the classical depth-from-focus engine (:mod:`napari_gplws.dff.classical`).

Standalone script: renders synthetic uint8 stacks (a textured, tilted plane), runs
:func:`~napari_gplws.dff.classical.depth_from_focus` on them and prints a Markdown table of
seconds per stage, throughput and peak memory that can be pasted into the docs. Each
case runs in a fresh subprocess so that its peak RSS is its own.

Usage::

    PYTHONPATH=src python benchmarks/bench_classical.py                 # both default sizes, sml
    PYTHONPATH=src python benchmarks/bench_classical.py --measures all --threads 1 2 --repeat 3
    PYTHONPATH=src python benchmarks/bench_classical.py --sizes 10x600x800 --no-subprocess

Timings on a shared machine are noisy: the table reports the best of ``--repeat`` runs.

It measures speed and memory only; accuracy is checked by the tests and ``gplws eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

DEFAULT_SIZES = ("10x600x800", "30x2048x2048")
TARGETS_S = {"10x600x800": 0.3, "30x2048x2048": 6.0}
TARGET_RSS_GIB = {"30x2048x2048": 1.5}


def parse_size(text: str) -> tuple[int, int, int]:
    """``"NxHxW"`` -> ``(N, H, W)``."""
    n, h, w = (int(v) for v in text.lower().split("x"))
    return n, h, w


def synthetic_uint8_stack(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``(n, h, w)`` uint8 frames of a random texture on a plane tilted across ``x``.

    Frames are made one at a time from four pre-blurred copies of the texture (so that
    generating the stack needs little more memory than the stack itself): the pixel's
    blur grows with the distance between its depth (linear in ``x``) and the frame.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    tex = rng.random((h, w), dtype=np.float32)
    ndi.gaussian_filter(tex, 1.0, output=tex)
    tex -= tex.min()
    tex *= 1.0 / tex.max()
    sigmas = (0.0, 1.0, 2.0, 4.0)
    levels = [tex] + [ndi.gaussian_filter(tex, s) for s in sigmas[1:]]
    depth = np.linspace(0, n - 1, w, dtype=np.float32)[None, :]
    frames = np.empty((n, h, w), np.uint8)
    for k in range(n):
        lvl = np.clip(np.abs(depth - k), 0, len(levels) - 1)  # (1, w) level per column
        j0 = np.minimum(lvl.astype(int), len(levels) - 2)
        frac = lvl - j0
        img = np.empty((h, w), np.float32)
        for j in range(len(levels) - 1):
            cols = j0[0] == j
            if cols.any():
                img[:, cols] = (1 - frac[0, cols]) * levels[j][:, cols] + frac[0, cols] * levels[
                    j + 1
                ][:, cols]
        img += rng.normal(0, 0.01, size=(h, w)).astype(np.float32)
        frames[k] = np.clip(20 + 210 * img, 0, 255).astype(np.uint8)
    return frames


def run_case(size: str, measure: str, threads: int, repeat: int, refine: bool) -> dict:
    """Time one case in this process; return a dict of results."""
    from napari_gplws.dff.classical import depth_from_focus
    from napari_gplws.stack import FocalStack

    n, h, w = parse_size(size)
    frames = synthetic_uint8_stack(n, h, w)
    stack = FocalStack(frames, focus_um=np.arange(n, dtype=float) * 2.0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    best = None
    for _ in range(repeat):
        cpu0 = time.process_time()
        res = depth_from_focus(stack, measure=measure, threads=threads, refine=refine)
        cpu = time.process_time() - cpu0
        if best is None or res.timings["total"] < best["total"]:
            best = dict(res.timings, cpu=cpu)
        del res
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # Allocations of the run alone (numpy reports its buffers to tracemalloc).
    tracemalloc.start()
    res = depth_from_focus(stack, measure=measure, threads=threads, refine=refine)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**30
    tracemalloc.stop()
    return dict(
        size=size,
        measure=measure,
        threads=threads,
        refine=refine,
        timings=best,
        mpix_per_s=n * h * w / 1e6 / best["total"],
        input_gib=frames.nbytes / 2**30,
        rss_before_gib=rss_before,
        rss_peak_gib=rss_peak,
        alloc_peak_gib=traced_peak,
        depth_ok=bool(np.isfinite(res.depth).all()),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes", nargs="+", default=list(DEFAULT_SIZES), help="NxHxW, e.g. 30x2048x2048"
    )
    p.add_argument("--measures", nargs="+", default=["sml"], help="measure names or 'all'")
    p.add_argument("--threads", nargs="+", type=int, default=[0], help="0 = engine default")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-refine", action="store_true", help="skip the refinement stage")
    p.add_argument("--no-subprocess", action="store_true", help="run cases in this process")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        size, measure, threads = args._child.split(",")
        out = run_case(size, measure, int(threads), args.repeat, not args.no_refine)
        print(json.dumps(out))
        return 0

    from napari_gplws.dff.classical import FOCUS_MEASURES, default_threads

    measures = sorted(FOCUS_MEASURES) if args.measures == ["all"] else args.measures
    rows = []
    for size in args.sizes:
        for measure in measures:
            for t in args.threads:
                threads = t or default_threads()
                if args.no_subprocess:
                    r = run_case(size, measure, threads, args.repeat, not args.no_refine)
                else:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--_child",
                        f"{size},{measure},{threads}",
                        "--repeat",
                        str(args.repeat),
                    ]
                    if args.no_refine:
                        cmd.append("--no-refine")
                    proc = subprocess.run(
                        cmd, capture_output=True, text=True, env=os.environ.copy()
                    )
                    if proc.returncode != 0:
                        print(proc.stderr, file=sys.stderr)
                        return proc.returncode
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(_row(r), flush=True) if len(rows) > 1 else print(
                    _header() + "\n" + _row(r), flush=True
                )
    load = os.getloadavg()[0]
    print(
        f"\ncpus usable: {default_threads()}; best of {args.repeat}; "
        f"load average {load:.1f} at the end. cpu s = process CPU time of the run (all "
        "threads); wall times on a shared machine are noisy."
    )
    return 0


_COLUMNS = (
    "stack", "measure", "threads", "focus s", "fit s", "refine s", "aif s", "total s",
    "target s", "cpu s", "Mpx/s", "peak RSS GiB", "run alloc GiB",
)  # fmt: skip


def _header() -> str:
    return "| " + " | ".join(_COLUMNS) + " |\n|" + "---|" * len(_COLUMNS)


def _row(r: dict) -> str:
    t = r["timings"]
    target = TARGETS_S.get(r["size"], "–")
    cells = (
        f"{r['size']} uint8", r["measure"], r["threads"], f"{t['focus']:.3f}", f"{t['fit']:.3f}",
        f"{t['refine']:.3f}", f"{t['aif']:.3f}", f"**{t['total']:.3f}**", target,
        f"{t['cpu']:.2f}", f"{r['mpix_per_s']:.0f}", f"{r['rss_peak_gib']:.2f}",
        f"{r['alloc_peak_gib']:.2f}",
    )  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
