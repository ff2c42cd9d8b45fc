"""One batch task: reconstruct one stack and publish its outputs into its folder, all or nothing.

The outputs are written into a hidden sibling folder first and moved into place only when
all of them are complete, so a stack's folder never holds a half-written set. A zarr stack
is reconstructed out of core instead, into ``result.zarr`` and ``report.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from napari_gplws._shared.files import (
    OUTPUT_MARKER,
    atomic_write,
    is_our_output,
    mark_output,
    replace_our_output,
)
from napari_gplws.api import OUTPUT_NAMES
from napari_gplws.batching.inputs import _is_zarr
from napari_gplws.batching.manifest import _digest, _sha256
from napari_gplws.batching.results import StackRecord
from napari_gplws.dff.outofcore import ZARR_OUTPUT_NAMES
from napari_gplws.errors import GplwsError

_UNIT_KEYS = ("focus_um", "focus_start_um", "focus_step_um", "pixel_size_um")


# =========================================================================================
# the task
# =========================================================================================
def reconstruct_to_folder(
    path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    method: str | None = None,
    read_options: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    zarr_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Reconstruct one stack and write its four outputs into ``folder`` (all or nothing).

    The outputs are written into a hidden sibling folder first and moved into place only
    when all four are complete, so ``folder`` never holds a half-written set. A zarr stack
    is reconstructed out of core instead, into ``result.zarr`` and ``report.json``.

    Parameters
    ----------
    path
        The stack (anything :func:`~napari_gplws.io.read_stack` reads, or a zarr / OME-Zarr store).
    folder
        Output folder; replaced if it exists.
    method
        Reconstruction method (``None``: :func:`napari_gplws.dff.methods.default_method`).
    read_options
        Keyword arguments of :func:`~napari_gplws.io.read_stack` (``focus_step_um``, ``pixel_size_um``…).
    options
        Keyword arguments of :func:`napari_gplws.reconstruct` (``window``, ``refine``,
        ``device``, ``tile_size``).
    zarr_options
        For a zarr stack: ``chunk`` (px, default 1024) and ``threads`` (dask threads) of
        :func:`~napari_gplws.dff.outofcore.reconstruct_out_of_core`.

    Returns
    -------
    dict
        ``{"outputs": {name: sha256}, "units": str, "method": str}``.

    Raises
    ------
    GplwsError
        Bad stack, options or unwritable folder (the message says which).
    """
    if _is_zarr(Path(path)):
        return _zarr_to_folder(path, folder, method, read_options, options, zarr_options)
    from napari_gplws.api import reconstruct
    from napari_gplws.io import read_stack

    t0 = time.perf_counter()
    stack = read_stack(path, **dict(read_options or {}))
    t_read = time.perf_counter() - t0
    result = reconstruct(stack, method=method, **dict(options or {}))
    result.timings["read"] = t_read

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir()
    try:
        result.save(tmp, started_at=t0, listed_folder=folder)
        sums = _publish(tmp, folder, OUTPUT_NAMES, _sha256)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"outputs": sums, "units": result.units, "method": result.method}


def _publish(tmp: Path, folder: Path, names: Sequence[str], digest: Callable[[Path], str]) -> dict[str, str]:
    """Checksum the outputs of the finished ``tmp`` folder and move it into place as ``folder``
    (replacing an older one), so a stack's folder is never half-written.

    An older ``folder`` is only removed after proving it is this package's own earlier
    result inside the batch's output folder (:func:`_replace_earlier_result`).
    """
    sums = {n: digest(tmp / n) for n in names}
    mark_output(tmp)
    _replace_earlier_result(folder)
    os.replace(tmp, folder)
    return sums


#: Everything a stack's result folder may hold; an older folder with only these is ours.
_RESULT_ENTRIES = frozenset({*OUTPUT_NAMES, *ZARR_OUTPUT_NAMES, OUTPUT_MARKER})


