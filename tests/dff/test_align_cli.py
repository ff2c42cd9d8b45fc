"""``gplws reconstruct --align``: flags, report.json and the printed reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cv2")

from napari_gplws.cli import main
from napari_gplws.sim.motion import moving_stack


def test_cli_align_on_moving_stack(tmp_path, capsys):
    m = moving_stack(
        family="smooth", n_frames=10, shape=(192, 192), blur_px_per_um=0.25,
        breathing=0.05, drift_px=(0.7, 0.0), seed=4,
    )
    src = tmp_path / "moving.npz"
    np.savez(src, frames=m.stack.frames, focus_um=m.stack.focus_um)
    out = tmp_path / "out"
    rc = main([
        "reconstruct", str(src), "-o", str(out), "--method", "sml", "--align", "auto",
        "--reference", "4", "--crop-common", "-q",
    ])
    assert rc == 0
    assert "alignment: aligned" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["alignment"]["aligned"] and rep["alignment"]["reference_frame"] == 4
    assert rep["crop"] is not None
    assert rep["parameters"]["align_model"] == "affine"  # the default model


def test_cli_refuses_a_reference_outside_the_stack(tmp_path, capsys):
    m = moving_stack(n_frames=4, shape=(48, 48), seed=1)
    src = tmp_path / "s.npy"
    np.save(src, m.stack.frames)
    rc = main(["reconstruct", str(src), "-o", str(tmp_path / "o"), "--method", "sml",
               "--align", "on", "--reference", "9", "-q"])
    assert rc != 0
    assert "reference frame 9 is outside" in capsys.readouterr().err


def test_cli_defaults_align_a_moving_stack_and_fuse_by_pyramid(tmp_path, capsys):
    m = moving_stack(n_frames=12, shape=(256, 256), breathing=0.05, drift_px=(0.6, 0.3), seed=6)
    src = tmp_path / "moving.npz"
    np.savez(src, frames=m.stack.frames, focus_um=m.stack.focus_um)
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "-o", str(out), "--method", "sml", "-q"]) == 0
    assert "alignment: aligned" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["alignment"]["mode"] == "auto" and rep["alignment"]["evidence"]["moving"]
    assert rep["parameters"]["fusion"] == "pyramid"
    # the still twin: left alone, and the report says why
    np.savez(src, frames=m.still.frames, focus_um=m.still.focus_um)
    assert main(["reconstruct", str(src), "-o", str(out), "--method", "sml", "-q",
                 "--fusion", "select"]) == 0
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["alignment"]["aligned"] is False and "do not move" in rep["alignment"]["reason"]
    assert rep["parameters"]["fusion"] == "select"


def test_cli_refuses_alignment_and_pyramid_out_of_core(tmp_path, capsys):
    pytest.importorskip("zarr")
    from napari_gplws.io import save_stack

    m = moving_stack(n_frames=4, shape=(48, 48), seed=1)
    tif = tmp_path / "s.tif"
    save_stack(tif, m.stack)
    for flag in (["--align", "on"], ["--fusion", "pyramid"]):
        rc = main(["reconstruct", str(tif), "-o", str(tmp_path / "o"), "--method", "sml",
                   "--out-of-core", "-q", *flag])
        assert rc != 0
        assert "out of core" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a refused run leaves no empty folder behind
    # the defaults (auto, pyramid) are fine out of core, and the user is told nothing aligned
    out = tmp_path / "o2"
    assert main(["reconstruct", str(tif), "-o", str(out), "--method", "sml",
                 "--out-of-core", "--align", "auto", "-q"]) == 0
    assert "alignment: not measured: out of core" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["alignment"]["aligned"] is False and "out of core" in rep["alignment"]["reason"]


def test_a_refused_run_keeps_a_folder_the_user_made(tmp_path, capsys):
    """Only a folder this very run created is removed after a refusal, and only when empty."""
    m = moving_stack(n_frames=4, shape=(48, 48), seed=1)
    src = tmp_path / "s.npy"
    np.save(src, m.stack.frames)
    mine = tmp_path / "mine"
    mine.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    for out in (mine, tmp_path / "notes"):
        rc = main(["reconstruct", str(src), "-o", str(out), "--method", "sml",
                   "--align", "on", "--reference", "9", "-q"])
        assert rc != 0
    assert mine.is_dir() and (tmp_path / "notes" / "keep.txt").read_text() == "mine"
