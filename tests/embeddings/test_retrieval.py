"""Retrieval metrics equal ltrkit's list metrics (ltrkit.metrics.functional) run on the same
similarity scores, each query's own row deleted from its list (not masked)."""

from __future__ import annotations

import math

import pytest
import torch

import ltrkit.metrics.functional as F
from ltrkit.embeddings.retrieval import retrieval_metrics, retrieval_values, similarity

METRICS = ["recall@1", "recall@5", "p@3", "p@50", "p", "map", "map@4", "mrr", "mrr@2", "ndcg", "ndcg@5"]


_FUNCTIONS = {"recall": F.recall, "p": F.precision, "map": F.average_precision, "mrr": F.reciprocal_rank, "ndcg": F.ndcg}


def list_metric_columns(scores: torch.Tensor, labels: torch.Tensor, empty: str, names: list) -> torch.Tensor:
    """``[Q, len(names)]``: each metric name (``p@3``, ``map``, ...) computed per row by
    ltrkit.metrics.functional on the lists ``scores``/``labels``."""
    columns = []
    for name in names:
        metric, _, cutoff = name.partition("@")
        columns.append(_FUNCTIONS[metric](scores, labels, **({"k": int(cutoff)} if cutoff else {}), empty=empty))
    return torch.stack(columns, dim=1)


def _reference(queries, query_classes, index, index_classes, kind, empty, exclude_self):
    """One row of list metrics per query, computed by ltrkit.metrics.functional on the deleted lists."""
    scores = similarity(queries, index, kind).double()
    labels = (query_classes[:, None] == index_classes[None, :]).double()
    if exclude_self:
        keep = ~torch.eye(scores.shape[0], dtype=torch.bool)
        scores = scores[keep].reshape(scores.shape[0], -1)
        labels = labels[keep].reshape(labels.shape[0], -1)
    return list_metric_columns(scores, labels, empty, METRICS)


@pytest.mark.parametrize("kind", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("empty", ["zero", "skip", "one"])
def test_every_item_as_a_query_equals_the_list_metrics(kind, empty):
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(41, 6, generator=generator)
    classes = torch.randint(0, 6, (41,), generator=generator)
    classes[40] = 99  # a class of one: no relevant item for this query
    values = retrieval_values(embeddings, classes, METRICS, similarity_kind=kind, empty=empty, chunk=7)
    expected = _reference(embeddings, classes, embeddings, classes, kind, empty, exclude_self=True)
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-12, equal_nan=True)
    assert values.shape == (41, len(METRICS))


def test_ties_keep_index_order_as_the_list_metrics_do():
    # quantised embeddings: many exactly equal similarities
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randint(0, 2, (30, 3), generator=generator).float()
    classes = torch.randint(0, 3, (30,), generator=generator)
    values = retrieval_values(embeddings, classes, METRICS, similarity_kind="dot", chunk=4)
    expected = _reference(embeddings, classes, embeddings, classes, "dot", "zero", exclude_self=True)
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-12)


def test_separate_queries_and_index():
    generator = torch.Generator().manual_seed(1)
    index, queries = torch.randn(25, 4, generator=generator), torch.randn(9, 4, generator=generator)
    index_classes, query_classes = torch.randint(0, 4, (25,), generator=generator), torch.randint(0, 4, (9,), generator=generator)
    values = retrieval_values(queries, query_classes, METRICS, index=index, index_classes=index_classes)
    expected = _reference(queries, query_classes, index, index_classes, "cosine", "zero", exclude_self=False)
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-12)


def test_sums_and_counts_skip_queries_without_relevant_items():
    embeddings = torch.randn(12, 3, generator=torch.Generator().manual_seed(2))
    classes = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 5])
    values = retrieval_values(embeddings, classes, ["map"], empty="skip")
    result = retrieval_metrics(embeddings, classes, ["MAP"], empty="skip")
    assert result.counts == {"map": 9.0}
    assert result.means["map"] == pytest.approx(float(values[:9, 0].mean()), abs=1e-15)
    zero = retrieval_metrics(embeddings, classes, ["map"])
    assert zero.counts == {"map": 12.0} and math.isclose(zero.sums["map"], result.sums["map"], abs_tol=1e-15)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e, c: retrieval_values(e, c, ["err@10"]), "not a retrieval metric"),
        (lambda e, c: retrieval_values(e, c, ["recall@0"]), "positive integer"),
        (lambda e, c: retrieval_values(e, c, ["map"], similarity_kind="l1"), "similarity"),
        (lambda e, c: retrieval_values(e, c, ["map"], empty="none"), "empty"),
        (lambda e, c: retrieval_values(e, c.float(), ["map"]), "integer tensor"),
        (lambda e, c: retrieval_values(e.clone().index_put_((torch.tensor([2]), torch.tensor([1])), torch.tensor(float("nan"))), c, ["map"]), "row 2 holds a NaN"),
        (lambda e, c: retrieval_values(e, c, ["map"], index=e), "without index_classes"),
    ],
)
def test_bad_inputs(call, message):
    embeddings, classes = torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match=message):
        call(embeddings, classes)


def test_a_block_with_many_ties_takes_the_stable_sort(monkeypatch):
    import ltrkit.embeddings.retrieval as retrieval

    # any tie at all exceeds a budget of 1 element, so every block takes the sort path
    monkeypatch.setattr(retrieval, "_BLOCK_ELEMENTS", 1)
    generator = torch.Generator().manual_seed(5)
    embeddings = torch.randint(0, 2, (20, 2), generator=generator).float()
    classes = torch.randint(0, 3, (20,), generator=generator)
    values = retrieval_values(embeddings, classes, METRICS, similarity_kind="dot", chunk=6)
    expected = _reference(embeddings, classes, embeddings, classes, "dot", "zero", exclude_self=True)
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-12)
