"""What makes a batch resumable: checksums of every output and the manifest of finished stacks.

``OUTDIR/manifest.json`` records every finished stack: its input (path, size, mtime), the
method and options, and the SHA-256 of each output file (of each ``result.zarr`` tree for
zarr stacks). A re-run skips stacks whose entry matches and whose outputs are all present
with the recorded checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_gplws._shared.files import write_text_atomic
from napari_gplws.api import OUTPUT_NAMES
from napari_gplws.batching.inputs import _is_zarr
from napari_gplws.batching.layout import MANIFEST_NAME
from napari_gplws.dff.outofcore import ZARR_OUTPUT_NAMES

_MANIFEST_VERSION = 1


# =========================================================================================
# checksums and manifest
# =========================================================================================
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    """``(posix relative path, path)`` of every file below ``root``, sorted."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            q = Path(dirpath) / f
            out.append((q.relative_to(root).as_posix(), q))
    return sorted(out)


def _tree_sha256(root: Path) -> str:
    """SHA-256 over the sorted (relative path, size, SHA-256) of every file below ``root``."""
    h = hashlib.sha256()
    for rel, q in _tree_files(root):
        h.update(f"{rel}\0{q.stat().st_size}\0{_sha256(q)}\n".encode())
    return h.hexdigest()


def _digest(p: Path) -> str | None:
    """SHA-256 of a file, tree digest of a folder (``result.zarr``), None when missing."""
    if p.is_dir():
        return _tree_sha256(p)
    if p.is_file():
        return _sha256(p)
    return None


def _input_signature(p: Path) -> dict[str, Any]:
    """Path, size and mtime of an input (of every file in it, for a folder; recursively, with
    the file count, for a zarr store, whose chunks live in sub-folders)."""
    p = Path(p)
    if p.is_dir() and _is_zarr(p):
        stats = [q.stat() for _rel, q in _tree_files(p)]
        return {
            "path": os.path.abspath(p),
            "size": int(sum(st.st_size for st in stats)),
            "mtime_ns": int(max((st.st_mtime_ns for st in stats), default=0)),
            "files": len(stats),
        }
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.is_file())
        size = sum(q.stat().st_size for q in files)
        mtime = max((q.stat().st_mtime_ns for q in files), default=0)
    elif p.exists():
        st = p.stat()
        size, mtime = st.st_size, st.st_mtime_ns
    else:
        size, mtime = -1, 0
    return {"path": os.path.abspath(p), "size": int(size), "mtime_ns": int(mtime)}


def outputs_valid(folder: Path, checksums: Mapping[str, str]) -> bool:
    """True when every output named in ``checksums`` exists in ``folder`` with that SHA-256.

    ``checksums`` names either the TIFF outputs (:data:`OUTPUT_NAMES`) or the out-of-core
    ones (:data:`ZARR_OUTPUT_NAMES`); a ``result.zarr`` folder is checked by its tree digest
    (every file's relative path, size and SHA-256), so a missing, added or damaged chunk
    file fails the check.
    """
    if set(checksums) not in (set(OUTPUT_NAMES), set(ZARR_OUTPUT_NAMES)):
        return False
    return all(_digest(Path(folder) / name) == digest for name, digest in checksums.items())


def _read_manifest(outdir: Path) -> dict[str, Any]:
    p = outdir / MANIFEST_NAME
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged manifest only means everything is redone
    if not isinstance(data, dict) or data.get("version") != _MANIFEST_VERSION:
        return {}
    stacks = data.get("stacks")
    return stacks if isinstance(stacks, dict) else {}


def _write_manifest(outdir: Path, stacks: Mapping[str, Any]) -> None:
    body = {"version": _MANIFEST_VERSION, "written_by": "napari-gplws", "stacks": dict(stacks)}
    write_text_atomic(outdir / MANIFEST_NAME, json.dumps(body, indent=2, ensure_ascii=False))
