"""Click logs on disk: one row per impression, Parquet (default) or CSV, written atomically in
chunks and read back into :class:`~ltrkit.clicks.sessions.ClickSessions` with row-level checks.

Columns:

========================  ==========  =========================================================
column                    type        meaning
========================  ==========  =========================================================
``session``               int64       session id (the rows of a session need not be contiguous)
``qid``                   string      query id, as in the data file
``doc``                   int64       the document's row in the data file (0-based)
``docid``                 string      the document id, when the data has them
``position``              int32       1-based rank at which the document was shown
``clicked``               bool        whether it was clicked (CSV: true/false or 1/0)
``score``                 float64     the logging policy's score
``propensity``            float64     the true examination probability, when the model defines it
``logging_rank``          int32       1-based rank under the logging policy before any intervention
========================  ==========  =========================================================

``session``, ``qid``, ``doc``, ``position`` and ``clicked`` are required; the rest are optional.
Reading reports the first problem as ``<file>: row N, column 'c': ...`` (``row`` counts data
rows from 1, the CSV header not included): a missing column, a missing or malformed value, a
position below 1, repeated in a session or beyond the number of documents the session shows, a
propensity that is not a finite number in ``(0, 1]``, and, when the data file is given, an unknown
qid or a document that is not one of its query's rows.

pyarrow is needed (``pip install 'ltrkit[clicks]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ltrkit._atomic import atomic_path
from ltrkit.clicks.sessions import ClickSessions
from ltrkit.data.dataset import RankingDataset

__all__ = ["FORMATS", "REQUIRED_COLUMNS", "ClickLogError", "ClickLogWriter", "read_click_log", "log_format"]

FORMATS = ("parquet", "csv")
REQUIRED_COLUMNS = ("session", "qid", "doc", "position", "clicked")
_INTEGER_COLUMNS = ("session", "doc", "position", "logging_rank")


class ClickLogError(ValueError):
    """A click log that cannot be used; the message names the file, row and column."""


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is in the clicks and test extras
        raise ImportError("click logs need pyarrow: pip install 'ltrkit[clicks]'") from None
    import pyarrow as pa

    return pa


def log_format(path: Union[str, Path]) -> str:
    """``"csv"`` for a ``.csv`` path, else ``"parquet"``."""
    return "csv" if str(path).lower().endswith(".csv") else "parquet"


class ClickLogWriter:
    """Stream impressions to ``path`` in chunks; the file appears only when the writer closes cleanly.

    Use as a context manager; :meth:`write` takes one chunk of sessions at a time, so a log of
    10^7+ rows never sits in memory.

    Args:
        path: the output file (written via a temporary file beside it, then renamed).
        dataset: the data the sessions index (qids and document ids come from it).
        file_format: ``"parquet"`` or ``"csv"``.
        propensities: write the ``propensity`` column (every chunk must then carry them).
    """

    def __init__(self, path: Union[str, Path], dataset: RankingDataset, *, file_format: str = "parquet", propensities: bool = False) -> None:
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {list(FORMATS)}, got {file_format!r}")
        self.pa = _pyarrow()
        self.path = Path(path)
        self.dataset = dataset
        self.file_format = file_format
        self.with_propensities = propensities
        # python lists: arrow converts numpy text arrays through pandas, an import of seconds
        self._qids = self.pa.array(np.asarray(dataset.qids).astype(str).tolist())
        self._docids = None if dataset.doc_ids is None else self.pa.array(np.asarray(dataset.doc_ids).astype(str).tolist())
        self._atomic: Any = None
        self._writer: Any = None

    def __enter__(self) -> "ClickLogWriter":
        self._atomic = atomic_path(self.path)
        self._temporary = self._atomic.__enter__()
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            elif kind is None:
                self._open(self._schema())  # an empty log still has its columns
                self._writer.close()
        finally:
            self._atomic.__exit__(kind, error, trace)

    def _schema(self) -> Any:
        pa = self.pa
        fields = [("session", pa.int64()), ("qid", pa.dictionary(pa.int32(), pa.string())), ("doc", pa.int64())]
        if self._docids is not None:
            fields.append(("docid", pa.dictionary(pa.int64(), pa.string())))
        fields += [("position", pa.int32()), ("clicked", pa.bool_()), ("score", pa.float64())]
        if self.with_propensities:
            fields.append(("propensity", pa.float64()))
        fields.append(("logging_rank", pa.int32()))
        return pa.schema(fields)

    def _open(self, schema: Any) -> None:
        if self.file_format == "parquet":
            import pyarrow.parquet as pq

            # dictionaries for the text columns only, no column statistics: twice the write speed
            self._writer = pq.ParquetWriter(str(self._temporary), schema, use_dictionary=["qid", "docid"], write_statistics=False)
        else:
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(str(self._temporary), schema)

    def write(self, first_session: int, sessions: ClickSessions, scores: np.ndarray) -> None:
        """Append the impressions of ``sessions`` (ids ``first_session, first_session + 1, ...``)."""
        pa = self.pa
        m = sessions.mask
        if self.with_propensities and sessions.propensities is None:
            raise ValueError("this log has a propensity column but the chunk has no propensities")
        counts = m.sum(axis=1)
        session = np.repeat(np.arange(first_session, first_session + sessions.n_sessions, dtype=np.int64), counts)
        docs = sessions.docs[m]
        columns: Dict[str, Any] = {
            "session": session,
            "qid": pa.DictionaryArray.from_arrays(pa.array(np.repeat(sessions.queries, counts).astype(np.int32)), self._qids),
            "doc": docs,
        }
        if self._docids is not None:
            columns["docid"] = pa.DictionaryArray.from_arrays(pa.array(docs), self._docids)
        columns["position"] = np.broadcast_to(np.arange(1, m.shape[1] + 1, dtype=np.int32), m.shape)[m]
        columns["clicked"] = sessions.clicks[m]
        columns["score"] = np.asarray(scores, dtype=np.float64)[m]
        if self.with_propensities:
            columns["propensity"] = sessions.propensities[m]
        columns["logging_rank"] = (sessions.logging_ranks if sessions.logging_ranks is not None else np.zeros(m.shape, np.int32))[m].astype(np.int32)
        table = pa.table(columns, schema=self._schema())
        if self._writer is None:
            self._open(table.schema)
        self._writer.write_table(table)


# ---------------------------------------------------------------------------------------------
# reading


def _read_table(path: Path) -> Any:
    pa = _pyarrow()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such click log")
    try:
        if log_format(path) == "csv":
            import pyarrow.csv as pcsv

            try:
                return pcsv.read_csv(str(path))
            except pa.ArrowInvalid:
                # a malformed value: read every column as text so that it is reported with its row
                header = path.open("r", encoding="utf-8").readline().strip()
                names = [name.strip().strip('"') for name in header.split(",")] if header else []
                return pcsv.read_csv(str(path), convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}))
        import pyarrow.parquet as pq

        return pq.read_table(str(path))
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:
        raise ClickLogError(f"{path}: not a readable {log_format(path)} click log ({' '.join(str(error).split())})") from None


def _fail(path: Path, row: int, column: str, problem: str) -> ClickLogError:
    return ClickLogError(f"{path}: row {row + 1}, column {column!r}: {problem}")


def _column(path: Path, table: Any, name: str, kind: str) -> np.ndarray:
    """Column ``name`` as numpy ``kind`` (``int``, ``float``, ``bool``), each value checked."""
    pa = _pyarrow()
    array = _values(path, table, name)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return _parse_text(path, name, np.asarray(array.to_pylist(), dtype=str), kind)
    values = array.to_numpy(zero_copy_only=False)
    if kind == "bool":
        if pa.types.is_boolean(array.type):
            return values.astype(bool)
        return _as_flags(path, name, values)
    if kind == "int":
        if pa.types.is_integer(array.type):
            return values.astype(np.int64)
        if pa.types.is_floating(array.type):
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                raise _fail(path, int(np.argmax(bad)), name, f"not an integer: {values[np.argmax(bad)].item()!r}")
            return values.astype(np.int64)
    if kind == "float" and (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
        return values.astype(np.float64)
    raise _fail(path, 0, name, f"has type {array.type}, expected {kind}")


def _values(path: Path, table: Any, name: str) -> Any:
    """The column as one arrow array, dictionary-decoded, without missing values."""
    pa = _pyarrow()
    array = table.column(name).combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    nulls = np.asarray(array.is_null())
    if nulls.any():
        raise _fail(path, int(np.argmax(nulls)), name, "missing value")
    return array


def _codes(path: Path, table: Any, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """A text column as ``(codes [n] int64, distinct values [m] str)``: ``values[codes]`` is the column."""
    pa = _pyarrow()
    encoded = _values(path, table, name).cast(pa.string()).dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), np.asarray(encoded.dictionary.to_pylist(), dtype=str)


def _as_flags(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise _fail(path, int(np.argmax(bad)), name, f"must be true/false or 1/0, got {values[np.argmax(bad)].item()!r}")
    return values.astype(bool)


def _parse_text(path: Path, name: str, text: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bool":
        lowered = np.char.lower(np.char.strip(text))
        known = np.isin(lowered, ("true", "false", "1", "0"))
        if not known.all():
            raise _fail(path, int(np.argmin(known)), name, f"must be true/false or 1/0, got {str(text[np.argmin(known)])!r}")
        return np.isin(lowered, ("true", "1"))
    try:
        values = text.astype(np.float64)
    except ValueError:
        for row, value in enumerate(text):
            try:
                float(value)
            except ValueError:
                raise _fail(path, row, name, f"not a number: {str(value)!r}") from None
        raise
    if kind == "int":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise _fail(path, int(np.argmax(bad)), name, f"not an integer: {str(text[np.argmax(bad)])!r}")
        return values.astype(np.int64)
    return values


def read_click_log(path: Union[str, Path], dataset: Optional[RankingDataset] = None) -> Tuple[ClickSessions, Dict[str, Any]]:
    """Read and check a click log; ``(sessions, info)``.

    Sessions come in increasing session id, ranks in shown order. With ``dataset``,
    ``sessions.queries`` are query indices of the dataset and every (qid, doc) is checked
    against it; without, queries are numbered in the order of their first appearance.

    Returns:
        ``sessions`` and ``info``: ``{"session_ids": [S], "qids": [S] str, "rows": impressions,
        "columns": [...]}``.

    Raises:
        FileNotFoundError: no such file.
        ClickLogError: ``<file>: row N, column 'c': <problem>`` (see the module docstring).
    """
    path = Path(path)
    table = _read_table(path)
    columns = list(table.column_names)
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise ClickLogError(f"{path}: row 1, column {name!r}: missing (a click log needs {list(REQUIRED_COLUMNS)}, found {columns})")
    n = table.num_rows
    session = _column(path, table, "session", "int")
    qid_codes, qid_values = _codes(path, table, "qid")
    doc = _column(path, table, "doc", "int")
    position = _column(path, table, "position", "int")
    clicked = _column(path, table, "clicked", "bool")
    propensity = _column(path, table, "propensity", "float") if "propensity" in columns else None
    logging_rank = _column(path, table, "logging_rank", "int") if "logging_rank" in columns else None
    docid = _codes(path, table, "docid") if "docid" in columns else None
    if (position < 1).any():
        row = int(np.argmax(position < 1))
        raise _fail(path, row, "position", f"positions are 1-based, got {position[row]}")
    if propensity is not None:
        bad = ~np.isfinite(propensity) | (propensity <= 0) | (propensity > 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise _fail(path, row, "propensity", f"must be a finite number in (0, 1], got {propensity[row].item()!r}")
    if (doc < 0).any():
        row = int(np.argmax(doc < 0))
        raise _fail(path, row, "doc", f"unknown document: rows are >= 0, got {doc[row]}")

    order = np.lexsort((position, session))
    s_sorted = session[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    lengths = np.diff(np.r_[starts, n])
    session_of = np.repeat(np.arange(starts.size), lengths)
    shown = np.empty(n, dtype=np.int64)
    shown[order] = np.repeat(lengths, lengths)
    beyond = position > shown
    if beyond.any():
        row = int(np.argmax(beyond))
        raise _fail(path, row, "position", f"position {position[row]} beyond the {shown[row]} document(s) session {session[row]} "
                    f"shows (positions run 1..{shown[row]})")
    # a session's positions lie in 1..shown; without repeats they are exactly 1..shown
    sorted_positions = position[order]
    repeated = np.r_[False, (sorted_positions[1:] == sorted_positions[:-1]) & (s_sorted[1:] == s_sorted[:-1])]
    if repeated.any():
        row = int(order[int(np.argmax(repeated))])
        raise _fail(path, row, "position", f"position {position[row]} repeated in session {session[row]}")
    q_sorted = qid_codes[order]
    session_codes = q_sorted[starts]
    mixed = q_sorted != np.repeat(session_codes, lengths)
    if mixed.any():
        at = int(np.argmax(mixed))
        row = int(order[at])
        raise _fail(path, row, "qid", f"session {session[row]} mixes queries "
                    f"({str(qid_values[q_sorted[at]])!r} and {str(qid_values[session_codes[session_of[at]]])!r})")
    session_qids = qid_values[session_codes]

    if dataset is not None:
        queries = _check_against(path, dataset, qid_codes, qid_values, doc, docid)
        session_queries = queries[order][starts]
    else:
        _, session_queries = np.unique(session_qids, return_inverse=True)

    k = int(lengths.max(initial=0))
    mask = np.arange(k)[None, :] < lengths[:, None]

    def dense(values: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full(mask.shape, fill, dtype=values.dtype)
        out[mask] = values[order]
        return out

    sessions = ClickSessions(
        dense(doc, -1), dense(clicked, False), mask, np.asarray(session_queries, dtype=np.int64),
        None if propensity is None else dense(propensity, 0.0),
        None if logging_rank is None else dense(logging_rank, 0),
    )
    info = {"session_ids": s_sorted[starts], "qids": session_qids, "rows": n, "columns": columns}
    return sessions, info


def _check_against(
    path: Path, dataset: RankingDataset, qid_codes: np.ndarray, qid_values: np.ndarray, doc: np.ndarray,
    docid: Optional[Tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Query index of every row; raises on an unknown qid or a document outside its query."""
    index = {qid: i for i, qid in enumerate(np.asarray(dataset.qids).astype(str).tolist())}
    value_query = np.array([index.get(value, -1) for value in qid_values.tolist()], dtype=np.int64)
    queries = value_query[qid_codes] if qid_codes.size else np.zeros(0, dtype=np.int64)
    if (queries < 0).any():
        row = int(np.argmax(queries < 0))
        raise _fail(path, row, "qid", f"unknown qid {str(qid_values[qid_codes[row]])!r} (not in {dataset.source})")
    first, stop = dataset.query_offsets[queries], dataset.query_offsets[queries + 1]
    outside = (doc < first) | (doc >= stop)
    if outside.any():
        row = int(np.argmax(outside))
        raise _fail(path, row, "doc", f"unknown document {doc[row]}: query {str(qid_values[qid_codes[row]])!r} "
                    f"has rows {first[row]}..{stop[row] - 1} of {dataset.source}")
    if docid is not None and dataset.doc_ids is not None:
        codes, values = docid
        known = np.asarray(dataset.doc_ids).astype(str)
        mismatch = known[doc] != values[codes]
        if mismatch.any():
            row = int(np.argmax(mismatch))
            raise _fail(path, row, "docid", f"row {doc[row]} of {dataset.source} is {str(known[doc[row]])!r}, not {str(values[codes[row]])!r}")
    return queries
