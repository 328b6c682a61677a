"""``RankingDataset``: query-grouped documents in CSR-like arrays.

Documents of query ``q`` are rows ``query_offsets[q]:query_offsets[q + 1]`` of ``features`` and
``labels``. Arrays may be memory-mapped (from the binary cache); methods never copy the whole
feature matrix unless they must.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


@dataclass
class RankingDataset:
    """Query-grouped learning-to-rank data.

    Attributes:
        features: ``[n_docs, n_features]`` float32.
        labels: ``[n_docs]`` float32 graded relevance.
        query_offsets: ``[n_queries + 1]`` int64, non-decreasing, ``query_offsets[0] == 0`` and
            ``query_offsets[-1] == n_docs``.
        qids: ``[n_queries]`` query ids as strings (LETOR qids need not be integers).
        doc_ids: ``[n_docs]`` document ids (strings) or ``None`` when the source had none.
        source: where the data came from (a path or a description), for error messages.
    """

    features: np.ndarray
    labels: np.ndarray
    query_offsets: np.ndarray
    qids: np.ndarray
    doc_ids: Optional[np.ndarray] = None
    source: str = field(default="<memory>")

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"{self.source}: features must be 2-D [n_docs, n_features], got shape {self.features.shape}")
        n_docs = self.features.shape[0]
        if self.labels.shape != (n_docs,):
            raise ValueError(f"{self.source}: labels shape {self.labels.shape} does not match {n_docs} documents")
        offsets = self.query_offsets
        if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != n_docs:
            raise ValueError(f"{self.source}: query_offsets must start at 0 and end at n_docs={n_docs}")
        if np.any(np.diff(offsets) < 0):
            raise ValueError(f"{self.source}: query_offsets must be non-decreasing")
        if len(self.qids) != offsets.shape[0] - 1:
            raise ValueError(f"{self.source}: {len(self.qids)} qids for {offsets.shape[0] - 1} queries")
        if self.doc_ids is not None and len(self.doc_ids) != n_docs:
            raise ValueError(f"{self.source}: {len(self.doc_ids)} doc ids for {n_docs} documents")

    @property
    def n_queries(self) -> int:
        return int(self.query_offsets.shape[0] - 1)

    @property
    def n_docs(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def list_lengths(self) -> np.ndarray:
        """``[n_queries]`` int64 number of documents per query."""
        return np.diff(self.query_offsets)

    def __len__(self) -> int:
        return self.n_queries

    def query_slice(self, index: int) -> slice:
        """Row range of query number ``index`` (0-based position, not qid)."""
        if not -self.n_queries <= index < self.n_queries:
            raise IndexError(f"query index {index} out of range for {self.n_queries} queries")
        index %= self.n_queries
        return slice(int(self.query_offsets[index]), int(self.query_offsets[index + 1]))

    def subset(self, query_indices: Sequence[int] | np.ndarray) -> "RankingDataset":
        """A new dataset holding the given queries, in the given order (rows are copied)."""
        query_indices = np.asarray(query_indices, dtype=np.int64)
        lengths = self.list_lengths[query_indices]
        offsets = np.zeros(len(query_indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.query_offsets[query_indices]
        rows = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return RankingDataset(
            features=np.ascontiguousarray(self.features[rows]),
            labels=np.ascontiguousarray(self.labels[rows]),
            query_offsets=offsets,
            qids=np.asarray(self.qids)[query_indices],
            doc_ids=None if self.doc_ids is None else np.asarray(self.doc_ids)[rows],
            source=self.source,
        )


def unlabelled_dataset(features: np.ndarray, query_offsets: np.ndarray, *, source: str = "<features>") -> RankingDataset:
    """A dataset of raw ``features [n_docs, F]`` grouped by ``query_offsets [Q + 1]`` to be scored:
    float32 features, zero labels, qids ``"0"``, ``"1"``, ...

    Raises:
        ValueError: ``features`` is not 2-D, or the offsets do not fit it (see :class:`RankingDataset`).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D [n_docs, n_features] array, got shape {features.shape}")
    offsets = np.asarray(query_offsets, dtype=np.int64)
    return RankingDataset(
        features=np.ascontiguousarray(features, dtype=np.float32),
        labels=np.zeros(features.shape[0], dtype=np.float32),
        query_offsets=offsets,
        qids=np.arange(max(offsets.shape[0] - 1, 0)).astype(str),
        source=source,
    )


