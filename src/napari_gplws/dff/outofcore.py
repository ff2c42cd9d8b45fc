"""Out-of-core depth from focus: stacks larger than memory, chunk by chunk with dask.

A stack stored as zarr (a plain ``(N, H, W[, 3])`` array, or OME-Zarr level 0) is read
lazily with :func:`dask.array.from_zarr` and reconstructed with the classical engine of
:mod:`.focus` in chunks over y/x (the focus axis is always whole), writing ``depth``,
``aif`` and ``confidence`` to a zarr group. Peak memory is set by the chunk size, not by
the image size.

The result equals :func:`.focus.depth_from_focus` on the whole stack in memory, to float
tolerance (the box filters' running sums start at a different pixel), because

* every chunk is read with an overlap (:func:`dask.array.map_overlap`, ``boundary="none"``
  so the image border is treated exactly as in memory) at least the receptive field of
  the step: the focus measure's halo (:func:`.focus_measures.measure_halo`) for the focus
  pass, the refinement's ``radius·3 + 1`` for the refinement pass;
* the few quantities that the in-memory engine takes over the whole image — the
  confidence's ``eps`` (from the largest focus value), the guide's 1st/99th percentile
  (from the same sub-sampled grid) and the clipping range of the refined index — are
  computed globally between the two passes from an intermediate zarr array.

Three passes over the data::

    A  frames --map_overlap(halo)--> index, guide, peak, mean   (stored: _work, 16 B/pixel)
    B  global eps, percentiles, index range                     (reads _work)
    C  _work --map_overlap(refine halo)--> refined index; depth, confidence, aif (frames again)

GPLWS-Net (:func:`predict_zarr`) follows :func:`.inference.predict_depth` the same way:
the input range (percentiles of the same sub-sample of the stack) is computed first; the
network's tiles are laid out on the *whole* image exactly as in memory, and each output
chunk evaluates the tiles that touch it and keeps its own part of their blend (a tile
across a chunk seam is evaluated once per chunk it touches); the division by the blend
weights, the light Gaussian smoothing (overlap ``4·σ + 1``) and the AiF follow.

:func:`reconstruct_out_of_core` routes a method name to one of the two (what
``gplws reconstruct INPUT.zarr`` and ``gplws batch`` call), and
:meth:`OutOfCoreResult.report` gives the ``report.json`` summary.

What this module does not do: files other than zarr (a TIFF larger than memory is
converted with :func:`tiff_to_zarr` first; ``gplws reconstruct --out-of-core`` does that).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import ProgressFn, report
from napari_gplws.dff.classical import (
    DEFAULT_REFINE_EPS,
    DEFAULT_REFINE_FLOOR,
    DEFAULT_REFINE_RADIUS,
    DEFAULT_REFINE_TAU,
    _Engine,
    _refine_band,
    _refine_bands,
    _Runner,
    focus_confidence,
)
from napari_gplws.dff.measures import (
    DEFAULT_MEASURE,
    DEFAULT_WINDOW,
    measure_halo,
    validate_measure,
    validate_window,
)
from napari_gplws.errors import StackError
from napari_gplws.stack import FocalStack, index_to_position, validate_focus_positions

__all__ = [
    "OutOfCoreResult",
    "ZarrStack",
    "is_zarr_path",
    "open_zarr_stack",
    "predict_zarr",
    "reconstruct_out_of_core",
    "reconstruct_zarr",
    "tiff_to_zarr",
]

_WORK = "_work"
_N_WORK = 4  # index, guide, peak, mean


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
        alone shifts the stored positions to begin there (as :func:`.io.read_stack`).

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
    return ZarrStack(frames=frames, focus_um=fu, pixel_size_um=None if px is None else float(px), source=src)


def _zarr_focus(
    p: Path,
    attrs: dict[str, Any],
    n: int,
    focus_um: Sequence[float] | np.ndarray | None,
    focus_start_um: float | None,
    focus_step_um: float | None,
) -> np.ndarray | None:
    """Focus positions: arguments first, then the array's attributes (as :func:`.io.read_stack`)."""
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


