"""Multi-label retrieval (relevant = at least one shared label) equals ltrkit's list metrics on the
same similarity scores, and pytrec_eval on a small case."""

from __future__ import annotations

import pytest
import torch

from ltrkit.embeddings.retrieval import multi_hot, retrieval_metrics, retrieval_values, similarity
from tests.embeddings.test_retrieval import list_metric_columns

METRICS = ["recall@1", "recall@5", "p@3", "p", "map", "map@4", "mrr", "mrr@2", "ndcg", "ndcg@5"]


def _label_lists(n, n_labels, seed):
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 4, (n,), generator=generator)  # 0 labels: relevant to nothing
    return [sorted(set(torch.randint(0, n_labels, (int(size),), generator=generator).tolist())) for size in sizes]


def _shared_label_relevance(query_lists, index_lists):
    """Relevance straight from the definition: the two label sets intersect."""
    return torch.tensor([[float(bool(set(q) & set(i))) for i in index_lists] for q in query_lists], dtype=torch.float64)


def _reference(scores, labels, empty):
    return list_metric_columns(scores, labels, empty, METRICS)


def _without_diagonal(matrix):
    keep = ~torch.eye(matrix.shape[0], dtype=torch.bool)
    return matrix[keep].reshape(matrix.shape[0], -1)


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_every_item_as_a_query_equals_the_list_metrics(kind, empty):
    lists = _label_lists(37, 5, seed=0)
    labels, names = multi_hot(lists)
    embeddings = torch.randn(37, 4, generator=torch.Generator().manual_seed(1))
    values = retrieval_values(embeddings, labels, METRICS, similarity_kind=kind, empty=empty, chunk=6)
    scores = _without_diagonal(similarity(embeddings, embeddings, kind).double())
    relevance = _without_diagonal(_shared_label_relevance(lists, lists))
    assert 0 < float(relevance.mean()) < 1 and any(not labels for labels in lists)
    torch.testing.assert_close(values, _reference(scores, relevance, empty), rtol=0, atol=1e-12, equal_nan=True)


def test_separate_queries_and_index_with_ties_and_0_1_integers():
    query_lists, index_lists = _label_lists(9, 4, seed=2), _label_lists(23, 4, seed=3)
    vocabulary = list(range(4))
    query_labels, _ = multi_hot(query_lists, vocabulary)
    index_labels, _ = multi_hot(index_lists, vocabulary)
    generator = torch.Generator().manual_seed(4)
    # quantised embeddings: many exactly equal scores, which keep index order
    queries, index = torch.randint(0, 2, (9, 3), generator=generator).float(), torch.randint(0, 2, (23, 3), generator=generator).float()
    values = retrieval_values(queries, query_labels.long(), METRICS, index=index, index_classes=index_labels, similarity_kind="dot", chunk=4)
    scores = similarity(queries, index, "dot").double()
    expected = _reference(scores, _shared_label_relevance(query_lists, index_lists), "zero")
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-12)


def test_one_label_per_item_equals_the_class_form():
    generator = torch.Generator().manual_seed(5)
    embeddings, classes = torch.randn(30, 3, generator=generator), torch.randint(0, 4, (30,), generator=generator)
    one_hot = torch.nn.functional.one_hot(classes, 4).bool()
    torch.testing.assert_close(retrieval_values(embeddings, one_hot, METRICS), retrieval_values(embeddings, classes, METRICS), rtol=0, atol=0)


def test_equals_pytrec_eval_on_a_small_case():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    lists = _label_lists(25, 4, seed=6)
    labels, _ = multi_hot(lists)
    embeddings = torch.randn(25, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    names = ["recall@5", "p@5", "map", "mrr", "ndcg@5", "ndcg"]
    values = retrieval_values(embeddings, labels, names, empty="skip")
    scores = similarity(embeddings, embeddings)
    qrels, run = {}, {}
    for q in range(25):
        qrels[f"q{q}"] = {f"d{i}": 1 for i in range(25) if i != q and set(lists[q]) & set(lists[i])}
        run[f"q{q}"] = {f"d{i}": float(scores[q, i]) for i in range(25) if i != q}
    measures = {"recall_5": "recall@5", "P_5": "p@5", "map": "map", "recip_rank": "mrr", "ndcg_cut_5": "ndcg@5", "ndcg": "ndcg"}
    theirs = pytrec_eval.RelevanceEvaluator({q: docs for q, docs in qrels.items() if docs}, set(measures)).evaluate(run)
    assert 10 < len(theirs) < 25  # trec_eval leaves out the queries with no relevant item, as "skip" does
    for q in range(25):
        if f"q{q}" not in theirs:
            assert torch.isnan(values[q]).all()
            continue
        for measure, name in measures.items():
            assert float(values[q, names.index(name)]) == pytest.approx(theirs[f"q{q}"][measure], abs=1e-4)  # trec_eval prints 4 decimals


def test_sums_and_counts_of_multi_label_queries():
    lists = [[0], [0, 1], [1], [2], []]
    labels, _ = multi_hot(lists)
    embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.5, 0.5], [0.0, 1.0], [-1.0, -1.0]])
    result = retrieval_metrics(embeddings, labels, ["recall@1"], empty="skip")
    # nearest (cosine): 0 -> 1, relevant of 1; 1 -> 0, relevant of 2 (items 0 and 2 share a label
    # with 1); 2 -> 1, relevant of 1; items 3 and 4 share no label with another item
    assert result.counts == {"recall@1": 3.0} and result.sums == {"recall@1": 1.0 + 0.5 + 1.0}


def test_multi_hot_builds_columns_in_vocabulary_order():
    labels, names = multi_hot([["b", "a", "b"], [], ["c"]], vocabulary=["c", "b", "a"])
    assert names == ["c", "b", "a"]
    assert labels.tolist() == [[False, True, True], [False, False, False], [True, False, False]]
    with pytest.raises(ValueError, match="item 1: label 'z' is not in the vocabulary"):
        multi_hot([["a"], ["z"]], vocabulary=["a"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e, m: retrieval_values(e, m * 2, ["map"]), "multi-hot labels of queries row 0 hold a value other than 0 and 1"),
        (lambda e, m: retrieval_values(e, m, ["map"], index=e, index_classes=torch.arange(5)), r"must be both classes \[N\] or both multi-hot"),
        (lambda e, m: retrieval_values(e, m, ["map"], index=e, index_classes=m[:, :2]), r"both multi-hot \[N, L\] with the same L"),
        (lambda e, m: retrieval_values(e, m.float(), ["map"]), r"integer tensor \[5\] or multi-hot labels \[5, L\]"),
        (lambda e, m: retrieval_values(e, m[None], ["map"]), r"got \(1, 5, 3\)"),
    ],
)
def test_bad_multi_label_inputs(call, message):
    embeddings = torch.randn(5, 2)
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=message):
        call(embeddings, labels)
