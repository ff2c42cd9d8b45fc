"""Depth-map error metrics: compare a predicted depth map with ground truth.

What it is for: ``gplws eval``, the synthetic benchmark, training logs and tests. Every
metric takes ``pred, gt, mask=None`` (same-shaped arrays; ``mask`` marks the pixels to
score, combined with "``gt`` is finite") and returns a Python float, NaN when no pixel
qualifies. Depths may be in any unit (µm or frame index); MSE, MAE, RMSE, SqRel and the
bumpiness carry that unit (squared for MSE, SqRel in the unit), AbsRel and the δ
accuracies are unitless. :func:`depth_metrics` computes them all at once and
:func:`format_table` prints them as a Markdown table, one method per row.

The definitions follow the depth-from-focus literature (DDFF-12, Hazirbas et al., ACCV 2018,
and the papers that report on it); the exact formulas are in each docstring. Deliberate
differences from the DDFF evaluation code are stated where they occur.

What it is not: autofocus (defocus) metrics or surface-roughness parameters.

Examples
--------
>>> gt = np.array([[1.0, 2.0], [4.0, 8.0]])
>>> depth_metrics(gt + 1.0, gt)["MAE"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import GplwsError

__all__ = [
    "BUMPINESS_CLIP",
    "METRIC_KEYS",
    "METRIC_LABELS",
    "SCHARR_X",
    "SCHARR_Y",
    "MetricError",
    "abs_rel",
    "bumpiness",
    "delta_accuracy",
    "depth_metrics",
    "format_table",
    "hessian_norm",
    "mae",
    "mse",
    "rmse",
    "sq_rel",
    "valid_mask",
    "within_step",
]

#: Keys of :func:`depth_metrics`, in table order.
METRIC_KEYS: tuple[str, ...] = (
    "MSE",
    "MAE",
    "RMSE",
    "AbsRel",
    "SqRel",
    "Delta1",
    "Delta2",
    "Delta3",
    "WithinStep",
    "Bumpiness",
)

#: Column headers of :func:`format_table` (↓ lower is better, ↑ higher is better).
METRIC_LABELS: dict[str, str] = {
    "MSE": "MSE ↓",
    "MAE": "MAE ↓",
    "RMSE": "RMSE ↓",
    "AbsRel": "AbsRel ↓",
    "SqRel": "SqRel ↓",
    "Delta1": "δ<1.25 ↑",
    "Delta2": "δ<1.25² ↑",
    "Delta3": "δ<1.25³ ↑",
    "WithinStep": "≤1 step ↑",
    "Bumpiness": "Bump ↓",
    "seconds": "s/stack ↓",
}

#: Clip of the Hessian norm in :func:`bumpiness` (DDFF toolbox value), in depth units / px².
BUMPINESS_CLIP = 0.05

# Scharr derivative kernels exactly as scikit-image (and therefore the DDFF toolbox, which
# calls skimage.filters.scharr_v / scharr_h) applies them: smoothing [3, 10, 3] / 16 across,
# central difference [-1, 0, 1] along. Used with scipy.ndimage.correlate, so
# SCHARR_X gives f(x+1) - f(x-1) (smoothed): +2 on a ramp of slope +1 per pixel.
#: Scharr kernel for d/dx (along columns), normalised: ``[3, 10, 3]ᵀ/16 ⊗ [-1, 0, 1]``.
SCHARR_X = np.array([[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]]) / 16.0
#: Scharr kernel for d/dy (along rows): the transpose of :data:`SCHARR_X`.
SCHARR_Y = SCHARR_X.T.copy()


class MetricError(GplwsError, ValueError):
    """Prediction, ground truth or mask that cannot be compared as given."""


# ------------------------------------------------------------------------------------------
# Input handling (one helper at the boundary)
# ------------------------------------------------------------------------------------------
def _prepare(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of ``pred`` and ``gt`` and the boolean valid mask."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise MetricError(
            f"The prediction {p.shape} and the ground truth {g.shape} have different shapes; "
            "they must be the same size (crop or resample one of them)."
        )
    valid = valid_mask(g, mask)
    bad = valid & ~np.isfinite(p)
    if bad.any():
        raise MetricError(
            f"The prediction has {int(bad.sum())} NaN or infinite values where the ground truth "
            "is valid; fill them (e.g. numpy.nan_to_num) or exclude them with the mask."
        )
    return p, g, valid


def valid_mask(gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels to score: ``mask`` (if given) and ``gt`` finite.

    Parameters
    ----------
    gt
        Ground-truth depth, any shape.
    mask
        Boolean (or 0/1) array of the same shape, True where the pixel counts, or None.

    Returns
    -------
    numpy.ndarray
        bool, same shape as ``gt``.

    Raises
    ------
    MetricError
        ``mask`` of another shape.
    """
    g = np.asarray(gt)
    valid = np.isfinite(g)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != g.shape:
            raise MetricError(
                f"The mask {m.shape} and the ground truth {g.shape} have different shapes; "
                "give one True/False value per ground-truth pixel."
            )
        valid &= m.astype(bool)
    return valid


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


