"""Wide-field autofocus QC: signed defocus per region of a frame, and focal error per region
of a stack.

What it does
------------
* :func:`predict_defocus`: LDSE-NET on an ``(M, H, W[, 3])`` array of tiles → signed
  defocus in µm of focus-drive travel per tile (``frame position − best-focus position``;
  the model card says which physical direction positive is).
* :func:`autofocus`: cuts a frame into 224×224 tiles (``stride`` option; the last row and
  column are aligned with the frame's edges so the whole field is covered), rejects mostly
  blank tiles with :func:`content_fraction` (below), runs the rest through the network in
  batches under ``torch.inference_mode``, and aggregates per region of a ``grid`` (3×3 by
  default; a tile belongs to the region holding its centre): the **median** defocus of the
  region's tiles, the **number** of tiles used and the **spread** (robust standard
  deviation, ``1.4826 × MAD``). A region without usable tiles has no estimate: NaN, never 0.
* Given a stack with focus positions, it also finds each region's best-focus position from
  the region's focus curve (mean sum-modified-Laplacian over the region per frame, peak
  refined to a fraction of a frame by a Gaussian fit through the three highest samples), so
  that ``true = frame position − best focus`` and ``error = predicted − true`` per region and
  frame: ``(N, 3, 3)`` arrays plus a table (:meth:`AutofocusResult.table`). A region whose
  curve peaks on the first or last frame has no bracketed focus: its true defocus is NaN.
* :func:`plot_heatmap` draws the grids as a PNG with the values written in the cells, and
  :func:`cli_autofocus` is the ``gplws autofocus`` command.

Blank-tile discriminant
-----------------------
A tile is reduced to its luma in full-scale units (``[0, 1]``: integers divided by their
dtype's maximum) and averaged over 4×4 pixel blocks (which divides pixel noise by 4). Its
**content fraction** is the fraction of blocks that differ from the tile's median block by
more than ``max(0.02, 4 σ)``, where ``σ`` is the block-noise level (the pixel noise,
estimated from the median absolute difference of horizontal neighbours, divided by 4). A
tile whose content fraction is below :data:`MIN_CONTENT` (0.2) is rejected as mostly
blank. Background (clear glass or dark fluorescence background) is flat, so it scores ≈ 0;
textured specimen scores close to 1 even when strongly defocused, as long as some
structure is visible at all.

Other optics: frames whose pixel size differs from the one the weights were trained for
(model card) can be resampled first with ``pixel_size_um=``.

It does not train (:mod:`.train_ldse`) nor define the network (:mod:`.models.ldse`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws._shared.callbacks import CancelFn, ProgressFn, check_cancel, report
from napari_gplws._shared.device import resolve_device
from napari_gplws.errors import GplwsError, StackError
from napari_gplws.stack import FocalStack, index_to_position

__all__ = [
    "BLANK_DEVIATION",
    "CONFIDENT_DIRECTION",
    "MIN_CONTENT",
    "TILE_PX",
    "AutofocusResult",
    "add_autofocus_arguments",
    "autofocus",
    "benchmark",
    "best_focus_from_curve",
    "cli_autofocus",
    "content_fraction",
    "cut_tiles",
    "plot_heatmap",
    "predict_defocus",
    "region_focus_curves",
    "tile_origins",
]

TILE_PX = 224
#: Tiles with less than this fraction of non-background 4×4 blocks are rejected as blank.
MIN_CONTENT = 0.2
#: A region's direction (sign of defocus) counts as trustworthy from this confidence on
#: (``|signed| / magnitude`` = ``|tanh(sign logit)|``). On the packaged weights' held-out
#: test set the sign of such tiles is right far more often than overall (model card,
#: ``test.sign_acc_confident_ge1`` against ``test.sign_acc_ge1``).
CONFIDENT_DIRECTION = 0.5
#: A block counts as content when it differs from the tile's median by more than this
#: (full-scale units, i.e. 2 % of the dtype's range) and by more than 4 noise sigmas.
BLANK_DEVIATION = 0.02
_BLOCK = 4
_LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)


# ------------------------------------------------------------------------------------------
# Tiles
# ------------------------------------------------------------------------------------------
def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    s = list(range(0, length - tile + 1, stride))
    if s[-1] != length - tile:
        s.append(length - tile)
    return s


def tile_origins(
    shape_yx: tuple[int, int], tile_px: int = TILE_PX, stride: int | None = None
) -> np.ndarray:
    """Top-left corners ``(M, 2)`` of tiles covering a frame; the last row/column touch the
    frame's edges. Frames smaller than a tile give one (padded) tile."""
    stride = int(tile_px if stride is None else stride)
    if stride < 1:
        raise ValueError(f"stride must be a positive number of pixels; got {stride}.")
    ys = _starts(int(shape_yx[0]), tile_px, stride)
    xs = _starts(int(shape_yx[1]), tile_px, stride)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64)


def cut_tiles(frame: np.ndarray, origins: np.ndarray, tile_px: int = TILE_PX) -> np.ndarray:
    """Tiles ``(M, T, T[, 3])`` of one frame at ``origins`` (reflect-padded if the frame is small)."""
    f = np.asarray(frame)
    h, w = f.shape[:2]
    if h < tile_px or w < tile_px:
        pad = [(0, max(tile_px - h, 0)), (0, max(tile_px - w, 0))] + [(0, 0)] * (f.ndim - 2)
        f = np.pad(f, pad, mode="reflect" if min(h, w) > 1 else "edge")
    return np.stack([f[y : y + tile_px, x : x + tile_px] for y, x in origins])


def _luma01(tiles: np.ndarray) -> np.ndarray:
    a = np.asarray(tiles)
    scale = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0
    x = a.astype(np.float32) if a.ndim == 3 else a.astype(np.float32) @ _LUMA
    return x / np.float32(scale)


