"""A dataset under review: its samples, the review manifest and the export of corrections.

:class:`AnnotationDataset` opens a dataset root (one folder per sample), keeps a review
manifest (``gt_review.json`` at the root: status, note, who and when per sample) that is
rewritten atomically, opens an :class:`~napari_gplws.annotate.session.EditSession` per
sample and exports the corrected dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws.annotate.samples import (
    MANIFEST_NAME,
    STATUSES,
    WORK_DIR,
    SampleData,
    _now,
    _user,
    _write_json,
    load_sample,
)
from napari_gplws.annotate.session import EditSession
from napari_gplws.errors import GplwsError
from napari_gplws.io.micro3d import GT_PATTERNS, encode_gt, write_gt

# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------


@dataclass
class SampleInfo:
    """A row of the sample list."""

    name: str
    status: str = "unreviewed"
    note: str = ""
    suspect_fraction: float | None = None
    updated_by: str | None = None
    updated_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class AnnotationDataset:
    """A dataset root under review: sample list, manifest, loading and export.

    Parameters
    ----------
    root
        Folder with one sub-folder per sample.
    gt_patterns
        Ground-truth name patterns, tried in order.
    gt_scale
        Frame index per stored unit of integer ground-truth files.
    focus_start_um, focus_step_um
        Focus positions when the samples have no sidecar (default 0 and 1 µm).

    Raises
    ------
    StackError
        The folder does not exist or holds no sample folders.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        gt_patterns: Sequence[str] = GT_PATTERNS,
        gt_scale: float = 1.0,
        focus_start_um: float | None = None,
        focus_step_um: float | None = None,
    ) -> None:
        from napari_gplws.io.micro3d import Micro3DDataset

        self.root = Path(root)
        self.gt_patterns = tuple(gt_patterns)
        self.gt_scale = float(gt_scale)
        self.focus_start_um, self.focus_step_um = focus_start_um, focus_step_um
        self.names: list[str] = [n for n in Micro3DDataset(self.root).names if n != WORK_DIR]
        self.manifest_path = self.root / MANIFEST_NAME
        self.samples: dict[str, SampleInfo] = {n: SampleInfo(n) for n in self.names}
        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise GplwsError(
                    f"The review manifest '{self.manifest_path}' is unreadable ({exc})."
                ) from None
            for name, rec in data.get("samples", {}).items():
                if name in self.samples:
                    info = self.samples[name]
                    for k in ("status", "note", "suspect_fraction", "updated_by", "updated_at"):
                        if k in rec:
                            setattr(info, k, rec[k])

    def __len__(self) -> int:
        return len(self.names)

    def _save_manifest(self) -> None:
        data = {
            "version": 1,
            "gt_patterns": list(self.gt_patterns),
            "gt_scale": self.gt_scale,
            "samples": {
                n: {
                    k: getattr(s, k)
                    for k in ("status", "note", "suspect_fraction", "updated_by", "updated_at")
                }
                for n, s in self.samples.items()
            },
        }
        _write_json(self.manifest_path, data)

    def _touch(self, name: str, **changes: Any) -> None:
        info = self.samples[name]
        for k, v in changes.items():
            setattr(info, k, v)
        info.updated_by, info.updated_at = _user(), _now()
        self._save_manifest()

    def set_status(self, name: str, status: str) -> None:
        """Set a sample's status (one of :data:`STATUSES`) and rewrite the manifest."""
        if status not in STATUSES:
            raise GplwsError(f"Unknown status {status!r}; choose from {', '.join(STATUSES)}.")
        self._touch(name, status=status)

    def set_note(self, name: str, note: str) -> None:
        """Set a sample's free-text note."""
        self._touch(name, note=str(note))

    def set_suspect_fraction(self, name: str, fraction: float) -> None:
        """Remember a sample's suspect fraction in the manifest."""
        self._touch(name, suspect_fraction=round(float(fraction), 6))

    def counts(self) -> dict[str, int]:
        """Number of samples per status."""
        return {st: sum(s.status == st for s in self.samples.values()) for st in STATUSES}

    def neighbour(self, name: str, step: int) -> str | None:
        """The name ``step`` places after (or before) ``name``, or None at the ends."""
        i = self.names.index(name) + step
        return self.names[i] if 0 <= i < len(self.names) else None

    def load(self, name: str) -> SampleData:
        """Load one sample's frames and ground truth."""
        return load_sample(
            self.root / name,
            self.gt_patterns,
            self.gt_scale,
            self.focus_start_um,
            self.focus_step_um,
        )

    def open(self, name: str, **kwargs: Any) -> EditSession:
        """Load a sample and start an edit session; the first edit marks it "in progress"."""

        def on_change(_s: EditSession) -> None:
            if self.samples[name].status == "unreviewed":
                self.set_status(name, "in progress")

        return EditSession(self.load(name), on_change=on_change, **kwargs)

    def export(
        self, out: str | os.PathLike[str], progress: ProgressFn = None, cancel: CancelFn = None
    ) -> Path:
        """Write the corrected dataset to a new folder with the same layout, plus the logs.

        Each sample folder gets its frames and sidecars copied; its ground truth under the
        original name and encoding when the corrected values fit it exactly, otherwise as a
        float32 µm TIFF ``<gt stem>.tif`` (recorded in ``export.json``). The ``corrections``
        folder (edit log, corrected TIFF) and the review manifest are copied too.

        Raises
        ------
        GplwsError
            ``out`` exists and is not empty, or lies inside the dataset.
        """
        import tifffile

        dst = Path(out)
        if dst.exists() and any(dst.iterdir()):
            raise GplwsError(f"The export folder '{dst}' is not empty; choose a new folder.")
        if dst.resolve().is_relative_to(self.root.resolve()):
            raise GplwsError(f"Export into a folder outside the dataset '{self.root}'.")
        dst.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {
            "source": str(self.root),
            "exported_by": _user(),
            "exported_at": _now(),
            "samples": {},
        }
        for i, name in enumerate(self.names):
            check_cancel(cancel)
            sample = self.load(name)
            src, to = sample.folder, dst / name
            to.mkdir()
            for p in src.iterdir():
                if p.is_file() and p != sample.gt_path:
                    shutil.copy2(p, to / p.name)
            if sample.work_dir.is_dir():
                shutil.copytree(
                    sample.work_dir,
                    to / WORK_DIR,
                    ignore=shutil.ignore_patterns("*.recovery.npz", ".*"),
                )
            rec: dict[str, Any] = {
                "status": self.samples[name].status,
                "gt": sample.gt_path.name,
                "corrected": False,
            }
            if sample.corrected_path.is_file():
                depth = np.asarray(tifffile.imread(sample.corrected_path), dtype=np.float32)
                rec["corrected"] = True
                try:
                    write_gt(
                        to / sample.gt_path.name, encode_gt(depth, sample.focus_um, sample.encoding)
                    )
                except GplwsError:
                    target = to / f"{sample.gt_path.stem}.tif"
                    write_gt(target, depth)
                    rec.update(gt=target.name, encoding_changed="float32 µm TIFF")
            else:
                shutil.copy2(sample.gt_path, to / sample.gt_path.name)
            summary["samples"][name] = rec
            report(progress, i + 1, len(self.names))
        if self.manifest_path.is_file():
            shutil.copy2(self.manifest_path, dst / MANIFEST_NAME)
        _write_json(dst / "export.json", summary)
        return dst
