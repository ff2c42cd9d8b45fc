"""Frame alignment: measure how the frames of a focus stack move, and register them.

Real stacks are rarely registered. Non-telecentric optics *breathe* (the magnification
changes with focus), stages drift and a motorised focus can shift the field. Fusing such
frames as they are doubles every edge. :func:`align_stack` estimates, per frame, the
transform onto a reference frame (the middle one, ``N // 2``, by default) and resamples
every frame into the reference frame's geometry.

How
    1. Each frame is reduced to its luminance and shrunk by an integer factor (area
       average) so that its long side is at most :data:`COARSE_SIZE` pixels.
    2. Each frame is registered to its *neighbours* one and two frames away (:data:`SPANS`),
       with OpenCV's enhanced-correlation-coefficient maximisation
       (``cv2.findTransformECC``, invariant to changes of brightness and contrast; the
       sharper frame of each pair is the template), and the per-frame transforms onto the
       reference are the least-squares fit to all these pair estimates: near frames look
       alike even where the ends of a deep stack are too blurred to be compared with its
       middle, and the longer pairs hold back the drift of a plain chain of neighbours.
    3. The *motion* is the largest displacement of any pixel of any frame (at full
       resolution; for these transforms it lies at a corner of the frame). In ``"auto"``
       mode the stack is aligned only when the motion exceeds :data:`AUTO_THRESHOLD_PX`
       *and* the motion is real (:func:`detect_motion`, run first, on a few pairs): as focus
       sweeps through a tilted or curved surface the blur changes across the field, and
       any registration reads part of that as motion of up to several pixels. Such an
       estimate does not make the two frames match better; real motion does. So
       ``"auto"`` registers the sharpest neighbour pairs, warps one frame of each pair by
       the estimate and compares the band-pass correlation with and without the warp. A
       still stack is left as it is, bit for bit, after this check alone.
    4. When aligning, the estimate is refined on a finer copy (long side at most
       :data:`FINE_SIZE`), then every frame is resampled once, at full resolution, with
       cubic interpolation (``cv2.warpAffine``; edges replicated outwards).
    5. The *residual motion* is measured by registering the aligned neighbours again, on
       the coarse copy.

The estimate is an affine transform, kept as it is (``"affine"``, the default) or projected
onto a smaller model: ``"shift+scale"`` (breathing and drift), ``"shift"`` or
``"shift+scale+rotation"``. Although breathing and drift are a similarity, the full affine
estimate measured better: its extra freedom absorbs the part of the changing blur that a
projection would push into the scale and shift (all-in-focus PSNR on six simulated moving
scenes −0.6 to +4.1 dB against ``"shift+scale"``, better on five; docs/alignment.md).
OpenCV was chosen over scikit-image's registration by a measured comparison of accuracy
and speed (see ``docs/alignment.md``); it is the optional extra ``napari-gplws[align]``.

Transforms are ``(N, 2, 3)`` matrices in pixel coordinates ``(x, y)`` (column, row): the
point ``p`` of the reference frame is seen at ``A_k @ [x, y, 1]`` in frame ``k``. Pixels of
the reference frame that not every frame sees are reported in :attr:`Alignment.coverage`;
:attr:`Alignment.common_box` is the largest rectangle that every frame covers.

This module does not read files or know about napari.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.dff._registration import (
    NoTexture,
    band_pass,
    ecc,
    match_gain,
    pair_transforms,
    project,
    rescale,
    shrink_factor,
    small_grey,
    solve_transforms,
)
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.stack import FocalStack

__all__ = [
    "ALIGN_MODELS",
    "ALIGN_MODES",
    "AUTO_MIN_GAIN",
    "AUTO_THRESHOLD_PX",
    "Alignment",
    "MotionEvidence",
    "align_stack",
    "common_box",
    "detect_motion",
    "estimate_motion",
    "have_opencv",
    "warp_frames",
]

#: ``"auto"`` aligns only moving stacks; ``"on"`` always aligns; ``"off"`` never does.
ALIGN_MODES: tuple[str, ...] = ("auto", "on", "off")
#: Transform models, from the fewest degrees of freedom to the most.
ALIGN_MODELS: tuple[str, ...] = ("shift", "shift+scale", "shift+scale+rotation", "affine")
DEFAULT_MODEL = "affine"
#: ``"auto"`` aligns when some pixel of some frame moves more than this (pixels).
AUTO_THRESHOLD_PX = 0.3
#: ``"auto"`` aligns only when registering neighbouring frames makes them match better by
#: at least this share of what they lacked (mean over the sampled pairs; see
#: :func:`detect_motion`). On simulated stacks of 12–16 frames of 256–320 px (six surface
#: families, two blurs, both focus orders, two seeds) still stacks measured 0.008 at most
#: and moving ones (4–6 % breathing, 0.5–0.8 px of drift per frame) 0.137 and more. Short
#: stacks of small frames (8 × 192²) are a grey zone: up to 0.049 still, down to −0.068
#: moving (``benchmarks/bench_alignment.py``).
AUTO_MIN_GAIN = 0.05
_GAIN_FLOOR = -0.1
#: Neighbour pairs :func:`detect_motion` samples (the sharpest ones) …
DETECT_PAIRS = 6
#: … unless the first this many agree clearly (all below half the threshold, or all above
#: twice it).
_EARLY_PAIRS = 3
#: Long side (pixels) of the copy :func:`detect_motion` works on.
DETECT_SIZE = 160
#: The model :func:`detect_motion` registers with: fewer degrees of freedom than the
#: default estimate, so that the changing blur of a still stack has less to fit.
DETECT_MODEL = "shift+scale"
#: Long side (pixels) of the copy the motion is measured on.
COARSE_SIZE = 320
#: Long side (pixels) of the copy the transforms are refined on before aligning. On a
#: simulated 12 × 1536² moving stack the transform error was 0.333 px RMS without refining,
#: 0.329 px at 640 and 0.317 px at 1024 (which cost 2× more): the error comes from the
#: changing blur, not from the working resolution.
FINE_SIZE = 640
#: Frame distances registered: every frame with its neighbours one and two frames away. The
#: per-frame transforms are the least-squares fit to all these pair estimates (a pair
#: ``d`` frames apart weighs ``1 / d²``). On the six simulated moving scenes of
#: ``benchmarks/bench_fusion.py`` this moved the all-in-focus PSNR by −0.26 (pits) to
#: +0.23 dB (waves), within ±0.07 dB elsewhere, against the chain of neighbours alone,
#: and costs about 1.5× as much.
SPANS: tuple[int, ...] = (1, 2)
INSTALL_HINT = "pip install 'napari-gplws[align]'  (installs opencv-python-headless)"


class AlignmentError(GplwsError):
    """Frame alignment was asked for but cannot run (e.g. OpenCV is missing)."""


@dataclass
class Alignment:
    """What :func:`align_stack` found and did.

    Attributes
    ----------
    transforms
        ``(N, 2, 3)`` float64, reference-frame pixel ``(x, y)`` to frame-``k`` pixel.
    reference
        Index (0-based) of the reference frame.
    model, mode
        The transform model and the mode asked for (``"auto"``, ``"on"``, ``"off"``).
    aligned
        Whether the frames were resampled.
    reason
        Why (or why not), in words.
    motion_px
        ``(N,)`` largest displacement of any pixel of each frame, in pixels, before
        aligning (``nan`` when not measured).
    residual_px
        ``(N,)`` the same after aligning, measured frame to neighbour (``None`` when not
        aligned).
    coverage
        ``(H, W)`` bool, pixels every frame covers (``None`` when not aligned: all).
    common_box
        ``(y0, y1, x0, x1)``, the largest rectangle every frame covers (whole frame when
        not aligned).
    seconds
        Time per stage: ``estimate``, ``refine``, ``warp``, ``residual``, ``total``.
    """

    transforms: np.ndarray
    reference: int
    model: str
    mode: str
    aligned: bool
    reason: str
    motion_px: np.ndarray
    residual_px: np.ndarray | None = None
    coverage: np.ndarray | None = None
    common_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    seconds: dict[str, float] = field(default_factory=dict)
    evidence: MotionEvidence | None = None

    @property
    def max_motion_px(self) -> float:
        """Largest displacement of any pixel of any frame before aligning (pixels)."""
        m = np.asarray(self.motion_px, float)
        return float(np.nanmax(m)) if np.isfinite(m).any() else float("nan")

    @property
    def max_residual_px(self) -> float | None:
        """Largest residual displacement after aligning (pixels), or ``None``."""
        return None if self.residual_px is None else float(np.max(self.residual_px))

    def to_report(self) -> dict[str, Any]:
        """A JSON-able summary (what ``report.json`` and the layer metadata hold)."""
        r3 = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 3)  # noqa: E731
        return {
            "mode": self.mode,
            "aligned": bool(self.aligned),
            "reason": self.reason,
            "model": self.model,
            "reference_frame": int(self.reference),
            "threshold_px": AUTO_THRESHOLD_PX,
            "max_motion_px": r3(self.max_motion_px),
            "motion_px": [r3(v) for v in np.asarray(self.motion_px, float)],
            "max_residual_px": r3(self.max_residual_px),
            "residual_px": None
            if self.residual_px is None
            else [r3(v) for v in self.residual_px],
            "transforms": "reference-frame pixel (x, y, 1) to frame pixel (x, y), one 2x3 "
            "matrix per frame",
            "matrices": np.round(self.transforms, 6).tolist(),
            "common_area": {
                "y0": int(self.common_box[0]), "y1": int(self.common_box[1]),
                "x0": int(self.common_box[2]), "x1": int(self.common_box[3]),
            },
            "seconds": {k: round(float(v), 4) for k, v in self.seconds.items()},
            "evidence": None if self.evidence is None else self.evidence.to_report(),
        }


@dataclass
class MotionEvidence:
    """Whether the frames really move, from a few registered neighbour pairs.

    Attributes
    ----------
    pairs
        ``(j, j + 1)`` frame index pairs that were registered (the sharpest ones).
    gains
        Per pair: how much registering the pair improved the band-pass correlation of its
        frames, as a share of what they lacked, ``(r_aligned - r) / (1 - r)``; the better of
        registering the first frame onto the second and the second onto the first. About 0 or
        negative when the apparent motion comes from the changing blur; clearly positive
        when the frames move.
    step_motion_px
        Per pair: largest displacement of any pixel between the two frames (pixels).
    min_gain
        The mean gain that counts as motion (:data:`AUTO_MIN_GAIN`).
    """

    pairs: list[tuple[int, int]]
    gains: np.ndarray
    step_motion_px: np.ndarray
    min_gain: float = AUTO_MIN_GAIN

    @property
    def mean_gain(self) -> float:
        """Mean gain over the registered pairs, each counted down to −0.1 at most (a pair
        whose registration diverged says nothing about the others); ``nan`` when none could be
        registered."""
        if not len(self.gains):
            return float("nan")
        return float(np.mean(np.maximum(self.gains, _GAIN_FLOOR)))

    @property
    def moving(self) -> bool:
        """Whether registering the frames makes them match better: they move."""
        return bool(len(self.gains)) and self.mean_gain >= self.min_gain

    def to_report(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "pairs": [[int(a), int(b)] for a, b in self.pairs],
            "match_gain": [round(float(g), 4) for g in self.gains],
            "mean_match_gain": None if not len(self.gains) else round(self.mean_gain, 4),
            "min_match_gain": self.min_gain,
            "step_motion_px": [round(float(v), 3) for v in self.step_motion_px],
            "moving": self.moving,
        }


# =========================================================================================
# Public functions
# =========================================================================================
def have_opencv() -> bool:
    """Whether OpenCV (``opencv-python-headless``) can be imported."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def validate_align_options(
    mode: str, model: str, reference: int | None, n_frames: int
) -> tuple[str, str, int]:
    """Check the alignment options; return ``(mode, model, reference index)``."""
    m = str(mode).lower()
    if m not in ALIGN_MODES:
        raise StackError(f"align={mode!r} is not one of {', '.join(ALIGN_MODES)}.")
    mdl = str(model).lower()
    if mdl not in ALIGN_MODELS:
        raise StackError(
            f"align model {model!r} is not one of {', '.join(ALIGN_MODELS)}."
        )
    if reference is None:
        ref = n_frames // 2
    else:
        if isinstance(reference, bool) or int(reference) != reference:
            raise StackError(f"reference frame {reference!r} must be a whole frame index.")
        ref = int(reference)
        if not 0 <= ref < n_frames:
            raise StackError(
                f"reference frame {reference} is outside the stack: give an index from 0 to "
                f"{n_frames - 1} (0 is the first frame; the default is the middle one, "
                f"{n_frames // 2})."
            )
    return m, mdl, ref


