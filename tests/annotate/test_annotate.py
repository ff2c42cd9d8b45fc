"""Ground-truth editing core (:mod:`napari_gplws.annotate`): no display needed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from gplws_testdata import H, N, W, make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import napari_gplws.annotate as an
from napari_gplws.errors import GplwsError
from napari_gplws.io.micro3d import encode_gt, find_gt, read_gt_raw, write_gt
from napari_gplws.stack import position_to_index


@pytest.fixture
def ds(tmp_path):
    return an.AnnotationDataset(make_dataset(tmp_path / "data", ("png8", "npy")), gt_scale=0.05)


def test_every_encoding_loads_and_writes_back_losslessly(tmp_path):
    encs = ("png8", "png16", "bmp8", "tif16", "tiff32", "npy")
    root = make_dataset(tmp_path / "data", encs)
    for name in sorted(os.listdir(root)):
        scale = 0.05 if name.endswith("png8") else 0.1
        s = an.load_sample(root / name, gt_scale=scale)
        assert s.original_um.dtype == np.float32
        assert s.focus_um[0] == pytest.approx(10.0) and s.focus_um[1] == pytest.approx(12.0)
        raw = read_gt_raw(s.gt_path)
        back = encode_gt(s.original_um, s.focus_um, s.encoding)
        assert back.dtype == raw.dtype and np.array_equal(back, raw), name
        out = tmp_path / f"out_{name}{s.gt_path.suffix}"
        write_gt(out, back)
        assert np.array_equal(read_gt_raw(out), raw), name
        # values are µm on the focus axis: roughly 10 + 2·index
        assert float(s.original_um.min()) >= 10.0 and float(s.original_um.max()) <= 10 + 2 * (N - 1)


def test_find_gt_patterns_and_errors(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "1.png").write_bytes(b"")
    with pytest.raises(GplwsError, match="no ground-truth"):
        find_gt(d)
    (d / "Depth_a.png").write_bytes(b"")
    (d / "depth_b.png").write_bytes(b"")
    with pytest.raises(GplwsError, match="2 files"):
        find_gt(d)
    assert find_gt(d, ["*_a*"]).name == "Depth_a.png"


def test_encode_gt_refuses_lossy_integer(ds):
    s = ds.load(ds.names[0])
    with pytest.raises(GplwsError, match="cannot be stored exactly"):
        encode_gt(s.original_um + 0.0123, s.focus_um, s.encoding)


def test_operations_on_small_arrays(ds):
    sess = ds.open(ds.names[0])
    d0 = sess.depth.copy()
    m = an.brush_mask(sess.shape, (5, 6), 2.0)
    assert m.sum() == 13
    sess.set_value(m, 13.37)
    assert np.all(sess.depth[m] == np.float32(13.37)) and np.array_equal(sess.depth[~m], d0[~m])

    poly = an.polygon_mask(sess.shape, np.array([[2, 2], [2, 10], [8, 10], [8, 2]]))
    assert poly[3:8, 3:10].all() and not poly[:2].any() and not poly[:, 11:].any()
    sess.set_from_frame(poly, 3)
    assert np.all(sess.depth[poly] == np.float32(sess.focus_um[3]))

    sess.restore_original(poly)
    assert np.array_equal(sess.depth[poly], d0[poly])

    # plane fit recovers a noisy plane
    yy, xx = np.mgrid[: sess.shape[0], : sess.shape[1]]
    region = np.zeros(sess.shape, bool)
    region[4:20, 4:20] = True
    noisy = (5 + 0.5 * xx - 0.25 * yy + np.where((yy + xx) % 2, 0.3, -0.3)).astype(np.float32)
    sess._commit("test", {}, region, noisy)
    sess.fit_plane(region)
    assert np.allclose(sess.depth[region], (5 + 0.5 * xx - 0.25 * yy)[region], atol=0.05)

    # smoothing a spike lowers it and leaves pixels outside the region alone
    sess.set_value(an.brush_mask(sess.shape, (12, 12), 0.5), 100.0)
    before = sess.depth.copy()
    sess.smooth(region, 1.5)
    assert sess.depth[12, 12] < 50 and np.array_equal(sess.depth[~region], before[~region])

    sess.prediction_um = np.full(sess.shape, 7.25, np.float32)
    sess.fill_from_prediction(region)
    assert np.all(sess.depth[region] == np.float32(7.25))

    # float precision: 0.001 frame steps survive
    sess.set_value(m, float(sess.focus_um[2] + 0.001 * 2.0))
    idx = position_to_index(sess.depth[m], sess.focus_um)
    assert np.allclose(idx, 2.001, atol=1e-4)


def test_snap_to_peak_moves_to_focus_curve_peak(ds):
    sess = ds.open(ds.names[1])  # npy, µm
    truth = sess.original.copy()
    sess.compute_focus_curves(window=5)
    assert sess.curves.shape == (N, H, W) and sess.peak_um.shape == (H, W)
    region = np.zeros(sess.shape, bool)
    region[6:18, 6:22] = True
    sess.set_value(region, float(np.median(truth[region])) + 1.0)
    err_before = np.abs(sess.depth - truth)[region].mean()
    sess.snap_to_peak(region, k=3)
    err_after = np.abs(sess.depth - truth)[region].mean()
    assert err_after < err_before and err_after < 1.5
    # snapped values are sub-frame, not whole frames
    idx = position_to_index(sess.depth[region], sess.focus_um)
    assert np.any(np.abs(idx - np.rint(idx)) > 0.05)


def test_undo_redo_and_log(ds):
    sess = ds.open(ds.names[0], max_undo=200)
    d0 = sess.depth.copy()
    m = an.brush_mask(sess.shape, (10, 10), 3)
    for v in range(250):
        sess.set_value(m, 10.0 + v * 0.01)
    for _ in range(250):
        sess.undo()
    # at least 200 steps are kept: after 200 undos we are back to before the 50th edit
    assert np.allclose(sess.depth[m], 10.0 + 49 * 0.01)
    assert not sess.undo()
    assert sess.redo() and np.allclose(sess.depth[m], 10.0 + 50 * 0.01)
    sess.restore_original(np.ones(sess.shape, bool))
    assert np.array_equal(sess.depth, d0) and not sess.can_redo
    # memory: diffs are sparse (bbox-sized), not whole maps
    assert all(e.mask.size <= 7 * 7 for e in sess._undo[:-1])
    log = sess.read_log()
    assert log[0]["op"] == "set_value" and log[0]["pixels_changed"] == m.sum()
    assert {"time", "user", "params", "bbox", "mean_change_um"} <= set(log[0])
    assert ds.samples[ds.names[0]].status == "in progress"


ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["value", "frame", "smooth", "restore", "plane", "undo", "redo"]),
        st.integers(0, H - 1),
        st.integers(0, W - 1),
        st.integers(1, 6),
        st.floats(8.0, 30.0),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def module_ds(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("hyp") / "data", ("npy",))
    return an.AnnotationDataset(root)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops_strategy)
def test_undo_redo_matches_replay(module_ds, ops):
    """After any sequence of edits/undos/redos, the map equals a replay of the live edits."""
    sess = an.EditSession(module_ds.load(module_ds.names[0]))
    sess._log = lambda *a, **k: None  # keep the example fast
    live: list = []  # the edits that are in effect, as (fn, args)
    undone: list = []
    for op, y, x, r, v in ops:
        m = an.brush_mask(sess.shape, (y, x), r)
        if op == "undo":
            if sess.undo():
                undone.append(live.pop())
            continue
        if op == "redo":
            if sess.redo():
                live.append(undone.pop())
            continue
        call = {
            "value": lambda s, m=m, v=v: s.set_value(m, v),
            "frame": lambda s, m=m, r=r: s.set_from_frame(m, r),
            "smooth": lambda s, m=m: s.smooth(m, 1.0),
            "restore": lambda s, m=m: s.restore_original(m),
            "plane": lambda s, m=m: s.fit_plane(m),
        }[op]
        if call(sess) is not None:
            live.append(call)
            undone.clear()
    replay = an.EditSession(module_ds.load(module_ds.names[0]))
    replay._log = lambda *a, **k: None
    for call in live:
        call(replay)
    np.testing.assert_array_equal(sess.depth, replay.depth)
    while sess.undo():
        pass
    np.testing.assert_array_equal(sess.depth, sess.original)


def test_save_is_atomic_and_original_untouched(ds, monkeypatch):
    import tifffile

    name = ds.names[0]
    sess = ds.open(name)
    gt_bytes = sess.sample.gt_path.read_bytes()
    m = an.brush_mask(sess.shape, (8, 8), 3)
    sess.set_value(m, 11.11)
    p = sess.save()
    assert p.name == "depth.corrected.tif" and p.parent.name == an.WORK_DIR
    first = tifffile.imread(p)
    assert first.dtype == np.float32 and np.allclose(first[m], 11.11)
    info = json.loads(tifffile.TiffFile(p).imagej_metadata["Info"])
    assert info["units"] == "µm"

    # a crash at the rename leaves the old file whole
    sess.set_value(m, 22.22)

    def boom(*a, **k):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(GplwsError):
        sess.save()
    monkeypatch.undo()
    assert np.array_equal(tifffile.imread(p), first)

    # a crash half-way through writing the data leaves it whole too
    real = tifffile.imwrite

    def half(path, data, **kw):
        with open(path, "wb") as f:
            f.write(b"II*\x00garbage")
        raise OSError("killed")

    monkeypatch.setattr(tifffile, "imwrite", half)
    with pytest.raises(GplwsError):
        sess.save()
    monkeypatch.setattr(tifffile, "imwrite", real)
    assert np.array_equal(tifffile.imread(p), first)
    assert not [f for f in os.listdir(p.parent) if f.endswith(".tmp")]
    assert sess.sample.gt_path.read_bytes() == gt_bytes

    # a saved correction is what a new session starts from
    sess.save()
    again = ds.open(name)
    assert np.allclose(again.depth[m], 22.22) and not again.dirty


def test_autosave_and_recovery(ds):
    name = ds.names[0]
    sess = ds.open(name, autosave_delay_s=5.0)
    m = an.brush_mask(sess.shape, (4, 4), 2)
    sess.set_value(m, 9.5)
    t = sess._last_edit_t
    assert not sess.autosave_if_due(now=t + 1.0)  # debounced
    assert sess.autosave_if_due(now=t + 6.0)
    assert sess.sample.recovery_path.is_file()
    # "crash": a new session on the same sample finds the unsaved work
    again = ds.open(name)
    assert again.has_recovery()
    again.restore_recovery()
    assert np.allclose(again.depth[m], 9.5) and again.dirty
    assert again.undo() and np.array_equal(again.depth, again.original)
    again.redo()
    again.save()
    assert not again.sample.recovery_path.exists()
    assert not ds.open(name).has_recovery()


def test_manifest_status_notes_counts(ds, tmp_path):
    a, b = ds.names
    ds.set_status(a, "reviewed")
    ds.set_note(b, "blurry corner")
    with pytest.raises(GplwsError):
        ds.set_status(a, "done")
    data = json.loads(ds.manifest_path.read_text(encoding="utf-8"))
    assert data["samples"][a]["status"] == "reviewed" and data["samples"][a]["updated_by"]
    re = an.AnnotationDataset(ds.root, gt_scale=0.05)
    assert re.samples[b].note == "blurry corner"
    assert re.counts() == {"unreviewed": 1, "in progress": 0, "reviewed": 1}
    assert re.neighbour(a, 1) == b and re.neighbour(b, 1) is None and re.neighbour(b, -1) == a


def test_suspects_guide_to_largest_wrong_region(ds):
    sess = ds.open(ds.names[1])
    sess.prediction_um = sess.original.copy()
    sess.peak_um = sess.original.copy()
    assert sess.suspect_fraction(0.5) == 0.0
    big = np.zeros(sess.shape, bool)
    big[2:10, 2:12] = True
    small = an.brush_mask(sess.shape, (18, 22), 1.5)
    sess.set_value(big, 50.0)
    sess.set_value(small, 50.0)
    assert sess.suspect_fraction(0.5) == pytest.approx((big.sum() + small.sum()) / big.size)
    r1 = sess.next_suspect_region(0.5)
    assert r1["bbox"] == (2, 10, 2, 12) and r1["pixels"] == big.sum()
    assert r1["centroid"] == pytest.approx((5.5, 6.5))
    r2 = sess.next_suspect_region(0.5)
    assert r2["pixels"] == small.sum()
    assert sess.next_suspect_region(0.5) is None
    # agreeing with one reference is enough to not be suspect
    sess.prediction_um = sess.depth.copy()
    assert sess.suspect_fraction(0.5) == 0.0


def test_prediction_with_classical_method(ds):
    sess = ds.open(ds.names[1])
    pred = sess.compute_prediction(method="sml")
    assert pred.shape == sess.shape and pred.dtype == np.float32
    assert float(np.median(np.abs(pred - sess.original))) < 3.0


def test_export_same_layout_with_logs(ds, tmp_path):
    a, b = ds.names
    s = ds.open(a)
    m = an.brush_mask(s.shape, (6, 6), 2)
    s.set_from_frame(m, 5)  # representable in the 8-bit encoding
    s.save()
    s2 = ds.open(b)
    s2.set_value(m, 12.345)
    s2.save()
    out = ds.export(tmp_path / "export")
    again = an.AnnotationDataset(out, gt_scale=0.05)
    assert again.names == ds.names
    ea = again.load(a)
    assert ea.gt_path.name == "depth.png" and np.allclose(ea.original_um[m], s.focus_um[5])
    assert (out / a / an.WORK_DIR / "depth.edits.jsonl").is_file()
    eb = again.load(b)
    assert np.allclose(eb.original_um[m], 12.345)
    summary = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert summary["samples"][a]["corrected"]
    with pytest.raises(GplwsError, match="not empty"):
        ds.export(out)
