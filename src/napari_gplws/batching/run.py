"""Batch reconstruction of many focus stacks on a dask.distributed cluster.

:func:`batch` turns a list of stacks (paths, glob patterns or ``.txt`` files listing paths)
into one output folder per stack, ``OUTDIR/<stack name>/`` holding ``depth.tif`` (float32,
µm or frame index), ``aif.tif`` (input dtype), ``confidence.tif`` (0..1) and ``report.json``
— the same files, with the same pixels, as ``gplws reconstruct`` writes for one stack.

Zarr stacks
    An input that is a zarr / OME-Zarr store (a folder named ``*.zarr``, or one holding
    zarr metadata; never mistaken for a folder of frames) is reconstructed out of core,
    chunk by chunk (:func:`~.outofcore.reconstruct_out_of_core`), inside its task, into
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
    :func:`~.models.registry.load_gplws`), not once per task.

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

This module does no image processing of its own (it calls :func:`napari_gplws.reconstruct`)
and never imports napari or Qt. dask.distributed is imported on first use.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_gplws._shared.callbacks import ProgressFn, report
from napari_gplws._shared.files import atomic_write
from napari_gplws.api import OUTPUT_NAMES
from napari_gplws.dff.outofcore import ZARR_OUTPUT_NAMES
from napari_gplws.errors import GplwsError

__all__ = [
    "MANIFEST_NAME",
    "OUTPUT_NAMES",
    "ZARR_OUTPUT_NAMES",
    "BatchSummary",
    "StackRecord",
    "batch",
    "collect_inputs",
    "outputs_valid",
    "reconstruct_to_folder",
    "stack_names",
]

MANIFEST_NAME = "manifest.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
_MANIFEST_VERSION = 1
_STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy", ".npz", ".ome.zarr", ".zarr")
_UNIT_KEYS = ("focus_um", "focus_start_um", "focus_step_um", "pixel_size_um")


# =========================================================================================
# records
# =========================================================================================
@dataclass
class StackRecord:
    """What happened to one stack of a batch.

    Attributes
    ----------
    name
        Output folder name (``OUTDIR/<name>/``).
    input
        Path of the stack.
    status
        ``"done"`` (reconstructed now), ``"skipped"`` (valid outputs from an earlier run)
        or ``"failed"``.
    error
        ``"<ExceptionType>: message"`` when failed, else ``""``.
    seconds
        Wall time of the task on its worker (0 when skipped).
    outputs
        Output file name -> SHA-256 (hex) of its content (for ``result.zarr``, of its
        tree: see :func:`outputs_valid`).
    units
        Unit of ``depth.tif``: ``"µm"`` or ``"frame"`` (empty when failed).
    worker
        Address of the worker that ran it (empty when skipped).
    """

    name: str
    input: str
    status: str
    error: str = ""
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    units: str = ""
    worker: str = ""


@dataclass
class BatchSummary:
    """Result of :func:`batch`.

    Attributes
    ----------
    records
        One :class:`StackRecord` per input stack, in input order.
    outdir
        The output folder (holds ``manifest.json``, ``summary.csv``, ``summary.json``).
    dashboard
        The dask dashboard address, or ``""`` when there is none.
    seconds
        Wall time of the whole batch.
    """

    records: list[StackRecord]
    outdir: Path
    dashboard: str = ""
    seconds: float = 0.0

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def n_done(self) -> int:
        """Stacks reconstructed in this run."""
        return self._count("done")

    @property
    def n_skipped(self) -> int:
        """Stacks whose valid outputs from an earlier run were kept."""
        return self._count("skipped")

    @property
    def n_failed(self) -> int:
        """Stacks that failed (see :attr:`StackRecord.error`)."""
        return self._count("failed")

    @property
    def ok(self) -> bool:
        """True when no stack failed."""
        return self.n_failed == 0

    @property
    def failed(self) -> list[StackRecord]:
        """The records of the stacks that failed."""
        return [r for r in self.records if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (what ``summary.json`` holds)."""
        return {
            "outdir": str(self.outdir),
            "dashboard": self.dashboard,
            "seconds": round(self.seconds, 3),
            "counts": {
                "total": len(self.records),
                "done": self.n_done,
                "skipped": self.n_skipped,
                "failed": self.n_failed,
            },
            "stacks": [asdict(r) for r in self.records],
        }


