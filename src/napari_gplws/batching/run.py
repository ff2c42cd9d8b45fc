"""Batch reconstruction of many focus stacks on a dask.distributed cluster.

:func:`batch` turns a list of stacks (paths, glob patterns or ``.txt`` files listing paths)
into one output folder per stack, ``OUTDIR/<stack name>/`` holding ``depth.tif`` (float32,
µm or frame index), ``aif.tif`` (input dtype), ``confidence.tif`` (0..1) and ``report.json``
— the same files, with the same pixels, as ``gplws reconstruct`` writes for one stack.

Zarr stacks
    An input that is a zarr / OME-Zarr store (a folder named ``*.zarr``, or one holding
    zarr metadata; never mistaken for a folder of frames) is reconstructed out of core,
    chunk by chunk (:func:`~napari_gplws.dff.outofcore.reconstruct_out_of_core`), inside its task, into
    ``OUTDIR/<name>/result.zarr`` (arrays ``depth``, ``confidence``, ``aif``) and
    ``report.json`` — what ``gplws reconstruct INPUT.zarr`` writes. Its checksum is a
    SHA-256 over the sorted (relative path, size, SHA-256) of every file in
    ``result.zarr``, so a missing or damaged chunk file makes a re-run redo that stack.

How the work is spread
    One dask task per stack. By default a :class:`distributed.LocalCluster` is started on
    this machine; give the address of a running scheduler (``"tcp://host:8786"``) to use a
    cluster of many machines (the workers must see the same file system). The workers read
    the stack, reconstruct it and write its outputs themselves; only a small record goes
    back to the client. The network's weights are loaded once per worker process (a
    :class:`distributed.WorkerPlugin` warms the per-process cache of
    :func:`~napari_gplws.models.registry.load_gplws`), not once per task.

Resuming
    ``OUTDIR/manifest.json`` records every finished stack: its input (path, size, mtime),
    the method and options, and the SHA-256 of each output file (of each ``result.zarr``
    tree for zarr stacks). A re-run skips stacks
    whose entry matches and whose outputs are all present with the recorded checksum, and
    redoes the others (missing, truncated or edited outputs, changed input or options).

Failures
    A stack that cannot be read or reconstructed (corrupt file, wrong shape, …) is recorded
    with its error in ``OUTDIR/summary.csv`` and ``OUTDIR/summary.json`` and never stops the
    others. :attr:`BatchSummary.ok` (and the CLI's exit code) says whether any failed.

The pieces live beside this module: :mod:`.inputs` (which stacks, their names),
:mod:`.task` (one stack, all or nothing), :mod:`.manifest` (resuming), :mod:`.results`
(the summary). Nothing here does image processing of its own (each task calls
:func:`napari_gplws.reconstruct`) or imports napari or Qt. dask.distributed is imported on
first use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from napari_gplws._shared.callbacks import ProgressFn, report
from napari_gplws._shared.files import OutputLock
from napari_gplws.batching.inputs import _is_zarr, collect_inputs, stack_names
from napari_gplws.batching.manifest import (
    _input_signature,
    _read_manifest,
    _write_manifest,
    outputs_valid,
)
from napari_gplws.batching.results import BatchSummary, StackRecord, _jsonable, _write_summaries
from napari_gplws.batching.task import _run_task
from napari_gplws.errors import GplwsError, StackError

__all__ = ["batch"]


#: Where a local cluster's scheduler and dashboard listen by default: this machine only.
LOCAL_DASHBOARD = "127.0.0.1:0"

#: Ranges of the counts :func:`batch` accepts (a zero or negative count would hang).
WORKER_RANGE = (1, 256)
THREADS_RANGE = (1, 64)
CHUNK_RANGE = (64, 65536)


def _check_count(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        v = None
    if v is None or v != value or not lo <= v <= hi:
        raise GplwsError(f"{name} must be a whole number from {lo} to {hi}; got {value!r}.")
    return v


# =========================================================================================
# the cluster
# =========================================================================================
def _model_plugin(method: str | None, device: str) -> Any:
    """A WorkerPlugin that loads GPLWS-Net weights once when a worker starts."""
    from distributed import WorkerPlugin

    class GplwsModelPreload(WorkerPlugin):
        """Warm :func:`load_gplws`'s per-process cache on every worker (once per process)."""

        name = "napari-gplws-model"

        def __init__(self, method: str | None, device: str) -> None:
            self.method, self.device = method, device

        def setup(self, worker: Any) -> None:
            from napari_gplws.dff.methods import default_method

            if (self.method or default_method()) != "gplws":
                return
            from napari_gplws._shared.device import resolve_device
            from napari_gplws.models.registry import has_default_weights, load_gplws

            if has_default_weights("gplws"):
                load_gplws(device=resolve_device(self.device))

    return GplwsModelPreload(method, device)


