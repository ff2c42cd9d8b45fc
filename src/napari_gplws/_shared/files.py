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
    except Exception as exc:  # noqa: BLE001 - any reader or writer failure becomes a message naming the file
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


# ---------------------------------------------------------------------------------------
# Proving that a path is this package's own output before replacing or deleting it
# ---------------------------------------------------------------------------------------

#: A small file written into every output folder and zarr group this package creates, so
#: that a later run can prove a path is its own before it replaces or deletes it.
OUTPUT_MARKER = ".napari-gplws-output"


def mark_output(folder: Path) -> None:
    """Write :data:`OUTPUT_MARKER` into ``folder`` (a folder this package just created)."""
    (Path(folder) / OUTPUT_MARKER).write_text(
        '{"written_by": "napari-gplws"}\n', encoding="utf-8"
    )


def is_our_output(path: Path) -> bool:
    """Whether ``path`` is a folder that this package wrote (it holds :data:`OUTPUT_MARKER`)."""
    p = Path(path)
    return p.is_dir() and not p.is_symlink() and (p / OUTPUT_MARKER).is_file()


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies strictly inside ``root``, after resolving ``..`` and symlinks."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p != r and r in p.parents


def check_output_against_inputs(out: Path, inputs: Sequence[Path], what: str = "output") -> None:
    """Refuse an output that is an input, lies inside one or contains one.

    Raises
    ------
    GplwsError
        The message names both paths and asks for another output.
    """
    o = Path(out).resolve()
    for src in inputs:
        s = Path(src).resolve()
        if o == s or s in o.parents or o in s.parents:
            relation = "is" if o == s else "is inside" if s in o.parents else "contains"
            raise GplwsError(
                f"The {what} '{out}' {relation} the input '{src}'; writing there would destroy "
                "or re-read the input. Choose an output folder outside the input."
            )


def replace_our_output(path: Path, root: Path) -> None:
    """Delete ``path`` before a new result takes its place, after proving it may be deleted.

    ``path`` must lie strictly inside ``root`` (the run's output folder) and be an output
    this package wrote (:func:`is_our_output`). Anything else is left untouched.

    Raises
    ------
    GplwsError
        ``path`` is outside ``root`` or was not written by napari-gplws.
    """
    import shutil

    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if not is_inside(p, root):
        raise GplwsError(
            f"Refusing to replace '{p}': it is not inside the output folder '{root}'. "
            "Nothing was deleted."
        )
    if not is_our_output(p):
        raise GplwsError(
            f"Refusing to replace '{p}': it was not written by napari-gplws (no "
            f"{OUTPUT_MARKER} inside). Move it away or choose another output folder; nothing "
            "was deleted."
        )
    shutil.rmtree(p)


def claim_output_dir(out: Path, *, overwrite: bool = False) -> Path | None:
    """Make way for a new output folder (a zarr group) at ``out`` without losing anything.

    A missing or empty ``out`` is used as it is; an earlier output of this package
    (:func:`is_our_output`) is replaced. Anything else — a file, or a folder of someone's
    data — is refused, unless ``overwrite`` is true: then it is renamed aside to
    ``<name>.backup-<time>`` (never deleted) and that path is returned.

    Raises
    ------
    GplwsError
        ``out`` holds something else and ``overwrite`` is false.
    """
    import shutil

    p = Path(out)
    if not (p.exists() or p.is_symlink()):
        return None
    if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
        return None
    if is_our_output(p):
        shutil.rmtree(p)
        return None
    if not overwrite:
        kind = "a file" if p.is_file() else "a folder that napari-gplws did not write"
        raise GplwsError(
            f"The output '{p}' already exists and is {kind}; nothing was changed. Choose a "
            "new output path, or pass overwrite=True (--force) to move it aside as a backup."
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, k = p.with_name(f"{p.name}.backup-{stamp}"), 1
    while target.exists():
        target, k = p.with_name(f"{p.name}.backup-{stamp}-{k}"), k + 1
    p.rename(target)
    return target


# ---------------------------------------------------------------------------------------
# One writer per output folder
# ---------------------------------------------------------------------------------------

#: The lock file a run holds in its output folder while it writes there.
LOCK_NAME = ".napari-gplws.lock"


class OutputLock:
    """Hold an output folder for one writer: ``with OutputLock(folder): ...``.

    The lock is a file created atomically (``O_CREAT | O_EXCL``) holding the writer's pid,
    host and start time. A second writer is refused with a message naming the first. A lock
    left by a run that was killed (same host, pid no longer running) is taken over, so a
    stale lock never blocks forever.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._held = False

    def __enter__(self) -> OutputLock:
        import json
        import socket

        self.folder.mkdir(parents=True, exist_ok=True)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._is_stale(holder):
                    raise GplwsError(
                        f"The output folder '{self.folder}' is being written by another run "
                        f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                        f"{holder.get('since')}). Wait for it to finish or choose another "
                        f"output folder; if that run is gone, delete '{self.path}'."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            except OSError as exc:
                raise GplwsError(f"Cannot write in the output folder '{self.folder}': {exc}.") from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(info, fh)
            self._held = True
            return self
        raise GplwsError(f"Could not take the lock '{self.path}'; try again.")

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def _holder(self) -> dict | None:
        import json

        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # Unreadable: being written right now, or torn by a kill. Young means busy.
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return None
            return {"pid": "?", "host": "?", "since": "just now"} if age < 10 else None

    @staticmethod
    def _is_stale(holder: dict) -> bool:
        import socket

        if holder.get("host") != socket.gethostname():
            return False  # another machine: cannot tell, so respect it
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
