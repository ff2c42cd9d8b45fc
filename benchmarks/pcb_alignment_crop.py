"""Make docs/images/alignment-pcb.png: the PCB example fused without and with alignment.

The PCB stack (7 frames, 2048×1536 RGB, moving between shots) and focus-stack's own result
live outside the repository (``../shared/data/real/``, MIT licence). The image shows the
same 400×300 crop of: this project's all-in-focus image without alignment, with
``align="auto"``, and focus-stack's output.

Run: ``.venv/bin/python benchmarks/pcb_alignment_crop.py [DATA_DIR]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gplws.api import reconstruct
from napari_gplws.io import read_stack

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "docs" / "images" / "alignment-pcb.png"
Y, X, H, W = 500, 700, 300, 400


def main() -> int:
    pcb = DATA / "pcb"
    ref = DATA / "pcb-reference" / "focus-stack-output.jpg"
    if not pcb.is_dir() or not ref.is_file():
        print(f"skipped: the PCB example is not in {DATA}")
        return 0
    stack = read_stack(pcb)
    t = time.perf_counter()
    off = reconstruct(stack, method="sml", align="off")
    t_off = time.perf_counter() - t
    t = time.perf_counter()
    on = reconstruct(stack, method="sml", align="auto")
    t_on = time.perf_counter() - t
    theirs = iio.imread(ref)
    crops = [im[Y : Y + H, X : X + W, :3] for im in (off.aif, on.aif, theirs)]
    gap = np.full((H, 8, 3), 255, np.uint8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(OUT, np.concatenate([crops[0], gap, crops[1], gap, crops[2]], axis=1))
    al = on.alignment
    print(f"{al.reason}; residual ≤ {al.max_residual_px:.2f} px")
    print(f"seconds: without alignment {t_off:.2f}, with {t_on:.2f} (alignment {al.seconds['total']:.2f})")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