def _open_client(
    scheduler: Any, workers: int, threads_per_worker: int, processes: bool,
    dashboard_address: str = LOCAL_DASHBOARD,
) -> tuple[Any, Callable[[], None]]:
    """Return ``(client, close)`` for ``"local"``, an address, or an existing Client."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler in (None, "local"):
        # Listen on this machine only: a laptop on a facility network must not expose the
        # scheduler or its dashboard. Another address is the caller's explicit choice.
        # (In-process clusters talk in memory and only need the dashboard address.)
        listen = {"host": dashboard_address.rsplit(":", 1)[0] or "127.0.0.1"} if processes else {}
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads_per_worker),
            processes=bool(processes),
            dashboard_address=dashboard_address,
            **listen,
        )
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    try:
        client = Client(str(scheduler), timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise GplwsError(
            f"Cannot reach the dask scheduler at '{scheduler}' ({exc}); check the address "
            "(e.g. tcp://host:8786) or use --scheduler local."
        ) from None
    return client, client.close


# =========================================================================================
# public entry point
# =========================================================================================
def batch(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    method: str | None = None,
    scheduler: Any = "local",
    workers: int = 2,
    threads_per_worker: int = 1,
    progress: ProgressFn = None,
    *,
    processes: bool = True,
    device: str = "auto",
    window: int = 9,
    refine: bool = True,
    tile_size: int | None = None,
    precision: str = "auto",
    compile: bool = False,
    tta: int | None = None,
    read_options: Mapping[str, Any] | None = None,
    force: bool = False,
    dashboard_address: str = LOCAL_DASHBOARD,
    align: str = "auto",
    align_model: str = "affine",
    reference: int | None = None,
    crop_common: bool = False,
    fusion: str = "pyramid",
    log: Callable[[str], None] | None = None,
    chunk: int = 1024,
) -> BatchSummary:
    """Reconstruct many focus stacks on a dask.distributed cluster, resumably.

    Parameters
    ----------
    inputs
        Stack paths, glob patterns and/or ``.txt`` files of paths (see
        :func:`collect_inputs`).
    outdir
        Output folder; one sub-folder per stack (see :func:`stack_names`) with
        ``depth.tif``, ``aif.tif``, ``confidence.tif`` and ``report.json``, plus
        ``manifest.json``, ``summary.csv`` and ``summary.json``.
    method
        As in :func:`napari_gplws.reconstruct` (``None``: the network when its weights are
        installed, else ``"sml"``).
    scheduler
        ``"local"`` (start a :class:`distributed.LocalCluster`), a scheduler address such
        as ``"tcp://10.0.0.5:8786"``, or an existing :class:`distributed.Client`.
    workers, threads_per_worker
        Size of the local cluster (ignored for an address or a client).
    progress
        ``progress(done, total)`` after each finished stack (skipped ones count at once).
    processes
        Local cluster with one process per worker (True, default: no GIL contention) or
        threads in this process (False: starts faster, for small jobs and tests).
    device, window, refine, tile_size, precision, compile, tta
        Passed to :func:`napari_gplws.reconstruct` for every stack (a GPU worker runs the
        network with bf16/fp16 autocast, batched tiles and pinned memory).
    read_options
        Passed to :func:`~napari_gplws.io.read_stack` for every stack (``focus_step_um``,
        ``focus_start_um``, ``focus_um``, ``pixel_size_um``, ``axis_pick``); for a zarr
        stack the units override its attributes (``axis_pick`` is refused).
    force
        Redo every stack even if the manifest says it is done.
    log
        Called with human-readable lines (the dashboard address, …); default: silent.
    dashboard_address
        ``host:port`` where a local cluster's scheduler and dashboard listen; default this
        machine only (``127.0.0.1``, a free port).
    align, align_model, reference, crop_common, fusion
        Frame alignment and all-in-focus fusion of every stack, as in
        :func:`napari_gplws.reconstruct`; part of the manifest settings, so changing them
        redoes the stacks.
    chunk
        Chunk side (px) over y/x for zarr stacks, which are reconstructed out of core with
        the worker's threads; part of their manifest settings.

    Returns
    -------
    BatchSummary
        Per-stack records; ``summary.ok`` is False when any stack failed. Failures never
        raise.

    Raises
    ------
    GplwsError
        No inputs, a glob that matches nothing, an unreachable scheduler, an unwritable
        ``outdir``.

    Examples
    --------
    >>> s = batch(["scans/*.tif"], "out", method="sml", workers=2)  # doctest: +SKIP
    >>> s.n_done, s.n_failed, [r.error for r in s.failed]  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    if scheduler in (None, "local"):
        workers = _check_count("workers", workers, *WORKER_RANGE)
        threads_per_worker = _check_count("threads_per_worker", threads_per_worker, *THREADS_RANGE)
    chunk = _check_count("chunk", chunk, *CHUNK_RANGE)
    paths = collect_inputs(inputs)
    names = stack_names(paths)
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as exc:
        raise GplwsError(f"Cannot create the output folder '{out}': {exc}.") from None
    for p in paths:
        o, i = out.resolve(), p.resolve()
        if o == i or (_is_zarr(p) and i in o.parents):
            raise GplwsError(
                f"The output folder '{out}' is the input '{p}' or lies inside it; results written "
                "there could be read back as input or damage it. Choose an output folder "
                "outside the inputs."
            )
    from napari_gplws.dff.fusion import FUSION_MODES

    if str(fusion).lower() not in FUSION_MODES:
        raise StackError(f"fusion={fusion!r} is not one of {', '.join(FUSION_MODES)}.")
    with OutputLock(out):
        return _run_batch(
            paths, names, out, method, scheduler, workers, threads_per_worker, progress,
            processes=processes, device=device, window=window, refine=refine,
            tile_size=tile_size, precision=precision, compile=compile, tta=tta,
            read_options=read_options, force=force, chunk=chunk, say=say,
            dashboard_address=dashboard_address, t_start=t_start,
            image_options={"align": align, "align_model": align_model, "reference": reference,
                           "crop_common": bool(crop_common), "fusion": str(fusion).lower()},
        )


