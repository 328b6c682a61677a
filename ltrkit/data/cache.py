"""Binary cache of parsed ranking files: memory-mapped ``.npy`` arrays plus a JSON manifest.

A cache is a folder (by default ``<file>.ltrcache/`` next to the source)::

    manifest.json       format version, array shapes/dtypes, source fingerprint, parse options
    features.npy        [n_docs, n_features] float32
    labels.npy          [n_docs] float32
    query_offsets.npy   [n_queries + 1] int64
    qids.npy            [n_queries] str
    doc_ids.npy         [n_docs] str (only when the source had doc ids)

The source fingerprint is its size, ``st_mtime_ns`` and a BLAKE2b hash of its first and last
MiB and its size (the whole file when it is at most 8 MiB). A cache is used only when the
fingerprint, the parse options, the group file's fingerprint and the format version all match
and every array has the recorded shape and dtype; otherwise the source is parsed again and the
cache rewritten. A cache is written into a temporary folder in the same parent and renamed into
place, so an interrupted write never leaves a folder that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import _read_letor

__all__ = ["CacheError", "load_dataset", "save_cache", "load_cache", "cache_folder_for", "is_cache_folder"]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = ("features", "labels", "query_offsets", "qids", "doc_ids")
_HASH_EDGE = 1 << 20
_HASH_WHOLE = 8 << 20
_READ_OPTIONS = ("index_base", "n_features", "query_file", "regroup", "n_threads")


class CacheError(ValueError):
    """A cache folder that is missing, incomplete, corrupt or of another format version."""


def cache_folder_for(path: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """Cache folder of the data file ``path``.

    ``<path>.ltrcache`` next to the file, or, with ``cache_dir``,
    ``<cache_dir>/<name>-<hash of the absolute path>.ltrcache`` (so ``Fold1/train.txt`` and
    ``Fold2/train.txt`` do not collide).
    """
    path = Path(path)
    if cache_dir is None:
        return path.with_name(path.name + ".ltrcache")
    key = hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
    return Path(cache_dir) / f"{path.name}-{key}.ltrcache"


def is_cache_folder(path: PathLike) -> bool:
    """True when ``path`` is a folder holding a cache manifest."""
    return (Path(path) / MANIFEST).is_file()


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    digest = hashlib.blake2b(str(stat.st_size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if stat.st_size <= _HASH_WHOLE:
            digest.update(f.read())
        else:
            digest.update(f.read(_HASH_EDGE))
            f.seek(stat.st_size - _HASH_EDGE)
            digest.update(f.read(_HASH_EDGE))
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "hash": digest.hexdigest()}


def _same_file(recorded: Any, path: Path) -> bool:
    try:
        current = _fingerprint(path)
    except OSError:
        return False
    return isinstance(recorded, dict) and all(recorded.get(k) == current[k] for k in ("size", "mtime_ns", "hash"))


def save_cache(dataset: RankingDataset, folder: PathLike, *, manifest_extra: Optional[dict] = None) -> None:
    """Write ``dataset`` as a cache folder (replacing any existing one atomically).

    Args:
        dataset: the data; memory-mapped arrays are fine.
        folder: the cache folder to create.
        manifest_extra: JSON-serialisable entries added to the manifest (``load_dataset`` stores
            the source fingerprint and parse options here).

    Raises:
        OSError: when the parent folder is not writable (nothing is left behind).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        arrays = {
            "features": np.asarray(dataset.features, dtype=np.float32),
            "labels": np.asarray(dataset.labels, dtype=np.float32),
            "query_offsets": np.asarray(dataset.query_offsets, dtype=np.int64),
            "qids": np.asarray(dataset.qids).astype(str),
        }
        if dataset.doc_ids is not None:
            arrays["doc_ids"] = np.asarray(dataset.doc_ids).astype(str)
        shapes = {}
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            shapes[name] = {"shape": list(array.shape), "dtype": array.dtype.str}
        manifest = {"format_version": FORMAT_VERSION, "source": dataset.source, "arrays": shapes}
        manifest.update(manifest_extra or {})
        # The manifest goes last: a folder without one is never taken for a cache.
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, old / "x")
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_manifest(folder: Path) -> dict:
    try:
        with open(folder / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CacheError(f"{folder}: not a cache folder (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise CacheError(f"{folder}/{MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise CacheError(f"{folder}: cache format version {version!r}, this ltrkit reads version {FORMAT_VERSION}")
    return manifest


def load_cache(folder: PathLike, *, mmap: bool = True) -> RankingDataset:
    """Load a cache folder written by :func:`save_cache`.

    Args:
        folder: the cache folder.
        mmap: memory-map the arrays read-only (no copy; pages load on first touch) instead of
            reading them into memory.

    Raises:
        CacheError: no/unreadable manifest, another format version, a missing array file or an
            array whose shape or dtype differs from the manifest.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    arrays: dict[str, Optional[np.ndarray]] = {"doc_ids": None}
    for name, meta in manifest.get("arrays", {}).items():
        if name not in _ARRAYS:
            raise CacheError(f"{folder}: unknown array {name!r} in {MANIFEST}")
        try:
            array = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CacheError(f"{folder}/{name}.npy: cannot load ({exc})") from None
        if list(array.shape) != meta.get("shape") or array.dtype.str != meta.get("dtype"):
            raise CacheError(
                f"{folder}/{name}.npy: shape {array.shape} dtype {array.dtype.str}, manifest says "
                f"{meta.get('shape')} {meta.get('dtype')}"
            )
        arrays[name] = array
    missing = [n for n in _ARRAYS[:4] if n not in arrays]
    if missing:
        raise CacheError(f"{folder}: {MANIFEST} lists no {missing}")
    try:
        return RankingDataset(source=str(manifest.get("source", folder)), **arrays)  # type: ignore[arg-type]
    except ValueError as exc:
        raise CacheError(f"{folder}: inconsistent arrays ({exc})") from None


def load_dataset(
    path: PathLike, *, cache: bool = True, cache_dir: Optional[PathLike] = None, **read_options: Any
) -> RankingDataset:
    """Load a ranking file through the binary cache: the entry point for every ltrkit reader.

    ``path`` may be a data file (LETOR/SVMlight or libsvm + group file, optionally compressed)
    or a cache folder (``ltrkit data convert`` output), which is loaded directly. For a data
    file: a valid cache (see the module docstring) is memory-mapped; otherwise the file is
    parsed with :func:`ltrkit.data.letor.read_letor` and, when ``cache`` is true, the cache is
    written (nothing is written when parsing fails). A parsed dataset is returned in memory.

    Args:
        path: data file or cache folder.
        cache: use and write the cache.
        cache_dir: folder for caches instead of next to the source (see :func:`cache_folder_for`).
        **read_options: ``index_base``, ``n_features``, ``query_file``, ``regroup``,
            ``n_threads``, passed to ``read_letor``; a cache made with other options (apart from
            ``n_threads``) is not used.

    Returns:
        The dataset; from a cache its arrays are read-only memory maps.

    Raises:
        LetorFormatError: the file is malformed (see ``read_letor``).
        CacheError: ``path`` is a folder that is not a valid cache.
        TypeError: an unknown read option.

    If the cache cannot be written (read-only folder), a warning names ``cache_dir`` and the
    parsed dataset is returned.
    """
    unknown = sorted(set(read_options) - set(_READ_OPTIONS))
    if unknown:
        raise TypeError(f"unknown read option(s) {unknown}; allowed: {list(_READ_OPTIONS)}")
    path = Path(path)
    if path.is_dir():
        return load_cache(path)
    folder = cache_folder_for(path, cache_dir)
    query_file = read_options.get("query_file")
    options = {
        "index_base": read_options.get("index_base", "auto"),
        "n_features": read_options.get("n_features"),
        "query_file": None if query_file is None else str(Path(query_file).resolve()),
        "regroup": bool(read_options.get("regroup", False)),
    }
    if cache and is_cache_folder(folder):
        cached = _valid_cache(folder, path, options)
        if cached is not None:
            return cached
    dataset, group_path = _read_letor(path, **read_options)
    if cache:
        extra = {
            "source_file": _fingerprint(path),
            "group_file": None if group_path is None else _fingerprint(group_path),
            "read_options": options,
        }
        try:
            save_cache(dataset, folder, manifest_extra=extra)
        except OSError as exc:
            warnings.warn(
                f"could not write the cache {folder} ({exc}); pass cache_dir= to cache elsewhere",
                RuntimeWarning,
                stacklevel=2,
            )
    return dataset


def _valid_cache(folder: Path, path: Path, options: dict) -> Optional[RankingDataset]:
    """The cached dataset if the cache matches the source, its group file and the options."""
    try:
        manifest = _read_manifest(folder)
    except CacheError:
        return None
    if manifest.get("read_options") != options or not _same_file(manifest.get("source_file"), path):
        return None
    group = manifest.get("group_file")
    if group is not None and not _same_file(group, Path(group.get("path", ""))):
        return None
    try:
        return load_cache(folder)
    except CacheError:
        return None
