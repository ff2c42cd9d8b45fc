"""Pieces shared by the two out-of-core engines: chunk layout, halo trimming, the output
group and :class:`OutOfCoreResult`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.files import check_output_against_inputs, claim_output_dir, mark_output
from napari_gplws.errors import StackError
from napari_gplws.io.zarr import ZarrStack
from napari_gplws.stack import index_to_position

_WORK = "_work"
_N_WORK = 4  # index, guide, peak, mean


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


def _select(frames: np.ndarray, index: np.ndarray) -> np.ndarray:
    """All-in-focus pixels: frame at the rounded index (as :func:`napari_gplws.dff.classical.depth_from_focus`)."""
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


def _new_output_group(
    out: str | os.PathLike[str], n_work: int, h: int, w: int, chunk: int,
    *, source: ZarrStack | None = None, overwrite: bool = False,
) -> tuple[Path, Any, Any]:
    """A fresh output zarr group at ``out`` with its ``(n_work, H, W)`` float32 work array,
    chunked one plane by ``chunk × chunk``.

    ``out`` may not be the input store, lie inside it or contain it. An earlier output of
    this package there is replaced; anything else is refused, or moved aside as a backup
    with ``overwrite=True`` (:func:`napari_gplws._shared.files.claim_output_dir`).
    """
    import zarr

    outp = Path(os.fspath(out))
    if source is not None and source.path:
        check_output_against_inputs(outp, [Path(source.path)])
    claim_output_dir(outp, overwrite=overwrite)
    group = zarr.open_group(str(outp), mode="w")
    mark_output(outp)
    work = group.create_array(_WORK, shape=(n_work, h, w), chunks=(1, chunk, chunk), dtype="float32")
    return outp, group, work


def _require_finite(block: np.ndarray, what: str) -> np.ndarray:
    """Pass a chunk of an output through, or stop the run when it holds NaN or infinity."""
    if not np.isfinite(block).all():
        raise StackError(
            f"The {what} has NaN or infinite values; the output was not kept. Check the focus "
            "positions and the input frames."
        )
    return block


def store_outputs(outp: Path, arrays: Sequence[Any], targets: Sequence[Any]) -> None:
    """Write the result arrays into the output group, checking depth and confidence are
    finite chunk by chunk; on any failure the (new, half-written) group is removed."""
    import dask.array as da

    depth, conf, *rest = arrays
    checked = [
        depth.map_blocks(_require_finite, "depth", dtype=depth.dtype),
        conf.map_blocks(_require_finite, "confidence", dtype=conf.dtype),
        *rest,
    ]
    try:
        da.store(checked, list(targets), lock=False)
    except BaseException:
        shutil.rmtree(outp, ignore_errors=True)
        raise
