"""Writing depth maps, images and whole stacks as ImageJ/Fiji-compatible TIFFs with units.

Every file is replaced atomically (see :mod:`napari_gplws._shared.files`), so a reader
sees either the old file or the complete new one. Float data holding NaN or infinity is
refused before anything is written (a depth map may hold NaN for "no data" only when the
caller says so with ``allow_nan=True``): a non-finite result is an error, not a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.files import atomic_write
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.io._paths import _TIFF_EXTENSIONS, _WRITTEN_BY, _is_ome_name, _suffix
from napari_gplws.io._tiff import _open_tiff, _tiff_units
from napari_gplws.io._units import _check_pixel_size, _is_our_sidecar, _jsonable, sidecar_path
from napari_gplws.stack import FocalStack, uniform_positions


def _refuse_non_finite(arr: np.ndarray, what: str, p: Path, *, allow_nan: bool = False) -> None:
    """Raise :class:`GplwsError` when float ``arr`` holds infinity (or NaN unless allowed)."""
    if arr.dtype.kind not in "fc":
        return
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        kind = "infinite" if allow_nan else "NaN or infinite"
        raise GplwsError(
            f"The {what} to be written to '{p}' has {n_bad} {kind} value(s) of {arr.size}; "
            "nothing was written. A non-finite result usually means that the focus positions "
            "are out of range or that the network's weights are damaged; check them and run again."
        )


def write_depth_tiff(
    path: str | os.PathLike[str],
    depth: np.ndarray,
    *,
    units: str,
    pixel_size_um: float | None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = True,
    allow_nan: bool = False,
) -> Path:
    """Write a depth (height) map as a float32 TIFF that Fiji opens with its calibration.

    The file is an ImageJ TIFF: the lateral calibration (``unit=micron`` and X/Y resolution)
    is set when ``pixel_size_um`` is known, and a JSON object ``{"units", "pixel_size_um",
    "kind": "depth", "written_by", **metadata}`` is stored in the ImageJ ``Info`` field
    (Fiji: Image > Show Info). :func:`read_depth_tiff` reads it back.

    Parameters
    ----------
    path
        Target ``.tif`` path. Its folder must exist.
    depth
        ``(H, W)`` depth map, any real dtype (stored as float32), finite everywhere (see
        ``allow_nan``) and within float32's range.
    units
        Unit of the depth values: ``"µm"`` or ``"frame"`` (any non-empty text is stored).
    pixel_size_um
        Lateral pixel size in µm, or ``None`` when unknown.
    metadata
        Extra JSON-able facts (method, source, focus positions…). NumPy values are converted.
    overwrite
        Replace an existing file (atomically). When ``False`` and the file exists, raise.
    allow_nan
        Accept NaN pixels as "no data" (infinity is always refused).

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    GplwsError
        ``depth`` is not 2-D/real, holds NaN (unless allowed) or infinity (also after the
        conversion to float32), ``units`` is empty, the pixel size is not positive, the
        file exists and ``overwrite`` is ``False``, or writing fails.
    """
    import tifffile

    p = Path(os.fspath(path))
    arr = np.asarray(depth)
    if arr.ndim != 2 or arr.dtype.kind not in "uifb":
        raise GplwsError(
            f"A depth map must be a 2-D real array (H, W); got shape {arr.shape} dtype {arr.dtype} "
            f"for '{p}'."
        )
    if not units or not isinstance(units, str):
        raise GplwsError(f'State the units of the depth map written to \'{p}\' ("µm" or "frame").')
    px = _check_pixel_size(pixel_size_um, p)
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.asarray(arr, dtype=np.float32)
    _refuse_non_finite(data, "depth map", p, allow_nan=allow_nan)
    info = _jsonable(dict(metadata or {}))
    info.update(units=units, pixel_size_um=px, kind="depth", written_by=_WRITTEN_BY)
    ij: dict[str, Any] = {"axes": "YX", "Info": json.dumps(info, ensure_ascii=False)}
    kwargs: dict[str, Any] = {}
    if px is not None:
        ij["unit"] = "micron"
        kwargs["resolution"] = (1.0 / px, 1.0 / px)

    def _write(tmp: Path) -> None:
        tifffile.imwrite(tmp, data, imagej=True, metadata=ij, **kwargs)

    atomic_write(p, _write, overwrite=overwrite)
    return p


def read_depth_tiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a depth map written by :func:`write_depth_tiff` (or any single-plane TIFF).

    Parameters
    ----------
    path
        The ``.tif`` file.

    Returns
    -------
    depth : numpy.ndarray
        ``(H, W)`` in the stored dtype (float32 for files written by :func:`write_depth_tiff`).
    info : dict
        At least ``units`` (``"µm"``, ``"frame"``, … or ``None`` when the file does not say)
        and ``pixel_size_um`` (float or ``None``), plus the stored JSON metadata.

    Raises
    ------
    StackError
        Missing, truncated or corrupt file, or not a single 2-D plane.
    """
    data, info = _read_single_plane(Path(os.fspath(path)), rgb_ok=False)
    info.setdefault("units", None)
    return data, info


