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
