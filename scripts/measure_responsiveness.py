"""How long does the napari GUI freeze while the Depth from focus widget reconstructs a big stack?

    xvfb-run -a .venv/bin/python scripts/measure_responsiveness.py [--size 1024] [--frames 20]
        [--method sml|gplws|...] [--random-weights] [--json out.json]

A real viewer opens (under Xvfb when headless) with a 20×1024×1024 uint8 stack; the
**Depth from focus** dock is opened through the plugin manifest and its Run button clicked, as a
person would. A ``QTimer`` ticking every 10 ms records when the Qt event loop actually gets to
run it; the longest gap between two ticks is the longest stall a user would feel. The run is
split into two phases:

* **compute** — from the click until the first result layer is inserted (the worker thread runs
  the core; the GUI thread only draws the progress bar);
* **layers** — from the first inserted layer until 0.5 s after the widget reports it is done
  (napari builds the layers' visuals and draws them on the GUI thread).

It also reports whether the worker thread slows the computation down: the same core call
timed on the main thread with no GUI activity, on a plain ``threading.Thread``, and inside the
widget (the worker's own timing). ``--random-weights`` writes a randomly initialised GPLWS-Net
to a temporary folder and points the weights registry at it, so the network path can be timed
before trained weights exist (the depth it gives is meaningless; only the timings count).

Prints a Markdown table (paste-able into docs) and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TICK_MS = 10
TARGET_MS = 200.0


def make_stack(n_frames: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A cheap focus sweep: a random texture blurred more the farther a frame is from mid-stack."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    tex = ndi.gaussian_filter(rng.random((size, size), dtype=np.float32), 1.0)
    tilt = np.linspace(-1.0, 1.0, size, dtype=np.float32)[None, :]  # best focus varies across x
    frames = np.empty((n_frames, size, size), np.uint8)
    for k in range(n_frames):
        t = (k / max(n_frames - 1, 1)) * 2 - 1
        sharp = ndi.gaussian_filter(tex, 0.5 + 3.0 * abs(t))
        blur = ndi.gaussian_filter(tex, 0.5 + 3.0 * abs(t - 0.5))
        w = np.clip(np.abs(tilt - t), 0, 1)
        img = (1 - w) * sharp + w * blur
        lo, hi = float(img.min()), float(img.max())
        frames[k] = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return frames, np.arange(n_frames, dtype=np.float64) * 1.5


def use_random_weights() -> None:
    """Point the weights registry at a temporary, randomly initialised GPLWS-Net (timing only)."""
    from napari_gplws.models import registry
    from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet

    folder = Path(tempfile.mkdtemp(prefix="gplws-random-"))
    registry.save_gplws(
        GPLWSNet(GPLWSConfig()).eval(), folder / f"{registry.DEFAULT_GPLWS}.safetensors", {}
    )
    registry.WEIGHTS_DIR = folder


def core_seconds(frames: np.ndarray, focus: np.ndarray, method: str, in_thread: bool) -> float:
    from napari_gplws import reconstruct

    out: dict[str, float] = {}

    def job() -> None:
        t = time.perf_counter()
        reconstruct(frames, focus_positions=focus, method=method, progress=lambda d, n: None)
        out["s"] = time.perf_counter() - t

    if in_thread:
        th = threading.Thread(target=job)
        th.start()
        th.join()
    else:
        job()
    return out["s"]


def gaps_ms(ticks: list[float], start: float, end: float) -> np.ndarray:
    t = np.asarray([start] + [x for x in ticks if start < x <= end] + [end])
    return np.diff(t) * 1000.0


def measure(args: argparse.Namespace) -> dict:
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_gplws.api import default_method

    method = args.method or default_method()
    frames, focus = make_stack(args.frames, args.size)
    small = frames[:, :256, :256].copy()

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    app = QApplication.instance()
    _, widget = viewer.window.add_plugin_dock_widget("napari-gplws", "Depth from focus")
    combo = widget.method_combo
    i = combo.findData(method)
    if i < 0 or not combo.model().item(i).isEnabled():
        raise SystemExit(
            f"Method {method!r} is not available in the widget (no weights? try --random-weights)."
        )
    combo.setCurrentIndex(i)

    def run_once(name: str, data: np.ndarray) -> dict:
        layer = viewer.add_image(
            data,
            name=name,
            scale=(1.5, 0.5, 0.5),
            metadata={"focus_um": focus.tolist(), "pixel_size_um": 0.5, "units": "µm"},
        )
        widget.stack_combo.setCurrentIndex(widget.stack_combo.findText(layer.name))
        ticks: list[float] = []
        marks: dict[str, float] = {}
        timer = QTimer()
        timer.setInterval(TICK_MS)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

        def first_insert(event=None) -> None:
            marks.setdefault("inserted", time.perf_counter())

        viewer.layers.events.inserted.connect(first_insert)
        outcome: list[str] = []
        loop = QEventLoop()

        def finished(what: str) -> None:
            outcome.append(what)
            marks["done"] = time.perf_counter()
            QTimer.singleShot(500, loop.quit)

        widget.finished.connect(finished)
        timer.start()
        app.processEvents()
        marks["click"] = time.perf_counter()
        widget.run_button.click()
        loop.exec_()
        timer.stop()
        widget.finished.disconnect(finished)
        viewer.layers.events.inserted.disconnect(first_insert)
        end = time.perf_counter()
        if outcome != ["done"]:
            raise SystemExit(f"The run ended with {outcome}: {widget.status_label.text()}")
        ins = marks.get("inserted", marks["done"])
        compute = gaps_ms(ticks, marks["click"], ins)
        layers = gaps_ms(ticks, ins, end)
        rec = widget.result.reconstruction
        return {
            "stack": list(data.shape),
            "method": rec.method,
            "device": rec.device,
            "worker_seconds": float(rec.timings["total"]),
            "click_to_done_s": marks["done"] - marks["click"],
            "compute_max_stall_ms": float(compute.max()),
            "compute_p99_ms": float(np.percentile(compute, 99)),
            "layers_max_stall_ms": float(layers.max()),
            "ticks_per_s_during_compute": float(len(compute) / max(ins - marks["click"], 1e-9)),
        }

    run_once("warm-up", small)  # imports, model load, first-call allocations
    widget.activity_progress = True  # napari's activity progress bar (and its animation)
    result = {"activity": run_once("responsiveness", frames)}
    widget.activity_progress = False  # progress in the dock only: no napari activity animation
    result["dock_only"] = run_once("responsiveness (dock progress only)", frames)
    viewer.close()
    result["core_main_thread_s"] = core_seconds(frames, focus, method, in_thread=False)
    result["core_plain_thread_s"] = core_seconds(frames, focus, method, in_thread=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--method", default=None, help="default: the widget's default method")
    p.add_argument(
        "--random-weights", action="store_true", help="time GPLWS-Net with random weights"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.random_weights:
        use_random_weights()
        args.method = args.method or "gplws"
    r = measure(args)
    a, d = r["activity"], r["dock_only"]
    n, h, w = a["stack"]
    print(f"\nDepth from focus widget, {n}×{h}×{w} uint8, method {a['method']} on {a['device']}, "
          f"{os.cpu_count()} CPU cores\n")  # fmt: skip
    from napari_gplws.widgets._worker import software_opengl

    print(
        f"OpenGL is {'a software rasteriser' if software_opengl() else 'hardware'}: the widget's "
        f"default is {'dock progress only' if software_opengl() else 'napari activity progress'}.\n"
    )
    print("| measure | napari activity progress | dock progress only |")
    print("|---|---|---|")
    rows = [
        ("longest GUI stall while computing", "compute_max_stall_ms", "{:.0f} ms"),
        ("99th percentile gap while computing", "compute_p99_ms", "{:.0f} ms"),
        ("longest GUI stall while adding layers", "layers_max_stall_ms", "{:.0f} ms"),
        (
            f"timer ticks per second while computing (ideal {1000 // TICK_MS})",
            "ticks_per_s_during_compute",
            "{:.0f}",
        ),
        ("click to done", "click_to_done_s", "{:.2f} s"),
        ("core call in the widget's worker", "worker_seconds", "{:.2f} s"),
    ]
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(a[key])} | {fmt.format(d[key])} |")
    print(f"| same call on the main thread, no GUI | {r['core_main_thread_s']:.2f} s | |")
    print(f"| same call on a plain thread, no GUI | {r['core_plain_thread_s']:.2f} s | |")
    for name, x in (("activity progress", a), ("dock progress only", d)):
        worst = max(x["compute_max_stall_ms"], x["layers_max_stall_ms"])
        verdict = "met" if worst <= TARGET_MS else "NOT met"
        print(f"\n{name}: longest stall {worst:.0f} ms; target {TARGET_MS:.0f} ms {verdict}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