def read_image_tiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an image written by :func:`write_image_tiff` (or any single-plane TIFF).

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3)`` in the stored dtype.
    info : dict
        At least ``pixel_size_um`` (float or ``None``), plus the stored JSON metadata.

    Raises
    ------
    StackError
        Missing, truncated or corrupt file, or not a single 2-D (RGB) plane.
    """
    return _read_single_plane(Path(os.fspath(path)), rgb_ok=True)


def _read_single_plane(p: Path, *, rgb_ok: bool) -> tuple[np.ndarray, dict[str, Any]]:
    if not p.is_file():
        raise StackError(f"'{p}' does not exist or is not a file; check the path.")
    with _open_tiff(p) as (tif, check):
        series = tif.series[0]
        data = check(series.asarray)
        file_meta = _tiff_units(tif, series)
        stored: dict[str, Any] = {}
        text = (tif.imagej_metadata or {}).get("Info") if tif.is_imagej else None
        if text is None and tif.is_shaped and tif.shaped_metadata:
            stored = {k: v for k, v in tif.shaped_metadata[0].items() if k not in ("shape", "axes")}
        elif text:
            try:
                loaded = json.loads(text)
                stored = loaded if isinstance(loaded, dict) else {}
            except json.JSONDecodeError:
                stored = {"info_text": text}
    if data.ndim > 2 and not (rgb_ok and data.ndim == 3 and data.shape[-1] == 3):
        data = np.squeeze(data)
    if not (data.ndim == 2 or (rgb_ok and data.ndim == 3 and data.shape[-1] == 3)):
        what = "image" if rgb_ok else "depth map"
        raise StackError(
            f"'{p}' holds an array of shape {data.shape}, not one 2-D {what}; "
            "export a single plane."
        )
    info = dict(stored)
    if info.get("pixel_size_um") is None:
        info["pixel_size_um"] = file_meta.get("pixel_size_um")
    return data, info


def write_image_tiff(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write an image (e.g. the all-in-focus image) as TIFF, keeping its dtype.

    uint8, uint16 and float32 grayscale and uint8 RGB are written as ImageJ TIFFs (Fiji shows
    the µm calibration); other dtypes (float64, int32, uint16 RGB, …) as plain TIFFs with the
    resolution in pixels per centimetre and the metadata as JSON in the description.
    RGB is stored with photometric RGB.

    Parameters
    ----------
    path
        Target ``.tif`` path. Its folder must exist.
    image
        ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, integer or float.
    pixel_size_um
        Lateral pixel size in µm, or ``None`` when unknown.
    metadata
        Extra JSON-able facts, stored with ``pixel_size_um``.
    overwrite
        Replace an existing file (atomically). When ``False`` and the file exists, raise.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    GplwsError
        Wrong shape or dtype, NaN or infinite values in a float image, bad pixel size,
        existing file with ``overwrite=False``, or a failed write.
    """
    import tifffile

    p = Path(os.fspath(path))
    img = np.asarray(image)
    rgb = img.ndim == 3 and img.shape[-1] == 3
    if not (img.ndim == 2 or rgb) or img.dtype.kind not in "uifb":
        raise GplwsError(
            f"An image must be (H, W) or (H, W, 3) integer or float; got shape {img.shape} "
            f"dtype {img.dtype} for '{p}'."
        )
    _refuse_non_finite(img, "image", p)
    px = _check_pixel_size(pixel_size_um, p)
    info = _jsonable(dict(metadata or {}))
    info.update(pixel_size_um=px, written_by=_WRITTEN_BY)
    photometric = "rgb" if rgb else "minisblack"
    imagej_ok = (img.dtype == np.uint8) if rgb else img.dtype in (np.uint8, np.uint16, np.float32)

    def _write(tmp: Path) -> None:
        if imagej_ok:
            ij: dict[str, Any] = {
                "axes": "YXS" if rgb else "YX",
                "Info": json.dumps(info, ensure_ascii=False),
            }
            kw: dict[str, Any] = {}
            if px is not None:
                ij["unit"] = "micron"
                kw["resolution"] = (1.0 / px, 1.0 / px)
            tifffile.imwrite(tmp, img, imagej=True, photometric=photometric, metadata=ij, **kw)
        else:
            kw = {}
            if px is not None:
                kw = {"resolution": (1e4 / px, 1e4 / px), "resolutionunit": "CENTIMETER"}
            tifffile.imwrite(tmp, img, photometric=photometric, metadata=info, **kw)

    atomic_write(p, _write, overwrite=overwrite)
    return p


