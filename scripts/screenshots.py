"""Render the documentation screenshots headlessly (run under xvfb-run).

    xvfb-run -a .venv/bin/python scripts/screenshots.py

Writes PNGs into docs/images/. Each picture is made from the real plugin code path
(reader/sample, core reconstruction, layers) so the docs stay true.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def sample_and_depth(viewer) -> None:
    import napari_gplws
    from napari_gplws._sample_data import sample_stack

    for data, kwargs, kind in sample_stack():
        viewer.add_image(data, **kwargs)
    stack_layer = viewer.layers["sample stack"]
    focus = np.asarray(stack_layer.metadata["focus_um"])
    result = napari_gplws.reconstruct(np.asarray(stack_layer.data), focus_positions=focus, method="sml")
    px = stack_layer.metadata["pixel_size_um"]
    viewer.add_image(result.aif, name="all-in-focus", scale=(px, px))
    viewer.add_image(
        result.depth, name=f"depth ({result.units})", scale=(px, px), colormap="turbo",
        opacity=0.6, metadata={"units": result.units, "method": result.method},
    )
    viewer.layers["sample stack"].visible = False
    viewer.reset_view()


def main() -> int:
    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 750)
    sample_and_depth(viewer)
    path = OUT / "sample_depth.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
