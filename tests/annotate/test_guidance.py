"""Guidance of the ground-truth editor: suspicion weighted by the focus curve's confidence,
suspect regions ranked by size × disagreement × confidence."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gplws.annotate.guidance import curve_confidence, rank_regions, suspicion
from napari_gplws.errors import GplwsError


def curves(h=40, w=60, n=10, peak_at=4):
    """Focus curves: a clear peak on the left half, flat noise on the right half."""
    rng = np.random.default_rng(0)
    c = rng.uniform(0.9, 1.1, (n, h, w)).astype(np.float32)
    k = np.arange(n)[:, None, None]
    c[:, :, : w // 2] += 20.0 * np.exp(-0.5 * (k - peak_at) ** 2)
    return c


def test_flat_curves_are_unknown_not_suspect():
    c = curves()
    conf = curve_confidence(c)
    assert conf[:, :30].min() > 0.6 and conf[:, 30:].max() < 0.4
    depth = np.zeros((40, 60), np.float32)
    peak = np.full_like(depth, 8.0)  # every reference disagrees by 8 µm
    g = suspicion(depth, [peak, None], c, threshold_um=2.0)
    assert g.suspect[:, :30].all() and not g.suspect[:, 30:].any()
    assert g.unknown[:, 30:].all() and g.suspect_fraction == pytest.approx(0.5)


def test_regions_are_ranked_by_size_disagreement_and_confidence():
    c = curves()
    depth = np.zeros((40, 60), np.float32)
    ref = depth.copy()
    ref[2:6, 2:6] = 10.0  # small, far off
    ref[20:35, 5:25] = 3.0  # large, a little off
    ref[20:35, 35:55] = 9.0  # large, far off, but textureless: unknown
    g = suspicion(depth, [ref], c, threshold_um=2.0)
    ranked = rank_regions(g)
    assert len(ranked) == 2
    big, small = ranked
    assert big["pixels"] == 15 * 20 and small["pixels"] == 16
    assert big["score"] == pytest.approx(big["pixels"] * big["disagreement_um"] * big["confidence"])
    assert rank_regions(g, exclude=g.suspect)[:1] == []
    with pytest.raises(GplwsError, match="threshold"):
        suspicion(depth, [ref], c, threshold_um=0.0)
