"""TIFF, OME-TIFF and ImageJ TIFF reading with tifffile: headers, units and damage checks.

The reading of a whole focus stack from a TIFF (axes, selections of time/channel planes,
physical sizes from OME or ImageJ metadata) and the check that it fits in memory.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import FocusPositionError, StackError
from napari_gplws.io._paths import _TIFF_EXTENSIONS, _WRITTEN_BY, _suffix
from napari_gplws.io._units import (
    _is_number,
    _length_um,
    _resolve_focus,
    _unit_factor,
    read_sidecar,
    sidecar_path,
)

_AXIS_NOUN = {"T": "a time point", "C": "a channel", "S": "a sample (colour component)"}


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
        except Exception as exc:  # noqa: BLE001 - tifffile and codecs raise many types
            damage()
            raise fail(f"{type(exc).__name__}: {exc}") from None
        damage()
        return out

    try:
        try:
            tif = tifffile.TiffFile(p)
        except Exception as exc:  # noqa: BLE001 - any reader or writer failure becomes a message naming the file
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
        "napari_gplws.io.zarr.tiff_to_zarr, then napari_gplws.dff.outofcore.reconstruct_out_of_core); or crop it or pick "
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
    def key(i: int, a: str) -> str:
        return a if a.isalpha() and a not in "IQ" else str(i)

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
