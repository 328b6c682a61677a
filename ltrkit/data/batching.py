"""Padded, length-bucketed batches of queries for training and scoring.

A batch holds ``B`` queries padded to the longest (possibly truncated) list ``L`` in it:
``features [B, L, F]``, ``labels [B, L]``, ``mask [B, L]`` (True = real document) and
``doc_index [B, L]`` (the row of each document in ``dataset.features``, -1 at padding).

Batches are built by index arithmetic on the dataset's CSR arrays (offsets, ``np.repeat`` and
one gather per batch), never from per-query Python objects, so memory-mapped feature matrices
work and only the rows of the current batch are read.

Randomness: the epoch plan (query order, batch cuts, batch order) of epoch ``e`` is drawn from
``numpy.random.default_rng([seed, e])`` and slate truncation of batch ``b`` in epoch ``e`` from
``default_rng([seed, e, b])``: every batch is a pure function of ``(seed, e, b)``, so training is
deterministic and can resume mid-epoch. No global RNG is touched.

Distributed training (``num_replicas > 1``): every process builds the same global plan of the
epoch, then keeps its own share of the batches (:func:`shard_batches`): each process gets the
same number of batches, so every DDP step has a partner on every rank, and the batches are dealt
by document count, so the shards hold about as many documents (not queries) each. Every query is
in exactly one batch of one process per epoch; the truncation stream of a batch is its number in
the global plan, so the union of the shards' batches does not depend on the process count.
Evaluation shards whole queries instead (:func:`shard_queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np
import torch

from ltrkit.data.dataset import RankingDataset
from ltrkit.data.transforms import Normalizer

__all__ = [
    "Batch",
    "BatchLoader",
    "NormalizedFeatures",
    "TRUNCATIONS",
    "normalize_split",
    "normalized_view",
    "scores_to_rows",
    "shard_batches",
    "shard_queries",
]

TRUNCATIONS = ("random", "top_label")


@dataclass
class Batch:
    """One padded batch of queries.

    Attributes:
        features: ``[B, L, F]`` float32, zeros at padding.
        labels: ``[B, L]`` float32, zeros at padding.
        mask: ``[B, L]`` bool, True at real documents (a prefix of each row).
        query_index: ``[B]`` int64 position of each query in the dataset.
        doc_index: ``[B, L]`` int64 row of each document in ``dataset.features``, -1 at padding.
    """

    features: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    query_index: torch.Tensor
    doc_index: torch.Tensor

    def to(self, device: Union[str, torch.device], *, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor on ``device``."""
        return Batch(
            features=self.features.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
            query_index=self.query_index.to(device, non_blocking=non_blocking),
            doc_index=self.doc_index.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.mask.shape[0])


