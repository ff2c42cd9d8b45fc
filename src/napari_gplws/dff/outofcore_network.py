"""GPLWS-Net out of core: the network over a zarr stack, chunk by chunk, as in memory.

:func:`predict_zarr` follows :func:`napari_gplws.dff.network.predict_depth`: the input range
(percentiles of a sub-sample of the stack) is computed first; the network's tiles are laid
out on the *whole* image exactly as in memory, and each output chunk evaluates the tiles
that touch it and keeps its own part of their blend (a tile across a chunk seam is
evaluated once per chunk it touches); the division by the blend weights, the light
Gaussian smoothing (overlap ``4·σ + 1``) and the all-in-focus image follow. The classical
engine out of core and the shared result type are in :mod:`napari_gplws.dff.outofcore`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import DaskTaskProgress, ProgressFn, report
from napari_gplws.dff._chunks import (
    _WORK,
    OutOfCoreResult,
    _chunk_sizes,
    _new_output_group,
    _select,
    _trim,
    store_outputs,
)
from napari_gplws.errors import StackError
from napari_gplws.io.zarr import ZarrStack, open_zarr_stack


# =========================================================================================
# GPLWS-Net out of core
# =========================================================================================
def _read_region(frames: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Read ``frames[:, y0:y1, x0:x1]`` of a dask array inside a task (no nested threads)."""
    return np.asarray(frames[:, y0:y1, x0:x1].compute(scheduler="synchronous"))


def _net_pass(
    dummy: np.ndarray,
    frames: Any,
    ys: list[tuple[int, int]],
    xs: list[tuple[int, int]],
    lo: float,
    scale: float,
    overlap: int,
    positions: np.ndarray,
    weights: Any,
    device: str,
    attention: bool,
    n_out: int,
    views: tuple[tuple[int, bool], ...] = ((0, False),),
    amp: Any = None,
    block_info: Any = None,
) -> np.ndarray:
    """Blend of all whole-image tiles that touch this chunk: (n_out, h, w) float32 sums."""
    import torch

    from napari_gplws.dff._tile_net import tile_outputs
    from napari_gplws.dff._tiles import _ramp, _to_luma
    from napari_gplws.models.registry import load_gplws

    (cy0, cy1), (cx0, cx1) = block_info[0]["array-location"]
    h_img, w_img = (int(v) for v in frames.shape[1:3])
    model = load_gplws(weights, device)  # cached once per process
    acc = np.zeros((n_out, cy1 - cy0, cx1 - cx0), np.float32)
    with torch.inference_mode():
        for y0, y1 in ys:
            if y1 <= cy0 or y0 >= cy1:
                continue
            for x0, x1 in xs:
                if x1 <= cx0 or x0 >= cx1:
                    continue
                raw = _read_region(frames, y0, y1, x0, x1)
                x = ((_to_luma(raw) - lo) / scale).astype(np.float32, copy=False)[None]
                out = tile_outputs(
                    model, x, views, device, amp, rel_positions=positions - positions[0],
                    raw=raw[None] if attention else None, luma_range=(lo, scale),
                )
                index, dep, conf = (out[k][0].cpu().numpy() for k in ("index", "depth", "confidence"))
                wt = np.outer(_ramp(y1 - y0, y0, h_img, overlap), _ramp(x1 - x0, x0, w_img, overlap))
                parts = [wt * index, wt * dep, wt * conf, wt]
                if attention:
                    a = out["aif"][0].cpu().numpy()
                    if a.ndim == 3:
                        parts += [wt * a[..., c] for c in range(3)]
                    else:
                        parts.append(wt * a)
                # intersection of tile and chunk
                iy0, iy1 = max(y0, cy0), min(y1, cy1)
                ix0, ix1 = max(x0, cx0), min(x1, cx1)
                for k, part in enumerate(parts):
                    acc[k, iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0] += part[
                        iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0
                    ]
    return acc


