"""Synthetic generator: shape, determinism, label skew, and a learnable relevance signal."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from ltrkit.data.dataset import pad_ragged
from ltrkit.data.synthetic import DEFAULT_SPLITS, LABEL_PROPORTIONS, generate, generate_splits, relevance


@pytest.fixture(scope="module")
def data():
    return generate(400, n_features=40, seed=11, mean_list_length=40)


def mean_ndcg_at_10(dataset, scores: np.ndarray) -> float:
    """sklearn's NDCG@10 (linear gain, ties averaged) over queries with >= 2 documents and a
    relevant one; lists are padded with label 0 and a score below every real one, which changes
    neither DCG nor ideal DCG."""
    labels, mask = pad_ragged(dataset.labels.astype(np.float64), dataset.query_offsets)
    padded_scores, _ = pad_ragged(scores.astype(np.float64), dataset.query_offsets, pad_value=-1e300)
    keep = (mask.sum(axis=1) >= 2) & (labels.max(axis=1) > 0)
    return float(ndcg_score(labels[keep], padded_scores[keep], k=10))


def test_shapes_and_dtypes(data):
    assert data.n_queries == 400 and data.n_features == 40
    assert data.features.dtype == np.float32 and data.labels.dtype == np.float32
    assert data.query_offsets.dtype == np.int64 and data.query_offsets[-1] == data.n_docs
    assert data.qids.tolist() == [str(i) for i in range(1, 401)]
    assert np.isfinite(data.features).all()
    assert set(np.unique(data.labels).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_deterministic_and_seed_dependent():
    a, b = generate(30, n_features=12, seed=4), generate(30, n_features=12, seed=4)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.query_offsets, b.query_offsets)
    c = generate(30, n_features=12, seed=5)
    assert c.n_docs != a.n_docs or not np.array_equal(c.features, a.features)


def test_label_skew_matches_mslr_proportions(data):
    shares = np.bincount(data.labels.astype(np.int64), minlength=5) / data.n_docs
    np.testing.assert_allclose(shares, LABEL_PROPORTIONS, atol=0.01)
    # queries differ: some have no relevant document, some have many
    relevant = np.add.reduceat(data.labels >= 1, data.query_offsets[:-1])
    assert (relevant == 0).any() and (relevant / data.list_lengths).max() > 0.8


def test_heavy_tailed_lengths():
    lengths = generate(3000, n_features=8, seed=2, mean_list_length=60, max_list_length=300).list_lengths
    assert lengths.min() >= 1 and lengths.max() <= 300
    assert abs(lengths.mean() - 60) < 4
    assert np.median(lengths) < lengths.mean(), "right-skewed"
    assert np.percentile(lengths, 99) > 3 * np.median(lengths)


def test_feature_variety(data):
    x = data.features
    constant = x.max(axis=0) == x.min(axis=0)
    binary = np.array([set(np.unique(col).tolist()) == {0.0, 1.0} for col in x.T])
    integral = np.array([np.array_equal(col, np.floor(col)) for col in x.T]) & ~constant & ~binary
    scales = np.abs(x).max(axis=0)
    assert constant.any() and binary.any() and integral.any()
    assert scales[~constant].max() / scales[~constant].min() > 1e3, "differing scales"
    # query-level columns: constant within every query but not across queries
    starts = data.query_offsets[:-1]
    within = np.maximum.reduceat(x, starts) == np.minimum.reduceat(x, starts)
    assert (within.all(axis=0) & ~constant).any()


def test_relevance_signal_orders_scorers(data):
    rng = np.random.default_rng(0)
    oracle = mean_ndcg_at_10(data, relevance(data.features))
    single = max(mean_ndcg_at_10(data, data.features[:, j]) for j in range(8))
    random = mean_ndcg_at_10(data, rng.random(data.n_docs))
    assert oracle > single + 0.15
    assert single > random + 0.1


def test_splits_disjoint_and_consistent():
    splits = generate_splits(train_queries=50, vali_queries=20, test_queries=10, n_features=40, seed=3, mean_list_length=10)
    assert [splits[k].n_queries for k in ("train", "vali", "test")] == [50, 20, 10]
    qids = [set(splits[k].qids.tolist()) for k in ("train", "vali", "test")]
    assert not (qids[0] & qids[1]) and not (qids[0] & qids[2]) and not (qids[1] & qids[2])
    assert not np.array_equal(splits["train"].features[:10], splits["vali"].features[:10])
    again = generate_splits(train_queries=50, vali_queries=20, test_queries=10, n_features=40, seed=3, mean_list_length=10)
    np.testing.assert_array_equal(again["test"].features, splits["test"].features)
    # the column layout is shared: the all-zero columns are the same in every split
    zero = [np.flatnonzero(~splits[k].features.any(axis=0)).tolist() for k in ("train", "vali", "test")]
    assert zero[0] == zero[1] == zero[2] and zero[0]


def test_default_splits_are_generatable():
    assert DEFAULT_SPLITS["train_queries"] >= 1000 and DEFAULT_SPLITS["mean_list_length"] <= 60
    kwargs = dict(DEFAULT_SPLITS, train_queries=5, vali_queries=2, test_queries=2)
    assert generate_splits(**kwargs)["train"].n_features == DEFAULT_SPLITS["n_features"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_queries=0), "n_queries must be an int >= 1, got 0"),
        (dict(n_features=7), "n_features must be an int >= 8, got 7"),
        (dict(mean_list_length=0.0), "mean_list_length must be a positive number, got 0.0"),
        (dict(noise=-1.0), "noise must be a number >= 0, got -1.0"),
        (dict(seed=-2), "seed must be an int >= 0, got -2"),
        (dict(max_list_length=1.5), "max_list_length must be an int >= 1, got 1.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)


def test_bad_split_arguments():
    with pytest.raises(ValueError, match=r"sets \['first_qid'\] per split; do not pass them"):
        generate_splits(train_queries=1, vali_queries=1, test_queries=1, n_features=8, first_qid=5)
    with pytest.raises(ValueError, match="vali_queries must be an int >= 1, got 0"):
        generate_splits(train_queries=1, vali_queries=0, test_queries=1, n_features=8)
    with pytest.raises(ValueError, match=r"at least 8 columns, got shape \(3, 2\)"):
        relevance(np.zeros((3, 2)))
