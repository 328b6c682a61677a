"""Files that travel beside a data file: the libsvm group file and the qid file.

Kept apart from the parser so the cache can check them without importing the numba kernels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def _find_beside(path: PathLike, extensions: tuple[str, ...]) -> Optional[Path]:
    """The first existing ``<path><ext>`` (also after dropping a compression suffix), or ``None``."""
    path = Path(path)
    stems = [path]
    if path.suffix in COMPRESSED_SUFFIXES:
        stems.append(path.with_suffix(""))
    for stem in stems:
        for ext in extensions:
            candidate = Path(str(stem) + ext)
            if candidate.is_file():
                return candidate
    return None


def find_query_file(path: PathLike) -> Optional[Path]:
    """The group file next to ``path``: ``<path>.query`` or ``<path>.group`` (also after
    dropping a compression suffix), or ``None``."""
    return _find_beside(path, (".query", ".group"))


def find_qid_file(path: PathLike) -> Optional[Path]:
    """The qid file of a libsvm file: ``<path>.qid`` (also after dropping a compression suffix),
    as written by :func:`ltrkit.data.letor.write_libsvm`, or ``None``. :func:`ltrkit.data.letor.read_letor` names the queries of a
    libsvm + group file with it."""
    return _find_beside(path, (".qid",))
