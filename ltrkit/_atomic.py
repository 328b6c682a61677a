"""Atomic writes shared by every writer in ltrkit (data files, cache folders, manifests,
normalisers, TREC runs, run folders): an interrupted write never leaves a half-written target.

A file or folder is written under a temporary name beside its target, flushed to disk and renamed
into place. Temporaries are created the way any tool creates files, with mode ``0o666`` (files)
or ``0o777`` (folders) less the process umask, so what is written can be read by whoever the
umask allows (``tempfile.mkstemp``/``mkdtemp`` would make every file ``0600`` and every folder
``0700`` whatever the umask).

Temporary names are ``.<target name>.<pid>.<host>.<random>.tmp``: the writer's process id and
a tag of its host name. Before each write, stale temporaries left in the same folder by killed
processes are removed: those of a process of this host that is no longer alive, and any whose
newest modification is older than :data:`STALE_AFTER` seconds (a process id from another host
sharing the folder, or a reused one, cannot be checked).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

STALE_AFTER = 600.0
"""Seconds after its last modification when a temporary of any process counts as abandoned."""

HOST_TAG = hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()
"""Tag of this host in temporary names, so a process id is only checked on the host it belongs to."""

_TEMPORARY = re.compile(r"\..+\.(\d+)\.([0-9a-f]{6})\.[0-9a-f]{8}\.tmp")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{HOST_TAG}.{secrets.token_hex(4)}.tmp")


def _new_temporary(path: Path, create: Callable[[Path], None]) -> Path:
    """A new temporary beside ``path``, made by ``create`` (which fails if the name is taken)."""
    while True:
        temporary = _temporary_name(path)
        try:
            create(temporary)
            return temporary
        except FileExistsError:
            continue


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) terminates the process on Windows; rely on the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _newest_mtime(entry: os.DirEntry) -> float:
    # A folder's own mtime stops moving once its files exist; a live writer is still writing them.
    newest = entry.stat(follow_symlinks=False).st_mtime
    if entry.is_dir(follow_symlinks=False):
        with os.scandir(entry.path) as inside:
            for child in inside:
                newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    return newest


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(folder: PathLike) -> None:
    """Remove the abandoned ltrkit temporaries of ``folder`` (see the module docstring).

    Best effort: a folder that cannot be listed, or an entry that vanishes or cannot be removed
    (another process cleaning at the same time), is skipped.
    """
    now = time.time()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMPORARY.fullmatch(entry.name)
                if match is None:
                    continue
                try:
                    dead = match.group(2) == HOST_TAG and not _alive(int(match.group(1)))
                    if dead or now - _newest_mtime(entry) > STALE_AFTER:
                        _remove(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        return


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path`` to write; on success it replaces ``path``.

    The file is created with mode ``0o666`` less the umask and flushed to disk before the rename.
    If the block raises (a KeyboardInterrupt included), the temporary file is deleted and
    ``path`` is left untouched. Stale temporaries of the folder are removed first.
    """
    path = Path(path)
    clean_stale_temporaries(path.parent)
    temporary = _new_temporary(path, lambda name: os.close(os.open(name, _NEW_FILE, 0o666)))
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """Yield a new empty temporary folder beside ``path`` to fill; on success it replaces ``path``.

    The folder is created with mode ``0o777`` less the umask. On success every file in it is
    flushed to disk, an existing ``path`` is moved aside and deleted, and the folder is renamed
    to ``path`` (between the two renames ``path`` briefly does not exist, it is never
    half-written). If the block raises, the temporary folder is deleted and ``path`` is left
    untouched. Stale temporaries of the parent folder are removed first.
    """
    path = Path(path)
    clean_stale_temporaries(path.parent)
    temporary = _new_temporary(path, lambda name: os.mkdir(name, 0o777))
    try:
        yield temporary
        for folder, _, files in os.walk(temporary):
            for name in files:
                _fsync(Path(folder, name))
        aside = _temporary_name(path)
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            aside = None
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    if aside is not None:
        _remove(aside)
