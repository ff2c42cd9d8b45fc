"""Review and hand-correct the ground-truth depth maps of a Micro 3D-style dataset.

This is the whole logic of the *Ground truth editor*; it never imports Qt or napari, so a
script, a notebook or a test drives it exactly as the widget does.

* :class:`AnnotationDataset` opens a dataset root (one folder per sample: numbered frames
  and a ground-truth file found with name patterns, default ``depth*``, ``gt*``,
  ``label*``), keeps a review manifest (``gt_review.json`` at the root: status, note, who
  and when per sample) that is rewritten atomically, and exports the corrected dataset.
* :class:`EditSession` edits one sample's ground truth as a float32 map in µm: brush and
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

Ground-truth encodings read (and written back losslessly by :func:`encode_gt`): 8/16-bit
PNG, BMP or TIFF holding frame indices multiplied by ``1 / gt_scale`` (index =
stored × ``gt_scale``), and float TIFF or ``.npy`` holding µm.

Sample discovery reuses :class:`.datasets.Micro3DDataset` (its folder listing); the frames
are read with :func:`.io.read_stack` so that a focus-position sidecar in the sample folder is
honoured. The ground truth is read here rather than with ``Micro3DDataset[i]`` because the
editor needs the stored values and dtype to write them back unchanged.
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws._shared.files import atomic_write
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.io._read import read_stack
from napari_gplws.stack import (
    FocalStack,
    index_to_position,
    position_to_index,
    uniform_positions,
)

__all__ = [
    "GT_PATTERNS",
    "MANIFEST_NAME",
    "STATUSES",
    "WORK_DIR",
    "AnnotationDataset",
    "Edit",
    "EditSession",
    "GTEncoding",
    "SampleData",
    "brush_mask",
    "encode_gt",
    "find_gt",
    "polygon_mask",
    "read_gt",
    "write_gt",
]

GT_PATTERNS: tuple[str, ...] = ("depth*", "gt*", "label*")
STATUSES: tuple[str, ...] = ("unreviewed", "in progress", "reviewed")
MANIFEST_NAME = "gt_review.json"
WORK_DIR = "corrections"
_GT_EXT = (".png", ".bmp", ".tif", ".tiff", ".npy")
UNITS = "µm"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # pragma: no cover - no login name (containers)
        return "unknown"


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=True)


# ---------------------------------------------------------------------------------------
# Ground-truth files
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GTEncoding:
    """How a ground-truth file stores depth.

    Attributes
    ----------
    kind
        ``"index"`` (integers: frame index = stored × ``scale``) or ``"um"`` (float µm).
    dtype
        Stored dtype name (``"uint8"``, ``"uint16"``, ``"float32"``…).
    suffix
        File extension, lower case (``".png"``, ``".tif"``, ``".npy"``…).
    scale
        Frame index per stored unit (``"index"`` only).
    """

    kind: str
    dtype: str
    suffix: str
    scale: float = 1.0


def find_gt(folder: str | os.PathLike[str], patterns: Sequence[str] = GT_PATTERNS) -> Path:
    """The ground-truth file of a sample folder: the first pattern with exactly one match.

    Patterns are case-insensitive globs tried in order; hidden files, sub-folders and files
    that are not ``.png``/``.bmp``/``.tif``/``.tiff``/``.npy`` are ignored.

    Raises
    ------
    StackError
        No file matches any pattern, or the first matching pattern matches several files.
    """
    d = Path(folder)
    files = [
        p
        for p in sorted(d.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _GT_EXT
    ]
    for pat in patterns:
        hits = [p for p in files if fnmatch.fnmatch(p.name.lower(), pat.lower())]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise StackError(
                f"Sample '{d}' has {len(hits)} files matching the ground-truth pattern {pat!r} "
                f"({', '.join(p.name for p in hits[:4])}); give a pattern that matches one."
            )
    raise StackError(
        f"Sample '{d}' has no ground-truth file matching {', '.join(patterns)}; "
        "name it depth.png (or set the ground-truth pattern)."
    )


def _read_raw(path: Path) -> np.ndarray:
    sfx = path.suffix.lower()
    try:
        if sfx == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif sfx in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise StackError(
            f"Cannot read the ground truth '{path}' ({type(exc).__name__}: {exc}); "
            "re-export it as PNG, TIFF or NPY."
        ) from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if not (np.all(arr[..., 0] == arr[..., 1]) and np.all(arr[..., 0] == arr[..., 2])):
            raise StackError(f"The ground truth '{path}' is a colour image; save it as grayscale.")
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.dtype.kind not in "uif":
        raise StackError(
            f"The ground truth '{path}' must be one 2-D image; got {arr.shape} {arr.dtype}."
        )
    return arr


def read_gt(
    path: str | os.PathLike[str], focus_um: np.ndarray, gt_scale: float = 1.0
) -> tuple[np.ndarray, GTEncoding, np.ndarray]:
    """Read a ground-truth file as float32 depth in µm.

    Parameters
    ----------
    path
        The file (8/16-bit PNG/BMP/TIFF of frame indices, or float TIFF/NPY of µm).
    focus_um
        ``(N,)`` focus positions in µm of the sample's frames.
    gt_scale
        Frame index per stored unit for integer files.

    Returns
    -------
    depth_um : (H, W) float32
    encoding : GTEncoding
    raw : (H, W) the stored array, unchanged
    """
    p = Path(path)
    raw = _read_raw(p)
    if raw.dtype.kind in "ui":
        enc = GTEncoding("index", raw.dtype.name, p.suffix.lower(), float(gt_scale))
        depth = index_to_position(raw.astype(np.float64) * gt_scale, focus_um)
    else:
        enc = GTEncoding("um", raw.dtype.name, p.suffix.lower(), 1.0)
        depth = raw.astype(np.float64)
    return depth.astype(np.float32), enc, raw


def encode_gt(
    depth_um: np.ndarray, focus_um: np.ndarray, enc: GTEncoding, *, strict: bool = True
) -> np.ndarray:
    """Convert a µm map back to ``enc``'s stored values.

    With ``strict`` an integer encoding that cannot hold the values exactly (within 1e-3 of a
    stored unit) raises :class:`GplwsError` instead of rounding silently.
    """
    d = np.asarray(depth_um, dtype=np.float64)
    if enc.kind == "um":
        return d.astype(enc.dtype)
    stored = position_to_index(d, focus_um) / enc.scale
    r = np.rint(stored)
    info = np.iinfo(np.dtype(enc.dtype))
    if strict and (
        np.abs(stored - r).max(initial=0) > 1e-3
        or r.min(initial=0) < info.min
        or r.max(initial=0) > info.max
    ):
        raise GplwsError(
            f"The corrected depth cannot be stored exactly as {enc.dtype} frame indices "
            f"(scale {enc.scale}); write it as float µm instead."
        )
    return np.clip(r, info.min, info.max).astype(enc.dtype)


def write_gt(path: str | os.PathLike[str], raw: np.ndarray) -> Path:
    """Write stored ground-truth values to ``path`` (format from its suffix), atomically."""
    p = Path(path)
    sfx = p.suffix.lower()
    arr = np.asarray(raw)

    def _write(tmp: Path) -> None:
        if sfx == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
        elif sfx in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, arr)
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, arr, extension=sfx)

    return atomic_write(p, _write, durable=True)


# ---------------------------------------------------------------------------------------
# Region masks
# ---------------------------------------------------------------------------------------


def brush_mask(
    shape: tuple[int, int], center_yx: tuple[float, float], radius_px: float
) -> np.ndarray:
    """``(H, W)`` bool disc of ``radius_px`` pixels around ``center_yx``."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center_yx[0]) ** 2 + (xx - center_yx[1]) ** 2 <= radius_px**2


