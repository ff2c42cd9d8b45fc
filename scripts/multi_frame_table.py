"""Print the docs' table of direction and size from several frames at known focus offsets.

What it is for: docs/autofocus.md ("Two frames settle the direction") quotes these figures;
this script regenerates them for the packaged LDSE-NET weights (or the weights given as the
first argument) on the held-out simulated test distribution
(:func:`napari_gplws.evaluation.defocus_metrics.frames_test`, 40 fields × 8 sets per row).

    .venv/bin/python scripts/multi_frame_table.py [WEIGHTS]
"""

from __future__ import annotations

import sys
import time

import torch

from napari_gplws.evaluation.defocus_metrics import TEST_BANK_SEED, frames_test
from napari_gplws.models.registry import load_ldse
from napari_gplws.sim.psf import OPTICS_20X
from napari_gplws.sim.psf_bank import PSFBank

OFFSETS_UM = (
    (0.0, 2.0),
    (0.0, 3.0),
    (0.0, 4.0),
    (0.0, 2.0, 4.0),
    (0.0, 1.0, 2.0, 3.0, 4.0),
    (0.0, 3.0, 6.0),
)


def main(argv: list[str]) -> int:
    torch.set_num_threads(2)
    weights = argv[0] if argv else "ldse_default"
    model = load_ldse(weights)
    bank = PSFBank(OPTICS_20X, n_configs=4, seed=TEST_BANK_SEED)
    print(f"weights: {weights}")
    print(
        "| frames at (µm from the first) | sets | sign accuracy, \\|z\\| ≥ 1 µm | "
        "MAE, \\|z\\| ≤ 5 µm | first frame alone: sign, MAE |"
    )
    print("|---|---|---|---|---|")
    for offs in OFFSETS_UM:
        t0 = time.perf_counter()
        r = frames_test(model, OPTICS_20X, offs, bank=bank)
        one = r["single_frame"]
        print(
            f"| {', '.join(f'{v:g}' for v in offs)} | {r['n']} | {r['sign_acc_ge1']:.3f} | "
            f"{r['mae_le5']:.2f} µm | {one['sign_acc_ge1']:.3f}, {one['mae_le5']:.2f} µm |"
            f"  <!-- {time.perf_counter() - t0:.0f} s -->",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
