"""TREC files: qrels (``qid 0 docid rel``) and runs (``qid Q0 docid rank score tag``).

Readers return the nested dicts pytrec_eval and ranx also use (``{qid: {docid: value}}``), in
file order, and stop at the first malformed line with ``ValueError("<file>:<line>: ...")``.
Fields are separated by any whitespace; blank lines are skipped. Writers write to a temporary
file in the destination folder and rename it into place.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ltrkit._atomic import atomic_path
from ltrkit.data.dataset import RankingDataset
from ltrkit.metrics import functional as F
from ltrkit.metrics.evaluation import _docid_desc_permutation, document_scores, positional_doc_ids

__all__ = ["dataset_qrels", "read_qrels", "read_run", "write_qrels", "write_trec_run"]

RUN_TIE_RULES = ("input_order", "docid_desc", "pessimistic", "optimistic")


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[str]]]:
    """``(1-based line number, fields)`` of each non-blank line of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            fields = line.split()
            if fields:
                yield number, fields


def _number(text: str, path: Path, number: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}:{number}: {field} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}:{number}: {field} must be finite, got {text!r}")
    return value


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a TREC qrels file: ``qid iteration docid relevance`` per line.

    The iteration field (usually ``0``) is ignored, as trec_eval does. Relevance is a finite
    number (trec_eval uses integers; graded float labels are kept as they are).

    Returns:
        ``{qid: {docid: relevance}}`` in file order.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: ``"<path>:<line>: ..."`` for a line without exactly 4 fields, a relevance
            that is not a finite number, a document judged twice for one query, or bad UTF-8.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "qrels"
        >>> _ = path.write_text("q1 0 d1 2\\nq1 0 d2 0\\n")
        >>> read_qrels(path)
        {'q1': {'d1': 2.0, 'd2': 0.0}}
    """
    path = Path(path)
    qrels: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, fields in _lines(path):
        if len(fields) != 4:
            raise ValueError(f"{path}:{number}: a qrels line needs 4 fields 'qid 0 docid relevance', got {len(fields)}: {' '.join(fields)!r}")
        qid, _, doc, rel = fields
        value = _number(rel, path, number, "relevance")
        if (qid, doc) in first_line:
            raise ValueError(f"{path}:{number}: document {doc!r} of query {qid!r} is already judged on line {first_line[qid, doc]}")
        first_line[qid, doc] = number
        qrels.setdefault(qid, {})[doc] = value
    return qrels


def read_run(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a TREC run file: ``qid Q0 docid rank score tag`` per line.

    The ``Q0`` and ``rank`` fields are not interpreted (trec_eval ranks by score and breaks ties
    by document id), but must be present.

    Returns:
        ``{qid: {docid: score}}`` in file order.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: ``"<path>:<line>: ..."`` for a line without exactly 6 fields, a score that is
            not a finite number, a document listed twice for one query, or bad UTF-8.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> _ = path.write_text("q1 Q0 d1 1 2.5 mine\\nq1 Q0 d2 2 1.0 mine\\n")
        >>> read_run(path)
        {'q1': {'d1': 2.5, 'd2': 1.0}}
    """
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, fields in _lines(path):
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: a run line needs 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: {' '.join(fields)!r}")
        qid, _, doc, _, score, _ = fields
        value = _number(score, path, number, "score")
        if (qid, doc) in first_line:
            raise ValueError(f"{path}:{number}: document {doc!r} of query {qid!r} is already listed on line {first_line[qid, doc]}")
        first_line[qid, doc] = number
        run.setdefault(qid, {})[doc] = value
    return run


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="\n")


def _check_token(values: np.ndarray, what: str, source: str) -> None:
    bad = [str(v) for v in values if not str(v) or any(c.isspace() for c in str(v))]
    if bad:
        raise ValueError(f"{source}: {what} {bad[0]!r} is empty or contains whitespace, which TREC files cannot hold")


def _dataset_doc_ids(dataset: RankingDataset) -> np.ndarray:
    if dataset.doc_ids is not None:
        return np.asarray(dataset.doc_ids).astype(str)
    return positional_doc_ids(np.asarray(dataset.qids), dataset.list_lengths)


