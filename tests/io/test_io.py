"""Tests of core.io: reading stacks in every accepted layout, units precedence, bad inputs,
and the TIFF writers' round trips."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from napari_gplws.errors import FocusPositionError, GplwsError, StackError
from napari_gplws.io import (
    parse_axis_pick,
    read_depth_tiff,
    read_image_tiff,
    read_stack,
    save_stack,
    write_depth_tiff,
    write_image_tiff,
)
from napari_gplws.stack import FocalStack


def _frames(n=6, h=12, w=10, dtype=np.uint16, rgb=False):
    """Frames whose content identifies the frame index (frame k has mean ~ 100*k)."""
    base = np.arange(h * w, dtype=np.float64).reshape(h, w) % 7
    f = np.stack([base + 100 * k for k in range(n)]).astype(dtype)
    if rgb:
        f = np.stack([f, f + 1, f + 2], axis=-1).astype(dtype)
    return f


def _write_png_folder(folder, frames, names=None, ext="png"):
    import imageio.v3 as iio

    folder.mkdir()
    names = names or [f"{k + 1}.{ext}" for k in range(len(frames))]
    for name, fr in zip(names, frames, strict=False):
        iio.imwrite(folder / name, fr)
    return folder


# ------------------------------------------------------------------------------------------
# TIFF families
# ------------------------------------------------------------------------------------------
def test_imagej_tiff_spacing_and_pixel_size(tmp_path):
    f = _frames()
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        f,
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"axes": "ZYX", "spacing": 2.5, "unit": "micron"},
    )
    s = read_stack(path)
    assert s.frames.dtype == np.uint16 and s.frames.shape == f.shape
    np.testing.assert_array_equal(s.frames, f)
    np.testing.assert_allclose(s.focus_um, 2.5 * np.arange(6))
    assert s.pixel_size_um == pytest.approx(0.65, rel=1e-6)
    assert s.metadata["format"] == "imagej-tiff" and s.metadata["focus_from"] == "file metadata"
    assert s.source == str(path)


def test_imagej_tiff_nm_unit(tmp_path):
    path = tmp_path / "nm.tif"
    tifffile.imwrite(
        path,
        _frames(n=3),
        imagej=True,
        resolution=(1 / 200, 1 / 200),
        metadata={"axes": "ZYX", "spacing": 500, "unit": "nm"},
    )
    s = read_stack(path)
    assert s.pixel_size_um == pytest.approx(0.2)
    np.testing.assert_allclose(s.focus_um, [0, 0.5, 1.0])


def test_ome_tiff_physical_sizes_with_units(tmp_path):
    path = tmp_path / "scan.ome.tif"
    tifffile.imwrite(
        path,
        _frames(n=4),
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 325,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 325,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.002,
            "PhysicalSizeZUnit": "mm",
        },
    )
    s = read_stack(path)
    assert s.pixel_size_um == pytest.approx(0.325)
    np.testing.assert_allclose(s.focus_um, [0, 2, 4, 6])
    assert s.metadata["format"] == "ome-tiff"


def test_ome_tiff_plane_positions_win_over_physical_size_z(tmp_path):
    path = tmp_path / "uneven.ome.tif"
    pos = [10.0, 11.0, 13.0, 16.0]
    tifffile.imwrite(
        path,
        _frames(n=4),
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": 1.0,
            "Plane": {"PositionZ": pos, "PositionZUnit": ["µm"] * 4},
        },
    )
    np.testing.assert_allclose(read_stack(path).focus_um, pos)


def test_plain_multipage_tiff_has_no_units(tmp_path):
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as w:
        for fr in _frames(n=3, dtype=np.uint8):
            w.write(fr, contiguous=False)
    s = read_stack(path)
    assert s.n_frames == 3 and s.focus_um is None and s.pixel_size_um is None and s.units == "frame"


def test_rgba_tiff_drops_alpha(tmp_path):
    path = tmp_path / "rgba.tif"
    data = np.zeros((3, 8, 9, 4), np.uint8)
    data[..., 0] = 7
    data[..., 3] = 255
    tifffile.imwrite(path, data, photometric="rgb", extrasamples=["unassalpha"])
    s = read_stack(path)
    assert s.frames.shape == (3, 8, 9, 3) and s.is_rgb and (s.frames[..., 0] == 7).all()


# ------------------------------------------------------------------------------------------
# Extra axes
# ------------------------------------------------------------------------------------------
def _tzyx(tmp_path):
    data = np.zeros((3, 5, 8, 9), np.uint16)
    for t in range(3):
        for z in range(5):
            data[t, z] = 10 * t + z
    path = tmp_path / "movie.tif"
    tifffile.imwrite(
        path, data, imagej=True, metadata={"axes": "TZYX", "spacing": 1.5, "unit": "um"}
    )
    return path, data


def test_tzyx_without_pick_names_axes_and_fix(tmp_path):
    path, _ = _tzyx(tmp_path)
    with pytest.raises(StackError) as e:
        read_stack(path)
    msg = str(e.value)
    assert "movie.tif" in msg and "TZYX" in msg and "T=3" in msg
    assert "axis_pick={'T': 0}" in msg and "--axis-pick T=0" in msg


def test_tzyx_with_pick_selects_time_point(tmp_path):
    path, data = _tzyx(tmp_path)
    s = read_stack(path, axis_pick={"t": 2})
    np.testing.assert_array_equal(s.frames, data[2])
    np.testing.assert_allclose(s.focus_um, 1.5 * np.arange(5))
    assert s.metadata["axis_pick"] == {"T": 2}


def test_axis_pick_out_of_range_and_missing_axis(tmp_path):
    path, _ = _tzyx(tmp_path)
    with pytest.raises(StackError, match="out of range"):
        read_stack(path, axis_pick={"T": 3})
    with pytest.raises(StackError, match="no axis C"):
        read_stack(path, axis_pick={"T": 0, "C": 1})
    # index 0 of an absent (squeezed) axis is harmless
    assert read_stack(path, axis_pick={"T": 0, "C": 0}).n_frames == 5


def test_tzcyx_needs_two_picks(tmp_path):
    path = tmp_path / "tzc.ome.tif"
    data = np.arange(2 * 4 * 3 * 6 * 5, dtype=np.uint16).reshape(2, 4, 3, 6, 5)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TZCYX"})
    with pytest.raises(StackError) as e:
        read_stack(path)
    assert "T=2" in str(e.value) and "C=3" in str(e.value) and "channel" in str(e.value)
    s = read_stack(path, axis_pick={"T": 1, "C": 2})
    np.testing.assert_array_equal(s.frames, data[1, :, 2])


def test_zcyx_channels_and_non_colour_samples(tmp_path):
    path = tmp_path / "zc.tif"
    data = np.arange(4 * 3 * 8 * 9, dtype=np.uint8).reshape(4, 3, 8, 9)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(StackError, match=r"C=3.*channel.*axis_pick=\{'C': 0\}"):
        read_stack(path)
    np.testing.assert_array_equal(read_stack(path, axis_pick={"C": 1}).frames, data[:, 1])
    # 4 planar samples that are not RGBA are channels, not colour
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate")
    with pytest.raises(StackError, match="this assumes"):
        read_stack(path)


def test_npy_4d_needs_pick(tmp_path):
    path = tmp_path / "a.npy"
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.save(path, data)
    with pytest.raises(StackError) as e:
        read_stack(path)
    assert (
        "a.npy" in str(e.value) and "axis 0=2" in str(e.value) and "--axis-pick 0=0" in str(e.value)
    )
    np.testing.assert_array_equal(read_stack(path, axis_pick={"0": 1}).frames, data[1])


def test_parse_axis_pick():
    assert parse_axis_pick("t=0,C=2") == {"T": 0, "C": 2}
    assert parse_axis_pick(["T=1", "0=3"]) == {"T": 1, "0": 3}
    with pytest.raises(StackError, match="AXIS=INDEX"):
        parse_axis_pick("T")


# ------------------------------------------------------------------------------------------
# Folders
# ------------------------------------------------------------------------------------------
def test_png_folder_natural_order(tmp_path):
    frames = _frames(n=12, dtype=np.uint8)
    folder = _write_png_folder(tmp_path / "pngs", frames)
    (folder / "focus.json").write_text(json.dumps({"focus_step_um": 1.0}))
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    s = read_stack(folder)
    # frame k was written as "k+1.png": natural order gives frames back in order
    np.testing.assert_array_equal(s.frames, frames)
    assert (
        s.metadata["files"][:3] == ["1.png", "2.png", "3.png"]
        and s.metadata["files"][-1] == "12.png"
    )
    assert s.metadata["focus_from"].startswith("sidecar")


def test_bmp_folder_rgba_png_and_16bit(tmp_path):
    f8 = _frames(n=3, dtype=np.uint8)
    s = read_stack(_write_png_folder(tmp_path / "bmps", f8, ext="bmp"))
    np.testing.assert_array_equal(s.frames, f8)
    rgba = np.concatenate(
        [_frames(n=3, dtype=np.uint8, rgb=True), np.full((3, 12, 10, 1), 255, np.uint8)], -1
    )
    s = read_stack(_write_png_folder(tmp_path / "rgba", rgba))
    assert s.frames.shape == (3, 12, 10, 3)
    f16 = _frames(n=3, dtype=np.uint16) * 50
    s = read_stack(_write_png_folder(tmp_path / "p16", f16))
    assert s.frames.dtype == np.uint16
    np.testing.assert_array_equal(s.frames, f16)


def test_tif_folder(tmp_path):
    folder = tmp_path / "tifs"
    folder.mkdir()
    f = _frames(n=3, dtype=np.float32)
    for k, fr in enumerate(f):
        tifffile.imwrite(folder / f"z{k:03d}.tif", fr)
    np.testing.assert_array_equal(read_stack(folder).frames, f)


# ------------------------------------------------------------------------------------------
# NumPy files
# ------------------------------------------------------------------------------------------
def test_npy_and_npz(tmp_path):
    f = _frames(n=4, dtype=np.float32)
    np.save(tmp_path / "s.npy", f)
    s = read_stack(tmp_path / "s.npy")
    assert s.frames.dtype == np.float32 and s.focus_um is None
    np.savez(
        tmp_path / "a.npz", stack=f, focus_um=np.array([0, 1, 3, 6.0]), pixel_size_um=np.array(0.5)
    )
    s = read_stack(tmp_path / "a.npz")
    np.testing.assert_allclose(s.focus_um, [0, 1, 3, 6])
    assert s.pixel_size_um == 0.5
    np.savez(tmp_path / "only.npz", whatever=f)
    assert read_stack(tmp_path / "only.npz").n_frames == 4
    np.savez(tmp_path / "two.npz", a=f, b=f)
    with pytest.raises(StackError, match="'frames' or 'stack'"):
        read_stack(tmp_path / "two.npz")


# ------------------------------------------------------------------------------------------
# Precedence: arguments > sidecar > file
# ------------------------------------------------------------------------------------------
def test_sidecar_overrides_file_and_arguments_override_sidecar(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        _frames(n=4),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX", "spacing": 9.0, "unit": "um"},
    )
    (tmp_path / "stack.json").write_text(
        json.dumps(
            {"focus_start_um": 100, "focus_step_um": -2, "pixel_size_um": 0.5, "note": "kept"}
        )
    )
    s = read_stack(path)
    np.testing.assert_allclose(s.focus_um, [100, 98, 96, 94])
    assert s.pixel_size_um == 0.5 and s.metadata["sidecar_extra"] == {"note": "kept"}
    s = read_stack(path, focus_um=[1, 2, 4, 8], pixel_size_um=0.25)
    np.testing.assert_allclose(s.focus_um, [1, 2, 4, 8])
    assert s.pixel_size_um == 0.25 and s.metadata["focus_from"] == "arguments"
    # a step alone starts at 0; a start alone combines with the sidecar's step
    np.testing.assert_allclose(read_stack(path, focus_step_um=3).focus_um, [0, 3, 6, 9])
    np.testing.assert_allclose(read_stack(path, focus_start_um=7).focus_um, [7, 5, 3, 1])


def test_start_alone_shifts_a_list(tmp_path):
    np.savez(tmp_path / "a.npz", frames=_frames(n=3), focus_um=np.array([5.0, 6.0, 8.0]))
    np.testing.assert_allclose(read_stack(tmp_path / "a.npz", focus_start_um=0).focus_um, [0, 1, 3])


def test_focus_and_step_together_is_an_error(tmp_path):
    np.save(tmp_path / "s.npy", _frames(n=3))
    with pytest.raises(StackError, match="not both"):
        read_stack(tmp_path / "s.npy", focus_um=[0, 1, 2], focus_step_um=1)


# ------------------------------------------------------------------------------------------
# Bad inputs: every message names the file and says what to do
# ------------------------------------------------------------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(StackError) as e:
        read_stack(tmp_path / "nope.tif")
    assert (
        "nope.tif" in str(e.value) and "does not exist" in str(e.value) and "check" in str(e.value)
    )


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StackError) as e:
        read_stack(tmp_path / "empty")
    assert (
        "empty" in str(e.value) and "no image frames" in str(e.value) and "Point to" in str(e.value)
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    with pytest.raises(StackError, match="readme.txt"):
        read_stack(tmp_path / "docs")


def test_frames_of_different_sizes_and_dtypes(tmp_path):
    import imageio.v3 as iio

    folder = _write_png_folder(tmp_path / "odd", _frames(n=3, dtype=np.uint8))
    iio.imwrite(folder / "4.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(StackError) as e:
        read_stack(folder)
    msg = str(e.value)
    assert "'4.png'" in msg and "(5, 5)" in msg and "(12, 10)" in msg and "'1.png'" in msg
    folder2 = _write_png_folder(tmp_path / "dt", _frames(n=3, dtype=np.uint8))
    iio.imwrite(folder2 / "4.png", np.zeros((12, 10), np.uint16))
    with pytest.raises(StackError, match="uint16"):
        read_stack(folder2)


def test_multipage_tiff_pages_of_different_sizes(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as w:
        w.write(np.zeros((8, 8), np.uint8), contiguous=False)
        w.write(np.zeros((8, 8), np.uint8), contiguous=False)
        w.write(np.zeros((6, 6), np.uint8), contiguous=False)
    with pytest.raises(StackError) as e:
        read_stack(path)
    assert "mixed.tif" in str(e.value) and "same size" in str(e.value)


def test_one_frame(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(StackError) as e:
        read_stack(tmp_path / "one.tif")
    assert (
        "one.tif" in str(e.value)
        and "single frame" in str(e.value)
        and "at least two" in str(e.value)
    )
    _write_png_folder(tmp_path / "f1", _frames(n=1, dtype=np.uint8))
    with pytest.raises(StackError, match="single frame"):
        read_stack(tmp_path / "f1")


@pytest.mark.parametrize("where", ["half", "last frame"])
@pytest.mark.parametrize("kind", ["imagej", "plain", "ome"])
def test_truncated_tiff(tmp_path, kind, where):
    path = tmp_path / ("cut.ome.tif" if kind == "ome" else "cut.tif")
    f = _frames(n=6)
    kwargs = {"imagej": True} if kind == "imagej" else {"ome": True} if kind == "ome" else {}
    tifffile.imwrite(path, f, **kwargs)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as t:
        cut = len(data) // 2 if where == "half" else t.pages[-1].dataoffsets[0] + 7
    path.write_bytes(data[:cut])
    with pytest.raises(StackError) as e:
        read_stack(path)
    assert (
        path.name in str(e.value)
        and "truncated or corrupt" in str(e.value)
        and "again" in str(e.value)
    )


def test_garbage_tiff_and_unreadable_frame(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(StackError, match="junk.tif.*corrupt"):
        read_stack(tmp_path / "junk.tif")
    folder = _write_png_folder(tmp_path / "bad", _frames(n=3, dtype=np.uint8))
    (folder / "2.png").write_bytes((folder / "2.png").read_bytes()[:40])
    with pytest.raises(StackError) as e:
        read_stack(folder)
    assert "2.png" in str(e.value) and "Re-export" in str(e.value)


def test_corrupt_npy_and_npz(tmp_path):
    np.save(tmp_path / "c.npy", _frames(n=3))
    b = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "c.npy").write_bytes(b[: len(b) // 2])
    with pytest.raises(StackError, match="c.npy.*truncated or corrupt"):
        read_stack(tmp_path / "c.npy")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(StackError, match="c.npz.*truncated or corrupt"):
        read_stack(tmp_path / "c.npz")


def test_nan_mentions_source(tmp_path):
    f = _frames(n=3, dtype=np.float32)
    f[1, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", f)
    with pytest.raises(StackError) as e:
        read_stack(tmp_path / "nan.npy")
    assert "nan.npy" in str(e.value) and "NaN" in str(e.value) and "nan_to_num" in str(e.value)


def test_bad_focus_positions_say_where_they_came_from(tmp_path):
    np.save(tmp_path / "s.npy", _frames(n=4))
    (tmp_path / "s.json").write_text(json.dumps({"focus_um": [0, 1, 1, 2]}))
    with pytest.raises(FocusPositionError) as e:
        read_stack(tmp_path / "s.npy")
    assert "s.npy" in str(e.value) and "s.json" in str(e.value) and "strictly" in str(e.value)
    with pytest.raises(FocusPositionError) as e:
        read_stack(tmp_path / "s.npy", focus_um=[0, 1, 2])
    assert "3 focus positions for 4 frames" in str(e.value) and "arguments" in str(e.value)


def test_bad_sidecar(tmp_path):
    np.save(tmp_path / "s.npy", _frames(n=3))
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(StackError, match="s.json.*not valid JSON"):
        read_stack(tmp_path / "s.npy")
    (tmp_path / "s.json").write_text(json.dumps({"focus_step_um": "two"}))
    with pytest.raises(StackError, match="must be a number"):
        read_stack(tmp_path / "s.npy")


def test_unsupported_extension_and_single_image(tmp_path):
    (tmp_path / "x.xyz").write_bytes(b"x")  # vendor formats (.czi …) go through bioio
    with pytest.raises(StackError) as e:
        read_stack(tmp_path / "x.xyz")
    assert "x.xyz" in str(e.value) and "unsupported" in str(e.value) and "convert" in str(e.value)
    (tmp_path / "one.png").write_bytes(b"x")
    with pytest.raises(StackError, match="one.png.*single image.*folder"):
        read_stack(tmp_path / "one.png")


# ------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------
def test_depth_tiff_round_trip(tmp_path):
    depth = np.linspace(0, 50, 12 * 10).reshape(12, 10)
    path = write_depth_tiff(
        tmp_path / "depth.tif",
        depth,
        units="µm",
        pixel_size_um=0.65,
        metadata={"method": "sml", "focus_um": np.arange(3.0)},
    )
    d, info = read_depth_tiff(path)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, depth, rtol=1e-6)
    assert info["units"] == "µm" and info["method"] == "sml" and info["focus_um"] == [0.0, 1.0, 2.0]
    assert info["pixel_size_um"] == pytest.approx(0.65)
    with tifffile.TiffFile(path) as t:  # what Fiji reads
        assert t.is_imagej and t.imagej_metadata["unit"] == "micron"
        num, den = t.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.65, rel=1e-6)
    write_depth_tiff(tmp_path / "f.tif", depth, units="frame", pixel_size_um=None)
    d, info = read_depth_tiff(tmp_path / "f.tif")
    assert info["units"] == "frame" and info["pixel_size_um"] is None


def test_write_overwrite_false_and_atomic(tmp_path):
    path = tmp_path / "d.tif"
    write_depth_tiff(path, np.zeros((4, 4)), units="µm", pixel_size_um=None)
    before = path.read_bytes()
    with pytest.raises(GplwsError, match="already exists"):
        write_depth_tiff(path, np.ones((4, 4)), units="µm", pixel_size_um=None, overwrite=False)
    with pytest.raises(GplwsError):
        write_depth_tiff(path, np.ones((4, 4, 4)), units="µm", pixel_size_um=None)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.tif"]  # no temporary files left
    write_depth_tiff(path, np.ones((4, 4)), units="µm", pixel_size_um=None)
    assert read_depth_tiff(path)[0].max() == 1
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600) or os.name == "nt"


@pytest.mark.parametrize(
    "dtype,rgb",
    [
        (np.uint8, False),
        (np.uint16, False),
        (np.float32, False),
        (np.float64, False),
        (np.uint8, True),
        (np.uint16, True),
    ],
)
def test_write_image_tiff_keeps_dtype(tmp_path, dtype, rgb):
    img = _frames(n=1, dtype=dtype, rgb=rgb)[0]
    path = write_image_tiff(tmp_path / "aif.tif", img, pixel_size_um=0.5, metadata={"method": "x"})
    with tifffile.TiffFile(path) as t:
        back = t.asarray()
        assert t.pages[0].photometric == (
            tifffile.PHOTOMETRIC.RGB if rgb else tifffile.PHOTOMETRIC.MINISBLACK
        )
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, img)
    back2, info = read_image_tiff(path)
    np.testing.assert_array_equal(back2, img)
    assert info["pixel_size_um"] == pytest.approx(0.5) and info["method"] == "x"


@pytest.mark.parametrize("name", ["s.tif", "s.ome.tif"])
@pytest.mark.parametrize(
    "focus", [None, [0, 2, 4, 6, 8], [3, 2, 0.5, -1, -4], [0.1, 0.3, 0.7, 1.5, 3.1]]
)
def test_save_stack_round_trip(tmp_path, name, focus):
    stack = FocalStack(_frames(n=5), focus_um=focus, pixel_size_um=0.37)
    path = save_stack(tmp_path / name, stack)
    back = read_stack(path)
    np.testing.assert_array_equal(back.frames, stack.frames)
    assert back.frames.dtype == stack.frames.dtype
    assert back.pixel_size_um == pytest.approx(0.37, rel=1e-6)
    if focus is None:
        assert back.focus_um is None
    else:
        np.testing.assert_allclose(back.focus_um, focus, rtol=0, atol=1e-9)
    uniform_from_zero = focus == [0, 2, 4, 6, 8]
    assert (tmp_path / "s.json").exists() == (
        name == "s.tif" and focus is not None and not uniform_from_zero
    )


def test_save_stack_other_dtypes_rgb_and_stale_sidecar(tmp_path):
    f64 = FocalStack(_frames(n=3, dtype=np.float64), focus_um=[0, 1, 5])
    back = read_stack(save_stack(tmp_path / "f.tif", f64))
    assert back.frames.dtype == np.float64 and back.pixel_size_um is None
    np.testing.assert_allclose(back.focus_um, [0, 1, 5])
    rgb = FocalStack(_frames(n=3, dtype=np.uint8, rgb=True), focus_um=[4, 2, 0], pixel_size_um=1.5)
    back = read_stack(save_stack(tmp_path / "rgb.tif", rgb))
    np.testing.assert_array_equal(back.frames, rgb.frames)
    np.testing.assert_allclose(back.focus_um, [4, 2, 0])
    # our own sidecar goes when no longer needed; a foreign one blocks the write
    plain = FocalStack(_frames(n=3), focus_um=[0, 1, 2], pixel_size_um=1.0)
    save_stack(tmp_path / "rgb.tif", plain)
    assert not (tmp_path / "rgb.json").exists()
    (tmp_path / "rgb.json").write_text(json.dumps({"focus_um": [9, 8, 7]}))
    with pytest.raises(GplwsError, match="rgb.json.*override"):
        save_stack(tmp_path / "rgb.tif", plain)
    with pytest.raises(GplwsError, match="already exists"):
        save_stack(tmp_path / "f.tif", f64, overwrite=False)
