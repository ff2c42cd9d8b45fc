"""Reading focus stacks from disk and writing stacks, depth maps and images back.

What goes in
    * a multi-page TIFF, an OME-TIFF or an ImageJ hyperstack TIFF (read with tifffile);
    * a folder of frames (``.bmp``, ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg``), taken
      in *natural* order of their names (``1, 2, …, 10, …, 100``);
    * a ``.npy`` array or a ``.npz`` archive.

Physical units come from, in this order of precedence (the first that says something wins,
separately for the focus positions and for the pixel size):

1. explicit arguments of :func:`read_stack` (the CLI flags ``--focus-*``/``--pixel-size``);
2. a JSON *sidecar* (see :func:`read_sidecar` for the schema);
3. the file's own metadata (OME ``PhysicalSizeZ``/``PhysicalSizeX``/``Plane PositionZ``,
   ImageJ ``spacing``/``unit``/``XResolution``, arrays inside a ``.npz``).

What comes out is a :class:`~.stack.FocalStack` in the dtype of the file, with the frames'
axis first. Everything that cannot be used raises :class:`~.errors.StackError` with a
message naming the file and the fix.

Writers (:func:`write_depth_tiff`, :func:`write_image_tiff`, :func:`save_stack`) produce
ImageJ/Fiji-compatible TIFFs with their units, and replace files atomically (write to a
temporary file in the same folder, then :func:`os.replace`).

This module does no image processing and never imports napari or Qt.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import FocusPositionError, GplwsError, StackError
from napari_gplws.stack import FocalStack, uniform_positions

__all__ = [
    "FRAME_EXTENSIONS",
    "SIDECAR_NAMES",
    "STACK_EXTENSIONS",
    "available_memory_bytes",
    "is_stack_path",
    "list_frame_files",
    "move_aside",
    "parse_axis_pick",
    "read_depth_tiff",
    "read_image_tiff",
    "read_sidecar",
    "read_stack",
    "read_tiff_header",
    "save_stack",
    "sidecar_path",
    "write_depth_tiff",
    "write_image_tiff",
]

#: Extensions of single-frame image files accepted inside a folder of frames.
FRAME_EXTENSIONS: tuple[str, ...] = (".bmp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Extensions of files that hold a whole stack.
STACK_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".npy", ".npz")
#: Sidecar names looked for inside a folder of frames, in this order.
SIDECAR_NAMES: tuple[str, ...] = ("focus.json", "stack.json", "metadata.json")

_TIFF_EXTENSIONS = (".tif", ".tiff")
_NPZ_FRAME_KEYS = ("frames", "stack")
_NPZ_META_KEYS = ("focus_um", "pixel_size_um")
_SIDECAR_KEYS = ("focus_um", "focus_start_um", "focus_step_um", "pixel_size_um")
_WRITTEN_BY = "napari-gplws"

# Length units -> factor to µm (OME UnitsLength symbols and ImageJ spellings).
_TO_UM: dict[str, float] = {
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "μm": 1.0,  # Greek small mu (U+03BC)
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # ImageJ's escaped spelling
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
}

_AXIS_NOUN = {"T": "a time point", "C": "a channel", "S": "a sample (colour component)"}

AxisPick = Mapping[str, int]


# =========================================================================================
# Public: reading stacks
# =========================================================================================
def read_stack(
    path: str | os.PathLike[str],
    *,
    focus_um: Sequence[float] | np.ndarray | None = None,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
    pixel_size_um: float | None = None,
    axis_pick: AxisPick | None = None,
    exclude: Sequence[str] = (),
) -> FocalStack:
    """Read a focus stack from a file or a folder of frames.

    Parameters
    ----------
    path
        A ``.tif``/``.tiff`` (multi-page, OME-TIFF or ImageJ hyperstack), ``.npy`` or
        ``.npz`` file, or a folder of ``.bmp``/``.png``/``.tif``/``.jpg`` frames (one frame
        per file, natural name order; hidden files and ``.json`` files are ignored).
    focus_um
        ``(N,)`` focus-drive positions in µm, one per frame in acquisition order. Overrides
        the sidecar and the file's metadata. Give either this or ``focus_step_um``.
    focus_start_um
        Position of the first frame in µm; used with a step (from any source of equal or
        lower precedence) or, given alone above a list of positions, shifts that list so it
        starts here. Defaults to 0 when only a step is known.
    focus_step_um
        Focus step between consecutive frames in µm (may be negative).
    pixel_size_um
        Lateral pixel size in µm; overrides sidecar and file metadata.
    axis_pick
        Indices to select along extra axes, e.g. ``{"T": 0, "C": 1}`` for a TZCYX file.
        Keys are tifffile axis letters (case-insensitive) or, for any format, the axis
        number as a string (``{"0": 2}``; the only way for ``.npy``/``.npz``). A key for
        an axis that is absent is accepted when its index is 0 (a length-1 axis that was
        squeezed away) and rejected otherwise. When, after picking, a single axis besides
        Y, X and colour samples is left, it is the focus axis whatever its letter (Z, T, I…).
    exclude
        For a folder: names of files that are not frames (e.g. a ground-truth map).

    Returns
    -------
    FocalStack
        ``frames`` of shape ``(N, H, W)`` or ``(N, H, W, 3)`` in the file's dtype (alpha
        channels are dropped, possibly as a view); ``focus_um`` in µm or ``None``;
        ``pixel_size_um`` or ``None``; ``source`` the path; ``metadata`` with ``format``,
        ``axes`` (as stored), ``focus_from``/``pixel_size_from`` (``"arguments"``,
        ``"sidecar '<path>'"``, ``"file metadata"`` or ``None``), ``sidecar`` and, for
        folders, ``files``.

    Raises
    ------
    StackError
        Missing path; unsupported extension; empty folder; frames of different sizes or
        dtypes; a single frame; a truncated, corrupt or unreadable file; extra T/C axes
        without ``axis_pick``; a bad sidecar; NaN or infinite values.
    FocusPositionError
        Focus positions of the wrong length, not finite or not strictly monotonic (the
        message says where they came from).

    Examples
    --------
    >>> s = read_stack("scan.ome.tif")  # doctest: +SKIP
    >>> s = read_stack("frames/", focus_step_um=2.5, pixel_size_um=0.65)  # doctest: +SKIP
    >>> s = read_stack("movie.tif", axis_pick={"T": 0})  # doctest: +SKIP
    """
    p = Path(os.fspath(path))
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            near = sorted(
                q.name for q in p.parent.iterdir() if q.name.lower().startswith(p.stem[:3].lower())
            )
            if near:
                hint = f" Files with a similar name there: {', '.join(near[:5])}."
        raise StackError(f"'{p}' does not exist; check the path (and its spelling).{hint}")
    if p.is_dir() and _is_zarr_store(p):
        raise StackError(
            f"'{p}' is a zarr store; it is reconstructed chunk by chunk, not read into memory: "
            f"run `gplws reconstruct '{p}' -o OUTDIR` (or `gplws batch`), or from Python "
            "napari_gplws.dff.outofcore.reconstruct_zarr / predict_zarr."
        )
    if p.is_file() and _suffix(p) not in STACK_EXTENSIONS:
        if _suffix(p) in FRAME_EXTENSIONS:
            raise StackError(
                f"'{p}' is a single image; depth from focus needs a stack. Put all frames of "
                "the stack in one folder and open the folder (or save them as a multi-page TIFF)."
            )
        raise StackError(
            f"'{p}' has an unsupported file type '{p.suffix}'. Supported: multi-page TIFF, "
            "OME-TIFF, ImageJ TIFF, .npy, .npz, or a folder of BMP/PNG/TIFF/JPEG frames; "
            "convert other formats to TIFF (e.g. with Fiji/Bio-Formats)."
        )
    picks = _normalise_picks(axis_pick, p)
    args: dict[str, Any] = {}
    if focus_um is not None:
        args["focus_um"] = focus_um
    if focus_start_um is not None:
        args["focus_start_um"] = focus_start_um
    if focus_step_um is not None:
        args["focus_step_um"] = focus_step_um
    if pixel_size_um is not None:
        args["pixel_size_um"] = pixel_size_um
    if "focus_um" in args and "focus_step_um" in args:
        raise StackError(
            f"Give either focus positions or a focus step for '{p}', not both "
            "(--focus-um or --focus-step)."
        )
    # The sidecar is checked before the (possibly large) pixel data is loaded.
    if p.is_dir():
        sidecar = _folder_sidecar(p)
    else:
        sidecar = sidecar_path(p)
        sidecar = sidecar if sidecar.is_file() else None
    side = read_sidecar(sidecar) if sidecar is not None else {}

    if p.is_dir():
        if any(v != 0 for v in picks.values()):
            raise StackError(
                f"axis_pick {picks} for '{p}': a folder of frames has no extra axes to pick from."
            )
        frames, file_meta, fmt_meta = _read_folder(p, exclude)
    else:
        ext = _suffix(p)
        if ext in _TIFF_EXTENSIONS:
            frames, file_meta, fmt_meta = _read_tiff_stack(p, picks)
        elif ext == ".npy":
            frames, file_meta, fmt_meta = _read_npy(p, picks)
        else:
            frames, file_meta, fmt_meta = _read_npz(p, picks)

    if frames.shape[0] < 2:
        raise StackError(
            f"'{p}' holds a single frame (shape {tuple(frames.shape[1:])}); depth from focus "
            "needs a stack of at least two frames taken at different focus positions. Save all "
            "focus planes in one multi-page TIFF, or put one file per frame in a folder."
        )

    levels = [
        ("arguments", args),
        (f"sidecar '{sidecar}'", side),
        ("file metadata", file_meta),
    ]
    n = int(frames.shape[0])
    focus, focus_from = _resolve_focus(levels, n, p)
    px, px_from = None, None
    for name, level in levels:
        if level.get("pixel_size_um") is not None:
            px, px_from = level["pixel_size_um"], name
            break

    metadata = dict(fmt_meta)
    metadata.update(
        focus_from=focus_from,
        pixel_size_from=px_from,
        sidecar=str(sidecar) if sidecar is not None else None,
    )
    if picks:
        metadata["axis_pick"] = dict(picks)
    extra_side = {k: v for k, v in side.items() if k not in _SIDECAR_KEYS}
    if extra_side:
        metadata["sidecar_extra"] = extra_side
    try:
        return FocalStack(
            frames, focus_um=focus, pixel_size_um=px, source=str(p), metadata=metadata
        )
    except FocusPositionError as exc:
        raise FocusPositionError(f"{exc} (The positions came from the {focus_from}.)") from None


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a JSON sidecar that gives a stack its physical units.

    Schema (all keys optional; ``null`` counts as absent; other keys are kept as they are)::

        {"focus_um": [0.0, 2.5, 5.0, ...],   # one position per frame, µm, acquisition order
         "pixel_size_um": 0.65}              # lateral pixel size, µm
    or
        {"focus_start_um": 100.0,            # position of the first frame, µm (default 0)
         "focus_step_um": 2.5,               # step between frames, µm (may be negative)
         "pixel_size_um": 0.65}

    A top-level list of numbers is read as ``{"focus_um": [...]}``.

    Parameters
    ----------
    path
        The ``.json`` file.

    Returns
    -------
    dict
        ``focus_um`` as a float64 array, the other known keys as floats, unknown keys as read.

    Raises
    ------
    StackError
        The file cannot be read, is not valid JSON, or a known key has the wrong type, or both
        ``focus_um`` and ``focus_step_um`` are given.
    """
    p = Path(os.fspath(path))
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError(f"Cannot read the sidecar '{p}': {exc}.") from None
    except json.JSONDecodeError as exc:
        raise StackError(
            f"The sidecar '{p}' is not valid JSON ({exc}); fix it or remove it. Expected e.g. "
            '{"focus_um": [0, 2, 4], "pixel_size_um": 0.65}.'
        ) from None
    if isinstance(raw, list):
        raw = {"focus_um": raw}
    if not isinstance(raw, dict):
        raise StackError(
            f"The sidecar '{p}' must hold a JSON object such as "
            '{"focus_start_um": 0, "focus_step_um": 2, "pixel_size_um": 0.65}; '
            f"got {type(raw).__name__}."
        )
    out: dict[str, Any] = {k: v for k, v in raw.items() if v is not None}
    if "focus_um" in out:
        vals = out["focus_um"]
        if not isinstance(vals, list) or not all(_is_number(v) for v in vals):
            raise StackError(
                f"In the sidecar '{p}', \"focus_um\" must be a list of numbers (µm, one per frame)."
            )
        out["focus_um"] = np.asarray(vals, dtype=np.float64)
    for key in ("focus_start_um", "focus_step_um", "pixel_size_um"):
        if key in out:
            if not _is_number(out[key]):
                raise StackError(
                    f"In the sidecar '{p}', \"{key}\" must be a number (µm); got {out[key]!r}."
                )
            out[key] = float(out[key])
    if "focus_um" in out and "focus_step_um" in out:
        raise StackError(
            f'The sidecar \'{p}\' gives both "focus_um" and "focus_step_um"; keep only one.'
        )
    return out


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return where the JSON sidecar of a stack *file* is (whether or not it exists).

    ``stack.tif`` -> ``stack.json``; ``stack.ome.tif`` -> ``stack.json``; ``a.npz`` ->
    ``a.json``. For folders, see :data:`SIDECAR_NAMES`.
    """
    p = Path(os.fspath(path))
    return p.with_name(_base_stem(p) + ".json")


def list_frame_files(folder: str | os.PathLike[str], exclude: Sequence[str] = ()) -> list[Path]:
    """List the frame files of a folder in natural order of their names.

    Files named in ``exclude`` (e.g. a ground-truth depth map kept beside the frames) are
    skipped.

    Only files with an extension in :data:`FRAME_EXTENSIONS` count (case-insensitive);
    hidden files (starting with ``.``), sidecars and sub-folders are ignored. Natural order
    means ``2.png`` comes before ``10.png``.

    Raises
    ------
    StackError
        The folder cannot be listed, holds no frame files, or mixes image formats.
    """
    from natsort import natsorted, ns

    d = Path(os.fspath(folder))
    try:
        entries = [e for e in os.scandir(d) if not e.name.startswith(".")]
    except OSError as exc:
        raise StackError(f"Cannot list the folder '{d}': {exc}.") from None
    files = [
        Path(e.path)
        for e in entries
        if e.is_file() and _suffix(Path(e.name)) in FRAME_EXTENSIONS and e.name not in exclude
    ]
    if not files:
        others = sorted(e.name for e in entries)
        seen = (
            f" It holds: {', '.join(others[:8])}{' …' if len(others) > 8 else ''}."
            if others
            else " It is empty."
        )
        raise StackError(
            f"The folder '{d}' has no image frames (.bmp, .png, .tif, .tiff, .jpg, .jpeg).{seen} "
            "Point to the folder that holds the frames, or to a stack file."
        )
    kinds: dict[str, int] = {}
    for f in files:
        k = _frame_kind(f)
        kinds[k] = kinds.get(k, 0) + 1
    if len(kinds) > 1:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        raise StackError(
            f"The folder '{d}' mixes image formats ({counts} files); a stack's frames share one "
            "format. Move the files that are not frames (e.g. a depth map) out of the folder."
        )
    return natsorted(files, key=lambda f: f.name, alg=ns.IGNORECASE)


def is_stack_path(path: str | os.PathLike[str]) -> bool:
    """Whether :func:`read_stack` would try to read ``path`` (by extension or folder content).

    Cheap: looks at the name, and for folders whether any frame file is inside. Does not
    open files.
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        try:
            return any(
                not e.name.startswith(".")
                and e.is_file()
                and _suffix(Path(e.name)) in FRAME_EXTENSIONS
                for e in os.scandir(p)
            )
        except OSError:
            return False
    return _suffix(p) in STACK_EXTENSIONS


