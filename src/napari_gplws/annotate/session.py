"""One sample's ground truth under correction: edits, undo/redo, recovery and guidance.

:class:`EditSession` edits a sample's ground truth as a float32 map in µm: brush and
polygon values, depth from the current frame, snap to the focus-curve peak, smooth, fit a
plane, fill from a model prediction, restore the original; undo/redo with sparse diffs; a
recovery file and an edit log; a suspect map for guidance.

Files written (the original ground truth is **never** modified), all inside the sample
folder's ``corrections/`` sub-folder so that no loader mistakes them for frames or for a
second ground-truth file:

``corrections/<gt stem>.corrected.tif``
    The corrected map: float32 ImageJ TIFF, values in µm of focus-drive position (same axis
    as the focus positions), with the units, pixel size and focus positions in its ``Info``
    JSON. Written to a temporary file, fsynced, then renamed over the old one.
``corrections/<gt stem>.recovery.npz``
    Autosaved unsaved work (the current map), removed on save.
``corrections/<gt stem>.edits.jsonl``
    The edit log: one JSON object per line (time, user, op, params, bbox, pixels changed,
    mean change in µm).

Ground-truth encodings are read and written back losslessly by
:mod:`napari_gplws.io.micro3d`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws._shared.files import atomic_write
from napari_gplws.annotate.masks import _bbox
from napari_gplws.annotate.samples import UNITS, SampleData, _now, _user
from napari_gplws.errors import GplwsError
from napari_gplws.stack import (
    index_to_position,
    position_to_index,
)

__all__ = ["Edit", "EditSession", "parabolic_peak"]


@dataclass
class Edit:
    """One undoable change: a bounding box, the changed pixels in it and their old/new µm."""

    op: str
    params: dict[str, Any]
    bbox: tuple[int, int, int, int]
    mask: np.ndarray  # bool, bbox-sized
    old: np.ndarray  # float32 (n,)
    new: np.ndarray  # float32 (n,)

    def apply(self, depth: np.ndarray, forward: bool = True) -> None:
        y0, y1, x0, x1 = self.bbox
        depth[y0:y1, x0:x1][self.mask] = self.new if forward else self.old


def parabolic_peak(curves: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Sub-frame peak index around integer index ``k`` of ``(N, ...)`` curves (parabola through 3 points)."""
    n = curves.shape[0]
    k = np.asarray(k, dtype=np.int64)
    km, kp = np.clip(k - 1, 0, n - 1), np.clip(k + 1, 0, n - 1)
    def take(i: np.ndarray) -> np.ndarray:
        return np.take_along_axis(curves, i[None], 0)[0].astype(np.float64)

    a, b, c = take(km), take(k), take(kp)
    den = a - 2 * b + c
    off = np.where(
        (den < 0) & (k > 0) & (k < n - 1), 0.5 * (a - c) / np.where(den == 0, -1, den), 0.0
    )
    return k + np.clip(off, -0.5, 0.5)


