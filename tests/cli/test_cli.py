"""The `gplws` command line end to end (runs in-process through cli.main)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_gplws.cli._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from napari_gplws.cli.main import main
from napari_gplws.io import read_depth_tiff, save_stack


def test_help_lists_every_command(capsys):
    assert main([]) == EXIT_OK
    out = capsys.readouterr().out
    for command in ("reconstruct", "eval", "bench"):
        assert command in out


def test_reconstruct_sample_writes_outputs_with_units(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", "--sample", "--method", "sml", "-o", str(out), "-q"]) == EXIT_OK
    depth, info = read_depth_tiff(out / "depth.tif")
    assert depth.dtype == np.float32 and depth.shape == (256, 256)
    assert info["units"] == "µm"
    assert info["pixel_size_um"] == pytest.approx(0.5)
    aif = tifffile.imread(out / "aif.tif")
    assert aif.dtype == np.uint8 and aif.shape == (256, 256)
    conf = tifffile.imread(out / "confidence.tif")
    assert conf.min() >= 0 and conf.max() <= 1
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["method"] == "sml"
    assert report["units"]["depth"] == "µm"
    assert report["input"]["shape"] == [20, 256, 256]
    assert set(report["seconds"]) >= {"read", "total", "write"}

    # The sample's truth is known: the CLI's depth must be close to it.
    from napari_gplws._sample_data import make_sample

    gt = make_sample().depth_um
    rmse = float(np.sqrt(np.mean((depth - gt) ** 2)))
    step = float(np.median(np.diff(make_sample().stack.focus_um)))
    assert rmse < 1.5 * step, f"RMSE {rmse:.2f} µm is more than 1.5 focus steps ({step:.2f} µm)"


def test_reconstruct_twice_keeps_a_backup(tmp_path):
    out = tmp_path / "out"
    args = ["reconstruct", "--sample", "--method", "glv", "-o", str(out), "-q"]
    assert main(args) == EXIT_OK
    first = (out / "depth.tif").read_bytes()
    assert main(args) == EXIT_OK
    backups = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("backup-")]
    assert len(backups) == 1
    assert (backups[0] / "depth.tif").read_bytes() == first


def test_reconstruct_file_with_flags_overrides(tmp_path, small_synthetic):
    path = tmp_path / "stack.tif"
    save_stack(path, small_synthetic.stack)
    out = tmp_path / "out"
    code = main([
        "reconstruct", str(path), "-o", str(out), "--method", "sml", "-q",
        "--focus-start", "100", "--focus-step", "-2", "--pixel-size", "0.25",
    ])
    assert code == EXIT_OK
    depth, info = read_depth_tiff(out / "depth.tif")
    assert info["pixel_size_um"] == pytest.approx(0.25)
    # Positions now run 100 down to 78 µm, so every depth lies inside that range.
    assert depth.min() >= 78 - 1e-3 and depth.max() <= 100 + 1e-3
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["input"]["focus_um"][0] == 100 and report["input"]["focus_um"][1] == 98


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    missing = tmp_path / "nope.tif"
    assert main(["reconstruct", str(missing), "-o", str(tmp_path / "o")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "nope.tif" in err and "Traceback" not in err

    one = tmp_path / "one.npy"
    np.save(one, np.zeros((1, 8, 8), np.uint8))
    assert main(["reconstruct", str(one), "-o", str(tmp_path / "o")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "one.npy" in err and "frame" in err

    assert main(["reconstruct", "--sample", "-o", str(tmp_path / "o"), "--method", "magic"]) == EXIT_USAGE
    assert "magic" in capsys.readouterr().err

    assert main(["reconstruct", str(one), "-o", str(tmp_path / "o"), "--axis-pick", "T"]) == EXIT_USAGE
    assert "AXIS=INDEX" in capsys.readouterr().err.replace(" ", "")


def test_debug_shows_the_traceback(tmp_path):
    from napari_gplws.errors import StackError

    with pytest.raises(StackError):
        main(["--debug", "reconstruct", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o")])


def test_eval_on_a_dataset_folder(tmp_path, capsys, small_synthetic):
    from napari_gplws.sim.focus_stacks import synthetic_stack

    root = tmp_path / "dataset"
    for i, family in enumerate(("plane", "caps")):
        s = synthetic_stack(family=family, texture="dots", n_frames=10, shape=(64, 64), depth_range_um=(10, 30), seed=50 + i)
        folder = root / f"sample{i}"
        folder.mkdir(parents=True)
        save_stack(folder / "stack.tif", s.stack)
        np.save(folder / "depth.npy", s.depth_um)
    js = tmp_path / "m.json"
    assert main(["eval", str(root), "--methods", "sml,glv", "--json", str(js), "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "| sml" in out and "| glv" in out and "RMSE" in out
    data = json.loads(js.read_text())
    assert data["metrics"]["sml"]["RMSE"] < 3.0  # µm, on a 20 µm range with 2.2 µm steps


def test_train_and_export_are_wired_to_their_trainers(capsys):
    import pytest as _pytest

    for network in ("gplws", "ldse"):
        with _pytest.raises(SystemExit) as exc:
            main(["train", network, "--help"])
        assert exc.value.code == 0
        assert f"gplws train {network}" in capsys.readouterr().out


def test_reconstruct_with_the_network_is_the_default_and_beats_sml_on_the_sample(tmp_path):
    from napari_gplws._sample_data import make_sample

    gt = make_sample().depth_um
    errors = {}
    for method in (None, "sml"):
        out = tmp_path / str(method)
        args = ["reconstruct", "--sample", "-o", str(out), "-q"] + (["--method", method] if method else [])
        assert main(args) == EXIT_OK
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        depth, info = read_depth_tiff(out / "depth.tif")
        assert info["units"] == "µm"
        errors[report["method"]] = float(np.sqrt(np.mean((depth - gt) ** 2)))
    assert set(errors) == {"gplws", "sml"}  # no --method means the network
    assert errors["gplws"] < errors["sml"], errors


def test_bench_prints_a_table_with_throughput_and_ratio(capsys):
    from napari_gplws.evaluation.speed import run_bench

    text = run_bench(sizes=[(4, 64, 64)], methods=["sml", "gplws"], repeats=1, device="cpu",
                     echo=lambda _l: None, autofocus=False)
    rows = [ln for ln in text.splitlines() if ln.startswith(("| sml", "| gplws"))]
    assert len(rows) == 4, text  # sml, sml with alignment on and off, gplws
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[1:-1]] for r in rows}
    assert "error" not in text
    assert cells["sml"][-2] == "1.00"  # the baseline's own ratio
    assert float(cells["sml, align off"][-1]) == 0.0  # no alignment step at all
    assert float(cells["sml, align on"][-1]) > 0.0
    median, per_s = float(cells["gplws"][2]), float(cells["gplws"][4])
    assert per_s == pytest.approx(1.0 / median, rel=0.02)
    assert cells["gplws"][8] == "cpu"
    assert "LDSE-NET" not in text


def test_bench_times_the_autofocus_network_against_the_classical_measure():
    from napari_gplws.evaluation.speed import autofocus_table

    text = autofocus_table(device="cpu", repeats=1, echo=lambda _l: None)
    head, _, row = text.strip().splitlines()
    assert "2592x1944, 108 tiles" in head
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[0] == "LDSE-NET" and cells[2] == "≤ 10" and cells[4] == "≤ 1.5"
    ms, full, classical, ratio = float(cells[1]), float(cells[3]), float(cells[5]), float(cells[6])
    assert ms > 0 and full > 0 and classical > 0
    assert ratio == pytest.approx(ms / classical, rel=0.02)
    assert cells[8] == "cpu"


# --- out of core: zarr inputs and --out-of-core ---------------------------------------------
@pytest.fixture()
def zarr_stack(tmp_path):
    """A 6×96×128 stack as a TIFF (µm units) and the same data as a zarr with 64-px chunks."""
    pytest.importorskip("zarr")
    pytest.importorskip("dask.array")
    from napari_gplws.io.zarr import tiff_to_zarr
    from napari_gplws.sim.focus_stacks import synthetic_stack

    s = synthetic_stack(family="waves", n_frames=6, shape=(96, 128), seed=3).stack
    tif = save_stack(tmp_path / "s.tif", s)
    return tif, tiff_to_zarr(tif, tmp_path / "s.zarr", chunk=64)


def _zarr_result(out):
    import zarr

    return zarr.open_group(str(out / "result.zarr"), mode="r")


@pytest.mark.parametrize("method", ["sml", "gplws"])
def test_reconstruct_zarr_equals_in_memory(tmp_path, zarr_stack, method, capsys):
    if method == "gplws":
        from napari_gplws.models.registry import has_default_weights

        if not has_default_weights("gplws"):
            pytest.skip("the packaged GPLWS-Net weights are not installed")
    tif, store = zarr_stack
    common = ["--method", method, "--device", "cpu", "--tile-size", "64", "-q"]
    # out of core runs the same default views and precision, and makes the all-in-focus
    # image by selection
    in_memory = common + ["--fusion", "select"]
    assert main(["reconstruct", str(tif), "-o", str(tmp_path / "mem")] + in_memory) == EXIT_OK
    out = tmp_path / "ooc"
    assert main(["reconstruct", str(store), "-o", str(out), "--chunk", "64"] + common) == EXIT_OK
    assert "out of core" in capsys.readouterr().out
    ref, info = read_depth_tiff(tmp_path / "mem" / "depth.tif")
    g = _zarr_result(out)
    np.testing.assert_allclose(g["depth"][:], ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(g["confidence"][:], tifffile.imread(tmp_path / "mem" / "confidence.tif"), atol=1e-4)
    aif_ref = tifffile.imread(tmp_path / "mem" / "aif.tif")
    assert g["aif"].dtype == aif_ref.dtype and np.abs(g["aif"][:].astype(int) - aif_ref).max() <= 1
    assert g["depth"].attrs["units"] == info["units"] == "µm"
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["method"] == method and rep["units"]["depth"] == "µm" and rep["output_format"] == "zarr"
    assert rep["input"]["shape"] == [6, 96, 128] and rep["output_shape"] == [96, 128]
    assert rep["outputs"]["result.zarr"] == str(out / "result.zarr") and "total" in rep["seconds"]
    assert "zarr" in rep["note"] and not any(p.name.startswith(".") for p in out.iterdir())


def test_out_of_core_tiff_backup_and_memory_hint(tmp_path, zarr_stack, monkeypatch, capsys):
    tif, _store = zarr_stack
    out = tmp_path / "out"
    args = ["reconstruct", str(tif), "-o", str(out), "--method", "sml", "-q"]
    assert main(args) == EXIT_OK  # in memory first: depth.tif …
    ref, _ = read_depth_tiff(out / "depth.tif")
    assert main(args + ["--out-of-core", "--chunk", "64"]) == EXIT_OK
    np.testing.assert_allclose(_zarr_result(out)["depth"][:], ref, rtol=0, atol=1e-4)
    # the earlier TIFF outputs were moved aside, the temporary zarr is gone
    names = sorted(p.name for p in out.iterdir())
    assert names[1:] == ["report.json", "result.zarr"] and names[0].startswith("backup-")
    assert (out / names[0] / "depth.tif").is_file()
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["input"]["source"] == str(tif) and rep["input"]["format"] == "tiff"
    assert "convert" in rep["seconds"] and "removed" in rep["input"]["read_via"]
    # --keep-zarr keeps the converted input under a clear name
    assert main(args + ["--out-of-core", "--chunk", "64", "--keep-zarr"]) == EXIT_OK
    assert (out / "input.zarr").is_dir() and (out / "result.zarr").is_dir()
    capsys.readouterr()

    # a TIFF that would not fit in memory: the error suggests --out-of-core
    import napari_gplws.io._tiff as io_mod

    monkeypatch.setattr(io_mod, "available_memory_bytes", lambda: 1000)
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "s.tif" in err and "--out-of-core" in err and "too large" in err
    assert main(args + ["--out-of-core", "--chunk", "64", "-o", str(tmp_path / "o2")]) == EXIT_OK

    # out of core reads TIFF and zarr only
    one = tmp_path / "one.npy"
    np.save(one, np.zeros((3, 8, 8), np.uint8))
    assert main(["reconstruct", str(one), "-o", str(tmp_path / "o3"), "--out-of-core"]) == EXIT_ERROR
    assert "one.npy" in capsys.readouterr().err