# ------------------------------------------------------------------------------------------
# Point-wise metrics
# ------------------------------------------------------------------------------------------
def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error ``mean((p - g)²)`` over valid pixels (unit²).

    ``pred`` and ``gt`` have the same shape and unit; ``mask`` as in :func:`valid_mask`.
    Returns NaN when no pixel is valid. Raises :class:`MetricError` on mismatched shapes
    or a non-finite prediction at a valid pixel.
    """
    p, g, v = _prepare(pred, gt, mask)
    return _mean((p[v] - g[v]) ** 2)


def mae(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error ``mean(|p - g|)`` over valid pixels (unit). See :func:`mse`."""
    p, g, v = _prepare(pred, gt, mask)
    return _mean(np.abs(p[v] - g[v]))


def rmse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error ``sqrt(mean((p - g)²))`` over valid pixels (unit); as :func:`mse`."""
    m = mse(pred, gt, mask)
    return math.sqrt(m) if not math.isnan(m) else math.nan


def abs_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Absolute relative error ``mean(|p - g| / g)`` (unitless).

    Only valid pixels with ``g > 0`` are used: the ratio is undefined at ``g = 0`` and
    meaningless for ``g < 0`` (depths on an axis whose origin is arbitrary, e.g. focus
    positions, can be negative; the value then depends on that origin). NaN when no pixel
    qualifies. See :func:`mse` for the arguments.
    """
    p, g, v = _prepare(pred, gt, mask)
    v &= g > 0
    return _mean(np.abs(p[v] - g[v]) / g[v])


