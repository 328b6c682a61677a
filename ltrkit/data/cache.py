"""Binary cache of parsed ranking files: memory-mapped ``.npy`` arrays plus a JSON manifest.

A cache is a folder (by default ``<file>.ltrcache/`` next to the source)::

    manifest.json       format version; per array its shape, dtype, file size and BLAKE2b
                        checksum; the source's and group file's fingerprints; parse options
    features.npy        [n_docs, n_features] float32
    labels.npy          [n_docs] float32
    query_offsets.npy   [n_queries + 1] int64
    qids.npy            [n_queries] str
    doc_ids.npy         [n_docs] str (only when the source had doc ids)

**Source fingerprint.** Size, ``st_mtime_ns``, ``st_ctime_ns``, inode, and a BLAKE2b hash of the
whole file when it is at most 8 MiB, else of 65 blocks of 64 KiB spread evenly over it (the
first at offset 0, the last ending at the end, the middle one centred on the middle: 4 MiB
read per check). The ctime is the part that catches an edit in place whatever its position: it
moves on every write and, unlike the mtime, cannot be set back with ``os.utime``; the inode
catches a file replaced by a rename; the hash catches a same-size edit when the file system's
times are coarse. Trade-off: a full-content hash would close the last gap (a same-size edit
within one clock tick of the fingerprint that misses every sampled block), but at BLAKE2b's
~1.2 GB/s on one core it would add about a second to every reload of a 1.2 GB MSLR-WEB30K split,
against milliseconds now; in the other direction, a copied file (new inode) or a ``chmod``
(new ctime) is parsed again although its content is the same.

**Checks on every load** (cheap, no array data read): the manifest parses and has this format
version, the fingerprints and parse options match (else the cache is stale and is rebuilt
silently), every array file exists, has the size the manifest records, a valid ``.npy`` header
and the recorded shape and dtype, and the arrays fit together. **With** ``verify=True`` (and in
:func:`verify_cache`) each array file's BLAKE2b checksum is also compared with the manifest's,
which reads every byte. A cache that fails a check is rebuilt from the source with a
``RuntimeWarning``; a cache folder loaded directly (no source to rebuild from) raises
:class:`CacheError` naming the file.

A cache is written into a temporary folder in the same parent and renamed into place
(:func:`ltrkit._atomic.atomic_folder`), so an interrupted write never leaves a folder that
looks valid. The source and group file are fingerprinted before and after the parse and the
cache is written only when both agree, so a file replaced or edited during the parse can never
leave a cache that describes one version and holds the other.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ltrkit._atomic import atomic_folder
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.sidecars import find_qid_file, find_query_file

__all__ = [
    "CacheError",
    "load_dataset",
    "save_cache",
    "load_cache",
    "verify_cache",
    "cache_folder_for",
    "is_cache_folder",
]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_ARRAYS = ("features", "labels", "query_offsets", "qids", "doc_ids")
_HASH_WHOLE = 8 << 20
_SAMPLE_BLOCK = 64 << 10
_SAMPLES = 65  # odd, so one block is centred on the middle of the file
_FINGERPRINT_KEYS = ("size", "mtime_ns", "ctime_ns", "inode", "hash")
_CHUNK = 8 << 20
_READ_OPTIONS = ("index_base", "n_features", "query_file", "regroup", "missing", "n_threads")


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
    """Identity of a source file's current version (see the module docstring)."""
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        digest = hashlib.blake2b(str(stat.st_size).encode(), digest_size=16)
        if stat.st_size <= _HASH_WHOLE:
            digest.update(f.read())
        else:
            for k in range(_SAMPLES):
                f.seek((stat.st_size - _SAMPLE_BLOCK) * k // (_SAMPLES - 1))
                digest.update(f.read(_SAMPLE_BLOCK))
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "hash": digest.hexdigest(),
    }


def _current(path: Optional[Path]) -> Optional[dict[str, Any]]:
    try:
        return None if path is None else _fingerprint(path)
    except OSError:
        return None


def _same_file(recorded: Any, path: Path) -> bool:
    current = _current(path)
    return (
        isinstance(recorded, dict)
        and current is not None
        and all(recorded.get(k) == current[k] for k in _FINGERPRINT_KEYS)
    )


def _read_letor(path: Path, **read_options: Any) -> tuple[RankingDataset, Optional[Path]]:
    """:func:`ltrkit.data.letor._read_letor`, imported on first use: the parser's numba kernels
    take ~0.5 s to import and a cache hit needs none."""
    from ltrkit.data.letor import _read_letor as read

    return read(path, **read_options)