def _replace_earlier_result(folder: Path) -> None:
    """Delete an earlier result at ``folder`` so a new one can take its place, if it is ours.

    Ours means: inside the batch's output folder (the parent of ``folder``) and either
    marked (:data:`~napari_gplws._shared.files.OUTPUT_MARKER`) or, for results written
    before markers existed, holding nothing but the files a result holds.
    """
    if not (folder.exists() or folder.is_symlink()):
        return
    legacy = folder.is_dir() and not folder.is_symlink() and set(os.listdir(folder)) <= _RESULT_ENTRIES
    if legacy and not is_our_output(folder):
        mark_output(folder)
    replace_our_output(folder, folder.parent)


def _zarr_to_folder(
    path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    method: str | None,
    read_options: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    zarr_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The zarr branch of :func:`reconstruct_to_folder`: ``result.zarr`` + ``report.json``."""
    from napari_gplws.dff.outofcore import reconstruct_out_of_core
    from napari_gplws.errors import StackError
    from napari_gplws.io.zarr import open_zarr_stack

    t0 = time.perf_counter()
    ro = dict(read_options or {})
    picks = ro.get("axis_pick") or {}
    if any(int(v) != 0 for v in dict(picks).values()):
        raise StackError(
            f"axis_pick {dict(picks)} cannot be used with the zarr stack '{path}'; store one "
            "(N, H, W[, 3]) stack per zarr array."
        )
    opts = dict(options or {})
    if opts.get("align") == "on":
        raise StackError(
            f"The frames of the zarr stack '{path}' cannot be aligned: alignment works on "
            "stacks read into memory, and zarr stacks are reconstructed out of core. Use "
            "align='auto' or 'off' for a batch that holds zarr stacks, or store the stack as "
            "a TIFF."
        )
    zo = dict(zarr_options or {})
    stack = open_zarr_stack(path, **{k: ro[k] for k in _UNIT_KEYS if ro.get(k) is not None})
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir()
    try:
        res = reconstruct_out_of_core(
            stack, tmp / "result.zarr", method=method, device=str(opts.get("device", "auto")),
            window=int(opts.get("window", 9)), refine=bool(opts.get("refine", True)),
            tile_size=opts.get("tile_size"), chunk=int(zo.get("chunk") or 1024),
            threads=zo.get("threads"),
        )
        rep = res.report(threads=zo.get("threads"), name="result.zarr")
        rep["seconds"]["total"] = round(time.perf_counter() - t0, 4)
        rep["outputs"] = {n: str(folder / n) for n in ZARR_OUTPUT_NAMES}
        text = json.dumps(rep, indent=2, ensure_ascii=False)
        atomic_write(tmp / "report.json", lambda t: t.write_text(text, encoding="utf-8"))
        sums = _publish(tmp, folder, ZARR_OUTPUT_NAMES, _digest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"outputs": sums, "units": res.units, "method": res.method}


def _run_task(
    name: str,
    path: str,
    folder: str,
    method: str | None,
    read_options: dict[str, Any],
    options: dict[str, Any],
    zarr_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Worker-side wrapper: never raises, returns a record as a dict."""
    t0 = time.perf_counter()
    rec = StackRecord(name=name, input=path, status="failed")
    zo = dict(zarr_options or {})
    try:
        from distributed import get_worker

        worker = get_worker()
        rec.worker = str(worker.address)
        if zo.get("threads") is None and getattr(worker, "nthreads", None):
            zo["threads"] = int(worker.nthreads)  # a zarr stack's dask threads: the worker's share
    except Exception:  # noqa: BLE001 - not on a worker (direct call)
        rec.worker = "local"
    try:
        res = reconstruct_to_folder(path, folder, method, read_options, options, zo)
        rec.status, rec.outputs, rec.units = "done", res["outputs"], res["units"]
    except GplwsError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - recorded, the batch goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:] or None
        at = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        rec.error = f"{type(exc).__name__}: {exc}{at}"
    rec.seconds = round(time.perf_counter() - t0, 4)
    return asdict(rec)
