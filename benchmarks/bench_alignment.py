"""Frame alignment on simulated stacks: the motion check, the transform model, and the truth.

Three tables, printed as Markdown (the figures of ``docs/alignment.md``):

1. **Motion check.** The mean match gain of :func:`napari_gplws.dff.align.detect_motion`
   on still stacks and on their moving twins (also in reversed focus order), for the six
   surface families of ``benchmarks/bench_fusion.py``, two seeds, and four stack sizes and
   blurs. ``auto`` aligns when the gain is at least ``AUTO_MIN_GAIN``.
2. **Transform model.** All-in-focus PSNR (pyramid fusion) of the moving stacks of
   ``bench_fusion.py`` aligned with each model, next to the same stack aligned with the true
   transforms and the still stack.
3. The apparent motion registration alone reads into the still stacks (largest corner
   displacement), which is why ``auto`` needs the check of table 1.

Run: ``.venv/bin/python benchmarks/bench_alignment.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fusion import N_FRAMES, SCENES, SIZE, psnr

from napari_gplws.dff.align import (
    AUTO_MIN_GAIN,
    align_stack,
    detect_motion,
    estimate_motion,
    frame_motion,
    warp_frames,
)
from napari_gplws.dff.fusion import fuse_pyramid
from napari_gplws.sim.motion import moving_stack

CASES = ((256, 12, None), (320, 16, None), (320, 16, 0.25), (192, 8, None))


def motion_check_table() -> list[str]:
    lines = [
        (f"Mean match gain (`auto` aligns from {AUTO_MIN_GAIN}); min–max over six surface "
        "families × two seeds; moving = both focus orders:"),
        "",
        "| frames | blur (px/µm) | still stacks | moving stacks |",
        "|---|---|---:|---:|",
    ]
    for size, n, blur in CASES:
        still, moving = [], []
        for seed in (1, 2):
            for i, (family, br, drift, rgb) in enumerate(SCENES):
                kw = {} if blur is None else {"blur_px_per_um": blur}
                m = moving_stack(
                    family=family, n_frames=n, shape=(size, size), breathing=br, drift_px=drift,
                    rgb=rgb, seed=seed * 10 + i, **kw,
                )
                still.append(detect_motion(m.still.frames).mean_gain)
                moving.append(detect_motion(m.stack.frames).mean_gain)
                moving.append(detect_motion(m.stack.frames[::-1].copy()).mean_gain)
        blur_text = "0.5 (default)" if blur is None else f"{blur}"
        lines.append(
            f"| {n} × {size}² | {blur_text} | {min(still):+.3f} … {max(still):+.3f} | "
            f"{min(moving):+.3f} … {max(moving):+.3f} |"
        )
        print(lines[-1], flush=True)
    return lines


def model_table() -> list[str]:
    models = ("affine", "shift+scale")
    lines = [
        (f"All-in-focus PSNR (dB, pyramid fusion), {N_FRAMES} frames of {SIZE}², moving stacks of "
        "`bench_fusion.py`; apparent motion = largest corner displacement registration reads "
        "into the still twin:"),
        "",
        "| scene | still | aligned with the true transforms | "
        + " | ".join(f"aligned, {m}" for m in models)
        + " | apparent motion of the still stack (px) |",
        "|---|---:|---:|" + "---:|" * len(models) + "---:|",
    ]
    for i, (family, br, drift, rgb) in enumerate(SCENES):
        m = moving_stack(
            family=family, n_frames=N_FRAMES, shape=(SIZE, SIZE), breathing=br, drift_px=drift,
            rgb=rgb, seed=100 + i,
        )
        cells = [
            psnr(fuse_pyramid(m.still.frames), m.texture),
            psnr(fuse_pyramid(warp_frames(m.stack.frames, m.transforms)), m.texture),
        ]
        for model in models:
            _, al = align_stack(m.stack, mode="on", model=model)
            cells.append(psnr(fuse_pyramid(warp_frames(m.stack.frames, al.transforms)), m.texture))
        apparent = frame_motion(estimate_motion(m.still.frames), (SIZE, SIZE)).max()
        label = f"{family}{' RGB' if rgb else ''}"
        lines.append(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {apparent:.2f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    text = "\n".join([*motion_check_table(), "", *model_table()])
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