def estimate_motion(
    frames: np.ndarray,
    *,
    reference: int | None = None,
    model: str = DEFAULT_MODEL,
    max_size: int = COARSE_SIZE,
    init: np.ndarray | None = None,
    spans: tuple[int, ...] = SPANS,
    cancel: CancelFn = None,
) -> np.ndarray:
    """Estimate the ``(N, 2, 3)`` transforms of ``frames`` onto the reference frame.

    Parameters
    ----------
    frames
        ``(N, H, W)`` or ``(N, H, W, 3)`` frames of any dtype.
    reference
        Reference frame index (default ``N // 2``).
    model
        One of :data:`ALIGN_MODELS`.
    max_size
        Long side (pixels) of the shrunk copy the estimate is made on.
    init
        Transforms to start from (e.g. a coarser estimate).
    spans
        Frame distances registered (see :data:`SPANS`); neighbours (1) always are, and
        ``(1,)`` chains them alone.
    cancel
        ``cancel() -> bool``, checked between frames.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 3)`` float64 in full-resolution pixel coordinates.
    """
    n = frames.shape[0]
    _, model, ref = validate_align_options("on", model, reference, n)
    factor = shrink_factor(frames.shape[1:3], max_size)
    grey = [small_grey(frames[k], factor) for k in range(n)]
    pairs = pair_transforms(grey, model, spans, init, factor, cancel)
    weights = [1.0 / (b - a) ** 2 for a, b in pairs]
    full = [rescale(m, factor) for m in pairs.values()]
    tr = solve_transforms(list(pairs), full, weights, n, ref, frames.shape[1:3])
    return np.stack([project(a, model) for a in tr])


