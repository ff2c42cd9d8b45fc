"""npe2 reader: opens focus stacks (TIFF, OME-TIFF, ImageJ TIFF, .npy, .npz, folders of frames)
and single images (a one-plane TIFF, PNG, JPEG or BMP: one frame, e.g. for the Focal error map).

A thin adapter over :func:`napari_gplws.io.read_stack`: it decides from the path alone
whether the plugin can read it and turns a :class:`~napari_gplws.stack.FocalStack` into a
napari layer-data tuple that carries the physical units: ``scale`` and ``translate`` in µm
where known, ``units`` (``"µm"``, or ``"pixel"`` where unknown, so napari's scale bar
reads µm) and ``axis_labels`` ``z, y, x``. A single image opens as a 2-D layer marked
``metadata["kind"] = "frame"``; the Depth from focus dock then says that it needs a stack.
It imports nothing from napari.
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
    from napari_gplws.io import FRAME_EXTENSIONS, is_stack_path

    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        if str(path).rstrip("/\\").lower().endswith(".zarr"):
            from napari_gplws.io.zarr import is_zarr_path

            return read_zarr_stack if is_zarr_path(path) else None
        if is_stack_path(path):
            return read_focus_stack
        p = Path(os.fspath(path))
        return read_single_image if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS else None
    except (TypeError, ValueError):
        return None


def _geometry(
    focus: Any, pixel_size_um: float | None, step_um: float | None
) -> dict[str, Any]:
    """``scale``, ``translate``, ``units`` and ``axis_labels`` of a stack layer.

    The stack axis is in µm when the focus positions are known (scale: the median step;
    translate: the first position when they increase), else in frames ("pixel" for napari).
    """
    px = pixel_size_um or None
    lat = "µm" if px else "pixel"
    z_known = bool(step_um)
    rising = focus is not None and len(focus) > 1 and float(focus[-1]) > float(focus[0])
    z0 = float(focus[0]) if z_known and rising else 0.0
    return {
        "scale": (abs(step_um) if z_known else 1.0, px or 1.0, px or 1.0),
        "translate": (z0, 0.0, 0.0),
        "units": ("µm" if z_known else "pixel", lat, lat),
        "axis_labels": ("z", "y", "x"),
    }


def read_single_image(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Open one image file (one-plane TIFF, PNG, JPEG, BMP) as a 2-D frame layer.

    A frame is what the Focal error map analyses; depth from focus needs a stack, and the
    Depth from focus dock says so when only frames are open. ``metadata`` has ``kind`` =
    ``"frame"``, ``pixel_size_um`` (from a TIFF's calibration, else ``None``) and ``source``.

    Raises
    ------
    StackError
        The file cannot be read or is not one 2-D (RGB) image.
    """
    import numpy as np

    from napari_gplws.errors import StackError
    from napari_gplws.io import read_image_tiff

    path = path[0] if isinstance(path, (list, tuple)) else path
    p = Path(os.fspath(path))
    px = None
    if p.suffix.lower() in (".tif", ".tiff"):
        data, info = read_image_tiff(p)
        px = info.get("pixel_size_um")
    else:
        import imageio.v3 as iio

        try:
            data = np.asarray(iio.imread(p))
        except Exception as exc:  # noqa: BLE001 - any decoder failure means an unusable file
            raise StackError(f"Cannot read the image '{p}' ({type(exc).__name__}: {exc}).") from None
        if data.ndim == 3 and data.shape[-1] == 4:
            data = data[..., :3]  # alpha carries no image
    rgb = data.ndim == 3 and data.shape[-1] == 3
    if data.ndim != 2 + rgb:
        raise StackError(f"'{p}' is not one 2-D image (shape {data.shape}).")
    lat = "µm" if px else "pixel"
    kwargs = {
        "name": p.stem,
        "rgb": rgb,
        "scale": (px or 1.0, px or 1.0),
        "units": (lat, lat),
        "axis_labels": ("y", "x"),
        "metadata": {"kind": "frame", "pixel_size_um": px, "source": str(p)},
    }
    return [(data, kwargs, "image")]


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
        **_geometry(fu, px, step),
        "metadata": {
            "focus_um": None if fu is None else [float(v) for v in fu],
            "pixel_size_um": px,
            "units": zs.units,
            "source": zs.source,
        },
    }
    return [(zs.frames, kwargs, "image")]



def read_focus_stack(
    path: PathLike | Sequence[PathLike], pattern: str | None = None
) -> list[LayerData]:
    """Read one focus stack as an image layer (``pattern``: which files of a folder are frames).

    Returns
    -------
    list of (data, add_kwargs, "image")
        ``data`` is the ``(N, H, W)`` or ``(N, H, W, 3)`` frames in the file's dtype;
        ``add_kwargs`` has ``name`` (file stem or folder name), ``rgb``, ``scale`` =
        ``(focus step µm or 1, pixel size µm or 1, pixel size µm or 1)``, ``translate`` (the
        first focus position when they increase evenly), ``units``, ``axis_labels`` and ``metadata`` =
        ``{"focus_um": list or None, "pixel_size_um": float or None, "units": "µm" or
        "frame", "source": path, "gplws": {...what the reader found...}}``.

    Raises
    ------
    StackError
        The file cannot be used; the message says why and how to fix it (napari shows it).
    """
    from napari_gplws.errors import StackError
    from napari_gplws.io import read_stack

    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(os.fspath(path))
    try:
        stack = read_stack(path, pattern=pattern) if pattern else read_stack(path)
    except StackError:
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff"):
            try:  # a one-plane TIFF is a frame, not a broken stack
                return read_single_image(p)
            except StackError:
                pass
        raise
    name = p.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif"):
        if low.endswith(ext):
            name = name[: -len(ext)]
            break
    else:
        name = p.stem if p.is_file() else p.name
    px = stack.pixel_size_um
    add_kwargs = {
        "name": name,
        "rgb": stack.is_rgb,
        **_geometry(stack.focus_um, px, stack.focus_step_um),
        "metadata": {
            "focus_um": None if stack.focus_um is None else [float(v) for v in stack.focus_um],
            "pixel_size_um": px,
            "units": stack.units,
            "source": str(p),
            "gplws": dict(stack.metadata),
        },
    }
    return [(stack.frames, add_kwargs, "image")]