def _net_finish(
    work: np.ndarray, n: int, smooth_px: float, halo: int, block_info: Any = None
) -> np.ndarray:
    """(3, h, w): index, depth relative to the first position, confidence (trimmed)."""
    from napari_gplws.dff._tiles import smooth_map

    wsum = work[3]
    idx = work[0] / wsum
    dep = work[1] / wsum
    conf = work[2] / wsum
    if smooth_px and smooth_px > 0:
        idx = smooth_map(idx, smooth_px)
        dep = smooth_map(dep, smooth_px)
    out = np.stack([np.clip(idx, 0, n - 1), dep, np.clip(conf, 0, 1)]).astype(np.float32)
    info = block_info[0]
    loc, nch = info["chunk-location"], info["num-chunks"]
    return _trim(out, halo, (0,) + tuple(loc[1:3]), (1,) + tuple(nch[1:3]), (1, 2))


def _net_aif(work: np.ndarray, dtype: np.dtype) -> np.ndarray:
    from napari_gplws.dff._tiles import _cast_like

    wsum = work[3]
    a = work[4:] / wsum
    a = np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a[0]
    return _cast_like(a, np.dtype(dtype))


def predict_zarr(
    source: str | os.PathLike[str] | ZarrStack,
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    tile_size: int = 256,
    overlap: int | None = None,
    aif_mode: str = "attention",
    smooth_px: float | None = None,
    weights: str | os.PathLike[str] = "gplws_default",
    tta: int | None = None,
    precision: str = "auto",
    chunk: int = 1024,
    threads: int | None = None,
    focus_um: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
    progress: ProgressFn = None,
    overwrite: bool = False,
) -> OutOfCoreResult:
    """GPLWS-Net depth, confidence and all-in-focus image of a zarr stack, chunk by chunk.

    Equal (to float tolerance) to :func:`napari_gplws.dff.network.predict_depth` with the same
    ``tile_size``, ``overlap``, ``aif_mode``, ``smooth_px``, ``tta`` and ``precision`` on the
    whole stack in memory: the same tiles, test-time-augmentation views and CPU fast path.

    Parameters
    ----------
    source, out, chunk, threads, focus_um, pixel_size_um, progress, overwrite
        As in :func:`reconstruct_zarr`.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
    tile_size, overlap, aif_mode, smooth_px, weights, tta, precision
        As in :func:`napari_gplws.dff.network.predict_depth` (``None``: its defaults). Memory per task
        grows with ``N·tile_size²`` (network) and ``chunk²`` (accumulators).

    Returns
    -------
    OutOfCoreResult

    Raises
    ------
    ModelError
        Missing weights or unavailable device.
    StackError
        Bad stack or options.
    """
    import dask
    import dask.array as da

    from napari_gplws._shared.device import resolve_device
    from napari_gplws.dff._tile_net import TTA_VIEWS
    from napari_gplws.dff._tiles import tile_grid
    from napari_gplws.dff.classical import default_threads
    from napari_gplws.dff.network import (
        DEFAULT_OVERLAP,
        DEFAULT_SMOOTH_PX,
        DEFAULT_TTA,
        resolve_precision,
    )
    from napari_gplws.models.registry import load_gplws

    t_start = time.perf_counter()
    if aif_mode not in ("attention", "select"):
        raise StackError(f"aif_mode must be 'attention' or 'select'; got {aif_mode!r}.")
    zs = source if isinstance(source, ZarrStack) else open_zarr_stack(source, focus_um=focus_um, pixel_size_um=pixel_size_um)
    tta = DEFAULT_TTA if tta is None else tta
    if tta not in TTA_VIEWS:
        raise StackError(f"tta must be one of 1, 2, 4 or 8; got {tta!r}.")
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    model = load_gplws(weights, dev)
    ov_req = DEFAULT_OVERLAP if overlap is None else int(overlap)
    sigma = DEFAULT_SMOOTH_PX if smooth_px is None else float(smooth_px)
    frames = zs.frames
    n, h, w = (int(v) for v in frames.shape[:3])
    positions = np.asarray(
        zs.focus_um if zs.focus_um is not None else np.arange(n, dtype=np.float64), np.float64
    )
    nthreads = default_threads() if threads is None else max(1, int(threads))
    timings: dict[str, float] = {}

    # input range: the same sub-sample as inference._robust_range
    t0 = time.perf_counter()
    s = max(1, int(np.sqrt(n * h * w / 262_144)))
    with dask.config.set(scheduler="threads", num_workers=nthreads):
        sample = np.asarray(frames[:, ::s, ::s].compute(), np.float32)
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    del sample
    scale = max(hi - lo, 1e-6 * (abs(hi) + 1.0))
    timings["normalize"] = time.perf_counter() - t0

    tile = max(16, int(tile_size))
    ov = max(0, min(ov_req, tile // 2))
    align = int(getattr(model, "multiple", 1))
    ys, xs = tile_grid(h, tile, ov, align), tile_grid(w, tile, ov, align)
    halo = int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 0
    if int(chunk) < 2 * max(halo, 1):
        raise StackError(f"chunk={chunk} is too small; use at least {2 * max(halo, 1)}.")
    cy, cx = _chunk_sizes(h, int(chunk), halo), _chunk_sizes(w, int(chunk), halo)
    attention = aif_mode == "attention"
    n_out = 4 + ((3 if frames.ndim == 4 else 1) if attention else 0)

    outp, group, work = _new_output_group(out, n_out, h, w, int(chunk), source=zs, overwrite=overwrite)
    zchunks = (int(chunk), int(chunk))

    t0 = time.perf_counter()
    dummy = da.zeros((h, w), chunks=(cy, cx), dtype=np.uint8)
    a = da.map_blocks(
        partial(
            _net_pass, frames=frames, ys=ys, xs=xs, lo=lo, scale=scale, overlap=ov,
            positions=positions, weights=weights, device=dev, attention=attention, n_out=n_out,
            views=TTA_VIEWS[tta], amp=amp,
        ),
        dummy, new_axis=0, chunks=((n_out,), cy, cx), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    cb = DaskTaskProgress(progress, 0, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store(a, work, lock=False)
    timings["network"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    wk = da.from_zarr(work).rechunk((n_out, cy, cx))
    fin = da.map_overlap(
        partial(_net_finish, n=n, smooth_px=sigma, halo=halo),
        wk, depth={0: 0, 1: halo, 2: halo}, boundary="none", trim=False,
        chunks=((3,), cy, cx), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
    )
    index, dep_rel, conf = fin[0], fin[1], fin[2]
    pos0 = float(positions[0])
    depth = dep_rel.map_blocks(lambda d: (d.astype(np.float64) + pos0).astype(np.float32), dtype=np.float32)
    if attention:
        ax = "yxc" if frames.ndim == 4 else "yx"
        extra = {"new_axes": {"c": 3}} if frames.ndim == 4 else {}
        aif = da.blockwise(_net_aif, ax, wk, "zyx", frames.dtype, None, dtype=frames.dtype,
                           concatenate=True, **extra)
    else:
        frames_c = frames.rechunk((n, cy, cx) + frames.shape[3:])
        ax = "yxc" if frames.ndim == 4 else "yx"
        aif = da.blockwise(_select, ax, frames_c, "z" + ax, index, "yx", dtype=frames.dtype, concatenate=True)
    zd = group.create_array("depth", shape=(h, w), chunks=zchunks, dtype="float32")
    zc = group.create_array("confidence", shape=(h, w), chunks=zchunks, dtype="float32")
    za = group.create_array("aif", shape=(h, w) + frames.shape[3:], chunks=zchunks + frames.shape[3:], dtype=frames.dtype)
    cb = DaskTaskProgress(progress, 100, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        store_outputs(outp, [depth, conf, aif], [zd, zc, za])
    timings["write"] = time.perf_counter() - t0
    del group[_WORK]
    timings["total"] = time.perf_counter() - t_start
    params = {
        "fusion": "select",
        "method": "gplws", "tile_size": tile, "overlap": ov, "tiles": len(ys) * len(xs),
        "aif_mode": aif_mode, "smooth_px": sigma, "weights": str(weights), "device": dev,
        "chunk": int(chunk), "threads": nthreads, "tta": tta,
        "precision": str(amp).replace("torch.", "") if amp is not None else "fp32",
    }
    units = zs.units
    for arr, kind in ((zd, "depth"), (zc, "confidence"), (za, "aif")):
        arr.attrs.update(
            kind=kind, units=units if kind == "depth" else None, pixel_size_um=zs.pixel_size_um,
            method="gplws", source=zs.source, written_by="napari-gplws",
        )
    group.attrs.update(units={"depth": units, "pixel_size": "µm" if zs.pixel_size_um else None},
                       params=params, focus_um=None if zs.focus_um is None else positions.tolist())
    report(progress, 200, 200)
    return OutOfCoreResult(path=outp, units=units, shape=(h, w), timings=timings, params=params, stack=zs)
