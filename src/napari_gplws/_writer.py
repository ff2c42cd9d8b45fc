"""npe2 writer: saves a depth (height) map layer as a float32 TIFF with its units.

A thin adapter over :func:`napari_gplws.io._read.write_depth_tiff`. The units of the depth
values and the pixel size come from the layer's metadata (as set by this plugin), or, for the
pixel size, from the layer's scale. It imports nothing from napari.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_gplws.errors import GplwsError


def write_depth(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Write one image layer holding a depth map to ``path`` (TIFF).

    Parameters
    ----------
    path
        Target file (``.tif``/``.tiff``), chosen by the user in napari.
    data
        ``(H, W)`` depth values (a leading or trailing length-1 axis is squeezed).
    attributes
        The layer's attributes. ``attributes["metadata"]["units"]`` gives the unit of the
        values (``"µm"``/``"frame"``; ``"unknown"`` when absent) and
        ``attributes["metadata"]["pixel_size_um"]`` the pixel size; when the latter is absent
        the last entry of ``attributes["scale"]`` is used unless it is 1 (napari's default,
        read as unknown). Other JSON-able metadata entries are stored too.

    Returns
    -------
    list of str
        ``[path]``.

    Raises
    ------
    GplwsError
        The layer is not a single 2-D map, or writing fails.
    """
    from napari_gplws.io import write_depth_tiff

    meta = dict(attributes.get("metadata") or {})
    arr = np.asarray(data)
    if arr.ndim > 2:
        arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise GplwsError(
            f"'{attributes.get('name', 'layer')}' has shape {np.shape(data)}; the depth writer "
            "saves one 2-D height map. Select the depth layer (not the stack) and save again."
        )
    units = meta.pop("units", None) or "unknown"
    px = meta.pop("pixel_size_um", None)
    if px is None:
        scale = attributes.get("scale")
        if scale is not None and len(scale) and float(scale[-1]) != 1.0:
            px = float(scale[-1])
    meta.pop("gplws", None)
    extra = {k: v for k, v in meta.items() if _small(v)}
    if attributes.get("name"):
        extra.setdefault("layer", str(attributes["name"]))
    write_depth_tiff(path, arr, units=str(units), pixel_size_um=px, metadata=extra)
    return [path]


def _small(value: Any) -> bool:
    """Whether a metadata value is small enough to store as text (no images in the header)."""
    return not (isinstance(value, np.ndarray) and value.size > 10_000)
