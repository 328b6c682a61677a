"""Retrieval evaluation of embeddings: every query ranks the index by similarity.

A query's relevant items are the index items of its class (``classes [N]`` equal), or, for
multi-label items (``labels [N, L]`` multi-hot, :func:`multi_hot` builds it from label lists),
the index items sharing at least one of its labels. With ``exclude_self`` (the query set *is*
the index, the usual "every item as a query" protocol) the query's own row is left out of its
list. The metrics are ltrkit's list metrics
(:mod:`ltrkit.metrics.functional`) on binary labels, with the library's conventions:

* ranks are 1-based, higher similarity first; ties keep index order (``ties="input_order"``);
* ``p@k = hits@k / k``; ``recall@k = hits@k / R`` (``R`` = relevant items of the query);
  ``mrr`` = 1 / rank of the first relevant item; ``map`` = :math:`\\frac{1}{R}\\sum_{r} P@r\\,
  rel_r`; ``ndcg@k`` = :math:`\\sum_{r \\le k} rel_r / \\log_2(r+1)` over its ideal (with binary
  labels the ``exp2`` and ``linear`` gains coincide);
* a query with no relevant item (a class of one) gets ``empty``: 0 (``"zero"``, default), 1
  (``"one"``) or NaN (``"skip"``, left out of the means).

The work is in matrix form: ``chunk`` queries at a time, one ``[chunk, N]`` similarity block;
the metrics need only the ranks of the relevant items, found by a ``topk`` of the relevant scores
and a binary search of every other score among them (no ``[chunk, N]`` sort), then reduced with
tensor operations; no Python loop over queries. Memory is ``O(chunk * N)``, so 100k x 100k runs
exactly in chunks (``benchmarks/bench_embeddings.py``).

Example:
    >>> import torch
    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> result = retrieval_metrics(emb, torch.tensor([0, 0, 1, 1]), ["recall@1", "map"])
    >>> {name: round(value, 3) for name, value in result.means.items()}
    {'recall@1': 1.0, 'map': 1.0}
"""

from __future__ import annotations

import math
from typing import Hashable, List, Optional, Sequence, Tuple

import torch

from ltrkit._checks import check_choice
from ltrkit.training.task import Evaluation

__all__ = [
    "RETRIEVAL_FAMILIES",
    "SIMILARITIES",
    "canonical_retrieval_metric",
    "multi_hot",
    "retrieval_metrics",
    "retrieval_values",
    "similarity",
]

#: Metric families of :func:`retrieval_values` (canonical names as :func:`ltrkit.metrics.parse_metric` spells them).
RETRIEVAL_FAMILIES = ("recall", "p", "map", "mrr", "ndcg")
SIMILARITIES = ("cosine", "dot", "euclidean")
EMPTY_RULES = ("zero", "one", "skip")

# elements of one [chunk, N] block: sort values + int64 indices stay around 200 MB
_BLOCK_ELEMENTS = 1 << 24


def canonical_retrieval_metric(name: str) -> str:
    """The canonical spelling of a retrieval metric (``"Recall@10"`` -> ``"recall@10"``).

    Raises:
        ValueError: unknown name, or a family that is not a retrieval metric (``err``, ``dcg``).
    """
    from ltrkit.metrics import parse_metric

    spec = parse_metric(name)
    if spec.family not in RETRIEVAL_FAMILIES:
        raise ValueError(f"metric {name!r} is not a retrieval metric; use recall@k, p@k, map, mrr or ndcg (with or without @k)")
    return spec.name


def similarity(queries: torch.Tensor, index: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """``[Q, N]`` similarities: cosine, dot product, or negated Euclidean distance (higher = closer)."""
    check_choice("similarity", kind, SIMILARITIES)
    if kind == "cosine":
        return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(index, dim=-1).T
    if kind == "dot":
        return queries @ index.T
    return -torch.cdist(queries, index)


def multi_hot(label_lists: Sequence[Sequence[Hashable]], vocabulary: Optional[Sequence[Hashable]] = None) -> Tuple[torch.Tensor, List[Hashable]]:
    """Multi-hot labels ``[N, L]`` (bool) of items given as label lists, and the ``L`` label names.

    Args:
        label_lists: each item's labels (any hashables; repeats count once; an empty list is an
            item relevant to nothing).
        vocabulary: the label names, in column order (default: the sorted labels seen).

    Raises:
        ValueError: a label not in ``vocabulary`` (naming the item and the label).

    Example:
        >>> labels, names = multi_hot([["news", "sport"], ["sport"], []])
        >>> labels.int().tolist(), names
        ([[1, 1], [0, 1], [0, 0]], ['news', 'sport'])
    """
    names = sorted({label for labels in label_lists for label in labels}) if vocabulary is None else list(vocabulary)
    column = {name: j for j, name in enumerate(names)}
    rows, columns = [], []
    for item, labels in enumerate(label_lists):
        for label in labels:
            if label not in column:
                raise ValueError(f"item {item}: label {label!r} is not in the vocabulary")
            rows.append(item)
            columns.append(column[label])
    out = torch.zeros(len(label_lists), len(names), dtype=torch.bool)
    out[torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long)] = True
    return out, names


