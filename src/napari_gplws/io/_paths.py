"""What kind of file a path is: extensions, OME names, natural frame order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_gplws.errors import StackError

#: Extensions of single-frame image files accepted inside a folder of frames.
FRAME_EXTENSIONS: tuple[str, ...] = (".bmp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Extensions of files that hold a whole stack.
STACK_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".npy", ".npz")

_TIFF_EXTENSIONS = (".tif", ".tiff")

AxisPick = Mapping[str, int]



# =========================================================================================
# Small helpers
# =========================================================================================
def _suffix(p: Path) -> str:
    return p.suffix.lower()


def _is_ome_name(p: Path) -> bool:
    return p.name.lower().endswith((".ome.tif", ".ome.tiff"))


def _base_stem(p: Path) -> str:
    name = p.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif"):
        if low.endswith(ext):
            return name[: -len(ext)]
    return p.stem


def _frame_kind(f: Path) -> str:
    ext = _suffix(f)
    return {".tiff": ".tif", ".jpeg": ".jpg"}.get(ext, ext)


def _normalise_picks(axis_pick: AxisPick | None, p: Path) -> dict[str, int]:
    if not axis_pick:
        return {}
    out: dict[str, int] = {}
    for k, v in axis_pick.items():
        key = str(k).strip().upper()
        if (
            not (key.isdigit() or (len(key) == 1 and key.isalpha()))
            or not _is_number(v)
            or int(v) != v
        ):
            raise StackError(
                f"axis_pick {k!r}: {v!r} for '{p}' is not AXIS: INDEX; use e.g. {{'T': 0}} "
                "(CLI: --axis-pick T=0)."
            )
        out[key] = int(v)
    return out


#: Written into the metadata of every file this package writes, to recognise its own files.
_WRITTEN_BY = "napari-gplws"

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

