"""Tests of frame patterns, majority-format folders, link loops and vendor files (bioio)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from napari_gplws.cli._common import EXIT_ERROR, EXIT_OK
from napari_gplws.cli.main import main
from napari_gplws.errors import StackError
from napari_gplws.io import frame_selection, list_frame_files, read_stack
from napari_gplws.io import vendor as vendor_mod

iio = pytest.importorskip("imageio.v3")


def _frames(folder, n=6, name="im_{:03d}.bmp", shape=(20, 24), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = (rng.random(shape) * 255).astype(np.uint8)
        iio.imwrite(folder / name.format(k), a)
        out.append(a)
    return np.stack(out)


# ------------------------------------------------------------------------ folders, patterns
def test_majority_format_reads_the_frames_and_names_the_rest(tmp_path):
    d = tmp_path / "scan"
    truth = _frames(d, n=30)
    iio.imwrite(d / "mask.png", np.zeros((40, 40), np.uint8))
    (d / "depth.csv").write_text("1,2\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"left out 1 other image file\(s\): mask.png"):
        s = read_stack(d)
    assert s.n_frames == 30
    np.testing.assert_array_equal(s.frames, truth)
    assert s.metadata["left_out"] == ["depth.csv", "mask.png"]
    assert s.metadata["frames_chosen_by"] == "majority format"
    # a second read gives the same (nothing cached, nothing changed on disk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(read_stack(d).frames, truth)


def test_naming_scheme_leaves_out_a_same_format_ground_truth(tmp_path):
    d = tmp_path / "scan"
    truth = _frames(d, n=8, name="z_{:02d}.png")
    iio.imwrite(d / "ground_truth.png", np.zeros((20, 24), np.uint8))  # same size and type
    with pytest.warns(UserWarning, match="ground_truth.png"):
        s = read_stack(d)
    np.testing.assert_array_equal(s.frames, truth)
    assert s.metadata["frames_chosen_by"] == "naming scheme"


def test_negative_numbers_share_the_naming_scheme(tmp_path):
    d = tmp_path / "scan"
    d.mkdir()
    for k, z in enumerate((-2, -1, 0, 1, 2)):
        iio.imwrite(d / f"z_{z}.png", np.full((8, 8), k, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so no warning
        files, left, why = frame_selection(d)
    assert len(files) == 5 and left == [] and why == "all"


def test_pattern_and_glob_path(tmp_path):
    d = tmp_path / "scan"
    truth = _frames(d, n=6)
    _frames(d, n=4, name="dark_{:02d}.bmp", seed=5)
    s = read_stack(d, pattern="IM_*.BMP")  # case-insensitive
    np.testing.assert_array_equal(s.frames, truth)
    assert s.metadata["pattern"] == "IM_*.BMP"
    assert s.metadata["left_out"] == [f"dark_{k:02d}.bmp" for k in range(4)]
    g = read_stack(str(d / "im_00[0-3].bmp"))
    np.testing.assert_array_equal(g.frames, truth[:4])
    assert list_frame_files(d, pattern="dark_*") == [d / f"dark_{k:02d}.bmp" for k in range(4)]


def test_pattern_errors(tmp_path):
    d = tmp_path / "scan"
    _frames(d, n=3)
    with pytest.raises(StackError, match="matches the pattern '\\*.gif'"):
        read_stack(d, pattern="*.gif")
    with pytest.raises(StackError, match="is a file"):
        read_stack(d / "im_000.bmp", pattern="*.bmp")
    with pytest.raises(StackError, match="not both"):
        read_stack(str(d / "*.bmp"), pattern="*.bmp")
    with pytest.raises(StackError, match="no folder part"):
        read_stack(d, pattern="sub/*.bmp")
    with pytest.raises(StackError, match="several formats"):
        iio.imwrite(d / "im_x.png", np.zeros((20, 24), np.uint8))
        read_stack(d, pattern="im_*")


def test_mixed_folder_without_a_majority_is_refused(tmp_path):
    d = tmp_path / "scan"
    _frames(d, n=3, name="a{}.png")
    _frames(d, n=3, name="b{}.tif")
    with pytest.raises(StackError, match="--pattern '\\*\\.(png|tif)'"):
        read_stack(d)


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(StackError, match="loop of links") as e:
        read_stack(a)
    assert str(a) in str(e.value)
    # a loop inside a folder of frames is not a frame
    d = tmp_path / "scan"
    truth = _frames(d, n=3)
    os.symlink(d / "zz.bmp", d / "zz.bmp")
    np.testing.assert_array_equal(read_stack(d).frames, truth)


def test_cli_pattern_reconstruct_and_batch(tmp_path, capsys):
    d = tmp_path / "scan"
    _frames(d, n=6)
    iio.imwrite(d / "mask.png", np.zeros((40, 40), np.uint8))
    out = tmp_path / "out"
    assert main(["reconstruct", str(d), "--pattern", "im_*.bmp", "-o", str(out),
                 "--method", "sml", "-q"]) == EXIT_OK
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["input"]["shape"][0] == 6
    # without a pattern, the majority is read and the file left out is named
    capsys.readouterr()
    assert main(["reconstruct", str(d), "-o", str(tmp_path / "o2"), "--method", "sml",
                 "-q"]) == EXIT_OK
    assert "not read: mask.png" in capsys.readouterr().err
    # a pattern on a single file is an error for people, not a traceback
    assert main(["reconstruct", str(d / "im_000.bmp"), "--pattern", "*.bmp", "-o",
                 str(tmp_path / "o3"), "--method", "sml"]) == EXIT_ERROR
    # batch: the pattern applies to every folder
    d2 = tmp_path / "scan2"
    _frames(d2, n=5, seed=3)
    iio.imwrite(d2 / "notes.png", np.zeros((3, 3), np.uint8))
    code = main(["batch", str(d), str(d2), "-o", str(tmp_path / "b"), "--pattern", "im_*.bmp",
                 "--method", "sml", "--threads", "--workers", "1", "-q"])
    assert code == EXIT_OK
    shapes = sorted(
        json.loads((tmp_path / "b" / n / "report.json").read_text(encoding="utf-8"))["input"]["shape"][0]
        for n in ("scan", "scan2")
    )
    assert shapes == [5, 6]


# ------------------------------------------------------------------------ vendor files
def test_missing_bioio_or_plugin_names_the_install(tmp_path, monkeypatch):
    f = tmp_path / "scan.czi"
    f.write_bytes(b"not really a czi")
    monkeypatch.setattr(vendor_mod, "have_bioio", lambda: False)
    with pytest.raises(StackError, match=r"pip install 'napari-gplws\[czi\]'"):
        read_stack(f)
    g = tmp_path / "scan.nd2"
    g.write_bytes(b"x")
    with pytest.raises(StackError, match=r"pip install 'napari-gplws\[formats\]'"):
        read_stack(g)
    monkeypatch.setattr(vendor_mod, "have_bioio", lambda: True)
    real = vendor_mod.importlib.util.find_spec
    monkeypatch.setattr(
        vendor_mod.importlib.util, "find_spec",
        lambda name: None if name == "bioio_nd2" else real(name),
    )
    with pytest.raises(StackError, match="needs the bioio reader plugin bioio-nd2: pip install bioio-nd2"):
        read_stack(g)


@pytest.fixture
def ome_tiff(tmp_path):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    from bioio_base.types import PhysicalPixelSizes
    from bioio_ome_tiff.writers import OmeTiffWriter

    rng = np.random.default_rng(1)
    data = (rng.random((2, 3, 5, 32, 40)) * 60000).astype(np.uint16)  # T C Z Y X
    path = tmp_path / "scan.ome.tiff"
    OmeTiffWriter.save(data, str(path), dim_order="TCZYX",
                       physical_pixel_sizes=PhysicalPixelSizes(2.5, 0.65, 0.65))
    return path, data


def test_bioio_ome_tiff_round_trip(ome_tiff):
    path, data = ome_tiff
    s = read_stack(path, reader="bioio", axis_pick={"T": 1, "C": 2})
    np.testing.assert_array_equal(s.frames, data[1, 2])
    assert s.frames.dtype == np.uint16
    assert s.focus_step_um == pytest.approx(2.5)
    assert s.pixel_size_um == pytest.approx(0.65)
    assert s.metadata["focus_from"] == "file metadata"
    assert s.metadata["focus_axis"] == "Z" and s.metadata["format"].startswith("bioio")
    # arguments still override the file's metadata
    s2 = read_stack(path, reader="bioio", axis_pick={"T": 0, "C": 0}, focus_step_um=-1.0)
    assert s2.focus_um[1] - s2.focus_um[0] == pytest.approx(-1.0)
    # the same file read natively (tifffile) gives the same frames and units
    n = read_stack(path, axis_pick={"T": 1, "C": 2})
    np.testing.assert_array_equal(n.frames, s.frames)
    assert n.focus_step_um == pytest.approx(s.focus_step_um)


def test_bioio_choices_are_checked(ome_tiff):
    path, _ = ome_tiff
    with pytest.raises(StackError, match="one focus axis.*--axis-pick T=0 --axis-pick C=0"):
        read_stack(path, reader="bioio")
    with pytest.raises(StackError, match="C=7 is out of range.*3 entries"):
        read_stack(path, reader="bioio", axis_pick={"T": 0, "C": 7})
    with pytest.raises(StackError, match="no axis Q"):
        read_stack(path, reader="bioio", axis_pick={"T": 0, "C": 0, "Q": 2})
    with pytest.raises(StackError, match="scene"):
        read_stack(path, reader="bioio", axis_pick={"T": 0, "C": 0, "S": 3})


def test_bioio_scenes_and_colour(tmp_path):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    from bioio_ome_tiff.writers import OmeTiffWriter

    rng = np.random.default_rng(2)
    a = (rng.random((4, 16, 20, 3)) * 255).astype(np.uint8)
    b = (rng.random((6, 16, 20, 3)) * 255).astype(np.uint8)
    path = tmp_path / "two.ome.tiff"
    OmeTiffWriter.save([a, b], str(path), dim_order=["ZYXS", "ZYXS"])
    with pytest.raises(StackError, match="2 scenes.*--axis-pick S=0"):
        read_stack(path, reader="bioio")
    s = read_stack(path, reader="bioio", axis_pick={"S": 1})
    assert s.frames.shape == (6, 16, 20, 3)
    np.testing.assert_array_equal(s.frames, b)
    np.testing.assert_array_equal(read_stack(path, reader="bioio", axis_pick={"P": 0}).frames, a)


def test_bioio_ome_zarr_round_trip(tmp_path):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_zarr")
    from bioio_ome_zarr.writers import OMEZarrWriter

    rng = np.random.default_rng(3)
    data = (rng.random((1, 1, 7, 24, 28)) * 255).astype(np.uint8)
    path = tmp_path / "scan.ome.zarr"
    w = OMEZarrWriter(
        str(path), level_shapes=[data.shape], dtype=data.dtype,
        axes_names=["t", "c", "z", "y", "x"], axes_types=["time", "channel", "space", "space", "space"],
        axes_units=[None, None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[1.0, 1.0, 3.0, 0.5, 0.5],
    )
    w.write_full_volume(data)
    s = read_stack(path, reader="bioio")
    np.testing.assert_array_equal(s.frames, data[0, 0])
    assert s.focus_step_um == pytest.approx(3.0) and s.pixel_size_um == pytest.approx(0.5)
    from napari_gplws.api import reconstruct

    r = reconstruct(s, method="sml")
    assert r.depth.shape == (24, 28) and r.units == "µm"


def test_damaged_vendor_file_is_an_error_for_people(tmp_path):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff")
    f = tmp_path / "scan.ome.tiff"
    f.write_bytes(b"II*\x00garbage")
    with pytest.raises(StackError, match="scan.ome.tiff"):
        read_stack(f, reader="bioio")
    with pytest.raises(StackError, match="reader='x'"):
        read_stack(f, reader="x")
