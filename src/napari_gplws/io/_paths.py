"""What kind of file a path is: extensions, OME names, natural frame order, which files of
a folder are the frames.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
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

#: A folder's majority format (or naming scheme) is taken when it holds at least this
#: many times as many files as all the others together.
MAJORITY_RATIO = 3


def has_glob(text: str) -> bool:
    """Whether ``text`` holds a shell wildcard (``*``, ``?`` or ``[``)."""
    return any(ch in text for ch in "*?[")


def choose_frames(
    names: Sequence[str], folder: Path, pattern: str | None = None
) -> tuple[list[str], list[str], str]:
    """Which of a folder's image files are the frames of its stack.

    Parameters
    ----------
    names
        The folder's image files (names with an extension in :data:`FRAME_EXTENSIONS`).
    folder
        The folder, for messages.
    pattern
        A shell pattern on the file names (``"im_*.bmp"``; case-insensitive). When given,
        exactly the matching files are the frames.

    Returns
    -------
    (frames, left_out, why)
        The frame names, the image names left out, and how they were chosen (``"all"``,
        ``"pattern"``, ``"majority format"`` or ``"naming scheme"``).

    Without a pattern, a folder whose files share one format and one naming scheme gives
    all of them. Otherwise the majority format, then the majority naming scheme (the name
    with its numbers blanked: ``im_001.bmp`` → ``im_#.bmp``), is taken when it holds at least
    :data:`MAJORITY_RATIO` times as many files as the rest; a folder where neither is clear
    is refused with a message that suggests a pattern.
    """
    if pattern is not None:
        if not str(pattern).strip() or "/" in pattern or "\\" in pattern:
            raise StackError(
                f"The pattern {pattern!r} for '{folder}' must be a file-name pattern such as "
                "'im_*.bmp' (no folder part; put the folder in the path)."
            )
        pat = pattern.lower()
        hits = [n for n in names if fnmatch.fnmatchcase(n.lower(), pat)]
        if not hits:
            seen = ", ".join(sorted(names)[:6]) or "no image files"
            raise StackError(
                f"No image file in '{folder}' matches the pattern '{pattern}' (it holds: "
                f"{seen}{' …' if len(names) > 6 else ''}). Check the pattern (quote it in a shell)."
            )
        kinds = _count(hits, lambda n: _frame_kind(Path(n)))
        if len(kinds) > 1:
            raise StackError(
                f"The pattern '{pattern}' matches files of several formats in '{folder}' "
                f"({_counts_text(kinds)}); a stack's frames share one format: narrow the pattern, "
                "e.g. '*.bmp'."
            )
        return hits, [n for n in names if n not in hits], "pattern"
    kinds = _count(names, lambda n: _frame_kind(Path(n)))
    chosen, why = list(names), "all"
    if len(kinds) > 1:
        best = _majority(kinds)
        if best is None:
            top = max(kinds, key=lambda k: kinds[k])
            raise StackError(
                f"The folder '{folder}' mixes image formats ({_counts_text(kinds)} files) and "
                f"none is a clear majority; a stack's frames share one format. Say which files "
                f"are the frames with a pattern: --pattern '*{top}' (Python: pattern='*{top}'), "
                "or move the other files out of the folder."
            )
        chosen, why = [n for n in names if _frame_kind(Path(n)) == best], "majority format"
    schemes = _count(chosen, _scheme)
    if len(schemes) > 1:
        best = _majority(schemes)
        if best is not None:
            chosen = [n for n in chosen if _scheme(n) == best]
            why = "naming scheme" if why == "all" else why + " and naming scheme"
    return chosen, [n for n in names if n not in chosen], why


def _scheme(name: str) -> str:
    """A file name with its numbers blanked (``im_-3.5.bmp`` → ``im_#.bmp``)."""
    return re.sub(r"[-+]?\d+(?:[.,]\d+)?", "#", name.lower())


def _count(items: Sequence[str], key: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        k = key(it)
        out[k] = out.get(k, 0) + 1
    return out


def _majority(counts: dict[str, int]) -> str | None:
    """The key holding at least MAJORITY_RATIO × the rest (and two files), or ``None``."""
    top = max(counts, key=lambda k: counts[k])
    rest = sum(counts.values()) - counts[top]
    return top if counts[top] >= 2 and counts[top] >= MAJORITY_RATIO * rest else None


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))



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

