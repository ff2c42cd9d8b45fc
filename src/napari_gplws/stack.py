"""The :class:`FocalStack`: a focus stack with its physical units.

A focus stack is N frames of the same field, each taken at a different position of the
focus drive. This module holds the frames together with what gives them meaning:
the focus positions in µm (or none, in which case depth is measured in frame index),
the pixel size in µm, the file they came from and free metadata. It validates once, at
construction, so that every downstream function can trust its input.

It does not read files (see :mod:`napari_gplws.io`) and does not compute focus (see :mod:`napari_gplws.dff.classical`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_gplws.errors import FocusPositionError, StackError, where

UNIT_UM = "µm"
UNIT_FRAME = "frame"

_SUPPORTED_KINDS = "uifb"


@dataclass(frozen=True, eq=False)
class FocalStack:
    """Frames of one field at several focus positions.

    Parameters
    ----------
    frames
        ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB; uint8, uint16, other integer or
        float dtype. The dtype is kept as given (no copy is made).
    focus_um
        ``(N,)`` focus-drive positions in µm in acquisition order, strictly increasing or
        strictly decreasing, not necessarily evenly spaced. ``None`` when unknown: depth
        is then measured in frame index (0-based, fractional).
    pixel_size_um
        Lateral pixel size in µm, or ``None`` when unknown.
    source
        Path (or description) of where the frames came from, used in messages.
    metadata
        Free-form metadata (e.g. what the file said).

    Raises
    ------
    StackError
        Wrong number of dimensions, fewer than two frames, an unsupported dtype or
        non-finite values.
    FocusPositionError
        Focus positions of the wrong length, not finite, or not strictly monotonic.

    Examples
    --------
    >>> s = FocalStack(np.zeros((5, 8, 8), np.uint8), focus_um=[0, 2, 4, 6, 8])
    >>> s.n_frames, s.units, s.focus_step_um
    (5, 'µm', 2.0)
    """

    frames: np.ndarray
    focus_um: np.ndarray | None = None
    pixel_size_um: float | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        object.__setattr__(self, "frames", frames)
        src = where(self.source)
        if frames.ndim == 4 and frames.shape[-1] == 4:
            raise StackError(
                f"The frames{src} have 4 colour channels (RGBA); drop the alpha channel "
                "(frames[..., :3]) before building a stack."
            )
        if not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)):
            raise StackError(
                f"A focus stack must be (N, H, W) or (N, H, W, 3); got shape {frames.shape}{src}. "
                "If the data has time or channel axes, pick one time point and one channel "
                "first (see `gplws reconstruct --help`: --axis-pick)."
            )
        if frames.dtype.kind not in _SUPPORTED_KINDS:
            raise StackError(f"Unsupported pixel type {frames.dtype}{src}; use integer or float data.")
        if frames.shape[0] < 2:
            raise StackError(
                f"The stack{src} has only {frames.shape[0]} frame; depth from focus needs at least "
                "two frames taken at different focus positions."
            )
        if frames.shape[1] < 1 or frames.shape[2] < 1:
            raise StackError(f"The frames{src} are empty (shape {frames.shape}).")
        if frames.dtype.kind == "f":
            finite = np.isfinite(frames)
            if not finite.all():
                bad = np.argwhere(~finite.reshape(frames.shape[0], -1).all(axis=1)).ravel()
                raise StackError(
                    f"The stack{src} contains NaN or infinite values (frames {bad[:10].tolist()}). "
                    "Replace them (e.g. numpy.nan_to_num) or crop them away before reconstructing."
                )
        if self.focus_um is not None:
            object.__setattr__(
                self, "focus_um", validate_focus_positions(self.focus_um, frames.shape[0], self.source)
            )
        if self.pixel_size_um is not None:
            px = float(self.pixel_size_um)
            if not np.isfinite(px) or px <= 0:
                raise StackError(f"Pixel size must be a positive number of µm; got {self.pixel_size_um}{src}.")
            object.__setattr__(self, "pixel_size_um", px)

    # --- shape --------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape_yx(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def is_rgb(self) -> bool:
        return self.frames.ndim == 4

    # --- units --------------------------------------------------------------------------
    @property
    def units(self) -> str:
        """Unit of depth and focus positions: ``"µm"`` or ``"frame"``."""
        return UNIT_UM if self.focus_um is not None else UNIT_FRAME

    @property
    def positions(self) -> np.ndarray:
        """Focus positions in :attr:`units`: µm when known, else ``0, 1, …, N-1``."""
        if self.focus_um is not None:
            return self.focus_um
        return np.arange(self.n_frames, dtype=np.float64)

    @property
    def focus_step_um(self) -> float | None:
        """Median absolute step between frames in µm, or ``None`` when unknown."""
        if self.focus_um is None:
            return None
        return float(np.median(np.abs(np.diff(self.focus_um))))

    @property
    def is_uniform(self) -> bool:
        """Whether focus positions are evenly spaced (to 0.1 %)."""
        d = np.diff(self.positions)
        return bool(np.allclose(d, d[0], rtol=1e-3, atol=0))

    def with_(self, **changes: Any) -> FocalStack:
        """Return a copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def index_to_position(self, index: np.ndarray) -> np.ndarray:
        """Map fractional frame indices to focus positions (piecewise-linear, any spacing)."""
        return index_to_position(index, self.positions)

    def __repr__(self) -> str:
        pos = "unknown" if self.focus_um is None else f"{self.focus_um[0]:g}…{self.focus_um[-1]:g} µm"
        px = "unknown" if self.pixel_size_um is None else f"{self.pixel_size_um:g} µm"
        return (
            f"FocalStack(frames={self.frames.shape} {self.frames.dtype}, focus={pos}, "
            f"pixel_size={px}, source={self.source!r})"
        )