def _run_batch(
    paths: list[Path], names: list[str], out: Path, method: str | None, scheduler: Any,
    workers: int, threads_per_worker: int, progress: ProgressFn, *, processes: bool,
    device: str, window: int, refine: bool, tile_size: int | None, precision: str,
    compile: bool, tta: int | None, read_options: Mapping[str, Any] | None, force: bool,
    chunk: int, say: Callable[[str], None], dashboard_address: str, t_start: float,
    image_options: dict[str, Any],
) -> BatchSummary:
    """:func:`batch` once its arguments are checked and the output folder is held."""

    from napari_gplws.dff.methods import CLASSICAL_METHODS, resolve_method

    used_method = resolve_method(method)
    options: dict[str, Any] = {"device": device, "window": int(window), "refine": bool(refine), "tile_size": tile_size}
    if used_method not in CLASSICAL_METHODS:
        options.update(precision=precision, compile=bool(compile), tta=tta)
    options.update(image_options)
    read_opts = {k: v for k, v in dict(read_options or {}).items() if v is not None}
    settings = {"method": used_method, "options": options, "read_options": _jsonable(read_opts)}
    zarr_options = {"chunk": int(chunk)}
    zarr_settings = {**settings, "out_of_core": dict(zarr_options)}
    is_zarr = {name: _is_zarr(p) for name, p in zip(names, paths)}

    manifest = _read_manifest(out)
    records: dict[str, StackRecord] = {}
    todo: list[tuple[str, Path]] = []
    for name, p in zip(names, paths):
        entry = manifest.get(name)
        if (
            not force
            and isinstance(entry, dict)
            and entry.get("input") == _input_signature(p)
            and entry.get("settings") == (zarr_settings if is_zarr[name] else settings)
            and outputs_valid(out / name, entry.get("outputs", {}))
        ):
            records[name] = StackRecord(
                name=name, input=str(p), status="skipped", outputs=dict(entry["outputs"]),
                units=str(entry.get("units", "")),
            )
        else:
            manifest.pop(name, None)
            todo.append((name, p))
    total = len(paths)
    done = len(records)
    report(progress, done, total)
    dashboard = ""

    if todo:
        client, close = _open_client(scheduler, workers, threads_per_worker, processes, dashboard_address)
        try:
            dashboard = str(getattr(client, "dashboard_link", "") or "")
            if dashboard and scheduler in (None, "local"):
                # dask names the machine's address in the link; the server listens on ours
                from urllib.parse import urlsplit

                host = dashboard_address.rsplit(":", 1)[0] or "127.0.0.1"
                parts = urlsplit(dashboard)
                dashboard = parts._replace(netloc=f"{host}:{parts.port}").geturl()
            say(f"dask dashboard: {dashboard or 'not available'}")
            if used_method == "gplws":
                client.register_plugin(_model_plugin(used_method, device))
            from distributed import as_completed

            futures = {}
            for name, p in todo:
                fut = client.submit(
                    _run_task, name, str(p), str(out / name), used_method, read_opts, options,
                    zarr_options if is_zarr[name] else None, key=f"gplws-batch-{name}-{time.monotonic_ns()}", pure=False,
                )
                futures[fut] = (name, p)
            for fut in as_completed(list(futures)):
                name, p = futures[fut]
                try:
                    rec = StackRecord(**fut.result())
                except Exception as exc:  # noqa: BLE001 - e.g. a worker died (KilledWorker)
                    rec = StackRecord(name=name, input=str(p), status="failed",
                                      error=f"{type(exc).__name__}: {exc}")
                records[name] = rec
                if rec.status == "done":
                    manifest[name] = {
                        "input": _input_signature(p),
                        "settings": zarr_settings if is_zarr[name] else settings,
                        "outputs": rec.outputs,
                        "units": rec.units,
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    }
                    _write_manifest(out, manifest)  # after every stack: a crash loses one
                done += 1
                report(progress, done, total)
        finally:
            close()
    _write_manifest(out, manifest)
    summary = BatchSummary(
        records=[records[n] for n in names],
        outdir=out,
        dashboard=dashboard,
        seconds=time.perf_counter() - t_start,
    )
    _write_summaries(summary)
    return summary