def polygon_mask(shape: tuple[int, int], vertices_yx: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose centres lie inside a polygon ``(K, 2)`` (y, x)."""
    from matplotlib.path import Path as MplPath

    v = np.asarray(vertices_yx, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 3:
        raise GplwsError("A polygon needs at least three (y, x) vertices.")
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    inside = MplPath(v[:, ::-1]).contains_points(pts, radius=1e-9)
    return inside.reshape(shape)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


# ---------------------------------------------------------------------------------------
# Samples and sessions
# ---------------------------------------------------------------------------------------


@dataclass
class SampleData:
    """One loaded sample: the stack, the original ground truth in µm and where it lives."""

    name: str
    folder: Path
    stack: FocalStack
    gt_path: Path
    encoding: GTEncoding
    original_um: np.ndarray
    focus_from: str = ""

    @property
    def focus_um(self) -> np.ndarray:
        """``(N,)`` focus positions in µm."""
        return np.asarray(self.stack.focus_um, dtype=np.float64)

    @property
    def work_dir(self) -> Path:
        return self.folder / WORK_DIR

    @property
    def corrected_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.corrected.tif"

    @property
    def recovery_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.recovery.npz"

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.gt_path.stem}.edits.jsonl"


def load_sample(
    folder: str | os.PathLike[str],
    gt_patterns: Sequence[str] = GT_PATTERNS,
    gt_scale: float = 1.0,
    focus_start_um: float | None = None,
    focus_step_um: float | None = None,
) -> SampleData:
    """Load one sample folder (frames, focus positions, ground truth).

    Focus positions come from ``focus_start_um``/``focus_step_um`` when given, else from a
    sidecar in the folder, else ``0, 1, 2 … µm`` (one µm per frame, stated in ``focus_from``).
    """
    d = Path(folder)
    gt = find_gt(d, gt_patterns)
    kw: dict[str, Any] = {}
    if focus_step_um is not None:
        kw = {"focus_start_um": focus_start_um or 0.0, "focus_step_um": focus_step_um}
    stack = read_stack(d, exclude=[gt.name], **kw)
    focus_from = str(stack.metadata.get("focus_from") or "")
    if stack.focus_um is None:
        stack = stack.with_(focus_um=uniform_positions(stack.n_frames))
        focus_from = "assumed 1 µm per frame (no sidecar, no step given)"
    depth, enc, raw = read_gt(gt, stack.focus_um, gt_scale)
    if raw.shape != stack.shape_yx:
        raise StackError(
            f"The ground truth '{gt}' is {raw.shape} but the frames are {stack.shape_yx}."
        )
    return SampleData(d.name, d, stack, gt, enc, depth, focus_from)


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
    take = lambda i: np.take_along_axis(curves, i[None], 0)[0].astype(np.float64)
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
        if sample.corrected_path.is_file():
            import tifffile

            self.depth = np.asarray(tifffile.imread(sample.corrected_path), dtype=np.float32).copy()
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
        with open(self.sample.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_log(self) -> list[dict[str, Any]]:
        """The sample's edit log as a list of records (oldest first)."""
        p = self.sample.log_path
        if not p.is_file():
            return []
        return [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]

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
        }
        data = self.depth.astype(np.float32)
        meta = {"axes": "YX", "Info": json.dumps(info, ensure_ascii=False)}
        atomic_write(
            s.corrected_path,
            lambda tmp: tifffile.imwrite(tmp, data, imagej=True, metadata=meta),
            durable=True,
        )
        self.saved = data.copy()
        self._last_edit_t = None
        s.recovery_path.unlink(missing_ok=True)
        self._log("save", {"path": s.corrected_path.name}, None, 0, 0.0)
        return s.corrected_path

    def write_recovery(self) -> Path:
        """Write the current map to the recovery file (atomically)."""
        s = self.sample
        s.work_dir.mkdir(exist_ok=True)
        data = self.depth.astype(np.float32)

        def _w(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, depth_um=data, time=np.array(_now()))

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
        """Whether unsaved work from an earlier session is waiting in the recovery file."""
        p = self.sample.recovery_path
        if not p.is_file():
            return False
        try:
            with np.load(p) as z:
                return not np.array_equal(z["depth_um"], self.depth)
        except (OSError, ValueError, KeyError):
            return False

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
        """Pixels where the map disagrees with every available reference by > ``threshold_um``.

        References: the focus-curve peak and the model prediction (each used if computed).
        """
        refs = [r for r in (self.peak_um, self.prediction_um) if r is not None]
        if not refs:
            raise GplwsError("Compute the focus curves or a prediction first.")
        out = np.ones(self.shape, bool)
        for r in refs:
            out &= ~(np.abs(self.depth - r) <= threshold_um)
        return out

    def suspect_fraction(self, threshold_um: float) -> float:
        """Fraction of pixels in the suspect map."""
        return float(self.suspect_map(threshold_um).mean())

    def next_suspect_region(self, threshold_um: float) -> dict[str, Any] | None:
        """The largest suspect region not returned before: ``{"bbox", "centroid", "pixels"}``.

        ``bbox`` is ``(y0, y1, x0, x1)`` (end exclusive), ``centroid`` ``(y, x)``. None when
        no region remains.
        """
        sm = self.suspect_map(threshold_um) & ~self._visited
        lab, n = ndi.label(sm)
        if n == 0:
            return None
        sizes = np.bincount(lab.ravel())[1:]
        i = int(np.argmax(sizes)) + 1
        reg = lab == i
        self._visited |= reg
        bb = _bbox(reg)
        cy, cx = ndi.center_of_mass(reg)
        return {"bbox": bb, "centroid": (float(cy), float(cx)), "pixels": int(sizes[i - 1])}

    def reset_suspects(self) -> None:
        """Forget which suspect regions were visited."""
        self._visited[:] = False


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
        from napari_gplws.training.gplws_data import Micro3DDataset

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
