"""Image registration primitives for frame alignment (OpenCV; no napari, no files).

Shrinking frames to a grey working copy, OpenCV's enhanced-correlation-coefficient
registration of one pair projected on a transform model, conversions between the working
copy's and the full frame's pixel coordinates, and the *match gain* that tells real motion
from the apparent motion a changing blur produces (see :mod:`napari_gplws.dff.align`).
"""

from __future__ import annotations

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, check_cancel

#: OpenCV's pre-smoothing of both images before ECC (kernel size, pixels).
_ECC_GAUSS = 5


class NoTexture(Exception):
    pass


def shrink_factor(shape: tuple[int, int], max_size: int) -> int:
    return max(1, int(np.ceil(max(shape) / float(max_size))))


def small_grey(frame: np.ndarray, factor: int) -> np.ndarray:
    """Luminance, shrunk by an integer ``factor`` (area average), as float32."""
    import cv2

    g = frame
    if factor > 1:  # shrink first (cheap on the input dtype), then convert
        h, w = (g.shape[0] // factor) * factor, (g.shape[1] // factor) * factor
        src = g[:h, :w]
        if src.dtype not in (np.uint8, np.uint16, np.float32):
            src = src.astype(np.float32)
        g = cv2.resize(src, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    g = g.astype(np.float32)
    return np.ascontiguousarray(g if g.ndim == 2 else g.mean(axis=-1))


def band_pass(g: np.ndarray) -> np.ndarray:
    """Difference of Gaussians (1 and 4 px): the detail registration relies on."""
    import cv2

    return cv2.GaussianBlur(g, (0, 0), 1.0) - cv2.GaussianBlur(g, (0, 0), 4.0)


def match_gain(band_a: np.ndarray, grey_b: np.ndarray, m: np.ndarray) -> float:
    """Share of the band-pass decorrelation of a pair removed by warping ``b`` with ``m``."""
    import cv2

    h, w = grey_b.shape
    warped = cv2.warpAffine(
        grey_b, np.asarray(m[:2], np.float64), (w, h),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )
    my, mx = max(2, h // 12), max(2, w // 12)
    inner = (slice(my, h - my), slice(mx, w - mx))
    a = band_a[inner]
    r0 = correlation(a, band_pass(grey_b)[inner])
    r1 = correlation(a, band_pass(warped)[inner])
    return (r1 - r0) / max(1.0 - r0, 1e-9)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def to33(a: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2] = a[:2]
    return m


def rescale(a: np.ndarray, factor: float) -> np.ndarray:
    """A transform on a copy shrunk ``factor`` times, in full-resolution coordinates.

    Pixel ``i`` of the shrunk copy averages full pixels ``i·f … i·f + f − 1``, so full
    ``x = f·x_small + (f − 1) / 2``.
    """
    s = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2], [0, 0, 1.0]])
    return s @ to33(a) @ np.linalg.inv(s)


def project(a: np.ndarray, model: str) -> np.ndarray:
    """Project a 2×3 affine onto ``model`` (least squares on the linear part)."""
    out = np.array(a[:2], np.float64)
    lin = out[:, :2]
    if model == "shift":
        out[:, :2] = np.eye(2)
    elif model == "shift+scale":
        out[:, :2] = np.eye(2) * (lin[0, 0] + lin[1, 1]) / 2.0
    elif model == "shift+scale+rotation":
        c, s = (lin[0, 0] + lin[1, 1]) / 2.0, (lin[1, 0] - lin[0, 1]) / 2.0
        out[:, :2] = np.array([[c, -s], [s, c]])
    return out