def write_trec_run(
    path: str | os.PathLike[str],
    dataset: RankingDataset,
    scores: np.ndarray | torch.Tensor | Sequence[float],
    *,
    tag: str = "ltrkit",
    ties: str = "input_order",
) -> None:
    """Write ``scores`` (one per document of ``dataset``) as a TREC run, atomically.

    Each query's documents are written in rank order, ranks 1..n, by descending score; equal
    scores follow ``ties`` (``"input_order"``, ``"docid_desc"`` as trec_eval, ``"pessimistic"``
    or ``"optimistic"`` using the dataset's labels). Document ids come from ``dataset.doc_ids``
    or are ``"<qid>_<position>"`` (0-based position within the query). Scores are written with
    ``repr`` precision so they read back exactly.

    Raises:
        ValueError: on a score count that differs from the dataset's documents, NaN scores, an
            unknown ``ties``, or a tag/qid/docid that is empty or contains whitespace.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from ltrkit.data.dataset import RankingDataset
        >>> data = RankingDataset(features=np.zeros((2, 1), np.float32),
        ...     labels=np.array([1, 0], np.float32), query_offsets=np.array([0, 2]), qids=np.array(["7"]))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.txt"
        >>> write_trec_run(path, data, np.array([0.25, 0.5]))
        >>> print(path.read_text(), end="")
        7 Q0 7_1 1 0.5 ltrkit
        7 Q0 7_0 2 0.25 ltrkit
    """
    F.check_ties(ties, allowed=RUN_TIE_RULES)
    scores = document_scores(dataset, scores)
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"tag must be a non-empty string without whitespace, got {tag!r}")
    doc_ids = _dataset_doc_ids(dataset)
    _check_token(np.unique(np.asarray(dataset.qids).astype(str)), "qid", dataset.source)
    if dataset.doc_ids is not None:
        _check_token(doc_ids, "document id", dataset.source)

    lengths = dataset.list_lengths
    query_of_row = np.repeat(np.arange(dataset.n_queries), lengths)
    # Rank order = lexicographic (query, -score, tie key, row): built by one lexsort.
    if ties == "docid_desc":
        prior = _docid_desc_permutation(dataset.doc_ids, lengths)
    elif ties in ("pessimistic", "optimistic"):
        labels = np.asarray(dataset.labels, dtype=np.float64)
        prior = np.lexsort((labels if ties == "pessimistic" else -labels, query_of_row))
    else:
        prior = np.arange(dataset.n_docs)
    tie_rank = np.empty(dataset.n_docs, dtype=np.int64)
    tie_rank[prior] = np.arange(dataset.n_docs)
    order = np.lexsort((tie_rank, -scores, query_of_row))
    positions = np.arange(dataset.n_docs) - np.repeat(np.asarray(dataset.query_offsets[:-1]), lengths) + 1

    qids = np.asarray(dataset.qids).astype(str)[query_of_row]
    lines = [
        f"{q} Q0 {d} {r} {s!r} {tag}\n"
        for q, d, r, s in zip(qids.tolist(), doc_ids[order].tolist(), positions.tolist(), scores[order].tolist())
    ]
    _write_atomic(Path(path), "".join(lines))


def _first_repeat(items: Sequence[str]) -> str:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    raise ValueError("no repeated item")


def dataset_qrels(dataset: RankingDataset) -> dict[str, dict[str, float]]:
    """The dataset's labels as qrels ``{qid: {docid: label}}``, in row order.

    Documents are named as :func:`write_trec_run` names them: ``dataset.doc_ids`` (a LETOR file's
    ``# docid`` comments) or, when the dataset has none, ``"<qid>_<position>"`` with the 0-based
    position of the row within its query. A run written by :func:`write_trec_run` (``ltrkit
    predict --format trec``) and these qrels, evaluated with :func:`~ltrkit.metrics.evaluate_run`,
    give the numbers :func:`~ltrkit.metrics.evaluate_dataset` gives for the same scores.

    Raises:
        ValueError: for a qid naming two queries, a document id used twice in one query, or ids
            that are empty or contain whitespace (which TREC files cannot hold).

    Example:
        >>> import numpy as np
        >>> from ltrkit.data.dataset import RankingDataset
        >>> data = RankingDataset(features=np.zeros((3, 1), np.float32), labels=np.array([2, 0, 1], np.float32),
        ...     query_offsets=np.array([0, 2, 3]), qids=np.array(["7", "8"]))
        >>> dataset_qrels(data)
        {'7': {'7_0': 2.0, '7_1': 0.0}, '8': {'8_0': 1.0}}
    """
    qids = np.asarray(dataset.qids).astype(str)
    _check_token(np.unique(qids), "qid", dataset.source)
    doc_ids = _dataset_doc_ids(dataset)
    if dataset.doc_ids is not None:
        _check_token(doc_ids, "document id", dataset.source)
    labels = np.asarray(dataset.labels, dtype=np.float64).tolist()
    offsets = np.asarray(dataset.query_offsets).tolist()
    doc_list = doc_ids.tolist()
    qrels: dict[str, dict[str, float]] = {}
    for query, qid in enumerate(qids.tolist()):
        if qid in qrels:
            raise ValueError(f"{dataset.source}: qid {qid!r} names more than one query; qrels need unique qids")
        start, end = offsets[query], offsets[query + 1]
        judged = dict(zip(doc_list[start:end], labels[start:end]))
        if len(judged) != end - start:
            raise ValueError(
                f"{dataset.source}: document id {_first_repeat(doc_list[start:end])!r} appears twice in query {qid!r}; "
                f"qrels need unique ids per query"
            )
        qrels[qid] = judged
    return qrels


def write_qrels(path: str | os.PathLike[str], dataset: RankingDataset) -> None:
    """Write the dataset's labels as TREC qrels (``qid 0 docid label``), atomically.

    One line per document in row order; document ids as :func:`dataset_qrels` names them (the
    ones :func:`write_trec_run` writes). Integral labels are written as integers (trec_eval
    reads integers).

    Raises:
        ValueError: for a label that is not an integer (trec_eval cannot read it) or any
            problem :func:`dataset_qrels` reports.
    """
    labels = np.asarray(dataset.labels, dtype=np.float64)
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        bad = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0])
        raise ValueError(f"{dataset.source}: label {float(labels[bad])!r} at row {bad} is not an integer; qrels hold integer relevance")
    lines = [f"{q} 0 {d} {int(l)}\n" for q, docs in dataset_qrels(dataset).items() for d, l in docs.items()]
    _write_atomic(Path(path), "".join(lines))
