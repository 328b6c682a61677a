"""Read and write LETOR / SVMlight ranking files and libsvm files with a group file.

Format (SVMlight with query ids, used by LETOR 3.0/4.0, MSLR-WEB10K/30K, Yahoo! LTR, Istella)::

    <label> qid:<qid> <index>:<value> <index>:<value> ... [# comment]

* ``label`` is a float (graded relevance, usually 0-4); ``qid`` is kept as a string. Two qids are
  the same query only when their bytes are equal; a qid must be valid UTF-8 without NUL bytes
  (anything else is refused rather than decoded lossily, which could merge distinct queries).
* Feature indices are 1-based (LETOR, SVMlight) or 0-based; absent features are 0. Features are
  read into a dense matrix, so without ``n_features`` an index above :data:`MAX_FEATURE_INDEX` is
  refused (a stray ``99999999999:1`` would otherwise ask for terabytes).
* A feature value ``NULL`` or ``NaN`` (any case) or an empty ``idx:`` is missing (LETOR 3.0's
  "Feature-null" release writes ``NULL``): an error unless ``missing="zero"`` or ``"min"``.
* A comment ``# docid = X ...`` (LETOR 4.0) gives the document id ``X``; any other comment is
  kept whole, stripped, as the document id.
* libsvm form (LightGBM/XGBoost): the same lines without ``qid:``, plus a group file with one
  query size per line (``<file>.query`` or ``<file>.group``), and optionally the qids, one per
  query, in ``<file>.qid`` (written by :func:`write_libsvm`, so a round trip keeps them).
* ``.gz``, ``.bz2`` and ``.xz`` files are (de)compressed transparently.

Reading is done by numba byte kernels (:mod:`ltrkit.data._letor_kernels`) over line-aligned
chunks of the file on several threads (two passes: count, then fill), straight into a
preallocated dense float32 matrix; the text of a file over 32 MB is never held in memory as a
whole (compressed files excepted). Every value equals ``np.float32(float(token))``.

A file rewritten while it is parsed is detected, never parsed as a mix of versions: a file of
up to 32 MB (or compressed) is read once and both passes parse that private copy; for a larger
one pass 2 checks that each chunk it re-reads has the checksum pass 1 saw; the file's size,
mtime, inode and device must be the same after reading as when it was opened; and the kernels
bound every write by the arrays they fill. Such a file gives ``LetorFormatError("<file>: changed
while reading, try again")``.

Reference: T. Joachims, "Optimizing Search Engines using Clickthrough Data", KDD 2002 (SVMlight
ranking format); T. Qin and T.-Y. Liu, "Introducing LETOR 4.0 Datasets", arXiv:1306.2597.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ltrkit._atomic import atomic_path
from ltrkit.data import _letor_kernels as K
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.sidecars import find_qid_file, find_query_file

__all__ = [
    "MAX_FEATURE_INDEX", "LetorFormatError", "read_letor", "write_letor", "write_libsvm", "find_query_file",
    "find_qid_file",
]

PathLike = Union[str, "os.PathLike[str]"]

_COMPRESSORS: dict[str, Callable] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_CHUNK_BYTES = 32 << 20
_SLOW_CAPACITY = 1024
_WRITE_BLOCK = 4096
# Quoted input (a line, a token, a field) is cut to this many characters in error messages.
_QUOTE_CHARS = 200
_MISSING = {"error": K.MISSING_ERROR, "zero": K.MISSING_ZERO, "min": K.MISSING_NAN}

#: Largest feature index accepted when ``n_features`` is not given. The matrix is dense float32:
#: 10**6 columns take 4 MB per document, far beyond the widest public LTR sets (Yahoo! LTR: 700,
#: Istella: 220, MSLR: 136), so a larger index is a corrupt token, not a feature. Pass
#: ``n_features`` to read a wider file.
MAX_FEATURE_INDEX = 1_000_000


def _clip(text: str) -> str:
    """``text`` cut to ``_QUOTE_CHARS`` characters, with ``...`` when cut."""
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."


def _quote(text: Union[str, bytes]) -> str:
    """``repr`` of ``text`` cut to ``_QUOTE_CHARS`` characters; ``...`` after the quote when cut."""
    return repr(text) if len(text) <= _QUOTE_CHARS else repr(text[:_QUOTE_CHARS]) + "..."


class LetorFormatError(ValueError):
    """A malformed LETOR/libsvm/group file.

    Attributes:
        path: the file.
        line: 1-based line number of the problem, or ``None`` when it concerns the whole file.
        field: what was wrong (``"label"``, ``"qid"``, ``"feature 12"``, ``"token"``,
            ``"group size"``, ``"compression"``...), or ``None``; cut to 200 characters, like
            every piece of input the message quotes.
    """

    def __init__(self, path: PathLike, line: Optional[int], field: Optional[str], problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = None if field is None else _clip(field)
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")


def read_letor(
    path: PathLike,
    *,
    index_base: Union[int, str] = "auto",
    n_features: Optional[int] = None,
    query_file: Optional[PathLike] = None,
    regroup: bool = False,
    missing: str = "error",
    n_threads: Optional[int] = None,
) -> RankingDataset:
    """Parse a LETOR/SVMlight file (or libsvm + group file) into a :class:`RankingDataset`.

    Args:
        path: the data file; ``.gz``/``.bz2``/``.xz`` are decompressed in memory.
        index_base: ``1`` (LETOR/SVMlight), ``0``, or ``"auto"``: 0-based when some line has
            feature index 0, else 1-based (as scikit-learn's ``load_svmlight_file``).
        n_features: width of the feature matrix; an index beyond it is an error. Default: the
            largest index seen (``+1`` when 0-based), which may be at most
            :data:`MAX_FEATURE_INDEX`.
        query_file: group file of a libsvm file (one query size per line, in row order). When
            ``None`` and the lines have no ``qid:``, ``<path>.query`` / ``<path>.group`` is used.
            Not allowed together with ``qid:`` tokens.
        regroup: when the rows of a qid are not contiguous, stably move them together (queries
            in order of first appearance) instead of raising.
        missing: what a missing feature value (``NULL``, ``NaN`` in any case, or an empty
            ``idx:``) becomes: ``"error"`` (raise), ``"zero"``, or ``"min"``: the smallest value
            of that feature among the query's documents that have one (absent features count as
            their value 0), or 0 when no document of the query has one (LETOR 3.0's
            "Feature-min" rule). Infinities are always an error.
        n_threads: parser threads; default: the CPUs this process may use.

    Returns:
        ``RankingDataset`` with float32 ``features [n_docs, n_features]`` and ``labels``,
        qids as strings in file order, and ``doc_ids`` (str array, ``""`` for rows without a
        comment) or ``None`` when no line has a comment. Group-file queries take their qids from
        ``<path>.qid`` when it exists (see :func:`find_qid_file`), else are named ``"0"``,
        ``"1"``, .... Blank lines and comment-only lines are skipped.

    Raises:
        LetorFormatError: with the file, 1-based line, field and problem for the first malformed
            line found (bad or non-finite label/value, a missing value with ``missing="error"``,
            garbage token, index 0 when 1-based, index beyond ``n_features`` or above
            :data:`MAX_FEATURE_INDEX`, duplicate index in a line, a qid that is not UTF-8 or
            holds a NUL byte, a line missing ``qid:`` when others have one, non-contiguous query
            rows), an empty file, truncated/corrupt compressed data, a bad group or qid file, or
            a file that changed while it was read. Quoted input is cut to 200 characters.
        FileNotFoundError: when ``path`` or ``query_file`` does not exist.
        ValueError: on a bad option.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
        >>> _ = p.write_text("2 qid:7 1:0.5 3:-1e-2 # docid = d1\\n0 qid:7 2:3\\n")
        >>> ds = read_letor(p)
        >>> ds.features.tolist(), ds.labels.tolist(), ds.qids.tolist(), ds.doc_ids.tolist()
        ([[0.5, 0.0, -0.009999999776482582], [0.0, 3.0, 0.0]], [2.0, 0.0], ['7'], ['d1', ''])
    """
    dataset, _ = _read_letor(
        path, index_base=index_base, n_features=n_features, query_file=query_file, regroup=regroup,
        missing=missing, n_threads=n_threads,
    )
    return dataset


def _check_options(index_base: object, n_features: object, missing: object, n_threads: object) -> None:
    if not isinstance(missing, str) or missing not in _MISSING:
        raise ValueError(f"missing must be one of {list(_MISSING)}, got {missing!r}")
    if index_base not in ("auto", 0, 1) or isinstance(index_base, bool):
        raise ValueError(f"index_base must be 0, 1 or 'auto', got {index_base!r}")
    if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 0):
        raise ValueError(f"n_features must be a non-negative int or None, got {n_features!r}")
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
        raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def _changed_error(path: Path) -> LetorFormatError:
    return LetorFormatError(path, None, None, "changed while reading, try again")


def _checksum(buf: np.ndarray) -> int:
    """:func:`_letor_kernels.checksum` of a uint8 array."""
    n = len(buf) - len(buf) % 8
    return int(K.checksum(buf[:n].view(np.uint64), buf[n:]))


class _Source:
    """Bytes of a data file, read chunk by chunk.

    A compressed file is decompressed into memory once, and a file of at most ``_CHUNK_BYTES`` is
    read into memory once: both passes then parse the same private bytes (``private``). A larger
    uncompressed file is read with ``pread`` into one reusable buffer per thread, so the text
    never sits in memory as a whole (and no page faults on a memory map of it): holding it for
    both passes would double the peak memory (MSLR-WEB30K: 1.2 GB of text beside a 1.2 GB
    matrix), so its chunks are read twice and compared by checksum instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Optional[io.FileIO] = None
        self.data: Optional[np.ndarray] = None
        self._local = threading.local()
        self._lock = threading.Lock()
        opener = _COMPRESSORS.get(path.suffix)
        if opener is not None:
            self._identity = _identity(os.stat(path))
            try:
                with opener(path, "rb") as f:
                    self.data = _read_all(f)
            except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                raise LetorFormatError(
                    path, None, "compression",
                    f"cannot decompress {path.suffix} data ({exc}); the file is truncated or corrupt",
                ) from None
            self.size = len(self.data)
        else:
            self.file = io.FileIO(path, "r")
            self._identity = _identity(os.fstat(self.file.fileno()))
            self.size = self._identity[0]
            if self.size <= _CHUNK_BYTES:
                self.data = self._read_exactly(np.empty(self.size, dtype=np.uint8), 0)

    @property
    def private(self) -> bool:
        """True when the bytes were read once into memory (both passes see the same bytes)."""
        return self.data is not None

    def changed(self) -> bool:
        """Whether the file at ``path`` is not the one opened, or its size or mtime differ."""
        try:
            now = _identity(os.stat(self.path))
            if self.file is not None and _identity(os.fstat(self.file.fileno())) != self._identity:
                return True
        except OSError:
            return True
        return now != self._identity

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.data = None

    def _read_into(self, view: np.ndarray, offset: int) -> int:
        if hasattr(os, "preadv"):
            # Positioned read: threads share the descriptor without a lock, GIL released.
            return os.preadv(self.file.fileno(), [view], offset)
        with self._lock:
            self.file.seek(offset)
            return self.file.readinto(view)

    def read(self, start: int, end: int) -> np.ndarray:
        """``[start, end)`` as a uint8 array, valid until this thread's next ``read``."""
        if self.data is not None:
            return self.data[start:end]
        n = end - start
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:
            # Some slack: line-aligned chunks differ a little in size.
            buf = np.empty(n + n // 8, dtype=np.uint8)
            self._local.buf = buf
        return self._read_exactly(buf[:n], start)

    def _read_exactly(self, view: np.ndarray, offset: int) -> np.ndarray:
        """``view`` filled from byte ``offset`` of the file, which must not end before."""
        done = 0
        while done < len(view):
            got = self._read_into(view[done:], offset + done)
            if got == 0:
                raise _changed_error(self.path)
            done += got
        return view

    def bytes(self, start: int, end: int) -> bytes:
        """A copy of ``[start, end)`` (for small reads outside the parsing threads)."""
        end = min(end, self.size)
        if self.data is not None:
            return self.data[start:end].tobytes()
        out = np.empty(max(end - start, 0), dtype=np.uint8)
        done = 0
        while done < len(out):
            got = self._read_into(out[done:], start + done)
            if got == 0:
                break
            done += got
        return out[:done].tobytes()

    def find_newline(self, pos: int) -> int:
        """Position just after the first ``\\n`` at or after ``pos`` (or the file size)."""
        while pos < self.size:
            block = self.bytes(pos, pos + (1 << 16))
            k = block.find(b"\n")
            if k >= 0:
                return pos + k + 1
            pos += len(block)
        return self.size

    def chunks(self, n_threads: int) -> list[tuple[int, int]]:
        """Line-aligned ``(start, end)`` byte ranges covering the file."""
        n_chunks = max(n_threads, -(-self.size // _CHUNK_BYTES))
        # A UTF-8 byte order mark (files saved by some Windows editors) is not data.
        bounds = [3 if self.bytes(0, 3) == b"\xef\xbb\xbf" else 0]
        for k in range(1, n_chunks):
            cut = self.find_newline(max(k * self.size // n_chunks, bounds[-1]))
            if cut > bounds[-1]:
                bounds.append(cut)
        if bounds[-1] != self.size or len(bounds) == 1:
            bounds.append(self.size)
        return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

    def line_number(self, pos: int) -> int:
        """1-based number of the line holding byte ``pos``."""
        if self.data is not None:
            return int(K.count_newlines(self.data, pos)) + 1
        count = 0
        for start in range(0, pos, _CHUNK_BYTES):
            block = np.frombuffer(self.bytes(start, min(start + _CHUNK_BYTES, pos)), dtype=np.uint8)
            count += int(K.count_newlines(block, len(block)))
        return count + 1

    def line_text(self, line_start: int) -> str:
        raw = self.bytes(line_start, line_start + 201)
        text = raw.split(b"\n", 1)[0]
        suffix = " ..." if len(text) > 200 else ""
        return text[:200].decode("utf-8", "replace").rstrip("\r") + suffix

    def text(self, start: int, end: int) -> str:
        return self.bytes(start, end).decode("utf-8", "replace")


def _read_all(f: io.BufferedIOBase) -> np.ndarray:
    """All bytes of a (decompressing) stream as a uint8 array, with a peak of about the data
    size plus one piece (``f.read()`` would join pieces and hold the data twice)."""
    pieces = []
    while True:
        piece = f.read(_CHUNK_BYTES)
        if not piece:
            break
        pieces.append(piece)
    data = np.empty(sum(len(p) for p in pieces), dtype=np.uint8)
    pos = 0
    for k in range(len(pieces)):
        piece, pieces[k] = pieces[k], b""
        data[pos : pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        pos += len(piece)
    return data


_PROBLEMS = {
    K.BAD_LABEL: ("label", "label {tok} is not a number"),
    K.NONFINITE_LABEL: ("label", "label {tok} is not a finite float32 (inf and |x| > 3.4e38 are not allowed)"),
    K.MISSING_LABEL_VALUE: ("label", "label {tok} is a missing value (NULL/NaN); every document needs a label"),
    K.EMPTY_QID: ("qid", "'qid:' has no value"),
    K.BAD_TOKEN: ("token", "token {tok} is not of the form index:value (index a non-negative integer)"),
    K.MISSING_VALUE: (
        "feature {idx}",
        "feature token {tok} has a missing value (NULL, NaN or empty); pass missing='zero' or 'min' "
        "(CLI: --missing) to fill missing values",
    ),
    K.BAD_VALUE: ("feature {idx}", "value of feature token {tok} is not a number"),
    K.NONFINITE_VALUE: (
        "feature {idx}",
        "value of feature token {tok} is not a finite float32 (inf and |x| > 3.4e38 are not allowed)",
    ),
    K.INDEX_ZERO: (
        "feature 0",
        "feature index 0 in {tok}, but indices are 1-based (index_base=1); pass index_base=0 for a 0-based file",
    ),
    K.INDEX_TOO_LARGE: ("feature {idx}", "feature index {idx} in {tok} is beyond n_features={n_features}{largest}"),
    K.INDEX_ABOVE_LIMIT: (
        "feature {idx}",
        "feature index {idx} in {tok} is above MAX_FEATURE_INDEX={limit} (features are read into a dense "
        "matrix); pass n_features= to read a wider file",
    ),
    K.DUPLICATE_INDEX: ("feature {idx}", "feature index {idx} appears twice in this line ({tok})"),
    K.MISSING_LABEL: ("label", "the label is missing (the line starts with {tok})"),
}


def _kernel_error(
    src: _Source, code: int, line_pos: int, tok: int, tok_end: int, *, n_features: Optional[int], base: Optional[int]
) -> LetorFormatError:
    """The error for a kernel's code and absolute byte positions (line start, token range).

    ``n_features`` is ``None`` when not given (scan pass); ``base`` is ``None`` when not known yet.
    """
    if code == K.OUT_OF_BOUNDS:
        return _changed_error(src.path)
    # One character more than is quoted, so _quote/_clip see that the token was cut.
    token = src.text(tok, min(tok_end, tok + _QUOTE_CHARS + 1))
    idx = _clip(token.split(":", 1)[0])
    if code == K.INDEX_ABOVE_LIMIT and n_features is not None:
        code = K.INDEX_TOO_LARGE
    field, problem = _PROBLEMS[code]
    largest = "" if n_features is None or base is None else f" (largest allowed index: {n_features - 1 + base})"
    fmt = dict(tok=_quote(token), idx=idx, n_features=n_features, largest=largest, limit=MAX_FEATURE_INDEX)
    message = problem.format(**fmt) + f"\n    {src.line_text(line_pos)}"
    return LetorFormatError(src.path, src.line_number(line_pos), field.format(**fmt), message)


def _read_letor(
    path: PathLike,
    *,
    index_base: Union[int, str] = "auto",
    n_features: Optional[int] = None,
    query_file: Optional[PathLike] = None,
    regroup: bool = False,
    missing: str = "error",
    n_threads: Optional[int] = None,
) -> tuple[RankingDataset, Optional[Path]]:
    """:func:`read_letor`, also returning the group file that was used (for the cache)."""
    _check_options(index_base, n_features, missing, n_threads)
    path = Path(path)
    if query_file is not None and not Path(query_file).is_file():
        raise FileNotFoundError(f"query_file {str(query_file)!r} does not exist")
    n_threads = _default_threads() if n_threads is None else n_threads
    src = _Source(path)
    try:
        try:
            result = _parse(src, index_base, n_features, query_file, regroup, missing, n_threads)
        except LetorFormatError:
            # A format error in bytes that were being rewritten says nothing about the file.
            if src.changed():
                raise _changed_error(path) from None
            raise
        if src.changed():
            raise _changed_error(path)
        return result
    finally:
        src.close()


class _ChunkResult:
    """What pass 2 keeps of one chunk once its bytes are gone."""

    def __init__(self) -> None:
        self.error: Optional[LetorFormatError] = None
        self.seg_rows = np.zeros(0, dtype=np.int64)  # absolute first row of each qid run
        self.seg_pos = np.zeros(0, dtype=np.int64)  # absolute byte position of its qid
        self.seg_qids = np.zeros(0, dtype="S1")
        self.doc_ids: Optional[np.ndarray] = None
        self.n_missing = 0  # missing values stored as NaN (missing="min")


def _parse(
    src: _Source,
    index_base: Union[int, str],
    n_features: Optional[int],
    query_file: Optional[PathLike],
    regroup: bool,
    missing: str,
    n_threads: int,
) -> tuple[RankingDataset, Optional[Path]]:
    if src.size == 0:
        raise LetorFormatError(src.path, None, None, "contains no documents (the file is empty)")
    chunks = src.chunks(n_threads)
    # Any valid index is <= n_features (1-based); the exact bound is checked in pass 2.
    max_index = MAX_FEATURE_INDEX if n_features is None else min(n_features, K.MAX_INDEX_LIMIT)
    checksums = [0] * len(chunks)

    def read_chunk(k: int) -> tuple[np.ndarray, int]:
        """Chunk ``k`` and the checksum of its bytes and the one before it (0 when private).

        That byte was a line end when the chunks were cut; if it is not any more, the chunk
        starts inside a line of a new version of the file.
        """
        start, end = chunks[k]
        if src.private:
            return src.read(start, end), 0
        lead = int(k > 0)
        raw = src.read(start - lead, end)
        if lead and raw[0] != 10:
            raise _changed_error(src.path)
        return raw[lead:], _checksum(raw)

    def scan(k: int) -> np.ndarray:
        start, end = chunks[k]
        buf, checksums[k] = read_chunk(k)
        stats = K.scan_chunk(buf, 0, end - start, max_index)
        for j in (K.S_ERR_LINE, K.S_ERR_TOK, K.S_ERR_TOKEND, K.S_FIRST_QID, K.S_FIRST_NOQID):
            if stats[j] >= 0:
                stats[j] += start
        return stats

    with ThreadPoolExecutor(max_workers=min(n_threads, len(chunks))) as pool:
        scans = list(pool.map(scan, range(len(chunks))))
        try:
            rows, has_qid, group_path = _check_scans(src, scans, index_base, n_features, query_file)
        except LetorFormatError:
            # The chunks were scanned one after another: unless each still holds the bytes its
            # scan saw, the error may come from a mix of two versions of the file.
            if any(pool.map(lambda k: read_chunk(k)[1] != checksums[k], range(len(chunks)))):
                raise _changed_error(src.path) from None
            raise
        n_docs = int(rows.sum())

        max_idx = max(int(s[K.S_MAX_IDX]) for s in scans)
        min_idx = min((int(s[K.S_MIN_IDX]) for s in scans if s[K.S_MIN_IDX] >= 0), default=1)
        base = (0 if min_idx == 0 else 1) if index_base == "auto" else int(index_base)
        if n_features is None:
            n_features = max(max_idx + 1 - base, 0)
        has_comments = any(s[K.S_COMMENTS] > 0 for s in scans)

        features = _feature_matrix(src.path, n_docs, n_features)
        labels = np.empty(n_docs, dtype=np.float32)
        row0 = np.concatenate([[0], np.cumsum(rows)[:-1]])

        def fill(k: int) -> _ChunkResult:
            start, end = chunks[k]
            result = _ChunkResult()
            # Equal checksums for every chunk: all of them are what the file held between the
            # passes, one version of it.
            buf, checksum = read_chunk(k)
            if checksum != checksums[k]:
                raise _changed_error(src.path)
            n_rows = int(rows[k])
            if n_rows == 0:
                return result
            qid_span = np.zeros((n_rows, 2), dtype=np.int64)
            doc_span = np.full((n_rows if scans[k][K.S_COMMENTS] else 0, 2), -1, dtype=np.int64)
            seen = np.empty(n_features, dtype=np.int64)
            capacity = _SLOW_CAPACITY
            while True:
                slow = np.empty((capacity, 3), dtype=np.int64)
                res = K.fill_chunk(
                    buf, 0, end - start, int(row0[k]), base, _MISSING[missing], features, labels, qid_span,
                    doc_span, seen, slow, K._POW10, K._EXACT_POW10,
                )
                if res[K.F_ERR] != K.OK or res[K.F_SLOW] <= capacity:
                    break
                capacity = int(res[K.F_SLOW])
            if res[K.F_ERR] != K.OK:
                positions = (int(p) + start for p in res[K.F_ERR_LINE : K.F_ERR_TOKEND + 1])
                result.error = _kernel_error(src, int(res[K.F_ERR]), *positions, n_features=n_features, base=base)
                return result
            if res[K.F_ROWS] != n_rows:
                raise _changed_error(src.path)
            result.n_missing = int(res[K.F_MISSING])
            result.error = _fix_slow_values(src, buf, start, slow[: int(res[K.F_SLOW])], features, labels, base)
            if has_qid and result.error is None:
                local = np.flatnonzero(K.segment_starts(buf, qid_span))
                result.seg_rows = local + row0[k]
                result.seg_pos = qid_span[local, 0] + start
                result.seg_qids, nul = _gather(buf, qid_span[local], find_nul=True)
                if nul >= 0:
                    qid = buf[qid_span[local[nul], 0] : qid_span[local[nul], 1]].tobytes()
                    problem = f"qid {_quote(qid)} holds a NUL byte; a qid must be text without NUL bytes"
                    line = src.line_number(int(result.seg_pos[nul]))
                    result.error = LetorFormatError(src.path, line, "qid", problem)
            if has_comments:
                result.doc_ids = _gather(buf, doc_span)[0] if len(doc_span) else np.zeros(n_rows, dtype="S1")
            return result

        results = list(pool.map(fill, range(len(chunks))))
    for result in results:
        if result.error is not None:
            raise result.error

    doc_ids = _decode(np.concatenate([r.doc_ids for r in results if r.doc_ids is not None])) if has_comments else None
    if has_qid:
        offsets, qids, order = _group_by_qid(src, results, n_docs, regroup)
        if order is not None:
            features, labels = features[order], labels[order]
            doc_ids = None if doc_ids is None else doc_ids[order]
    else:
        assert group_path is not None
        sizes = read_group_file(group_path, n_docs=n_docs, data_path=src.path)
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        qid_path = find_qid_file(src.path)
        if qid_path is None:
            qids = np.arange(len(sizes)).astype(str)
        else:
            qids = _read_qid_file(qid_path, len(sizes), group_path)
    if missing == "min" and any(r.n_missing for r in results):
        _fill_query_min(features, offsets)
    dataset = RankingDataset(
        features=features, labels=labels, query_offsets=offsets, qids=qids, doc_ids=doc_ids, source=str(src.path)
    )
    return dataset, group_path


def _feature_matrix(path: Path, n_docs: int, n_features: int) -> np.ndarray:
    """The zeroed dense ``[n_docs, n_features]`` float32 matrix, or a clear error when it cannot be had."""
    try:
        return np.zeros((n_docs, n_features), dtype=np.float32)
    except (MemoryError, ValueError):
        need = n_docs * n_features * 4 / 2**30
        raise LetorFormatError(
            path, None, None, f"the dense feature matrix of {n_docs} documents x {n_features} features needs "
            f"{need:,.1f} GiB, more than this machine can allocate"
        ) from None


def _check_scans(
    src: _Source, scans: list[np.ndarray], index_base: Union[int, str], n_features: Optional[int],
    query_file: Optional[PathLike],
) -> tuple[np.ndarray, bool, Optional[Path]]:
    """Raise the first error pass 1 found; return the rows of each chunk, whether lines have
    qids, and the group file to use for qid-less lines."""
    for stats in scans:
        if stats[K.S_ERR] != K.OK:
            positions = map(int, stats[K.S_ERR_LINE : K.S_ERR_TOKEND + 1])
            known_base = None if index_base == "auto" else int(index_base)
            raise _kernel_error(src, int(stats[K.S_ERR]), *positions, n_features=n_features, base=known_base)
    rows = np.array([s[K.S_ROWS] for s in scans], dtype=np.int64)
    if rows.sum() == 0:
        raise LetorFormatError(src.path, None, None, "contains no documents (only blank or comment lines)")
    first_qid = min((int(s[K.S_FIRST_QID]) for s in scans if s[K.S_FIRST_QID] >= 0), default=-1)
    first_noqid = min((int(s[K.S_FIRST_NOQID]) for s in scans if s[K.S_FIRST_NOQID] >= 0), default=-1)
    return rows, first_qid >= 0, _check_qid_layout(src, first_qid, first_noqid, query_file)


def _check_qid_layout(
    src: _Source, first_qid: int, first_noqid: int, query_file: Optional[PathLike]
) -> Optional[Path]:
    """Raise unless all lines have a qid (and no group file is given) or none has; return the
    group file to use for qid-less lines."""
    if first_qid >= 0 and first_noqid >= 0:
        if first_qid < first_noqid:
            bad, other, problem = first_noqid, first_qid, "line has no 'qid:' token, but line {other} has one"
        else:
            bad, other, problem = first_qid, first_noqid, "line has a 'qid:' token, but line {other} has none"
        problem = problem.format(other=src.line_number(other)) + " (give every line a qid, or none and a group file)"
        raise LetorFormatError(src.path, src.line_number(bad), "qid", f"{problem}\n    {src.line_text(bad)}")
    if first_qid >= 0:
        if query_file is not None:
            raise LetorFormatError(
                src.path, src.line_number(first_qid), "qid",
                f"lines have 'qid:' tokens and query_file={str(query_file)!r} was also given; use one or the other",
            )
        return None
    group_path = Path(query_file) if query_file is not None else find_query_file(src.path)
    if group_path is None:
        raise LetorFormatError(
            src.path, src.line_number(first_noqid), "qid",
            f"lines have no 'qid:' token and no group file was found ({src.path}.query or {src.path}.group); "
            "pass query_file=",
        )
    return group_path


def _fix_slow_values(
    src: _Source, buf: np.ndarray, start: int, slow: np.ndarray, features: np.ndarray, labels: np.ndarray, base: int
) -> Optional[LetorFormatError]:
    """Re-parse with Python ``float()`` the tokens whose float32 rounding the kernel could not
    decide (a rounding boundary lay within its error margin); return an error for overflow."""
    for pos, row, col in slow.tolist():
        token = buf[pos : int(K.token_end(buf, pos))].tobytes().decode("ascii")
        value = np.float32(float(token))
        if not np.isfinite(value):
            field = "label" if col < 0 else f"feature {col + base}"
            problem = f"{_quote(token)} overflows float32 (|x| > 3.4e38 is not allowed)"
            return LetorFormatError(src.path, src.line_number(start + pos), field, problem)
        if col < 0:
            labels[row] = value
        else:
            features[row, col] = value
    return None


def _fill_query_min(features: np.ndarray, offsets: np.ndarray) -> None:
    """Replace each NaN (a missing value) by the smallest value of its column among the rows of
    its query, or by 0 when the whole column of the query is NaN. Queries are non-empty."""
    missing_rows, missing_cols = np.nonzero(np.isnan(features))
    mins = np.fmin.reduceat(features, offsets[:-1], axis=0)  # fmin skips NaN unless all are
    mins[np.isnan(mins)] = 0.0
    query = np.searchsorted(offsets, missing_rows, side="right") - 1
    features[missing_rows, missing_cols] = mins[query, missing_cols]


def _gather(buf: np.ndarray, spans: np.ndarray, *, find_nul: bool = False) -> tuple[np.ndarray, int]:
    """Byte ranges ``spans[i] = (start, end)`` of ``buf`` as a bytes (``S``) array, and the first
    range that holds a NUL byte (-1 when none, or without ``find_nul``). ``S`` values lose
    trailing NULs (``b"7\\0"`` reads back as ``b"7"``), so such a value cannot be kept exactly."""
    lengths = np.where(spans[:, 0] < 0, 0, spans[:, 1] - spans[:, 0])
    width = max(int(lengths.max(initial=0)), 1)
    raw = K.gather_spans(buf, spans, width)
    nul = np.zeros(0, dtype=np.int64)
    if find_nul:
        nul = np.flatnonzero(((raw == 0) & (np.arange(width) < lengths[:, None])).any(axis=1))
    return raw.view(f"S{width}").ravel(), int(nul[0]) if len(nul) else -1


def _decode(raw: np.ndarray) -> np.ndarray:
    """UTF-8 bytes array to a str array (fast path for ASCII)."""
    try:
        return raw.astype(f"U{max(raw.dtype.itemsize, 1)}")
    except UnicodeDecodeError:
        return np.char.decode(raw, "utf-8", "replace")


def _decode_qids(src: _Source, raw: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Qid bytes to a str array; a qid that is not UTF-8 is an error (at its byte position), so
    distinct qids never decode to the same string."""
    try:
        return raw.astype(f"U{max(raw.dtype.itemsize, 1)}")  # fast path: ASCII
    except UnicodeDecodeError:
        pass
    qids = []
    for k, qid in enumerate(raw.tolist()):
        try:
            qids.append(qid.decode("utf-8"))
        except UnicodeDecodeError:
            problem = f"qid {_quote(qid)} is not valid UTF-8; a qid must be UTF-8 text"
            raise LetorFormatError(src.path, src.line_number(int(positions[k])), "qid", problem) from None
    return np.array(qids)


def _group_by_qid(
    src: _Source, results: list[_ChunkResult], n_docs: int, regroup: bool
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Query offsets, qids and (when rows had to be regrouped) the row order."""
    seg_rows = np.concatenate([r.seg_rows for r in results])
    seg_pos = np.concatenate([r.seg_pos for r in results])
    seg_qids = _decode_qids(src, np.concatenate([r.seg_qids for r in results]), seg_pos)
    # A run of one qid may cross a chunk border: merge runs whose qid equals the previous one.
    keep = np.ones(len(seg_rows), dtype=bool)
    keep[1:] = seg_qids[1:] != seg_qids[:-1]
    seg_rows, seg_pos, seg_qids = seg_rows[keep], seg_pos[keep], seg_qids[keep]
    first_segment: dict[str, int] = {}
    seg_group = np.empty(len(seg_rows), dtype=np.int64)
    for s, q in enumerate(seg_qids.tolist()):
        g = first_segment.setdefault(q, s)
        if g != s and not regroup:
            raise LetorFormatError(
                src.path, src.line_number(int(seg_pos[s])), "qid",
                f"rows of qid {_quote(q)} are not contiguous (the query started at line "
                f"{src.line_number(int(seg_pos[g]))} and other queries came in between); "
                "pass regroup=True (CLI: --regroup) to group rows by qid",
            )
        seg_group[s] = g
    if len(first_segment) == len(seg_rows):
        return np.append(seg_rows, n_docs).astype(np.int64), seg_qids, None
    # Dense query numbers in order of first appearance, then a stable sort of rows by them.
    seg_lengths = np.diff(np.append(seg_rows, n_docs))
    firsts = np.array(sorted(first_segment.values()), dtype=np.int64)
    number = np.full(len(seg_rows), -1, dtype=np.int64)
    number[firsts] = np.arange(len(firsts))
    row_query = np.repeat(number[seg_group], seg_lengths)
    order = np.argsort(row_query, kind="stable")
    offsets = np.zeros(len(firsts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_query, minlength=len(firsts)), out=offsets[1:])
    return offsets, seg_qids[firsts], order


def read_group_file(
    path: PathLike, *, n_docs: Optional[int] = None, data_path: Optional[PathLike] = None
) -> np.ndarray:
    """Read a LightGBM/XGBoost group file: one positive integer (query size) per line.

    Blank lines are skipped. Returns ``[n_queries]`` int64 sizes.

    Raises:
        LetorFormatError: a line that is not a positive integer, no sizes at all, or sizes that
            do not sum to ``n_docs`` (when given).
    """
    path = Path(path)
    opener = _COMPRESSORS.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        problem = f"cannot decompress ({exc}); the file is truncated or corrupt"
        raise LetorFormatError(path, None, "compression", problem) from None
    sizes = []
    for number, text in enumerate(lines, start=1):
        text = text.strip()
        if not text:
            continue
        try:
            size = int(text)
        except ValueError:
            size = 0
        if size < 1:
            raise LetorFormatError(path, number, "group size", f"group size {_quote(text)} is not a positive integer")
        sizes.append(size)
    if not sizes:
        raise LetorFormatError(path, None, "group size", "group file has no sizes")
    result = np.array(sizes, dtype=np.int64)
    if n_docs is not None and int(result.sum()) != n_docs:
        of = f" of {data_path}" if data_path is not None else ""
        raise LetorFormatError(
            path, None, "group sizes",
            f"{len(sizes)} group sizes sum to {int(result.sum())}, but the data file{of} has {n_docs} documents",
        )
    return result


def _format_numbers(values: np.ndarray) -> list[str]:
    """Shortest strings that read back to the same float32, integers without ``.0``.

    numpy's float32 ``str`` is the shortest round-tripping form (Dragon4 in unique mode); a
    trailing ``.0`` only ever follows an integral value, so dropping it changes nothing on read.
    """
    text = np.asarray(values, dtype=np.float32).astype(str).tolist()
    return [t[:-2] if t.endswith(".0") else t for t in text]


def _check_writable(dataset: RankingDataset, index_base: int) -> None:
    if index_base not in (0, 1) or isinstance(index_base, bool):
        raise ValueError(f"index_base must be 0 or 1, got {index_base!r}")
    if not np.isfinite(dataset.labels).all():
        raise ValueError(f"{dataset.source}: labels contain NaN/inf, which LETOR files cannot hold")


def _qid_problem(qid: str) -> Optional[str]:
    """Why ``qid`` cannot be written in a LETOR line or a qid file (which read it back), or None."""
    if not qid or any(c.isspace() for c in qid) or "#" in qid or "\0" in qid:
        return "it must be non-empty without whitespace, '#' or NUL"
    return None


def _writable_qids(dataset: RankingDataset) -> np.ndarray:
    qids = np.asarray(dataset.qids).astype(str)
    for q in qids.tolist():
        problem = _qid_problem(q)
        if problem is not None:
            raise ValueError(f"qid {_quote(q)} cannot be written: {problem}")
    return qids


def _read_qid_file(path: Path, n_queries: int, group_path: Path) -> np.ndarray:
    """The qids of a qid file (one per line, as :func:`write_libsvm` writes them; ``\\r\\n`` line
    ends are accepted too); there must be one per query of ``group_path``, all distinct (queries
    are numbered by the group file, so a repeated qid would name two queries)."""
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    qids: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            qid = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LetorFormatError(path, number, "qid", f"qid {_quote(raw)} is not valid UTF-8") from None
        problem = _qid_problem(qid)
        if problem is not None:
            raise LetorFormatError(path, number, "qid", f"qid {_quote(qid)} is not a valid qid: {problem}")
        first = qids.setdefault(qid, number)
        if first != number:
            raise LetorFormatError(path, number, "qid", f"qid {_quote(qid)} already named the query of line {first}")
    if len(qids) != n_queries:
        raise LetorFormatError(
            path, None, "qid",
            f"{len(qids)} qids, but the group file {group_path} has {n_queries} queries "
            "(the qid file holds one qid per query; delete it to number the queries 0, 1, ...)",
        )
    return np.array(list(qids))


def _comment(doc_id: str) -> str:
    if not doc_id:
        return ""
    if "\n" in doc_id or "\r" in doc_id:
        raise ValueError(f"doc id {doc_id!r} contains a line break and cannot be written as a comment")
    if any(c.isspace() for c in doc_id):
        return f" # {doc_id.strip()}"
    return f" # docid = {doc_id}"


def _write_lines(
    dataset: RankingDataset, path: PathLike, *, index_base: int, write_qids: bool, write_doc_ids: bool
) -> None:
    qids = _writable_qids(dataset) if write_qids else None
    row_qid = np.repeat(qids, dataset.list_lengths) if write_qids else None
    doc_ids = np.asarray(dataset.doc_ids).astype(str) if (write_doc_ids and dataset.doc_ids is not None) else None

    def blocks():
        for a in range(0, dataset.n_docs, _WRITE_BLOCK):
            b = min(a + _WRITE_BLOCK, dataset.n_docs)
            block = np.asarray(dataset.features[a:b], dtype=np.float32)
            if not np.isfinite(block).all():
                bad = a + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise ValueError(
                    f"{dataset.source}: features of row {bad} contain NaN/inf, which LETOR files cannot hold"
                )
            rows, cols = np.nonzero((block != 0) | np.signbit(block))
            values = _format_numbers(block[rows, cols])
            tokens = [f"{c}:{v}" for c, v in zip((cols + index_base).tolist(), values)]
            ends = np.cumsum(np.bincount(rows, minlength=b - a)).tolist()
            label_text = _format_numbers(dataset.labels[a:b])
            lines = []
            begin = 0
            for j in range(b - a):
                head = label_text[j] if row_qid is None else f"{label_text[j]} qid:{row_qid[a + j]}"
                body = " ".join(tokens[begin : ends[j]])
                begin = ends[j]
                tail = "" if doc_ids is None else _comment(doc_ids[a + j])
                lines.append(f"{head} {body}{tail}" if body else f"{head}{tail}")
            yield "\n".join(lines) + "\n"

    _atomic_write(Path(path), blocks())


def _atomic_write(path: Path, pieces) -> None:
    """Write text pieces to ``path`` through a temporary file in the same folder, renamed into
    place only when complete; compression follows the suffix."""
    opener = _COMPRESSORS.get(path.suffix, open)
    with atomic_path(path) as temporary:
        with opener(temporary, "wt", encoding="utf-8", newline="\n") as f:
            for piece in pieces:
                f.write(piece)


def write_letor(dataset: RankingDataset, path: PathLike, *, index_base: int = 1, write_doc_ids: bool = True) -> None:
    """Write ``dataset`` as LETOR lines ``label qid:Q idx:val ... [# docid = X]``.

    Zeros are omitted (sparse, as LETOR tools expect; ``-0.0`` is written). Values are written in
    the shortest form that reads back to the same float32, integers without a decimal point, so
    :func:`read_letor` returns bit-identical arrays. A doc id without whitespace is written
    ``# docid = X``; one with whitespace as ``# X``; an empty doc id writes no comment. The file
    is compressed when ``path`` ends in ``.gz``, ``.bz2`` or ``.xz``, and written to a temporary
    file renamed into place.

    Raises:
        ValueError: bad ``index_base``; NaN/inf features or labels; a qid that is empty or has
            whitespace or ``#``; a doc id with a line break.
    """
    _check_writable(dataset, index_base)
    _write_lines(dataset, path, index_base=index_base, write_qids=True, write_doc_ids=write_doc_ids)


def write_libsvm(
    dataset: RankingDataset,
    path: PathLike,
    *,
    group_path: Optional[PathLike] = None,
    index_base: int = 1,
    write_doc_ids: bool = True,
) -> None:
    """Write ``dataset`` as libsvm lines ``label idx:val ...`` plus a group file (LightGBM/XGBoost).

    The group file (default ``<path>.query``, where :func:`read_letor` finds it) holds one query
    size per line. The qids go to ``<path>.qid``, one per query in order, which
    :func:`read_letor` uses to name the queries again (tools that read libsvm ignore it). Doc ids
    are written as ``#`` comments, as in :func:`write_letor` (SVMlight allows them); pass
    ``write_doc_ids=False`` for tools that do not accept ``#`` comments. Values are written as in
    :func:`write_letor`.

    Raises:
        ValueError: as :func:`write_letor`, and for a dataset with an empty query (group files
            cannot hold size 0).
    """
    _check_writable(dataset, index_base)
    lengths = dataset.list_lengths
    if (lengths == 0).any():
        empty = int(np.flatnonzero(lengths == 0)[0])
        raise ValueError(f"{dataset.source}: query {empty} has no documents; group files cannot hold size 0")
    qids = _writable_qids(dataset)
    group_path = Path(str(path) + ".query") if group_path is None else Path(group_path)
    _write_lines(dataset, path, index_base=index_base, write_qids=False, write_doc_ids=write_doc_ids)
    _atomic_write(group_path, ["".join(f"{n}\n" for n in lengths.tolist())])
    _atomic_write(Path(str(path) + ".qid"), ["".join(f"{q}\n" for q in qids.tolist())])