def parse_axis_pick(spec: str | Sequence[str] | Mapping[str, int] | None) -> dict[str, int]:
    """Parse ``"T=0"``, ``"T=0,C=1"`` or ``["T=0", "C=1"]`` into ``{"T": 0, "C": 1}``.

    Meant for the CLI flag ``--axis-pick`` (which may be repeated). Axis letters are upper-cased.

    Raises
    ------
    StackError
        An item is not of the form ``AXIS=INDEX`` with a non-negative integer index.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = [f"{k}={v}" for k, v in spec.items()]
    elif isinstance(spec, str):
        items = [spec]
    else:
        items = list(spec)
    out: dict[str, int] = {}
    for item in items:
        for part in str(item).replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"([A-Za-z]|\d+)\s*[=:]\s*(\d+)", part)
            if not m:
                raise StackError(
                    f"Cannot read the axis pick '{part}'; write AXIS=INDEX, e.g. --axis-pick T=0 "
                    "(time point 0) or --axis-pick C=1 (channel 1)."
                )
            out[m.group(1).upper()] = int(m.group(2))
    return out


# =========================================================================================
# Public: writing
# =========================================================================================
def move_aside(path: str | os.PathLike[str]) -> Path | None:
    """Keep an existing file before it is replaced: rename it to ``<stem>.backup-<time><suffix>``.

    For writers that cannot write atomically (or callers that promise never to overwrite
    silently). Returns the backup's path, or ``None`` when there was no file. The backup
    lies in the same folder; a second backup within the same second gets ``-1``, ``-2``…

    Raises
    ------
    GplwsError
        ``path`` is a folder, or the file cannot be renamed.
    """
    import time

    p = Path(os.fspath(path))
    if p.is_dir():
        raise GplwsError(f"'{p}' is a folder; give a file name.")
    if not p.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, k = p.with_name(f"{p.stem}.backup-{stamp}{p.suffix}"), 1
    while target.exists():
        target, k = p.with_name(f"{p.stem}.backup-{stamp}-{k}{p.suffix}"), k + 1
    try:
        p.rename(target)
    except OSError as exc:
        raise GplwsError(f"Cannot keep the existing '{p}' as a backup: {exc}.") from None
    return target


def write_depth_tiff(
    path: str | os.PathLike[str],
    depth: np.ndarray,
    *,
    units: str,
    pixel_size_um: float | None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = True,
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
        ``(H, W)`` depth map, any real dtype (stored as float32; NaN allowed for no data).
    units
        Unit of the depth values: ``"µm"`` or ``"frame"`` (any non-empty text is stored).
    pixel_size_um
        Lateral pixel size in µm, or ``None`` when unknown.
    metadata
        Extra JSON-able facts (method, source, focus positions…). NumPy values are converted.
    overwrite
        Replace an existing file (atomically). When ``False`` and the file exists, raise.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    GplwsError
        ``depth`` is not 2-D/real, ``units`` is empty, the pixel size is not positive, the
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
    data = np.asarray(arr, dtype=np.float32)
    info = _jsonable(dict(metadata or {}))
    info.update(units=units, pixel_size_um=px, kind="depth", written_by=_WRITTEN_BY)
    ij: dict[str, Any] = {"axes": "YX", "Info": json.dumps(info, ensure_ascii=False)}
    kwargs: dict[str, Any] = {}
    if px is not None:
        ij["unit"] = "micron"
        kwargs["resolution"] = (1.0 / px, 1.0 / px)

    def _write(tmp: Path) -> None:
        tifffile.imwrite(tmp, data, imagej=True, metadata=ij, **kwargs)

    _atomic_write(p, _write, overwrite=overwrite)
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
        Wrong shape or dtype, bad pixel size, existing file with ``overwrite=False``, or a
        failed write.
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

    _atomic_write(p, _write, overwrite=overwrite)
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
    _atomic_write(p, _write, overwrite=overwrite)
    if need_sidecar:
        payload = {
            "focus_um": [float(v) for v in focus],
            "pixel_size_um": px,
            "written_by": _WRITTEN_BY,
        }
        text = json.dumps(payload, indent=1)
        _atomic_write(side, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)
    elif side.exists() and _is_our_sidecar(side):
        side.unlink()
    return p


# =========================================================================================
# Focus-position precedence
# =========================================================================================
def _resolve_focus(
    levels: list[tuple[str, Mapping[str, Any]]], n: int, p: Path
) -> tuple[np.ndarray | None, str | None]:
    """Pick focus positions from the highest-precedence level that gives a list or a step."""
    chosen = None
    for i, (_name, level) in enumerate(levels):
        if level.get("focus_um") is not None or level.get("focus_step_um") is not None:
            chosen = i
            break
    if chosen is None:
        for name, level in levels:
            if level.get("focus_start_um") is not None:
                raise StackError(
                    f"A focus start is given ({name}) for '{p}' but no focus step or positions; "
                    'add the step (--focus-step, or "focus_step_um" in the sidecar).'
                )
        return None, None
    start_from = None
    for i in range(chosen):
        if levels[i][1].get("focus_start_um") is not None:
            start_from = i
            break
    name, level = levels[chosen]
    where_from = name
    if level.get("focus_um") is not None:
        pos = np.asarray(level["focus_um"], dtype=np.float64).ravel()
        if start_from is not None and pos.size:
            pos = pos - pos[0] + float(levels[start_from][1]["focus_start_um"])
            where_from = f"{name} shifted to the start from the {levels[start_from][0]}"
        return pos, where_from
    step = float(level["focus_step_um"])
    if start_from is not None:
        start = float(levels[start_from][1]["focus_start_um"])
        where_from = f"{name} (step) and {levels[start_from][0]} (start)"
    else:
        start = float(level.get("focus_start_um") or 0.0)
    try:
        return uniform_positions(n, start, step), where_from
    except FocusPositionError as exc:
        raise FocusPositionError(f"{exc} (From the {name}, for '{p}'.)") from None


# =========================================================================================
# TIFF
# =========================================================================================
class _TiffLog(logging.Handler):
    """Collects tifffile's error log records of the current thread (tifffile logs, not raises,
    on many kinds of file damage)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