def _check_optional_positive(value: object, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _cut_batches(lengths: np.ndarray, batch_size: int, max_docs: Optional[int]) -> np.ndarray:
    """Greedy cut points over queries in plan order.

    A batch takes the longest prefix of the remaining queries with at most ``batch_size``
    queries and ``count * max(length) <= max_docs`` (at least one query, even if alone it
    exceeds ``max_docs``). Returns ``[n_batches + 1]`` boundaries.
    """
    n = lengths.shape[0]
    if max_docs is None:
        return np.append(np.arange(0, n, batch_size), n).astype(np.int64)
    bounds = [0]
    start = 0
    counts = np.arange(1, batch_size + 1)
    while start < n:
        window = lengths[start : start + batch_size]
        # count * running max is non-decreasing along the window, so the fit is a prefix
        cells = np.maximum.accumulate(window) * counts[: window.shape[0]]
        take = max(int(np.searchsorted(cells, max_docs, side="right")), 1)
        start += take
        bounds.append(start)
    return np.asarray(bounds, dtype=np.int64)


def _check_replicas(num_replicas: object, rank: object) -> tuple[int, int]:
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an int in [0, {int(num_replicas)}), got {rank!r}")
    return int(num_replicas), int(rank)


def _deal(weights: np.ndarray, num_shards: int) -> np.ndarray:
    """Shard of each item, dealt in rounds of ``N`` items by weight descending (stable): in each
    round the heaviest item goes to the lightest shard so far, the next to the next lightest...

    Shard sizes differ by at most one item (none when ``N`` divides the count), and the shard
    totals by at most ``max(weights)``: if two shards differ by ``S`` before a round, the lighter
    one gets the heavier item, so afterwards they differ by at most ``max(S, a - b)`` with
    ``a >= b`` the two items they got.
    """
    weights = np.asarray(weights, dtype=np.int64)
    order = np.argsort(-weights, kind="stable")
    shard = np.empty(order.shape[0], dtype=np.int64)
    totals = np.zeros(num_shards, dtype=np.int64)
    for start in range(0, order.shape[0], num_shards):
        items = order[start : start + num_shards]
        lightest = np.argsort(totals, kind="stable")[: items.shape[0]]
        shard[items] = lightest
        totals[lightest] += weights[items]
    return shard


def shard_queries(lengths: np.ndarray, num_shards: int) -> np.ndarray:
    """Shard (``0..num_shards-1``) of each query, balancing documents, for sharded evaluation.

    Queries are dealt by length, longest first, each round's longest to the shard with the fewest
    documents so far: the shards' document counts differ by at most the longest list, their query
    counts by at most one. Ties keep the dataset order, so the result is a pure function of
    ``lengths`` and ``num_shards``.

    Args:
        lengths: ``[n_queries]`` documents per query.
        num_shards: number of processes.

    Returns:
        ``[n_queries]`` int64 shard of each query.

    Example:
        >>> shard_queries(np.array([5, 1, 4, 2]), 2).tolist()
        [0, 0, 1, 1]
    """
    num_shards, _ = _check_replicas(num_shards, 0)
    return _deal(np.asarray(lengths), num_shards)


def _even_batch_count(bounds: np.ndarray, docs_per_query: np.ndarray, num_shards: int) -> np.ndarray:
    """Batch boundaries whose count is a multiple of ``num_shards``.

    The batch with the most queries is split in two until the count divides (this keeps every
    batch within its ``batch_size`` and ``max_docs_per_batch`` caps). Only when every batch is a
    single query are adjacent batches with the fewest documents merged instead (those batches
    then exceed the caps: the price of every query being seen once, with the same number of
    steps on every rank). Needs at least ``num_shards`` queries.
    """
    while (bounds.shape[0] - 1) % num_shards:
        sizes = np.diff(bounds)
        widest = int(np.argmax(sizes))
        if sizes[widest] < 2:
            break
        bounds = np.insert(bounds, widest + 1, bounds[widest] + sizes[widest] // 2)
    count = bounds.shape[0] - 1
    surplus = count % num_shards
    if surplus == 0:
        return bounds
    # every batch is one query here: pair off neighbours with the fewest documents
    docs = docs_per_query
    taken = np.zeros(count, dtype=bool)
    removed: list[int] = []
    for left in np.argsort(docs[:-1] + docs[1:], kind="stable"):
        if len(removed) == surplus:
            break
        if not (taken[left] or taken[left + 1]):
            taken[left] = taken[left + 1] = True
            removed.append(int(left) + 1)
    return np.delete(bounds, removed)


def shard_batches(bounds: np.ndarray, docs_per_query: np.ndarray, num_shards: int) -> tuple[np.ndarray, np.ndarray]:
    """Deal the batches of a plan to ``num_shards`` processes, the same number to each.

    Args:
        bounds: ``[n_batches + 1]`` batch boundaries over the plan's queries.
        docs_per_query: ``[n_queries]`` (kept) documents of each query, in plan order.
        num_shards: number of processes.

    Returns:
        ``(bounds, shard)``: the boundaries after evening out the batch count (see
        :func:`_even_batch_count`) and the ``[n_batches]`` shard of each batch. Every shard gets
        ``n_batches / num_shards`` batches; the shards' document counts differ by at most the
        largest batch's documents.

    Raises:
        ValueError: if there are fewer queries than shards (some process would get nothing).
    """
    num_shards, _ = _check_replicas(num_shards, 0)
    n_queries = docs_per_query.shape[0]
    if n_queries < num_shards:
        raise ValueError(f"{n_queries} queries cannot be shared by {num_shards} processes: every process needs at least one")
    bounds = _even_batch_count(np.asarray(bounds, dtype=np.int64), docs_per_query, num_shards)
    docs = np.add.reduceat(docs_per_query, bounds[:-1])
    return bounds, _deal(docs, num_shards)


class BatchLoader:
    """Iterable of :class:`Batch` over a :class:`RankingDataset`, one epoch per iteration.

    Each epoch visits every kept query exactly once (queries with no documents are dropped when
    ``drop_empty``). With ``bucket_by_length`` queries are sorted by (truncated) length, ties
    broken at random per epoch when shuffling, cut into batches, and the batch order is shuffled
    when ``shuffle``; this keeps padding small on heavy-tailed lengths (batch membership then
    varies between epochs only among queries of equal length). Without bucketing,
    queries are taken in dataset order, or a random permutation per epoch when shuffling.

    Lists longer than ``max_slate_length`` are cut to that many documents: ``"random"`` keeps a
    uniform random subset, ``"top_label"`` keeps the highest-labelled documents (ties at random).
    Kept documents stay in their dataset order. ``max_docs_per_batch`` caps ``B * L`` so long
    lists get smaller batches (a single list longer than the cap forms its own batch).

    ``sublist_fraction`` is a training augmentation (Qin et al. 2021): each epoch every list of
    ``n`` documents is replaced by a uniform random subset of ``max(2, ceil(fraction * n))`` of
    them (all of them when ``n <= 2``), drawn afresh per epoch; ``max_slate_length`` then cuts the
    sub-list by ``truncation``. Leave it ``None`` for scoring and evaluation.

    With ``num_replicas > 1`` the loader yields only process ``rank``'s share of each epoch's
    batches (see the module docstring): the same number of batches on every rank, dealt by
    document count, every query in exactly one rank's batches.

    Args:
        dataset: the queries to batch (features may be memory-mapped).
        batch_size: most queries per batch.
        shuffle: randomise query order and batch order per epoch.
        seed: base seed; see the module docstring.
        bucket_by_length: group queries of similar length.
        max_slate_length: longest list in a batch, or ``None`` for no truncation.
        truncation: ``"random"`` or ``"top_label"``.
        sublist_fraction: keep this fraction of each list per epoch, in ``(0, 1]``, or ``None``.
        max_docs_per_batch: cap on ``B * L`` cells, or ``None``.
        drop_empty: skip queries with no documents; otherwise they appear with an all-False
            mask row.
        num_replicas: number of processes sharing the epoch (``torch.distributed`` world size).
        rank: this process's share, ``0 <= rank < num_replicas``.
        queries: dataset positions of the queries to visit (e.g. one rank's evaluation shard);
            ``None`` = all of them.

    Raises:
        ValueError: on a non-positive size, a negative seed, an unknown ``truncation``, a
            ``sublist_fraction`` outside ``(0, 1]``, a
            non-dataset input, a bad ``num_replicas``/``rank``, or fewer (kept) queries than
            ``num_replicas``.

    Example:
        >>> from ltrkit.data.synthetic import generate
        >>> loader = BatchLoader(generate(10, n_features=8), batch_size=4, shuffle=True)
        >>> sum(len(batch) for batch in loader)
        10
    """

    def __init__(
        self,
        dataset: RankingDataset,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        bucket_by_length: bool = True,
        max_slate_length: Optional[int] = None,
        truncation: str = "random",
        sublist_fraction: Optional[float] = None,
        max_docs_per_batch: Optional[int] = None,
        drop_empty: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        queries: Optional[np.ndarray] = None,
    ) -> None:
        if not isinstance(dataset, RankingDataset):
            raise ValueError(f"dataset must be a RankingDataset, got {type(dataset).__name__}")
        size = _check_optional_positive(batch_size, "batch_size")
        if size is None:
            raise ValueError("batch_size must be a positive int, got None")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {list(TRUNCATIONS)}, got {truncation!r}")
        self.dataset = dataset
        self.batch_size = size
        self.shuffle = bool(shuffle)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        self.bucket_by_length = bool(bucket_by_length)
        self.max_slate_length = _check_optional_positive(max_slate_length, "max_slate_length")
        self.truncation = truncation
        if sublist_fraction is not None and (
            isinstance(sublist_fraction, bool) or not isinstance(sublist_fraction, (int, float)) or not 0.0 < sublist_fraction <= 1.0
        ):
            raise ValueError(f"sublist_fraction must be a number in (0, 1] or None, got {sublist_fraction!r}")
        self.sublist_fraction = None if sublist_fraction is None else float(sublist_fraction)
        self.max_docs_per_batch = _check_optional_positive(max_docs_per_batch, "max_docs_per_batch")
        self.drop_empty = bool(drop_empty)
        self.num_replicas, self.rank = _check_replicas(num_replicas, rank)
        self._epoch = 0
        self._plan_cache: Optional[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = None
        self._all_lengths = dataset.list_lengths
        if queries is None:
            chosen = np.arange(dataset.n_queries)
        else:
            chosen = np.asarray(queries)
            if chosen.ndim != 1 or not np.issubdtype(chosen.dtype, np.integer) or (chosen.size and (chosen.min() < 0 or chosen.max() >= dataset.n_queries)):
                raise ValueError(f"queries must be a 1-D int array of positions in [0, {dataset.n_queries}), got {chosen!r}")
            chosen = chosen.astype(np.int64)
        self._queries = chosen[self._all_lengths[chosen] > 0] if self.drop_empty else chosen
        lengths = self._sublist_lengths(self._all_lengths[self._queries])
        cap = self.max_slate_length
        self._kept_lengths = lengths if cap is None else np.minimum(lengths, cap)
        if self.num_replicas > 1 and self._queries.shape[0] < self.num_replicas:
            raise ValueError(
                f"{dataset.source}: {self._queries.shape[0]} queries cannot be shared by {self.num_replicas} "
                "processes: every process needs at least one"
            )

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will produce."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle/truncation randomness the next iteration uses."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch = int(epoch)

    def _plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(queries in plan order, batch boundaries, batch numbers)`` of this rank for the
        current epoch, batch order applied; a batch's number (its position in the global plan)
        seeds its truncation."""
        if self._plan_cache is not None and self._plan_cache[0] == self._epoch:
            return self._plan_cache[1:]
        rng = np.random.default_rng([self.seed, self._epoch])
        n = self._queries.shape[0]
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket_by_length:
            # stable sort after a random permutation = sort by length with random tie-break
            order = order[np.argsort(self._kept_lengths[order], kind="stable")]
        bounds = _cut_batches(self._kept_lengths[order], self.batch_size, self.max_docs_per_batch)
        if self.shuffle and bounds.shape[0] > 2:
            batch_order = rng.permutation(bounds.shape[0] - 1)
            sizes = np.diff(bounds)[batch_order]
            starts = bounds[:-1][batch_order]
            order = order[np.repeat(starts, sizes) + _ragged_arange(sizes)]
            bounds = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
            np.cumsum(sizes, out=bounds[1:])
        numbers = np.arange(bounds.shape[0] - 1)
        if self.num_replicas > 1:
            bounds, shard = shard_batches(bounds, self._kept_lengths[order], self.num_replicas)
            numbers = np.flatnonzero(shard == self.rank)
            sizes = np.diff(bounds)[numbers]
            order = order[np.repeat(bounds[:-1][numbers], sizes) + _ragged_arange(sizes)]
            bounds = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
            np.cumsum(sizes, out=bounds[1:])
        plan = (self._queries[order], bounds, numbers)
        self._plan_cache = (self._epoch, *plan)
        return plan

    def __len__(self) -> int:
        """Batches in the current epoch (of this rank; the same on every rank). The same for every
        epoch, except with ``max_docs_per_batch`` and ``shuffle`` but no bucketing (the cuts
        follow the order)."""
        return int(self._plan()[1].shape[0] - 1)

    def queries(self) -> np.ndarray:
        """Dataset positions of the queries this rank visits in the current epoch, in plan order."""
        return self._plan()[0].copy()

    def padding_fraction(self) -> float:
        """Padded cells over all ``B * L`` cells of the current epoch's batches (0 when empty)."""
        queries, bounds, _ = self._plan()
        if queries.shape[0] == 0:
            return 0.0
        kept = self._sublist_lengths(self._all_lengths[queries])
        if self.max_slate_length is not None:
            kept = np.minimum(kept, self.max_slate_length)
        widths = np.maximum(np.maximum.reduceat(kept, bounds[:-1]), 1)
        total = int((np.diff(bounds) * widths).sum())
        return 1.0 - float(kept.sum()) / total

    def __iter__(self) -> Iterator[Batch]:
        queries, bounds, numbers = self._plan()
        epoch = self._epoch
        for number, start, stop in zip(numbers.tolist(), bounds[:-1], bounds[1:]):
            yield self.batch(queries[start:stop], rng=np.random.default_rng([self.seed, epoch, number]))

    def batch(self, query_indices: np.ndarray, *, rng: Optional[np.random.Generator] = None) -> Batch:
        """Build the padded batch of the given queries (dataset positions), in that order.

        ``rng`` drives sub-list sampling and slate truncation; it is needed only with
        ``sublist_fraction`` or when some list is longer than ``max_slate_length``.
        """
        dataset = self.dataset
        query_indices = np.asarray(query_indices, dtype=np.int64)
        lengths = self._all_lengths[query_indices]
        rows = np.repeat(dataset.query_offsets[query_indices] - _starts_of(lengths), lengths) + np.arange(
            int(lengths.sum()), dtype=np.int64
        )
        sublist_lengths = self._sublist_lengths(lengths)
        if self.sublist_fraction is not None and rows.size:
            if rng is None:
                raise ValueError("rng is required to sample sub-lists (sublist_fraction)")
            keep = _random_ranks(lengths, rng) < np.repeat(sublist_lengths, lengths)
            rows = rows[keep]
            lengths = sublist_lengths
        cap = self.max_slate_length
        if cap is not None and lengths.max(initial=0) > cap:
            if rng is None:
                raise ValueError("rng is required to truncate lists longer than max_slate_length")
            keep = self._truncation_mask(rows, lengths, cap, rng)
            rows = rows[keep]
            lengths = np.minimum(lengths, cap)
        n_queries = query_indices.shape[0]
        width = max(int(lengths.max(initial=0)), 1)
        mask = np.arange(width)[None, :] < lengths[:, None]
        doc_index = np.full((n_queries, width), -1, dtype=np.int64)
        doc_index[mask] = rows
        if rows.size:
            # one gather straight into the padded shape (padding reads row 0, then is zeroed):
            # about 3x faster than gathering the rows and scattering them through the mask
            source = np.where(mask, doc_index, 0)
            features = np.asarray(dataset.features[source], dtype=np.float32)
            labels = np.asarray(dataset.labels[source], dtype=np.float32)
            padding = ~mask
            features[padding] = 0.0
            labels[padding] = 0.0
        else:
            features = np.zeros((n_queries, width, dataset.n_features), dtype=np.float32)
            labels = np.zeros((n_queries, width), dtype=np.float32)
        return Batch(
            features=torch.from_numpy(features),
            labels=torch.from_numpy(labels),
            mask=torch.from_numpy(mask),
            query_index=torch.from_numpy(query_indices.copy()),
            doc_index=torch.from_numpy(doc_index),
        )

    def _sublist_lengths(self, lengths: np.ndarray) -> np.ndarray:
        """Documents each list keeps after sub-list sampling (``lengths`` itself without it)."""
        if self.sublist_fraction is None:
            return lengths
        # the tolerance keeps e.g. 0.3 * 10 (3.0000000000000004 in binary) at 3
        wanted = np.maximum(np.ceil(self.sublist_fraction * lengths - 1e-9).astype(np.int64), 2)
        return np.minimum(lengths, wanted)

    def _truncation_mask(self, rows: np.ndarray, lengths: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask over ``rows`` keeping at most ``cap`` documents of each query."""
        labels = self.dataset.labels[rows] if self.truncation == "top_label" else None
        return _random_ranks(lengths, rng, labels) < cap


# rows normalised at a time when a view is read by row range (64 Ki rows x 136 features:
# 35 MiB of float32 output, 70 MiB of float64 work)
_VIEW_CHUNK_ROWS = 1 << 16


class NormalizedFeatures:
    """A read-only ``[n_docs, n_features]`` float32 matrix ``normalizer(features)``, computed on access.

    Indexing reads only the rows asked for (from a memory-mapped cache, only those pages) and
    normalises them, so a batch costs its own rows and the whole normalised matrix is never held:
    ``view[rows]`` with an int array of any shape ``S`` gives ``S + (n_features,)``, a row slice
    (optionally with a column index, ``view[:, j]``) is read in chunks of rows, and
    ``np.asarray(view)`` materialises the whole matrix. Per-query methods (``query_zscore``,
    ``query_minmax``) need whole queries: the queries holding the requested rows are read and
    normalised together, so a row's value never depends on which other rows were asked for.
    Values equal ``normalizer.transform_features(features, query_offsets=...)`` row for row.

    Args:
        features: ``[n_docs, n_features]`` raw features (may be memory-mapped).
        normalizer: a fitted :class:`~ltrkit.data.transforms.Normalizer`.
        query_offsets: ``[n_queries + 1]`` query boundaries of the rows.
        source: named in error messages.

    Raises:
        ValueError: if the normalizer is not fitted or was fitted on another feature count; on
            access, if a row read holds NaN or inf (naming the source, row and feature).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, features: np.ndarray, normalizer: Normalizer, query_offsets: np.ndarray, *, source: str = "<array>") -> None:
        if not normalizer.is_fitted:
            raise ValueError(f"this {normalizer!r} is not fitted; call fit() on the training data first")
        if features.ndim != 2 or features.shape[1] != normalizer.n_features:
            raise ValueError(
                f"{source}: has features of shape {tuple(features.shape)} but the normalizer was fitted on {normalizer.n_features}"
            )
        self._raw = features
        self._normalizer = normalizer
        self._offsets = np.asarray(query_offsets, dtype=np.int64)
        self._per_query = normalizer.method in ("query_zscore", "query_minmax")
        self.source = source
        self.shape = (int(features.shape[0]), int(features.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Optional[np.dtype] = None, copy: Optional[bool] = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, key: object) -> np.ndarray:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        n_docs = self.shape[0]
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(n_docs)
            parts = [
                self._row_range(first, min(first + _VIEW_CHUNK_ROWS, stop))[(slice(None),) + rest]
                for first in range(start, stop, _VIEW_CHUNK_ROWS)
            ]
            return np.concatenate(parts) if parts else np.empty((0, self.shape[1]), np.float32)[(slice(None),) + rest]
        index = np.arange(n_docs)[rows] if isinstance(rows, slice) else np.asarray(rows)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise IndexError(f"rows must be indexed by integers, a bool mask or a slice, got dtype {index.dtype}")
        flat = index.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n_docs, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n_docs):
            raise IndexError(f"row index out of range for {n_docs} rows")
        values = self._rows(flat).reshape(index.shape + (self.shape[1],))
        return values[(Ellipsis,) + rest] if rest else values

    def _checked(self, block: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # checked here, not by transform_features, so the error names the dataset's row
        if not np.isfinite(block.sum(dtype=np.float64)):
            row, column = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"{self.source}: feature {int(column)} of document row {int(rows[row])} is {block[row, column]}; features must be finite"
            )
        return block

    def _transform(self, block: np.ndarray, local_offsets: Optional[np.ndarray]) -> np.ndarray:
        return self._normalizer.transform_features(block, query_offsets=local_offsets, source=self.source)

    def _row_range(self, start: int, stop: int) -> np.ndarray:
        if not self._per_query:
            return self._transform(self._checked(np.asarray(self._raw[start:stop]), np.arange(start, stop)), None)
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        last = int(np.searchsorted(self._offsets, stop, side="left"))
        low, high = int(self._offsets[first]), int(self._offsets[last])
        block = self._checked(np.asarray(self._raw[low:high]), np.arange(low, high))
        return self._transform(block, self._offsets[first : last + 1] - low)[start - low : stop - low]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        if not self._per_query:
            return self._transform(self._checked(np.asarray(self._raw[rows]), rows), None)
        query = np.searchsorted(self._offsets, rows, side="right") - 1
        queries, inverse = np.unique(query, return_inverse=True)
        lengths = self._offsets[queries + 1] - self._offsets[queries]
        local = np.zeros(queries.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=local[1:])
        whole = np.repeat(self._offsets[queries] - local[:-1], lengths) + np.arange(int(local[-1]), dtype=np.int64)
        block = self._transform(self._checked(np.asarray(self._raw[whole]), whole), local)
        return block[local[:-1][inverse.reshape(-1)] + rows - self._offsets[query]]


def normalized_view(dataset: RankingDataset, normalizer: Normalizer) -> RankingDataset:
    """``dataset`` with its features normalised lazily (:class:`NormalizedFeatures`); labels,
    offsets and ids are shared. Batches of it hold the values of ``normalizer.transform(dataset)``
    without that full float32 copy ever existing.

    Example:
        >>> from ltrkit.data.synthetic import generate
        >>> data = generate(5, n_features=8)
        >>> norm = Normalizer("zscore").fit(data)
        >>> bool(np.allclose(normalized_view(data, norm).features[[3, 1]], norm.transform(data).features[[3, 1]]))
        True
    """
    return RankingDataset(
        features=NormalizedFeatures(dataset.features, normalizer, dataset.query_offsets, source=dataset.source),
        labels=dataset.labels,
        query_offsets=dataset.query_offsets,
        qids=dataset.qids,
        doc_ids=dataset.doc_ids,
        source=dataset.source,
    )


def normalize_split(dataset: RankingDataset, normalizer: Normalizer) -> RankingDataset:
    """``dataset`` normalised for batching: features memory-mapped from the binary cache get the
    lazy :func:`normalized_view` (each batch normalised from the mapping: the split is never
    copied whole and the processes of a machine share the mapped pages); in-memory features are
    normalised once, up front (cheaper over many epochs). Either way batches hold the values of
    ``normalizer.transform(dataset)``."""
    if isinstance(dataset.features, np.memmap):
        return normalized_view(dataset, normalizer)
    return normalizer.transform(dataset)


def _starts_of(lengths: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum: where each segment starts in the concatenation."""
    starts = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _random_ranks(lengths: np.ndarray, rng: np.random.Generator, labels: Optional[np.ndarray] = None) -> np.ndarray:
    """Each row's position within its own list (rows grouped by ``lengths``) in a uniform random
    order, or by ``labels`` descending with random tie-breaks when given."""
    segment = np.repeat(np.arange(lengths.shape[0]), lengths)
    tie_break = rng.random(segment.shape[0])
    # lexsort: the last key is primary -> by list, then label descending, then at random
    keys = (tie_break, segment) if labels is None else (tie_break, -labels.astype(np.float64), segment)
    ranks = np.empty(segment.shape[0], dtype=np.int64)
    ranks[np.lexsort(keys)] = _ragged_arange(lengths)
    return ranks


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without a Python loop."""
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(_starts_of(lengths), lengths)


def scores_to_rows(batch: Batch, scores: torch.Tensor, out: np.ndarray) -> None:
    """Write a batch's scores into a per-document array at the documents' dataset rows.

    ``out[batch.doc_index[b, i]] = scores[b, i]`` for every real position; padded positions are
    ignored. Use it to collect model scores for a whole dataset in row order.

    Args:
        batch: the batch the scores were computed on.
        scores: ``[B, L]`` scores (any device, detached or not).
        out: ``[n_docs]`` array written in place.

    Raises:
        ValueError: if ``scores`` is not ``[B, L]`` like ``batch.mask`` or ``out`` is not 1-D.
    """
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != tuple(batch.mask.shape):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a tensor of the batch's shape {tuple(batch.mask.shape)}, got {shape}")
    if not isinstance(out, np.ndarray) or out.ndim != 1:
        raise ValueError(f"out must be a 1-D numpy array [n_docs], got {getattr(out, 'shape', type(out).__name__)}")
    mask = batch.mask.cpu()
    rows = batch.doc_index.cpu()[mask].numpy()
    if rows.size and rows.max() >= out.shape[0]:
        raise ValueError(f"batch holds document row {int(rows.max())} but out has only {out.shape[0]} rows")
    out[rows] = scores.detach().cpu()[mask].numpy()
