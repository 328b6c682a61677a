"""dataset_statistics and filter_queries against direct per-query counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ltrkit.data.dataset import RankingDataset, dataset_statistics, filter_queries

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_dataset(lengths, labels=None, seed=0) -> RankingDataset:
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_docs = int(offsets[-1])
    if labels is None:
        labels = rng.choice([0.0, 0.1, 0.5, 1.0, 2.0, 4.0], p=[0.45, 0.05, 0.1, 0.2, 0.15, 0.05], size=n_docs)
    features = np.arange(n_docs * 2, dtype=np.float32).reshape(n_docs, 2)
    doc_ids = np.array([f"d{i}" for i in range(n_docs)])
    qids = np.array([f"q{i}" for i in range(len(lengths))])
    return RankingDataset(features, np.asarray(labels, dtype=np.float32), offsets, qids, doc_ids)


def per_query_labels(dataset):
    return [dataset.labels[dataset.query_slice(q)] for q in range(dataset.n_queries)]


@pytest.mark.parametrize("threshold", [1.0, 0.5, 2.0])
def test_statistics_match_direct_counts(threshold):
    rng = np.random.default_rng(3)
    lengths = np.concatenate([rng.integers(1, 40, size=60), [0, 0, 1]])
    dataset = make_dataset(lengths)
    stats = dataset_statistics(dataset, relevance_threshold=threshold)
    assert json.loads(json.dumps(stats)) == stats, "JSON-serialisable"
    assert (stats["queries"], stats["documents"], stats["features"]) == (63, int(lengths.sum()), 2)
    names = {0.0: "0", np.float32(0.1): "0.1", 0.5: "0.5", 1.0: "1", 2.0: "2", 4.0: "4"}
    expected_labels = {names[value]: int((dataset.labels == value).sum()) for value in sorted(names)}
    assert stats["labels"] == expected_labels
    assert list(stats["labels"]) == list(expected_labels), "sorted by label value"
    groups = per_query_labels(dataset)
    assert stats["empty_queries"] == sum(g.size == 0 for g in groups) == 2
    assert stats["queries_without_relevant"] == sum(not (g >= threshold).any() for g in groups)
    assert stats["queries_single_label"] == sum(g.size > 0 and len(set(g.tolist())) == 1 for g in groups)
    length_stats = stats["list_length"]
    assert length_stats["min"] == 0 and length_stats["max"] == lengths.max()
    assert length_stats["mean"] == pytest.approx(lengths.mean())
    assert length_stats["median"] == pytest.approx(np.median(lengths))
    assert length_stats["p90"] == pytest.approx(np.quantile(lengths, 0.9))
    assert length_stats["p99"] == pytest.approx(np.quantile(lengths, 0.99))


def test_statistics_of_empty_dataset():
    empty = RankingDataset(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(1, np.int64), np.array([], dtype=str))
    stats = dataset_statistics(empty)
    assert stats["queries"] == 0 and stats["labels"] == {} and stats["list_length"]["max"] == 0


def test_statistics_on_shared_mq2008_matches_readme():
    from ltrkit.data.letor import read_letor  # the parser lives in another module

    path = SHARED / "mq2008" / "Fold1" / "train.txt"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    stats = dataset_statistics(read_letor(path))
    assert (stats["queries"], stats["documents"], stats["features"]) == (471, 9630, 46)
    assert stats["queries_without_relevant"] == 132
    assert (stats["list_length"]["min"], stats["list_length"]["median"], stats["list_length"]["max"]) == (5, 8, 121)


@pytest.mark.parametrize("min_docs", [0, 1, 5, 30])
@pytest.mark.parametrize("drop", [False, True])
def test_filter_queries_matches_loop(min_docs, drop):
    rng = np.random.default_rng(7)
    dataset = make_dataset(np.concatenate([[0, 3], rng.integers(1, 40, size=40)]))
    out = filter_queries(dataset, min_docs=min_docs, drop_without_relevant=drop, relevance_threshold=2.0)
    kept = [
        q for q, g in enumerate(per_query_labels(dataset))
        if g.size >= min_docs and (not drop or (g >= 2.0).any())
    ]
    assert out.qids.tolist() == [dataset.qids[q] for q in kept]
    assert (out is dataset) == (len(kept) == dataset.n_queries)
    for new, old in enumerate(kept):
        np.testing.assert_array_equal(out.features[out.query_slice(new)], dataset.features[dataset.query_slice(old)])
        np.testing.assert_array_equal(out.labels[out.query_slice(new)], dataset.labels[dataset.query_slice(old)])
        np.testing.assert_array_equal(out.doc_ids[out.query_slice(new)], dataset.doc_ids[dataset.query_slice(old)])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: filter_queries(d, min_docs=-1), "min_docs must be an int >= 0, got -1"),
        (lambda d: filter_queries(d, min_docs=True), "min_docs must be an int >= 0, got True"),
        (lambda d: filter_queries(d, relevance_threshold=float("nan")), "relevance_threshold must be a finite number, got nan"),
        (lambda d: dataset_statistics(d, relevance_threshold=float("inf")), "relevance_threshold must be a finite number, got inf"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(make_dataset([2, 3]))


def test_unlabelled_dataset_groups_raw_features_for_scoring():
    from ltrkit.data.dataset import unlabelled_dataset

    features = np.arange(12, dtype=np.float64).reshape(4, 3)
    dataset = unlabelled_dataset(features, [0, 1, 4])
    assert dataset.features.dtype == np.float32 and dataset.features.flags.c_contiguous
    np.testing.assert_array_equal(dataset.features, features.astype(np.float32))
    assert dataset.labels.tolist() == [0, 0, 0, 0] and dataset.qids.tolist() == ["0", "1"]
    assert dataset.list_lengths.tolist() == [1, 3] and dataset.source == "<features>"
    with pytest.raises(ValueError, match=r"features must be a 2-D \[n_docs, n_features\] array, got shape \(4,\)"):
        unlabelled_dataset(np.zeros(4), [0, 4])
    with pytest.raises(ValueError):
        unlabelled_dataset(features, [0, 5])