def solve_transforms(
    pairs: list[tuple[int, int]],
    transforms: list[np.ndarray],
    weights: list[float],
    n: int,
    ref: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """``(n, 2, 3)`` per-frame transforms that agree best with pair estimates.

    Pair ``(a, b)`` with 3×3 transform ``P`` says ``X_b ≈ P X_a``, where ``X_k`` takes the
    reference frame's pixels to frame ``k``'s and ``X_ref`` is the identity. Each
    disagreement is measured in pixels at the frame's corners and centre, weighted, and
    the sum of squares minimised (linear least squares, sparse normal equations).
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    h, w = shape
    pts = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1], [(w - 1) / 2, (h - 1) / 2]])
    basis = np.zeros((len(pts), 2, 6))  # X(q) = basis(q) @ (the six entries of X, row-major)
    basis[:, 0, :2] = basis[:, 1, 3:5] = pts
    basis[:, 0, 2] = basis[:, 1, 5] = 1.0
    k = 2 * len(pts)
    data, rows, cols, rhs = [], [], [], []
    for i, ((a, b), p, wt) in enumerate(zip(pairs, transforms, weights)):
        sw = np.sqrt(wt)
        blocks = ((b, sw * basis.reshape(k, 6)), (a, -sw * (p[:2, :2] @ basis).reshape(k, 6)))
        for f, block in blocks:
            r, c = np.meshgrid(np.arange(k) + i * k, np.arange(6) + 6 * f, indexing="ij")
            data.append(block.ravel())
            rows.append(r.ravel())
            cols.append(c.ravel())
        rhs.append(np.tile(sw * p[:2, 2], len(pts)))
    out = np.repeat(np.eye(2, 3).reshape(1, 6), n, axis=0)
    if not pairs:
        return out.reshape(n, 2, 3)
    m = sparse.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(k * len(pairs), 6 * n),
    )
    keep = np.ones(6 * n, bool)
    keep[6 * ref : 6 * ref + 6] = False
    y = np.concatenate(rhs) - m[:, ~keep] @ out[ref]
    m = m[:, keep]
    out[np.arange(n) != ref] = np.asarray(spsolve((m.T @ m).tocsc(), m.T @ y)).reshape(-1, 6)
    return out.reshape(n, 2, 3)


def ecc(template: np.ndarray, moving: np.ndarray, model: str, start: np.ndarray | None) -> np.ndarray:
    """Transform (3×3, small-copy pixels) taking ``template`` coordinates to ``moving``'s."""
    import cv2

    if template.std() < 1e-6 or moving.std() < 1e-6:
        raise NoTexture("a frame is uniform (no texture to register)")
    motion = cv2.MOTION_TRANSLATION if model == "shift" else cv2.MOTION_AFFINE
    w = np.eye(2, 3, dtype=np.float32) if start is None else start[:2].astype(np.float32)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60 if start is None else 15, 1e-5)
    try:
        _, w = cv2.findTransformECC(template, moving, w, motion, crit, None, _ECC_GAUSS)
    except cv2.error:
        # No convergence (too little texture or too much blur): try the translation alone,
        # then give up on this pair (treated as not moving).
        try:
            w = np.eye(2, 3, dtype=np.float32)
            _, w = cv2.findTransformECC(
                template, moving, w, cv2.MOTION_TRANSLATION, crit, None, _ECC_GAUSS
            )
        except cv2.error:
            w = np.eye(2, 3, dtype=np.float32)
    return to33(project(w.astype(np.float64), model))


def pair_transforms(
    grey: list[np.ndarray],
    model: str,
    spans: tuple[int, ...],
    init: np.ndarray | None,
    factor: int,
    cancel: CancelFn,
) -> dict[tuple[int, int], np.ndarray]:
    """Register every pair ``(a, a + d)``, ``d`` in ``spans``: 3×3 transforms, small-copy pixels."""
    n = len(grey)
    sharp = [float(band_pass(g).var()) for g in grey]
    out: dict[tuple[int, int], np.ndarray] = {}
    for d in sorted({1, *(int(v) for v in spans)}):
        for a in range(n - d):
            check_cancel(cancel)
            b = a + d
            start = None
            if init is not None:  # the pair transform implied by the initial estimate
                start = rescale(to33(init[b]) @ np.linalg.inv(to33(init[a])), 1.0 / factor)
            elif d > 1 and all((j, j + 1) in out for j in range(a, b)):
                start = np.eye(3)
                for j in range(a, b):  # through the neighbours already registered
                    start = out[(j, j + 1)] @ start
            out[(a, b)] = _pair(grey, sharp, a, b, model, start)
    return out


def _pair(
    grey: list[np.ndarray], sharp: list[float], a: int, b: int, model: str, start: np.ndarray | None
) -> np.ndarray:
    """Transform (3×3, small-copy pixels) from frame ``a``'s coordinates to frame ``b``'s.

    The sharper frame of the pair is ECC's template: with the blurrier one as template the
    changing blur biased the estimate more (on a simulated stack of pits, twice as much).
    """
    if sharp[b] <= sharp[a]:
        return ecc(grey[a], grey[b], model, start)
    back = None if start is None else np.linalg.inv(start)
    return np.linalg.inv(ecc(grey[b], grey[a], model, back))
