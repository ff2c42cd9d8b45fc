"""Nothing a user made is lost: outputs never replace inputs, foreign folders or each other.

Each data-loss case puts sentinel files next to and inside the output and checks their
checksums afterwards. CLI cases run as a user runs them (a subprocess with a timeout, so a
hang fails); API cases run in process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_gplws._shared.files import LOCK_NAME, OUTPUT_MARKER, OutputLock
from napari_gplws.errors import GplwsError

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*")) if p.is_file()
    }


def _gplws(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_gplws.cli", *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def small_zarr(tmp_path_factory) -> Path:
    from napari_gplws.sim.focus_stacks import synthetic_stack

    s = synthetic_stack(family="waves", n_frames=6, shape=(48, 40), seed=1).stack
    p = tmp_path_factory.mktemp("z") / "in.zarr"
    z = zarr.open_array(str(p), mode="w", shape=s.frames.shape, dtype=s.frames.dtype)
    z[:] = s.frames
    return p


@pytest.fixture(scope="module")
def small_tif(tmp_path_factory) -> Path:
    from napari_gplws.io import save_stack
    from napari_gplws.sim.focus_stacks import synthetic_stack

    p = tmp_path_factory.mktemp("t") / "stack.tif"
    save_stack(p, synthetic_stack(family="waves", n_frames=6, shape=(48, 40), seed=2).stack)
    return p


# --- zarr outputs of the API ------------------------------------------------------------
@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_reconstruct_zarr_refuses_its_own_input(small_zarr, tmp_path, where):
    from napari_gplws.dff import reconstruct_zarr

    before = _tree_digest(small_zarr)
    out = {"same": small_zarr, "inside": small_zarr / "out.zarr", "parent": small_zarr.parent}[where]
    with pytest.raises(GplwsError, match="input"):
        reconstruct_zarr(small_zarr, out, chunk=64)
    assert _tree_digest(small_zarr) == before


def test_reconstruct_zarr_refuses_a_users_folder_and_backs_it_up_when_told(small_zarr, tmp_path):
    from napari_gplws.dff import reconstruct_zarr

    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("three days of work")
    sentinel = tmp_path / "beside.txt"
    sentinel.write_text("keep me")
    before = _tree_digest(tmp_path)
    with pytest.raises(GplwsError, match="did not write"):
        reconstruct_zarr(small_zarr, out, chunk=64)
    assert _tree_digest(tmp_path) == before
    reconstruct_zarr(small_zarr, out, chunk=64, overwrite=True)
    backups = list(tmp_path.glob("results.backup-*"))
    assert len(backups) == 1 and (backups[0] / "notes.txt").read_text() == "three days of work"
    assert (out / OUTPUT_MARKER).is_file() and "depth" in zarr.open_group(str(out), mode="r")
    assert sentinel.read_text() == "keep me"


def test_reconstruct_zarr_replaces_its_own_earlier_result(small_zarr, tmp_path):
    from napari_gplws.dff import reconstruct_zarr

    out = tmp_path / "o.zarr"
    first = reconstruct_zarr(small_zarr, out, chunk=64)
    second = reconstruct_zarr(small_zarr, out, chunk=64)  # no overwrite needed: it is ours
    np.testing.assert_array_equal(first.open()["depth"][:], second.open()["depth"][:])
    assert not list(tmp_path.glob("o.zarr.backup-*"))


def test_reconstruct_zarr_refuses_a_file(small_zarr, tmp_path):
    from napari_gplws.dff import reconstruct_zarr

    out = tmp_path / "o.zarr"
    out.write_text("not a zarr")
    with pytest.raises(GplwsError, match="is a file"):
        reconstruct_zarr(small_zarr, out, chunk=64)
    assert out.read_text() == "not a zarr"


def test_tiff_to_zarr_refuses_a_users_folder(small_tif, tmp_path):
    from napari_gplws.io.zarr import tiff_to_zarr

    out = tmp_path / "converted"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GplwsError, match="did not write"):
        tiff_to_zarr(small_tif, out, chunk=64)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(GplwsError, match="input"):
        tiff_to_zarr(small_tif, small_tif, chunk=64)
    tiff_to_zarr(small_tif, tmp_path / "fresh.zarr", chunk=64)
    tiff_to_zarr(small_tif, tmp_path / "fresh.zarr", chunk=64)  # its own result: replaced


# --- batch ---------------------------------------------------------------------------------
def test_batch_of_dotdot_never_deletes_outside_its_output(tmp_path, small_tif):
    """`gplws batch .. -o ../../elsewhere/out` from inside a frames folder's sub-folder."""
    import shutil

    from napari_gplws.io import read_stack

    frames = tmp_path / "work" / "frames"
    (frames / "sub").mkdir(parents=True)
    import imageio.v3 as iio

    for k, f in enumerate(read_stack(small_tif).frames):
        iio.imwrite(frames / f"{k + 1}.png", f)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "user.txt").write_text("a user's file")
    before = _tree_digest(tmp_path / "elsewhere")
    r = _gplws("batch", "..", "-o", "../../../elsewhere/out", "--method", "sml", "--workers", "1",
               cwd=frames / "sub")
    assert r.returncode == 0, r.stdout + r.stderr
    after = _tree_digest(tmp_path / "elsewhere")
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before
    results = [p for p in (elsewhere / "out").iterdir() if p.is_dir()]
    assert [p.name for p in results] == ["frames"], results
    assert (results[0] / "depth.tif").is_file()
    shutil.rmtree(elsewhere / "out")


