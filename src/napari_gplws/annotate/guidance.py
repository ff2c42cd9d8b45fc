"""Where an annotator should look: suspicion weighted by how sure the focus curve is.

The Ground truth editor compares a sample's ground truth with references computed from its
own stack: the peak of each pixel's focus curve and, when asked, a model's prediction. Where
the stack shows no texture the focus curve is flat, its peak is noise and so is the
prediction: a disagreement there says nothing about the label. So:

* each pixel's **confidence** is how clearly its focus curve peaks
  (:func:`curve_confidence`, the measure the classical reconstruction reports,
  :func:`napari_gplws.dff.peaks.focus_confidence`, set to 0 where the best frame shows less
  than :data:`TEXTURE_FLOOR` of the image's typical focus response);
* a pixel is **suspect** when its label differs from every reference by more than the
  threshold *and* its confidence is at least :data:`MIN_CONFIDENCE`; where the confidence
  is lower it is **unknown**, never suspect (:func:`suspicion`);
* suspect regions (connected suspect pixels) are ranked by **size × disagreement ×
  confidence** (:func:`rank_regions`): a large, clearly wrong patch on a well-textured
  area comes first, a thin rim of small disagreements last.

Numpy and SciPy only; the editor's session (:class:`~napari_gplws.annotate.EditSession`)
and the dock call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws.errors import GplwsError

__all__ = [
    "MIN_CONFIDENCE",
    "TEXTURE_FLOOR",
    "Suspicion",
    "curve_confidence",
    "rank_regions",
    "suspicion",
]

#: Focus-curve confidence from which a disagreement counts as suspect (below: unknown).
MIN_CONFIDENCE = 0.4
#: A pixel whose best focus response is below this share of the image's 90th percentile
#: shows no texture at all: confidence 0.
TEXTURE_FLOOR = 0.05


@dataclass(frozen=True)
class Suspicion:
    """Per-pixel guidance of one sample (all ``(H, W)``).

    Attributes
    ----------
    suspect
        Confident disagreement: the label differs from every reference by more than the
        threshold where the focus curve peaks clearly.
    unknown
        The focus curve is too flat to judge the label (low texture).
    disagreement
        Smallest absolute difference between the label and a reference (µm).
    confidence
        Focus-curve confidence in ``[0, 1]`` (1 where no curve was computed).
    """

    suspect: np.ndarray
    unknown: np.ndarray
    disagreement: np.ndarray
    confidence: np.ndarray

    @property
    def suspect_fraction(self) -> float:
        """Share of all pixels that are suspect."""
        return float(self.suspect.mean())

    @property
    def unknown_fraction(self) -> float:
        """Share of all pixels whose label cannot be judged (low texture)."""
        return float(self.unknown.mean())


def curve_confidence(curves: np.ndarray) -> np.ndarray:
    """How clearly each pixel's focus curve peaks, in ``[0, 1]`` (see the module docstring).

    Parameters
    ----------
    curves
        ``(N, H, W)`` non-negative focus curves (one focus measure per frame).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32.
    """
    from napari_gplws.dff.peaks import focus_confidence

    c = np.asarray(curves, np.float32)
    if c.ndim != 3 or c.shape[0] < 2:
        raise GplwsError(f"Focus curves must be (frames, H, W) with 2+ frames; got {c.shape}.")
    peak, mean = c.max(axis=0), c.mean(axis=0)
    typical = float(np.percentile(peak, 90))
    eps = max(typical * 1e-6, float(np.finfo(np.float32).tiny))
    conf = focus_confidence(peak, mean, eps)
    conf[peak < TEXTURE_FLOOR * typical] = 0.0
    return conf


def suspicion(
    depth_um: np.ndarray,
    references: Sequence[np.ndarray | None],
    curves: np.ndarray | None,
    threshold_um: float,
    min_confidence: float = MIN_CONFIDENCE,
) -> Suspicion:
    """Suspect and unknown pixels of a ground truth (see the module docstring).

    Parameters
    ----------
    depth_um
        ``(H, W)`` ground truth in µm.
    references
        Maps to compare with (µm); ``None`` entries are skipped.
    curves
        ``(N, H, W)`` focus curves of the stack, or ``None`` (every pixel then counts as
        confident).
    threshold_um
        Disagreement above which a confident pixel is suspect (> 0).
    min_confidence
        Confidence below which a pixel is unknown, in ``[0, 1]``.

    Raises
    ------
    GplwsError
        No reference, a threshold or confidence out of range, or shapes that differ.
    """
    refs = [np.asarray(r, np.float32) for r in references if r is not None]
    if not refs:
        raise GplwsError("Compute the focus curves or a prediction first.")
    if not threshold_um > 0:
        raise GplwsError(f"The suspect threshold must be above 0 µm; got {threshold_um}.")
    if not 0.0 <= min_confidence <= 1.0:
        raise GplwsError(f"The minimum confidence must be in [0, 1]; got {min_confidence}.")
    d = np.asarray(depth_um, np.float32)
    if any(r.shape != d.shape for r in refs):
        raise GplwsError(f"A reference map does not match the ground truth's {d.shape}.")
    with np.errstate(invalid="ignore"):
        diffs = np.stack([np.abs(d - r) for r in refs])
    disagreement = np.where(np.isnan(diffs), np.inf, diffs).min(axis=0)
    disagreement[~np.isfinite(disagreement)] = np.nan  # no reference has a value
    conf = np.ones(d.shape, np.float32) if curves is None else curve_confidence(curves)
    unknown = conf < min_confidence
    with np.errstate(invalid="ignore"):
        suspect = (disagreement > threshold_um) & ~unknown
    return Suspicion(suspect, unknown, disagreement, conf)


def rank_regions(
    guidance: Suspicion, exclude: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Connected suspect regions, most worth a look first.

    Each region is ``{"bbox": (y0, y1, x0, x1), "centroid": (y, x), "pixels": n,
    "disagreement_um": mean, "confidence": mean, "score": n · disagreement · confidence}``
    (``bbox`` end-exclusive); regions are sorted by ``score``, largest first. Pixels in
    ``exclude`` (regions already visited) are left out.
    """
    mask = guidance.suspect if exclude is None else guidance.suspect & ~np.asarray(exclude, bool)
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = ndi.sum_labels(mask, labels, index)
    dis = ndi.mean(np.nan_to_num(guidance.disagreement), labels, index)
    conf = ndi.mean(guidance.confidence, labels, index)
    centroids = ndi.center_of_mass(mask, labels, index)
    boxes = ndi.find_objects(labels)
    out = []
    for k in range(n):
        ys, xs = boxes[k]
        out.append({
            "bbox": (ys.start, ys.stop, xs.start, xs.stop),
            "centroid": (float(centroids[k][0]), float(centroids[k][1])),
            "pixels": int(sizes[k]),
            "disagreement_um": float(dis[k]),
            "confidence": float(conf[k]),
            "score": float(sizes[k] * dis[k] * conf[k]),
            "label": k + 1,
        })  # fmt: skip
    out.sort(key=lambda r: r["score"], reverse=True)
    return out
