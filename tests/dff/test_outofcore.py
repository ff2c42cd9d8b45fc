"""The out-of-core (zarr, dask map_overlap) path equals the in-memory classical engine."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("dask.array")

from napari_gplws.dff.classical import depth_from_focus
from napari_gplws.dff.outofcore_classical import reconstruct_zarr
from napari_gplws.errors import StackError
from napari_gplws.io.zarr import open_zarr_stack
from napari_gplws.sim.focus_stacks import synthetic_stack
from napari_gplws.stack import FocalStack


def _save(path, frames, **attrs):
    z = zarr.open_array(str(path), mode="w", shape=frames.shape,
                        chunks=(1, 64, 64) + frames.shape[3:], dtype=frames.dtype)
    z[...] = frames
    z.attrs.update(attrs)
    return path


@pytest.mark.parametrize("rgb,refine,measure", [(False, True, "sml"), (True, True, "tenengrad"), (False, False, "glv")])
def test_equal_to_in_memory(tmp_path, rgb, refine, measure):
    s = synthetic_stack(family="waves", n_frames=8, shape=(150, 130), seed=3, rgb=rgb).stack
    # uneven focus steps, decreasing: depth must map through them exactly as in memory
    focus = np.array([40, 37, 33, 30, 26, 21, 17, 12], float)
    s = FocalStack(s.frames, focus_um=focus, pixel_size_um=0.5)
    src = _save(tmp_path / "s.zarr", s.frames, focus_um=focus.tolist(), pixel_size_um=0.5)
    ref = depth_from_focus(s, measure=measure, refine=refine)
    # chunk 48 over 150×130 rows/cols: interior seams and a merged short last chunk
    r = reconstruct_zarr(src, tmp_path / "o.zarr", measure=measure, refine=refine, chunk=48, threads=2)
    out = r.open()
    assert r.units == "µm" and r.shape == (150, 130)
    depth = out["depth"].compute()
    # Identical up to float32 rounding: the box filters' running sums start at a chunk's
    # edge instead of the image's; the local-variance measure (E[x²] − E[x]²) amplifies
    # that last-bit noise, so a few pixels differ by up to ~1e-3 of a focus step.
    np.testing.assert_allclose(depth, ref.depth, rtol=0, atol=1e-2)
    assert np.mean(np.abs(depth - ref.depth) > 1e-4) < 0.01
    np.testing.assert_allclose(out["confidence"].compute(), ref.confidence, rtol=0, atol=1e-4)
    aif = out["aif"].compute()
    assert aif.dtype == ref.aif.dtype and aif.shape == ref.aif.shape
    assert np.mean(aif != ref.aif) < 1e-3
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert g["depth"].attrs["units"] == "µm" and "_work" not in g


def test_frame_units_and_progress(tmp_path):
    s = synthetic_stack(family="waves", n_frames=6, shape=(70, 90), seed=1).stack
    src = _save(tmp_path / "s.zarr", s.frames)
    seen = []
    r = reconstruct_zarr(src, tmp_path / "o.zarr", chunk=40, progress=lambda d, t: seen.append((d, t)))
    ref = depth_from_focus(FocalStack(s.frames))
    assert r.units == "frame"
    np.testing.assert_allclose(r.open()["depth"].compute(), ref.depth, atol=1e-5)
    assert seen[-1] == (200, 200) and all(d <= t for d, t in seen)


def test_ome_zarr_and_errors(tmp_path):
    frames = synthetic_stack(n_frames=5, shape=(40, 40), seed=2).stack.frames
    g = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    a = g.create_array("0", shape=(1,) + frames.shape, chunks=(1, 1, 40, 40), dtype=frames.dtype)
    a[...] = frames[None]
    g.attrs["multiscales"] = [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "z", "type": "space", "unit": "micrometer"},
                 {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 2.0, 0.25, 0.25]}]}],
    }]
    zs = open_zarr_stack(tmp_path / "ome.zarr")
    assert zs.frames.shape == frames.shape and zs.pixel_size_um == 0.25
    with pytest.raises(StackError, match="too small"):
        reconstruct_zarr(zs, tmp_path / "o.zarr", chunk=8)
    bad = _save(tmp_path / "bad.zarr", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(StackError, match="N ≥ 2"):
        open_zarr_stack(bad)
    with pytest.raises(StackError, match="not a readable zarr"):
        open_zarr_stack(tmp_path / "missing.zarr")


def test_tiff_to_zarr(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from napari_gplws.io.zarr import tiff_to_zarr

    a = (np.random.default_rng(0).random((5, 70, 60)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", a)
    tiff_to_zarr(tmp_path / "t.tif", tmp_path / "t.zarr", chunk=32)
    zs = open_zarr_stack(tmp_path / "t.zarr", focus_um=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(zs.frames.compute(), a)
    assert zs.units == "µm" and zs.frames.chunks[1][0] == 32


def test_reader_layer_data_is_lazy(tmp_path):
    from napari_gplws._reader import read_zarr_stack as zarr_layer_data
    from napari_gplws.io.zarr import is_zarr_path

    frames = synthetic_stack(n_frames=5, shape=(40, 30), seed=2).stack.frames
    src = _save(tmp_path / "s.zarr", frames, focus_um=[0, 2, 4, 6, 8], pixel_size_um=0.5)
    assert is_zarr_path(src) and not is_zarr_path(tmp_path / "nothing.tif")
    [(data, kwargs, kind)] = zarr_layer_data(src)
    assert kind == "image" and type(data).__module__.startswith("dask")
    assert kwargs["scale"] == (2.0, 0.5, 0.5) and kwargs["metadata"]["units"] == "µm"
    assert kwargs["name"] == "s" and not kwargs["rgb"]


def test_gplws_out_of_core_equals_in_memory(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from napari_gplws.dff.network import DEFAULT_TTA, predict_depth
    from napari_gplws.dff.outofcore_network import predict_zarr
    from napari_gplws.models.gplws import GPLWSConfig, GPLWSNet
    from napari_gplws.models.registry import save_gplws

    torch.manual_seed(0)
    w = str(save_gplws(GPLWSNet(GPLWSConfig(widths=(8, 8, 16, 16))).eval(), tmp_path / "w.safetensors"))
    s = synthetic_stack(family="waves", n_frames=5, shape=(100, 40), seed=3, rgb=True).stack
    src = _save(tmp_path / "s.zarr", s.frames, focus_um=s.focus_um.tolist())
    ref = predict_depth(s, device="cpu", tile_size=64, overlap=16, weights=w)  # default views and precision
    assert ref.params["tiles"] > 1 and np.ptp(ref.depth) > 0
    r = predict_zarr(src, tmp_path / "o.zarr", tile_size=64, overlap=16, weights=w, chunk=40, threads=2)
    o = r.open()
    np.testing.assert_allclose(o["depth"].compute(), ref.depth, rtol=0, atol=1e-4)
    np.testing.assert_allclose(o["confidence"].compute(), ref.confidence, rtol=0, atol=1e-5)
    aif = o["aif"].compute()
    assert aif.dtype == ref.aif.dtype and aif.shape == ref.aif.shape
    assert np.abs(aif.astype(np.int16) - ref.aif).max() <= 1
    assert r.units == "µm" and r.params["tiles"] == ref.params["tiles"]
    assert r.params["tta"] == ref.params["tta"] == DEFAULT_TTA and r.params["precision"] == ref.params["precision"]


def test_units_overrides_layout_checks_and_zarr_is_not_a_frame_folder(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from napari_gplws.io import read_stack, read_tiff_header
    from napari_gplws.io.zarr import tiff_to_zarr

    frames = synthetic_stack(n_frames=5, shape=(40, 30), seed=2).stack.frames
    src = _save(tmp_path / "s.zarr", frames, focus_um=[0, 2, 4, 6, 8])
    zs = open_zarr_stack(src, focus_start_um=10)  # a start alone shifts the stored positions
    np.testing.assert_allclose(zs.focus_um, [10, 12, 14, 16, 18])
    zs = open_zarr_stack(src, focus_step_um=-1.5, focus_start_um=3)
    np.testing.assert_allclose(zs.focus_um, [3, 1.5, 0, -1.5, -3])
    with pytest.raises(StackError, match="not both"):
        open_zarr_stack(src, focus_um=[0, 1, 2, 3, 4], focus_step_um=1)
    with pytest.raises(StackError, match="zarr store"):  # not read as a folder of frames
        read_stack(src)

    # a TIFF holding a time series of stacks is refused before anything is copied
    tifffile.imwrite(tmp_path / "tz.tif", np.zeros((2, 3, 16, 16), np.uint8), metadata={"axes": "TZYX"})
    hdr = read_tiff_header(tmp_path / "tz.tif")
    assert hdr["shape"] == (2, 3, 16, 16) and hdr["nbytes"] == 2 * 3 * 16 * 16
    with pytest.raises(StackError, match="single focus stack"):
        tiff_to_zarr(tmp_path / "tz.tif", tmp_path / "tz.zarr")
    assert not (tmp_path / "tz.zarr").exists()
    # units follow read_stack's precedence (arguments > sidecar > file metadata)
    tifffile.imwrite(tmp_path / "u.tif", frames)
    (tmp_path / "u.json").write_text('{"focus_step_um": 2.0, "pixel_size_um": 0.5}', encoding="utf-8")
    tiff_to_zarr(tmp_path / "u.tif", tmp_path / "u.zarr", chunk=16, focus_start_um=1.0)
    zs = open_zarr_stack(tmp_path / "u.zarr")
    np.testing.assert_allclose(zs.focus_um, read_stack(tmp_path / "u.tif", focus_start_um=1.0).focus_um)
    assert zs.pixel_size_um == 0.5
