"""The npe2 manifest: valid, importable, and its reader and sample work through npe2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_npe2_validate_with_imports():
    npe2 = shutil.which("npe2") or str(Path(sys.executable).with_name("npe2"))
    proc = subprocess.run([npe2, "validate", "napari-gplws", "--imports"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_manifest_is_shipped_inside_the_package():
    import napari_gplws

    assert (Path(napari_gplws.__file__).parent / "napari.yaml").is_file()


def test_reader_through_npe2(tmp_path, small_synthetic):
    import npe2

    from napari_gplws.io import save_stack

    path = tmp_path / "stack.tif"
    save_stack(path, small_synthetic.stack)
    # napari's pytest plugin gives each test an empty plugin manager: register ours.
    pm = npe2.PluginManager.instance()
    try:
        pm.get_manifest("napari-gplws")
    except KeyError:
        pm.register(npe2.PluginManifest.from_distribution("napari-gplws"))
    layers = npe2.read([str(path)], plugin_name="napari-gplws", stack=False)
    data, kwargs, kind = layers[0]
    assert kind == "image"
    np.testing.assert_array_equal(np.asarray(data), small_synthetic.stack.frames)
    step = small_synthetic.stack.focus_step_um
    assert abs(kwargs["scale"][0] - step) < 1e-6
    assert kwargs["metadata"]["units"] == "µm"
    np.testing.assert_allclose(kwargs["metadata"]["focus_um"], small_synthetic.stack.focus_um, rtol=1e-6)


def test_sample_data_has_stack_and_truth():
    from napari_gplws._sample_data import sample_stack

    (stack, skw, sk), (gt, gkw, gk) = sample_stack()
    assert stack.shape == (20, 256, 256) and gt.shape == (256, 256)
    assert skw["metadata"]["units"] == "µm" and gkw["metadata"]["units"] == "µm"
    focus = np.asarray(skw["metadata"]["focus_um"])
    assert focus.min() <= gt.min() and gt.max() <= focus.max()


def test_reader_opens_zarr_stacks_lazily(tmp_path, small_synthetic):
    import pytest

    pytest.importorskip("zarr")
    dask_array = pytest.importorskip("dask.array")
    from napari_gplws._reader import napari_get_reader
    from napari_gplws.io import save_stack
    from napari_gplws.io.zarr import tiff_to_zarr

    tif = tmp_path / "stack.tif"
    save_stack(tif, small_synthetic.stack)
    store = tiff_to_zarr(tif, tmp_path / "stack.zarr", chunk=32)
    reader = napari_get_reader(str(store))
    assert reader is not None
    (data, kwargs, kind), = reader(str(store))
    assert isinstance(data, dask_array.Array)
    np.testing.assert_array_equal(np.asarray(data), small_synthetic.stack.frames)
    assert kwargs["metadata"]["units"] == "µm"


def test_reader_patterns_cover_every_format_read_stack_accepts():
    """napari offers the plugin for every file read_stack opens, vendor formats included."""
    import fnmatch

    import yaml

    import napari_gplws
    from napari_gplws.io import FRAME_EXTENSIONS, is_stack_path
    from napari_gplws.io.vendor import VENDOR_FORMATS

    manifest = yaml.safe_load((Path(napari_gplws.__file__).parent / "napari.yaml").read_text())
    patterns = manifest["contributions"]["readers"][0]["filename_patterns"]
    for ext in (*VENDOR_FORMATS, *FRAME_EXTENSIONS, ".npy", ".npz", ".ome.tif"):
        name = f"stack{ext}"
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
    for ext in VENDOR_FORMATS:
        assert is_stack_path(f"/nowhere/stack{ext}")  # the reader takes them (bioio reads them)
