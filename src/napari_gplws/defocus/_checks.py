"""Argument checks shared by the public functions of :mod:`napari_gplws.defocus`.

Each check raises a :class:`~napari_gplws.errors.StackError` (a ``ValueError``) naming the
argument, its range and what was given, so a script gets a message instead of a
``range()`` error deep inside, an endless loop or a silently meaningless map.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from napari_gplws.errors import StackError

#: Largest tile side and stride in pixels, and regions per side of a grid.
MAX_TILE_PX = 4096
MAX_GRID = 32
#: Largest tiles per forward pass.
MAX_BATCH = 4096


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, else :class:`StackError` naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not lo <= int(value) <= hi:
        raise StackError(f"{name} must be a whole number from {lo} to {hi}; got {value!r}.")
    return int(value)


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1]``, else :class:`StackError` naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not 0.0 <= float(value) <= 1.0:
        raise StackError(
            f"{name} is a fraction and must be from 0 to 1 (e.g. 0.2 = 20 %); got {value!r}."
        )
    return float(value)


def check_grid(grid: Any) -> tuple[int, int]:
    """``grid`` as ``(rows, cols)``, each 1…:data:`MAX_GRID`."""
    try:
        rows, cols = grid
    except (TypeError, ValueError):
        raise StackError(f"grid must be (rows, columns), e.g. (3, 3); got {grid!r}.") from None
    return check_int("grid rows", rows, 1, MAX_GRID), check_int("grid columns", cols, 1, MAX_GRID)


def check_pixel_size(value: Any) -> float | None:
    """``None`` or a finite pixel size in µm, > 0 and ≤ 10⁴."""
    if value is None:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not 0.0 < float(value) <= 1e4:
        raise StackError(f"pixel_size_um must be > 0 and ≤ 10000 µm, or None; got {value!r}.")
    return float(value)
