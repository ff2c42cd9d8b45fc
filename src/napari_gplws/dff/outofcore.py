"""Out-of-core depth from focus: stacks larger than memory, chunk by chunk with dask.

A stack stored as zarr (opened lazily by :mod:`napari_gplws.io.zarr`) is reconstructed in
chunks over y/x (the focus axis is always whole), writing ``depth``, ``aif`` and
``confidence`` to a zarr group. Peak memory is set by the chunk size, not by the image
size. :func:`reconstruct_out_of_core` routes a method name to the classical engine
(:mod:`.outofcore_classical`) or to GPLWS-Net (:mod:`.outofcore_network`); it is what
``gplws reconstruct INPUT.zarr`` and ``gplws batch`` call, and
:meth:`OutOfCoreResult.report` gives the ``report.json`` summary. Both engines give the
in-memory result to float tolerance.

What this module does not do: files other than zarr (a TIFF larger than memory is
converted with :func:`napari_gplws.io.zarr.tiff_to_zarr` first).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from napari_gplws._shared.callbacks import ProgressFn
from napari_gplws.dff._chunks import OutOfCoreResult
from napari_gplws.dff.measures import (
    DEFAULT_WINDOW,
)
from napari_gplws.dff.outofcore_classical import reconstruct_zarr
from napari_gplws.dff.outofcore_network import predict_zarr
from napari_gplws.io.zarr import ZarrStack, open_zarr_stack

__all__ = [
    "ZARR_OUTPUT_NAMES",
    "OutOfCoreResult",
    "predict_zarr",
    "reconstruct_out_of_core",
    "reconstruct_zarr",
]

#: What an out-of-core run writes: a zarr group (depth, confidence, aif) and the report.
ZARR_OUTPUT_NAMES: tuple[str, ...] = ("result.zarr", "report.json")


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
    overwrite: bool = False,
) -> OutOfCoreResult:
    """Reconstruct a zarr stack chunk by chunk with a method named as in :func:`napari_gplws.reconstruct`.

    Classical methods go to :func:`reconstruct_zarr` (``window``, ``refine``), ``"gplws"`` to
    :func:`predict_zarr` (``device``, ``tile_size`` — default 256 —, ``weights``).

    Parameters
    ----------
    source
        A zarr stack path or an opened :class:`ZarrStack` (then the unit overrides are ignored).
    out
        Output zarr group. An earlier output of this package is replaced; anything else
        is refused unless ``overwrite`` (then it is moved aside as a backup). The input
        itself, a place inside it or a folder holding it are always refused.
    method
        ``"gplws"`` or ``"sml"``, ``"tenengrad"``, ``"glv"``, ``"lapvar"``, ``"rdf"``
        (``None``: :func:`napari_gplws.dff.methods.default_method`).
    focus_um, focus_start_um, focus_step_um, pixel_size_um
        Override the stack's units (see :func:`open_zarr_stack`).
    chunk, threads, progress, overwrite
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
    from napari_gplws.dff.methods import CLASSICAL_METHODS, resolve_method

    name = resolve_method(method)
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
            progress=progress, overwrite=overwrite,
        )
    return predict_zarr(
        zs, out, device=device, tile_size=256 if tile_size is None else int(tile_size), weights=weights,
        chunk=chunk, threads=threads, progress=progress, overwrite=overwrite,
    )
