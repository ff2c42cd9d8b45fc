"""npe2 reader: opens focus stacks (TIFF, OME-TIFF, ImageJ TIFF, .npy, .npz, folders of frames).

A thin adapter over :func:`napari_gplws.io._read.read_stack`: it decides from the path alone
whether the plugin can read it and turns a :class:`~napari_gplws.stack.FocalStack` into a
napari layer-data tuple that carries the physical units. It imports nothing from napari.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]
LayerData = tuple[Any, dict, str]
ReaderFunction = Callable[..., list]


def napari_get_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`read_focus_stack` when ``path`` looks like a focus stack, else ``None``.

    Parameters
    ----------
    path
        One path, or a list holding one path (napari passes lists for multi-file drops; lists
        of several paths are left to other readers). Accepted: ``*.tif``, ``*.tiff``
        (including ``*.ome.tif``), ``*.npy``, ``*.npz`` and folders holding BMP/PNG/TIFF/JPEG
        frames. Files are not opened here.
    """
    from napari_gplws.io import is_stack_path

    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        if str(path).rstrip("/\\").lower().endswith(".zarr"):
            from napari_gplws.io.zarr import is_zarr_path

            return read_zarr_stack if is_zarr_path(path) else None
        return read_focus_stack if is_stack_path(path) else None
    except (TypeError, ValueError):
        return None


def read_zarr_stack(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Open a zarr / OME-Zarr focus stack lazily (dask), with the same metadata keys.

    Same ``add_kwargs`` as the TIFF reader: ``name``, ``rgb``, ``scale`` = (focus step µm or
    1, pixel size µm or 1, pixel size µm or 1) and ``metadata`` with ``focus_um``,
    ``pixel_size_um``, ``units`` and ``source``.
    """
    import numpy as np

    from napari_gplws.io.zarr import open_zarr_stack

    path = path[0] if isinstance(path, (list, tuple)) else path
    zs = open_zarr_stack(path)
    p = Path(os.fspath(path))
    px = zs.pixel_size_um
    fu = zs.focus_um
    step = None
    if fu is not None and len(fu) > 1:
        d = np.diff(fu)
        step = float(d[0]) if np.allclose(d, d[0]) else None
    kwargs = {
        "name": p.name[: -len(".zarr")] if p.name.lower().endswith(".zarr") else p.name,
        "rgb": zs.frames.ndim == 4,
        "scale": (abs(step) if step else 1.0, px or 1.0, px or 1.0),
        "metadata": {
            "focus_um": None if fu is None else [float(v) for v in fu],
            "pixel_size_um": px,
            "units": zs.units,
            "source": zs.source,
        },
    }
    return [(zs.frames, kwargs, "image")]



def read_focus_stack(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read one focus stack as an image layer.

    Returns
    -------
    list of (data, add_kwargs, "image")
        ``data`` is the ``(N, H, W)`` or ``(N, H, W, 3)`` frames in the file's dtype;
        ``add_kwargs`` has ``name`` (file stem or folder name), ``rgb``, ``scale`` =
        ``(focus step µm or 1, pixel size µm or 1, pixel size µm or 1)`` and ``metadata`` =
        ``{"focus_um": list or None, "pixel_size_um": float or None, "units": "µm" or
        "frame", "source": path, "gplws": {...what the reader found...}}``.

    Raises
    ------
    StackError
        The file cannot be used; the message says why and how to fix it (napari shows it).
    """
    from napari_gplws.io import read_stack

    if isinstance(path, (list, tuple)):
        path = path[0]
    stack = read_stack(path)
    p = Path(os.fspath(path))
    name = p.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif"):
        if low.endswith(ext):
            name = name[: -len(ext)]
            break
    else:
        name = p.stem if p.is_file() else p.name
    px = stack.pixel_size_um
    z = stack.focus_step_um
    add_kwargs = {
        "name": name,
        "rgb": stack.is_rgb,
        "scale": (z if z else 1.0, px if px else 1.0, px if px else 1.0),
        "metadata": {
            "focus_um": None if stack.focus_um is None else [float(v) for v in stack.focus_um],
            "pixel_size_um": px,
            "units": stack.units,
            "source": str(p),
            "gplws": dict(stack.metadata),
        },
    }
    return [(stack.frames, add_kwargs, "image")]
