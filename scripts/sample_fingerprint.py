"""Print a checksum of every output the bundled sample gives, per method.

Used to prove that a refactor changed no result: run it before and after and compare the
lines (``diff``). It goes through the command line, as a user does, so the whole path from
reading the sample to writing the TIFFs is covered.

    python scripts/sample_fingerprint.py > before.txt
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

METHODS = ("gplws", "sml", "tenengrad", "rdf")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            out = Path(tmp) / method
            subprocess.run(
                [sys.executable, "-m", "napari_gplws.cli", "reconstruct", "--sample",
                 "-o", str(out), "--method", method, "--device", "cpu"],
                check=True, capture_output=True,
            )
            for name in ("depth.tif", "aif.tif", "confidence.tif"):
                data = np.ascontiguousarray(tifffile.imread(out / name))
                digest = hashlib.sha256(data.tobytes()).hexdigest()[:16]
                print(f"{method:10s} {name:15s} {data.dtype} {data.shape} {digest}")
    # Autofocus (LDSE-NET) on every frame of the sample: defocus per region, rounded to 1 nm.
    import napari_gplws
    from napari_gplws._sample_data import make_sample

    result = napari_gplws.autofocus(make_sample().stack, device="cpu")
    for key in ("predicted_um", "magnitude_um", "true_um", "error_um", "tile_defocus_um"):
        values = np.round(np.nan_to_num(np.asarray(getattr(result, key), float)), 3)
        digest = hashlib.sha256(values.tobytes()).hexdigest()[:16]
        print(f"autofocus  {key:15s} {values.dtype} {values.shape} {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