def detect_motion(
    frames: np.ndarray,
    *,
    model: str = DETECT_MODEL,
    max_size: int = DETECT_SIZE,
    n_pairs: int = DETECT_PAIRS,
    min_gain: float = AUTO_MIN_GAIN,
    cancel: CancelFn = None,
) -> MotionEvidence:
    """Register the sharpest neighbour pairs and test whether that makes them match better.

    Cheap (``n_pairs`` registrations on a copy with a long side of at most ``max_size``)
    and decisive where the motion's size alone is not: see step 3 of this module's notes.

    Parameters
    ----------
    frames
        ``(N, H, W)`` or ``(N, H, W, 3)`` frames of any dtype, ``N >= 2``.
    model
        One of :data:`ALIGN_MODELS`.
    max_size, n_pairs
        Long side of the working copy (pixels) and how many pairs to register.
    min_gain
        Mean match gain that counts as motion.
    cancel
        ``cancel() -> bool``, checked between pairs.
    """
    n = frames.shape[0]
    factor = shrink_factor(frames.shape[1:3], max_size)
    grey = [small_grey(frames[k], factor) for k in range(n)]
    band = [band_pass(g) for g in grey]
    sharp = np.array([float(b.var()) for b in band])
    score = np.minimum(sharp[:-1], sharp[1:])
    sharpest_first = np.argsort(-score, kind="stable")[: max(1, min(n_pairs, n - 1))].tolist()
    found: list[tuple[int, float, float]] = []
    for j in sharpest_first:
        check_cancel(cancel)
        try:  # both ways: the estimate is not symmetric, the decision must be
            forward = ecc(grey[j], grey[j + 1], model, None)
            backward = ecc(grey[j + 1], grey[j], model, None)
        except NoTexture:
            continue
        g_f = match_gain(band[j], grey[j + 1], forward)
        g_b = match_gain(band[j + 1], grey[j], backward)
        m = forward if g_f >= g_b else backward
        step = float(frame_motion(rescale(m, factor)[None, :2], frames.shape[1:3])[0])
        found.append((j, max(g_f, g_b), step))
        # Stop early when the first pairs agree clearly (half the cost on a still stack).
        first = [g for _, g, _ in found]
        if len(first) == _EARLY_PAIRS and (
            max(first) < 0.5 * min_gain or min(first) >= 2.0 * min_gain
        ):
            break
    found.sort()
    pairs = [(j, j + 1) for j, _, _ in found]
    gains = [g for _, g, _ in found]
    steps = [st for _, _, st in found]
    return MotionEvidence(pairs, np.array(gains), np.array(steps), float(min_gain))