def _relevance(query_labels: torch.Tensor, index_labels: torch.Tensor) -> torch.Tensor:
    """``[Q, N]`` bool: same class (``[Q]`` and ``[N]``), or at least one shared label (``[Q, L]``
    multi-hot and ``index_labels`` as a sparse ``[N, L]`` float tensor)."""
    if query_labels.dim() == 1:
        return query_labels[:, None] == index_labels[None, :]
    # shared-label counts: a sparse product costs O(labels of the index * Q), not O(N * L * Q);
    # the counts are small integers, exact in float32
    shared = torch.sparse.mm(index_labels, query_labels.T.to(torch.float32).contiguous())
    return (shared > 0).T.contiguous()


def retrieval_values(
    queries: torch.Tensor,
    query_classes: torch.Tensor,
    metrics: Sequence[str],
    *,
    index: Optional[torch.Tensor] = None,
    index_classes: Optional[torch.Tensor] = None,
    similarity_kind: str = "cosine",
    empty: str = "zero",
    chunk: Optional[int] = None,
    query_rows: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per-query retrieval metrics ``[Q, M]`` (float64), columns in the order of ``metrics``.

    Args:
        queries: ``[Q, D]`` query embeddings.
        query_classes: ``[Q]`` integer classes, or ``[Q, L]`` multi-hot labels (bool or 0/1;
            relevant = at least one label in common).
        metrics: names (``recall@k``, ``p@k``, ``map``, ``map@k``, ``mrr``, ``mrr@k``, ``ndcg``,
            ``ndcg@k``; :func:`ltrkit.metrics.parse_metric` spellings).
        index: ``[N, D]`` embeddings searched; ``None`` = the queries themselves, each query's
            own row excluded from its list.
        index_classes: ``[N]`` classes or ``[N, L]`` labels of ``index``, the kind of
            ``query_classes`` (with ``index`` only).
        similarity_kind: ``"cosine"``, ``"dot"`` or ``"euclidean"`` (see :func:`similarity`).
        empty: value of a query with no relevant item: ``"zero"``, ``"one"`` or ``"skip"`` (NaN).
        chunk: queries per block (default: about ``2^24 / N``).
        query_rows: ``[Q']`` rows of ``queries`` to evaluate, in this order (default: every row);
            the index is unchanged (without ``index``: all of ``queries``, each evaluated row's
            own left out), so each row gets its value of the whole evaluation (up to the last
            bit of a similarity computed in another block) and disjoint row sets covering the
            queries split the evaluation's sums (a sharded evaluation).

    Raises:
        ValueError: bad shapes, non-finite embeddings, labels neither ``[N]`` integer nor
            ``[N, L]`` 0/1, query and index labels of different kinds, an unknown metric,
            similarity or rule, ``query_rows`` not a 1-d integer tensor of rows of ``queries``.
    """
    names = [canonical_retrieval_metric(name) for name in metrics]
    check_choice("empty", empty, EMPTY_RULES)
    exclude_self = index is None
    if exclude_self:
        if index_classes is not None:
            raise ValueError("index_classes is given without index")
        index, index_classes = queries, query_classes
    elif index_classes is None:
        raise ValueError("index is given without index_classes")
    query_classes = _check_embeddings("queries", queries, query_classes)
    index_classes = _check_embeddings("index", index, index_classes)
    if queries.shape[1] != index.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions but the index has {index.shape[1]}")
    if query_classes.shape[1:] != index_classes.shape[1:]:
        raise ValueError(
            f"query labels {tuple(query_classes.shape)} and index labels {tuple(index_classes.shape)} must be both classes [N] or both multi-hot [N, L] with the same L"
        )
    if query_rows is None:
        query_rows = torch.arange(queries.shape[0], device=queries.device)
    elif query_rows.dim() != 1 or query_rows.is_floating_point() or bool(((query_rows < 0) | (query_rows >= queries.shape[0])).any()):
        raise ValueError(f"query_rows must be a 1-d integer tensor of rows 0..{queries.shape[0] - 1} of queries")
    query_rows = query_rows.to(device=queries.device, dtype=torch.long)
    n_index = index.shape[0]
    length = n_index - 1 if exclude_self else n_index
    if chunk is None:
        chunk = max(1, _BLOCK_ELEMENTS // max(n_index, 1))
    from ltrkit.metrics import parse_metric

    specs = [parse_metric(name) for name in names]
    discounts = 1.0 / torch.log2(torch.arange(2, length + 2, dtype=torch.float64, device=queries.device))
    # ideal DCG@k of R relevant items = sum of the first min(R, k) discounts
    ideal_prefix = torch.cat([torch.zeros(1, dtype=torch.float64, device=queries.device), torch.cumsum(discounts, 0)])
    out = torch.empty(query_rows.shape[0], len(specs), dtype=torch.float64, device=queries.device)
    if index_classes.dim() == 2:
        index_classes = index_classes.to(torch.float32).to_sparse()
    for start in range(0, query_rows.shape[0], chunk):
        stop = min(start + chunk, query_rows.shape[0])
        block = query_rows[start:stop]
        scores = similarity(queries[block], index, similarity_kind)
        relevant = _relevance(query_classes[block], index_classes)
        if exclude_self:
            rows = torch.arange(stop - start, device=queries.device)
            own = block
            # the query's own row ranks after every finite similarity and drops out of the list
            scores[rows, own] = -math.inf
            relevant[rows, own] = False
        ranks, n_relevant = _relevant_ranks(scores, relevant)
        out[start:stop] = _values(ranks, n_relevant, specs, length, discounts, ideal_prefix, empty)
    return out


def _relevant_ranks(scores: torch.Tensor, relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based ranks ``[Q, R_max]`` (float64, ascending, ``inf`` padding) of each query's relevant
    items, and their counts ``[Q]``.

    Only the ranks of relevant items matter to the metrics, so no ``[Q, N]`` sort is needed: the
    relevant scores are taken in descending order (``topk`` of ``R_max``, equal scores by index)
    and every other score is placed among them by binary search (``searchsorted``); the ``m``-th
    relevant item's rank is ``m + 1`` plus the other items above it. An item whose score equals a
    relevant item's ranks above it when its index is lower (``ties="input_order"``): the few tied
    entries are counted separately; a block with more ties than that takes a stable sort.
    """
    n_relevant = relevant.sum(dim=1)
    width = int(n_relevant.max()) if n_relevant.numel() else 0
    q = scores.shape[0]
    if width == 0:
        return torch.full((q, 0), math.inf, dtype=torch.float64, device=scores.device), n_relevant.to(torch.float64)
    neg_inf = torch.tensor(-math.inf, dtype=scores.dtype, device=scores.device)
    top = torch.topk(torch.where(relevant, scores, neg_inf), width, dim=1)
    # equal relevant scores in index order (topk leaves their order open): by index, then stably by score
    by_index = torch.sort(top.indices, dim=1).indices
    values, indices = torch.gather(top.values, 1, by_index), torch.gather(top.indices, 1, by_index)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    values, indices = torch.gather(values, 1, by_score), torch.gather(indices, 1, by_score)
    real = torch.arange(width, device=scores.device)[None, :] < n_relevant[:, None]
    ascending = torch.flip(values, dims=[1]).contiguous()
    others = torch.where(relevant, neg_inf, scores).contiguous()
    below = torch.searchsorted(ascending, others)  # relevant scores strictly below each other score
    # non-relevant items above the m-th largest relevant score: those with `below` > width - 1 - m
    flat = below + (width + 1) * torch.arange(q, device=scores.device)[:, None]
    histogram = torch.bincount(flat.flatten(), minlength=q * (width + 1)).reshape(q, width + 1)
    above = torch.cumsum(torch.flip(histogram, dims=[1]), dim=1)[:, :width]
    nearest = torch.gather(ascending, 1, below.clamp(max=width - 1))
    tied_rows, tied_items = torch.nonzero((nearest == others) & (below < width) & (others > neg_inf), as_tuple=True)
    if tied_rows.numel() * width > _BLOCK_ELEMENTS:
        return _ranks_by_sort(scores, relevant, width), n_relevant.to(torch.float64)
    if tied_rows.numel():
        tied_value = others[tied_rows, tied_items]
        lower_index = (values[tied_rows] == tied_value[:, None]) & (indices[tied_rows] > tied_items[:, None]) & real[tied_rows]
        above = above.index_add(0, tied_rows, lower_index.to(above.dtype))
    ranks = torch.arange(1, width + 1, dtype=torch.float64, device=scores.device)[None, :] + above.to(torch.float64)
    return torch.where(real, ranks, torch.full_like(ranks, math.inf)), n_relevant.to(torch.float64)


def _ranks_by_sort(scores: torch.Tensor, relevant: torch.Tensor, width: int) -> torch.Tensor:
    """The ranks of :func:`_relevant_ranks` from a stable descending sort of the whole block."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranked = torch.gather(relevant, 1, order)
    positions = torch.arange(1, scores.shape[1] + 1, dtype=torch.float64, device=scores.device).expand(scores.shape[0], -1)
    return torch.sort(torch.where(ranked, positions, torch.full_like(positions, math.inf)), dim=1).values[:, :width]


def _values(ranks: torch.Tensor, n_relevant: torch.Tensor, specs: List, length: int, discounts: torch.Tensor, ideal_prefix: torch.Tensor, empty: str) -> torch.Tensor:
    """Metric values ``[Q, M]`` from the relevant items' ranks ``[Q, R_max]`` (``inf`` = padding)."""
    order = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64, device=ranks.device)[None, :]  # m-th relevant item
    finite = torch.isfinite(ranks)
    safe = torch.where(finite, ranks, torch.ones_like(ranks))
    gains = torch.where(finite, discounts[(safe.long() - 1).clamp(max=max(length - 1, 0))] if length else torch.zeros_like(safe), torch.zeros_like(safe))
    columns = []
    for spec in specs:
        k = length if spec.k is None else min(spec.k, length)
        within = ranks <= k
        hits = within.sum(dim=1).to(torch.float64)
        if spec.family == "recall":
            value = hits / n_relevant.clamp_min(1.0)
        elif spec.family == "p":
            value = hits / (float(spec.k) if spec.k is not None else float(max(length, 1)))
        elif spec.family == "mrr":
            first = ranks[:, 0] if ranks.shape[1] else torch.full_like(n_relevant, math.inf)
            value = torch.where(first <= k, 1.0 / first, torch.zeros_like(first))
        elif spec.family == "map":
            value = torch.where(within, order / safe, torch.zeros_like(safe)).sum(dim=1) / n_relevant.clamp_min(1.0)
        else:  # ndcg
            dcg = torch.where(within, gains, torch.zeros_like(gains)).sum(dim=1)
            ideal = ideal_prefix[torch.clamp(n_relevant, max=k).long()]
            value = torch.where(ideal > 0, dcg / ideal.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(dcg))
        fill = {"zero": 0.0, "one": 1.0, "skip": math.nan}[empty]
        columns.append(torch.where(n_relevant > 0, value, torch.full_like(value, fill)))
    return torch.stack(columns, dim=1)


def retrieval_metrics(
    queries: torch.Tensor,
    query_classes: torch.Tensor,
    metrics: Sequence[str],
    **options: object,
) -> Evaluation:
    """Sums and counts of :func:`retrieval_values` per metric (``.means`` gives the means).

    Queries whose value is NaN (``empty="skip"``) are in neither the sums nor the counts.
    Keyword options are those of :func:`retrieval_values`.
    """
    values = retrieval_values(queries, query_classes, metrics, **options)
    names = [canonical_retrieval_metric(name) for name in metrics]
    counted = ~torch.isnan(values)
    sums = torch.where(counted, values, torch.zeros_like(values)).sum(dim=0)
    return Evaluation(
        sums={name: float(sums[j]) for j, name in enumerate(names)},
        counts={name: float(counted[:, j].sum()) for j, name in enumerate(names)},
    )


def _check_embeddings(name: str, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Validate one side; return its labels as ``[N]`` classes or ``[N, L]`` bool multi-hot."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
        got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name} must be a float tensor [N, D], got {got}")
    kinds = f"an integer tensor [{embeddings.shape[0]}] or multi-hot labels [{embeddings.shape[0]}, L]"
    if not isinstance(classes, torch.Tensor) or classes.dim() not in (1, 2) or classes.shape[0] != embeddings.shape[0] or classes.is_floating_point():
        got = tuple(classes.shape) if isinstance(classes, torch.Tensor) else type(classes).__name__
        raise ValueError(f"the classes of {name} must be {kinds}, got {got}")
    if classes.dim() == 2 and classes.dtype != torch.bool:
        bad = ~((classes == 0) | (classes == 1))
        if bool(bad.any()):
            row = int(torch.nonzero(bad.any(dim=1))[0])
            raise ValueError(f"the multi-hot labels of {name} row {row} hold a value other than 0 and 1")
        classes = classes != 0
    if not bool(torch.isfinite(embeddings).all()):
        row = int(torch.nonzero(~torch.isfinite(embeddings).all(dim=1))[0])
        raise ValueError(f"{name} row {row} holds a NaN or infinite value")
    return classes