_DAMAGE_WORDS = ("offset", "corrupt", "truncat", "failed to read")


@contextmanager
def _open_tiff(p: Path) -> Iterator[tuple[Any, Callable[..., Any]]]:
    """Open a TIFF; yield ``(tif, check)`` where ``check(fn, *args)`` calls ``fn`` and turns any
    failure, or tifffile logging damage, into a :class:`StackError` naming the file."""
    import tifffile

    log = _TiffLog()
    logger = logging.getLogger("tifffile")
    logger.addHandler(log)

    def fail(cause: str) -> StackError:
        return StackError(
            f"'{p}' is truncated or corrupt and cannot be read ({cause}). Copy or export the file "
            "again (an interrupted transfer often causes this)."
        )

    def damage() -> None:
        bad = [m for m in log.messages if any(w in m.lower() for w in _DAMAGE_WORDS)]
        if bad:
            raise fail("; ".join(dict.fromkeys(bad)))

    def check(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except StackError:
            raise
        except MemoryError:
            raise StackError(_too_large_message(p)) from None
        except Exception as exc:  # tifffile and codecs raise many types
            damage()
            raise fail(f"{type(exc).__name__}: {exc}") from None
        damage()
        return out

    try:
        try:
            tif = tifffile.TiffFile(p)
        except Exception as exc:
            damage()
            raise fail(f"{type(exc).__name__}: {exc}") from None
        try:
            check(lambda: tif.series)
            if not tif.series:
                raise StackError(
                    f"'{p}' holds no images; it is truncated or corrupt, or not really a TIFF. "
                    "Copy or export the file again."
                )
            yield tif, check
        finally:
            tif.close()
    finally:
        logger.removeHandler(log)


def _read_tiff_stack(
    p: Path, picks: dict[str, int]
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Read the first series of a TIFF as ``(N, H, W[, 3])`` with its units."""
    with _open_tiff(p) as (tif, check):
        series = tif.series[0]
        axes, shape = str(series.axes).upper(), tuple(int(s) for s in series.shape)
        fmt = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
        if fmt == "imagej-tiff":
            n_said = (tif.imagej_metadata or {}).get("images")
            n_found = math.prod(shape[: len(axes) - _n_plane_axes(axes)])
            if isinstance(n_said, int) and n_said > n_found:
                raise StackError(
                    f"'{p}' is truncated or corrupt: ImageJ says it holds {n_said} images but only "
                    f"{n_found} could be found. Copy or export the file again."
                )
        many = fmt == "tiff" and len(tif.series) > 1
        if many:  # pages written one by one (one series each): they must agree
            page = 0
            for s in tif.series[1:]:
                page += len(s.pages)
                if s.shape != series.shape or s.dtype != series.dtype:
                    raise StackError(
                        f"The pages of '{p}' differ in size or pixel type: page {page} is "
                        f"{tuple(s.shape)} {s.dtype} but page 0 is {tuple(series.shape)} "
                        f"{series.dtype}. All frames of a stack must have the same size and type; "
                        "export them again (or crop)."
                    )
            axes = "I" + axes
            shape = (len(tif.series),) + shape
        labels = list(axes)
        if "S" in labels and not _samples_are_colour(series.keyframe):
            # samples that are not colour (e.g. a 4-plane array stored as 4 samples): channels
            labels[labels.index("S")] = "C" if "C" not in labels else "Q"
        sel, frame_labels = _plan_selection(labels, shape, picks, p)
        need = math.prod(s for i, s in enumerate(shape) if i not in sel) * np.dtype(series.dtype).itemsize
        _check_fits_in_memory(p, need)
        if many:
            data = check(_read_series_list, tif, shape, series.dtype, sel)
        else:
            data = check(_read_selected, tif, series, labels, shape, sel)
            end = None if series.dataoffset is None else series.dataoffset + series.nbytes
            if end is not None and end > tif.filehandle.size:
                raise StackError(
                    f"'{p}' is truncated or corrupt: its image data needs {end} bytes but the file "
                    f"has {tif.filehandle.size}. Copy or export the file again."
                )
        file_meta = _tiff_file_meta(tif, series, sel, labels)
    frames = _to_zyx(data, frame_labels, p)
    meta = {"format": fmt, "axes": axes, "shape_in_file": list(shape)}
    if "focus_um" in file_meta and np.size(file_meta["focus_um"]) != frames.shape[0]:
        del file_meta["focus_um"]
    return frames, file_meta, meta


def _tiff_file_meta(tif: Any, series: Any, sel: dict[int, int], labels: list[str]) -> dict[str, Any]:
    """Units the TIFF itself states: pixel size, z step and per-frame positions (µm)."""
    file_meta = _tiff_units(tif, series)
    if tif.is_ome:
        file_meta.update(_ome_positions(tif.ome_metadata, sel, labels))
    elif tif.is_shaped and tif.shaped_metadata:
        sm = tif.shaped_metadata[0]
        if sm.get("written_by") == _WRITTEN_BY:
            if sm.get("focus_um") is not None:
                file_meta["focus_um"] = np.asarray(sm["focus_um"], dtype=np.float64)
            if sm.get("pixel_size_um") is not None:
                file_meta["pixel_size_um"] = float(sm["pixel_size_um"])
    return file_meta


# =========================================================================================
# Memory: is an in-memory read sensible?
# =========================================================================================
def available_memory_bytes() -> int | None:
    """Memory the system can give a process now (``MemAvailable``), or ``None`` when unknown.

    Uses psutil when installed, else ``/proc/meminfo`` (Linux).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().available)
        except (OSError, RuntimeError, AttributeError):
            pass  # no answer on this platform: try /proc/meminfo
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _format_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _too_large_message(p: Path, need: int | None = None, avail: int | None = None) -> str:
    sizes = ""
    if need is not None and avail is not None:
        sizes = f" (its pixels need {_format_bytes(need)} uncompressed; {_format_bytes(avail)} is available)"
    return (
        f"'{p}' is too large to load into memory{sizes}. Reconstruct it chunk by chunk instead: "
        f"`gplws reconstruct '{p}' -o OUTDIR --out-of-core` (from Python: "
        "napari_gplws.dff.outofcore.tiff_to_zarr, then reconstruct_zarr); or crop it or pick "
        "fewer axes."
    )


def _check_fits_in_memory(p: Path, need: int) -> None:
    """Raise a :class:`StackError` suggesting ``--out-of-core`` when ``need`` bytes clearly do
    not fit in the memory available now."""
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise StackError(_too_large_message(p, need, avail))


def read_tiff_header(
    path: str | os.PathLike[str],
    *,
    focus_um: Sequence[float] | np.ndarray | None = None,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Shape, pixel type, uncompressed size and units of a TIFF stack, reading no pixels.

    Focus positions and pixel size follow :func:`read_stack`'s precedence (arguments, then
    the JSON sidecar, then the file's OME / ImageJ / napari-gplws metadata).

    Returns
    -------
    dict
        ``shape`` and ``axes`` of the first series as stored (tifffile axis letters; a
        plain TIFF whose pages are separate series gets a leading ``I`` axis over them),
        ``dtype``, ``nbytes`` (uncompressed), ``format`` (``"tiff"``, ``"ome-tiff"``,
        ``"imagej-tiff"``), ``n_series``, ``focus_um`` (array or ``None``), ``focus_from``,
        ``pixel_size_um``, ``pixel_size_from``, ``sidecar``.

    Raises
    ------
    StackError
        Missing, non-TIFF, truncated or corrupt file; a bad sidecar.
    FocusPositionError
        Focus positions of the wrong length, not finite or not monotonic.
    """
    from napari_gplws.stack import validate_focus_positions

    p = Path(os.fspath(path))
    if not p.is_file():
        raise StackError(f"'{p}' does not exist or is not a file; check the path.")
    if _suffix(p) not in _TIFF_EXTENSIONS:
        raise StackError(f"'{p}' is not a TIFF file (.tif / .tiff).")
    args = {
        k: v
        for k, v in (
            ("focus_um", focus_um), ("focus_start_um", focus_start_um),
            ("focus_step_um", focus_step_um), ("pixel_size_um", pixel_size_um),
        )
        if v is not None
    }
    if "focus_um" in args and "focus_step_um" in args:
        raise StackError(
            f"Give either focus positions or a focus step for '{p}', not both "
            "(--focus-positions or --focus-step)."
        )
    sidecar = sidecar_path(p)
    sidecar = sidecar if sidecar.is_file() else None
    side = read_sidecar(sidecar) if sidecar is not None else {}
    with _open_tiff(p) as (tif, _check):
        series = tif.series[0]
        axes, shape = str(series.axes).upper(), tuple(int(s) for s in series.shape)
        fmt = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
        n_series = len(tif.series)
        if fmt == "tiff" and n_series > 1:
            axes, shape = "I" + axes, (n_series,) + shape
        labels = list(axes)
        if "S" in labels and not _samples_are_colour(series.keyframe):
            labels[labels.index("S")] = "C" if "C" not in labels else "Q"
        file_meta = _tiff_file_meta(tif, series, {}, labels)
        dtype = np.dtype(series.dtype)
    plane_axes = sum(a in ("Y", "X", "S") for a in labels)
    n = shape[0] if len(shape) > plane_axes else 1
    if "focus_um" in file_meta and np.size(file_meta["focus_um"]) != n:
        del file_meta["focus_um"]
    levels = [("arguments", args), (f"sidecar '{sidecar}'", side), ("file metadata", file_meta)]
    focus, focus_from = _resolve_focus(levels, n, p)
    if focus is not None:
        try:
            focus = validate_focus_positions(focus, n, p)
        except FocusPositionError as exc:
            raise FocusPositionError(f"{exc} (The positions came from the {focus_from}.)") from None
    px, px_from = None, None
    for name, level in levels:
        if level.get("pixel_size_um") is not None:
            px, px_from = float(level["pixel_size_um"]), name
            break
    return {
        "shape": shape,
        "axes": axes,
        "dtype": dtype,
        "nbytes": int(math.prod(shape) * dtype.itemsize),
        "format": fmt,
        "n_series": n_series,
        "focus_um": focus,
        "focus_from": focus_from,
        "pixel_size_um": px,
        "pixel_size_from": px_from,
        "sidecar": None if sidecar is None else str(sidecar),
    }


def _is_zarr_store(p: Path) -> bool:
    from napari_gplws.dff.outofcore import is_zarr_path

    return is_zarr_path(p)


def _samples_are_colour(page: Any) -> bool:
    """Whether a page's samples are RGB(A) or gray+alpha rather than independent channels."""
    import tifffile

    photometric = getattr(page, "photometric", None)
    extras = tuple(getattr(page, "extrasamples", ()) or ())
    colour = (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
    if photometric in colour:
        return True
    gray = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
    return photometric in gray and len(extras) == 1 and extras[0] in alpha


def _n_plane_axes(axes: str) -> int:
    """How many trailing axes form one plane (Y, X and an S samples axis)."""
    return sum(1 for a in axes[-3:] if a in "YXS")


def _read_series_list(
    tif: Any, shape: tuple[int, ...], dtype: Any, sel: dict[int, int]
) -> np.ndarray:
    """Read a file whose pages each form a series of one shape into one array, picking ``sel``."""
    keep = [sel[0]] if 0 in sel else range(len(tif.series))
    out = np.empty((len(keep),) + shape[1:], dtype=dtype)
    for k, j in enumerate(keep):
        out[k] = tif.series[j].asarray()
    rest = tuple(sel.get(i, slice(None)) for i in range(1, len(shape)))
    out = out[(slice(None),) + rest]
    return out[0] if 0 in sel else out


def _read_selected(
    tif: Any, series: Any, labels: list[str], shape: tuple[int, ...], sel: dict[int, int]
) -> np.ndarray:
    """Read a series, selecting ``sel`` (axis position -> index); reads only the needed pages
    when every page is one plane, else reads everything and slices (a view)."""
    if not sel:
        return series.asarray()
    keyshape = tuple(int(s) for s in series.keyframe.shape)
    k = len(keyshape)
    lead = shape[:-k] if k and shape[-k:] == keyshape else None
    if (
        lead is not None
        and math.prod(lead) == len(series.pages)
        and all(i < len(lead) for i in sel)
    ):
        index = np.arange(math.prod(lead)).reshape(lead)
        index = index[tuple(sel.get(i, slice(None)) for i in range(len(lead)))]
        out = tif.asarray(key=[int(i) for i in index.ravel()], series=0)
        return out.reshape(index.shape + keyshape)
    data = series.asarray()
    return data[tuple(sel.get(i, slice(None)) for i in range(len(shape)))]


def _tiff_units(tif: Any, series: Any) -> dict[str, Any]:
    """Pixel size and z step (µm) from OME, ImageJ or our own shaped metadata."""
    out: dict[str, Any] = {}
    if tif.is_ome:
        px = _ome_pixels_attrs(tif.ome_metadata)
        x = _length_um(px.get("PhysicalSizeX"), px.get("PhysicalSizeXUnit", "µm"))
        z = _length_um(px.get("PhysicalSizeZ"), px.get("PhysicalSizeZUnit", "µm"))
        if x is not None and x > 0:
            out["pixel_size_um"] = x
        if z is not None and z > 0:
            out["focus_step_um"] = z
        return out
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        unit = ij.get("unit")
        factor = _unit_factor(unit)
        if factor is not None:
            tags = series.keyframe.tags
            res = tags.get("XResolution")
            if res is not None:
                num, den = res.value
                if num > 0 and den > 0:
                    out["pixel_size_um"] = factor * den / num
        zfactor = _unit_factor(ij.get("zunit", unit))
        spacing = ij.get("spacing")
        if zfactor is not None and _is_number(spacing) and spacing > 0:
            out["focus_step_um"] = float(spacing) * zfactor
        return out
    tags = series.keyframe.tags
    res, runit = tags.get("XResolution"), tags.get("ResolutionUnit")
    if (
        tif.is_shaped
        and tif.shaped_metadata
        and tif.shaped_metadata[0].get("pixel_size_um") is not None
    ):
        out["pixel_size_um"] = float(tif.shaped_metadata[0]["pixel_size_um"])
    elif res is not None and runit is not None and int(runit.value) == 3:  # pixels per centimetre
        num, den = res.value
        if num > 0 and den > 0:
            out["pixel_size_um"] = 1e4 * den / num
    return out


def _ome_root(xml: str | None) -> ET.Element | None:
    if not xml:
        return None
    try:
        return ET.fromstring(xml)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_pixels(xml: str | None) -> ET.Element | None:
    root = _ome_root(xml)
    if root is None:
        return None
    for el in root.iter():
        if _local(el.tag) == "Pixels":
            return el
    return None


def _ome_pixels_attrs(xml: str | None) -> dict[str, str]:
    el = _ome_pixels(xml)
    return dict(el.attrib) if el is not None else {}


def _ome_positions(xml: str | None, sel: dict[int, int], labels: list[str]) -> dict[str, Any]:
    """Per-plane ``PositionZ`` (µm) of the picked T and C, in TheZ order, when they vary."""
    pix = _ome_pixels(xml)
    if pix is None:
        return {}
    want = {"T": 0, "C": 0}
    for i, idx in sel.items():
        if labels[i] in want:
            want[labels[i]] = idx
    by_z: dict[int, float] = {}
    for el in pix:
        if _local(el.tag) != "Plane" or "PositionZ" not in el.attrib:
            continue
        try:
            t, c, z = (int(el.attrib.get(k, 0)) for k in ("TheT", "TheC", "TheZ"))
            v = _length_um(el.attrib["PositionZ"], el.attrib.get("PositionZUnit", "µm"))
        except ValueError:
            return {}
        if v is None:
            return {}
        if t == want["T"] and c == want["C"]:
            by_z[z] = v
    if len(by_z) < 2:
        return {}
    pos = np.array([by_z[z] for z in sorted(by_z)], dtype=np.float64)
    if np.ptp(pos) == 0:
        return {}  # all planes at one position: the file does not really say
    return {"focus_um": pos}


def _plan_selection(
    labels: list[str], shape: tuple[int, ...], picks: dict[str, int], p: Path
) -> tuple[dict[int, int], list[str]]:
    """Turn picks into ``{axis position: index}`` and check what is left is a (Z,)Y,X(,S) stack."""
    sel: dict[int, int] = {}
    for key, idx in picks.items():
        if key.isdigit():
            pos = int(key)
            if pos >= len(labels) or labels[pos] in ("Y", "X"):
                raise StackError(
                    f"axis_pick {key}={idx} for '{p}': there is no extra axis {key} (axes are "
                    f"{_describe_axes(labels, shape)})."
                )
        elif key in labels:
            pos = labels.index(key)
        else:
            if idx == 0:
                continue  # a length-1 axis that tifffile squeezed away
            raise StackError(
                f"axis_pick {key}={idx} for '{p}': the file has no axis {key}; its axes are "
                f"{_describe_axes(labels, shape)}."
            )
        if key in ("Y", "X") or labels[pos] in ("Y", "X"):
            raise StackError(
                f"axis_pick cannot select along {labels[pos]} (an image axis) in '{p}'."
            )
        if not 0 <= idx < shape[pos]:
            raise StackError(
                f"axis_pick {key}={idx} is out of range for '{p}': axis {labels[pos]} has "
                f"{shape[pos]} entries (0…{shape[pos] - 1})."
            )
        sel[pos] = idx
    left = [(i, a) for i, a in enumerate(labels) if i not in sel]
    if "Y" not in labels or "X" not in labels:
        raise StackError(
            f"'{p}' has axes {''.join(labels)} without Y and X; it is not an image stack."
        )
    extra = [
        (i, a)
        for i, a in left
        if a not in ("Y", "X") and not (a == "S" and shape[i] in (1, 2, 3, 4))
    ]
    if len(extra) > 1:
        z = [i for i, a in extra if a == "Z"]
        # Without a Z axis, guess the longest extra axis is the focus axis (for the hint only).
        keep = z[0] if z else max(extra, key=lambda ia: shape[ia[0]])[0]
        _raise_pick_needed(labels, shape, extra, keep, p, has_z=bool(z))
    return sel, [a for i, a in left]


def _raise_pick_needed(
    labels: list[str],
    shape: tuple[int, ...],
    extra: list[tuple[int, str]],
    keep: int,
    p: Path,
    *,
    has_z: bool,
) -> None:
    """Raise the error that names the extra axes and shows the ``axis_pick`` to give."""
    others = [(i, a) for i, a in extra if i != keep]
    shown = extra if not has_z else others
    sizes = ", ".join(f"{_axis_name(a, i)}={shape[i]}" for i, a in shown)
    key = lambda i, a: a if a.isalpha() and a not in "IQ" else str(i)
    py = ", ".join(f"'{key(i, a)}': 0" for i, a in others)
    cli = " ".join(f"--axis-pick {key(i, a)}=0" for i, a in others)
    nouns = " and ".join(_AXIS_NOUN.get(a, f"an index along axis {key(i, a)}") for i, a in others)
    guess = (
        ""
        if has_z
        else f" (this assumes {_axis_name(labels[keep], keep)} is the focus axis; pick along "
        "the others if not)"
    )
    raise StackError(
        f"'{p}' has axes {''.join(labels)} with {sizes}; a focus stack has one focus axis. "
        f"Pick {nouns} with axis_pick={{{py}}} (CLI: {cli}){guess}."
    )


def _axis_name(a: str, i: int) -> str:
    return a if a.isalpha() and a not in "IQ" else f"axis {i} ({a})" if a.isalpha() else f"axis {a}"


def _describe_axes(labels: list[str], shape: tuple[int, ...]) -> str:
    return ", ".join(f"{a}={s}" for a, s in zip(labels, shape, strict=True))


def _to_zyx(data: np.ndarray, labels: list[str], p: Path) -> np.ndarray:
    """Reorder a selected array to ``(N, H, W[, 3])``; drop alpha/second samples (views)."""
    if data.ndim != len(labels):
        raise StackError(
            f"'{p}': the image data has shape {data.shape} but the axes say {''.join(labels)}; "
            "the file's metadata is inconsistent. Export the stack again."
        )
    order = [i for i, a in enumerate(labels) if a not in ("Y", "X", "S")]
    yx = [labels.index("Y"), labels.index("X")]
    s = [i for i, a in enumerate(labels) if a == "S"]
    data = np.transpose(data, order + yx + s) if order + yx + s != list(range(data.ndim)) else data
    if s:
        data = _drop_extra_samples(data, p)
    if not order:
        data = data[np.newaxis]
    return data


def _drop_extra_samples(data: np.ndarray, p: Path) -> np.ndarray:
    """Keep RGB of RGBA and gray of gray+alpha; a length-1 sample axis is removed."""
    c = data.shape[-1]
    if c == 1:
        return data[..., 0]
    if c == 2:
        return data[..., 0]
    if c == 3:
        return data
    if c == 4:
        return data[..., :3]
    raise StackError(
        f"'{p}' has {c} samples per pixel; pick one with axis_pick={{'S': 0}} "
        "(CLI: --axis-pick S=0)."
    )


# =========================================================================================
# Folder of frames
# =========================================================================================
def _read_folder(
    d: Path, exclude: Sequence[str] = ()
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Read every frame file of a folder into one preallocated ``(N, H, W[, 3])`` array."""
    files = list_frame_files(d, exclude)
    first = _read_frame(files[0])
    if len(files) < 2:
        raise StackError(
            f"The folder '{d}' holds a single frame ({files[0].name}); depth from focus needs a "
            "stack of at least two frames taken at different focus positions. Add the other frames."
        )
    out = np.empty((len(files),) + first.shape, dtype=first.dtype)
    out[0] = first
    for k, f in enumerate(files[1:], start=1):
        fr = _read_frame(f)
        if fr.shape != first.shape or fr.dtype != first.dtype:
            raise StackError(
                f"In the folder '{d}', frame '{f.name}' is {fr.shape} {fr.dtype} but the first "
                f"frame '{files[0].name}' is {first.shape} {first.dtype}; all frames of a stack "
                "must have the same size and type. Remove or re-export the odd frame."
            )
        out[k] = fr
    meta = {
        "format": "folder",
        "axes": "ZYXS" if out.ndim == 4 else "ZYX",
        "files": [f.name for f in files],
    }
    return out, {}, meta


def _read_frame(f: Path) -> np.ndarray:
    """Read one frame file as ``(H, W)`` or ``(H, W, 3)`` (alpha dropped)."""
    if _suffix(f) in _TIFF_EXTENSIONS:
        with _open_tiff(f) as (tif, check):
            if len(tif.pages) > 1 and len(tif.series[0].pages) > 1:
                raise StackError(
                    f"The frame '{f}' holds {len(tif.series[0].pages)} images; a folder of frames "
                    "needs one image per file. Open the multi-page TIFF itself instead of the "
                    "folder."
                )
            arr = check(tif.series[0].asarray)
            if str(tif.series[0].axes).upper() == "SYX":  # planar RGB
                arr = np.moveaxis(arr, 0, -1)
    else:
        try:
            import imageio.v3 as iio
        except ImportError:  # pragma: no cover - imageio comes with scikit-image and napari
            raise StackError(
                f"Reading '{f.name}' needs the imageio package; install it (pip install imageio)."
            ) from None
        try:
            arr = np.asarray(iio.imread(f))
        except MemoryError:
            raise StackError(f"'{f}' is too large to load into memory.") from None
        except Exception as exc:
            first_line = (str(exc).splitlines() or [""])[0]
            raise StackError(
                f"Cannot read the frame '{f}' ({type(exc).__name__}: {first_line}); "
                "the file is damaged or not really a "
                f"{f.suffix.lstrip('.').upper()} image. Re-export it or remove it from the folder."
            ) from None
    if arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4):
        arr = _drop_extra_samples(arr, f)
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise StackError(
            f"The frame '{f}' has shape {arr.shape}; a frame must be one 2-D grayscale or RGB "
            "image."
        )
    return arr


def _folder_sidecar(d: Path) -> Path | None:
    for name in SIDECAR_NAMES:
        f = d / name
        if f.is_file():
            return f
    return None


# =========================================================================================
# NumPy files
# =========================================================================================
def _read_npy(p: Path, picks: dict[str, int]) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise _np_load_error(p, exc, "numpy.save") from None
    frames = _array_to_frames(arr, picks, p, "npy")
    return frames, {}, {"format": "npy", "axes": None, "shape_in_file": list(arr.shape)}


def _read_npz(p: Path, picks: dict[str, int]) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.files)
            candidates = [k for k in _NPZ_FRAME_KEYS if k in keys]
            rest = [k for k in keys if k not in _NPZ_META_KEYS]
            if candidates:
                key = candidates[0]
            elif len(rest) == 1:
                key = rest[0]
            else:
                raise StackError(
                    f"'{p}' holds the arrays {keys}; name the frames 'frames' or 'stack' "
                    "(numpy.savez(path, frames=..., focus_um=..., pixel_size_um=...))."
                )
            arr = z[key]
            file_meta: dict[str, Any] = {}
            if "focus_um" in keys:
                file_meta["focus_um"] = np.asarray(z["focus_um"], dtype=np.float64).ravel()
            if "pixel_size_um" in keys:
                v = np.asarray(z["pixel_size_um"], dtype=np.float64).ravel()
                if v.size != 1:
                    raise StackError(f"'pixel_size_um' in '{p}' must be a single number (µm).")
                file_meta["pixel_size_um"] = float(v[0])
    except StackError:
        raise
    except Exception as exc:
        raise _np_load_error(p, exc, "numpy.savez") from None
    frames = _array_to_frames(arr, picks, p, "npz")
    meta = {"format": "npz", "axes": None, "shape_in_file": list(arr.shape), "npz_key": key}
    return frames, file_meta, meta


def _np_load_error(p: Path, exc: BaseException, saver: str) -> StackError:
    """A person-readable error for a failed ``numpy.load``."""
    if isinstance(exc, MemoryError):
        return StackError(f"'{p}' is too large to load into memory; crop it or pick fewer axes.")
    text = str(exc)
    if "allow_pickle" in text or "object" in text.lower():
        return StackError(
            f"'{p}' holds Python objects, which are not loaded for safety; save plain numeric "
            f"arrays with {saver}."
        )
    return StackError(
        f"'{p}' is truncated or corrupt and cannot be read ({type(exc).__name__}: {text}). "
        f"Save it again with {saver}."
    )


def _array_to_frames(arr: np.ndarray, picks: dict[str, int], p: Path, kind: str) -> np.ndarray:
    """Interpret an unnamed array: trailing (H, W) or (H, W, 3|4), one leading focus axis."""
    if arr.dtype.kind not in "uifb":
        raise StackError(f"'{p}' holds {arr.dtype} data; save integer or float pixels.")
    for key in picks:
        if not key.isdigit():
            raise StackError(
                f"axis_pick {key}=… for '{p}': {kind} arrays have no axis names; pick by axis "
                "number, e.g. axis_pick={'0': 0} (CLI: --axis-pick 0=0)."
            )
    colour = arr.ndim >= 3 and arr.shape[-1] in (3, 4)
    if arr.ndim == 3 and colour and arr.shape[0] > 4 and arr.shape[1] > 4 and not picks:
        raise StackError(
            f"'{p}' has shape {arr.shape}, which looks like a single colour image; depth from "
            "focus needs a stack (N, H, W) or (N, H, W, 3)."
        )
    n_img = 3 if colour and arr.ndim >= 4 else 2
    if arr.ndim < 2:
        raise StackError(f"'{p}' has shape {arr.shape}; a stack is (N, H, W) or (N, H, W, 3).")
    sel: dict[int, int] = {}
    for key, idx in picks.items():
        pos = int(key)
        if pos >= arr.ndim - n_img:
            raise StackError(
                f"axis_pick {key}={idx} for '{p}': axis {key} is not an extra axis of shape "
                f"{arr.shape} (the last {n_img} axes are the image)."
            )
        if not 0 <= idx < arr.shape[pos]:
            raise StackError(
                f"axis_pick {key}={idx} is out of range for '{p}': axis {key} has "
                f"{arr.shape[pos]} entries."
            )
        sel[pos] = idx
    lead = [i for i in range(arr.ndim - n_img) if i not in sel]
    if len(lead) > 1:
        others = lead[:-1]
        sizes = ", ".join(f"axis {i}={arr.shape[i]}" for i in lead)
        py = ", ".join(f"'{i}': 0" for i in others)
        cli = " ".join(f"--axis-pick {i}=0" for i in others)
        raise StackError(
            f"'{p}' has shape {arr.shape}: {len(lead)} axes before the image ({sizes}) but a focus "
            f"stack has one focus axis. Pick an index along the others, e.g. axis_pick={{{py}}} "
            f"(CLI: {cli}), so that one focus axis is left."
        )
    if sel:
        arr = arr[tuple(sel.get(i, slice(None)) for i in range(arr.ndim))]
    if arr.ndim == 2 or (n_img == 3 and arr.ndim == 3):
        arr = arr[np.newaxis]
    if arr.ndim == 4 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    return arr


# =========================================================================================
# Small helpers
# =========================================================================================
def _suffix(p: Path) -> str:
    return p.suffix.lower()


def _is_ome_name(p: Path) -> bool:
    return p.name.lower().endswith((".ome.tif", ".ome.tiff"))


def _base_stem(p: Path) -> str:
    name = p.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif"):
        if low.endswith(ext):
            return name[: -len(ext)]
    return p.stem


def _frame_kind(f: Path) -> str:
    ext = _suffix(f)
    return {".tiff": ".tif", ".jpeg": ".jpg"}.get(ext, ext)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _unit_factor(unit: Any) -> float | None:
    if not isinstance(unit, str):
        return None
    return _TO_UM.get(unit.strip().lower())


def _length_um(value: Any, unit: Any) -> float | None:
    """Convert an OME/ImageJ length (text or number) to µm; ``None`` if unknown."""
    if value is None:
        return None
    factor = _unit_factor(unit if unit is not None else "µm")
    if factor is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v * factor if math.isfinite(v) else None


def _normalise_picks(axis_pick: AxisPick | None, p: Path) -> dict[str, int]:
    if not axis_pick:
        return {}
    out: dict[str, int] = {}
    for k, v in axis_pick.items():
        key = str(k).strip().upper()
        if (
            not (key.isdigit() or (len(key) == 1 and key.isalpha()))
            or not _is_number(v)
            or int(v) != v
        ):
            raise StackError(
                f"axis_pick {k!r}: {v!r} for '{p}' is not AXIS: INDEX; use e.g. {{'T': 0}} "
                "(CLI: --axis-pick T=0)."
            )
        out[key] = int(v)
    return out


def _check_pixel_size(px: Any, p: Path) -> float | None:
    if px is None:
        return None
    try:
        v = float(px)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        raise GplwsError(f"The pixel size for '{p}' must be a positive number of µm; got {px!r}.")
    return v


def _jsonable(obj: Any) -> Any:
    """Convert NumPy values, paths and tuples to plain JSON types (others to text)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _is_our_sidecar(p: Path) -> bool:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == _WRITTEN_BY


def _atomic_write(p: Path, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Call ``write(tmp)`` on a fresh file in ``p``'s folder, then move it onto ``p``.

    The temporary file is created with the usual permissions (umask applied) and removed if
    writing fails, so ``p`` is either the old file or the complete new one.
    """
    if p.exists() and not overwrite:
        raise GplwsError(f"'{p}' already exists; choose another name or allow overwriting.")
    if p.is_dir():
        raise GplwsError(f"'{p}' is a folder; give a file name.")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise GplwsError(f"Cannot write '{p}': the folder '{folder}' does not exist.")
    for _ in range(10):
        tmp = folder / f".{p.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise GplwsError(f"Cannot write in '{folder}': {exc}.") from None
        os.close(fd)
        break
    else:  # pragma: no cover
        raise GplwsError(f"Cannot create a temporary file in '{folder}'.")
    try:
        write(tmp)
        os.replace(tmp, p)
    except GplwsError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise GplwsError(
            f"Writing '{p}' failed ({type(exc).__name__}: {exc}); the old file, if any, is "
            "unchanged."
        ) from None