def pad_ragged(
    values: np.ndarray,
    query_offsets: np.ndarray,
    *,
    pad_value: float = 0.0,
    max_length: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-document values of consecutive queries into a dense ``[Q, L, ...]`` array.

    Args:
        values: ``[n_docs, ...]`` with the documents of query ``q`` at rows
            ``query_offsets[q]:query_offsets[q + 1]``.
        query_offsets: ``[Q + 1]`` offsets (relative or absolute: only differences matter,
            ``values`` starts at row ``query_offsets[0]``).
        pad_value: value written at padded positions.
        max_length: width ``L`` of the output; defaults to the longest list. Lists longer than
            ``max_length`` raise ``ValueError`` (truncation is a sampling decision, not padding).

    Returns:
        ``(padded [Q, L, ...], mask [Q, L] bool)`` with ``mask`` True at real documents.
    """
    query_offsets = np.asarray(query_offsets, dtype=np.int64)
    lengths = np.diff(query_offsets)
    width = int(lengths.max(initial=0)) if max_length is None else int(max_length)
    if lengths.size and lengths.max() > width:
        raise ValueError(f"a list of {int(lengths.max())} documents does not fit max_length={width}")
    n_queries = lengths.shape[0]
    mask = np.arange(width)[None, :] < lengths[:, None]
    padded = np.full((n_queries, width) + values.shape[1:], pad_value, dtype=values.dtype)
    start = int(query_offsets[0]) if n_queries else 0
    padded[mask] = values[start : start + int(lengths.sum())]
    return padded, mask


def _label_key(value: np.floating) -> str:
    """A label as text: ``"2"`` for integral values, else the shortest string that reads back
    to the same value in the label's own dtype (float32 ``0.1`` is ``"0.1"``)."""
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(value, unique=True, trim="-")


def dataset_statistics(dataset: RankingDataset, *, relevance_threshold: float = 1.0) -> dict:
    """Summary counts of a dataset, as plain Python values (JSON-serialisable).

    Args:
        dataset: the data to describe.
        relevance_threshold: a document is relevant when ``label >= relevance_threshold``.

    Returns:
        A dict with

        * ``queries``, ``documents``, ``features``: counts;
        * ``labels``: ``{label as str: count}`` in increasing label order (``"0"``, ``"0.5"``, ...);
        * ``list_length``: ``{"min", "median", "mean", "p90", "p99", "max"}`` of documents per
          query (percentiles by linear interpolation, numpy's default; all 0 with no queries);
        * ``empty_queries``: queries with no documents;
        * ``queries_without_relevant``: queries with no document at or above the threshold
          (empty queries included);
        * ``queries_single_label``: non-empty queries whose documents all share one label
          (they carry no ranking signal for pairwise/listwise losses);
        * ``relevance_threshold``: the threshold used.

    Raises:
        ValueError: if ``relevance_threshold`` is not a finite number.

    Example:
        >>> import numpy as np
        >>> data = RankingDataset(np.zeros((3, 1), np.float32), np.array([0, 2, 0], np.float32),
        ...                       np.array([0, 1, 3]), np.array(["a", "b"]))
        >>> stats = dataset_statistics(data)
        >>> stats["labels"], stats["queries_without_relevant"], stats["queries_single_label"]
        ({'0': 2, '2': 1}, 1, 1)
    """
    threshold = float(relevance_threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"relevance_threshold must be a finite number, got {relevance_threshold!r}")
    lengths = dataset.list_lengths
    labels = np.asarray(dataset.labels)
    values, counts = np.unique(labels, return_counts=True)
    nonempty = lengths > 0
    starts = dataset.query_offsets[:-1][nonempty]
    relevant_per_query = np.zeros(dataset.n_queries, dtype=np.int64)
    single_label = np.zeros(dataset.n_queries, dtype=bool)
    if starts.size:
        relevant_per_query[nonempty] = np.add.reduceat((labels >= threshold).astype(np.int64), starts)
        single_label[nonempty] = np.maximum.reduceat(labels, starts) == np.minimum.reduceat(labels, starts)
    if lengths.size:
        percentiles = np.percentile(lengths, [50, 90, 99])
        list_length = {
            "min": int(lengths.min()),
            "median": float(percentiles[0]),
            "mean": float(lengths.mean()),
            "p90": float(percentiles[1]),
            "p99": float(percentiles[2]),
            "max": int(lengths.max()),
        }
    else:
        list_length = {"min": 0, "median": 0.0, "mean": 0.0, "p90": 0.0, "p99": 0.0, "max": 0}
    return {
        "queries": dataset.n_queries,
        "documents": dataset.n_docs,
        "features": dataset.n_features,
        "labels": {_label_key(value): int(count) for value, count in zip(values, counts)},
        "list_length": list_length,
        "empty_queries": int((~nonempty).sum()),
        "queries_without_relevant": int((relevant_per_query == 0).sum()),
        "queries_single_label": int(single_label.sum()),
        "relevance_threshold": threshold,
    }


def filter_queries(
    dataset: RankingDataset,
    *,
    min_docs: int = 1,
    drop_without_relevant: bool = False,
    relevance_threshold: float = 1.0,
) -> RankingDataset:
    """Keep the queries with at least ``min_docs`` documents (and a relevant one, if asked).

    Kept queries stay in their order and rows are copied (see :meth:`RankingDataset.subset`),
    except when every query is kept: then ``dataset`` itself is returned, so filtering a
    memory-mapped MSLR-WEB30K split that needs no filtering costs nothing.

    Args:
        dataset: the data to filter.
        min_docs: smallest list kept (>= 0; 0 keeps empty queries).
        drop_without_relevant: also drop queries with no document whose label is
            ``>= relevance_threshold`` (their NDCG is undefined; LightGBM and allRank score
            them 1, others 0, so many papers drop them).
        relevance_threshold: see ``drop_without_relevant``.

    Raises:
        ValueError: on a negative or non-int ``min_docs`` or a non-finite threshold.

    Example:
        >>> import numpy as np
        >>> data = RankingDataset(np.zeros((3, 1), np.float32), np.array([0, 2, 0], np.float32),
        ...                       np.array([0, 1, 3]), np.array(["a", "b"]))
        >>> filter_queries(data, min_docs=2).qids.tolist()
        ['b']
    """
    if isinstance(min_docs, bool) or not isinstance(min_docs, (int, np.integer)) or min_docs < 0:
        raise ValueError(f"min_docs must be an int >= 0, got {min_docs!r}")
    threshold = float(relevance_threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"relevance_threshold must be a finite number, got {relevance_threshold!r}")
    lengths = dataset.list_lengths
    keep = lengths >= min_docs
    if drop_without_relevant:
        nonempty = lengths > 0
        has_relevant = np.zeros(dataset.n_queries, dtype=bool)
        starts = dataset.query_offsets[:-1][nonempty]
        if starts.size:
            has_relevant[nonempty] = np.maximum.reduceat(np.asarray(dataset.labels) >= threshold, starts)
        keep &= has_relevant
    if keep.all():
        return dataset
    return dataset.subset(np.flatnonzero(keep))
