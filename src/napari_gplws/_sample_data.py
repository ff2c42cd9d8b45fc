"""npe2 sample-data adapter: a small synthetic focus stack and its ground-truth depth.

The stack is generated on the fly (deterministic seed), so the package ships no data
files and the sample opens without any download.
"""

from __future__ import annotations

from typing import Any

SAMPLE_SHAPE = (256, 256)
SAMPLE_FRAMES = 20


def make_sample():
    """Return the bundled sample as a :class:`~napari_gplws.sim.focus_stacks.SyntheticStack`."""
    from napari_gplws.sim.focus_stacks import synthetic_stack

    return synthetic_stack(
        family="waves",
        texture="fibres",
        n_frames=SAMPLE_FRAMES,
        shape=SAMPLE_SHAPE,
        depth_range_um=(0.0, 38.0),
        pixel_size_um=0.5,
        bit_depth=8,
        seed=2024,
    )


def sample_stack() -> list[tuple[Any, dict, str]]:
    """Layer-data tuples: the focus stack (z scaled in µm) and the ground-truth depth (µm),
    with ``units`` and ``axis_labels`` so napari's scale bar reads µm."""
    sample = make_sample()
    stack = sample.stack
    px = stack.pixel_size_um or 1.0
    meta = {
        "focus_um": stack.focus_um.tolist(),
        "pixel_size_um": stack.pixel_size_um,
        "units": stack.units,
        "source": stack.source,
    }
    return [
        (
            stack.frames,
            {
                "name": "sample stack",
                "scale": (stack.focus_step_um, px, px),
                "translate": (float(stack.focus_um[0]), 0.0, 0.0),
                "units": ("µm", "µm", "µm"),
                "axis_labels": ("z", "y", "x"),
                "metadata": meta,
            },
            "image",
        ),
        (
            sample.depth_um,
            {
                "name": "sample ground truth depth (µm)",
                "scale": (px, px),
                "units": ("µm", "µm"),
                "axis_labels": ("y", "x"),
                "colormap": "viridis",
                "visible": False,
                "metadata": {"units": "µm", "pixel_size_um": stack.pixel_size_um, "kind": "depth"},
            },
            "image",
        ),
    ]
