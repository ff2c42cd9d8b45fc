"""Batch reconstruction on a small dask.distributed LocalCluster (2 workers × 1 thread).

The cluster runs its workers as threads (``processes=False``): process start-up costs
several seconds on a small shared CI machine and adds nothing to what is tested here.
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

pytest.importorskip("distributed")
tifffile = pytest.importorskip("tifffile")

from napari_gplws.api import OUTPUT_NAMES
from napari_gplws.batching import batch
from napari_gplws.batching.inputs import collect_inputs, stack_names


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture()
def folder(tmp_path):
    """Three good stacks (one with a uneven µm sidecar) and two bad ones."""
    from napari_gplws.io import save_stack
    from napari_gplws.sim.focus_stacks import synthetic_stack

    d = tmp_path / "scans"
    d.mkdir()
    for i in range(3):
        s = synthetic_stack(family="waves", n_frames=6, shape=(48, 40), seed=i).stack
        save_stack(d / f"s{i}.tif", s)
    (d / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 20)
    np.save(d / "flat.npy", np.zeros((1, 8, 8), np.uint8))  # a single frame: wrong shape
    return d


def test_batch_failures_resume_and_equality(client, folder, tmp_path):
    out = tmp_path / "out"
    seen = []
    s = batch([str(folder / "*.tif"), folder / "flat.npy"], out, method="sml", scheduler=client,
              progress=lambda d, t: seen.append((d, t)))
    status = {r.name: r.status for r in s.records}
    assert status == {"corrupt": "failed", "s0": "done", "s1": "done", "s2": "done", "flat": "failed"}
    assert not s.ok and s.n_failed == 2 and s.n_done == 3
    assert seen[-1] == (5, 5)
    err = {r.name: r.error for r in s.failed}
    assert "StackError" in err["corrupt"] and "corrupt.tif" in err["corrupt"]
    assert "single frame" in err["flat"]

    # summaries on disk agree
    with open(out / "summary.csv", encoding="utf-8") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["error"]
    assert rows["s1"]["status"] == "done" and rows["s1"]["depth_units"] == "µm"
    js = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert js["counts"] == {"total": 5, "done": 3, "skipped": 0, "failed": 2}
    for n in ("s0", "s1", "s2"):
        assert all((out / n / f).is_file() for f in OUTPUT_NAMES)
    assert not (out / "corrupt").exists()

    # batch output == single-stack reconstruct output
    from napari_gplws import api

    ref = api.reconstruct(folder / "s1.tif", method="sml")
    np.testing.assert_array_equal(tifffile.imread(out / "s1" / "depth.tif"), ref.depth)
    np.testing.assert_array_equal(tifffile.imread(out / "s1" / "aif.tif"), ref.aif)
    np.testing.assert_array_equal(tifffile.imread(out / "s1" / "confidence.tif"), ref.confidence)
    rep = json.loads((out / "s1" / "report.json").read_text(encoding="utf-8"))
    assert rep["units"]["depth"] == "µm" and rep["method"] == "sml"

    # resume: damage one output, delete another stack's folder; the rest is skipped
    mtime_s0 = (out / "s0" / "depth.tif").stat().st_mtime_ns
    with open(out / "s1" / "aif.tif", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"XXXX")
    import shutil

    shutil.rmtree(out / "s2")
    s2 = batch([str(folder / "*.tif"), folder / "flat.npy"], out, method="sml", scheduler=client)
    status2 = {r.name: r.status for r in s2.records}
    assert status2 == {"corrupt": "failed", "s0": "skipped", "s1": "done", "s2": "done", "flat": "failed"}
    assert (out / "s0" / "depth.tif").stat().st_mtime_ns == mtime_s0
    np.testing.assert_array_equal(tifffile.imread(out / "s1" / "aif.tif"), ref.aif)

    # changed options invalidate the manifest entries
    s3 = batch([folder / "s0.tif"], out, method="sml", refine=False, scheduler=client)
    assert [r.status for r in s3.records] == ["done"] and s3.ok


def test_collect_inputs_and_names(folder, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# stacks\n{folder / 's0.tif'}\n\nscans/s1.tif\n{folder}/s*.tif\n", encoding="utf-8")
    paths = collect_inputs([lst])
    assert [p.name for p in paths] == ["s0.tif", "s1.tif", "s2.tif"]
    assert stack_names([folder / "a.ome.tif", tmp_path / "a.tif", folder / "b"]) == ["a", "a-2", "b"]
    from napari_gplws.errors import GplwsError

    with pytest.raises(GplwsError, match="matches no file"):
        collect_inputs([str(tmp_path / "*.nothing")])


def test_cli_batch_exit_code(client, folder, tmp_path, capsys):
    from napari_gplws.cli.batch import add_batch_arguments, cmd_batch

    p = argparse.ArgumentParser()
    add_batch_arguments(p)
    args = p.parse_args([str(folder / "s0.tif"), str(folder / "corrupt.tif"), "-o", str(tmp_path / "o"),
                         "--method", "sml", "-q"])
    args.scheduler = client  # reuse the test cluster instead of starting another
    assert cmd_batch(args) == 1
    assert "1 failed" in capsys.readouterr().out
    args.inputs = [str(folder / "s0.tif")]
    assert cmd_batch(args) == 0


def test_batch_zarr_stacks_out_of_core_and_resume(client, tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_gplws import api
    from napari_gplws.dff.outofcore import ZARR_OUTPUT_NAMES
    from napari_gplws.io import save_stack
    from napari_gplws.io.zarr import tiff_to_zarr
    from napari_gplws.sim.focus_stacks import synthetic_stack

    d = tmp_path / "scans"
    d.mkdir()
    stacks = [synthetic_stack(family="waves", n_frames=6, shape=(96, 128), seed=i).stack for i in range(3)]
    save_stack(d / "t0.tif", stacks[0])
    save_stack(tmp_path / "a.tif", stacks[1])
    tiff_to_zarr(tmp_path / "a.tif", d / "a.zarr", chunk=64)  # µm units from the TIFF
    # a zarr store without the .zarr suffix: recognised by its metadata, not read as frames
    z = zarr.open_array(str(d / "b"), mode="w", shape=stacks[2].frames.shape, chunks=(1, 64, 64),
                        dtype=stacks[2].frames.dtype)
    z[...] = stacks[2].frames
    z.attrs["focus_um"] = stacks[2].focus_um.tolist()

    inputs = [str(d / "*.tif"), str(d / "*.zarr"), d / "b"]
    hits = collect_inputs([str(d / "**")])  # chunk and metadata files of the stores are left out
    assert {d / "a.zarr", d / "b", d / "t0.tif"} <= set(hits)
    assert not any(d / "a.zarr" in p.parents or d / "b" in p.parents for p in hits)
    out = tmp_path / "out"
    s = batch(inputs, out, method="sml", scheduler=client, chunk=64)
    assert {r.name: r.status for r in s.records} == {"t0": "done", "a": "done", "b": "done"}, s.failed
    for n in ("a", "b"):
        assert sorted(p.name for p in (out / n).iterdir() if not p.name.startswith(".")) == sorted(ZARR_OUTPUT_NAMES)
        g = zarr.open_group(str(out / n / "result.zarr"), mode="r")
        ref = api.reconstruct(stacks[1 if n == "a" else 2], method="sml")
        np.testing.assert_allclose(g["depth"][:], ref.depth, rtol=0, atol=1e-4)
        assert g["depth"].attrs["units"] == "µm"
        rep = json.loads((out / n / "report.json").read_text(encoding="utf-8"))
        assert rep["method"] == "sml" and rep["output_format"] == "zarr" and rep["parameters"]["chunk"] == 64
    assert all((out / "t0" / f).is_file() for f in OUTPUT_NAMES)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["stacks"]
    assert set(manifest["a"]["outputs"]) == set(ZARR_OUTPUT_NAMES)
    with open(out / "summary.csv", encoding="utf-8") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["b"]["status"] == "done" and rows["b"]["depth_units"] == "µm"

    s2 = batch(inputs, out, method="sml", scheduler=client, chunk=64)
    assert [r.status for r in s2.records] == ["skipped"] * 3

    # a chunk file missing inside one result.zarr: only that stack is redone
    chunk_file = next(p for p in sorted((out / "b" / "result.zarr" / "depth").rglob("*")) if p.is_file()
                      and p.name != "zarr.json")
    chunk_file.unlink()
    s3 = batch(inputs, out, method="sml", scheduler=client, chunk=64)
    assert {r.name: r.status for r in s3.records} == {"t0": "skipped", "a": "skipped", "b": "done"}
    assert chunk_file.is_file()
    # another chunk size changes only the zarr stacks' settings
    s4 = batch(inputs, out, method="sml", scheduler=client, chunk=96)
    assert {r.name: r.status for r in s4.records} == {"t0": "skipped", "a": "done", "b": "done"}


def test_batch_aligns_moving_stacks_when_asked(tmp_path):
    """Alignment options reach every stack's reconstruction and its report."""
    pytest.importorskip("cv2")
    from napari_gplws.io import save_stack
    from napari_gplws.sim.motion import moving_stack

    src = tmp_path / "in"
    src.mkdir()
    save_stack(src / "moving.tif", moving_stack(n_frames=8, shape=(96, 96), seed=4).stack)
    out = tmp_path / "out"
    s = batch([src / "moving.tif"], out, method="sml", workers=1, processes=False, align="on")
    assert s.ok
    report = json.loads((out / "moving" / "report.json").read_text())
    assert report["alignment"]["aligned"] is True
    s2 = batch([src / "moving.tif"], out, method="sml", workers=1, processes=False, align="on")
    assert s2.n_skipped == 1  # same settings: resumed, not redone
    s3 = batch([src / "moving.tif"], out, method="sml", workers=1, processes=False, align="off")
    assert s3.n_done == 1  # alignment off is another setting: redone
    assert json.loads((out / "moving" / "report.json").read_text())["alignment"] is None
