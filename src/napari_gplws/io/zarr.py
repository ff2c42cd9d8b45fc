"""Zarr and OME-Zarr focus stacks: open lazily, convert a TIFF, describe for napari.

A stack stored as zarr (a plain ``(N, H, W[, 3])`` array, or OME-Zarr level 0) is opened
with dask without reading its pixels; :func:`tiff_to_zarr` converts a TIFF larger than
memory page by page. The reconstruction itself is in :mod:`napari_gplws.dff.outofcore`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import DaskTaskProgress, ProgressFn, report
from napari_gplws._shared.files import check_output_against_inputs, claim_output_dir, mark_output
from napari_gplws.errors import StackError
from napari_gplws.stack import validate_focus_positions


# =========================================================================================
# reading
# =========================================================================================
@dataclass
class ZarrStack:
    """A lazily read stack.

    Attributes
    ----------
    frames
        ``(N, H, W)`` or ``(N, H, W, 3)`` dask array.
    focus_um
        ``(N,)`` focus positions in µm, or ``None`` (then depth is in frame index).
    pixel_size_um
        Lateral pixel size in µm, or ``None``.
    source
        Path (and component) it was read from.
    """

    frames: Any
    focus_um: np.ndarray | None
    pixel_size_um: float | None
    source: str
    #: The store on disk (``None`` for an in-memory array), so writers can refuse to write
    #: their output over their own input.
    path: str | None = None

    @property
    def units(self) -> str:
        """``"µm"`` when the focus positions are known, else ``"frame"``."""
        return "frame" if self.focus_um is None else "µm"


def open_zarr_stack(
    path: str | os.PathLike[str],
    component: str | None = None,
    *,
    focus_um: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
) -> ZarrStack:
    """Open a zarr focus stack lazily (nothing is read but metadata).

    Parameters
    ----------
    path
        A zarr array ``(N, H, W[, 3])``, or a group: an OME-Zarr image (level 0 of
        ``multiscales`` is used, the axes must be ``z, y, x`` possibly after length-1
        ``t``/``c``) or a group with an array named ``frames``.
    component
        Array path inside the group (overrides the search above).
    focus_um, pixel_size_um
        Override the metadata. Otherwise read from the array's attributes ``focus_um``
        (list, µm) and ``pixel_size_um``, or from the OME-Zarr scale (µm axes only).
    focus_start_um, focus_step_um
        Evenly spaced positions instead of ``focus_um`` (start defaults to 0); a start
        alone shifts the stored positions to begin there (as :func:`napari_gplws.io.read_stack`).

    Returns
    -------
    ZarrStack

    Raises
    ------
    StackError
        Not a zarr store, no array found, or an array of the wrong shape.
    """
    import dask.array as da
    import zarr

    p = Path(os.fspath(path))
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - turned into a message
        raise StackError(f"'{p}' is not a readable zarr store ({type(exc).__name__}: {exc}).") from None
    attrs: dict[str, Any] = {}
    scale_px: float | None = None
    squeeze: tuple[int, ...] = ()
    if component is None and isinstance(node, zarr.Group):
        gattrs = dict(node.attrs)
        ms = gattrs.get("multiscales") or (gattrs.get("ome") or {}).get("multiscales")
        if ms:
            level = ms[0]["datasets"][0]
            component = level["path"]
            axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
            units = [a.get("unit") if isinstance(a, dict) else None for a in ms[0].get("axes", [])]
            arr0 = node[component]
            squeeze = tuple(i for i, a in enumerate(axes) if a in ("t", "c") and arr0.shape[i] == 1)
            kept = [i for i in range(len(axes)) if i not in squeeze]
            for t in level.get("coordinateTransformations", []):
                if t.get("type") == "scale" and len(axes) >= 2 and units[-1] in ("micrometer", "µm"):
                    scale_px = float(t["scale"][-1])
            if [axes[i] for i in kept][:3] != ["z", "y", "x"]:
                raise StackError(
                    f"The OME-Zarr image '{p}' has axes {axes}; a focus stack needs z, y, x "
                    "(length-1 t and c are dropped)."
                )
        elif "frames" in node:
            component = "frames"
        else:
            raise StackError(f"The zarr group '{p}' has no OME-Zarr multiscales and no 'frames' array.")
    arr = node[component] if component is not None else node
    attrs = dict(arr.attrs)
    frames = da.from_zarr(arr)
    if squeeze:
        frames = frames[tuple(0 if i in squeeze else slice(None) for i in range(frames.ndim))]
    if not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)) or frames.shape[0] < 2:
        raise StackError(f"The zarr array in '{p}' has shape {frames.shape}; a focus stack is (N, H, W[, 3]), N ≥ 2.")
    if frames.dtype.kind not in "uif":
        raise StackError(f"Unsupported pixel type {frames.dtype} in '{p}'; use integer or float data.")
    fu = _zarr_focus(p, attrs, int(frames.shape[0]), focus_um, focus_start_um, focus_step_um)
    px = pixel_size_um if pixel_size_um is not None else attrs.get("pixel_size_um", scale_px)
    src = str(p) if component is None else f"{p}/{component}"
    return ZarrStack(
        frames=frames, focus_um=fu, pixel_size_um=None if px is None else float(px), source=src,
        path=str(p),
    )


def _zarr_focus(
    p: Path,
    attrs: dict[str, Any],
    n: int,
    focus_um: Sequence[float] | np.ndarray | None,
    focus_start_um: float | None,
    focus_step_um: float | None,
) -> np.ndarray | None:
    """Focus positions: arguments first, then the array's attributes (as :func:`napari_gplws.io.read_stack`)."""
    from napari_gplws.io._units import _resolve_focus

    args = {
        k: v
        for k, v in (("focus_um", focus_um), ("focus_start_um", focus_start_um), ("focus_step_um", focus_step_um))
        if v is not None
    }
    if "focus_um" in args and "focus_step_um" in args:
        raise StackError(
            f"Give either focus positions or a focus step for '{p}', not both (--focus-positions or --focus-step)."
        )
    stored = {k: attrs.get(k) for k in ("focus_um", "focus_start_um", "focus_step_um") if attrs.get(k) is not None}
    levels = [("arguments", args), ("zarr attributes", stored)]
    fu, _from = _resolve_focus(levels, n, p)
    return None if fu is None else validate_focus_positions(np.asarray(fu, np.float64), n, str(p))


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a zarr store (a folder named ``*.zarr`` or holding zarr metadata)."""
    p = Path(os.fspath(path))
    if not p.is_dir():
        return False
    return p.suffix.lower() == ".zarr" or any(
        (p / m).is_file() for m in ("zarr.json", ".zarray", ".zgroup")
    )


def tiff_to_zarr(
    tiff: str | os.PathLike[str],
    out: str | os.PathLike[str],
    chunk: int = 1024,
    *,
    focus_um: Sequence[float] | None = None,
    pixel_size_um: float | None = None,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
    threads: int | None = None,
    progress: ProgressFn = None,
    overwrite: bool = False,
) -> Path:
    """Copy a (possibly larger than memory) TIFF stack into a zarr array, chunk by chunk.

    The pages are read lazily through tifffile's zarr interface, so memory stays at a few
    chunks. Units travel as the array's ``focus_um`` / ``pixel_size_um`` attributes, with
    :func:`napari_gplws.io.read_stack`'s precedence: the arguments when given, else the TIFF's JSON
    sidecar, else its OME/ImageJ/napari-gplws metadata (a z step starts at 0 µm), else none
    (frame-index units).

    Parameters
    ----------
    tiff
        A multi-page TIFF holding one series of shape ``(N, H, W)`` or ``(N, H, W, 3)``.
    out
        The zarr array to write. An earlier output of this package is replaced; anything
        else already there is refused, or with ``overwrite=True`` moved aside as a backup.
    chunk
        Chunk side over y/x; one frame per chunk along the focus axis.
    focus_um, pixel_size_um, focus_start_um, focus_step_um
        Override the file's units (as in :func:`napari_gplws.io.read_stack`).
    threads
        Dask threads (default: dask's).
    progress
        ``progress(done, total)`` with ``total = 100``.
    overwrite
        Move an existing ``out`` that napari-gplws did not write aside instead of refusing.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    StackError
        Not a TIFF, truncated or corrupt, or not a single ``(N, H, W[, 3])`` series (checked
        before anything is copied).
    """
    import dask
    import dask.array as da
    import tifffile
    import zarr

    from napari_gplws.io._tiff import read_tiff_header

    tiff_p = Path(os.fspath(tiff))
    hdr = read_tiff_header(
        tiff_p, focus_um=focus_um, focus_start_um=focus_start_um, focus_step_um=focus_step_um,
        pixel_size_um=pixel_size_um,
    )
    _check_tiff_layout(tiff_p, hdr)
    check_output_against_inputs(Path(os.fspath(out)), [tiff_p])
    claim_output_dir(Path(os.fspath(out)), overwrite=overwrite)
    store = tifffile.imread(os.fspath(tiff_p), aszarr=True)
    src = da.from_zarr(zarr.open(store, mode="r"))
    chunks = (1, chunk, chunk) + src.shape[3:]
    z = zarr.open_array(os.fspath(out), mode="w", shape=src.shape, chunks=chunks, dtype=src.dtype)
    mark_output(Path(os.fspath(out)))
    cb = DaskTaskProgress(progress, 0, 100)
    cfg = {"scheduler": "threads"} if threads is None else {"scheduler": "threads", "num_workers": max(1, int(threads))}
    with dask.config.set(**cfg), cb.cb:
        da.store(src.rechunk(chunks), z, lock=False)
    focus, px = hdr["focus_um"], hdr["pixel_size_um"]
    attrs = {}
    if focus is not None:
        attrs["focus_um"] = [float(v) for v in focus]
    if px is not None:
        attrs["pixel_size_um"] = float(px)
    if attrs:
        z.attrs.update(attrs)
    report(progress, 100, 100)
    return Path(out)


def _check_tiff_layout(p: Path, hdr: dict[str, Any]) -> None:
    """A TIFF that :func:`tiff_to_zarr` can copy as it is: one ``(N, H, W[, 3])`` series."""
    shape, axes = tuple(hdr["shape"]), str(hdr["axes"])
    if hdr["format"] == "tiff" and hdr["n_series"] > 1:
        raise StackError(
            f"'{p}' stores its {hdr['n_series']} frames as separate TIFF series; out-of-core "
            "reading needs them as one series. Re-save it as one multi-page stack (e.g. "
            "tifffile.imwrite(path, frames) or Fiji), or read it in memory without --out-of-core."
        )
    rgb = len(shape) == 4 and axes.endswith("S") and shape[-1] == 3
    gray = len(shape) == 3 and not axes.endswith("S")
    if not (rgb or gray):
        raise StackError(
            f"'{p}' has axes {axes} and shape {shape}; out-of-core reading needs a single focus "
            "stack (N, H, W) or (N, H, W, 3 colours). Extract one stack first (e.g. in Fiji), or "
            "read it in memory with --axis-pick T=0 (without --out-of-core)."
        )
    if shape[0] < 2:
        raise StackError(f"'{p}' holds a single frame; depth from focus needs at least two.")
    if hdr["dtype"].kind not in "uif":
        raise StackError(f"Unsupported pixel type {hdr['dtype']} in '{p}'; use integer or float data.")
