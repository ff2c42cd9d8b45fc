"""What autofocus QC produced: :class:`AutofocusResult`, its table, summary and files.

The result holds the per-region grids (predicted, spread, magnitude, tile counts, and with
a stack the true defocus and the error), the per-tile values and the settings, and writes
them as a table (:meth:`AutofocusResult.table`, CSV, JSON) or as text for a terminal
(:meth:`AutofocusResult.format_table`). :data:`CONFIDENT_DIRECTION` is the confidence from
which a region's direction (the sign of its defocus) is trusted.

What it is not: the computation (:func:`napari_gplws.defocus.analyse.autofocus`) or the
heatmap picture (:mod:`napari_gplws.defocus.plot`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.defocus.tiles import MIN_CONTENT

#: A region's direction (sign of defocus) counts as trustworthy from this confidence on
#: (``|signed| / magnitude`` = ``|tanh(sign logit)|``). On the packaged weights' held-out
#: test set the sign of such tiles is right far more often than overall (model card,
#: ``test.sign_acc_confident_ge1`` against ``test.sign_acc_ge1``).
CONFIDENT_DIRECTION = 0.5

__all__ = ["CONFIDENT_DIRECTION", "AutofocusResult"]


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
        :mod:`napari_gplws.defocus.fit`); ``None`` otherwise.
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
        the fit (:mod:`napari_gplws.defocus.fit`, same scale).
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
                        "direction_confidence": None if conf is None else _num(conf[f, i, j]),
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
        head += ": " + ("predicted / true / error (µm)" if show_truth else "predicted defocus (µm)")
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
