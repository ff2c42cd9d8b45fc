"""Reading focus stacks from disk and writing stacks, depth maps and images back.

What goes in
    * a multi-page TIFF, an OME-TIFF or an ImageJ hyperstack TIFF (read with tifffile);
    * a folder of frames (``.bmp``, ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg``), taken
      in *natural* order of their names (``1, 2, …, 10, …, 100``);
    * a ``.npy`` array or a ``.npz`` archive;
    * a glob path (``frames/im_*.bmp``) or a folder with a ``pattern``; a folder that also
      holds other images (a mask, a ground truth) gives the frames of its majority format
      and naming scheme and names the files it left out;
    * vendor files (Zeiss CZI, Nikon ND2, Leica LIF, …) through bioio (:mod:`.vendor`).

Physical units come from, in this order of precedence (the first that says something wins,
separately for the focus positions and for the pixel size):

1. explicit arguments of :func:`read_stack` (the CLI flags ``--focus-*``/``--pixel-size``);
2. a JSON *sidecar* (see :func:`read_sidecar` for the schema);
3. the file's own metadata (OME ``PhysicalSizeZ``/``PhysicalSizeX``/``Plane PositionZ``,
   ImageJ ``spacing``/``unit``/``XResolution``, arrays inside a ``.npz``).

What comes out is a :class:`~napari_gplws.stack.FocalStack` in the dtype of the file, with the frames'
axis first. Everything that cannot be used raises :class:`~napari_gplws.errors.StackError` with a
message naming the file and the fix.

Writers (:func:`write_depth_tiff`, :func:`write_image_tiff`, :func:`save_stack`) produce
ImageJ/Fiji-compatible TIFFs with their units, and replace files atomically (write to a
temporary file in the same folder, then :func:`os.replace`).

This module does no image processing and never imports napari or Qt.
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import FocusPositionError, StackError
from napari_gplws.io._paths import (
    _TIFF_EXTENSIONS,
    FRAME_EXTENSIONS,
    STACK_EXTENSIONS,
    AxisPick,
    _normalise_picks,
    _suffix,
    choose_frames,
    has_glob,
)
from napari_gplws.io._tiff import _drop_extra_samples, _open_tiff, _read_tiff_stack
from napari_gplws.io._units import (
    _SIDECAR_KEYS,
    _folder_sidecar,
    _resolve_focus,
    read_sidecar,
    sidecar_path,
)
from napari_gplws.io.vendor import VENDOR_FORMATS, read_vendor
from napari_gplws.io.zarr import is_zarr_path
from napari_gplws.stack import FocalStack

_NPZ_FRAME_KEYS = ("frames", "stack")
_NPZ_META_KEYS = ("focus_um", "pixel_size_um")


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
    pattern: str | None = None,
    reader: str = "auto",
) -> FocalStack:
    """Read a focus stack from a file or a folder of frames.

    Parameters
    ----------
    path
        A ``.tif``/``.tiff`` (multi-page, OME-TIFF or ImageJ hyperstack), ``.npy`` or
        ``.npz`` file, a folder of ``.bmp``/``.png``/``.tif``/``.jpg`` frames (one frame
        per file, natural name order; hidden files and ``.json`` files are ignored), a glob
        path whose last part is a file-name pattern (``"frames/im_*.bmp"``), or a vendor
        file (``.czi``, ``.nd2``, ``.lif``, … through bioio: ``pip install
        'napari-gplws[formats]'``). A folder that also holds other images takes the files
        of its clear majority format and naming scheme and names the others in
        ``metadata["left_out"]`` (with a warning).
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
        For vendor files: ``S`` (or ``P``) scene, ``C`` channel, ``T`` time point.
    exclude
        For a folder: names of files that are not frames (e.g. a ground-truth map).
    pattern
        For a folder: a file-name pattern (``"im_*.bmp"``, case-insensitive); exactly the
        matching image files are the frames.
    reader
        ``"auto"`` (by extension) or ``"bioio"``: read any file bioio can open (OME-TIFF,
        OME-Zarr, vendor formats) through bioio, units from its metadata.

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
    if reader not in ("auto", "bioio"):
        raise StackError(f"reader={reader!r} is not one of 'auto', 'bioio'.")
    if pattern is not None and not p.exists() and has_glob(p.name):
        raise StackError(
            f"Give the file-name pattern either in the path ('{p}') or as pattern="
            f"'{pattern}', not both."
        )
    if not p.exists() and has_glob(p.name) and not has_glob(str(p.parent)):
        p, pattern = p.parent, p.name  # a glob path: its folder, with a pattern
    _check_link_loop(p)
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            near = sorted(
                q.name for q in p.parent.iterdir() if q.name.lower().startswith(p.stem[:3].lower())
            )
            if near:
                hint = f" Files with a similar name there: {', '.join(near[:5])}."
        raise StackError(f"'{p}' does not exist; check the path (and its spelling).{hint}")
    if pattern is not None and not p.is_dir():
        raise StackError(
            f"A file-name pattern ('{pattern}') selects frames inside a folder, but '{p}' is a "
            "file; give the folder (or drop the pattern)."
        )
    if p.is_dir() and is_zarr_path(p) and reader != "bioio":
        raise StackError(
            f"'{p}' is a zarr store; it is reconstructed chunk by chunk, not read into memory: "
            f"run `gplws reconstruct '{p}' -o OUTDIR` (or `gplws batch`), or from Python "
            "napari_gplws.dff.outofcore.reconstruct_out_of_core."
        )
    vendor = reader == "bioio" or (p.is_file() and _suffix(p) in VENDOR_FORMATS)
    if p.is_file() and _suffix(p) not in STACK_EXTENSIONS and not vendor:
        if _suffix(p) in FRAME_EXTENSIONS:
            raise StackError(
                f"'{p}' is a single image; depth from focus needs a stack. Put all frames of "
                "the stack in one folder and open the folder (or save them as a multi-page TIFF)."
            )
        raise StackError(
            f"'{p}' has an unsupported file type '{p.suffix}'. Supported: multi-page TIFF, "
            "OME-TIFF, ImageJ TIFF, .npy, .npz, a folder of BMP/PNG/TIFF/JPEG frames, and "
            f"through bioio ({', '.join(sorted(VENDOR_FORMATS))}); convert other formats to "
            "TIFF (e.g. with Fiji/Bio-Formats)."
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
    if p.is_dir() and not vendor:
        sidecar = _folder_sidecar(p)
    else:
        sidecar = sidecar_path(p)
        sidecar = sidecar if sidecar.is_file() else None
    side = read_sidecar(sidecar) if sidecar is not None else {}

    if vendor:
        frames, file_meta, fmt_meta = read_vendor(p, picks)
    elif p.is_dir():
        if any(v != 0 for v in picks.values()):
            raise StackError(
                f"axis_pick {picks} for '{p}': a folder of frames has no extra axes to pick from."
            )
        frames, file_meta, fmt_meta = _read_folder(p, exclude, pattern)
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


def list_frame_files(
    folder: str | os.PathLike[str], exclude: Sequence[str] = (), pattern: str | None = None
) -> list[Path]:
    """List the frame files of a folder in natural order of their names.

    Files named in ``exclude`` (e.g. a ground-truth depth map kept beside the frames) are
    skipped; with ``pattern`` (``"im_*.bmp"``) only matching files count. Without one, a
    folder that also holds other images takes its clear majority format and naming scheme
    (see :func:`frame_selection`, which also says what was left out).

    Only files with an extension in :data:`FRAME_EXTENSIONS` count (case-insensitive);
    hidden files (starting with ``.``), sidecars and sub-folders are ignored. Natural order
    means ``2.png`` comes before ``10.png``.

    Raises
    ------
    StackError
        The folder cannot be listed, holds no frame files, or mixes image formats with no
        clear majority.
    """
    return frame_selection(folder, exclude, pattern)[0]


def frame_selection(
    folder: str | os.PathLike[str], exclude: Sequence[str] = (), pattern: str | None = None
) -> tuple[list[Path], list[str], str]:
    """The frame files of a folder, the visible files left out, and how they were chosen.

    Returns
    -------
    (frames, left_out, why)
        Frame paths in natural order; the names of the folder's other files (images and
        anything else, sidecar and ``exclude`` names aside); ``"all"``, ``"pattern"``,
        ``"majority format"`` or ``"naming scheme"``.
    """
    from natsort import natsorted, ns

    from napari_gplws.io._units import SIDECAR_NAMES

    d = Path(os.fspath(folder))
    try:
        entries = [e for e in os.scandir(d) if not e.name.startswith(".")]
    except OSError as exc:
        raise StackError(f"Cannot list the folder '{d}': {exc}.") from None
    regular = [e.name for e in entries if _is_file(e)]
    images = [
        n for n in regular if _suffix(Path(n)) in FRAME_EXTENSIONS and n not in exclude
    ]
    if not images:
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
    chosen, _, why = choose_frames(images, d, pattern)
    keep = set(chosen)
    left = [
        n for n in regular if n not in keep and n not in exclude and n not in SIDECAR_NAMES
    ]
    files = natsorted((d / n for n in chosen), key=lambda f: f.name, alg=ns.IGNORECASE)
    return files, natsorted(left, alg=ns.IGNORECASE), why


def _is_file(e: os.DirEntry) -> bool:
    """``DirEntry.is_file()``, False for a broken link or a loop of links."""
    try:
        return e.is_file()
    except OSError:
        return False


def _check_link_loop(p: Path) -> None:
    """Refuse a path that is (or passes through) a loop of symbolic links."""
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StackError(
                f"'{p}' is a symbolic link that leads back to itself (a loop of links); "
                "point to the real file or folder, or fix the link."
            ) from None


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
                and _is_file(e)
                and _suffix(Path(e.name)) in FRAME_EXTENSIONS
                for e in os.scandir(p)
            )
        except OSError:
            return False
    return _suffix(p) in STACK_EXTENSIONS or _suffix(p) in VENDOR_FORMATS


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
# Folder of frames
# =========================================================================================
def _read_folder(
    d: Path, exclude: Sequence[str] = (), pattern: str | None = None
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Read every frame file of a folder into one preallocated ``(N, H, W[, 3])`` array."""
    files, left_out, why = frame_selection(d, exclude, pattern)
    images_left = [n for n in left_out if _suffix(Path(n)) in FRAME_EXTENSIONS]
    if images_left and pattern is None:
        shown = ", ".join(images_left[:5]) + (" …" if len(images_left) > 5 else "")
        warnings.warn(
            f"Read {len(files)} frames of '{d}' ({why}); left out {len(images_left)} other "
            f"image file(s): {shown}. Give a pattern (--pattern) to choose otherwise.",
            UserWarning, stacklevel=3,
        )
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
        "left_out": left_out,
        "frames_chosen_by": why,
    }
    if pattern is not None:
        meta["pattern"] = pattern
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
        except Exception as exc:  # noqa: BLE001 - any reader or writer failure becomes a message naming the file
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


# =========================================================================================
# NumPy files
# =========================================================================================
def _read_npy(p: Path, picks: dict[str, int]) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reader or writer failure becomes a message naming the file
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
    except Exception as exc:  # noqa: BLE001 - any reader or writer failure becomes a message naming the file
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
