"""Which stacks a batch reconstructs and what their output folders are called.

:func:`collect_inputs` expands paths, glob patterns and ``.txt`` lists into stack paths (a
zarr store counts as one stack, never as a folder of frames); :func:`stack_names` gives
each a unique folder name.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from napari_gplws.batching.layout import MANIFEST_NAME, SUMMARY_CSV
from napari_gplws.errors import GplwsError

_STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy", ".npz", ".ome.zarr", ".zarr")


# =========================================================================================
# inputs
# =========================================================================================
def collect_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand paths, glob patterns and ``.txt`` lists into a list of stack paths.

    Parameters
    ----------
    inputs
        One item or an iterable of items. Each item is a stack path (file, folder of
        frames or zarr store), a glob pattern (``"scans/*.tif"``, ``"scans/*.zarr"``, ``"**"``
        allowed; files inside a zarr store are not stacks and are left out), or a ``.txt`` file with
        one path or pattern per line (blank lines and lines starting with ``#`` are skipped;
        relative paths are taken relative to the ``.txt`` file's folder).

    Returns
    -------
    list of Path
        In the order given, duplicates removed. Paths that do not exist are kept (their
        task fails with a clear message, recorded in the summary).

    Raises
    ------
    GplwsError
        A glob pattern matches nothing, a ``.txt`` list cannot be read, or nothing is left.
    """
    items: list[str | os.PathLike[str]]
    if isinstance(inputs, (str, os.PathLike)):
        items = [inputs]
    else:
        items = list(inputs)
    out: list[Path] = []

    def add(item: str, base: Path | None) -> None:
        text = str(item).strip()
        if base is not None and not os.path.isabs(text):
            text = str(base / text)
        if any(ch in text for ch in "*?["):
            hits = sorted(glob.glob(text, recursive=True))
            if not hits:
                raise GplwsError(f"The pattern '{text}' matches no file; check it (quote it in a shell).")
            out.extend(Path(h) for h in hits if not _inside_zarr(Path(h)))
        elif text.lower().endswith(".txt"):
            p = Path(text)
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise GplwsError(f"Cannot read the list of stacks '{p}': {exc}.") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    add(line, p.parent)
        else:
            out.append(Path(text))

    for item in items:
        add(os.fspath(item), None)
    seen: set[str] = set()
    unique = []
    for p in out:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise GplwsError("No input stacks were given; pass paths, glob patterns or a .txt list.")
    return unique


def _is_zarr(p: Path) -> bool:
    from napari_gplws.io.zarr import is_zarr_path

    return is_zarr_path(p)


def _inside_zarr(p: Path) -> bool:
    """A chunk or metadata file (or sub-folder) of a zarr store, rather than a stack."""
    if _is_zarr(p):
        return False  # a store (possibly nested in a bigger one) is a stack
    return any(_is_zarr(q) for q in p.parents if q != Path("."))


def _base_name(p: Path) -> str:
    """A stack's output folder name: its file or folder name without the stack suffix.

    The path is resolved first, so ``.`` and ``..`` name the real folder; a name that is
    still empty, ``.``/``..``, hidden or holds a path separator becomes a safe one, so a
    result folder can never land outside the output folder.
    """
    with contextlib.suppress(OSError, RuntimeError):  # a symlink loop: keep the name given
        p = p.resolve()
    name = p.name
    low = name.lower()
    for suf in _STACK_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            name = name[: -len(suf)]
            break
    name = name.replace("/", "_").replace("\\", "_").replace(os.sep, "_").strip()
    if name in ("", ".", "..") or set(name) <= {"."}:
        return "stack"
    return "_" + name[1:] if name.startswith(".") else name


def stack_names(paths: Sequence[Path]) -> list[str]:
    """Output folder names for stacks: the base name (``a.ome.tif`` -> ``a``), made unique.

    Two stacks with the same base name in different folders get ``a``, ``a-2``, ``a-3``… in
    input order, so a re-run with the same inputs maps every stack to the same folder.
    """
    names: list[str] = []
    used: set[str] = {Path(MANIFEST_NAME).stem, Path(SUMMARY_CSV).stem}
    for p in paths:
        base = _base_name(Path(p))
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names
