"""Classical (model-free) depth from focus: height map, confidence and all-in-focus image.

:func:`depth_from_focus` turns a :class:`~napari_gplws.stack.FocalStack` into a :class:`FocusResult`
in one streaming pass over the frames plus one cheap selection pass, without a network
and without ever holding an ``(N, H, W)`` float array: memory grows with ``H·W``, not
``N·H·W``. The steps are

1. **Focus curve maximum** (pass 1). Each frame's focus measure (:mod:`napari_gplws.dff.measures`)
   is computed in horizontal bands (with enough overlap that results equal a whole-frame
   computation), on a small thread pool: scipy's filters and numpy's ufuncs release the
   GIL. Per pixel a running state is kept: best focus value, its frame, the focus values
   of the frames just before and just after it, and the sum of the curve (for the
   confidence), plus the luminance of the sharpest frame (the refinement's guide).
2. **Sub-frame peak.** A 3-point fit through the best frame and its two neighbours:
   ``"gaussian"`` fits a parabola to the logarithms (exact for a Gaussian-shaped focus
   curve; falls back to ``"parabolic"`` where a value is ≤ 0), ``"parabolic"`` to the
   values, ``"none"`` keeps the integer frame. The offset is clamped to ``[-0.5, 0.5]``
   frames; peaks on the first or last frame get no offset. The fit is made in frame
   index, and the index is then mapped to focus position piecewise linearly
   (:meth:`.FocalStack.index_to_position`), so decreasing or uneven focus steps are
   handled exactly at frames and linearly between them.
3. **Confidence** (:func:`.peaks.focus_confidence`): ``c = (max − mean) / max`` of the pixel's
   focus curve, in ``[0, 1]``.
4. **Refinement** (optional, :func:`.refine.refine_index`): a confidence-weighted, outlier-robust
   (one Cauchy reweighting step) guided filter of the frame index, guided by the
   all-in-focus luminance, computed in bands on the same thread pool.
5. **All-in-focus image** (pass 2): each pixel is taken from the frame at the rounded
   final index (or blended linearly between the two frames around the fractional index),
   in the input dtype, colour kept.

This module does not read files, run networks or know about napari. The focus measures
themselves live in :mod:`napari_gplws.dff.measures` and are re-exported here; the
peak fit in :mod:`.peaks`, the refinement in :mod:`.refine`, the band machinery in
:mod:`._engine`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.dff._engine import _Engine, _Runner, _to_dtype, default_threads
from napari_gplws.dff.measures import (
    DEFAULT_MEASURE,
    DEFAULT_WINDOW,
    FOCUS_MEASURES,
    focus_measure,
    validate_measure,
    validate_window,
)
from napari_gplws.dff.peaks import INTERPOLATIONS
from napari_gplws.dff.refine import (
    DEFAULT_REFINE_EPS,
    DEFAULT_REFINE_FLOOR,
    DEFAULT_REFINE_RADIUS,
    DEFAULT_REFINE_TAU,
    _refine,
)
from napari_gplws.errors import StackError
from napari_gplws.stack import FocalStack

__all__ = [
    "FOCUS_MEASURES",
    "INTERPOLATIONS",
    "FocusResult",
    "default_threads",
    "depth_from_focus",
    "focus_measure",
]


@dataclass
class FocusResult:
    """Result of :func:`depth_from_focus`.

    Attributes
    ----------
    index
        ``(H, W)`` float32, 0-based fractional frame index of the sharpest focus.
    depth
        ``(H, W)`` float32, ``stack.index_to_position(index)``: in µm on the focus-drive
        axis when the stack's focus positions are known, else equal to ``index``.
    confidence
        ``(H, W)`` float32 in ``[0, 1]`` (see :func:`focus_confidence`).
    aif
        All-in-focus image, ``(H, W)`` or ``(H, W, 3)``, same dtype as the frames.
    units
        Unit of ``depth``: ``"µm"`` or ``"frame"`` (``stack.units``).
    timings
        Seconds per stage: ``focus`` (pass 1), ``fit`` (sub-frame peak and confidence),
        ``refine``, ``aif`` (pass 2), ``depth`` (index to position) and ``total``.
    params
        The parameters used (measure, window, interpolation, refine, …, threads).
    """

    index: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray
    aif: np.ndarray
    units: str
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def depth_from_focus(
    stack: FocalStack,
    *,
    measure: str = DEFAULT_MEASURE,
    window: int = DEFAULT_WINDOW,
    interpolation: str = "gaussian",
    refine: bool = True,
    refine_radius: int = DEFAULT_REFINE_RADIUS,
    refine_eps: float = DEFAULT_REFINE_EPS,
    aif_blend: bool = False,
    threads: int | None = None,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> FocusResult:
    """Height map, confidence and all-in-focus image of a focus stack, without a network.

    Parameters
    ----------
    stack
        The focus stack: ``(N, H, W)`` or ``(N, H, W, 3)`` frames of any integer or float
        dtype, with or without focus positions.
    measure
        Focus measure name (see :data:`FOCUS_MEASURES`); default ``"sml"``.
    window
        Odd window size in pixels the focus measure is averaged over (default 9).
    interpolation
        Sub-frame peak fit: ``"gaussian"`` (default), ``"parabolic"`` or ``"none"``.
    refine
        Smooth the frame index with :func:`refine_index` (robust, confidence-weighted
        guided filter, guided by the all-in-focus luminance) before mapping to depth and
        composing the all-in-focus image.
    refine_radius
        Box radius in pixels of the refinement (default 4).
    refine_eps
        Guided-filter regularisation (normalised guide variance; default 0.01).
    aif_blend
        Blend the two frames bracketing the fractional index linearly instead of taking
        the pixel from the nearest frame.
    threads
        Worker threads for the per-band work (default: usable cores, at most 8).
    progress
        ``progress(done, total)``, called after every frame of both passes
        (``total = 2 N``).
    cancel
        ``cancel() -> bool``, checked before every frame; when it returns True,
        :class:`~napari_gplws.errors.Cancelled` is raised and nothing is returned.

    Returns
    -------
    FocusResult
        ``index``, ``depth`` (in ``stack.units``), ``confidence``, ``aif`` (input dtype),
        ``units``, ``timings`` and ``params``.

    Raises
    ------
    StackError
        Unknown measure or interpolation, bad window or radius (message lists the choices).
    Cancelled
        When ``cancel()`` returned True.

    Notes
    -----
    Memory grows with ``H·W``, not ``N·H·W``: 26 bytes per pixel of running state (best
    value, frame, neighbours, curve sum, guide), the outputs (12 bytes per pixel plus the
    all-in-focus image) and a few ~1 MiB band buffers per thread. The frames are read
    band by band, never converted or copied as a whole.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frames = (rng.random((5, 32, 32)) * 255).astype(np.uint8)
    >>> res = depth_from_focus(FocalStack(frames, focus_um=[0, 1, 2, 3, 4]))
    >>> res.depth.shape, res.units, res.aif.dtype
    ((32, 32), 'µm', dtype('uint8'))
    """
    t_start = time.perf_counter()
    name = validate_measure(measure)
    win = validate_window(window)
    if interpolation not in INTERPOLATIONS:
        raise StackError(
            f"Unknown interpolation {interpolation!r}; choose one of: {', '.join(INTERPOLATIONS)}."
        )
    if refine and int(refine_radius) < 1:
        raise StackError(f"The refinement radius must be ≥ 1 pixel; got {refine_radius!r}.")

    eng = _Engine(stack, name, win, keep_guide=bool(refine))
    n, bands = eng.n, eng.bands
    total_steps = 2 * n
    timings: dict[str, float] = {}
    with _Runner(threads, len(bands)) as run:
        # pass 1: running maximum of the focus curve
        t0 = time.perf_counter()
        for k in range(n):
            check_cancel(cancel)
            run(partial(eng.update, k), bands)
            report(progress, k + 1, total_steps)
        timings["focus"] = time.perf_counter() - t0

        # sub-frame fit and confidence
        t0 = time.perf_counter()
        index = np.empty((eng.h, eng.w), np.float32)
        conf = np.empty((eng.h, eng.w), np.float32)
        eps = max(float(eng.best.max()) * 1e-6, float(np.finfo(np.float32).tiny))
        run(partial(eng.finish, interpolation, eps, index, conf), bands)
        del eng.left, eng.right, eng.prev, eng.total, eng.best
        timings["fit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if refine:
            check_cancel(cancel)
            index = _refine(
                index,
                conf,
                eng.guide,
                radius=int(refine_radius),
                eps=float(refine_eps),
                tau=DEFAULT_REFINE_TAU,
                iterations=1,
                floor=DEFAULT_REFINE_FLOOR,
                run=run,
            )
        del eng.guide
        timings["refine"] = time.perf_counter() - t0

        # pass 2: all-in-focus image consistent with the final index
        t0 = time.perf_counter()
        frames = eng.frames
        if aif_blend:
            lo = np.floor(index).astype(eng.best_k.dtype)
            np.clip(lo, 0, n - 2, out=lo)
            frac = index - lo
            np.clip(frac, 0.0, 1.0, out=frac)
            acc = np.zeros(frames.shape[1:], np.float32)
            for k in range(n):
                check_cancel(cancel)
                run(partial(eng.blend, k, lo, frac, acc), bands)
                report(progress, n + k + 1, total_steps)
            aif = acc if frames.dtype == np.float32 else _to_dtype(acc, frames.dtype)
        else:
            sel = eng.best_k  # reuse the int buffer for the rounded final index
            np.copyto(sel, np.rint(index), casting="unsafe")
            np.clip(sel, 0, n - 1, out=sel)
            aif = np.empty(frames.shape[1:], frames.dtype)
            for k in range(n):
                check_cancel(cancel)
                run(partial(eng.select, k, sel, aif), bands)
                report(progress, n + k + 1, total_steps)
        timings["aif"] = time.perf_counter() - t0
        n_threads = run.threads

    t0 = time.perf_counter()
    depth = (
        index.copy()
        if stack.focus_um is None
        else stack.index_to_position(index).astype(np.float32)
    )
    timings["depth"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    params = dict(
        measure=name,
        window=win,
        interpolation=interpolation,
        refine=bool(refine),
        refine_radius=int(refine_radius),
        refine_eps=float(refine_eps),
        aif_blend=bool(aif_blend),
        threads=n_threads,
    )
    return FocusResult(
        index=index,
        depth=depth,
        confidence=conf,
        aif=aif,
        units=stack.units,
        timings=timings,
        params=params,
    )