# =========================================================================================
# inputs
# =========================================================================================
def collect_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand paths, glob patterns and ``.txt`` lists into a list of stack paths.

    Parameters
    ----------
    inputs
        One item or an iterable of items. Each item is a stack path (file, folder of
        frames or zarr store), a glob pattern (``"scans/*.tif"``, ``"scans/*.zarr"``, ``"**"``
        allowed; files inside a zarr store are not stacks and are left out), or a ``.txt`` file with
        one path or pattern per line (blank lines and lines starting with ``#`` are skipped;
        relative paths are taken relative to the ``.txt`` file's folder).

    Returns
    -------
    list of Path
        In the order given, duplicates removed. Paths that do not exist are kept (their
        task fails with a clear message, recorded in the summary).

    Raises
    ------
    GplwsError
        A glob pattern matches nothing, a ``.txt`` list cannot be read, or nothing is left.
    """
    items: list[str | os.PathLike[str]]
    if isinstance(inputs, (str, os.PathLike)):
        items = [inputs]
    else:
        items = list(inputs)
    out: list[Path] = []

    def add(item: str, base: Path | None) -> None:
        text = str(item).strip()
        if base is not None and not os.path.isabs(text):
            text = str(base / text)
        if any(ch in text for ch in "*?["):
            hits = sorted(glob.glob(text, recursive=True))
            if not hits:
                raise GplwsError(f"The pattern '{text}' matches no file; check it (quote it in a shell).")
            out.extend(Path(h) for h in hits if not _inside_zarr(Path(h)))
        elif text.lower().endswith(".txt"):
            p = Path(text)
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise GplwsError(f"Cannot read the list of stacks '{p}': {exc}.") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    add(line, p.parent)
        else:
            out.append(Path(text))

    for item in items:
        add(os.fspath(item), None)
    seen: set[str] = set()
    unique = []
    for p in out:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise GplwsError("No input stacks were given; pass paths, glob patterns or a .txt list.")
    return unique


def _is_zarr(p: Path) -> bool:
    from napari_gplws.io.zarr import is_zarr_path

    return is_zarr_path(p)


def _inside_zarr(p: Path) -> bool:
    """A chunk or metadata file (or sub-folder) of a zarr store, rather than a stack."""
    if _is_zarr(p):
        return False  # a store (possibly nested in a bigger one) is a stack
    return any(_is_zarr(q) for q in p.parents if q != Path("."))


def _base_name(p: Path) -> str:
    name = p.name.rstrip("/") or "stack"
    low = name.lower()
    for suf in _STACK_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return name


def stack_names(paths: Sequence[Path]) -> list[str]:
    """Output folder names for stacks: the base name (``a.ome.tif`` -> ``a``), made unique.

    Two stacks with the same base name in different folders get ``a``, ``a-2``, ``a-3``… in
    input order, so a re-run with the same inputs maps every stack to the same folder.
    """
    names: list[str] = []
    used: set[str] = {Path(MANIFEST_NAME).stem, Path(SUMMARY_CSV).stem}
    for p in paths:
        base = _base_name(Path(p))
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names


# =========================================================================================
# checksums and manifest
# =========================================================================================
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    """``(posix relative path, path)`` of every file below ``root``, sorted."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            q = Path(dirpath) / f
            out.append((q.relative_to(root).as_posix(), q))
    return sorted(out)


def _tree_sha256(root: Path) -> str:
    """SHA-256 over the sorted (relative path, size, SHA-256) of every file below ``root``."""
    h = hashlib.sha256()
    for rel, q in _tree_files(root):
        h.update(f"{rel}\0{q.stat().st_size}\0{_sha256(q)}\n".encode())
    return h.hexdigest()


def _digest(p: Path) -> str | None:
    """SHA-256 of a file, tree digest of a folder (``result.zarr``), None when missing."""
    if p.is_dir():
        return _tree_sha256(p)
    if p.is_file():
        return _sha256(p)
    return None


def _input_signature(p: Path) -> dict[str, Any]:
    """Path, size and mtime of an input (of every file in it, for a folder; recursively, with
    the file count, for a zarr store, whose chunks live in sub-folders)."""
    p = Path(p)
    if p.is_dir() and _is_zarr(p):
        stats = [q.stat() for _rel, q in _tree_files(p)]
        return {
            "path": os.path.abspath(p),
            "size": int(sum(st.st_size for st in stats)),
            "mtime_ns": int(max((st.st_mtime_ns for st in stats), default=0)),
            "files": len(stats),
        }
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.is_file())
        size = sum(q.stat().st_size for q in files)
        mtime = max((q.stat().st_mtime_ns for q in files), default=0)
    elif p.exists():
        st = p.stat()
        size, mtime = st.st_size, st.st_mtime_ns
    else:
        size, mtime = -1, 0
    return {"path": os.path.abspath(p), "size": int(size), "mtime_ns": int(mtime)}


