"""Per-pixel focus peaks: the sub-frame peak of a focus curve and its confidence.

:func:`peak_offset` fits three points around each pixel's best frame (``"gaussian"``,
``"parabolic"`` or ``"none"``); :func:`focus_confidence` says how clearly the curve peaks.
Both work on arrays that the classical engine accumulates; neither reads frames.
"""

from __future__ import annotations

import numpy as np

from napari_gplws.errors import StackError

#: Sub-frame peak interpolation methods accepted by :func:`depth_from_focus`.
INTERPOLATIONS = ("gaussian", "parabolic", "none")


# --------------------------------------------------------------------------------------
# per-pixel maths on small arrays (used per band)
# --------------------------------------------------------------------------------------
def peak_offset(
    left: np.ndarray, centre: np.ndarray, right: np.ndarray, method: str = "gaussian"
) -> np.ndarray:
    """Sub-frame offset of a peak from three samples at frames ``k−1, k, k+1``.

    Parameters
    ----------
    left, centre, right
        Focus values, arrays of one shape (float32), with ``centre`` the maximum.
    method
        ``"gaussian"``: vertex of the parabola through ``(−1, ln l), (0, ln c), (1, ln r)``,
        used where all three values are > 0, else the parabolic fit; ``"parabolic"``:
        vertex of the parabola through the values; ``"none"``: zero.

    Returns
    -------
    numpy.ndarray
        float32 offset in frames, clamped to ``[-0.5, 0.5]``; 0 where the three points
        do not bend downwards (no peak).

    Raises
    ------
    StackError
        For an unknown ``method``.

    Examples
    --------
    >>> x = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) - 0.3) ** 2)
    >>> round(float(peak_offset(x[:1], x[1:2], x[2:], "gaussian")[0]), 6)
    0.3
    """
    if method not in INTERPOLATIONS:
        raise StackError(
            f"Unknown interpolation {method!r}; choose one of: {', '.join(INTERPOLATIONS)}."
        )
    left = np.asarray(left, np.float32)
    centre = np.asarray(centre, np.float32)
    right = np.asarray(right, np.float32)
    if method == "none":
        return np.zeros(np.broadcast(left, centre, right).shape, np.float32)
    num = left - right
    den = left - 2.0 * centre + right
    if method == "gaussian":
        tiny = np.float32(np.finfo(np.float32).tiny)
        positive = (left > 0) & (centre > 0) & (right > 0)
        ll = np.log(np.maximum(left, tiny))
        lc = np.log(np.maximum(centre, tiny))
        lr = np.log(np.maximum(right, tiny))
        np.copyto(num, ll - lr, where=positive)
        np.copyto(den, ll - 2.0 * lc + lr, where=positive)
    bends = den < 0
    off = np.zeros_like(num)
    np.divide(num, 2.0 * den, out=off, where=bends)
    np.clip(off, -0.5, 0.5, out=off)
    return off


def focus_confidence(peak: np.ndarray, mean: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Confidence of a focus peak from the pixel's focus curve.

    ``c = (max − mean) / (max + eps)`` where ``max`` and ``mean`` are the maximum and the
    mean over frames of the pixel's (non-negative) focus curve. It is the product of two
    ratios that each lie in ``[0, 1]``: the curve's dynamic range ``(max − min)/max`` (how
    much sharper the best frame is than the worst: near 0 where no frame shows texture,
    since noise gives every frame about the same focus value) and the peak's prominence
    ``(max − mean)/(max − min)`` (near 1 for one sharp peak, ~0.5 for a flat or noisy
    curve). Flat, textureless pixels therefore score near 0 and a well-defined peak over
    a deep stack near 1.

    Parameters
    ----------
    peak, mean
        ``(H, W)`` float32 maximum and mean of the focus curve (values ≥ 0).
    eps
        Small positive number keeping an all-zero curve at confidence 0.

    Returns
    -------
    numpy.ndarray
        float32 in ``[0, 1]``, same shape.
    """
    peak = np.asarray(peak, np.float32)
    c = np.subtract(peak, mean, dtype=np.float32)
    c /= peak + np.float32(max(eps, np.finfo(np.float32).tiny))
    np.clip(c, 0.0, 1.0, out=c)
    return c