def zarr_layer_data(path: str | os.PathLike[str]) -> list[tuple[Any, dict, str]]:
    """A napari layer-data tuple for a zarr stack, read lazily (a dask array).

    Same ``add_kwargs`` as the TIFF reader: ``name``, ``rgb``, ``scale`` = (focus step µm or
    1, pixel size µm or 1, pixel size µm or 1) and ``metadata`` with ``focus_um``,
    ``pixel_size_um``, ``units`` and ``source``. Imports nothing from napari.
    """
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
) -> Path:
    """Copy a (possibly larger than memory) TIFF stack into a zarr array, chunk by chunk.

    The pages are read lazily through tifffile's zarr interface, so memory stays at a few
    chunks. Units travel as the array's ``focus_um`` / ``pixel_size_um`` attributes, with
    :func:`.io.read_stack`'s precedence: the arguments when given, else the TIFF's JSON
    sidecar, else its OME/ImageJ/napari-gplws metadata (a z step starts at 0 µm), else none
    (frame-index units).

    Parameters
    ----------
    tiff
        A multi-page TIFF holding one series of shape ``(N, H, W)`` or ``(N, H, W, 3)``.
    out
        The zarr array to write (replaced).
    chunk
        Chunk side over y/x; one frame per chunk along the focus axis.
    focus_um, pixel_size_um, focus_start_um, focus_step_um
        Override the file's units (as in :func:`.io.read_stack`).
    threads
        Dask threads (default: dask's).
    progress
        ``progress(done, total)`` with ``total = 100``.

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
    store = tifffile.imread(os.fspath(tiff_p), aszarr=True)
    src = da.from_zarr(zarr.open(store, mode="r"))
    chunks = (1, chunk, chunk) + src.shape[3:]
    z = zarr.open_array(os.fspath(out), mode="w", shape=src.shape, chunks=chunks, dtype=src.dtype)
    cb = _TaskProgress(progress, 0, 100)
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


# =========================================================================================
# per-chunk work
# =========================================================================================
def _trim(block: np.ndarray, halo: int, loc: tuple[int, ...], nchunks: tuple[int, ...], axes: Sequence[int]) -> np.ndarray:
    """Remove the overlap that boundary='none' added on interior sides only."""
    sl = [slice(None)] * block.ndim
    for ax in axes:
        lo = halo if loc[ax] > 0 else 0
        hi = block.shape[ax] - (halo if loc[ax] < nchunks[ax] - 1 else 0)
        sl[ax] = slice(lo, hi)
    return block[tuple(sl)]


def _focus_pass(block: np.ndarray, measure: str, window: int, halo: int, block_info: Any = None) -> np.ndarray:
    """Pass A on one overlapped chunk: ``(4, h, w)`` = index, guide, peak, mean (float32)."""
    info = block_info[0]
    stack = FocalStack(np.asarray(block))
    eng = _Engine(stack, measure, window, keep_guide=True)
    n = eng.n
    index = np.empty((eng.h, eng.w), np.float32)
    conf = np.empty((eng.h, eng.w), np.float32)
    with _Runner(1, len(eng.bands)) as run:
        for k in range(n):
            run(partial(eng.update, k), eng.bands)
        run(partial(eng.finish, "gaussian", 1.0, index, conf), eng.bands)
    mean = eng.total * np.float32(1.0 / n)  # as in _Engine.finish
    out = np.stack([index, eng.guide, eng.best, mean])
    loc, nch = info["chunk-location"], info["num-chunks"]
    return _trim(out, halo, (0,) + tuple(loc[1:3]), (1,) + tuple(nch[1:3]), (1, 2))


def _refine_pass(
    index: np.ndarray,
    conf: np.ndarray,
    guide: np.ndarray,
    g_lo: float,
    g_scale: float,
    radius: int,
    eps: float,
    lo: float,
    hi: float,
    halo: int,
    block_info: Any = None,
) -> np.ndarray:
    """Pass C refinement of one overlapped chunk (same bands maths as :func:`.focus.refine_index`)."""
    out = np.empty_like(index)
    task = partial(
        _refine_band, index, conf, guide, g_lo, g_scale, radius, eps, DEFAULT_REFINE_TAU, 1,
        DEFAULT_REFINE_FLOOR, out,
    )
    bands = _refine_bands(index.shape, radius, 1)
    with _Runner(1, len(bands)) as run:
        run(task, bands)
    np.clip(out, lo, hi, out=out)
    info = block_info[0]
    return _trim(out, halo, info["chunk-location"], info["num-chunks"], (0, 1))


def _select(frames: np.ndarray, index: np.ndarray) -> np.ndarray:
    """All-in-focus pixels: frame at the rounded index (as :func:`.focus.depth_from_focus`)."""
    n = frames.shape[0]
    idx_dtype = np.int16 if n < np.iinfo(np.int16).max else np.int32
    sel = np.empty(index.shape, idx_dtype)
    np.copyto(sel, np.rint(index), casting="unsafe")
    np.clip(sel, 0, n - 1, out=sel)
    key = sel[None, :, :, None] if frames.ndim == 4 else sel[None]
    return np.take_along_axis(frames, key.astype(np.intp), axis=0)[0]


def _to_depth(index: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    if positions is None:
        return index.copy()
    return index_to_position(index, positions).astype(np.float32)


def _chunk_sizes(length: int, chunk: int, min_size: int) -> tuple[int, ...]:
    """Chunks of ``chunk`` with a last one merged into its neighbour when below ``min_size``."""
    sizes = [chunk] * (length // chunk)
    rest = length - chunk * len(sizes)
    if rest:
        if sizes and rest < min_size:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes)


# =========================================================================================
# public entry point
# =========================================================================================
@dataclass
class OutOfCoreResult:
    """Where :func:`reconstruct_zarr` wrote its outputs.

    Attributes
    ----------
    path
        The output zarr group; arrays ``depth`` (float32, :attr:`units`), ``confidence``
        (float32, 0..1) and ``aif`` (input dtype).
    units
        ``"µm"`` or ``"frame"``.
    shape
        ``(H, W)``.
    timings
        Seconds per pass (``focus``, ``stats``, ``write``, ``total``).
    params
        The parameters used.
    stack
        The input it was computed from (lazy; for provenance).
    """

    path: Path
    units: str
    shape: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    stack: ZarrStack | None = None

    @property
    def method(self) -> str:
        """``"gplws"`` or the classical focus measure."""
        return str(self.params.get("method") or self.params.get("measure") or "")

    @property
    def device(self) -> str:
        """Where it ran (``"cpu"`` for the classical engine)."""
        return str(self.params.get("device", "cpu"))

    def open(self) -> dict[str, Any]:
        """The three outputs as lazily read dask arrays."""
        import dask.array as da

        return {k: da.from_zarr(str(self.path), component=k) for k in ("depth", "confidence", "aif")}

    def report(self, threads: int | None = None, name: str | None = None) -> dict[str, Any]:
        """A JSON-able summary, the keys of :meth:`napari_gplws.api.Reconstruction.report`
        plus ``output_format`` and ``note``.

        Reads the ``depth`` and ``confidence`` arrays once, chunk by chunk, for the depth
        range and mean confidence. ``name``: how the note calls the output group (default:
        its folder name).
        """
        import dask

        o = self.open()
        cfg: dict[str, Any] = {"scheduler": "threads"}
        if threads is not None:
            cfg["num_workers"] = max(1, int(threads))
        with dask.config.set(**cfg):
            lo, hi, mc = dask.compute(o["depth"].min(), o["depth"].max(), o["confidence"].mean())
        zs = self.stack
        inp = None
        if zs is not None:
            inp = {
                "source": zs.source,
                "format": "zarr",
                "shape": [int(v) for v in zs.frames.shape],
                "dtype": str(zs.frames.dtype),
                "focus_um": None if zs.focus_um is None else [float(v) for v in zs.focus_um],
                "pixel_size_um": zs.pixel_size_um,
            }
        return {
            "method": self.method,
            "device": self.device,
            "parameters": dict(self.params),
            "input": inp,
            "units": {"depth": self.units, "pixel_size": "µm" if zs is not None and zs.pixel_size_um else None},
            "output_shape": [int(v) for v in self.shape],
            "depth_range": [float(lo), float(hi)],
            "mean_confidence": float(mc),
            "seconds": {k: round(float(v), 4) for k, v in self.timings.items()},
            "output_format": "zarr",
            "arrays": ["depth", "confidence", "aif"],
            "note": (
                f"Computed out of core (chunk {self.params.get('chunk')} px). The outputs are the zarr "
                f"arrays depth (float32, {self.units}), confidence (float32, 0..1) and aif (input dtype) "
                f"in {name or self.path.name}, not TIFF files; open them with zarr.open or dask.array.from_zarr "
                "(or in napari)."
            ),
        }


class _TaskProgress:
    """A dask local-scheduler callback turning finished tasks into ``progress(done, total)``."""

    def __init__(self, progress: ProgressFn, offset: int, total: int) -> None:
        from dask.callbacks import Callback

        outer = self

        class _CB(Callback):
            def _start_state(self, dsk: Any, state: Any) -> None:
                outer.n = sum(len(state[k]) for k in ("ready", "waiting", "running"))
                outer.done = 0

            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                outer.done += 1
                frac = outer.done / max(1, outer.n)
                report(progress, offset + int(frac * 100), total)

        self.cb = _CB()
        self.n, self.done = 1, 0


def _new_output_group(out: str | os.PathLike[str], n_work: int, h: int, w: int, chunk: int) -> tuple[Path, Any, Any]:
    """A fresh output zarr group at ``out`` (an old one is replaced) with its ``(n_work, H, W)``
    float32 work array, chunked one plane by ``chunk × chunk``."""
    import zarr

    outp = Path(os.fspath(out))
    if outp.exists():
        shutil.rmtree(outp)
    group = zarr.open_group(str(outp), mode="w")
    work = group.create_array(_WORK, shape=(n_work, h, w), chunks=(1, chunk, chunk), dtype="float32")
    return outp, group, work


def reconstruct_zarr(
    source: str | os.PathLike[str] | ZarrStack,
    out: str | os.PathLike[str],
    *,
    measure: str = DEFAULT_MEASURE,
    window: int = DEFAULT_WINDOW,
    refine: bool = True,
    refine_radius: int = DEFAULT_REFINE_RADIUS,
    refine_eps: float = DEFAULT_REFINE_EPS,
    chunk: int = 1024,
    threads: int | None = None,
    focus_um: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
    keep_work: bool = False,
    progress: ProgressFn = None,
) -> OutOfCoreResult:
    """Depth, confidence and all-in-focus image of a zarr stack, chunk by chunk.

    Parameters
    ----------
    source
        Path of a zarr stack (see :func:`open_zarr_stack`) or an opened :class:`ZarrStack`.
    out
        Output zarr group (replaced): arrays ``depth``, ``confidence``, ``aif``, with
        attributes ``units`` (``"µm"``/``"frame"``), ``pixel_size_um``, ``method`` …
    measure, window, refine, refine_radius, refine_eps
        As in :func:`.focus.depth_from_focus` (Gaussian sub-frame fit, nearest-frame AiF).
    chunk
        Chunk side in pixels over y and x (memory per task grows with ``N·chunk²``).
    threads
        Dask threads (default: usable cores, at most 8).
    focus_um, pixel_size_um
        Override the stack's metadata.
    keep_work
        Keep the intermediate ``_work`` array (``(4, H, W)`` float32) in the output group.
    progress
        ``progress(done, total)`` with ``total = 200`` (two passes of 100 steps).

    Returns
    -------
    OutOfCoreResult

    Raises
    ------
    StackError
        Bad stack, measure, window or chunk size.

    Examples
    --------
    >>> r = reconstruct_zarr("scan.zarr", "scan-out.zarr", chunk=1024)  # doctest: +SKIP
    >>> r.open()["depth"]  # doctest: +SKIP
    """
    import dask
    import dask.array as da

    from napari_gplws.dff.classical import default_threads

    t_start = time.perf_counter()
    zs = source if isinstance(source, ZarrStack) else open_zarr_stack(source, focus_um=focus_um, pixel_size_um=pixel_size_um)
    name, win = validate_measure(measure), validate_window(window)
    radius = int(refine_radius)
    if refine and radius < 1:
        raise StackError(f"The refinement radius must be ≥ 1 pixel; got {refine_radius!r}.")
    halo_a = measure_halo(name, win)
    halo_c = radius * 3 + 1 if refine else 0
    halo = max(halo_a, halo_c)
    if int(chunk) < 2 * halo:
        raise StackError(f"chunk={chunk} is too small for an overlap of {halo} px; use at least {2 * halo}.")
    frames = zs.frames
    n, h, w = (int(v) for v in frames.shape[:3])
    cy, cx = _chunk_sizes(h, int(chunk), halo), _chunk_sizes(w, int(chunk), halo)
    frames = frames.rechunk((n, cy, cx) + frames.shape[3:])
    nthreads = default_threads() if threads is None else max(1, int(threads))
    timings: dict[str, float] = {}

    outp, group, work = _new_output_group(out, _N_WORK, h, w, int(chunk))
    zchunks = (int(chunk), int(chunk))

    # pass A: focus curve maxima, chunk by chunk with the focus measure's halo
    t0 = time.perf_counter()
    depth_a = {0: 0, 1: halo_a, 2: halo_a}
    if frames.ndim == 4:
        depth_a[3] = 0
    a = da.map_overlap(
        partial(_focus_pass, measure=name, window=win, halo=halo_a),
        frames,
        depth=depth_a,
        boundary="none",
        trim=False,
        chunks=((_N_WORK,), cy, cx),
        drop_axis=[3] if frames.ndim == 4 else [],
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    cb = _TaskProgress(progress, 0, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store(a, work, lock=False)
    timings["focus"] = time.perf_counter() - t0

    # pass B: the global quantities the in-memory engine takes over the whole image
    t0 = time.perf_counter()
    wk = da.from_zarr(work).rechunk((1, cy, cx))
    index, guide, peak, mean = wk[0], wk[1], wk[2], wk[3]
    sub = guide[:: max(1, h // 256), :: max(1, w // 256)]
    with dask.config.set(scheduler="threads", num_workers=nthreads):
        pmax, dmin, dmax, sub_np = dask.compute(peak.max(), index.min(), index.max(), sub)
    eps = max(float(pmax) * 1e-6, float(np.finfo(np.float32).tiny))
    g_lo, g_hi = (float(v) for v in np.percentile(sub_np, (1, 99)))
    g_scale = 1.0 / (g_hi - g_lo) if g_hi > g_lo else 1.0
    timings["stats"] = time.perf_counter() - t0

    # pass C: confidence, refinement with its halo, depth and all-in-focus image
    t0 = time.perf_counter()
    conf = da.map_blocks(focus_confidence, peak, mean, eps, dtype=np.float32)
    if refine:
        final = da.map_overlap(
            partial(
                _refine_pass, g_lo=g_lo, g_scale=g_scale, radius=radius, eps=float(refine_eps),
                lo=float(dmin), hi=float(dmax), halo=halo_c,
            ),
            index, conf, guide,
            depth={0: halo_c, 1: halo_c},
            boundary="none",
            trim=False,
            chunks=(cy, cx),
            dtype=np.float32,
            meta=np.empty((0, 0), np.float32),
        )
    else:
        final = index
    positions = None if zs.focus_um is None else np.asarray(zs.focus_um, np.float64)
    depth = final.map_blocks(_to_depth, positions, dtype=np.float32)
    ax = "yxc" if frames.ndim == 4 else "yx"
    aif = da.blockwise(_select, ax, frames, "z" + ax, final, "yx", dtype=frames.dtype, concatenate=True)
    zd = group.create_array("depth", shape=(h, w), chunks=zchunks, dtype="float32")
    zc = group.create_array("confidence", shape=(h, w), chunks=zchunks, dtype="float32")
    za = group.create_array("aif", shape=(h, w) + frames.shape[3:], chunks=zchunks + frames.shape[3:], dtype=frames.dtype)
    cb = _TaskProgress(progress, 100, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store([depth, conf, aif], [zd, zc, za], lock=False)
    timings["write"] = time.perf_counter() - t0
    if not keep_work:
        del group[_WORK]
    timings["total"] = time.perf_counter() - t_start
    params = {
        "measure": name, "window": win, "interpolation": "gaussian", "refine": bool(refine),
        "refine_radius": radius, "refine_eps": float(refine_eps), "aif_blend": False,
        "chunk": int(chunk), "overlap_px": halo, "threads": nthreads,
    }
    units = zs.units
    for arr, kind in ((zd, "depth"), (zc, "confidence"), (za, "aif")):
        arr.attrs.update(
            kind=kind, units=units if kind == "depth" else None, pixel_size_um=zs.pixel_size_um,
            method=name, source=zs.source, written_by="napari-gplws",
        )
    group.attrs.update(units={"depth": units, "pixel_size": "µm" if zs.pixel_size_um else None},
                       params=params, focus_um=None if positions is None else positions.tolist())
    report(progress, 200, 200)
    return OutOfCoreResult(path=outp, units=units, shape=(h, w), timings=timings, params=params, stack=zs)


# =========================================================================================
# GPLWS-Net out of core
# =========================================================================================
def _read_region(frames: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Read ``frames[:, y0:y1, x0:x1]`` of a dask array inside a task (no nested threads)."""
    return np.asarray(frames[:, y0:y1, x0:x1].compute(scheduler="synchronous"))


