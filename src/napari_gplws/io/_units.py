"""Physical units of a stack: JSON sidecars, unit conversion to µm and the focus positions.

Focus positions and pixel size come from, first to last: explicit arguments, a sidecar,
the file's own metadata. :func:`resolve_focus` applies that order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import FocusPositionError, GplwsError, StackError
from napari_gplws.io._paths import _WRITTEN_BY, _base_stem, _is_number
from napari_gplws.stack import uniform_positions

#: Sidecar names looked for inside a folder of frames, in this order.
SIDECAR_NAMES: tuple[str, ...] = ("focus.json", "stack.json", "metadata.json")
_SIDECAR_KEYS = ("focus_um", "focus_start_um", "focus_step_um", "pixel_size_um")

# Length units -> factor to µm (OME UnitsLength symbols and ImageJ spellings).
_TO_UM: dict[str, float] = {
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "μm": 1.0,  # Greek small mu (U+03BC)
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # ImageJ's escaped spelling
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
}


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a JSON sidecar that gives a stack its physical units.

    Schema (all keys optional; ``null`` counts as absent; other keys are kept as they are)::

        {"focus_um": [0.0, 2.5, 5.0, ...],   # one position per frame, µm, acquisition order
         "pixel_size_um": 0.65}              # lateral pixel size, µm
    or
        {"focus_start_um": 100.0,            # position of the first frame, µm (default 0)
         "focus_step_um": 2.5,               # step between frames, µm (may be negative)
         "pixel_size_um": 0.65}

    A top-level list of numbers is read as ``{"focus_um": [...]}``.

    Parameters
    ----------
    path
        The ``.json`` file.

    Returns
    -------
    dict
        ``focus_um`` as a float64 array, the other known keys as floats, unknown keys as read.

    Raises
    ------
    StackError
        The file cannot be read, is not valid JSON, or a known key has the wrong type, or both
        ``focus_um`` and ``focus_step_um`` are given.
    """
    p = Path(os.fspath(path))
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError(f"Cannot read the sidecar '{p}': {exc}.") from None
    except json.JSONDecodeError as exc:
        raise StackError(
            f"The sidecar '{p}' is not valid JSON ({exc}); fix it or remove it. Expected e.g. "
            '{"focus_um": [0, 2, 4], "pixel_size_um": 0.65}.'
        ) from None
    if isinstance(raw, list):
        raw = {"focus_um": raw}
    if not isinstance(raw, dict):
        raise StackError(
            f"The sidecar '{p}' must hold a JSON object such as "
            '{"focus_start_um": 0, "focus_step_um": 2, "pixel_size_um": 0.65}; '
            f"got {type(raw).__name__}."
        )
    out: dict[str, Any] = {k: v for k, v in raw.items() if v is not None}
    if "focus_um" in out:
        vals = out["focus_um"]
        if not isinstance(vals, list) or not all(_is_number(v) for v in vals):
            raise StackError(
                f"In the sidecar '{p}', \"focus_um\" must be a list of numbers (µm, one per frame)."
            )
        out["focus_um"] = np.asarray(vals, dtype=np.float64)
    for key in ("focus_start_um", "focus_step_um", "pixel_size_um"):
        if key in out:
            if not _is_number(out[key]):
                raise StackError(
                    f"In the sidecar '{p}', \"{key}\" must be a number (µm); got {out[key]!r}."
                )
            out[key] = float(out[key])
    if "focus_um" in out and "focus_step_um" in out:
        raise StackError(
            f'The sidecar \'{p}\' gives both "focus_um" and "focus_step_um"; keep only one.'
        )
    return out


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return where the JSON sidecar of a stack *file* is (whether or not it exists).

    ``stack.tif`` -> ``stack.json``; ``stack.ome.tif`` -> ``stack.json``; ``a.npz`` ->
    ``a.json``. For folders, see :data:`SIDECAR_NAMES`.
    """
    p = Path(os.fspath(path))
    return p.with_name(_base_stem(p) + ".json")


# =========================================================================================
# Focus-position precedence
# =========================================================================================
def _resolve_focus(
    levels: list[tuple[str, Mapping[str, Any]]], n: int, p: Path
) -> tuple[np.ndarray | None, str | None]:
    """Pick focus positions from the highest-precedence level that gives a list or a step."""
    chosen = None
    for i, (_name, level) in enumerate(levels):
        if level.get("focus_um") is not None or level.get("focus_step_um") is not None:
            chosen = i
            break
    if chosen is None:
        for name, level in levels:
            if level.get("focus_start_um") is not None:
                raise StackError(
                    f"A focus start is given ({name}) for '{p}' but no focus step or positions; "
                    'add the step (--focus-step, or "focus_step_um" in the sidecar).'
                )
        return None, None
    start_from = None
    for i in range(chosen):
        if levels[i][1].get("focus_start_um") is not None:
            start_from = i
            break
    name, level = levels[chosen]
    where_from = name
    if level.get("focus_um") is not None:
        pos = np.asarray(level["focus_um"], dtype=np.float64).ravel()
        if start_from is not None and pos.size:
            pos = pos - pos[0] + float(levels[start_from][1]["focus_start_um"])
            where_from = f"{name} shifted to the start from the {levels[start_from][0]}"
        return pos, where_from
    step = float(level["focus_step_um"])
    if start_from is not None:
        start = float(levels[start_from][1]["focus_start_um"])
        where_from = f"{name} (step) and {levels[start_from][0]} (start)"
    else:
        start = float(level.get("focus_start_um") or 0.0)
    try:
        return uniform_positions(n, start, step), where_from
    except FocusPositionError as exc:
        raise FocusPositionError(f"{exc} (From the {name}, for '{p}'.)") from None


def _folder_sidecar(d: Path) -> Path | None:
    for name in SIDECAR_NAMES:
        f = d / name
        if f.is_file():
            return f
    return None


def _unit_factor(unit: Any) -> float | None:
    if not isinstance(unit, str):
        return None
    return _TO_UM.get(unit.strip().lower())


def _length_um(value: Any, unit: Any) -> float | None:
    """Convert an OME/ImageJ length (text or number) to µm; ``None`` if unknown."""
    if value is None:
        return None
    factor = _unit_factor(unit if unit is not None else "µm")
    if factor is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v * factor if math.isfinite(v) else None


def _check_pixel_size(px: Any, p: Path) -> float | None:
    if px is None:
        return None
    try:
        v = float(px)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        raise GplwsError(f"The pixel size for '{p}' must be a positive number of µm; got {px!r}.")
    return v


def _jsonable(obj: Any) -> Any:
    """Convert NumPy values, paths and tuples to plain JSON types (others to text)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _is_our_sidecar(p: Path) -> bool:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == _WRITTEN_BY
