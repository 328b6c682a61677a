"""Atomic file replacement, used by every writer in ltrkit (data files, caches' manifests,
normalisers, TREC runs, run folders): an interrupted write never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path``.

    The temporary file is flushed to disk before the rename. If the block raises (a
    KeyboardInterrupt included), the temporary file is deleted and ``path`` is left untouched.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
