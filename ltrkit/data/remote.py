"""Data paths given as fsspec URLs: ``s3://``, ``gs://``, ``https://``, ``memory://`` ...

:func:`fetch` streams the remote text (1 MiB at a time, never whole in memory) to a local
folder keyed by the URL and the version the file system reports (ETag, MD5, generation or
modification time, and size), so the binary cache of :func:`ltrkit.data.cache.load_dataset` is
built once per version of the remote file and later reads memory-map it. A changed remote file
has another key and is fetched again. Needs ``fsspec`` (``pip install 'ltrkit[remote]'``) and
the file system's own package (``s3fs``, ``gcsfs``, ``aiohttp`` for HTTP).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Optional, Union

from ltrkit._atomic import atomic_path
from ltrkit._optional import require

__all__ = ["default_remote_root", "fetch", "is_url"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# info() keys that identify a version of an object, in the spellings of the common file systems
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "VersionId", "mtime", "LastModified", "updated", "created")


def is_url(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path.

    Example:
        >>> is_url("gs://bucket/train.txt"), is_url("data/train.txt")
        (True, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def default_remote_root() -> Path:
    """Where fetched files go without ``cache_dir``: ``$LTRKIT_REMOTE_CACHE`` or ``~/.cache/ltrkit/remote``."""
    return Path(os.environ.get("LTRKIT_REMOTE_CACHE") or Path.home() / ".cache" / "ltrkit" / "remote")


def fetch(url: str, root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The local copy of ``url``'s current version, streamed there (atomically) if not yet present.

    Args:
        url: an fsspec URL of a data file.
        root: folder of the local copies (default :func:`default_remote_root`).

    Returns:
        ``root/<key>/<file name>``, ``key`` a BLAKE2b digest of the URL, its version and size.

    Raises:
        MissingExtraError: fsspec is not installed.
        ValueError: an unknown protocol, or one whose package is missing (the message says which).
        FileNotFoundError: no such remote file.
    """
    (fsspec,) = require("reading data from URLs", "remote", "fsspec")
    try:
        filesystem, remote = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as error:
        raise ValueError(f"{url}: {error}") from None
    try:
        info = filesystem.info(remote)
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such file") from None
    if info.get("type") == "directory":
        raise ValueError(f"{url}: is a folder; give the URL of a data file")
    version = [str(info.get(key)) for key in _VERSION_KEYS if info.get(key) is not None]
    key = hashlib.blake2b(json.dumps([url, version, info.get("size")]).encode(), digest_size=16).hexdigest()
    local = Path(root if root is not None else default_remote_root()) / key / (PurePosixPath(remote).name or "data")
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(local) as temporary, filesystem.open(remote, "rb") as source, open(temporary, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    return local
