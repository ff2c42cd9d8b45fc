"""Training data of LDSE-NET: real labelled defocus tiles (two layouts), field-grouped
splits, and the batches the trainer draws (augmentation, crops, a ring buffer).

* **Jiang et al. 2018** whole-slide autofocus dataset (:func:`load_jiang_tiles`): training
  tiles named ``Seg{k}_defocus{nm}.jpg`` inside one folder per field of view, test images
  named ``defocus{nm}.jpg`` (also one folder per field). Labels are in **nm**, signed, not
  always on a 0.5 µm grid (``defocus-1234.jpg``, ``Seg3_defocus750.jpg``); they are converted
  to µm. The dataset's sign convention is the authors' (their stage axis); pass
  ``sign=-1`` if it is opposite to yours. Files may be any image format imageio reads.
* **Any focal stack with known focus positions** (:func:`stack_defocus_tiles`): the stack is
  cut into tiles; each tile position's focus curve (mean sum-modified-Laplacian per frame)
  gives its best-focus position (sub-frame Gaussian peak fit, as in
  :mod:`napari_gplws.defocus`), and the label of that tile in frame ``k`` is
  ``focus_um[k] − best focus``. Positions whose curve peaks on the first or last frame, or
  that are blank (:func:`napari_gplws.defocus.content_fraction` of the sharpest frame below
  the threshold), are skipped. This lets users fine-tune on their own microscope without
  labelling anything.

Every tile carries a ``field_id``; :func:`grouped_split` keeps all tiles of a field (the same
place at other focus positions) on one side of a split.

:class:`TileBuffer`, :func:`augment_tiles` and :func:`real_tile_source` feed the training
loop. This module does not render simulated tiles (:mod:`napari_gplws.sim.defocus_tiles`)
nor train (:mod:`.ldse`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gplws.defocus import (
    MIN_CONTENT,
    best_focus_from_curve,
    content_fraction,
    cut_tiles,
    tile_origins,
)
from napari_gplws.errors import StackError
from napari_gplws.sim.defocus_tiles import TileSet
from napari_gplws.stack import FocalStack

if TYPE_CHECKING:
    from napari_gplws.training.ldse_config import LDSETrainConfig

__all__ = [
    "JIANG_PATTERN",
    "TileBuffer",
    "augment_tiles",
    "concat_tilesets",
    "grouped_split",
    "load_jiang_tiles",
    "parse_jiang_name",
    "random_crop",
    "real_tile_source",
    "stack_defocus_tiles",
]

#: File names of the Jiang et al. layout: optional ``Seg{k}_`` then ``defocus{nm}``.
JIANG_PATTERN = re.compile(
    r"^(?:seg(?P<seg>\d+)_)?defocus(?P<nm>[-+]?\d+(?:\.\d+)?)$", re.IGNORECASE
)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def parse_jiang_name(name: str) -> tuple[int | None, float] | None:
    """``(segment or None, defocus in µm)`` from a Jiang et al. file name, else ``None``.

    >>> parse_jiang_name("Seg3_defocus-1250.jpg")
    (3, -1.25)
    >>> parse_jiang_name("defocus730.jpg")
    (None, 0.73)
    """
    m = JIANG_PATTERN.match(Path(name).stem)
    if not m:
        return None
    seg = int(m.group("seg")) if m.group("seg") is not None else None
    return seg, float(m.group("nm")) / 1000.0


def _read_image(p: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        a = np.asarray(iio.imread(p))
    except Exception as exc:  # noqa: BLE001 - turned into a message for a person
        raise StackError(f"Cannot read '{p}' ({type(exc).__name__}: {exc}).") from None
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise StackError(f"'{p}' is not a 2-D grayscale or RGB image (shape {a.shape}).")
    return a


def _to_gray_u8(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        a = a.astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a if a.max() > 1.0 else a * 255), 0, 255)
    return a.astype(np.uint8)


def _centre_crop(a: np.ndarray, tile_px: int, p: Path) -> np.ndarray:
    h, w = a.shape[:2]
    if h < tile_px or w < tile_px:
        raise StackError(f"'{p}' is {h}×{w} px, smaller than a {tile_px}×{tile_px} tile.")
    y, x = (h - tile_px) // 2, (w - tile_px) // 2
    return a[y : y + tile_px, x : x + tile_px]


def load_jiang_tiles(
    root: str | Path,
    split: str = "train",
    tile_px: int = 224,
    *,
    sign: int = 1,
    max_tiles_per_image: int = 12,
) -> TileSet:
    """Tiles and labels from a Jiang et al. 2018-style folder tree.

    Parameters
    ----------
    root
        Folder searched recursively.
    split
        ``"train"``: the ``Seg{k}_defocus{nm}`` tiles (centre-cropped to ``tile_px``);
        ``"test"``: the ``defocus{nm}`` images, cut into non-overlapping ``tile_px`` tiles
        (at most ``max_tiles_per_image``, evenly chosen); ``"all"``: both.
    sign
        ``+1`` keeps the file's sign, ``-1`` flips it.

    Returns
    -------
    TileSet
        Grayscale uint8 tiles; ``field_id`` numbers the folders (one field of view each);
        ``specimen`` holds the relative folder path.

    Raises
    ------
    StackError
        No matching file, or unreadable / too small images.
    """
    root = Path(root)
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all'; got {split!r}.")
    if not root.is_dir():
        raise StackError(f"The Jiang et al. dataset folder '{root}' does not exist.")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
    )
    folders: dict[str, int] = {}
    tiles, labels, fids, names = [], [], [], []
    for p in files:
        parsed = parse_jiang_name(p.name)
        if parsed is None:
            continue
        seg, dz = parsed
        if (split == "train" and seg is None) or (split == "test" and seg is not None):
            continue
        rel = str(p.parent.relative_to(root))
        fid = folders.setdefault(rel, len(folders))
        img = _to_gray_u8(_read_image(p))
        if seg is not None:
            cut = [_centre_crop(img, tile_px, p)]
        else:
            origins = tile_origins(img.shape[:2], tile_px, tile_px)
            if img.shape[0] < tile_px or img.shape[1] < tile_px:
                raise StackError(f"'{p}' is smaller than a {tile_px}×{tile_px} tile.")
            if len(origins) > max_tiles_per_image:
                origins = origins[
                    np.linspace(0, len(origins) - 1, max_tiles_per_image).round().astype(int)
                ]
            cut = list(cut_tiles(img, origins, tile_px))
        tiles += cut
        labels += [sign * dz] * len(cut)
        fids += [fid] * len(cut)
        names += [rel] * len(cut)
    if not tiles:
        raise StackError(
            f"No {'Seg{k}_defocus{nm}' if split == 'train' else 'defocus{nm}'} images found "
            f"under '{root}' (split '{split}'). Expected per-field folders of files like "
            "Seg1_defocus-1500.jpg (training) or defocus-1500.jpg (test), labels in nm."
        )
    return TileSet(
        np.stack(tiles),
        np.asarray(labels, np.float32),
        np.asarray(fids),
        np.asarray(names),
        np.full(len(tiles), -1),
        meta={"source": str(root), "layout": "jiang2018", "split": split},
    )


def stack_defocus_tiles(
    stack: FocalStack | str | Path,
    tile_px: int = 224,
    *,
    stride: int | None = None,
    focus_step_um: float | None = None,
    min_content: float = MIN_CONTENT,
    max_abs_um: float | None = 10.0,
    field_offset: int = 0,
) -> TileSet:
    """Labelled tiles from one focal stack with known focus positions.

    Parameters
    ----------
    stack
        A :class:`FocalStack` with ``focus_um`` or a path :func:`napari_gplws.io.read_stack` reads.
    tile_px, stride
        Tile side and stride (default: no overlap).
    focus_step_um
        Focus step when a path's metadata has no positions.
    min_content
        Blank threshold (:func:`napari_gplws.defocus.content_fraction` of the sharpest frame).
    max_abs_um
        Drop tiles whose label exceeds this magnitude (``None`` keeps all).
    field_offset
        Added to the field ids (one per tile position) so several stacks can be combined.

    Returns
    -------
    TileSet
        Tiles in the stack's dtype (grayscale or RGB); labels ``focus_um[k] − best focus``.

    Raises
    ------
    StackError
        The stack has no focus positions, or no tile position has a bracketed focus peak.
    """
    from napari_gplws.dff.measures import focus_measure

    if not isinstance(stack, FocalStack):
        from napari_gplws.io import read_stack

        stack = read_stack(stack, focus_step_um=focus_step_um)
    if stack.focus_um is None:
        raise StackError(
            f"The stack{' ' + repr(stack.source) if stack.source else ''} has no focus positions; "
            "labels need them (give focus_step_um or a sidecar)."
        )
    frames, pos = stack.frames, stack.focus_um
    origins = tile_origins(stack.shape_yx, tile_px, stride)
    n = len(frames)
    curves = np.zeros((n, len(origins)))
    for k in range(n):
        fm = focus_measure(frames[k], "sml", 9)
        for t, (y, x) in enumerate(origins):
            curves[k, t] = float(fm[y : y + tile_px, x : x + tile_px].mean(dtype=np.float64))
    tiles, labels, fids = [], [], []
    for t, (y, x) in enumerate(origins):
        best = best_focus_from_curve(curves[:, t], pos)
        if not np.isfinite(best):
            continue
        k_sharp = int(np.argmax(curves[:, t]))
        if (
            content_fraction(frames[k_sharp][None, y : y + tile_px, x : x + tile_px])[0]
            < min_content
        ):
            continue
        for k in range(n):
            dz = float(pos[k] - best)
            if max_abs_um is not None and abs(dz) > max_abs_um:
                continue
            tiles.append(frames[k][y : y + tile_px, x : x + tile_px])
            labels.append(dz)
            fids.append(field_offset + t)
    if not tiles:
        raise StackError(
            f"No tile of the stack{' ' + repr(stack.source) if stack.source else ''} has a "
            "focus peak inside the stack (or all are blank); the stack must pass through focus."
        )
    return TileSet(
        np.stack(tiles),
        np.asarray(labels, np.float32),
        np.asarray(fids),
        np.full(len(tiles), str(stack.source or "stack")),
        np.full(len(tiles), -1),
        meta={"source": str(stack.source), "layout": "focal-stack"},
    )


def grouped_split(
    field_id: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` with every field entirely on one side.

    Fields are shuffled with ``seed`` and assigned to validation until it holds about
    ``val_fraction`` of the fields (at least one when there are two or more fields).
    """
    fid = np.asarray(field_id)
    fields = np.unique(fid)
    rng = np.random.default_rng(seed)
    order = rng.permutation(fields)
    n_val = round(val_fraction * len(fields))
    if len(fields) >= 2:
        n_val = min(max(n_val, 1), len(fields) - 1)
    val_fields = set(order[:n_val].tolist())
    is_val = np.array([f in val_fields for f in fid.tolist()], bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def concat_tilesets(sets: Sequence[TileSet]) -> TileSet:
    """Concatenate tile sets, renumbering field ids so fields of different sets stay apart.

    All sets must have tiles of one shape; RGB tiles are reduced to gray when mixed with gray.
    """
    if not sets:
        raise ValueError("No tile sets to concatenate.")
    gray_needed = len({s.tiles.ndim for s in sets}) > 1
    # Mixed dtypes: bring everything to float32 in [0, 1] (the network standardises each
    # tile anyway, so only the relative scale within a tile matters).
    mixed = len({s.tiles.dtype for s in sets}) > 1
    tiles, labels, fids, names, abs_ = [], [], [], [], []
    offset = 0
    for s in sets:
        t = s.tiles
        if gray_needed and t.ndim == 4:
            t = np.stack([_to_gray_u8(x) for x in t])
        if mixed:
            scale = float(np.iinfo(t.dtype).max) if t.dtype.kind in "ui" else 1.0
            t = t.astype(np.float32) / np.float32(scale)
        tiles.append(t)
        labels.append(s.defocus_um)
        _, inv = np.unique(s.field_id, return_inverse=True)
        fids.append(inv + offset)
        offset += int(inv.max()) + 1
        names.append(s.specimen)
        abs_.append(s.aberration)
    meta: dict[str, Any] = {"sources": [s.meta.get("source") for s in sets]}
    return TileSet(
        np.concatenate(tiles),
        np.concatenate(labels),
        np.concatenate(fids),
        np.concatenate(names),
        np.concatenate(abs_),
        meta=meta,
    )


# ------------------------------------------------------------------------------------------
# Training batches: augmentation, crops, the ring buffer, the real-data sampler
# ------------------------------------------------------------------------------------------
def augment_tiles(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90° rotations of a batch ``(B, 1, H, W)`` (one draw per tile)."""
    out = np.empty_like(x)
    for i in range(len(x)):
        t = x[i, 0]
        if rng.random() < 0.5:
            t = t[:, ::-1]
        out[i, 0] = np.rot90(t, int(rng.integers(4)))
    return out


def random_crop(tiles: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The same random ``size × size`` window of every tile ``(M, H, W[, 3])``."""
    h, w = tiles.shape[1:3]
    if h == size and w == size:
        return tiles
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return tiles[:, y : y + size, x : x + size]


class TileBuffer:
    """Ring buffer of prepared tiles ``(N, 1, S, S)`` float32 with labels."""

    def __init__(self, size: int, px: int) -> None:
        self.x = np.zeros((size, 1, px, px), np.float32)
        self.y = np.zeros(size, np.float32)
        self.n = 0
        self.pos = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        for i in range(len(x)):
            self.x[self.pos] = x[i]
            self.y[self.pos] = y[i]
            self.pos = (self.pos + 1) % len(self.y)
            self.n = min(self.n + 1, len(self.y))

    def sample(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, self.n, k)
        return self.x[idx], self.y[idx]


def real_tile_source(
    cfg: LDSETrainConfig, say: Callable[[str], None]
) -> Callable[..., tuple[np.ndarray, np.ndarray]] | None:
    """Sampler over real labelled tiles (training split only), or ``None`` without real data.

    Parameters
    ----------
    cfg
        The run's options: ``jiang`` (a Jiang et al. folder), ``stacks`` (focal stacks with
        focus positions), ``stack_focus_step_um``, ``full_px`` and ``seed`` (of the
        field-grouped split that keeps 15 % of the fields out of training).
    say
        Logger for one line about the data found.

    Returns
    -------
    Callable or None
        ``sample(rng, k, px)`` → ``(tiles (k, px, px[, 3]), defocus µm (k,))``, random
        training tiles cropped to ``px``.
    """
    if not cfg.jiang and not cfg.stacks:
        return None
    sets = []
    if cfg.jiang:
        sets.append(load_jiang_tiles(cfg.jiang, split="train", tile_px=cfg.full_px))
    for path in cfg.stacks:
        sets.append(
            stack_defocus_tiles(path, tile_px=cfg.full_px, focus_step_um=cfg.stack_focus_step_um)
        )
    tiles = concat_tilesets(sets)
    train_idx, _ = grouped_split(tiles.field_id, val_fraction=0.15, seed=cfg.seed)
    n_fields = len(np.unique(tiles.field_id[train_idx]))
    say(f"real data: {len(train_idx)} training tiles from {n_fields} fields")

    def sample(rng: np.random.Generator, k: int, px: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.choice(train_idx, size=k)
        return random_crop(tiles.tiles[idx], px, rng), tiles.defocus_um[idx]

    return sample
