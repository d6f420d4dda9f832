"""Atomic file and folder writes: readers see the old content or the new, never a part.

Every write goes to a temporary sibling of the target (same folder, so the rename stays
on one file system), is flushed to disk, and is then renamed onto the target with
``os.replace``; the parent folder is flushed after the rename. A write that fails
removes its temporary file or folder and raises the error, an ``OSError`` becoming an
:class:`AtomicWriteError` that names the target.

Temporary names are ``.{name}.{random}.tmp`` for a target called ``name``, for files and
folders alike: :func:`atomic_temp_glob` is their glob, for a cleaner that removes what a
process killed mid-write left behind. Files get the usual mode (``0o666`` less the
umask) and folders ``0o777`` less the umask, as ``open`` and ``mkdir`` would give them.

This module imports only the standard library, so that every subpackage may use it.
"""

from __future__ import annotations

import errno as _errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "AtomicWriteError",
    "atomic_temp_glob",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_dir",
    "atomic_write_text",
]

_ATTEMPTS = 100  # temporary names tried before giving up (each is 32 random bits)


class AtomicWriteError(OSError):
    """An atomic write of ``filename`` failed. ``errno`` and ``strerror`` are the cause's
    (``ENOSPC`` and "No space left on device" for a full disk); the message is
    ``cannot write {filename}: {strerror}``."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` as an :class:`AtomicWriteError` naming ``path`` (itself if it already is one)."""
    if isinstance(exc, AtomicWriteError):
        return exc
    return AtomicWriteError(exc.errno, exc.strerror or str(exc), str(path))


def atomic_temp_glob(name: str) -> str:
    """The glob of the temporary files and folders an atomic write of a target called
    ``name`` creates (in the target's folder): what a process killed mid-write leaves."""
    return f".{name}.*.tmp"


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"


def _create_temp(path: Path, *, folder: bool) -> Path:
    """Create a new empty temporary file or folder next to ``path`` and return it."""
    for _ in range(_ATTEMPTS):
        tmp = _temp_path(path)
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(_errno.EEXIST, f"no free temporary name next to {path}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _prepare(path: str | os.PathLike[str], parents: bool) -> Path:
    path = Path(path)
    if parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _named(exc, path) from exc
    return path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, parents: bool = False
) -> None:
    """Write the file ``path`` atomically through ``write``.

    ``write(tmp)`` is called with the path of a new empty temporary file next to ``path``
    (see :func:`atomic_temp_glob`) and writes the content there, by name (it may replace
    the file); the file is then flushed to disk and renamed onto ``path``.

    Args:
        path: the file to write; an existing file there is replaced.
        write: writes the content to the path it is given.
        parents: create missing parent folders (else a missing folder is an error).

    Raises:
        AtomicWriteError: an ``OSError`` of the write, naming ``path``; the temporary
            file is removed. Any other exception of ``write`` propagates as it is.
    """
    path = _prepare(path, parents)
    try:
        tmp = _create_temp(path, folder=False)
    except OSError as exc:
        raise _named(exc, path) from exc
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file (a failed write() does not)
            raise _named(exc, path) from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, parents: bool = False) -> None:
    """Write ``data`` to the file ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), parents=parents)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, parents: bool = False) -> None:
    """Write ``text`` as UTF-8 to the file ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"), parents=parents)


def atomic_write_dir(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    existing: Callable[[Path], None] | None = None,
    parents: bool = False,
) -> Path:
    """Write the folder ``path`` atomically through ``write``; returns ``path``.

    ``write(tmp)`` fills a new empty temporary folder next to ``path`` (see
    :func:`atomic_temp_glob`); every file in it and the folder are flushed to disk, then a
    folder (or file) already at ``path`` is removed and the temporary folder renamed onto
    ``path``. The rename is atomic; the removal just before it is not, so a crash between
    the two leaves no folder at ``path`` (and the complete new one under its temporary
    name).

    Args:
        path: the folder to write.
        write: fills the folder it is given.
        existing: called with ``path`` when something already is there, before it is
            removed; raise from it to keep it (the new folder is then discarded).
        parents: create missing parent folders (else a missing folder is an error).

    Raises:
        AtomicWriteError: an ``OSError`` of the write, naming ``path``; the temporary
            folder is removed. Any other exception of ``write`` or ``existing``
            propagates as it is.
    """
    path = _prepare(path, parents)
    try:
        tmp = _create_temp(path, folder=True)
    except OSError as exc:
        raise _named(exc, path) from exc
    try:
        write(tmp)
        for f in sorted(tmp.rglob("*")):
            if f.is_file() and not f.is_symlink():
                _fsync_file(f)
        _fsync_dir(tmp)
        if path.exists() or path.is_symlink():
            if existing is not None:
                existing(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _named(exc, path) from exc
        raise
    _fsync_dir(path.parent)
    return path