def validate_focus_positions(
    focus_um: Sequence[float] | np.ndarray, n_frames: int, source: object | None = None
) -> np.ndarray:
    """Check focus positions and return them as a float64 array.

    Raises :class:`FocusPositionError` unless there are exactly ``n_frames`` finite
    values, strictly increasing or strictly decreasing.
    """
    src = where(source)
    try:
        pos = np.asarray(focus_um, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise FocusPositionError(f"Focus positions{src} are not numbers: {exc}.") from None
    if pos.size != n_frames:
        raise FocusPositionError(
            f"Got {pos.size} focus positions for {n_frames} frames{src}; give exactly one "
            "position (µm) per frame, or a start and step (--focus-start/--focus-step)."
        )
    if not np.isfinite(pos).all():
        raise FocusPositionError(f"Focus positions{src} contain NaN or infinite values.")
    d = np.diff(pos)
    if not ((d > 0).all() or (d < 0).all()):
        k = int(np.argmax(d <= 0) if d[0] > 0 else np.argmax(d >= 0))
        raise FocusPositionError(
            f"Focus positions{src} must be strictly increasing or strictly decreasing; "
            f"positions {k} and {k + 1} are {pos[k]:g} and {pos[k + 1]:g} µm. Check the "
            "acquisition order and remove repeated frames."
        )
    return pos


def uniform_positions(n_frames: int, start_um: float = 0.0, step_um: float = 1.0) -> np.ndarray:
    """Evenly spaced focus positions ``start + k·step`` in µm (step may be negative)."""
    if step_um == 0 or not np.isfinite(step_um):
        raise FocusPositionError(f"The focus step must be a non-zero number of µm; got {step_um}.")
    return start_um + step_um * np.arange(n_frames, dtype=np.float64)


def index_to_position(index: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Map fractional frame indices to positions by linear interpolation between frames.

    Indices outside ``[0, N-1]`` are clipped. Works for decreasing and uneven positions.
    """
    idx = np.asarray(index, dtype=np.float64)
    return np.interp(idx, np.arange(len(positions), dtype=np.float64), positions)


def position_to_index(position: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Inverse of :func:`index_to_position` (positions must be strictly monotonic)."""
    pos = np.asarray(positions, dtype=np.float64)
    idx = np.arange(len(pos), dtype=np.float64)
    if pos[-1] < pos[0]:
        pos, idx = pos[::-1], idx[::-1]
    return np.interp(np.asarray(position, dtype=np.float64), pos, idx)