def _net_pass(
    dummy: np.ndarray,
    frames: Any,
    ys: list[tuple[int, int]],
    xs: list[tuple[int, int]],
    lo: float,
    scale: float,
    overlap: int,
    positions: np.ndarray,
    weights: Any,
    device: str,
    attention: bool,
    n_out: int,
    block_info: Any = None,
) -> np.ndarray:
    """Blend of all whole-image tiles that touch this chunk: (n_out, h, w) float32 sums."""
    import torch

    from napari_gplws.dff.network import _ramp, _to_luma
    from napari_gplws.models.gplws import depth_from_logits
    from napari_gplws.models.registry import load_gplws

    (cy0, cy1), (cx0, cx1) = block_info[0]["array-location"]
    h_img, w_img = (int(v) for v in frames.shape[1:3])
    n = int(frames.shape[0])
    model = load_gplws(weights, device)  # cached once per process
    acc = np.zeros((n_out, cy1 - cy0, cx1 - cx0), np.float32)
    rel_t = torch.as_tensor(positions - positions[0], dtype=torch.float32, device=device).reshape(1, n, 1, 1)
    with torch.inference_mode():
        for y0, y1 in ys:
            if y1 <= cy0 or y0 >= cy1:
                continue
            for x0, x1 in xs:
                if x1 <= cx0 or x0 >= cx1:
                    continue
                raw = _read_region(frames, y0, y1, x0, x1)
                x = (_to_luma(raw) - lo) / scale
                xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)[None, None]
                with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                    logits = model(xt)
                index_t, conf_t, prob = depth_from_logits(logits.float())
                index = index_t[0].cpu().numpy()
                dep = (prob * rel_t).sum(dim=1)[0].cpu().numpy()
                conf = conf_t[0].cpu().numpy()
                wt = np.outer(_ramp(y1 - y0, y0, h_img, overlap), _ramp(x1 - x0, x0, w_img, overlap))
                parts = [wt * index, wt * dep, wt * conf, wt]
                if attention:
                    p = prob[0].cpu().numpy()
                    rawf = np.asarray(raw, np.float32)
                    if rawf.ndim == 4:
                        a = np.einsum("nyx,nyxc->yxc", p, rawf)
                        parts += [wt * a[..., c] for c in range(3)]
                    else:
                        parts.append(wt * np.einsum("nyx,nyx->yx", p, rawf))
                # intersection of tile and chunk
                iy0, iy1 = max(y0, cy0), min(y1, cy1)
                ix0, ix1 = max(x0, cx0), min(x1, cx1)
                for k, part in enumerate(parts):
                    acc[k, iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0] += part[
                        iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0
                    ]
    return acc


