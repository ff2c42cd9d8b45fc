"""Small datasets written on the fly for the tests (no files are shipped).

Importable from any test module (``pythonpath = ["tests"]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import json

import numpy as np

from napari_gplws.training.gplws_data import render_stack, render_texture

N, H, W = 8, 24, 28


def _stack_and_depth(seed: int = 0):
    rng = np.random.default_rng(seed)
    _, xx = np.mgrid[0:H, 0:W]
    depth_idx = (1.5 + 4.0 * xx / (W - 1)).astype(np.float32)  # a tilted plane in frames
    tex = render_texture(H, W, rng, p_blank_patch=0.0)
    frames = render_stack(depth_idx, tex, N, blur_per_step=1.2)
    return (np.clip(frames, 0, 1) * 250).astype(np.uint8), depth_idx


def make_dataset(root, encodings=("png8",), step_um=2.0):
    """One sample folder per encoding: frames 1.png…N.png, a sidecar, and a GT file."""
    import imageio.v3 as iio
    import tifffile

    root.mkdir(exist_ok=True)
    for i, enc in enumerate(encodings):
        d = root / f"s{i + 1}_{enc}"
        d.mkdir()
        frames, idx = _stack_and_depth(i)
        for k, f in enumerate(frames):
            iio.imwrite(d / f"{k + 1}.png", f)
        (d / "focus.json").write_text(
            json.dumps({"focus_start_um": 10.0, "focus_step_um": step_um})
        )
        q = np.rint(idx * 10)  # index × 10, scale 0.1
        if enc == "png8":
            iio.imwrite(d / "depth.png", np.rint(idx * 20).astype(np.uint8))
        elif enc == "png16":
            iio.imwrite(d / "depth.png", q.astype(np.uint16))
        elif enc == "bmp8":
            iio.imwrite(d / "gt.bmp", q.astype(np.uint8))
        elif enc == "tif16":
            tifffile.imwrite(d / "label.tif", q.astype(np.uint16))
        elif enc == "tiff32":
            tifffile.imwrite(d / "depth.tif", (10 + step_um * idx).astype(np.float32))
        elif enc == "npy":
            np.save(d / "depth.npy", (10 + step_um * idx).astype(np.float32))
    return root
