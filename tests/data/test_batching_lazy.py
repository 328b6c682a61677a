"""Lazily normalised features: the values of Normalizer.transform, read batch by batch."""

from __future__ import annotations

import numpy as np
import pytest

from ltrkit.data.batching import BatchLoader, NormalizedFeatures, normalized_view
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.transforms import METHODS, Normalizer
from tests.data.test_batching import heavy_tailed_lengths, make_dataset


class ReadSpy:
    """A feature matrix that records how many rows each read touches."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.ndim = array.ndim
        self.dtype = array.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append(int(np.prod(out.shape[:-1])))
        return out


def fitted(method, dataset):
    return Normalizer(method).fit(dataset)


def skewed_dataset():
    dataset = make_dataset(heavy_tailed_lengths(60, seed=4), n_features=5)
    dataset.features[:, 2] = np.abs(dataset.features[:, 2]) ** 3 * 100  # heavy-tailed column for log1p/quantiles
    return dataset


@pytest.mark.parametrize("method", METHODS)
def test_view_equals_full_transform(method):
    dataset = skewed_dataset()
    normalizer = fitted(method, dataset)
    expected = normalizer.transform(dataset).features
    view = normalized_view(dataset, normalizer).features
    rng = np.random.default_rng(0)
    rows = rng.integers(0, dataset.n_docs, size=(7, 9))
    np.testing.assert_array_equal(view[rows], expected[rows])
    np.testing.assert_array_equal(view[rows[0]], expected[rows[0]])
    np.testing.assert_array_equal(view[int(rows[0, 0])], expected[rows[0, 0]])
    np.testing.assert_array_equal(view[5:300], expected[5:300])
    np.testing.assert_array_equal(view[::3], expected[::3])
    np.testing.assert_array_equal(view[:, 2], expected[:, 2])
    np.testing.assert_array_equal(np.asarray(view), expected)
    assert view.shape == expected.shape and view.dtype == np.float32 and len(view) == dataset.n_docs


@pytest.mark.parametrize("method", ["zscore", "query_zscore", "rank_gauss"])
def test_batches_of_the_view_equal_batches_of_the_transformed_data(method):
    dataset = skewed_dataset()
    normalizer = fitted(method, dataset)
    options = dict(batch_size=8, shuffle=True, seed=1, max_slate_length=30)
    eager = BatchLoader(normalizer.transform(dataset), **options)
    lazy = BatchLoader(normalized_view(dataset, normalizer), **options)
    for a, b in zip(eager, lazy, strict=True):
        np.testing.assert_array_equal(a.features.numpy(), b.features.numpy())
        np.testing.assert_array_equal(a.doc_index.numpy(), b.doc_index.numpy())


@pytest.mark.parametrize("method", ["zscore", "query_minmax"])
def test_batches_read_only_their_own_rows(method):
    dataset = skewed_dataset()
    normalizer = fitted(method, dataset)
    spy = ReadSpy(dataset.features)
    view = RankingDataset(NormalizedFeatures(spy, normalizer, dataset.query_offsets), dataset.labels, dataset.query_offsets, dataset.qids)
    loader = BatchLoader(view, batch_size=2, shuffle=True, seed=2)
    largest_batch = 0
    for batch in loader:
        largest_batch = max(largest_batch, int(batch.mask.numel()))
    # a read is one batch's padded cells (per-query methods: whole queries, plus the padding
    # placeholder's query), never the whole matrix
    first_query = int(dataset.list_lengths[0])
    assert max(spy.reads) <= largest_batch + first_query < dataset.n_docs // 2


def test_non_finite_value_named_by_row():
    dataset = make_dataset([3, 4], n_features=3)
    normalizer = fitted("zscore", dataset)
    dataset.features[5, 1] = np.inf
    view = normalized_view(dataset, normalizer).features
    with pytest.raises(ValueError, match="feature 1 of document row 5 is inf"):
        view[[0, 5]]
    with pytest.raises(ValueError, match="feature 1 of document row 5 is inf"):
        view[2:7]


def test_view_checks_its_normalizer():
    dataset = make_dataset([3, 4], n_features=3)
    with pytest.raises(ValueError, match="not fitted"):
        normalized_view(dataset, Normalizer("zscore"))
    with pytest.raises(ValueError, match="fitted on 2"):
        normalized_view(dataset, Normalizer("zscore").fit_features(np.ones((3, 2), np.float32)))
    with pytest.raises(IndexError, match="out of range"):
        normalized_view(dataset, fitted("zscore", dataset)).features[[7]]