def outputs_valid(folder: Path, checksums: Mapping[str, str]) -> bool:
    """True when every output named in ``checksums`` exists in ``folder`` with that SHA-256.

    ``checksums`` names either the TIFF outputs (:data:`OUTPUT_NAMES`) or the out-of-core
    ones (:data:`ZARR_OUTPUT_NAMES`); a ``result.zarr`` folder is checked by its tree digest
    (every file's relative path, size and SHA-256), so a missing, added or damaged chunk
    file fails the check.
    """
    if set(checksums) not in (set(OUTPUT_NAMES), set(ZARR_OUTPUT_NAMES)):
        return False
    return all(_digest(Path(folder) / name) == digest for name, digest in checksums.items())


def _read_manifest(outdir: Path) -> dict[str, Any]:
    p = outdir / MANIFEST_NAME
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged manifest only means everything is redone
    if not isinstance(data, dict) or data.get("version") != _MANIFEST_VERSION:
        return {}
    stacks = data.get("stacks")
    return stacks if isinstance(stacks, dict) else {}


def _write_text_atomic(p: Path, text: str) -> None:
    atomic_write(p, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_manifest(outdir: Path, stacks: Mapping[str, Any]) -> None:
    body = {"version": _MANIFEST_VERSION, "written_by": "napari-gplws", "stacks": dict(stacks)}
    _write_text_atomic(outdir / MANIFEST_NAME, json.dumps(body, indent=2, ensure_ascii=False))


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
        The stack (anything :func:`~.io.read_stack` reads, or a zarr / OME-Zarr store).
    folder
        Output folder; replaced if it exists.
    method
        Reconstruction method (``None``: :func:`napari_gplws.dff.methods.default_method`).
    read_options
        Keyword arguments of :func:`~.io.read_stack` (``focus_step_um``, ``pixel_size_um``…).
    options
        Keyword arguments of :func:`napari_gplws.reconstruct` (``window``, ``refine``,
        ``device``, ``tile_size``).
    zarr_options
        For a zarr stack: ``chunk`` (px, default 1024) and ``threads`` (dask threads) of
        :func:`~.outofcore.reconstruct_out_of_core`.

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
    from napari_gplws.io._read import read_stack

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
    (replacing an older one), so a stack's folder is never half-written."""
    sums = {n: digest(tmp / n) for n in names}
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return sums


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
    scheduler: Any, workers: int, threads_per_worker: int, processes: bool
) -> tuple[Any, Callable[[], None]]:
    """Return ``(client, close)`` for ``"local"``, an address, or an existing Client."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler in (None, "local"):
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads_per_worker),
            processes=bool(processes),
            dashboard_address=":0",
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


def _write_summaries(summary: BatchSummary) -> None:
    out = summary.outdir
    _write_text_atomic(out / SUMMARY_JSON, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "input", "status", "error", "seconds", "depth_units", "worker"])
    for r in summary.records:
        w.writerow([r.name, r.input, r.status, r.error, f"{r.seconds:.3f}", r.units, r.worker])
    _write_text_atomic(out / SUMMARY_CSV, buf.getvalue())


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
        Passed to :func:`~.io.read_stack` for every stack (``focus_step_um``,
        ``focus_start_um``, ``focus_um``, ``pixel_size_um``, ``axis_pick``); for a zarr
        stack the units override its attributes (``axis_pick`` is refused).
    force
        Redo every stack even if the manifest says it is done.
    log
        Called with human-readable lines (the dashboard address, …); default: silent.
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
    paths = collect_inputs(inputs)
    names = stack_names(paths)
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GplwsError(f"Cannot create the output folder '{out}': {exc}.") from None

    from napari_gplws.dff.methods import CLASSICAL_METHODS, resolve_method

    used_method = resolve_method(method)
    options: dict[str, Any] = {"device": device, "window": int(window), "refine": bool(refine), "tile_size": tile_size}
    if used_method not in CLASSICAL_METHODS:
        options.update(precision=precision, compile=bool(compile), tta=tta)
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
        client, close = _open_client(scheduler, workers, threads_per_worker, processes)
        try:
            dashboard = str(getattr(client, "dashboard_link", "") or "")
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


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """Make options comparable with what is read back from JSON (arrays -> lists)."""
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