def _save_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Write ``array`` as a ``.npy`` file; return its manifest entry.

    The checksum covers the file's bytes (header and data), computed from memory while writing
    instead of reading the file back; the data goes out with ``tofile``, without the chunk copies
    ``np.save`` makes for a file object it does not know.
    """
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    digest = hashlib.blake2b(header.getvalue(), digest_size=16)
    digest.update(array.reshape(-1).view(np.uint8))
    with open(path, "wb") as f:
        f.write(header.getvalue())
        array.tofile(f)
        size = f.tell()
    return {"shape": list(array.shape), "dtype": array.dtype.str, "nbytes": size, "blake2b": digest.hexdigest()}


def _checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def save_cache(dataset: RankingDataset, folder: PathLike, *, manifest_extra: Optional[dict] = None) -> None:
    """Write ``dataset`` as a cache folder (replacing any existing one atomically).

    The manifest records each array file's shape, dtype, size in bytes and BLAKE2b checksum
    (of the whole ``.npy`` file, computed while writing it). Files are created with mode
    ``0o666`` and the folder with ``0o777``, less the umask.

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
    arrays = {
        "features": np.asarray(dataset.features, dtype=np.float32),
        "labels": np.asarray(dataset.labels, dtype=np.float32),
        "query_offsets": np.asarray(dataset.query_offsets, dtype=np.int64),
        "qids": np.asarray(dataset.qids).astype(str),
    }
    if dataset.doc_ids is not None:
        arrays["doc_ids"] = np.asarray(dataset.doc_ids).astype(str)
    with atomic_folder(folder) as tmp:
        entries = {name: _save_array(tmp / f"{name}.npy", array) for name, array in arrays.items()}
        manifest = {"format_version": FORMAT_VERSION, "source": dataset.source, "arrays": entries}
        manifest.update(manifest_extra or {})
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)


