"""The outcome of a batch: one record per stack, the summary and its CSV/JSON files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_gplws._shared.files import write_text_atomic
from napari_gplws.batching.layout import SUMMARY_CSV, SUMMARY_JSON


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


def _write_summaries(summary: BatchSummary) -> None:
    out = summary.outdir
    write_text_atomic(out / SUMMARY_JSON, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "input", "status", "error", "seconds", "depth_units", "worker"])
    for r in summary.records:
        w.writerow([r.name, r.input, r.status, r.error, f"{r.seconds:.3f}", r.units, r.worker])
    write_text_atomic(out / SUMMARY_CSV, buf.getvalue())


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """Make options comparable with what is read back from JSON (arrays -> lists)."""
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