class EditSession:
    """Edit one sample's ground truth (float32 µm) with undo/redo, autosave and a log.

    Parameters
    ----------
    sample
        The loaded sample (:func:`load_sample` or :meth:`AnnotationDataset.load`).
    max_undo
        Undo steps kept (oldest dropped first); at least 200.
    autosave_delay_s
        Debounce of :meth:`autosave_if_due`: the recovery file is written once no edit
        happened for this long.
    on_change
        Optional ``on_change(session)`` called after each change (used by a dataset to
        mark the sample "in progress").

    Examples
    --------
    >>> s = EditSession(sample)                                  # doctest: +SKIP
    >>> s.set_value(brush_mask(s.shape, (10, 10), 3), 12.5)      # doctest: +SKIP
    >>> s.undo(); s.save()                                       # doctest: +SKIP
    """

    def __init__(
        self,
        sample: SampleData,
        *,
        max_undo: int = 500,
        autosave_delay_s: float = 2.0,
        on_change: Callable[[EditSession], None] | None = None,
    ) -> None:
        self.sample = sample
        self.max_undo = max(200, int(max_undo))
        self.autosave_delay_s = float(autosave_delay_s)
        self.on_change = on_change
        self.original = sample.original_um.copy()
        self.original.flags.writeable = False
        _remove_leftover_temps(sample.work_dir)
        #: How many times this sample's correction was saved (stored in the corrected TIFF);
        #: a recovery file is only offered when it was written after the last save.
        self.generation = 0
        if sample.corrected_path.is_file():
            import tifffile

            with tifffile.TiffFile(sample.corrected_path) as tif:
                self.depth = np.asarray(tif.asarray(), dtype=np.float32).copy()
                self.generation = _saved_generation(tif)
        else:
            self.depth = self.original.copy()
        self.saved = self.depth.copy()
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._last_edit_t: float | None = None
        self.prediction_um: np.ndarray | None = None
        self.curves: np.ndarray | None = None
        self.peak_um: np.ndarray | None = None
        self._visited = np.zeros(self.shape, bool)

    # --- basics ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape  # type: ignore[return-value]

    @property
    def focus_um(self) -> np.ndarray:
        return self.sample.focus_um

    @property
    def dirty(self) -> bool:
        """Whether the map differs from the last saved (or loaded) state."""
        return not np.array_equal(self.depth, self.saved)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _mask(self, mask: np.ndarray) -> np.ndarray:
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.shape:
            raise GplwsError(f"The region is {m.shape} but the ground truth is {self.shape}.")
        return m

    def _commit(
        self, op: str, params: dict[str, Any], mask: np.ndarray, values: np.ndarray
    ) -> Edit | None:
        """Set ``depth[mask] = values`` as one undoable, logged step (None if nothing changes)."""
        m = self._mask(mask)
        vals = np.broadcast_to(np.asarray(values, dtype=np.float32), self.shape)
        changed = m & ~((self.depth == vals) | (np.isnan(self.depth) & np.isnan(vals)))
        bb = _bbox(changed)
        if bb is None:
            return None
        y0, y1, x0, x1 = bb
        sub = changed[y0:y1, x0:x1]
        old = self.depth[y0:y1, x0:x1][sub].copy()
        new = np.array(vals[y0:y1, x0:x1][sub], dtype=np.float32)
        e = Edit(op, params, bb, sub, old, new)
        e.apply(self.depth)
        self._undo.append(e)
        if len(self._undo) > self.max_undo:
            del self._undo[0]
        self._redo.clear()
        self._log(op, params, bb, int(sub.sum()), float(np.nanmean(new - old)) if new.size else 0.0)
        self._touched()
        return e

    def _touched(self) -> None:
        self._last_edit_t = time.monotonic()
        if self.on_change is not None:
            self.on_change(self)

    def _log(self, op: str, params: dict[str, Any], bbox: Any, n: int, mean: float) -> None:
        rec = {
            "time": _now(),
            "user": _user(),
            "op": op,
            "params": params,
            "bbox": list(bbox) if bbox is not None else None,
            "pixels_changed": n,
            "mean_change_um": None if not np.isfinite(mean) else round(mean, 6),
        }
        self.sample.work_dir.mkdir(exist_ok=True)
        log = self.sample.log_path
        torn = log.is_file() and log.stat().st_size > 0 and not log.read_bytes().endswith(b"\n")
        with open(log, "a", encoding="utf-8") as f:
            if torn:  # a kill cut the last record short: start the next one on its own line
                f.write("\n")
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_log(self) -> list[dict[str, Any]]:
        """The sample's edit log as a list of records (oldest first).

        A line that is not a complete record (the process was killed while writing it) is
        skipped with a warning naming the file and line.
        """
        import warnings

        p = self.sample.log_path
        if not p.is_file():
            return []
        records = []
        for i, ln in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not ln.strip():
                continue
            try:
                records.append(json.loads(ln))
            except ValueError:
                warnings.warn(
                    f"Skipped line {i} of the edit log '{p}': it is incomplete (the editor was "
                    "probably stopped while writing it).",
                    stacklevel=2,
                )
        return records

    # --- operations --------------------------------------------------------------------
    def set_value(self, mask: np.ndarray, value_um: float, tool: str = "brush") -> Edit | None:
        """Set the region to ``value_um`` (brush or polygon)."""
        return self._commit(
            "set_value", {"value_um": float(value_um), "tool": tool}, mask, np.float32(value_um)
        )

    def set_from_frame(self, mask: np.ndarray, frame_index: int) -> Edit | None:
        """Set the region to the focus position (µm) of frame ``frame_index``."""
        n = len(self.focus_um)
        if not 0 <= int(frame_index) < n:
            raise GplwsError(f"Frame {frame_index} is outside the stack (0–{n - 1}).")
        v = float(self.focus_um[int(frame_index)])
        return self._commit(
            "from_frame", {"frame": int(frame_index), "value_um": v}, mask, np.float32(v)
        )

    def snap_to_peak(self, mask: np.ndarray, k: int = 2) -> Edit | None:
        """Move each region pixel to the sub-frame focus-curve peak within ±``k`` frames.

        Needs :meth:`compute_focus_curves` first.
        """
        if self.curves is None:
            raise GplwsError("Compute the focus curves first (Guidance > compute).")
        m = self._mask(mask)
        n = self.curves.shape[0]
        c = np.rint(position_to_index(self.depth, self.focus_um)).astype(np.int64)
        kk = np.arange(n).reshape(-1, 1, 1)
        inside = np.abs(kk - c[None]) <= int(k)
        masked = np.where(inside, self.curves, -np.inf)
        best = np.argmax(masked, axis=0)
        idx = parabolic_peak(self.curves, best)
        idx = np.clip(idx, c - int(k), c + int(k))
        vals = index_to_position(idx, self.focus_um).astype(np.float32)
        return self._commit("snap_to_peak", {"k": int(k)}, m, np.where(m, vals, self.depth))

    def smooth(self, mask: np.ndarray, sigma_px: float = 2.0) -> Edit | None:
        """Gaussian-smooth the map inside the region (values outside are unchanged)."""
        m = self._mask(mask)
        bb = _bbox(m)
        if bb is None:
            return None
        r = int(np.ceil(3 * sigma_px)) + 1
        y0, y1 = max(0, bb[0] - r), min(self.shape[0], bb[1] + r)
        x0, x1 = max(0, bb[2] - r), min(self.shape[1], bb[3] + r)
        out = self.depth.copy()
        out[y0:y1, x0:x1] = ndi.gaussian_filter(
            self.depth[y0:y1, x0:x1].astype(np.float64), sigma_px, mode="nearest"
        )
        return self._commit("smooth", {"sigma_px": float(sigma_px)}, m, out)

    def fit_plane(self, mask: np.ndarray) -> Edit | None:
        """Replace the region by the least-squares plane ``z = a + b·x + c·y`` through it."""
        m = self._mask(mask)
        ys, xs = np.nonzero(m & np.isfinite(self.depth))
        if ys.size < 3:
            raise GplwsError("Fitting a plane needs a region of at least three pixels.")
        a = np.column_stack([np.ones(ys.size), xs, ys]).astype(np.float64)
        coef, *_ = np.linalg.lstsq(a, self.depth[ys, xs].astype(np.float64), rcond=None)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        plane = coef[0] + coef[1] * xx + coef[2] * yy
        return self._commit("fit_plane", {"coef_um": [float(c) for c in coef]}, m, plane)

    def fill_from_prediction(self, mask: np.ndarray) -> Edit | None:
        """Copy the model prediction (µm) into the region."""
        if self.prediction_um is None:
            raise GplwsError("No model prediction yet; compute it first.")
        return self._commit("fill_from_prediction", {}, mask, self.prediction_um)

    def restore_original(self, mask: np.ndarray) -> Edit | None:
        """Put the original ground truth back inside the region."""
        return self._commit("restore_original", {}, mask, self.original)

    # --- undo / redo -----------------------------------------------------------------
    def undo(self) -> bool:
        """Undo the last change; False when there is none."""
        if not self._undo:
            return False
        e = self._undo.pop()
        e.apply(self.depth, forward=False)
        self._redo.append(e)
        self._log("undo", {"op": e.op}, e.bbox, int(e.mask.sum()), float(np.mean(e.old - e.new)))
        self._touched()
        return True

    def redo(self) -> bool:
        """Redo the last undone change; False when there is none."""
        if not self._redo:
            return False
        e = self._redo.pop()
        e.apply(self.depth)
        self._undo.append(e)
        self._log("redo", {"op": e.op}, e.bbox, int(e.mask.sum()), float(np.mean(e.new - e.old)))
        self._touched()
        return True

    # --- saving and recovery -----------------------------------------------------------
    def save(self) -> Path:
        """Write the corrected map (float32 µm TIFF) atomically and drop the recovery file."""
        import tifffile

        s = self.sample
        s.work_dir.mkdir(exist_ok=True)
        info = {
            "units": UNITS,
            "kind": "depth",
            "corrected_from": s.gt_path.name,
            "gt_encoding": s.encoding.__dict__,
            "focus_um": [float(v) for v in s.focus_um],
            "pixel_size_um": s.stack.pixel_size_um,
            "saved_by": _user(),
            "saved_at": _now(),
            "generation": self.generation + 1,
        }
        data = self.depth.astype(np.float32)
        meta = {"axes": "YX", "Info": json.dumps(info, ensure_ascii=False)}
        atomic_write(
            s.corrected_path,
            lambda tmp: tifffile.imwrite(tmp, data, imagej=True, metadata=meta),
            durable=True,
        )
        self.saved = data.copy()
        self.generation += 1
        self._last_edit_t = None
        # A kill right here leaves a recovery file older than this save; its base generation
        # then no longer matches and it is never offered (see has_recovery).
        s.recovery_path.unlink(missing_ok=True)
        self._log("save", {"path": s.corrected_path.name}, None, 0, 0.0)
        return s.corrected_path

    def write_recovery(self) -> Path:
        """Write the current map to the recovery file (atomically)."""
        s = self.sample
        s.work_dir.mkdir(exist_ok=True)
        data = self.depth.astype(np.float32)
        gen = self.generation

        def _w(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f, depth_um=data, time=np.array(_now()), base_generation=np.array(gen)
                )

        atomic_write(s.recovery_path, _w, durable=True)
        self._last_edit_t = None
        return s.recovery_path

    def autosave_if_due(self, now: float | None = None) -> bool:
        """Write the recovery file if edits are pending and none happened for the delay."""
        if self._last_edit_t is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_edit_t < self.autosave_delay_s:
            return False
        if self.dirty:
            self.write_recovery()
        else:
            self.sample.recovery_path.unlink(missing_ok=True)
            self._last_edit_t = None
        return True

    def has_recovery(self) -> bool:
        """Whether unsaved work from an earlier session is waiting in the recovery file.

        Only work edited *after* the last save counts: the recovery file records the save it
        was based on, and one based on an older save (left by a kill between a save and the
        removal of the recovery file) is stale — it is removed, never offered, so it can
        never replace newer saved labels.
        """
        p = self.sample.recovery_path
        if not p.is_file():
            return False
        try:
            with np.load(p) as z:
                base = int(z["base_generation"]) if "base_generation" in z.files else None
                differs = not np.array_equal(z["depth_um"], self.depth)
        except (OSError, ValueError, KeyError, EOFError):
            return False
        if base is None:  # written by an older version: trust it only if newer than the save
            cp = self.sample.corrected_path
            stale = cp.is_file() and cp.stat().st_mtime >= p.stat().st_mtime
        else:
            stale = base != self.generation
        if stale:
            p.unlink(missing_ok=True)
            return False
        return differs

    def restore_recovery(self) -> Edit | None:
        """Load the recovery file as one undoable step."""
        with np.load(self.sample.recovery_path) as z:
            data = np.asarray(z["depth_um"], dtype=np.float32)
        if data.shape != self.shape:
            raise GplwsError(
                f"The recovery file '{self.sample.recovery_path}' does not match this sample."
            )
        return self._commit("restore_recovery", {}, np.ones(self.shape, bool), data)

    def discard_recovery(self) -> None:
        """Delete the recovery file."""
        self.sample.recovery_path.unlink(missing_ok=True)

    # --- guidance ----------------------------------------------------------------------
    def compute_focus_curves(
        self,
        measure: str = "sml",
        window: int = 9,
        progress: ProgressFn = None,
        cancel: CancelFn = None,
    ) -> np.ndarray:
        """Per-pixel focus curves ``(N, H, W)`` float32 and the sub-frame peak map (µm); cached."""
        from napari_gplws.dff.measures import focus_measure

        if self.curves is None:
            frames = self.sample.stack.frames
            n = frames.shape[0]
            curves = np.empty((n,) + self.shape, np.float32)
            for i in range(n):
                check_cancel(cancel)
                curves[i] = focus_measure(np.asarray(frames[i], dtype=np.float32), measure, window)
                report(progress, i + 1, n)
            self.curves = curves
            self.peak_um = index_to_position(
                parabolic_peak(curves, np.argmax(curves, axis=0)), self.focus_um
            ).astype(np.float32)
        return self.curves

    def compute_prediction(
        self, method: str = "gplws", progress: ProgressFn = None, cancel: CancelFn = None
    ) -> np.ndarray:
        """Run :func:`napari_gplws.reconstruct` on the stack; the depth (µm) is kept."""
        from napari_gplws.api import reconstruct

        rec = reconstruct(self.sample.stack, method=method, progress=progress, cancel=cancel)
        self.prediction_um = np.asarray(rec.depth, dtype=np.float32)
        return self.prediction_um

    def suspect_map(self, threshold_um: float) -> np.ndarray:
        """Pixels whose label disagrees with every reference by > ``threshold_um`` where the
        focus curve peaks clearly (:func:`napari_gplws.annotate.guidance.suspicion`).

        References: the focus-curve peak and the model prediction (each used if computed).
        Low-texture pixels are "unknown", never suspect.
        """
        from napari_gplws.annotate.guidance import suspicion

        refs = (self.peak_um, self.prediction_um)
        return suspicion(self.depth, refs, self.curves, threshold_um).suspect

    def suspect_fraction(self, threshold_um: float) -> float:
        """Fraction of pixels in the suspect map."""
        return float(self.suspect_map(threshold_um).mean())

    def next_suspect_region(self, threshold_um: float) -> dict[str, Any] | None:
        """The suspect region most worth a look (size × disagreement × confidence) not
        returned before: ``{"bbox", "centroid", "pixels", "disagreement_um", "confidence",
        "score"}``.

        ``bbox`` is ``(y0, y1, x0, x1)`` (end exclusive), ``centroid`` ``(y, x)``. None when
        no region remains.
        """
        from napari_gplws.annotate.guidance import rank_regions, suspicion

        refs = (self.peak_um, self.prediction_um)
        guide = suspicion(self.depth, refs, self.curves, threshold_um)
        ranked = rank_regions(guide, exclude=self._visited)
        if not ranked:
            return None
        best = ranked[0]
        y0, y1, x0, x1 = best["bbox"]
        labels, _ = ndi.label(guide.suspect & ~self._visited)
        self._visited[y0:y1, x0:x1] |= labels[y0:y1, x0:x1] == best.pop("label")
        return best

    def reset_suspects(self) -> None:
        """Forget which suspect regions were visited."""
        self._visited[:] = False


def _saved_generation(tif: Any) -> int:
    """The save counter stored in a corrected TIFF's ImageJ ``Info`` (0 when absent)."""
    try:
        info = json.loads((tif.imagej_metadata or {}).get("Info", "{}"))
        return int(info.get("generation", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


def _remove_leftover_temps(work_dir: Path) -> None:
    """Delete temporary files that a killed save left in the sample's ``corrections/`` folder.

    Only files named like the atomic writer's temporaries (``.<name>.<8 hex>.tmp``) are
    removed; they never hold anything that was not also written to its target or discarded.
    """
    import re

    if not work_dir.is_dir():
        return
    pattern = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
    for f in work_dir.iterdir():
        if f.is_file() and pattern.match(f.name):
            f.unlink(missing_ok=True)