def _net_finish(
    work: np.ndarray, n: int, smooth_px: float, halo: int, block_info: Any = None
) -> np.ndarray:
    """(3, h, w): index, depth relative to the first position, confidence (trimmed)."""
    from scipy import ndimage as ndi

    wsum = work[3]
    idx = work[0] / wsum
    dep = work[1] / wsum
    conf = work[2] / wsum
    if smooth_px and smooth_px > 0:
        idx = ndi.gaussian_filter(np.asarray(idx, np.float32), smooth_px, mode="nearest")
        dep = ndi.gaussian_filter(np.asarray(dep, np.float32), smooth_px, mode="nearest")
    out = np.stack([np.clip(idx, 0, n - 1), dep, np.clip(conf, 0, 1)]).astype(np.float32)
    info = block_info[0]
    loc, nch = info["chunk-location"], info["num-chunks"]
    return _trim(out, halo, (0,) + tuple(loc[1:3]), (1,) + tuple(nch[1:3]), (1, 2))


def _net_aif(work: np.ndarray, dtype: np.dtype) -> np.ndarray:
    from napari_gplws.dff.network import _cast_like

    wsum = work[3]
    a = work[4:] / wsum
    a = np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a[0]
    return _cast_like(a, np.dtype(dtype))


def predict_zarr(
    source: str | os.PathLike[str] | ZarrStack,
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    tile_size: int = 256,
    overlap: int | None = None,
    aif_mode: str = "attention",
    smooth_px: float | None = None,
    weights: str | os.PathLike[str] = "gplws_default",
    chunk: int = 1024,
    threads: int | None = None,
    focus_um: Sequence[float] | np.ndarray | None = None,
    pixel_size_um: float | None = None,
    progress: ProgressFn = None,
) -> OutOfCoreResult:
    """GPLWS-Net depth, confidence and all-in-focus image of a zarr stack, chunk by chunk.

    Equal (to float tolerance) to :func:`.inference.predict_depth` with the same
    ``tile_size``, ``overlap``, ``aif_mode`` and ``smooth_px`` and ``tta=1`` on the whole stack
    in memory (out of core the network runs one view: no test-time augmentation).

    Parameters
    ----------
    source, out, chunk, threads, focus_um, pixel_size_um, progress
        As in :func:`reconstruct_zarr`.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
    tile_size, overlap, aif_mode, smooth_px, weights
        As in :func:`.inference.predict_depth` (``None``: its defaults). Memory per task
        grows with ``N·tile_size²`` (network) and ``chunk²`` (accumulators).

    Returns
    -------
    OutOfCoreResult

    Raises
    ------
    ModelError
        Missing weights or unavailable device.
    StackError
        Bad stack or options.
    """
    import dask
    import dask.array as da

    from napari_gplws._shared.device import resolve_device
    from napari_gplws.dff.classical import default_threads
    from napari_gplws.dff.network import DEFAULT_OVERLAP, DEFAULT_SMOOTH_PX, tile_grid
    from napari_gplws.models.registry import load_gplws

    t_start = time.perf_counter()
    if aif_mode not in ("attention", "select"):
        raise StackError(f"aif_mode must be 'attention' or 'select'; got {aif_mode!r}.")
    zs = source if isinstance(source, ZarrStack) else open_zarr_stack(source, focus_um=focus_um, pixel_size_um=pixel_size_um)
    dev = resolve_device(device)
    model = load_gplws(weights, dev)
    ov_req = DEFAULT_OVERLAP if overlap is None else int(overlap)
    sigma = DEFAULT_SMOOTH_PX if smooth_px is None else float(smooth_px)
    frames = zs.frames
    n, h, w = (int(v) for v in frames.shape[:3])
    positions = np.asarray(
        zs.focus_um if zs.focus_um is not None else np.arange(n, dtype=np.float64), np.float64
    )
    nthreads = default_threads() if threads is None else max(1, int(threads))
    timings: dict[str, float] = {}

    # input range: the same sub-sample as inference._robust_range
    t0 = time.perf_counter()
    s = max(1, int(np.sqrt(n * h * w / 262_144)))
    with dask.config.set(scheduler="threads", num_workers=nthreads):
        sample = np.asarray(frames[:, ::s, ::s].compute(), np.float32)
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    del sample
    scale = max(hi - lo, 1e-6 * (abs(hi) + 1.0))
    timings["normalize"] = time.perf_counter() - t0

    tile = max(16, int(tile_size))
    ov = max(0, min(ov_req, tile // 2))
    align = int(getattr(model, "multiple", 1))
    ys, xs = tile_grid(h, tile, ov, align), tile_grid(w, tile, ov, align)
    halo = int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 0
    if int(chunk) < 2 * max(halo, 1):
        raise StackError(f"chunk={chunk} is too small; use at least {2 * max(halo, 1)}.")
    cy, cx = _chunk_sizes(h, int(chunk), halo), _chunk_sizes(w, int(chunk), halo)
    attention = aif_mode == "attention"
    n_out = 4 + ((3 if frames.ndim == 4 else 1) if attention else 0)

    outp, group, work = _new_output_group(out, n_out, h, w, int(chunk))
    zchunks = (int(chunk), int(chunk))

    t0 = time.perf_counter()
    dummy = da.zeros((h, w), chunks=(cy, cx), dtype=np.uint8)
    a = da.map_blocks(
        partial(
            _net_pass, frames=frames, ys=ys, xs=xs, lo=lo, scale=scale, overlap=ov,
            positions=positions, weights=weights, device=dev, attention=attention, n_out=n_out,
        ),
        dummy, new_axis=0, chunks=((n_out,), cy, cx), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    cb = _TaskProgress(progress, 0, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store(a, work, lock=False)
    timings["network"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    wk = da.from_zarr(work).rechunk((n_out, cy, cx))
    fin = da.map_overlap(
        partial(_net_finish, n=n, smooth_px=sigma, halo=halo),
        wk, depth={0: 0, 1: halo, 2: halo}, boundary="none", trim=False,
        chunks=((3,), cy, cx), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
    )
    index, dep_rel, conf = fin[0], fin[1], fin[2]
    pos0 = float(positions[0])
    depth = dep_rel.map_blocks(lambda d: (d.astype(np.float64) + pos0).astype(np.float32), dtype=np.float32)
    if attention:
        ax = "yxc" if frames.ndim == 4 else "yx"
        extra = {"new_axes": {"c": 3}} if frames.ndim == 4 else {}
        aif = da.blockwise(_net_aif, ax, wk, "zyx", frames.dtype, None, dtype=frames.dtype,
                           concatenate=True, **extra)
    else:
        frames_c = frames.rechunk((n, cy, cx) + frames.shape[3:])
        ax = "yxc" if frames.ndim == 4 else "yx"
        aif = da.blockwise(_select, ax, frames_c, "z" + ax, index, "yx", dtype=frames.dtype, concatenate=True)
    zd = group.create_array("depth", shape=(h, w), chunks=zchunks, dtype="float32")
    zc = group.create_array("confidence", shape=(h, w), chunks=zchunks, dtype="float32")
    za = group.create_array("aif", shape=(h, w) + frames.shape[3:], chunks=zchunks + frames.shape[3:], dtype=frames.dtype)
    cb = _TaskProgress(progress, 100, 200)
    with dask.config.set(scheduler="threads", num_workers=nthreads), cb.cb:
        da.store([depth, conf, aif], [zd, zc, za], lock=False)
    timings["write"] = time.perf_counter() - t0
    del group[_WORK]
    timings["total"] = time.perf_counter() - t_start
    params = {
        "method": "gplws", "tile_size": tile, "overlap": ov, "tiles": len(ys) * len(xs),
        "aif_mode": aif_mode, "smooth_px": sigma, "weights": str(weights), "device": dev,
        "chunk": int(chunk), "threads": nthreads,
    }
    units = zs.units
    for arr, kind in ((zd, "depth"), (zc, "confidence"), (za, "aif")):
        arr.attrs.update(
            kind=kind, units=units if kind == "depth" else None, pixel_size_um=zs.pixel_size_um,
            method="gplws", source=zs.source, written_by="napari-gplws",
        )
    group.attrs.update(units={"depth": units, "pixel_size": "µm" if zs.pixel_size_um else None},
                       params=params, focus_um=None if zs.focus_um is None else positions.tolist())
    report(progress, 200, 200)
    return OutOfCoreResult(path=outp, units=units, shape=(h, w), timings=timings, params=params, stack=zs)


# =========================================================================================
# routing: a method name to the out-of-core engine
# =========================================================================================
def reconstruct_out_of_core(
    source: str | os.PathLike[str] | ZarrStack,
    out: str | os.PathLike[str],
    *,
    method: str | None = None,
    device: str = "auto",
    window: int = DEFAULT_WINDOW,
    refine: bool = True,
    tile_size: int | None = None,
    weights: str | os.PathLike[str] = "gplws_default",
    chunk: int = 1024,
    threads: int | None = None,
    focus_um: Sequence[float] | np.ndarray | None = None,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
    pixel_size_um: float | None = None,
    progress: ProgressFn = None,
) -> OutOfCoreResult:
    """Reconstruct a zarr stack chunk by chunk with a method named as in :func:`napari_gplws.reconstruct`.

    Classical methods go to :func:`reconstruct_zarr` (``window``, ``refine``), ``"gplws"`` to
    :func:`predict_zarr` (``device``, ``tile_size`` — default 256 —, ``weights``).

    Parameters
    ----------
    source
        A zarr stack path or an opened :class:`ZarrStack` (then the unit overrides are ignored).
    out
        Output zarr group (replaced).
    method
        ``"gplws"`` or ``"sml"``, ``"tenengrad"``, ``"glv"``, ``"lapvar"``, ``"rdf"``
        (``None``: :func:`napari_gplws.api.default_method`).
    focus_um, focus_start_um, focus_step_um, pixel_size_um
        Override the stack's units (see :func:`open_zarr_stack`).
    chunk, threads, progress
        As in :func:`reconstruct_zarr`.

    Returns
    -------
    OutOfCoreResult

    Raises
    ------
    StackError
        Unknown method, bad stack or options.
    ModelError
        Missing weights or unavailable device (``"gplws"``).
    """
    from napari_gplws.api import CLASSICAL_METHODS, METHODS, default_method

    name = (method or default_method()).lower()
    if name not in METHODS:
        raise StackError(f"Unknown method '{method}'; choose one of: {', '.join(METHODS)}.")
    zs = (
        source
        if isinstance(source, ZarrStack)
        else open_zarr_stack(
            source, focus_um=focus_um, pixel_size_um=pixel_size_um, focus_start_um=focus_start_um,
            focus_step_um=focus_step_um,
        )
    )
    if name in CLASSICAL_METHODS:
        return reconstruct_zarr(
            zs, out, measure=name, window=window, refine=refine, chunk=chunk, threads=threads,
            progress=progress,
        )
    return predict_zarr(
        zs, out, device=device, tile_size=256 if tile_size is None else int(tile_size), weights=weights,
        chunk=chunk, threads=threads, progress=progress,
    )