def save_stack(path: str | os.PathLike[str], stack: FocalStack, *, overwrite: bool = True) -> Path:
    """Save a :class:`FocalStack` so that :func:`read_stack` gives it back unchanged.

    * ``*.ome.tif``/``*.ome.tiff``: OME-TIFF with ``PhysicalSizeX/Y`` (µm), ``PhysicalSizeZ``
      (when evenly spaced) and every frame's ``PositionZ`` (µm), so no sidecar is needed.
    * other ``*.tif``/``*.tiff``: ImageJ hyperstack (uint8, uint16, float32, uint8 RGB) with
      ``unit=micron``, X/Y resolution and ``spacing``. ImageJ can only say "evenly spaced from
      0 upwards, in the pixel-size unit", so when the focus positions are known but not of that
      form (uneven, decreasing, offset start, or unknown pixel size) a JSON sidecar
      ``<stem>.json`` with ``focus_um`` is written beside it. Other dtypes go into a plain
      TIFF with the units as JSON in its description.

    Frames keep their dtype. A stale sidecar written earlier by this function is removed when
    no longer needed; a sidecar written by someone else that would override the saved units
    makes this function refuse to write.

    Parameters
    ----------
    path
        Target file name, ending in ``.tif``, ``.tiff``, ``.ome.tif`` or ``.ome.tiff``.
    stack
        The stack to save.
    overwrite
        Replace existing files (atomically). When ``False`` and the TIFF or the sidecar exists,
        raise before writing anything.

    Returns
    -------
    Path
        The TIFF path.

    Raises
    ------
    GplwsError
        Unsupported suffix, existing files with ``overwrite=False``, a foreign sidecar in the
        way, or a failed write.
    """
    import tifffile

    p = Path(os.fspath(path))
    if _suffix(p) not in _TIFF_EXTENSIONS:
        raise GplwsError(
            f"save_stack writes TIFF; give a name ending in .tif or .ome.tif, not '{p.name}'."
        )
    frames = stack.frames
    _refuse_non_finite(frames, "stack", p)
    rgb = stack.is_rgb
    n = stack.n_frames
    px = stack.pixel_size_um
    focus = stack.focus_um
    is_ome = _is_ome_name(p)
    axes = "ZYXS" if rgb else "ZYX"
    photometric = "rgb" if rgb else "minisblack"
    imagej_ok = (
        (frames.dtype == np.uint8) if rgb else frames.dtype in (np.uint8, np.uint16, np.float32)
    )

    need_sidecar = False
    spacing = None
    if focus is not None and not is_ome:
        step = float(focus[1] - focus[0])
        regular = bool(
            np.allclose(
                focus, uniform_positions(n, 0.0, step), rtol=0, atol=1e-9 * max(1.0, abs(step))
            )
        )
        if imagej_ok and px is not None and step > 0 and regular:
            spacing = step
        elif imagej_ok:
            need_sidecar = True
    side = sidecar_path(p)
    if side.exists():
        ours = _is_our_sidecar(side)
        if not need_sidecar and not ours:
            raise GplwsError(
                f"'{side}' exists beside '{p.name}' and would override the saved focus positions "
                "and pixel size when the stack is read back; move or delete it first."
            )
        if need_sidecar and not overwrite:
            raise GplwsError(f"'{side}' already exists; pass overwrite=True to replace it.")

    def _write(tmp: Path) -> None:
        if is_ome:
            meta: dict[str, Any] = {"axes": axes}
            if px is not None:
                meta.update(
                    PhysicalSizeX=px,
                    PhysicalSizeXUnit="µm",
                    PhysicalSizeY=px,
                    PhysicalSizeYUnit="µm",
                )
            if focus is not None:
                if stack.is_uniform:
                    meta.update(
                        PhysicalSizeZ=abs(float(focus[1] - focus[0])), PhysicalSizeZUnit="µm"
                    )
                meta["Plane"] = {
                    "PositionZ": [float(v) for v in focus],
                    "PositionZUnit": ["µm"] * n,
                }
            tifffile.imwrite(tmp, frames, ome=True, photometric=photometric, metadata=meta)
        elif imagej_ok:
            ij: dict[str, Any] = {"axes": axes}
            kw: dict[str, Any] = {}
            if px is not None:
                ij["unit"] = "micron"
                kw["resolution"] = (1.0 / px, 1.0 / px)
            if spacing is not None:
                ij["spacing"] = spacing
            tifffile.imwrite(tmp, frames, imagej=True, photometric=photometric, metadata=ij, **kw)
        else:
            meta = {
                "axes": axes,
                "focus_um": None if focus is None else [float(v) for v in focus],
                "pixel_size_um": px,
                "written_by": _WRITTEN_BY,
            }
            tifffile.imwrite(tmp, frames, photometric=photometric, metadata=meta)

    if not overwrite and p.exists():
        raise GplwsError(f"'{p}' already exists; pass overwrite=True to replace it.")
    atomic_write(p, _write, overwrite=overwrite)
    if need_sidecar:
        payload = {
            "focus_um": [float(v) for v in focus],
            "pixel_size_um": px,
            "written_by": _WRITTEN_BY,
        }
        text = json.dumps(payload, indent=1)
        atomic_write(side, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)
    elif side.exists() and _is_our_sidecar(side):
        side.unlink()
    return p
