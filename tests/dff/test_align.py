"""Tests of frame alignment (napari_gplws.dff.align) and its use by reconstruct()."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cv2")

from napari_gplws.api import reconstruct
from napari_gplws.dff import align as align_mod
from napari_gplws.dff.align import (
    AUTO_MIN_GAIN,
    AlignmentError,
    align_stack,
    common_box,
    frame_motion,
)
from napari_gplws.errors import StackError
from napari_gplws.sim.motion import moving_stack
from napari_gplws.stack import FocalStack

SIZE = 320


def _rms_px(est: np.ndarray, true: np.ndarray, shape: tuple[int, int]) -> float:
    """RMS over frames and a pixel grid of the distance between two sets of transforms."""
    h, w = shape
    yy, xx = np.mgrid[0:h:8, 0:w:8]
    p = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    d = est @ p - true @ p
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def _psnr(aif: np.ndarray, ideal: np.ndarray, box: tuple[int, int, int, int]) -> float:
    y0, y1, x0, x1 = box
    a = aif.astype(np.float64) / np.iinfo(aif.dtype).max
    return float(10 * np.log10(1.0 / np.mean((a - ideal)[y0:y1, x0:x1] ** 2)))


@pytest.fixture(scope="module")
def breathing():
    """16 frames, 5 % breathing and 0.6/0.3 px per frame of drift."""
    return moving_stack(
        family="smooth", n_frames=16, shape=(SIZE, SIZE), blur_px_per_um=0.25,
        breathing=0.05, drift_px=(0.6, 0.3), seed=1,
    )


def test_breathing_and_drift_recovered(breathing):
    aligned, al = align_stack(breathing.stack, mode="auto")
    assert al.aligned and "aligned" in al.reason
    assert al.max_motion_px > 5.0  # the corners move by several pixels
    assert _rms_px(al.transforms, breathing.transforms, (SIZE, SIZE)) <= 0.2
    assert al.max_residual_px is not None and al.max_residual_px < 0.5
    assert aligned.frames.shape == breathing.stack.frames.shape
    assert aligned.frames.dtype == breathing.stack.frames.dtype
    # the reference frame is untouched, the others changed
    ref = al.reference
    assert ref == 8
    np.testing.assert_array_equal(aligned.frames[ref], breathing.stack.frames[ref])
    assert not np.array_equal(aligned.frames[0], breathing.stack.frames[0])
    # the input stack is not modified
    assert aligned.frames is not breathing.stack.frames


def test_terraces_drift_only_recovered():
    m = moving_stack(
        family="terraces", n_frames=16, shape=(SIZE, SIZE), blur_px_per_um=0.25,
        breathing=-0.04, drift_px=(-0.5, 0.5), seed=2,
    )
    _, al = align_stack(m.stack, mode="on")
    assert _rms_px(al.transforms, m.transforms, (SIZE, SIZE)) <= 0.2


def test_auto_leaves_a_still_stack_alone(breathing):
    out, al = align_stack(breathing.still, mode="auto")
    assert not al.aligned
    assert out is breathing.still  # same object: nothing copied, same figures downstream
    assert al.reason.startswith("not aligned") and "do not move" in al.reason
    assert al.coverage is None and al.residual_px is None
    assert al.evidence is not None and not al.evidence.moving
    # the three sharpest pairs agreed: the check stopped there
    assert len(al.evidence.pairs) == align_mod._EARLY_PAIRS
    rep = al.to_report()["evidence"]
    assert rep["moving"] is False and rep["mean_match_gain"] < AUTO_MIN_GAIN


# Still stacks whose sharp band sweeps across a tilted or curved surface at the default blur
# (0.5 px per µm): registration alone reads 1–7 px of motion into them.
_SCENES = (
    ("plane", 0.05, (0.6, 0.3), False),
    ("waves", -0.05, (0.7, 0.0), True),
    ("caps", 0.04, (0.5, 0.5), False),
)


@pytest.mark.parametrize(("family", "breath", "drift", "rgb"), _SCENES)
def test_auto_tells_apparent_motion_from_real_motion(family, breath, drift, rgb):
    m = moving_stack(
        family=family, n_frames=16, shape=(256, 256), breathing=breath, drift_px=drift,
        rgb=rgb, seed=7,
    )
    # registration alone sees motion in the still stack …
    assert frame_motion(align_mod.estimate_motion(m.still.frames), (256, 256)).max() > 0.5
    # … but auto leaves it alone, bit for bit, and aligns its moving twin
    out, al = align_stack(m.still, mode="auto")
    assert out is m.still and not al.aligned, al.reason
    out, al = align_stack(m.stack, mode="auto")
    assert al.aligned and al.evidence.moving, al.reason
    # reversed focus order: the same decision
    rev = m.stack.with_(frames=m.stack.frames[::-1].copy(), focus_um=m.stack.focus_um[::-1].copy())
    assert align_stack(rev, mode="auto")[1].aligned


def test_colour_16bit_and_reversed_stack():
    m = moving_stack(
        family="smooth", n_frames=16, shape=(SIZE, SIZE), blur_px_per_um=0.25,
        breathing=0.06, drift_px=(0.8, -0.2), seed=3, rgb=True, bit_depth=16,
    )
    out, al = align_stack(m.stack, mode="on")
    assert out.frames.dtype == np.uint16 and out.frames.shape[-1] == 3
    assert _rms_px(al.transforms, m.transforms, (SIZE, SIZE)) <= 0.2
    # the same frames in the other focus order, aligned to the same physical frame
    rev = FocalStack(m.stack.frames[::-1], focus_um=m.stack.focus_um[::-1])
    n = rev.n_frames
    _, al_r = align_stack(rev, mode="on", reference=n - 1 - m.reference)
    assert _rms_px(al_r.transforms, m.transforms[::-1], (SIZE, SIZE)) <= 0.2


def test_reconstruct_aligns_and_reports(breathing, tmp_path):
    still = reconstruct(breathing.still, method="sml")  # default: align="auto"
    assert still.alignment is not None and not still.alignment.aligned
    assert still.aligned_stack is None
    moving_off = reconstruct(breathing.stack, method="sml", align="off")
    r = reconstruct(breathing.stack, method="sml")
    assert moving_off.alignment is None and moving_off.aligned_stack is None
    assert r.alignment is not None and r.alignment.aligned
    assert r.aligned_stack is not None and r.stack is not None
    assert r.stack.frames is breathing.stack.frames  # provenance: the input
    assert r.timings["align"] > 0
    # pixels that not every frame covers have confidence 0; the others are untouched
    cov = r.alignment.coverage
    assert cov.dtype == bool and 0 < cov.sum() < cov.size
    assert np.all(r.confidence[~cov] == 0)
    assert np.mean(r.confidence[cov]) > 0.1
    # the all-in-focus image is much better than fusing moving frames, and close to still
    box = r.alignment.common_box
    ideal = breathing.texture
    p_still, p_off, p_on = (_psnr(x.aif, ideal, box) for x in (still, moving_off, r))
    assert p_on > p_off + 3.0
    assert p_on >= p_still - 2.0
    # depth error within 1.3x of the still stack's
    y0, y1, x0, x1 = box
    err = lambda d: np.sqrt(np.mean((d - breathing.depth_um)[y0:y1, x0:x1] ** 2))  # noqa: E731
    assert err(r.depth) <= 1.3 * err(still.depth)
    # report.json holds the transforms, the motion and the reason
    rep = r.save(tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert on_disk["alignment"]["aligned"] is True
    assert len(on_disk["alignment"]["matrices"]) == 16
    assert on_disk["alignment"]["reference_frame"] == 8
    assert on_disk["alignment"]["max_motion_px"] > 5
    assert rep["parameters"]["align"] == "auto"


def test_crop_to_common_area(breathing):
    r = reconstruct(breathing.stack, method="sml", align="on", crop_common=True)
    y0, y1, x0, x1 = r.crop
    assert r.depth.shape == (y1 - y0, x1 - x0) == r.aif.shape == r.confidence.shape
    assert r.alignment.coverage[y0:y1, x0:x1].all()
    assert (y1 - y0) * (x1 - x0) > 0.6 * SIZE * SIZE
    assert r.report()["crop"] == {"y0": y0, "y1": y1, "x0": x0, "x1": x1}


def test_still_reconstruction_unchanged_when_auto_does_not_align(breathing):
    off = reconstruct(breathing.still, method="sml", align="off")
    auto = reconstruct(breathing.still, method="sml", align="auto")
    assert not auto.alignment.aligned
    np.testing.assert_array_equal(off.depth, auto.depth)
    np.testing.assert_array_equal(off.aif, auto.aif)
    np.testing.assert_array_equal(off.confidence, auto.confidence)


def test_options_are_checked(breathing):
    with pytest.raises(StackError, match="align="):
        reconstruct(breathing.still, method="sml", align="sometimes")
    with pytest.raises(StackError, match="align model"):
        reconstruct(breathing.still, method="sml", align="on", align_model="warp")
    with pytest.raises(StackError, match="reference frame 16 is outside"):
        reconstruct(breathing.still, method="sml", align="on", reference=16)
    with pytest.raises(StackError, match="threshold"):
        align_stack(breathing.still, threshold_px=50)


def test_without_opencv(monkeypatch, breathing):
    monkeypatch.setattr(align_mod, "have_opencv", lambda: False)
    out, al = align_stack(breathing.stack, mode="auto")
    assert out is breathing.stack and not al.aligned
    assert "pip install" in al.reason
    with pytest.raises(AlignmentError, match="napari-gplws\\[align\\]"):
        align_stack(breathing.stack, mode="on")


def test_common_box_and_motion_helpers():
    cov = np.zeros((50, 60), bool)
    cov[5:45, 10:52] = True
    cov[5, 10] = False  # a nibbled corner
    y0, y1, x0, x1 = common_box(cov)
    assert cov[y0:y1, x0:x1].all() and (y1 - y0) * (x1 - x0) >= 39 * 42 - 42
    shift = np.array([[[1, 0, 0.5], [0, 1, -0.25]]], float)
    assert frame_motion(shift, (10, 10))[0] == pytest.approx(np.hypot(0.5, 0.25))


def test_on_says_when_the_frames_do_not_seem_to_move(breathing):
    _, al = align_stack(breathing.still, mode="on")
    assert al.aligned and "do not seem to move" in al.reason and "auto" in al.reason
    _, al = align_stack(breathing.stack, mode="on")
    assert al.aligned and al.reason.startswith("aligned (alignment is on): the frames move up to")
