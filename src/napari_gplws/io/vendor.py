"""Microscope vendor files (Zeiss CZI, Nikon ND2, Leica LIF, …) read through bioio.

What it is for: opening the files microscopists' software writes, without converting them
to TIFF first. The reading itself is done by `bioio <https://github.com/bioio-devs/bioio>`_
and its reader plugins (one package per format family), installed with the optional extra
``pip install 'napari-gplws[formats]'``; nothing here parses a vendor format by hand.

:func:`read_vendor` turns what bioio gives (dimensions ``T, C, Z, Y, X`` and, for colour
cameras, ``S`` samples; several *scenes* per file) into the frames of one focus stack:

* the **scene**, **channel** and **time point** are chosen as with ``axis_pick`` for TIFF
  files: ``{"S": 1}`` (or ``{"P": 1}``, position) for the scene, ``{"C": 0}``, ``{"T": 0}``;
  a file with several scenes or channels and no choice is refused with a message that
  names the choices;
* the **focus axis** is Z; when Z has one plane and a single other axis is left (a focus
  series recorded as time points), that axis is;
* the **focus step** comes from the physical Z size and the **pixel size** from the physical
  X size in the file's metadata (bioio reports them in µm); both can be overridden by the
  arguments of :func:`~napari_gplws.io.read_stack` or a sidecar.

A missing bioio, or a missing reader plugin for the file's format, raises a
:class:`~napari_gplws.errors.StackError` that names the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import StackError

__all__ = ["FORMATS_EXTRA", "VENDOR_FORMATS", "have_bioio", "is_vendor_path", "read_vendor"]

#: The optional extra that installs bioio and the reader plugins (Zeiss CZI, whose reader
#: is GPL-licensed, is the separate extra ``napari-gplws[czi]``).
FORMATS_EXTRA = "pip install 'napari-gplws[formats]'"

#: File extension → (what it is, the bioio reader plugin that reads it).
VENDOR_FORMATS: dict[str, tuple[str, str]] = {
    ".czi": ("Zeiss CZI", "bioio-czi"),
    ".nd2": ("Nikon ND2", "bioio-nd2"),
    ".lif": ("Leica LIF", "bioio-lif"),
    ".dv": ("DeltaVision", "bioio-dv"),
    ".r3d": ("DeltaVision", "bioio-dv"),
    ".sldy": ("3i SlideBook", "bioio-sldy"),
    ".vsi": ("Olympus/Evident cellSens VSI", "bioio-vsi"),
    ".lsm": ("Zeiss LSM", "bioio-tifffile"),
}
#: Formats this package reads natively, and the bioio plugin used when ``reader="bioio"``.
_NATIVE_PLUGINS: dict[str, tuple[str, str]] = {
    ".ome.tif": ("OME-TIFF", "bioio-ome-tiff"),
    ".ome.tiff": ("OME-TIFF", "bioio-ome-tiff"),
    ".tif": ("TIFF", "bioio-tifffile"),
    ".tiff": ("TIFF", "bioio-tifffile"),
    ".zarr": ("OME-Zarr", "bioio-ome-zarr"),
}
_SCENE_KEYS = ("S", "P")
_IMAGE_DIMS = ("Y", "X", "S")


def have_bioio() -> bool:
    """Whether bioio can be imported."""
    return importlib.util.find_spec("bioio") is not None


def is_vendor_path(path: str | Path) -> bool:
    """Whether ``path`` has the extension of a vendor format read through bioio."""
    return Path(path).suffix.lower() in VENDOR_FORMATS


def _format_of(p: Path) -> tuple[str, str]:
    low = p.name.lower()
    for ext in sorted(_NATIVE_PLUGINS, key=len, reverse=True):
        if low.endswith(ext):
            return _NATIVE_PLUGINS[ext]
    return VENDOR_FORMATS.get(p.suffix.lower(), (p.suffix.lstrip(".").upper() or "this", ""))


def _open(p: Path) -> Any:
    """``bioio.BioImage(p)``, with messages naming the install that fixes a missing reader."""
    what, plugin = _format_of(p)
    extra_cmd = "pip install 'napari-gplws[czi]'" if plugin == "bioio-czi" else FORMATS_EXTRA
    if not have_bioio():
        extra = f" (or: pip install bioio {plugin})" if plugin else ""
        raise StackError(
            f"Reading '{p.name}' ({what} file) needs bioio and its reader plugins: "
            f"{extra_cmd}{extra}."
        )
    if plugin and importlib.util.find_spec(plugin.replace("-", "_")) is None:
        raise StackError(
            f"Reading '{p.name}' ({what} file) needs the bioio reader plugin {plugin}: "
            f"pip install {plugin}  (or {extra_cmd})."
        )
    from bioio import BioImage
    from bioio_base.exceptions import UnsupportedFileFormatError

    quiet = logging.getLogger("bioio")  # its readers log each failed attempt; we explain
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return BioImage(p)
    except UnsupportedFileFormatError:
        if plugin and importlib.util.find_spec(plugin.replace("-", "_")) is not None:
            raise StackError(
                f"Cannot read '{p}' ({what} file): its reader ({plugin}) is installed but could "
                "not open it, so the file is damaged or not what its name says. Re-export it "
                "from the acquisition software, or convert it to OME-TIFF (e.g. with Fiji)."
            ) from None
        hint = f"pip install {plugin}" if plugin else extra_cmd
        raise StackError(
            f"No installed bioio reader can open '{p}' ({what} file). If the file is intact, "
            f"install its reader: {hint}; otherwise convert it to OME-TIFF (e.g. with Fiji)."
        ) from None
    except MemoryError:
        raise StackError(f"'{p}' is too large to load into memory.") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a message naming the file
        first = (str(exc).splitlines() or [""])[0][:200]
        raise StackError(
            f"Cannot read '{p}' ({what} file; {type(exc).__name__}: {first}); the file is "
            "damaged or not what its name says. Re-export it from the acquisition software."
        ) from None
    finally:
        quiet.setLevel(level)


def read_vendor(
    p: Path, picks: dict[str, int]
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Read one focus stack from a file bioio can open.

    Parameters
    ----------
    p
        The file (or OME-Zarr folder).
    picks
        Indices along the extra axes, upper-case letters as in ``axis_pick``: ``S``/``P``
        scene, ``C`` channel, ``T`` time, ``Z`` (when the focus axis is another one).

    Returns
    -------
    (frames, file_meta, format_meta)
        ``(N, H, W)`` or ``(N, H, W, 3)`` frames; ``focus_step_um`` and ``pixel_size_um``
        from the file's metadata (when it states them); what was read (``format``,
        ``axes``, ``scene``, ``dims_in_file``).

    Raises
    ------
    StackError
        bioio or its plugin missing (the message names the install); several scenes or
        channels and no choice; a choice out of range; a damaged file.
    """
    img = _open(p)
    picks = dict(picks)
    scene_key = next((k for k in _SCENE_KEYS if k in picks), None)
    scene = picks.pop(scene_key) if scene_key else None
    for k in _SCENE_KEYS:  # a second scene key (S and P both given) is one too many
        if k in picks:
            raise StackError(f"axis_pick for '{p}' names the scene twice (S and P); give one.")
    scenes = list(img.scenes)
    if scene is None and len(scenes) > 1:
        names = ", ".join(f"{i}: {s}" for i, s in enumerate(scenes[:8]))
        raise StackError(
            f"'{p}' holds {len(scenes)} scenes ({names}{' …' if len(scenes) > 8 else ''}); "
            "pick one: axis_pick={'S': 0} (CLI: --axis-pick S=0)."
        )
    if scene is not None:
        if not 0 <= scene < len(scenes):
            raise StackError(
                f"axis_pick S={scene} is out of range for '{p}': it holds {len(scenes)} "
                f"scene(s), 0 to {len(scenes) - 1}."
            )
        img.set_scene(scene)
    order = str(img.dims.order)
    sizes = {d: int(n) for d, n in zip(order, img.dims.shape)}
    extra = [d for d in order if d not in _IMAGE_DIMS]
    for key, idx in picks.items():
        if key not in extra:
            if idx == 0:
                continue  # an axis the file does not have: index 0 is harmless
            raise StackError(
                f"axis_pick {key}={idx} for '{p}': the file has no axis {key} (its axes: "
                f"{_sizes_text(sizes)})."
            )
        if not 0 <= idx < sizes[key]:
            raise StackError(
                f"axis_pick {key}={idx} is out of range for '{p}': axis {key} has "
                f"{sizes[key]} entries (0 to {sizes[key] - 1})."
            )
    left = [d for d in extra if d not in picks and sizes[d] > 1]
    if len(left) > 1:
        others = [d for d in left if d != "Z"] or left[1:]
        py = ", ".join(f"'{d}': 0" for d in others)
        cli = " ".join(f"--axis-pick {d}=0" for d in others)
        raise StackError(
            f"'{p}' has the axes {_sizes_text(sizes)}; a focus stack has one focus axis. Pick "
            f"an index along the others, e.g. axis_pick={{{py}}} (CLI: {cli})."
        )
    focus = left[0] if left else "Z"
    colour = "S" in sizes and sizes["S"] in (3, 4)
    want = focus + "YX" + ("S" if colour else "")
    kwargs = {d: picks.get(d, 0) for d in extra if d != focus}
    try:
        frames = np.asarray(img.get_image_data(want, **kwargs))
    except MemoryError:
        raise StackError(f"'{p}' is too large to load into memory; pick fewer planes.") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes a message naming the file
        first = (str(exc).splitlines() or [""])[0][:200]
        raise StackError(f"Cannot read the pixels of '{p}' ({type(exc).__name__}: {first}).") from None
    if colour and frames.shape[-1] == 4:
        frames = frames[..., :3]
    if "S" in sizes and not colour and sizes["S"] > 1:
        raise StackError(f"'{p}' has {sizes['S']} samples per pixel; only grey and RGB are read.")
    file_meta: dict[str, Any] = {}
    pps = img.physical_pixel_sizes
    z, x = _positive(getattr(pps, "Z", None)), _positive(getattr(pps, "X", None))
    if focus == "Z" and z is not None:
        file_meta["focus_step_um"] = z
    if x is not None:
        file_meta["pixel_size_um"] = x
    meta: dict[str, Any] = {
        "format": f"bioio ({type(img.reader).__name__})",
        "axes": want,
        "focus_axis": focus,
        "dims_in_file": sizes,
        "scene": scenes[scene if scene is not None else 0] if scenes else None,
    }
    if kwargs:
        meta["picked"] = kwargs
    y = _positive(getattr(pps, "Y", None))
    if x is not None and y is not None and abs(x - y) > 0.01 * x:
        meta["pixel_size_y_um"] = y
    return frames, file_meta, meta


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{d}={n}" for d, n in sizes.items())