def test_batch_never_replaces_a_foreign_folder_of_the_same_name(tmp_path, small_tif):
    from napari_gplws.batching import batch

    out = tmp_path / "out"
    (out / "stack").mkdir(parents=True)
    (out / "stack" / "thesis.docx").write_text("do not delete")
    s = batch([small_tif], out, method="sml", workers=1, processes=False)
    assert not s.ok and "not written by napari-gplws" in s.records[0].error
    assert (out / "stack" / "thesis.docx").read_text() == "do not delete"


@pytest.mark.parametrize(("kw", "value"), [("workers", 0), ("workers", -1), ("workers", 2.5),
                                           ("threads_per_worker", 0), ("chunk", 0)])
def test_batch_refuses_counts_that_would_hang(tmp_path, small_tif, kw, value):
    from napari_gplws.batching import batch

    t0 = time.perf_counter()
    with pytest.raises(GplwsError, match=kw):
        batch([small_tif], tmp_path / "out", method="sml", **{kw: value})
    assert time.perf_counter() - t0 < 5


def test_batch_cli_workers_zero_is_refused_not_hung(tmp_path, small_tif):
    r = _gplws("batch", str(small_tif), "-o", str(tmp_path / "out"), "--workers", "0", timeout=60)
    assert r.returncode != 0 and "workers" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster_listens_on_this_machine_only(processes):
    from napari_gplws.batching.run import _open_client

    client, close = _open_client("local", 1, 1, processes)
    try:
        scheduler = client.cluster.scheduler
        bound = [s.getsockname()[0] for s in scheduler.http_server._sockets.values()]
        assert bound and set(bound) == {"127.0.0.1"}, bound
        if processes:
            assert scheduler.address.startswith("tcp://127.0.0.1:"), scheduler.address
    finally:
        close()


def test_batch_prints_a_dashboard_link_that_works_here(tmp_path, small_tif):
    from napari_gplws.batching import batch

    lines: list[str] = []
    s = batch([small_tif], tmp_path / "out", method="sml", workers=1, processes=False, log=lines.append)
    assert s.ok and any("http://127.0.0.1:" in ln for ln in lines), lines


# --- one writer per output folder -----------------------------------------------------------
def test_lock_refuses_a_second_writer_and_names_the_first(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(GplwsError, match=rf"pid {os.getpid()} on {socket.gethostname()}"):
            with OutputLock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with OutputLock(tmp_path):  # released: free again
        pass


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "yesterday"}))
    with OutputLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_two_concurrent_runs_into_one_output_exactly_one_wins(tmp_path):
    """Two `gplws reconstruct` into one folder: one writes complete outputs, one is refused."""
    from napari_gplws.io import save_stack
    from napari_gplws.sim.focus_stacks import synthetic_stack

    src = tmp_path / "big.tif"
    save_stack(src, synthetic_stack(family="waves", n_frames=24, shape=(384, 384), seed=3).stack)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "napari_gplws.cli", "reconstruct", str(src), "-o", str(out),
           "--method", "gplws", "--device", "cpu"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (out / LOCK_NAME).exists():  # the first run holds the folder …
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode != 0 and "being written by another run" in second.stderr
    assert "Traceback" not in second.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["aif.tif", "confidence.tif", "depth.tif", "report.json"], names
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "gplws" and report["input"]["shape"][0] == 24


def test_cli_refuses_an_output_that_is_the_input_folder(tmp_path, small_tif):
    from napari_gplws.io import read_stack

    frames = tmp_path / "frames"
    frames.mkdir()
    import imageio.v3 as iio

    for k, f in enumerate(read_stack(small_tif).frames):
        iio.imwrite(frames / f"{k + 1}.png", f)
    before = _tree_digest(frames)
    r = _gplws("reconstruct", str(frames), "-o", str(frames), "--method", "sml")
    assert r.returncode != 0 and "is the input" in r.stderr and "Traceback" not in r.stderr
    assert _tree_digest(frames) == before


def test_cli_refuses_an_output_inside_a_zarr_input(small_zarr):
    before = _tree_digest(small_zarr)
    r = _gplws("reconstruct", str(small_zarr), "-o", str(small_zarr / "results"), "--method", "sml")
    assert r.returncode != 0 and "inside the zarr store" in r.stderr
    assert _tree_digest(small_zarr) == before


def test_out_of_core_result_that_is_not_finite_is_an_error_not_a_file(small_zarr, tmp_path):
    from napari_gplws.dff import reconstruct_zarr

    n = zarr.open_array(str(small_zarr), mode="r").shape[0]
    out = tmp_path / "o.zarr"
    huge = np.linspace(0.0, 1e39, n)  # depths beyond float32: infinite in the output
    with pytest.raises(GplwsError, match="NaN or infinite"):
        reconstruct_zarr(small_zarr, out, chunk=64, focus_um=huge)
    assert not out.exists()
