"""Two sets of GPLWS-Net weights side by side on the real focus stacks.

Simulated benchmarks say how accurate a network is; only real stacks show whether its depth
maps stay clean where a microscopist expects plateaus (the plate around an engraving, the
flat board between components). For each real stack in ``../shared/data/real`` (the
10-frame intaglio microscope stack and the 7-frame PCB macro stack, which moves and is
aligned first) this runs the default reconstruction with each weights file and reports:

* **roughness**: the median absolute Laplacian of the depth map (frame units per pixel²),
  over the pixels whose confidence is at least the median: small on clean plateaus and
  smooth slopes, large where the map is speckled;
* **agreement**: the median absolute difference between the two depth maps (frames);
* seconds per stack (default settings, this machine).

It also writes a picture with the two depth maps of every stack side by side
(``--png``) to look at.

Run: ``.venv/bin/python benchmarks/bench_real_weights.py OLD.safetensors NEW.safetensors
[--tta 2 1] [--png out.png]`` (a packaged name such as ``gplws_default`` works too).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_gplws.api import reconstruct
from napari_gplws.io import read_stack

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
STACKS = {"intaglio": ("intaglio", None), "pcb": ("pcb", "pcb_*.jpg")}


def roughness(index: np.ndarray, confidence: np.ndarray) -> float:
    """Median |Laplacian| of the depth (frames/px²) where the confidence is at least its median."""
    from scipy import ndimage as ndi

    lap = np.abs(ndi.laplace(index.astype(np.float64)))
    keep = confidence >= np.median(confidence)
    return float(np.median(lap[keep]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs=2, help="two weights files or packaged names")
    ap.add_argument("--png", default=None, help="write the depth maps side by side here")
    ap.add_argument("--tta", type=int, nargs=2, default=(1, 1), choices=(1, 2, 4, 8),
                    help="test-time-augmentation views of each weights file (default 1 1)")
    args = ap.parse_args()
    maps: dict[str, list[np.ndarray]] = {}
    print("| stack | weights | roughness (frames/px²) | seconds |")
    print("|---|---|---:|---:|")
    for name, (folder, pattern) in STACKS.items():
        path = REAL / folder
        if not path.is_dir():
            print(f"| {name} | skipped: {path} not found | | |")
            continue
        stack = read_stack(path, pattern=pattern)
        step = stack.focus_step_um or 1.0
        for w, tta in zip(args.weights, args.tta, strict=True):
            reconstruct(stack, weights=w, tta=tta)  # warm-up (weights loaded, kernels compiled)
            t0 = time.perf_counter()
            r = reconstruct(stack, weights=w, tta=tta)
            seconds = time.perf_counter() - t0
            index = (r.depth - float(np.min(stack.positions))) / step
            maps.setdefault(name, []).append(index)
            label = f"{Path(w).name}, {tta} view{'s' if tta > 1 else ''}"
            print(f"| {name} | {label} | {roughness(index, r.confidence):.4f} | {seconds:.2f} |")
        a, b = maps[name]
        print(f"| {name} | agreement: median \\|difference\\| | {np.median(np.abs(a - b)):.3f} frames | |")
    if args.png and maps:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(maps), 2, figsize=(10, 4.6 * len(maps)), squeeze=False)
        for row, (name, pair) in zip(axes, maps.items(), strict=True):
            lo, hi = np.percentile(np.concatenate([p.ravel() for p in pair]), [1, 99])
            for ax, m, w in zip(row, pair, args.weights, strict=True):
                im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi)
                ax.set_title(f"{name}: {Path(w).name}", fontsize=9)
                ax.axis("off")
            fig.colorbar(im, ax=row.tolist(), shrink=0.8, label="in-focus frame")
        fig.savefig(args.png, dpi=90)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