def content_fraction(tiles: np.ndarray) -> np.ndarray:
    """Fraction of 4×4 blocks of each tile that are not background (see module docstring).

    Parameters
    ----------
    tiles
        ``(M, H, W)`` or ``(M, H, W, 3)``; integers are read in units of their dtype's range,
        floats as ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` float in ``[0, 1]``.
    """
    x = _luma01(tiles)
    if x.ndim == 2:
        x = x[None]
    m, h, w = x.shape
    hb, wb = h // _BLOCK, w // _BLOCK
    blocks = x[:, : hb * _BLOCK, : wb * _BLOCK].reshape(m, hb, _BLOCK, wb, _BLOCK).mean(axis=(2, 4))
    # Pixel noise from horizontal neighbour differences (robust to edges): MAD·1.4826/√2.
    d = np.abs(np.diff(x, axis=2)).reshape(m, -1)
    sigma_px = np.median(d, axis=1) * 1.4826 / math.sqrt(2.0)
    thr = np.maximum(BLANK_DEVIATION, 4.0 * sigma_px / _BLOCK)
    med = np.median(blocks.reshape(m, -1), axis=1)
    dev = np.abs(blocks - med[:, None, None])
    return (dev > thr[:, None, None]).reshape(m, -1).mean(axis=1)