def frame_motion(transforms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(N,)`` largest displacement (pixels) of any pixel of each frame under ``transforms``."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    d = transforms @ corners - corners[:2][None]
    return np.sqrt((d**2).sum(axis=1)).max(axis=1)


def warp_frames(frames: np.ndarray, transforms: np.ndarray, cancel: CancelFn = None) -> np.ndarray:
    """Resample every frame into the reference frame's geometry (cubic, edges replicated).

    Returns a new array of the input's shape and dtype; ``frames`` is not changed.
    """
    import cv2

    out = np.empty_like(frames)
    h, w = frames.shape[1:3]
    native = frames.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
    for k in range(frames.shape[0]):
        check_cancel(cancel)
        a = np.asarray(transforms[k], np.float64)
        if np.allclose(a, np.eye(2, 3), atol=1e-9):
            out[k] = frames[k]
            continue
        src = frames[k] if native else frames[k].astype(np.float64)
        res = cv2.warpAffine(
            src, a, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if not native:  # other integer types: round and clip back into their range
            if frames.dtype.kind in "ui":
                info = np.iinfo(frames.dtype)
                res = np.clip(np.rint(res), info.min, info.max)
            elif frames.dtype.kind == "b":
                res = res >= 0.5
        out[k] = res.reshape(out[k].shape)
    return out


def coverage_mask(transforms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: reference pixels whose position lies inside every frame."""
    import cv2

    h, w = shape
    ones = np.ones((h, w), np.uint8)
    cov = np.ones((h, w), bool)
    for a in transforms:
        m = cv2.warpAffine(
            ones, np.asarray(a, np.float64), (w, h),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        cov &= m.astype(bool)
    return cov


def common_box(coverage: np.ndarray) -> tuple[int, int, int, int]:
    """A large axis-aligned rectangle ``(y0, y1, x0, x1)`` inside ``coverage`` (end-exclusive).

    Greedy: starting from the bounding box of the covered pixels, the side with the
    largest share of uncovered pixels is moved inwards until none is left. The covered
    area of an aligned stack is an intersection of parallelograms, for which this is
    close to the largest rectangle. Written by hand: neither scikit-image nor scipy has it.
    """
    rows = np.flatnonzero(coverage.any(axis=1))
    cols = np.flatnonzero(coverage.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    while y1 > y0 and x1 > x0:
        box = coverage[y0:y1, x0:x1]
        bad = [
            1.0 - box[0].mean(), 1.0 - box[-1].mean(), 1.0 - box[:, 0].mean(),
            1.0 - box[:, -1].mean(),
        ]
        worst = int(np.argmax(bad))
        if bad[worst] == 0.0:
            break
        if worst == 0:
            y0 += 1
        elif worst == 1:
            y1 -= 1
        elif worst == 2:
            x0 += 1
        else:
            x1 -= 1
    return (y0, y1, x0, x1)


def align_stack(
    stack: FocalStack,
    *,
    mode: str = "auto",
    model: str = DEFAULT_MODEL,
    reference: int | None = None,
    threshold_px: float = AUTO_THRESHOLD_PX,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> tuple[FocalStack, Alignment]:
    """Measure the motion of a stack's frames and, when asked or needed, register them.

    Parameters
    ----------
    stack
        The focus stack (grey or colour, any dtype, focus increasing or decreasing).
    mode
        ``"auto"`` (align when some pixel moves more than ``threshold_px``), ``"on"`` or
        ``"off"`` (nothing is measured).
    model
        One of :data:`ALIGN_MODELS` (default ``"affine"``).
    reference
        Index (0-based) of the frame whose geometry the results take; default ``N // 2``.
    threshold_px
        The ``"auto"`` threshold in pixels (0.05–10).
    progress, cancel
        ``progress(done, total)`` and ``cancel() -> bool``.

    Returns
    -------
    (FocalStack, Alignment)
        The aligned stack (the input itself when nothing was resampled) and what was done.

    Raises
    ------
    StackError
        An option out of range.
    AlignmentError
        ``mode="on"`` without OpenCV (the message names the ``pip install``).
    """
    t0 = time.perf_counter()
    n = stack.n_frames
    hw = stack.shape_yx
    mode, model, ref = validate_align_options(mode, model, reference, n)
    if not 0.05 <= float(threshold_px) <= 10.0:
        raise StackError(f"The alignment threshold must be 0.05–10 pixels; got {threshold_px}.")
    ident = np.repeat(np.eye(2, 3)[None], n, axis=0)
    nan = np.full(n, np.nan)
    whole = (0, hw[0], 0, hw[1])

    def unchanged(reason: str, motion: np.ndarray = nan, tr: np.ndarray = ident) -> tuple[FocalStack, Alignment]:
        secs = {"total": time.perf_counter() - t0}
        return stack, Alignment(tr, ref, model, mode, False, reason, motion, common_box=whole, seconds=secs)

    if mode == "off":
        return unchanged("alignment is off")
    if not have_opencv():
        if mode == "on":
            raise AlignmentError(f"Aligning frames needs OpenCV; install it: {INSTALL_HINT}.")
        return unchanged(f"not measured: OpenCV is not installed ({INSTALL_HINT})")
    secs: dict[str, float] = {}
    report(progress, 0, 4)
    t = time.perf_counter()
    evidence = detect_motion(stack.frames, cancel=cancel)  # "on" too: to say if it is real
    secs["detect"] = time.perf_counter() - t
    if mode == "auto" and not evidence.moving:
        apparent = _max_or_zero(evidence.step_motion_px)
        why = (
            "not aligned: the frames do not move (registering the sharpest neighbour "
            f"frames did not make them match better: mean gain {evidence.mean_gain:+.3f}"
            f", motion counts from {AUTO_MIN_GAIN}"
            + (
                f"; the apparent shifts of up to {apparent:.2f} px per frame come from "
                "the changing blur)"
                if apparent > threshold_px
                else ")"
            )
            if len(evidence.gains)
            else "not aligned: no pair of frames has texture to register"
        )
        out = unchanged(why)
        out[1].seconds.update(secs)
        out[1].evidence = evidence
        return out
    t = time.perf_counter()
    coarse = _estimate_or_explain(stack, ref, model, COARSE_SIZE, None, cancel)
    secs["estimate"] = time.perf_counter() - t
    motion = frame_motion(coarse, hw)
    worst = float(motion.max())
    report(progress, 1, 4)
    if mode == "auto" and worst <= threshold_px:
        out = unchanged(
            f"not aligned: the frames move at most {worst:.2f} px (threshold {threshold_px} px)",
            motion, coarse,
        )
        out[1].seconds.update(secs)
        out[1].evidence = evidence
        return out
    t = time.perf_counter()
    factor = shrink_factor(hw, FINE_SIZE)
    tr = coarse
    if factor < shrink_factor(hw, COARSE_SIZE):
        tr = _estimate_or_explain(stack, ref, model, FINE_SIZE, coarse, cancel)
    secs["refine"] = time.perf_counter() - t
    report(progress, 2, 4)
    t = time.perf_counter()
    frames = warp_frames(stack.frames, tr, cancel)
    cov = coverage_mask(tr, hw)
    secs["warp"] = time.perf_counter() - t
    report(progress, 3, 4)
    t = time.perf_counter()
    box = common_box(cov)
    residual = _residual(frames, box, ref, model, cancel)
    secs["residual"] = time.perf_counter() - t
    secs["total"] = time.perf_counter() - t0
    report(progress, 4, 4)
    if mode == "auto":
        why = f"aligned: the frames move up to {worst:.2f} px (threshold {threshold_px} px)"
    elif evidence.moving:
        why = f"aligned (alignment is on): the frames move up to {worst:.2f} px"
    else:
        why = (
            f"aligned (alignment is on), although the frames do not seem to move: registering "
            f"the sharpest neighbour frames did not make them match better (mean gain "
            f"{evidence.mean_gain:+.3f}), so the {worst:.2f} px measured may come from the "
            "changing blur; align='auto' would have used them as they are"
        )
    meta = dict(stack.metadata)
    meta["alignment"] = {"reference_frame": ref, "model": model}
    aligned = stack.with_(frames=frames, metadata=meta)
    return aligned, Alignment(
        tr, ref, model, mode, True, why, motion, residual, cov, box, secs, evidence
    )


# =========================================================================================
# Helpers
# =========================================================================================
def _estimate_or_explain(
    stack: FocalStack, ref: int, model: str, size: int, init: np.ndarray | None, cancel: CancelFn
) -> np.ndarray:
    try:
        return estimate_motion(
            stack.frames, reference=ref, model=model, max_size=size, init=init, cancel=cancel
        )
    except NoTexture as exc:
        raise AlignmentError(
            f"Cannot align the frames of '{stack.source}': {exc}. Run without alignment "
            "(align='off', --align off) if the frames do not move."
        ) from None


def _max_or_zero(v: np.ndarray) -> float:
    return float(np.max(v)) if len(v) else 0.0


def _residual(
    frames: np.ndarray, box: tuple[int, int, int, int], ref: int, model: str, cancel: CancelFn
) -> np.ndarray:
    """``(N,)`` motion left in aligned frames, measured inside the common area (coarse copy)."""
    y0, y1, x0, x1 = box
    if y1 - y0 < 16 or x1 - x0 < 16:
        return np.full(frames.shape[0], np.nan)
    inner = frames[:, y0:y1, x0:x1]
    try:
        tr = estimate_motion(
            inner, reference=ref, model=model, max_size=COARSE_SIZE, spans=(1,), cancel=cancel
        )
    except NoTexture:
        return np.full(frames.shape[0], np.nan)
    return frame_motion(tr, (y1 - y0, x1 - x0))
