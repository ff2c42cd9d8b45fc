"""The classical engine out of core: a focus measure over a zarr stack, chunk by chunk.

The result equals :func:`napari_gplws.dff.classical.depth_from_focus` on the whole stack in
memory, to float tolerance (the box filters' running sums start at a different pixel),
because

* every chunk is read with an overlap (:func:`dask.array.map_overlap`, ``boundary="none"``
  so the image border is treated exactly as in memory) at least the receptive field of
  the step: the focus measure's halo (:func:`napari_gplws.dff.measures.measure_halo`) for the
  focus pass, the refinement's ``radius·3 + 1`` for the refinement pass;
* the few quantities that the in-memory engine takes over the whole image — the
  confidence's ``eps`` (from the largest focus value), the guide's 1st/99th percentile
  (from the same sub-sampled grid) and the clipping range of the refined index — are
  computed globally between the two passes from an intermediate zarr array.

Three passes over the data::

    A  frames --map_overlap(halo)--> index, guide, peak, mean   (stored: _work, 16 B/pixel)
    B  global eps, percentiles, index range                     (reads _work)
    C  _work --map_overlap(refine halo)--> refined index; depth, confidence, aif (frames again)
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
    _N_WORK,
    _WORK,
    OutOfCoreResult,
    _chunk_sizes,
    _new_output_group,
    _select,
    _to_depth,
    _trim,
    store_outputs,
)
from napari_gplws.dff._engine import _Engine, _Runner
from napari_gplws.dff.measures import (
    DEFAULT_MEASURE,
    DEFAULT_WINDOW,
    measure_halo,
    validate_measure,
    validate_window,
)
from napari_gplws.dff.peaks import focus_confidence
from napari_gplws.dff.refine import (
    DEFAULT_REFINE_EPS,
    DEFAULT_REFINE_FLOOR,
    DEFAULT_REFINE_RADIUS,
    DEFAULT_REFINE_TAU,
    _refine_band,
    _refine_bands,
)
from napari_gplws.errors import StackError
from napari_gplws.io.zarr import ZarrStack, open_zarr_stack
from napari_gplws.stack import FocalStack


def _focus_pass(block: np.ndarray, measure: str, window: int, halo: int, block_info: Any = None) -> np.ndarray:
    """Pass A on one overlapped chunk: ``(4, h, w)`` = index, guide, peak, mean (float32)."""
    info = block_info[0]
    stack = FocalStack(np.asarray(block))
    eng = _Engine(stack, measure, window, keep_guide=True)
    n = eng.n
    index = np.empty((eng.h, eng.w), np.float32)
    conf = np.empty((eng.h, eng.w), np.float32)
    with _Runner(1, len(eng.bands)) as run:
        for k in range(n):
            run(partial(eng.update, k), eng.bands)
        run(partial(eng.finish, "gaussian", 1.0, index, conf), eng.bands)
    mean = eng.total * np.float32(1.0 / n)  # as in _Engine.finish
    out = np.stack([index, eng.guide, eng.best, mean])
    loc, nch = info["chunk-location"], info["num-chunks"]
    return _trim(out, halo, (0,) + tuple(loc[1:3]), (1,) + tuple(nch[1:3]), (1, 2))


def _refine_pass(
    index: np.ndarray,
    conf: np.ndarray,
    guide: np.ndarray,
    g_lo: float,
    g_scale: float,
    radius: int,
    eps: float,
    lo: float,
    hi: float,
    halo: int,
    block_info: Any = None,
) -> np.ndarray:
    """Pass C refinement of one overlapped chunk (same bands maths as :func:`napari_gplws.dff.classical.refine_index`)."""
    out = np.empty_like(index)
    task = partial(
        _refine_band, index, conf, guide, g_lo, g_scale, radius, eps, DEFAULT_REFINE_TAU, 1,
        DEFAULT_REFINE_FLOOR, out,
    )
    bands = _refine_bands(index.shape, radius, 1)
    with _Runner(1, len(bands)) as run:
        run(task, bands)
    np.clip(out, lo, hi, out=out)
    info = block_info[0]
    return _trim(out, halo, info["chunk-location"], info["num-chunks"], (0, 1))


def reconstruct_zarr(
    source: str | os.PathLike[str] | ZarrStack,
    out: str | os.PathLike[str],
    *,
    measure: str = DEFAULT_MEASURE,
    window: int = DEFAULT_WINDOW,
    refine: bool = True,
    refine_radius: int = DEFAULT_REFINE_RADIUS,
    refine_eps: float = DEFAULT_REFINE_EPS,
    chunk: int = 1024,
    threads: int | None = None,
    focus_um: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
    keep_work: bool = False,
    progress: ProgressFn = None,
    overwrite: bool = False,
) -> OutOfCoreResult:
    """Depth, confidence and all-in-focus image of a zarr stack, chunk by chunk.

    Parameters
    ----------
    source
        Path of a zarr stack (see :func:`open_zarr_stack`) or an opened :class:`ZarrStack`.
    out
        Output zarr group (replaced): arrays ``depth``, ``confidence``, ``aif``, with
        attributes ``units`` (``"µm"``/``"frame"``), ``pixel_size_um``, ``method`` …
    measure, window, refine, refine_radius, refine_eps
        As in :func:`napari_gplws.dff.classical.depth_from_focus` (Gaussian sub-frame fit, nearest-frame AiF).
    chunk
        Chunk side in pixels over y and x (memory per task grows with ``N·chunk²``).
    threads
        Dask threads (default: usable cores, at most 8).
    focus_um, pixel_size_um
        Override the stack's metadata.
    keep_work
        Keep the intermediate ``_work`` array (``(4, H, W)`` float32) in the output group.
    overwrite
        Move an existing ``out`` that napari-gplws did not write aside (as
        ``<out>.backup-<time>``) instead of refusing; an earlier output of this package is
        always replaced.
    progress
        ``progress(done, total)`` with ``total = 200`` (two passes of 100 steps).

    Returns
    -------
    OutOfCoreResult

    Raises
    ------
    StackError
        Bad stack, measure, window or chunk size.

    Examples
    --------
    >>> r = reconstruct_zarr("scan.zarr", "scan-out.zarr", chunk=1024)  # doctest: +SKIP
    >>> r.open()["depth"]  # doctest: +SKIP
    """
    import dask
    import dask.array as da

    from napari_gplws.dff.classical import default_threads

    t_start = time.perf_counter()
    zs = source if isinstance(source, ZarrStack) else open_zarr_stack(source, focus_um=focus_um, pixel_size_um=pixel_size_um)
    name, win = validate_measure(measure), validate_window(window)
    radius = int(refine_radius)
    if refine and radius < 1:
        raise StackError(f"The refinement radius must be ≥ 1 pixel; got {refine_radius!r}.")
    halo_a = measure_halo(name, win)
    halo_c = radius * 3 + 1 if refine else 0
    halo = max(halo_a, halo_c)
    if int(chunk) < 2 * halo:
        raise StackError(f"chunk={chunk} is too small for an overlap of {halo} px; use at least {2 * halo}.")
    frames = zs.frames
    n, h, w = (int(v) for v in frames.shape[:3])
    cy, cx = _chunk_sizes(h, int(chunk), halo), _chunk_sizes(w, int(chunk), halo)
    frames = frames.rechunk((n, cy, cx) + frames.shape[3:])
    nthreads = default_threads() if threads is None else max(1, int(threads))
    timings: dict[str, float] = {}

    outp, group, work = _new_output_group(out, _N_WORK, h, w, int(chunk), source=zs, overwrite=overwrite)
    zchunks = (int(chunk), int(chunk))

    # pass A: focus curve maxima, chunk by chunk with the focus measure's halo
    t0 = time.perf_counter()
    depth_a = {0: 0, 1: halo_a, 2: halo_a}
    if frames.ndim == 4:
        depth_a[3] = 0
    a = da.map_overlap(
        partial(_focus_pass, measure=name, window=win, halo=halo_a),
        frames,
        depth=depth_a,
        boundary="none",
        trim=False,
        chunks=((_N_WORK,), cy, cx),
        drop_axis=[3] if frames.ndim == 4 else [],
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    cb = DaskTaskProgress(progress, 0, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store(a, work, lock=False)
    timings["focus"] = time.perf_counter() - t0

    # pass B: the global quantities the in-memory engine takes over the whole image
    t0 = time.perf_counter()
    wk = da.from_zarr(work).rechunk((1, cy, cx))
    index, guide, peak, mean = wk[0], wk[1], wk[2], wk[3]
    sub = guide[:: max(1, h // 256), :: max(1, w // 256)]
    with dask.config.set(scheduler="threads", num_workers=nthreads):
        pmax, dmin, dmax, sub_np = dask.compute(peak.max(), index.min(), index.max(), sub)
    eps = max(float(pmax) * 1e-6, float(np.finfo(np.float32).tiny))
    g_lo, g_hi = (float(v) for v in np.percentile(sub_np, (1, 99)))
    g_scale = 1.0 / (g_hi - g_lo) if g_hi > g_lo else 1.0
    timings["stats"] = time.perf_counter() - t0

    # pass C: confidence, refinement with its halo, depth and all-in-focus image
    t0 = time.perf_counter()
    conf = da.map_blocks(focus_confidence, peak, mean, eps, dtype=np.float32)
    if refine:
        final = da.map_overlap(
            partial(
                _refine_pass, g_lo=g_lo, g_scale=g_scale, radius=radius, eps=float(refine_eps),
                lo=float(dmin), hi=float(dmax), halo=halo_c,
            ),
            index, conf, guide,
            depth={0: halo_c, 1: halo_c},
            boundary="none",
            trim=False,
            chunks=(cy, cx),
            dtype=np.float32,
            meta=np.empty((0, 0), np.float32),
        )
    else:
        final = index
    positions = None if zs.focus_um is None else np.asarray(zs.focus_um, np.float64)
    depth = final.map_blocks(_to_depth, positions, dtype=np.float32)
    ax = "yxc" if frames.ndim == 4 else "yx"
    aif = da.blockwise(_select, ax, frames, "z" + ax, final, "yx", dtype=frames.dtype, concatenate=True)
    zd = group.create_array("depth", shape=(h, w), chunks=zchunks, dtype="float32")
    zc = group.create_array("confidence", shape=(h, w), chunks=zchunks, dtype="float32")
    za = group.create_array("aif", shape=(h, w) + frames.shape[3:], chunks=zchunks + frames.shape[3:], dtype=frames.dtype)
    cb = DaskTaskProgress(progress, 100, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        store_outputs(outp, [depth, conf, aif], [zd, zc, za])
    timings["write"] = time.perf_counter() - t0
    if not keep_work:
        del group[_WORK]
    timings["total"] = time.perf_counter() - t_start
    params = {
        "measure": name, "window": win, "interpolation": "gaussian", "refine": bool(refine),
        "refine_radius": radius, "refine_eps": float(refine_eps), "aif_blend": False, "fusion": "select",
        "chunk": int(chunk), "overlap_px": halo, "threads": nthreads,
    }
    units = zs.units
    for arr, kind in ((zd, "depth"), (zc, "confidence"), (za, "aif")):
        arr.attrs.update(
            kind=kind, units=units if kind == "depth" else None, pixel_size_um=zs.pixel_size_um,
            method=name, source=zs.source, written_by="napari-gplws",
        )
    group.attrs.update(units={"depth": units, "pixel_size": "µm" if zs.pixel_size_um else None},
                       params=params, focus_um=None if positions is None else positions.tolist())
    report(progress, 200, 200)
    return OutOfCoreResult(path=outp, units=units, shape=(h, w), timings=timings, params=params, stack=zs)