# ------------------------------------------------------------------------------------------
# Network
# ------------------------------------------------------------------------------------------
def predict_defocus(
    tiles: np.ndarray,
    *,
    weights: str | Path = "ldse_default",
    device: str = "auto",
    batch_size: int = 64,
    reject_blank: bool = False,
    min_content: float = MIN_CONTENT,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    return_magnitude: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Signed defocus (µm of focus-drive travel) of each tile, by LDSE-NET.

    Parameters
    ----------
    tiles
        ``(M, 224, 224)`` grayscale or ``(M, 224, 224, 3)`` RGB, any integer or float dtype
        (floats are read as ``[0, 1]``); a single ``(224, 224[, 3])`` tile is accepted. Other
        sizes (≥ 32 px) work but are outside what the weights were trained for.
    weights
        Packaged weights name or path to a ``.safetensors`` file.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    batch_size
        Tiles per forward pass.
    reject_blank
        Return NaN for tiles that the blank discriminant rejects (:func:`content_fraction`
        below ``min_content``) instead of a meaningless number.
    progress, cancel
        ``progress(done, total)`` after each batch; ``cancel()`` is checked before each.
    return_magnitude
        Also return the network's unsigned defocus estimate ``|z|`` (µm). The signed value
        is ``magnitude · tanh(sign logit)``: it shrinks towards 0 when the network is unsure
        of the direction, so ``|defocus| ≤ magnitude``; the magnitude says how far out of
        focus a tile is even then.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        ``(M,)`` float32 defocus in µm (NaN for rejected tiles), and with
        ``return_magnitude`` the ``(M,)`` magnitude in µm.

    Raises
    ------
    StackError
        Tiles of the wrong shape.
    ModelError
        Weights missing or device unavailable.
    Cancelled
        When ``cancel()`` returned True.

    Examples
    --------
    >>> tiles = np.random.default_rng(0).integers(0, 255, (2, 224, 224), dtype=np.uint8)
    >>> predict_defocus(tiles, device="cpu").shape  # doctest: +SKIP
    (2,)
    """
    a = np.asarray(tiles)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3 and a.shape[0] != 3 and a.shape[1] > 3):
        a = a[None]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or min(a.shape[1:3]) < 32:
        raise StackError(f"Tiles must be (M, 224, 224) or (M, 224, 224, 3); got shape {a.shape}.")
    if a.dtype.kind not in "uif":
        raise StackError(f"Unsupported tile dtype {a.dtype}; use integer or float data.")
    import torch

    from napari_gplws.models.ldse import load_ldse, prepare_tiles

    dev = resolve_device(device)
    model = load_ldse(weights, dev)
    out = np.full(len(a), np.nan, np.float32)
    mag = np.full(len(a), np.nan, np.float32)
    keep = np.ones(len(a), bool)
    if reject_blank:
        keep = content_fraction(a) >= min_content
    idx = np.flatnonzero(keep)
    total = max(math.ceil(len(idx) / batch_size), 1)
    with torch.inference_mode():
        for b, i in enumerate(range(0, len(idx), batch_size)):
            check_cancel(cancel)
            sel = idx[i : i + batch_size]
            x = torch.from_numpy(prepare_tiles(a[sel])).to(dev)
            x = x.contiguous(memory_format=torch.channels_last)
            m, s = model.forward_parts(x)
            mag[sel] = m.float().cpu().numpy()
            out[sel] = (m * torch.tanh(s)).float().cpu().numpy()
            report(progress, b + 1, total)
    return (out, mag) if return_magnitude else out


# ------------------------------------------------------------------------------------------
# Focus curves (stack mode)
# ------------------------------------------------------------------------------------------
def _region_index(
    origins: np.ndarray, tile_px: int, shape_yx: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    cy = np.minimum(origins[:, 0] + tile_px / 2, shape_yx[0] - 1e-6)
    cx = np.minimum(origins[:, 1] + tile_px / 2, shape_yx[1] - 1e-6)
    ry = np.clip((cy * grid[0] / shape_yx[0]).astype(int), 0, grid[0] - 1)
    rx = np.clip((cx * grid[1] / shape_yx[1]).astype(int), 0, grid[1] - 1)
    return np.stack([ry, rx], axis=1)


def _region_bounds(
    shape_yx: tuple[int, int], grid: tuple[int, int]
) -> list[list[tuple[int, int, int, int]]]:
    ys = np.linspace(0, shape_yx[0], grid[0] + 1).round().astype(int)
    xs = np.linspace(0, shape_yx[1], grid[1] + 1).round().astype(int)
    return [[(ys[i], ys[i + 1], xs[j], xs[j + 1]) for j in range(grid[1])] for i in range(grid[0])]


def region_focus_curves(
    frames: np.ndarray,
    grid: tuple[int, int] = (3, 3),
    *,
    window: int = 9,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> np.ndarray:
    """Focus curve of each region: mean sum-modified-Laplacian (``window``) per frame.

    Parameters
    ----------
    frames
        ``(N, H, W[, 3])``.
    grid
        Regions ``(rows, columns)``; region ``(i, j)`` spans equal fractions of the frame.

    Returns
    -------
    numpy.ndarray
        ``(N, rows, cols)`` float64.
    """
    from napari_gplws.dff.measures import focus_measure

    n = len(frames)
    h, w = frames.shape[1:3]
    bounds = _region_bounds((h, w), grid)
    curves = np.zeros((n, grid[0], grid[1]))
    for k in range(n):
        check_cancel(cancel)
        fm = focus_measure(frames[k], "sml", window)
        for i in range(grid[0]):
            for j in range(grid[1]):
                y0, y1, x0, x1 = bounds[i][j]
                curves[k, i, j] = float(fm[y0:y1, x0:x1].mean(dtype=np.float64))
        report(progress, k + 1, n)
    return curves


def best_focus_from_curve(curve: np.ndarray, positions: np.ndarray) -> float:
    """Best-focus position (same unit as ``positions``) of one focus curve, or NaN.

    The maximum is refined by the vertex of a Gaussian (parabola in log) through it and its
    two neighbours; a maximum on the first or last frame is not bracketed and gives NaN, as
    does a flat curve.
    """
    c = np.asarray(curve, np.float64)
    k = int(np.argmax(c))
    if k == 0 or k == len(c) - 1 or not np.isfinite(c[k]) or c.max() <= c.min():
        return float("nan")
    l, m, r = np.log(np.maximum(c[k - 1 : k + 2], 1e-300))
    den = l - 2 * m + r
    off = 0.0 if den >= 0 else float(np.clip(0.5 * (l - r) / den, -0.5, 0.5))
    return float(index_to_position(np.array([k + off]), np.asarray(positions, np.float64))[0])


# ------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------
@dataclass
class AutofocusResult:
    """Per-region defocus of one frame or of the frames of a stack.

    All defocus values are in µm of focus-drive travel, ``frame position − best focus``.
    Arrays are indexed ``[frame, row, column]``; NaN means "no estimate".

    Attributes
    ----------
    frames
        ``(N,)`` indices of the frames analysed (``[0]`` for a single image).
    focus_um
        ``(N,)`` focus positions of those frames, or ``None`` for a single image.
    predicted_um, spread_um
        ``(N, rows, cols)`` median and robust spread (1.4826·MAD) of the tiles' predictions.
    magnitude_um
        ``(N, rows, cols)`` median of the tiles' unsigned defocus estimates (how far out of
        focus, whatever the direction; see :func:`predict_defocus`).
    n_tiles
        ``(N, rows, cols)`` number of tiles used per region (blank tiles excluded).
    true_um, error_um
        ``(N, rows, cols)`` true defocus from the regions' focus curves and
        ``predicted − true``; ``None`` without a stack with focus positions.
    best_focus_um
        ``(rows, cols)`` best-focus position of each region, or ``None``.
    tile_origins, tile_region
        ``(M, 2)`` tile corners (pixels) and the region of each tile.
    tile_defocus_um, tile_content
        ``(N, M)`` per-tile prediction (NaN when rejected) and content fraction.
    single_frame_um
        With ``combine_frames=True``: ``(N, rows, cols)`` each frame's own prediction, while
        :attr:`predicted_um` holds ``position − fitted best focus`` (see
        :mod:`.defocus_fit`); ``None`` otherwise.
    fitted_best_focus_um, fit_residual_um
        ``(rows, cols)`` best-focus position fitted to the frames' magnitudes and the rms
        misfit of that fit (µm); ``None`` unless frames were combined.
    fit_confidence
        ``(N, rows, cols)`` direction confidence of the combined values (``None`` unless
        combined); :attr:`direction_confidence` returns it when present.
    """

    frames: np.ndarray
    focus_um: np.ndarray | None
    predicted_um: np.ndarray
    spread_um: np.ndarray
    n_tiles: np.ndarray
    true_um: np.ndarray | None
    error_um: np.ndarray | None
    best_focus_um: np.ndarray | None
    tile_origins: np.ndarray
    tile_region: np.ndarray
    tile_defocus_um: np.ndarray
    tile_content: np.ndarray
    grid: tuple[int, int]
    tile_px: int
    stride: int
    shape_yx: tuple[int, int]
    magnitude_um: np.ndarray | None = None
    units: str = "µm"
    min_content: float = MIN_CONTENT
    weights: str = "ldse_default"
    timings: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    single_frame_um: np.ndarray | None = None
    fitted_best_focus_um: np.ndarray | None = None
    fit_confidence: np.ndarray | None = None
    fit_residual_um: np.ndarray | None = None

    @property
    def combined(self) -> bool:
        """True when :attr:`predicted_um` combines the frames (``combine_frames=True``)."""
        return self.fitted_best_focus_um is not None

    @property
    def has_truth(self) -> bool:
        return self.true_um is not None

    @property
    def direction_confidence(self) -> np.ndarray | None:
        """``(N, rows, cols)`` in [0, 1]: how sure the network is of each region's direction.

        ``|predicted| / magnitude``: the signed output is ``magnitude · tanh(sign logit)``, so
        this is ``|tanh|`` of the region's median tiles, 0 for a coin flip and 1 for
        certainty. From :data:`CONFIDENT_DIRECTION` on, the direction is trustworthy (see
        the model card); below it read only the magnitude. NaN where there is no estimate;
        ``None`` when the magnitude is unknown. When frames were combined, the confidence of
        the fit (:mod:`.defocus_fit`, same scale).
        """
        if self.fit_confidence is not None:
            return self.fit_confidence
        if self.magnitude_um is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.abs(self.predicted_um) / self.magnitude_um
        c = np.where(self.magnitude_um > 0, np.clip(c, 0.0, 1.0), 0.0)
        return np.where(np.isfinite(self.predicted_um), c, np.nan)

    def table(self) -> list[dict[str, Any]]:
        """One row per (frame, region): frame, focus_um, row, col, predicted_um, spread_um,
        n_tiles, direction_confidence and, with a stack, true_um, error_um, best_focus_um
        (NaN -> ``None``)."""
        rows = []
        conf = self.direction_confidence
        for f, k in enumerate(self.frames):
            for i in range(self.grid[0]):
                for j in range(self.grid[1]):
                    r: dict[str, Any] = {
                        "frame": int(k),
                        "focus_um": None if self.focus_um is None else float(self.focus_um[f]),
                        "row": i,
                        "col": j,
                        "predicted_um": _num(self.predicted_um[f, i, j]),
                        "spread_um": _num(self.spread_um[f, i, j]),
                        "magnitude_um": None
                        if self.magnitude_um is None
                        else _num(self.magnitude_um[f, i, j]),
                        "direction_confidence": None
                        if conf is None
                        else _num(conf[f, i, j]),
                        "n_tiles": int(self.n_tiles[f, i, j]),
                    }
                    if self.combined:
                        r["single_frame_um"] = _num(self.single_frame_um[f, i, j])
                        r["fitted_best_focus_um"] = _num(self.fitted_best_focus_um[i, j])
                        r["fit_residual_um"] = _num(self.fit_residual_um[i, j])
                    if (
                        self.true_um is not None
                        and self.error_um is not None
                        and self.best_focus_um is not None
                    ):
                        r["true_um"] = _num(self.true_um[f, i, j])
                        r["error_um"] = _num(self.error_um[f, i, j])
                        r["best_focus_um"] = _num(self.best_focus_um[i, j])
                    rows.append(r)
        return rows

    def summary(self) -> dict[str, Any]:
        """Aggregate figures: mean |error|, fraction within 0.5 µm, tiles used/rejected."""
        s: dict[str, Any] = {
            "frames": len(self.frames),
            "grid": list(self.grid),
            "tiles_per_frame": int(self.tile_origins.shape[0]),
            "tiles_rejected": int(np.isnan(self.tile_defocus_um).sum()),
            "timings_s": self.timings,
        }
        if self.error_um is not None:
            e = np.abs(self.error_um[np.isfinite(self.error_um)])
            s["mean_abs_error_um"] = float(e.mean()) if e.size else None
            s["median_abs_error_um"] = float(np.median(e)) if e.size else None
            s["within_0_5_um"] = float((e <= 0.5).mean()) if e.size else None
        return s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (grids as nested lists, NaN as ``None``)."""
        d: dict[str, Any] = {
            "units": self.units,
            "source": self.source,
            "weights": self.weights,
            "defocus_convention": "frame position − best-focus position (µm of focus-drive travel)",
            "grid": list(self.grid),
            "tile_px": self.tile_px,
            "stride": self.stride,
            "shape_yx": list(self.shape_yx),
            "min_content": self.min_content,
            "frames": [int(v) for v in self.frames],
            "focus_um": None if self.focus_um is None else [float(v) for v in self.focus_um],
            "predicted_um": _nested(self.predicted_um),
            "spread_um": _nested(self.spread_um),
            "magnitude_um": _nested(self.magnitude_um),
            "direction_confidence": _nested(self.direction_confidence),
            "confident_direction_threshold": CONFIDENT_DIRECTION,
            "n_tiles": self.n_tiles.tolist(),
            "summary": self.summary(),
            "combined_frames": self.combined,
        }
        if self.combined:
            d["single_frame_um"] = _nested(self.single_frame_um)
            d["fitted_best_focus_um"] = _nested(self.fitted_best_focus_um)
            d["fit_residual_um"] = _nested(self.fit_residual_um)
        if self.true_um is not None:
            d["true_um"] = _nested(self.true_um)
            d["error_um"] = _nested(self.error_um)
            d["best_focus_um"] = _nested(self.best_focus_um)
        return d

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`table` as CSV (empty cells for NaN)."""
        path = Path(path)
        rows = self.table()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return path

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(
            json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return path

    def format_table(self, frame: int | None = None, digits: int = 2) -> str:
        """Text grid of one analysed frame (default: the first), e.g. for the terminal.

        Each cell reads ``predicted`` or ``predicted / true / error`` in µm, ``–`` for NaN;
        a ``?`` after the prediction marks a direction the network is unsure of
        (:attr:`direction_confidence` below :data:`CONFIDENT_DIRECTION`).
        """
        conf = self.direction_confidence
        f = 0 if frame is None else int(np.flatnonzero(self.frames == frame)[0])
        head = f"frame {int(self.frames[f])}"
        if self.focus_um is not None:
            head += f" at {self.focus_um[f]:g} µm"
        # Two frames (or a stack that misses the focus) give no truth anywhere: no "– / –".
        show_truth = self.has_truth and bool(np.isfinite(np.asarray(self.true_um, float)).any())
        head += ": " + (
            "predicted / true / error (µm)" if show_truth else "predicted defocus (µm)"
        )
        if self.combined:
            head += f", direction from all {len(self.frames)} frames' focus positions"

        cells = []
        any_unsure = False
        for i in range(self.grid[0]):
            row = []
            for j in range(self.grid[1]):
                vals = [self.predicted_um[f, i, j]]
                if show_truth and self.true_um is not None and self.error_um is not None:
                    vals += [self.true_um[f, i, j], self.error_um[f, i, j]]
                texts = ["–" if not np.isfinite(v) else f"{v:+.{digits}f}" for v in vals]
                unsure = conf is not None and conf[f, i, j] < CONFIDENT_DIRECTION
                if unsure:
                    texts[0] += "?"
                    any_unsure = True
                row.append(f"{' / '.join(texts)} (n={int(self.n_tiles[f, i, j])})")
            cells.append(row)
        width = max(len(c) for r in cells for c in r)
        lines = [head] + [" | ".join(c.rjust(width) for c in r) for r in cells]
        if any_unsure:
            lines.append(
                f"? = direction uncertain (confidence < {CONFIDENT_DIRECTION}): trust the size, "
                "not the sign"
            )
        return "\n".join(lines)


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _nested(a: np.ndarray | None) -> Any:
    """Nested lists of floats with NaN as ``None`` (JSON has no NaN)."""
    if a is None:
        return None
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), a, None).tolist()


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med))) if v.size > 1 else 0.0


# ------------------------------------------------------------------------------------------
# Main entry
# ------------------------------------------------------------------------------------------
def _as_frames(
    image_or_stack: Any, focus_positions: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray | None, bool, str | None, float | None]:
    """(frames (N,H,W[,3]), positions or None, is_stack, source, pixel size)."""
    if isinstance(image_or_stack, FocalStack):
        st = image_or_stack
        pos = st.focus_um if focus_positions is None else np.asarray(focus_positions, np.float64)
        if pos is not None and len(pos) != st.n_frames:
            raise StackError(f"Got {len(pos)} focus positions for {st.n_frames} frames.")
        return st.frames, pos, True, st.source, st.pixel_size_um
    a = np.asarray(image_or_stack)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3 and focus_positions is None):
        return a[None], None, False, None, None
    if a.ndim in (3, 4):
        st = FocalStack(a, focus_um=focus_positions)
        return st.frames, st.focus_um, True, None, None
    raise StackError(
        f"autofocus needs one frame (H, W) / (H, W, 3) or a stack (N, H, W[, 3]); got shape {a.shape}."
    )


def _model_pixel_size(weights: str | Path) -> float | None:
    try:
        from napari_gplws.models.registry import model_card

        return float(model_card(weights).get("optics", {}).get("pixel_size_um"))
    except Exception:  # noqa: BLE001 - no card: no resampling
        return None


def autofocus(
    image_or_stack: Any,
    focus_positions: Sequence[float] | None = None,
    frame: int | None = None,
    grid: tuple[int, int] = (3, 3),
    device: str = "auto",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    *,
    stride: int | None = None,
    tile_px: int = TILE_PX,
    min_content: float = MIN_CONTENT,
    weights: str | Path = "ldse_default",
    pixel_size_um: float | None = None,
    batch_size: int = 64,
    combine_frames: bool = False,
) -> AutofocusResult:
    """Signed defocus per region of a frame; with a stack, also the true defocus and error.

    Parameters
    ----------
    image_or_stack
        One frame ``(H, W)`` / ``(H, W, 3)``, an ``(N, H, W[, 3])`` array or a
        :class:`~.stack.FocalStack`. A 3-D array whose last axis is 3 is read as one RGB
        frame unless ``focus_positions`` are given.
    focus_positions
        ``(N,)`` focus-drive positions in µm for an array stack (overrides a stack's own).
        Without positions a stack still gets predictions, but no true defocus or error.
    frame
        Analyse only this frame of a stack (0-based); default all frames.
    grid
        Regions ``(rows, columns)``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    progress, cancel
        ``progress(done, total)`` over frames (and focus curves); ``cancel()`` raises
        :class:`~.errors.Cancelled` between batches.
    stride
        Tile stride in pixels (default ``tile_px``: no overlap).
    tile_px
        Tile side (224 for the packaged weights).
    min_content
        Blank-tile threshold on :func:`content_fraction`.
    weights
        Packaged weights name or ``.safetensors`` path.
    pixel_size_um
        Pixel size of the frames (default: the stack's). When it differs from the
        weights' by more than 5 %, frames are resampled to the weights' pixel size first.
    batch_size
        Tiles per forward pass.
    combine_frames
        With a stack of two or more frames and their focus positions: settle each region's
        direction from all frames together (the best-focus position that fits every
        frame's "how far" estimate, :mod:`.defocus_fit`) instead of each frame's own sign.
        Two frames a known step apart are enough and need not bracket the focus; the
        single-frame values stay in :attr:`AutofocusResult.single_frame_um`.

    Returns
    -------
    AutofocusResult

    Raises
    ------
    StackError
        Bad shapes or frame index. ModelError: weights or device unavailable.
    Cancelled
        When ``cancel()`` returned True.
    """
    t_start = time.perf_counter()
    frames, positions, is_stack, source, px_stack = _as_frames(image_or_stack, focus_positions)
    grid = (int(grid[0]), int(grid[1]))
    if grid[0] < 1 or grid[1] < 1:
        raise StackError(f"grid must be at least (1, 1); got {grid}.")
    n = len(frames)
    if frame is not None:
        if not is_stack and frame not in (0, -1):
            raise StackError(f"frame={frame} was given but the input is a single image.")
        if not -n <= frame < n:
            raise StackError(
                f"frame {frame} is out of range for a stack of {n} frames (0…{n - 1})."
            )
        todo = np.array([frame % n])
    else:
        todo = np.arange(n)
    if combine_frames:
        why = (
            "the input is one image"
            if not is_stack
            else "the stack has no focus positions"
            if positions is None
            else f"only frame {frame} was chosen"
            if frame is not None
            else "the stack has one frame"
            if n < 2
            else ""
        )
        if why:
            raise StackError(
                f"Combining frames needs two or more frames with their focus positions in µm, "
                f"analysed together, but {why}. Give the focus step or positions and all "
                "frames, or analyse without combining."
            )
    px = pixel_size_um if pixel_size_um is not None else px_stack
    target_px = _model_pixel_size(weights) if px is not None else None
    if px is not None and target_px and abs(px / target_px - 1) > 0.05:
        from scipy import ndimage as ndi

        z = px / target_px
        zoom = (1, z, z) + ((1,) if frames.ndim == 4 else ())
        frames = ndi.zoom(frames, zoom, order=1)
    h, w = frames.shape[1:3]
    stride = int(tile_px if stride is None else stride)
    origins = tile_origins((h, w), tile_px, stride)
    regions = _region_index(origins, tile_px, (h, w), grid)
    m = len(origins)
    timings: dict[str, float] = {}

    # Stack mode with positions: the regions' focus curves give the truth.
    total_steps = len(todo) + (n if (is_stack and positions is not None) else 0)
    done = 0
    best = true = err = None
    if is_stack and positions is not None:
        t0 = time.perf_counter()

        def prog(k: int, _tot: int) -> None:
            report(progress, k, total_steps)

        curves = region_focus_curves(frames, grid, progress=prog, cancel=cancel)
        best = np.array(
            [
                [best_focus_from_curve(curves[:, i, j], positions) for j in range(grid[1])]
                for i in range(grid[0])
            ]
        )
        true = positions[todo][:, None, None] - best[None]
        timings["focus_curves_s"] = time.perf_counter() - t0
        done = n

    t0 = time.perf_counter()
    tile_pred = np.full((len(todo), m), np.nan, np.float32)
    tile_mag = np.full((len(todo), m), np.nan, np.float32)
    tile_content = np.zeros((len(todo), m), np.float32)
    for f, k in enumerate(todo):
        check_cancel(cancel)
        tiles = cut_tiles(frames[k], origins, tile_px)
        content = content_fraction(tiles)
        tile_content[f] = content
        keep = content >= min_content
        if keep.any():
            tile_pred[f, keep], tile_mag[f, keep] = predict_defocus(
                tiles[keep],
                weights=weights,
                device=device,
                batch_size=batch_size,
                cancel=cancel,
                return_magnitude=True,
            )
        done += 1
        report(progress, done, total_steps)
    timings["network_s"] = time.perf_counter() - t0

    pred = np.full((len(todo), grid[0], grid[1]), np.nan)
    spread = np.full_like(pred, np.nan)
    magnitude = np.full_like(pred, np.nan)
    count = np.zeros(pred.shape, np.int64)
    for f in range(len(todo)):
        for i in range(grid[0]):
            for j in range(grid[1]):
                sel = (regions[:, 0] == i) & (regions[:, 1] == j)
                vals = tile_pred[f, sel]
                count[f, i, j] = int(np.isfinite(vals).sum())
                pred[f, i, j], spread[f, i, j] = _robust_stats(vals)
                magnitude[f, i, j] = _robust_stats(tile_mag[f, sel])[0]
    fit = _combine_frames(pred, magnitude, count, positions) if combine_frames else None
    single = None
    if fit is not None:
        single, pred = pred, fit["defocus"]
    if true is not None:
        err = pred - true
    timings["total_s"] = time.perf_counter() - t_start
    return AutofocusResult(
        frames=todo,
        focus_um=None if positions is None else positions[todo],
        predicted_um=pred,
        spread_um=spread,
        n_tiles=count,
        true_um=true,
        error_um=err,
        best_focus_um=best,
        tile_origins=origins,
        tile_region=regions,
        tile_defocus_um=tile_pred,
        tile_content=tile_content,
        grid=grid,
        tile_px=tile_px,
        stride=stride,
        shape_yx=(h, w),
        magnitude_um=magnitude,
        min_content=min_content,
        weights=str(weights),
        timings=timings,
        source=source,
        single_frame_um=single,
        fitted_best_focus_um=None if fit is None else fit["best"],
        fit_confidence=None if fit is None else fit["confidence"],
        fit_residual_um=None if fit is None else fit["residual"],
    )


def _combine_frames(
    pred: np.ndarray, magnitude: np.ndarray, count: np.ndarray, positions: np.ndarray
) -> dict[str, np.ndarray]:
    """Per region, fit one best-focus position to all frames' magnitudes (:mod:`.defocus_fit`)."""
    from napari_gplws.defocus.fit import fit_best_focus

    _, rows, cols = pred.shape
    out = {
        "defocus": np.full(pred.shape, np.nan),
        "confidence": np.full(pred.shape, np.nan),
        "best": np.full((rows, cols), np.nan),
        "residual": np.full((rows, cols), np.nan),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        # The region's sign logit: its median signed value is magnitude · tanh(logit).
        logit = np.arctanh(np.clip(pred / magnitude, -0.999, 0.999))
    for i in range(rows):
        for j in range(cols):
            f = fit_best_focus(
                positions, magnitude[:, i, j], logit[:, i, j], weights=count[:, i, j]
            )
            out["defocus"][:, i, j] = np.where(
                np.isfinite(magnitude[:, i, j]), f.defocus_um, np.nan
            )
            out["confidence"][:, i, j] = np.where(
                np.isfinite(magnitude[:, i, j]), f.confidence, np.nan
            )
            out["best"][i, j] = f.best_focus_um
            out["residual"][i, j] = f.rms_residual_um
    return out


# ------------------------------------------------------------------------------------------
# Speed
# ------------------------------------------------------------------------------------------
def benchmark(
    device: str = "cpu",
    repeats: int = 3,
    weights: str | Path = "ldse_default",
    shape_yx: tuple[int, int] = (1944, 2592),
    batch_size: int = 64,
) -> dict[str, Any]:
    """Speed of the autofocus path, for ``gplws bench``.

    Returns the median over ``repeats`` of (a) milliseconds per 224×224 tile at batch
    ``batch_size`` (network only, after one warm-up batch) and (b) seconds for the full 3×3
    map of one ``shape_yx`` uint8 frame (tiling, blank test, network, aggregation), plus the
    tile count and torch thread count. Uses the packaged weights, or an untrained network of
    the same architecture when they are absent (same cost).
    """
    import torch

    from napari_gplws.models.ldse import LDSENet, load_ldse, prepare_tiles
    from napari_gplws.models.registry import weights_path

    dev = resolve_device(device)
    if not weights_path(weights).is_file():
        import tempfile

        from napari_gplws.models.ldse import save_ldse

        tmp = Path(tempfile.mkdtemp()) / "bench.safetensors"
        weights = save_ldse(LDSENet().eval(), tmp, {"optics": {}})
    model = load_ldse(weights, dev)
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    frame = ndi.gaussian_filter(rng.random(shape_yx, dtype=np.float32), 2.0)
    frame = np.clip((frame - frame.mean()) / frame.std() * 40 + 128, 0, 255).astype(np.uint8)
    tiles = torch.from_numpy(prepare_tiles(cut_tiles(frame, tile_origins(shape_yx)[:batch_size])))
    tiles = tiles[:batch_size].to(dev).contiguous(memory_format=torch.channels_last)
    per_tile, full = [], []
    with torch.inference_mode():
        model(tiles)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(tiles)
            if str(dev).startswith("cuda"):
                torch.cuda.synchronize()
            per_tile.append((time.perf_counter() - t0) / len(tiles) * 1000)
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = autofocus(frame, device=device, weights=weights, batch_size=batch_size)
        full.append(time.perf_counter() - t0)
    # Baseline in the same process: the classical |z|-only estimate of the model card (mean
    # sum-modified-Laplacian of each standardised tile), on the same tiles.
    from napari_gplws.dff.measures import focus_measure

    plain = prepare_tiles(cut_tiles(frame, tile_origins(shape_yx)[:batch_size]))[:, 0]
    classical = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in plain:
            float(focus_measure(t, "sml", 9).mean())
        classical.append((time.perf_counter() - t0) / len(plain) * 1000)
    return {
        "device": dev,
        "threads": torch.get_num_threads(),
        "ms_per_tile_batch64": float(np.median(per_tile)),
        "classical_ms_per_tile": float(np.median(classical)),
        "full_map_s": float(np.median(full)),
        "frame": f"{shape_yx[1]}x{shape_yx[0]}",
        "tiles": len(res.tile_origins),
    }


# ------------------------------------------------------------------------------------------
# Heatmap
# ------------------------------------------------------------------------------------------
def plot_heatmap(
    result: AutofocusResult,
    path: str | Path,
    frame: int | None = None,
    image: np.ndarray | None = None,
    vmax_um: float | None = None,
) -> Path:
    """Write a PNG of the region grids of one analysed frame, values written in the cells.

    Panels: predicted defocus, and with a stack the true defocus and the focal error
    (µm; diverging colour map centred on 0; empty cells = no estimate; ``?`` after a
    prediction whose direction is uncertain, see :attr:`AutofocusResult.direction_confidence`).
    When ``image``
    (that frame) is given, it is drawn in gray under the predicted panel.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise GplwsError("Drawing the heatmap needs matplotlib: pip install matplotlib.") from None

    f = 0 if frame is None else int(np.flatnonzero(result.frames == frame)[0])
    panels = [("predicted", result.predicted_um[f])]
    if (
        result.true_um is not None
        and result.error_um is not None
        and np.isfinite(result.true_um).any()  # two frames: no truth, no empty panels
    ):
        panels += [("true", result.true_um[f]), ("error = predicted − true", result.error_um[f])]
    finite = np.concatenate([np.abs(p[np.isfinite(p)]).ravel() for _, p in panels] + [np.zeros(1)])
    vmax = vmax_um or max(float(finite.max()), 0.5)
    conf = result.direction_confidence
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    h, w = result.shape_yx
    for ax, (title, grid_vals) in zip(axes[0], panels):
        extent = (0, w, h, 0)
        if image is not None and title == "predicted":
            img = np.asarray(image)
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", extent=extent)
            alpha = 0.55
        else:
            alpha = 1.0
        im = ax.imshow(
            np.ma.masked_invalid(grid_vals),
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            alpha=alpha,
            extent=extent,
            interpolation="nearest",
        )
        gy, gx = result.grid
        for i in range(gy):
            for j in range(gx):
                v = grid_vals[i, j]
                txt = "–" if not np.isfinite(v) else f"{v:+.2f}"
                if title == "predicted":
                    if np.isfinite(v) and conf is not None and conf[f, i, j] < CONFIDENT_DIRECTION:
                        txt += "?"
                    txt += f"\nn={int(result.n_tiles[f, i, j])}"
                ax.text(
                    (j + 0.5) * w / gx,
                    (i + 0.5) * h / gy,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="black",
                    bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1.5},
                )
        ax.set_title(f"{title} (µm)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="defocus (µm of focus-drive travel)")
    head = f"frame {int(result.frames[f])}"
    if result.focus_um is not None:
        head += f" at {result.focus_um[f]:g} µm"
    if conf is not None and np.any(conf[f] < CONFIDENT_DIRECTION):
        head += "; ? = direction uncertain"
    fig.suptitle(f"Autofocus {result.grid[0]}×{result.grid[1]}: {head}")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def add_autofocus_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gplws autofocus`` arguments (INPUT, --frame, -o, --device, --grid, --stride,
    --min-content, --weights, -q). Stack options (focus positions, pixel size, axis pick)
    are added by the caller (the CLI's shared helper) or by this function when absent."""
    p.add_argument(
        "input", help="one image (TIFF/PNG/JPG) or a stack (TIFF, folder of frames, .npy/.npz)"
    )
    p.add_argument(
        "--frame",
        type=int,
        default=None,
        metavar="K",
        help="analyse only frame K of a stack (0-based)",
    )
    p.add_argument(
        "-o", "--output", default=None, metavar="OUTDIR", help="write autofocus.csv/.json/.png here"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--grid", default="3x3", help="regions ROWSxCOLS (default 3x3)")
    p.add_argument("--stride", type=int, default=None, help="tile stride in pixels (default 224)")
    p.add_argument(
        "--min-content", type=float, default=MIN_CONTENT, help="blank-tile threshold (0..1)"
    )
    p.add_argument(
        "--weights", default="ldse_default", help="packaged weights name or .safetensors path"
    )
    p.add_argument(
        "--combine-frames",
        action="store_true",
        help="stack of 2+ frames with focus positions: take each region's direction from all "
        "frames together (two frames a known step apart suffice)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    known = {a.dest for a in p._actions}
    if "focus_step" not in known:
        p.add_argument(
            "--focus-step", type=float, metavar="UM", help="focus step between frames in µm"
        )
        p.add_argument(
            "--focus-start", type=float, metavar="UM", help="focus position of frame 0 in µm"
        )
        p.add_argument(
            "--focus-positions", metavar="UM,UM,...", help="one focus position per frame in µm"
        )
        p.add_argument("--pixel-size", type=float, metavar="UM", help="lateral pixel size in µm")
        p.add_argument(
            "--axis-pick",
            action="append",
            metavar="AXIS=INDEX",
            help="index on extra axes, e.g. T=0",
        )


OUTPUT_NAMES = ("autofocus.csv", "autofocus.json", "autofocus.png")


def read_autofocus_input(args: argparse.Namespace) -> tuple[Any, np.ndarray | None]:
    """Read INPUT as a :class:`FocalStack` or, for one image, an array; returns (data, first frame)."""
    from napari_gplws.io import _read as gio

    path = Path(args.input)
    positions = None
    if getattr(args, "focus_positions", None):
        try:
            positions = [
                float(v)
                for v in str(args.focus_positions).replace(";", ",").split(",")
                if v.strip()
            ]
        except ValueError:
            raise GplwsError(
                f"--focus-positions must be numbers in µm; got '{args.focus_positions}'."
            ) from None
    try:
        st = gio.read_stack(
            path,
            focus_um=positions,
            focus_start_um=getattr(args, "focus_start", None),
            focus_step_um=getattr(args, "focus_step", None),
            pixel_size_um=getattr(args, "pixel_size", None),
            axis_pick=gio.parse_axis_pick(getattr(args, "axis_pick", None)) or None,
        )
        return st, st.frames[0]
    except StackError:
        single = _read_single_image(path)  # one frame: not a stack, but fine for autofocus
        if single is None:
            raise
        return single, single


def _read_single_image(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        import imageio.v3 as iio

        a = np.asarray(iio.imread(path))
    except Exception:  # noqa: BLE001 - caller re-raises the stack reader's message
        return None
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3):
        return a
    return None


def cli_autofocus(args: argparse.Namespace) -> int:
    """``gplws autofocus INPUT [--frame K] [-o OUTDIR]``: print the grid, write CSV, JSON, PNG.

    Prints the 3×3 table (predicted / true / error in µm for a stack with focus positions,
    predicted only for a single image) of the chosen frame (``--frame``, default: every
    frame of a stack is analysed and the first one printed, plus a summary). With ``-o``,
    writes ``autofocus.csv`` (one row per frame and region), ``autofocus.json`` and
    ``autofocus.png`` (heatmap of the printed frame); earlier files of these names are moved
    into a ``backup-*`` folder. Returns the exit code (0).
    """
    data, first = read_autofocus_input(args)
    try:
        gy, gx = (int(v) for v in str(args.grid).lower().split("x"))
    except ValueError:
        raise GplwsError(f"--grid must look like 3x3; got '{args.grid}'.") from None
    bar = None
    if not getattr(args, "quiet", False):
        try:
            from tqdm import tqdm

            bar = tqdm(total=1, desc="autofocus", unit="step", leave=False)
        except ImportError:  # pragma: no cover
            bar = None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        res = autofocus(
            data,
            frame=args.frame,
            grid=(gy, gx),
            device=args.device,
            progress=progress,
            stride=args.stride,
            min_content=args.min_content,
            weights=args.weights,
            combine_frames=getattr(args, "combine_frames", False),
        )
    finally:
        if bar is not None:
            bar.close()
    shown = int(res.frames[0])
    print(res.format_table(shown))
    s = res.summary()
    if len(res.frames) > 1 and s.get("mean_abs_error_um") is not None:
        print(
            f"all {len(res.frames)} frames: mean |error| {s['mean_abs_error_um']:.2f} µm, "
            f"{100 * s['within_0_5_um']:.0f} % of regions within ±0.5 µm"
        )
    if res.true_um is None and isinstance(data, FocalStack):
        print(
            "(no focus positions: give --focus-step or --focus-positions to get true defocus and error)"
        )
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        backup = _backup(out)
        res.to_csv(out / OUTPUT_NAMES[0])
        res.to_json(out / OUTPUT_NAMES[1])
        img = data.frames[shown] if isinstance(data, FocalStack) else first
        plot_heatmap(res, out / OUTPUT_NAMES[2], frame=shown, image=img)
        print(
            f"wrote {out / OUTPUT_NAMES[0]}, {OUTPUT_NAMES[1]}, {OUTPUT_NAMES[2]}"
            + (f" (earlier files moved to {backup})" if backup else "")
        )
    return 0


def _backup(outdir: Path) -> Path | None:
    existing = [outdir / n for n in OUTPUT_NAMES if (outdir / n).exists()]
    if not existing:
        return None
    stamp = time.strftime("backup-%Y%m%d-%H%M%S")
    b, k = outdir / stamp, 1
    while b.exists():
        b, k = outdir / f"{stamp}-{k}", k + 1
    b.mkdir(parents=True)
    for p in existing:
        p.rename(b / p.name)
    return b
