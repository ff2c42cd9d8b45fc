"""Tests of the npe2 reader and writer adapters (no viewer, no display needed)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_gplws._reader import napari_get_reader
from napari_gplws._writer import write_depth
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.io import read_depth_tiff, save_stack
from napari_gplws.stack import FocalStack


def _stack(**kw):
    f = (np.arange(5 * 8 * 9) % 251).astype(np.uint8).reshape(5, 8, 9)
    return FocalStack(f, **kw)


def test_reader_accepts_stacks_and_refuses_others(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"")
    (tmp_path / "b.csv").write_text("x")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "1.png").write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    for ok in ["a.npy", "s.tif", "s.TIFF", "s.ome.tif", "z.npz", "frames"]:
        assert napari_get_reader(str(tmp_path / ok)) is not None, ok
    for bad in ["b.csv", "nothing", "x.zarr"]:
        assert napari_get_reader(str(tmp_path / bad)) is None, bad
    assert napari_get_reader([str(tmp_path / "a.npy")]) is not None
    assert napari_get_reader([str(tmp_path / "a.npy"), str(tmp_path / "a.npy")]) is None


def test_reader_layer_with_units(tmp_path):
    path = save_stack(
        tmp_path / "scan.ome.tif", _stack(focus_um=[0, 2, 4, 6, 8], pixel_size_um=0.5)
    )
    reader = napari_get_reader(str(path))
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and data.shape == (5, 8, 9) and data.dtype == np.uint8
    assert kwargs["name"] == "scan" and kwargs["rgb"] is False
    assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))
    md = kwargs["metadata"]
    assert md["focus_um"] == [0, 2, 4, 6, 8] and md["pixel_size_um"] == pytest.approx(0.5)
    assert md["units"] == "µm" and md["source"] == str(path)


def test_reader_without_units_and_rgb(tmp_path):
    f = np.zeros((3, 6, 7, 3), np.uint8)
    np.save(tmp_path / "rgb.npy", f)
    [(data, kwargs, _)] = napari_get_reader(str(tmp_path / "rgb.npy"))(str(tmp_path / "rgb.npy"))
    assert data.shape == (3, 6, 7, 3) and kwargs["rgb"] is True
    assert kwargs["scale"] == (1.0, 1.0, 1.0) and kwargs["name"] == "rgb"
    assert kwargs["metadata"]["units"] == "frame" and kwargs["metadata"]["focus_um"] is None


def test_reader_raises_stack_error(tmp_path):
    """A damaged stack is a message naming the file (a single image opens as a frame)."""
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.zeros((6, 32, 32), np.uint8))
    (tmp_path / "cut.tif").write_bytes(good.read_bytes()[:-3000])
    reader = napari_get_reader(str(tmp_path / "cut.tif"))
    with pytest.raises(StackError, match="cut.tif"):
        reader(str(tmp_path / "cut.tif"))


def test_writer_takes_units_from_metadata_or_scale(tmp_path):
    depth = np.linspace(0, 10, 8 * 9, dtype=np.float64).reshape(8, 9)
    out = str(tmp_path / "d.tif")
    attrs = {
        "name": "depth",
        "scale": (1.0, 1.0),
        "metadata": {"units": "µm", "pixel_size_um": 0.25, "method": "sml"},
    }
    assert write_depth(out, depth, attrs) == [out]
    back, info = read_depth_tiff(out)
    assert back.dtype == np.float32 and info["units"] == "µm" and info["method"] == "sml"
    assert info["pixel_size_um"] == pytest.approx(0.25)
    np.testing.assert_allclose(back, depth, rtol=1e-6)

    out2 = str(tmp_path / "d2.tif")
    write_depth(out2, depth[None], {"name": "d", "scale": (0.7, 0.7), "metadata": {}})
    _, info = read_depth_tiff(out2)
    assert info["pixel_size_um"] == pytest.approx(0.7) and info["units"] == "unknown"


def test_writer_rejects_stacks(tmp_path):
    with pytest.raises(GplwsError, match="2-D"):
        write_depth(str(tmp_path / "x.tif"), np.zeros((3, 4, 4)), {"name": "stack", "metadata": {}})
