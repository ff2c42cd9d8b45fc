"""Speed of the autofocus path (LDSE-NET), for ``gplws bench``.

:func:`benchmark` times the network per 224×224 tile, the whole 3×3 map of one full-size
camera frame, and, in the same process, the classical focus-measure estimate on the same
tiles for comparison. What it is not: the speed table of the depth-from-focus methods or
its Markdown rendering (:mod:`napari_gplws.evaluation.speed`), or autofocus itself
(:mod:`napari_gplws.defocus`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.device import resolve_device
from napari_gplws.defocus import autofocus, cut_tiles, tile_origins

__all__ = ["benchmark"]


def benchmark(
    device: str = "cpu",
    repeats: int = 3,
    weights: str | Path = "ldse_default",
    shape_yx: tuple[int, int] = (1944, 2592),
    batch_size: int = 64,
) -> dict[str, Any]:
    """Speed of the autofocus path, for ``gplws bench``.

    Returns the median over ``repeats`` of (a) milliseconds per 224×224 tile at batch
    ``batch_size`` (network only, after one warm-up batch) and (b) seconds for the full 3×3
    map of one ``shape_yx`` uint8 frame (tiling, blank test, network, aggregation), plus the
    tile count and torch thread count. Uses the packaged weights, or an untrained network of
    the same architecture when they are absent (same cost).
    """
    import torch

    from napari_gplws.models.ldse import LDSENet, prepare_tiles
    from napari_gplws.models.registry import load_ldse, weights_path

    dev = resolve_device(device)
    if not weights_path(weights).is_file():
        import tempfile

        from napari_gplws.models.registry import save_ldse

        tmp = Path(tempfile.mkdtemp()) / "bench.safetensors"
        weights = save_ldse(LDSENet().eval(), tmp, {"optics": {}})
    model = load_ldse(weights, dev)
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    frame = ndi.gaussian_filter(rng.random(shape_yx, dtype=np.float32), 2.0)
    frame = np.clip((frame - frame.mean()) / frame.std() * 40 + 128, 0, 255).astype(np.uint8)
    tiles = torch.from_numpy(prepare_tiles(cut_tiles(frame, tile_origins(shape_yx)[:batch_size])))
    tiles = tiles[:batch_size].to(dev).contiguous(memory_format=torch.channels_last)
    per_tile, full = [], []
    with torch.inference_mode():
        model(tiles)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(tiles)
            if str(dev).startswith("cuda"):
                torch.cuda.synchronize()
            per_tile.append((time.perf_counter() - t0) / len(tiles) * 1000)
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = autofocus(frame, device=device, weights=weights, batch_size=batch_size)
        full.append(time.perf_counter() - t0)
    # Baseline in the same process: the classical |z|-only estimate of the model card (mean
    # sum-modified-Laplacian of each standardised tile), on the same tiles.
    from napari_gplws.dff.measures import focus_measure

    plain = prepare_tiles(cut_tiles(frame, tile_origins(shape_yx)[:batch_size]))[:, 0]
    classical = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in plain:
            float(focus_measure(t, "sml", 9).mean())
        classical.append((time.perf_counter() - t0) / len(plain) * 1000)
    return {
        "device": dev,
        "threads": torch.get_num_threads(),
        "ms_per_tile_batch64": float(np.median(per_tile)),
        "classical_ms_per_tile": float(np.median(classical)),
        "full_map_s": float(np.median(full)),
        "frame": f"{shape_yx[1]}x{shape_yx[0]}",
        "tiles": len(res.tile_origins),
    }