def sq_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Squared relative error ``mean((p - g)² / g)`` (unit), over valid pixels with ``g > 0``.

    Pixels with ``g <= 0`` are excluded, as in :func:`abs_rel`.
    """
    p, g, v = _prepare(pred, gt, mask)
    v &= g > 0
    return _mean((p[v] - g[v]) ** 2 / g[v])


def delta_accuracy(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, threshold: float = 1.25
) -> float:
    """Threshold accuracy: fraction of pixels with ``max(p/g, g/p) < threshold``.

    ``threshold`` is ``1.25``, ``1.25²`` or ``1.25³`` for δ1, δ2, δ3. The fraction (in
    ``[0, 1]``, not percent) is taken over valid pixels with ``g > 0`` (pixels with
    ``g <= 0`` are excluded, as in :func:`abs_rel`); among those, a pixel with ``p <= 0``
    has no finite ratio and counts as a miss (as in the DDFF code, which divides by the
    number of ``g > 0`` pixels). NaN when no pixel has ``g > 0``.
    """
    p, g, v = _prepare(pred, gt, mask)
    v &= g > 0
    pv, gv = p[v], g[v]
    if not gv.size:
        return math.nan
    pos = pv > 0
    ratio = np.full(gv.shape, np.inf)
    ratio[pos] = np.maximum(pv[pos] / gv[pos], gv[pos] / pv[pos])
    return float(np.count_nonzero(ratio < threshold) / gv.size)


def within_step(
    pred: np.ndarray, gt: np.ndarray, step: float, mask: np.ndarray | None = None
) -> float:
    """Fraction of valid pixels with ``|p - g| <= step`` (e.g. one focus step, same unit).

    Raises :class:`MetricError` unless ``step`` is a positive finite number.
    """
    if not (np.isfinite(step) and step > 0):
        raise MetricError(f"The focus step must be a positive number; got {step}.")
    p, g, v = _prepare(pred, gt, mask)
    return _mean((np.abs(p[v] - g[v]) <= step).astype(np.float64))


# ------------------------------------------------------------------------------------------
# Bumpiness
# ------------------------------------------------------------------------------------------
def hessian_norm(diff: np.ndarray) -> np.ndarray:
    """Frobenius norm of the Scharr Hessian of a 2-D array, as in the DDFF bumpiness.

    With ``D_x = correlate(·, SCHARR_X)`` and ``D_y = correlate(·, SCHARR_Y)``
    (:data:`SCHARR_X` = ``[3, 10, 3]ᵀ/16 ⊗ [-1, 0, 1]``, i.e. scikit-image's normalised
    ``scharr_v``; :data:`SCHARR_Y` its transpose, ``scharr_h``)::

        dx  = D_x(diff)    dy  = D_y(diff)
        dxx = D_x(dx)      dxy = D_y(dx)      dyx = D_x(dy)      dyy = D_y(dy)
        norm = sqrt(dxx² + dxy² + dyx² + dyy²)

    On a smooth ``f`` each Scharr pass gives twice the derivative (``f(x+1) - f(x-1)``
    smoothed), so ``dxx ≈ 4 ∂²f/∂x²`` and ``dxy = dyx ≈ 4 ∂²f/∂x∂y`` (unit / px²).

    Parameters
    ----------
    diff
        ``(H, W)`` float array (e.g. ``pred - gt``), finite everywhere.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64. Values within 2 pixels of the border depend on the padding
        (``scipy.ndimage`` mode ``"nearest"``); :func:`bumpiness` never uses them.
    """
    d = np.asarray(diff, dtype=np.float64)
    dx = ndi.correlate(d, SCHARR_X, mode="nearest")
    dy = ndi.correlate(d, SCHARR_Y, mode="nearest")
    dxx = ndi.correlate(dx, SCHARR_X, mode="nearest")
    dxy = ndi.correlate(dx, SCHARR_Y, mode="nearest")
    dyx = ndi.correlate(dy, SCHARR_X, mode="nearest")
    dyy = ndi.correlate(dy, SCHARR_Y, mode="nearest")
    return np.sqrt(dxx**2 + dxy**2 + dyx**2 + dyy**2)


def bumpiness(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, clip: float = BUMPINESS_CLIP
) -> float:
    """Bumpiness of the error surface (DDFF toolbox definition, Hazirbas et al. 2018).

    ::

        diff = pred - gt
        H    = hessian_norm(diff)           # Frobenius norm of the Scharr Hessian
        bumpiness = 100 · mean(min(H, clip))   over the scored pixels

    with ``clip = 0.05`` (depth unit / px²) by default. It is zero for a constant or linear
    (tilted-plane) error and grows with curvature of the error; it is not scale-free:
    express ``pred`` and ``gt`` in the unit the number is to be compared in.

    Kernel: the DDFF evaluation code calls ``skimage.filters.scharr_v`` / ``scharr_h``,
    i.e. the *normalised* Scharr kernels ``[3, 10, 3]ᵀ/16 ⊗ [-1, 0, 1]`` (not OpenCV's
    unnormalised ``cv2.Scharr`` with ``3, 10, 3``, which would give values 256 times
    larger and saturate the clip); :data:`SCHARR_X` and :data:`SCHARR_Y` reproduce them.

    Border handling (differs from the DDFF code): a pixel is scored only if its whole
    5×5 neighbourhood (the support of two 3×3 passes) lies inside the image and inside
    the valid mask, so padding never enters the result and invalid pixels do not create
    bumps around them. The DDFF code scores every ``g > 0`` pixel, using reflected
    (scikit-image >= 0.19) or zeroed (older) borders and the raw ``pred - 0`` at invalid
    pixels. Hence a linear error gives exactly 0 here.

    Parameters
    ----------
    pred, gt
        ``(H, W)`` depth maps in the same unit.
    mask
        Valid pixels (see :func:`valid_mask`).
    clip
        Upper clip of the Hessian norm (> 0).

    Returns
    -------
    float
        NaN when no pixel has a fully valid 5×5 neighbourhood (e.g. images smaller than 5×5).

    Raises
    ------
    MetricError
        Not 2-D, mismatched shapes, or a non-finite prediction at a valid pixel.
    """
    p, g, v = _prepare(pred, gt, mask)
    if p.ndim != 2:
        raise MetricError(f"Bumpiness needs 2-D depth maps (H, W); got shape {p.shape}.")
    scored = ndi.binary_erosion(v, structure=np.ones((5, 5), bool), border_value=0)
    if not scored.any():
        return math.nan
    diff = np.where(v, p - g, 0.0)  # values at invalid pixels never reach a scored pixel
    return float(100.0 * np.minimum(hessian_norm(diff)[scored], clip).mean())


# ------------------------------------------------------------------------------------------
# All at once, and the table
# ------------------------------------------------------------------------------------------
def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    focus_step: float | None = None,
) -> dict[str, float]:
    """All depth metrics of one prediction, keyed as in :data:`METRIC_KEYS`.

    ``MSE``, ``MAE``, ``RMSE`` (:func:`mse`, ...), ``AbsRel``, ``SqRel``, ``Delta1``–``Delta3``
    (:func:`delta_accuracy` at ``1.25``, ``1.25²``, ``1.25³``; fractions), ``WithinStep``
    (:func:`within_step` with ``focus_step``; NaN when ``focus_step`` is None) and
    ``Bumpiness`` (:func:`bumpiness`; NaN for non-2-D maps).

    Parameters
    ----------
    pred, gt
        Depth maps of the same shape and unit (2-D for the bumpiness).
    mask
        Valid pixels (see :func:`valid_mask`).
    focus_step
        One focus step in the depth unit (e.g. ``FocalStack.focus_step_um``), or None.

    Returns
    -------
    dict[str, float]
        Every key of :data:`METRIC_KEYS`, NaN where undefined.

    Raises
    ------
    MetricError
        Mismatched shapes, a non-finite prediction at a valid pixel, or a bad step.
    """
    p, g, v = _prepare(pred, gt, mask)  # validate once; the helpers below re-check cheaply
    out = {
        "MSE": mse(p, g, v),
        "MAE": mae(p, g, v),
    }
    out["RMSE"] = math.sqrt(out["MSE"]) if not math.isnan(out["MSE"]) else math.nan
    out["AbsRel"] = abs_rel(p, g, v)
    out["SqRel"] = sq_rel(p, g, v)
    for i in (1, 2, 3):
        out[f"Delta{i}"] = delta_accuracy(p, g, v, threshold=1.25**i)
    out["WithinStep"] = (
        within_step(p, g, float(focus_step), v) if focus_step is not None else math.nan
    )
    out["Bumpiness"] = bumpiness(p, g, v) if p.ndim == 2 else math.nan
    return out


def _format_value(value: object, digits: int) -> str:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "–"
    return f"{x:.{digits}g}"


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: tuple[str, ...] | None = None,
    digits: int = 4,
    units: str | None = None,
) -> str:
    """A Markdown table with one row per method and one column per metric.

    Parameters
    ----------
    rows
        ``{method: {metric: value}}``, e.g. :func:`depth_metrics` results (extra keys such
        as ``"seconds"`` are kept, after the standard ones).
    columns
        Metric keys to show, in order; default: the :data:`METRIC_KEYS` present in any row,
        then other keys in order of first appearance.
    digits
        Significant digits.
    units
        Depth unit (e.g. ``"µm"``), written under the table when given.

    Returns
    -------
    str
        The table; missing or NaN values are shown as ``–``.

    Examples
    --------
    >>> print(format_table({"sml": {"MAE": 1.5, "RMSE": 2.0}}))
    | method | MAE ↓ | RMSE ↓ |
    |---|---:|---:|
    | sml | 1.5 | 2 |
    """
    if columns is None:
        present: list[str] = []
        for metrics in rows.values():
            for key in metrics:
                if key not in present:
                    present.append(key)
        columns = tuple(k for k in METRIC_KEYS if k in present) + tuple(
            k for k in present if k not in METRIC_KEYS
        )
    header = "| method | " + " | ".join(METRIC_LABELS.get(c, c) for c in columns) + " |"
    rule = "|---|" + "".join("---:|" for _ in columns)
    lines = [header, rule]
    for method, metrics in rows.items():
        cells = [_format_value(metrics.get(c, math.nan), digits) for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if units:
        lines.append("")
        lines.append(
            f"Depth unit: {units}. MSE in {units}², SqRel, MAE, RMSE in {units}; AbsRel and δ "
            "unitless; δ and ≤1 step are fractions of pixels; Bump = DDFF bumpiness (×100)."
        )
    return "\n".join(lines)
