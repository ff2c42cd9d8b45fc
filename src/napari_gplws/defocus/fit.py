"""Signed defocus from several frames at known focus positions (direction from geometry).

What it is for: a single frame tells LDSE-NET how *far* out of focus a region is much better
than in which *direction* (docs/autofocus.md, "How far to trust the sign"). Two or more
frames a known step apart settle the direction: moving the focus drive by ``Δ`` changes the
defocus of every region by exactly ``Δ``, so the region's best-focus position ``b`` must
satisfy ``|p_k − b| ≈ m_k`` for every frame ``k`` (positions ``p_k``, network magnitudes
``m_k``). One frame at 3 µm from focus reads 3 µm either way; a second frame 2 µm further
up reads 5 µm if the focus is below, 1 µm if it is above.

:func:`fit_best_focus` finds ``b`` by minimising, over all real ``b``,

``Σ_k w_k (|p_k − b| − m_k)² / σ² + Σ_k softplus(−s_k(b) · λ_k)``

where ``s_k(b) = sign(p_k − b)`` and ``λ_k`` is the network's own sign logit of frame ``k``
(a weak prior that only matters where the geometry is ambiguous, e.g. both frames far out
of focus), and ``σ`` is the magnitude's error scale. The cost is a quadratic on each interval
between sorted positions (the signs are constant there), so the exact global minimum is
found by solving each interval in closed form: no iterative optimiser, no local minima.
(Written here because no maintained library fits this piecewise "V" model; scipy's scalar
minimisers would need a bracket and can stop in the wrong interval.)

The direction confidence of frame ``k`` compares the best cost with the best cost of the
other direction for that frame (``b`` on the other side of ``p_k``): with the difference
``ΔC``, the chosen direction is ``1/(1 + e^{−ΔC/2})`` likely, reported as
``2·P − 1 = tanh(ΔC/4)`` in [0, 1], the same scale as the single-frame confidence
``|tanh(s)|``.

What it is not: a focus-curve search
(:func:`napari_gplws.defocus.regions.best_focus_from_curve` needs the best focus bracketed
by the frames); this works with frames all on one side of focus.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MAGNITUDE_SIGMA_UM", "FrameFit", "fit_best_focus"]

#: Error scale (µm) of the magnitude output used by the fit: the packaged weights' magnitude
#: MAE is about 0.9 µm for |z| <= 5 µm (model card), i.e. σ ≈ 1.25 · MAE ≈ 1.1 µm.
MAGNITUDE_SIGMA_UM = 1.1


@dataclass(frozen=True)
class FrameFit:
    """Result of :func:`fit_best_focus` for one region.

    Attributes
    ----------
    best_focus_um
        Fitted best-focus position (µm, same axis as the positions); NaN with fewer than
        two usable frames.
    defocus_um
        ``(N,)`` signed defocus of each frame, ``position − best_focus_um``.
    confidence
        ``(N,)`` direction confidence in [0, 1] (see the module docstring).
    rms_residual_um
        Root-mean-square of ``|p_k − b| − m_k`` over the usable frames (µm): large values
        mean the magnitudes do not fit one focus position (e.g. the specimen moved).
    """

    best_focus_um: float
    defocus_um: np.ndarray
    confidence: np.ndarray
    rms_residual_um: float


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def fit_best_focus(
    positions_um: Sequence[float],
    magnitudes_um: Sequence[float],
    sign_logits: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    sigma_um: float = MAGNITUDE_SIGMA_UM,
) -> FrameFit:
    """Best-focus position of one region from the unsigned defocus of several frames.

    Parameters
    ----------
    positions_um
        ``(N,)`` focus-drive positions of the frames (µm), any order.
    magnitudes_um
        ``(N,)`` unsigned defocus estimates (µm); NaN frames are ignored.
    sign_logits
        ``(N,)`` the network's sign logits (``P(positive) = sigmoid(logit)``; a region's is
        ``atanh(predicted / magnitude)``), a prior that matters where the geometry is
        ambiguous; ``None`` for geometry alone.
    weights
        ``(N,)`` non-negative weights (e.g. tiles per region); default 1.
    sigma_um
        Error scale of the magnitudes (µm).

    Returns
    -------
    FrameFit

    Raises
    ------
    ValueError
        When the arrays differ in length or ``sigma_um`` is not positive.
    """
    p = np.asarray(positions_um, np.float64).ravel()
    m = np.asarray(magnitudes_um, np.float64).ravel()
    lam = np.zeros_like(p) if sign_logits is None else np.asarray(sign_logits, np.float64).ravel()
    w = np.ones_like(p) if weights is None else np.asarray(weights, np.float64).ravel()
    if not (len(p) == len(m) == len(lam) == len(w)):
        raise ValueError(
            f"positions ({len(p)}), magnitudes ({len(m)}), sign logits ({len(lam)}) and "
            f"weights ({len(w)}) must have one value per frame."
        )
    if not sigma_um > 0:
        raise ValueError(f"sigma_um must be positive; got {sigma_um}.")
    n = len(p)
    nan_fit = FrameFit(float("nan"), np.full(n, np.nan), np.full(n, np.nan), float("nan"))
    ok = np.isfinite(p) & np.isfinite(m) & np.isfinite(w) & (w > 0)
    if ok.sum() < 2 or np.ptp(p[ok]) <= 0:
        return nan_fit
    lam = np.where(np.isfinite(lam), lam, 0.0)
    pu, mu, lu, wu = p[ok], np.maximum(m[ok], 0.0), lam[ok], w[ok] / w[ok].mean()
    inv_var = 1.0 / sigma_um**2

    def cost(b: float, s: np.ndarray) -> float:
        geo = wu * (s * (pu - b) - mu) ** 2 * inv_var
        return float(geo.sum() + _softplus(-s * lu).sum())

    # Intervals between sorted positions; on each the signs s_k = sign(p_k − b) are fixed.
    edges = np.concatenate([[-np.inf], np.unique(pu), [np.inf]])
    cands: list[tuple[float, float, float, float]] = []  # (cost, b, interval lo, hi)
    for lo, hi in itertools.pairwise(edges):
        if not np.isfinite(lo):
            inside = hi - 1.0
        elif not np.isfinite(hi):
            inside = lo + 1.0
        else:
            inside = 0.5 * (lo + hi)
        s = np.where(pu > inside, 1.0, -1.0)
        # d/db Σ w (s(p − b) − m)² = 0  ->  b = Σ w (p − s m) / Σ w
        b = float(np.clip(np.sum(wu * (pu - s * mu)) / np.sum(wu), lo, hi))
        cands.append((cost(b, s), b, float(lo), float(hi)))
    best_cost, best_b, _, _ = min(cands, key=lambda c: c[0])
    defocus = p - best_b
    conf = np.full(n, np.nan)
    for k in np.flatnonzero(np.isfinite(p)):
        # Best cost with b on the other side of p_k: the other direction for frame k.
        if best_b < p[k]:
            other = [c[0] for c in cands if c[2] >= p[k]]
        else:
            other = [c[0] for c in cands if c[3] <= p[k]]
        if not other:  # p_k is outside the usable frames' span: b = p_k is the limit
            s_at = np.where(pu > p[k], 1.0, -1.0)
            other = [cost(float(p[k]), s_at)]
        conf[k] = float(np.tanh(max(min(other) - best_cost, 0.0) / 4.0))
    resid = np.abs(pu - best_b) - mu
    rms = float(np.sqrt(np.mean(resid**2)))
    return FrameFit(best_b, defocus, conf, rms)