def _read_manifest(folder: Path) -> dict:
    """The manifest as a dict, any format version.

    Raises:
        CacheError: no manifest, or one that is not a JSON object.
        PermissionError: the manifest cannot be read by this user.
    """
    try:
        with open(folder / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CacheError(f"{folder}: not a cache folder (no {MANIFEST})") from None
    except PermissionError:
        raise
    except (OSError, ValueError) as exc:
        raise CacheError(f"{folder}/{MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise CacheError(f"{folder}/{MANIFEST}: unreadable manifest (not a JSON object)")
    return manifest


def _check_version(folder: Path, manifest: dict) -> None:
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{folder}: cache format version {manifest.get('format_version')!r}, "
            f"this ltrkit reads version {FORMAT_VERSION}"
        )


def _load_array(folder: Path, name: str, meta: Any, *, mmap: bool, verify: bool) -> np.ndarray:
    """One array of a cache after the checks of every load and, with ``verify``, its checksum.

    Raises:
        CacheError: naming the file, when a check fails.
        PermissionError: the file cannot be read by this user.
    """
    path = folder / f"{name}.npy"
    if name not in _ARRAYS:
        raise CacheError(f"{folder}: unknown array {name!r} in {MANIFEST}")
    if not isinstance(meta, dict):
        raise CacheError(f"{folder}/{MANIFEST}: entry of {name!r} is not an object")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CacheError(f"{path}: cannot load (file missing)") from None
    if size != meta.get("nbytes"):
        raise CacheError(f"{path}: {size} bytes, {MANIFEST} says {meta.get('nbytes')} (truncated or replaced)")
    if verify and _checksum(path) != meta.get("blake2b"):
        raise CacheError(f"{path}: BLAKE2b checksum differs from {MANIFEST} (the file is corrupt)")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except PermissionError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise CacheError(f"{path}: cannot load ({exc})") from None
    if list(array.shape) != meta.get("shape") or array.dtype.str != meta.get("dtype"):
        raise CacheError(
            f"{path}: shape {array.shape} dtype {array.dtype.str}, manifest says "
            f"{meta.get('shape')} {meta.get('dtype')}"
        )
    return array


def _assemble(folder: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> RankingDataset:
    missing = [n for n in _ARRAYS[:4] if n not in arrays]
    if missing:
        raise CacheError(f"{folder}: {MANIFEST} lists no {missing}")
    try:
        return RankingDataset(source=str(manifest.get("source", folder)), **{"doc_ids": None, **arrays})
    except ValueError as exc:
        raise CacheError(f"{folder}: inconsistent arrays ({exc})") from None


def _array_entries(folder: Path, manifest: dict) -> dict:
    entries = manifest.get("arrays")
    if not isinstance(entries, dict):
        raise CacheError(f"{folder}/{MANIFEST}: no 'arrays' object")
    return entries


def load_cache(folder: PathLike, *, mmap: bool = True, verify: bool = False) -> RankingDataset:
    """Load a cache folder written by :func:`save_cache`.

    Each load checks the manifest and, per array, that the file exists, has the recorded size,
    a valid ``.npy`` header, shape and dtype (no array data is read); ``verify`` also compares
    each file's BLAKE2b checksum with the manifest (reads every byte).

    Args:
        folder: the cache folder.
        mmap: memory-map the arrays read-only (no copy; pages load on first touch) instead of
            reading them into memory.
        verify: check the checksums too.

    Raises:
        CacheError: naming the file: no/unreadable manifest, another format version, a missing,
            truncated or corrupt array file, an array whose shape or dtype differs from the
            manifest, or arrays that do not fit together.
        PermissionError: a file of the cache cannot be read by this user.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    _check_version(folder, manifest)
    arrays = {
        name: _load_array(folder, name, meta, mmap=mmap, verify=verify)
        for name, meta in _array_entries(folder, manifest).items()
    }
    return _assemble(folder, manifest, arrays)


def verify_cache(folder: PathLike) -> list[str]:
    """Every problem found in a cache folder, one message naming the file each; empty when fine.

    Runs all the checks of :func:`load_cache` with ``verify=True`` (manifest, format version,
    array files present, sizes, ``.npy`` headers, shapes and dtypes, BLAKE2b checksums, arrays
    that fit together), reporting all failures instead of stopping at the first. Whether the
    cache still matches its source file is not checked here: a stale cache is rebuilt silently
    by :func:`load_dataset`.

    Args:
        folder: the cache folder.

    Returns:
        The problems, e.g. ``["<folder>/features.npy: BLAKE2b checksum differs from manifest.json
        (the file is corrupt)"]``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
        >>> _ = p.write_text("2 qid:7 1:0.5\\n0 qid:7 1:0.25\\n")
        >>> _ = load_dataset(p)
        >>> verify_cache(cache_folder_for(p))
        []
        >>> (cache_folder_for(p) / "labels.npy").unlink()
        >>> [problem.split("/")[-1] for problem in verify_cache(cache_folder_for(p))]
        ['labels.npy: cannot load (file missing)']
    """
    folder = Path(folder)
    try:
        manifest = _read_manifest(folder)
        _check_version(folder, manifest)
        entries = _array_entries(folder, manifest)
    except CacheError as exc:
        return [str(exc)]
    except PermissionError as exc:
        return [f"{folder}/{MANIFEST}: cannot read ({exc.strerror or exc})"]
    problems, arrays = [], {}
    for name, meta in entries.items():
        try:
            arrays[name] = _load_array(folder, name, meta, mmap=True, verify=True)
        except CacheError as exc:
            problems.append(str(exc))
        except PermissionError as exc:
            problems.append(f"{folder}/{name}.npy: cannot read ({exc.strerror or exc})")
    if not problems:
        try:
            _assemble(folder, manifest, arrays)
        except CacheError as exc:
            problems.append(str(exc))
    return problems


def load_dataset(
    path: PathLike,
    *,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
    verify: bool = False,
    **read_options: Any,
) -> RankingDataset:
    """Load a ranking file through the binary cache: the entry point for every ltrkit reader.

    ``path`` may be a data file (LETOR/SVMlight or libsvm + group file, optionally compressed)
    or a cache folder (``ltrkit data convert`` output), which is loaded directly, or an fsspec
    URL of a data file (``s3://``, ``gs://``, ``https://``): its text is streamed to a local
    folder keyed by the URL and its version (``cache_dir`` when given; see
    :mod:`ltrkit.data.remote`) and read from there. For a data
    file: a valid cache (see the module docstring for the checks) is memory-mapped; otherwise
    the file is parsed with :func:`ltrkit.data.letor.read_letor` and, when ``cache`` is true,
    the cache is written (nothing is written when parsing fails). A parsed dataset is returned
    in memory.

    Args:
        path: data file or cache folder.
        cache: use and write the cache.
        cache_dir: folder for caches instead of next to the source (see :func:`cache_folder_for`).
        verify: also check the cache's array checksums (reads the whole cache once).
        **read_options: ``index_base``, ``n_features``, ``query_file``, ``regroup``,
            ``missing``, ``n_threads``, passed to ``read_letor``; a cache made with other
            options (apart from ``n_threads``) is not used.

    Returns:
        The dataset; from a cache its arrays are read-only memory maps.

    Raises:
        LetorFormatError: the file is malformed (see ``read_letor``), or "changed while
            reading, try again": the file or its group file changed during the parse, and
            again during a second one.
        CacheError: ``path`` is a folder that is not a valid cache.
        TypeError: an unknown read option.

    Warnings (``RuntimeWarning``, the parsed dataset is returned): a corrupt cache (it is
    rebuilt); a cache this user cannot read (it is left alone); a cache that cannot be written
    (read-only folder). Each names the cache; the last two suggest ``cache_dir=``.
    """
    unknown = sorted(set(read_options) - set(_READ_OPTIONS))
    if unknown:
        raise TypeError(f"unknown read option(s) {unknown}; allowed: {list(_READ_OPTIONS)}")
    from ltrkit.data.remote import fetch, is_url

    if is_url(path):
        path = fetch(path, cache_dir)
    path = Path(path)
    if path.is_dir():
        return load_cache(path, verify=verify)
    if not cache:
        return _read_letor(path, **read_options)[0]
    folder = cache_folder_for(path, cache_dir)
    query_file = read_options.get("query_file")
    options = {
        "index_base": read_options.get("index_base", "auto"),
        "n_features": read_options.get("n_features"),
        "query_file": None if query_file is None else str(Path(query_file).resolve()),
        "regroup": bool(read_options.get("regroup", False)),
        "missing": read_options.get("missing", "error"),
    }
    try:
        cached = _cached(folder, path, options, verify)
    except PermissionError as exc:
        warnings.warn(
            f"cannot read the cache {folder} ({exc}); parsing {path} instead "
            "and leaving the cache alone; pass cache_dir= to cache elsewhere",
            RuntimeWarning,
            stacklevel=2,
        )
        return _read_letor(path, **read_options)[0]
    if cached is not None:
        return cached
    dataset, extra = _parse_unchanged(path, read_options)
    try:
        save_cache(dataset, folder, manifest_extra={**extra, "read_options": options})
    except OSError as exc:
        warnings.warn(
            f"could not write the cache {folder} ({exc}); pass cache_dir= to cache elsewhere",
            RuntimeWarning,
            stacklevel=2,
        )
    return dataset


def _cached(folder: Path, path: Path, options: dict, verify: bool) -> Optional[RankingDataset]:
    """The cached dataset if the cache is valid and matches the source, its group file and the
    options; ``None`` if there is none or it is stale (silently) or corrupt (with a warning).

    Raises:
        PermissionError: a file of the cache cannot be read by this user.
    """
    try:
        manifest = _read_manifest(folder)
    except CacheError as exc:
        if (folder / MANIFEST).exists():  # no manifest: no cache yet; one that does not parse: damage
            _warn_corrupt(exc, path)
        return None
    try:
        _check_version(folder, manifest)
    except CacheError:
        return None  # written by another ltrkit version: stale, not damaged
    if manifest.get("read_options") != options or not _same_file(manifest.get("source_file"), path):
        return None
    group = manifest.get("group_file")
    if group is not None and not (isinstance(group, dict) and _same_file(group, Path(group.get("path", "")))):
        return None
    if group is not None and not _same_sidecar(manifest.get("qid_file"), find_qid_file(path)):
        return None
    try:
        return load_cache(folder, verify=verify)
    except CacheError as exc:
        _warn_corrupt(exc, path)
        return None


def _same_sidecar(recorded: Any, current: Optional[Path]) -> bool:
    """Whether an optional file beside the source is as recorded: still absent, or unchanged."""
    if recorded is None or current is None:
        return recorded is None and current is None
    return _same_file(recorded, current)


def _warn_corrupt(error: CacheError, path: Path) -> None:
    warnings.warn(f"damaged cache, rebuilding it from {path}: {error}", RuntimeWarning, stacklevel=4)


def _parse_unchanged(path: Path, read_options: dict) -> tuple[RankingDataset, dict]:
    """Parse ``path``; return the dataset and the manifest entries of its source, group and qid files.

    Both files are fingerprinted before and after the parse; when a fingerprint moved (the file
    was replaced or written meanwhile) the parse is repeated once, as the cache must describe
    exactly the version that was parsed.

    Raises:
        LetorFormatError: "changed while reading, try again" (the parser's own error for a file
            that changes under it) when the files changed during both parses.
    """
    from ltrkit.data.letor import _changed_error

    query_file = read_options.get("query_file")
    group_candidate = Path(query_file) if query_file is not None else find_query_file(path)
    qid_candidate = find_qid_file(path)
    for _ in range(2):
        source, group, qids = _current(path), _current(group_candidate), _current(qid_candidate)
        dataset, group_path = _read_letor(path, **read_options)
        if group_path is None:
            entries = {"source_file": source, "group_file": None}
        else:
            # the qid file names the queries of a group file: a cache must notice it appear or change
            entries = {"source_file": source, "group_file": group, "qid_file": qids}
        if (
            source is not None
            and source == _current(path)
            and (group_path is None or (group is not None and group == _current(group_path)))
            and qids == _current(qid_candidate)
            and qid_candidate == find_qid_file(path)
        ):
            return dataset, entries
    raise _changed_error(path)
