"""``gplws bench``: speed and peak memory of each method on the standard stack sizes.

Each (method, size) case runs in a fresh Python process so that its peak resident memory
(``ru_maxrss``) belongs to that case alone; inside it, the stack is built first, then the
method runs ``repeats`` times and the median is reported. Ratios are taken against the
default classical engine (``sml``) measured in the same ``gplws bench`` run.

The input stacks are synthetic uint8 stacks: small sizes are rendered directly, large ones
tile a rendered 512×512 stack (content does not change the cost of these methods).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

DEFAULT_SIZES: tuple[tuple[int, int, int], ...] = (
    (20, 256, 256),
    (10, 600, 800),
    (15, 540, 960),
    (30, 2048, 2048),
)
BASELINE = "sml"
#: Extra rows: the classical engine with frame alignment forced on (the whole alignment:
#: estimate, refine, resample, residual check) and off (no motion check at all), next to
#: the default (``align="auto"``, which on these still stacks only checks for motion).
ALIGN_VARIANTS = {"sml, align on": ("sml", "on"), "sml, align off": ("sml", "off")}


def make_bench_stack(n: int, h: int, w: int, seed: int = 0):
    """A uint8 synthetic :class:`FocalStack` of ``n`` frames of ``h × w`` pixels."""
    import numpy as np

    from napari_gplws.sim.focus_stacks import synthetic_stack
    from napari_gplws.stack import FocalStack

    th, tw = min(h, 512), min(w, 512)
    base = synthetic_stack(family="waves", n_frames=n, shape=(th, tw), bit_depth=8, seed=seed).stack
    reps = (1, -(-h // th), -(-w // tw))
    frames = np.ascontiguousarray(np.tile(base.frames, reps)[:, :h, :w])
    return FocalStack(frames, focus_um=base.focus_um, pixel_size_um=1.0, source=f"bench {n}x{h}x{w}")


def _case(
    method: str, n: int, h: int, w: int, repeats: int, device: str,
    precision: str = "auto", compile: bool = False, tta: int | None = None,
) -> dict:
    """Run one case in this process and return its figures (called in a child process).

    On a GPU one untimed warm-up run comes first (CUDA context, cuDNN autotuning and
    ``torch.compile`` would otherwise land in the first timing), and peak GPU memory is
    reported too.
    """
    import resource
    import statistics
    import time

    import torch

    from napari_gplws.api import reconstruct

    stack = make_bench_stack(n, h, w)
    label = method
    method, align = ALIGN_VARIANTS.get(method, (method, "auto"))
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    network = method == "gplws"
    opts = {"precision": precision, "compile": compile, "tta": tta} if network else {}
    gpu = network and device.startswith("cuda")
    if gpu:
        reconstruct(stack, method=method, device=device, **opts)  # warm-up, untimed
        torch.cuda.reset_peak_memory_stats()
    times, align_times = [], []
    used = {}
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        r = reconstruct(stack, method=method, device=device, align=align, **opts)
        times.append(time.perf_counter() - t0)
        align_times.append(float(r.timings.get("align", 0.0)))
        used = {"device": r.device, **{k: v for k, v in r.parameters.items() if k in ("precision", "tile_batch", "compiled")}}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = {"gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20, "gpu": torch.cuda.get_device_name()} if gpu else {}
    return {
        **used,
        **extra,
        "method": label,
        "size": f"{n}×{h}×{w}",
        "median_s": statistics.median(times),
        "align_s": statistics.median(align_times),
        "min_s": min(times),
        "peak_rss_mib": peak,
        "rss_before_mib": rss_input,
        "threads": torch.get_num_threads(),
    }


def _run_case_subprocess(
    method: str, size: Sequence[int], repeats: int, device: str, precision: str = "auto", compile: bool = False,
    tta: int | None = None, src: str | None = None,
) -> dict:
    code = (
        "import json,sys; from napari_gplws.evaluation.speed import _case; "
        f"print('BENCH'+json.dumps(_case({method!r}, {size[0]}, {size[1]}, {size[2]}, {repeats}, {device!r}, "
        f"{precision!r}, {bool(compile)!r}, {tta!r})))"
    )
    # Sleeping OpenMP waits, as in the product (napari_gplws.dff.network sets the same when it
    # loads first); the child imports PyTorch before the network module.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH"):
            return json.loads(line[5:])
    return {"method": method, "size": "×".join(map(str, size)), "error": proc.stderr.strip()[-400:]}


def available_methods() -> list[str]:
    from napari_gplws.dff.methods import default_method

    return [BASELINE] + (["gplws"] if default_method() == "gplws" else [])


def run_bench(
    sizes: Sequence[Sequence[int]] | None = None,
    methods: Sequence[str] | None = None,
    repeats: int = 3,
    device: str = "cpu",
    echo: Callable[[str], None] = print,
    precision: str = "auto",
    compile: bool = False,
    tta: int | None = None,
    autofocus: bool = True,
    before_src: str | None = None,
    align_rows: bool = True,
) -> str:
    """Benchmark ``methods`` on ``sizes``; print rows as they finish and return a Markdown table.

    ``device``, ``precision``, ``compile`` and ``tta`` apply to the network; the classical baseline
    always runs on the CPU. The ``stacks/s`` column is ``1 / median``. With ``autofocus`` a
    second table gives LDSE-NET's speed (:func:`autofocus_table`). With ``before_src`` (the
    ``src`` folder of another copy of napari-gplws, e.g. an earlier release unpacked with
    ``git archive``) the network also runs from that copy, as ``gplws (before)``, in the same
    run, so before/after ratios come from one sitting. Every method runs with the default
    ``align="auto"`` (on these still stacks: the motion check alone); ``align_rows`` adds the
    classical engine with alignment forced on and off (:data:`ALIGN_VARIANTS`).
    """
    sizes = list(sizes or DEFAULT_SIZES)
    methods = list(methods or available_methods())
    if BASELINE not in methods:
        methods.insert(0, BASELINE)
    gpu_note = f", precision {precision}{', torch.compile' if compile else ''}" if device != "cpu" else ""
    if tta is not None:
        gpu_note += f", network TTA ×{tta}"
    echo(
        f"# gplws bench — {os.cpu_count()} CPUs, device {device}{gpu_note}, median of {repeats} "
        "(each case in its own process; peak RSS includes the input stack and the Python runtime)"
    )
    header = (
        "| method | stack (N×H×W) | median s | min s | stacks/s | peak RSS MiB | RSS before run MiB "
        "| threads | device | × sml | of which alignment s |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    echo(header)
    echo(lines[1])
    runs = [(m, None) for m in methods]
    if align_rows:
        runs[1:1] = [(m, None) for m in ALIGN_VARIANTS]
    if before_src and "gplws" in methods:
        runs.insert(runs.index(("gplws", None)), ("gplws", before_src))
    for size in sizes:
        base = None
        for method, src in runs:
            # The 30×2048×2048 case is slow for repeats; the median of fewer runs is enough there.
            reps = repeats if size[1] * size[2] < 2048 * 2048 else min(repeats, 2)
            row = _run_case_subprocess(method, size, reps, device, precision, compile, tta, src)
            if src:
                row["method"] = method = "gplws (before)"
            else:
                method = row.get("method", method)
            if "error" in row:
                line = f"| {method} | {row['size']} | error: {row['error'].splitlines()[-1] if row['error'] else '?'} |||||||| "
            else:
                if method == BASELINE:
                    base = row["median_s"]
                ratio = f"{row['median_s'] / base:.2f}" if base else "–"
                where = row.get("device", "cpu")
                if "gpu" in row:
                    where = f"{row['gpu']} ({row.get('precision')}, {row['gpu_peak_mib']:.0f} MiB GPU)"
                line = (
                    f"| {method} | {row['size']} | {row['median_s']:.3f} | {row['min_s']:.3f} | "
                    f"{1.0 / row['median_s']:.2f} | {row['peak_rss_mib']:.0f} | {row['rss_before_mib']:.0f} | "
                    f"{row['threads']} | {where} | {ratio} | {row.get('align_s', 0.0):.3f} |"
                )
            lines.append(line)
            echo(line)
    text = "\n".join(lines) + "\n"
    if autofocus:
        echo("")
        text += "\n" + autofocus_table(device=device, repeats=repeats, echo=echo)
    return text


#: Speed targets of LDSE-NET autofocus on a CPU: ms per 224×224 tile at batch 64, and
#: seconds for the 3×3 map of a 2592×1944 frame.
AUTOFOCUS_TARGETS = {"ms_per_tile": 10.0, "full_map_s": 1.5}


def autofocus_table(
    device: str = "cpu", repeats: int = 3, echo: Callable[[str], None] = print
) -> str:
    """LDSE-NET speed (:func:`napari_gplws.evaluation.defocus_speed.benchmark`, in this process) as a Markdown table:
    ms per 224×224 tile at batch 64, seconds for the 3×3 map of a 2592×1944 frame, and the
    ratio to the classical |z|-only focus measure on the same tiles."""
    from napari_gplws.evaluation.defocus_speed import benchmark

    r = benchmark(device=device, repeats=repeats)
    ms, full, base = r["ms_per_tile_batch64"], r["full_map_s"], r["classical_ms_per_tile"]
    header = (
        "| autofocus | ms per 224×224 tile (batch 64) | target | s per 3×3 map "
        f"({r['frame']}, {r['tiles']} tiles) | target | classical \\|z\\| ms per tile | × classical "
        "| threads | device |"
    )
    row = (
        f"| LDSE-NET | {ms:.2f} | ≤ {AUTOFOCUS_TARGETS['ms_per_tile']:g} | {full:.3f} | "
        f"≤ {AUTOFOCUS_TARGETS['full_map_s']:g} | {base:.2f} | {ms / base:.2f} | {r['threads']} | "
        f"{r['device']} |"
    )
    lines = [header, "|---|---:|---|---:|---|---:|---:|---:|---|", row]
    for ln in lines:
        echo(ln)
    return "\n".join(lines) + "\n"
