"""Safe file replacement shared by every writer: atomic writes and backups of earlier files.

A writer never leaves a half-written file where a user's file was: it writes a temporary
file in the same folder and moves it onto the target with :func:`os.replace`. A file that
is about to be replaced by a non-atomic writer is first renamed aside (:func:`move_aside`).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from napari_gplws.errors import GplwsError


# =========================================================================================
# Public: writing
# =========================================================================================
def move_aside(path: str | os.PathLike[str]) -> Path | None:
    """Keep an existing file before it is replaced: rename it to ``<stem>.backup-<time><suffix>``.

    For writers that cannot write atomically (or callers that promise never to overwrite
    silently). Returns the backup's path, or ``None`` when there was no file. The backup
    lies in the same folder; a second backup within the same second gets ``-1``, ``-2``…

    Raises
    ------
    GplwsError
        ``path`` is a folder, or the file cannot be renamed.
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        raise GplwsError(f"'{p}' is a folder; give a file name.")
    if not p.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, k = p.with_name(f"{p.stem}.backup-{stamp}{p.suffix}"), 1
    while target.exists():
        target, k = p.with_name(f"{p.stem}.backup-{stamp}-{k}{p.suffix}"), k + 1
    try:
        p.rename(target)
    except OSError as exc:
        raise GplwsError(f"Cannot keep the existing '{p}' as a backup: {exc}.") from None
    return target


def atomic_write(
    p: Path, write: Callable[[Path], None], *, overwrite: bool = True, durable: bool = False
) -> Path:
    """Call ``write(tmp)`` on a fresh file in ``p``'s folder, then move it onto ``p``.

    The temporary file is created with the usual permissions (umask applied) and removed if
    writing fails, so ``p`` is either the old file or the complete new one. With
    ``durable=True`` the file and its folder are fsynced, so the new content survives a
    power cut once this returns (for edits a person made by hand). Returns ``p``.

    Raises
    ------
    GplwsError
        ``p`` exists and ``overwrite`` is false, is a folder, or writing failed; the message
        names the file.
    """
    if p.exists() and not overwrite:
        raise GplwsError(f"'{p}' already exists; choose another name or allow overwriting.")
    if p.is_dir():
        raise GplwsError(f"'{p}' is a folder; give a file name.")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise GplwsError(f"Cannot write '{p}': the folder '{folder}' does not exist.")
    for _ in range(10):
        tmp = folder / f".{p.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise GplwsError(f"Cannot write in '{folder}': {exc}.") from None
        os.close(fd)
        break
    else:  # pragma: no cover
        raise GplwsError(f"Cannot create a temporary file in '{folder}'.")
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, p)
    except GplwsError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise GplwsError(
            f"Writing '{p}' failed ({type(exc).__name__}: {exc}); the old file, if any, is "
            "unchanged."
        ) from None
    if durable:
        fsync_dir(folder)
    return p


def write_text_atomic(p: Path, text: str, *, durable: bool = False) -> Path:
    """Write UTF-8 text to ``p`` atomically (see :func:`atomic_write`)."""
    return atomic_write(p, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def fsync_file(p: Path) -> None:
    """Flush a file's content to disk."""
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(d: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk, where the system allows it."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def backup_outputs(outdir: Path, names: Sequence[str]) -> Path | None:
    """Move the earlier outputs ``names`` found in ``outdir`` into a new ``backup-<time>`` folder.

    A new run never overwrites a user's earlier results without a backup: every file or
    folder of ``names`` that exists in ``outdir`` is renamed into
    ``outdir/backup-YYYYmmdd-HHMMSS`` (``-1``, ``-2``… when that exists). Returns the backup
    folder, or ``None`` when there was nothing to move.
    """
    existing = [outdir / n for n in names if (outdir / n).exists()]
    if not existing:
        return None
    stamp = time.strftime("backup-%Y%m%d-%H%M%S")
    backup, k = outdir / stamp, 1
    while backup.exists():
        backup, k = outdir / f"{stamp}-{k}", k + 1
    backup.mkdir(parents=True)
    for path in existing:
        path.rename(backup / path.name)
    return backup
