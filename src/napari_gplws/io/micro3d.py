"""Micro 3D-layout datasets: one folder per sample with its frames and a ground-truth depth map.

The one finder and reader of ground-truth files, used by training, evaluation and the Ground
truth editor alike: :func:`find_gt` picks the file by name patterns (:data:`GT_PATTERNS`),
:func:`read_gt` returns depth in µm and how the file stored it (:class:`GTEncoding`: frame
index × scale in 8/16-bit images, or float µm), :func:`encode_gt` and :func:`write_gt` write
a corrected map back in the same encoding. :func:`propose_gt_scale` recognises the
common encodings from the stored values and the number of frames (frame index, index × 10,
× 100 or × 1000, float µm) and proposes the index scale. :class:`Micro3DDataset` walks a
whole dataset (optionally one split of it) and yields stacks with depth as fractional frame
index.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_gplws._shared.files import atomic_write
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.stack import (
    index_to_position,
    position_to_index,
)

GT_PATTERNS: tuple[str, ...] = ("depth*", "gt*", "label*", "*depth*")
_GT_EXT = (".png", ".bmp", ".tif", ".tiff", ".npy")


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


#: Index scales :func:`propose_gt_scale` tries: stored value × scale = frame index.
GT_SCALES: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)
#: Share of the stored values that must land inside the stack for an encoding to fit.
GT_FIT = 0.95


@dataclass(frozen=True)
class GTScaleProposal:
    """What :func:`propose_gt_scale` found.

    Attributes
    ----------
    kind
        ``"index"`` (stored value × ``scale`` = frame index), ``"um"`` (float µm) or
        ``"unknown"`` (no common encoding fits).
    scale
        The index scale to use (``"index"``; 1.0 otherwise).
    in_range
        Share of the stored values that the *given* scale puts inside the stack's range.
    fits
        Whether the given scale fits (at least :data:`GT_FIT` of the values inside).
    message
        A sentence for people: what was found and what to do.
    """

    kind: str
    scale: float
    in_range: float
    fits: bool
    message: str


def _share_inside(values: np.ndarray, lo: float, hi: float) -> float:
    tol = 1e-6 * max(1.0, abs(hi - lo))
    return float(np.mean((values >= lo - tol) & (values <= hi + tol))) if values.size else 0.0


def propose_gt_scale(
    raw: np.ndarray,
    n_frames: int,
    scale: float = 1.0,
    focus_um: np.ndarray | None = None,
) -> GTScaleProposal:
    """Check a ground-truth file's stored values against the stack and propose its encoding.

    Integer files store the frame index times a factor: the proposal is the largest of
    :data:`GT_SCALES` (1, 0.1, 0.01, 0.001) that puts at least :data:`GT_FIT` of the
    values inside ``[0, n_frames − 1]``. Float files hold µm (values inside the focus
    positions' range) or, failing that, a fractional frame index.

    Parameters
    ----------
    raw
        The stored values (:func:`read_gt_raw`); NaN and inf are ignored.
    n_frames
        Frames in the sample's stack.
    scale
        The index scale in use (frame index per stored unit), checked first.
    focus_um
        The frames' focus positions (µm), to recognise float µm.

    Returns
    -------
    GTScaleProposal

    Examples
    --------
    >>> raw = (np.arange(20) * 100).astype(np.uint16)
    >>> p = propose_gt_scale(raw, 20)
    >>> p.kind, p.scale, p.fits
    ('index', 0.01, False)
    """
    a = np.asarray(raw)
    v = a[np.isfinite(a)].astype(np.float64) if a.dtype.kind == "f" else a.astype(np.float64).ravel()
    top = float(max(int(n_frames) - 1, 0))
    if a.dtype.kind == "f":
        if focus_um is not None and len(focus_um):
            f = np.asarray(focus_um, np.float64)
            share = _share_inside(v, float(f.min()), float(f.max()))
            if share >= GT_FIT:
                return GTScaleProposal(
                    "um", 1.0, share, True,
                    f"The ground truth holds µm ({share:.0%} of the values lie within the focus "
                    "positions); no index scale is needed.",
                )  # fmt: skip
        share = _share_inside(v, 0.0, top)
        return GTScaleProposal(
            "um" if share < GT_FIT else "index", 1.0, share, share >= GT_FIT,
            "The ground truth holds floats that are not within the focus positions; "
            + ("they look like frame indices." if share >= GT_FIT else "check the focus positions."),
        )  # fmt: skip
    share = _share_inside(v * float(scale), 0.0, top)
    fits = share >= GT_FIT
    best = next((s for s in GT_SCALES if _share_inside(v * s, 0.0, top) >= GT_FIT), None)
    if best is None:
        return GTScaleProposal(
            "unknown", float(scale), share, fits,
            f"With index scale {scale:g}, {share:.0%} of the stored values fall inside the "
            f"{n_frames} frames, and no common encoding (index, index × 10, × 100, × 1000) fits; "
            "check the ground-truth files and the number of frames.",
        )  # fmt: skip
    if fits:  # the scale in use fits; a larger one may too, but that is the user's call
        return GTScaleProposal(
            "index", float(scale), share, True,
            f"Index scale {scale:g} fits: {share:.0%} of the stored values fall inside the "
            f"{n_frames} frames.",
        )  # fmt: skip
    factor = "" if best == 1.0 else f" × {1 / best:g}"
    return GTScaleProposal(
        "index", best, share, fits,
        f"With index scale {scale:g}, only {share:.0%} of the stored values fall inside the "
        f"{n_frames} frames (0–{n_frames - 1}); the file looks like frame index{factor}: "
        f"use index scale {best:g}.",
    )  # fmt: skip


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


def read_gt_raw(path: Path) -> np.ndarray:
    """The values stored in a ground-truth file, unchanged: one 2-D gray image.

    Raises
    ------
    StackError
        The file cannot be read, is colour or is not one 2-D image; the message names it.
    """
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
    raw = read_gt_raw(p)
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
# Whole datasets
# ---------------------------------------------------------------------------------------

_IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


@dataclass
class Micro3DSample:
    """One sample folder: frames ``(N, H, W[, 3])`` and depth as fractional frame index."""

    name: str
    frames: np.ndarray
    depth_index: np.ndarray
    focus_um: np.ndarray | None = None


class Micro3DDataset:
    """A Micro 3D-layout dataset: one folder per sample.

    Each sample folder holds the frames as numbered images (sorted in natural order, so
    ``2.png`` comes before ``10.png``) and one ground-truth depth image matched by
    ``gt_pattern``; every other image is a frame.

    Parameters
    ----------
    root
        Dataset folder.
    gt_pattern
        Glob pattern(s) (case-insensitive) of the ground-truth file in each sample folder,
        tried in order as by :func:`find_gt`; default :data:`GT_PATTERNS`.
    gt_units
        ``"index"``: the image holds frame indices, multiplied by ``gt_scale`` to get the
        (0-based) index; ``"um"``: the image holds float µm, converted to a fractional
        index with the focus positions ``focus_start_um + k·focus_step_um``.
    gt_scale
        Factor from stored values to frame index (``"index"`` mode).
    focus_start_um, focus_step_um
        Focus positions for ``"um"`` mode.
    split_file
        Optional file naming the samples to use: a text file with one folder name per line,
        or a JSON object ``{"train": [...], "test": [...]}`` together with ``split``.
    split
        Key of the JSON split file (``"train"`` or ``"test"``).

    Raises
    ------
    StackError
        The folder has no samples, a sample has fewer than two frames, no ground truth,
        or frames of different sizes.
    """

    def __init__(
        self,
        root: str | Path,
        gt_pattern: str | Sequence[str] = GT_PATTERNS,
        gt_units: str = "index",
        gt_scale: float = 1.0,
        focus_start_um: float = 0.0,
        focus_step_um: float = 1.0,
        split_file: str | Path | None = None,
        split: str = "train",
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StackError(f"Dataset folder '{self.root}' does not exist.")
        if gt_units not in ("index", "um"):
            raise StackError(f"gt_units must be 'index' or 'um'; got {gt_units!r}.")
        self.gt_patterns = (gt_pattern,) if isinstance(gt_pattern, str) else tuple(gt_pattern)
        self.gt_units, self.gt_scale = gt_units, float(gt_scale)
        self.focus_start_um, self.focus_step_um = float(focus_start_um), float(focus_step_um)
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if split_file is not None:
            names = self._read_split(Path(split_file), split, names)
        from natsort import natsorted

        self.names: list[str] = natsorted(names)
        if not self.names:
            raise StackError(
                f"No sample folders found in '{self.root}' (expected one sub-folder per stack)."
            )

    def _read_split(self, path: Path, split: str, available: Sequence[str]) -> list[str]:
        if not path.is_file():
            raise StackError(f"Split file '{path}' does not exist.")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if split not in data:
                raise StackError(f"Split file '{path}' has no key {split!r} (keys: {list(data)}).")
            wanted = [str(s) for s in data[split]]
        else:
            wanted = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise StackError(f"Split file '{path}' names samples missing from '{self.root}': {missing[:5]}.")
        return wanted

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Micro3DSample]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Micro3DSample:
        from natsort import natsorted

        folder = self.root / self.names[i]
        gt_path = find_gt(folder, self.gt_patterns)
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXT]
        frame_files = natsorted([p for p in files if p != gt_path], key=lambda p: p.name)
        if len(frame_files) < 2:
            raise StackError(f"Sample '{folder}' has {len(frame_files)} frames; need at least two.")
        frames = [_read_image(p) for p in frame_files]
        if len({f.shape for f in frames}) != 1:
            raise StackError(f"Frames in '{folder}' have different shapes; all frames must match.")
        stack = np.stack(frames)
        if stack.ndim == 4 and stack.shape[-1] == 4:
            stack = stack[..., :3]
        raw = read_gt_raw(gt_path).astype(np.float64)
        if raw.shape != stack.shape[1:3]:
            raise StackError(
                f"Ground truth '{gt_path}' is {raw.shape} but the frames are {stack.shape[1:3]}."
            )
        n = stack.shape[0]
        focus = self.focus_start_um + self.focus_step_um * np.arange(n)
        if self.gt_units == "index":
            depth = raw * self.gt_scale
        else:
            depth = (raw - self.focus_start_um) / self.focus_step_um
        return Micro3DSample(
            self.names[i], stack, np.clip(depth, 0, n - 1).astype(np.float32), focus
        )
