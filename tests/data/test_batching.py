"""BatchLoader invariants: coverage, content, padding, determinism, truncation, bucketing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ltrkit.data.batching import Batch, BatchLoader, scores_to_rows
from ltrkit.data.dataset import RankingDataset


def make_dataset(lengths, n_features=3, seed=0, label_values=5) -> RankingDataset:
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_docs = int(offsets[-1])
    # feature 0 is the row number, so every gathered value can be traced back to its row
    features = rng.normal(size=(n_docs, n_features)).astype(np.float32)
    features[:, 0] = np.arange(n_docs)
    labels = rng.integers(0, label_values, size=n_docs).astype(np.float32)
    qids = np.array([f"q{i}" for i in range(len(lengths))])
    return RankingDataset(features, labels, offsets, qids)


def heavy_tailed_lengths(n, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(3.0, 1.0, size=n)), 1, 600).astype(np.int64)


def check_batch_content(batch: Batch, dataset: RankingDataset) -> None:
    mask = batch.mask.numpy()
    # mask is a prefix per row and matches doc_index >= 0
    assert np.array_equal(mask, batch.doc_index.numpy() >= 0)
    lengths = mask.sum(axis=1)
    assert np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None])
    rows = batch.doc_index.numpy()[mask]
    np.testing.assert_array_equal(batch.features.numpy()[mask], dataset.features[rows])
    np.testing.assert_array_equal(batch.labels.numpy()[mask], dataset.labels[rows])
    assert not batch.features.numpy()[~mask].any()
    assert not batch.labels.numpy()[~mask].any()
    # every document belongs to the query named in query_index
    for b, query in enumerate(batch.query_index.tolist()):
        start, stop = dataset.query_offsets[query], dataset.query_offsets[query + 1]
        query_rows = batch.doc_index.numpy()[b][mask[b]]
        assert np.all((query_rows >= start) & (query_rows < stop))
        assert np.all(np.diff(query_rows) > 0), "kept documents keep their dataset order"
    assert batch.features.dtype == torch.float32 and batch.labels.dtype == torch.float32
    assert batch.mask.dtype == torch.bool and batch.doc_index.dtype == torch.int64


def epoch_queries(loader: BatchLoader) -> list[int]:
    return [q for batch in loader for q in batch.query_index.tolist()]


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("max_docs", [None, 200])
def test_every_query_exactly_once_and_content_matches(bucket, shuffle, max_docs):
    dataset = make_dataset(heavy_tailed_lengths(150))
    loader = BatchLoader(dataset, batch_size=16, shuffle=shuffle, seed=3, bucket_by_length=bucket, max_docs_per_batch=max_docs)
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            check_batch_content(batch, dataset)
            assert len(batch) <= 16
            if max_docs is not None and len(batch) > 1:
                assert batch.mask.numel() <= max_docs
            assert batch.mask.sum(dim=1).max() == batch.mask.shape[1], "width is the longest list"
            # full lists when not truncating
            assert np.array_equal(batch.mask.sum(dim=1).numpy(), dataset.list_lengths[batch.query_index.numpy()])
            seen.extend(batch.query_index.tolist())
        assert sorted(seen) == list(range(dataset.n_queries))
        assert len(seen) == len(set(seen))
        assert len(loader) == sum(1 for _ in loader)


def test_unshuffled_unbucketed_keeps_dataset_order():
    dataset = make_dataset([3, 1, 4, 1, 5])
    loader = BatchLoader(dataset, batch_size=2, bucket_by_length=False)
    assert [b.query_index.tolist() for b in loader] == [[0, 1], [2, 3], [4]]


def test_single_oversized_query_forms_its_own_batch():
    dataset = make_dataset([2, 50, 3])
    loader = BatchLoader(dataset, batch_size=8, bucket_by_length=False, max_docs_per_batch=10)
    assert [b.query_index.tolist() for b in loader] == [[0], [1], [2]]


def test_determinism_by_seed_and_epoch():
    dataset = make_dataset(heavy_tailed_lengths(80))
    kwargs = dict(batch_size=8, shuffle=True, max_slate_length=20)
    first, second = BatchLoader(dataset, seed=5, **kwargs), BatchLoader(dataset, seed=5, **kwargs)
    first.set_epoch(4)
    second.set_epoch(4)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.doc_index, b.doc_index) and torch.equal(a.features, b.features)
    # iterating twice without changing epoch repeats the epoch; resuming does not depend on history
    again = list(first)
    fresh = BatchLoader(dataset, seed=5, **kwargs)
    fresh.set_epoch(4)
    for a, b in zip(again, fresh, strict=True):
        assert torch.equal(a.doc_index, b.doc_index)


def test_different_epochs_and_seeds_differ_when_shuffled():
    dataset = make_dataset(heavy_tailed_lengths(80))
    loader = BatchLoader(dataset, batch_size=8, shuffle=True, seed=0)
    order_0 = epoch_queries(loader)
    loader.set_epoch(1)
    order_1 = epoch_queries(loader)
    other_seed = epoch_queries(BatchLoader(dataset, batch_size=8, shuffle=True, seed=1))
    assert order_0 != order_1 and order_0 != other_seed
    assert sorted(order_0) == sorted(order_1) == sorted(other_seed)


def test_truncation_random_keeps_cap_and_varies_by_epoch():
    dataset = make_dataset([30, 5, 12, 40], label_values=3)
    loader = BatchLoader(dataset, batch_size=4, shuffle=True, max_slate_length=10, truncation="random")
    kept = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        (batch,) = list(loader)
        check_batch_content(batch, dataset)
        lengths = batch.mask.sum(dim=1).numpy()
        np.testing.assert_array_equal(lengths, np.minimum(dataset.list_lengths[batch.query_index.numpy()], 10))
        assert batch.mask.shape[1] == 10
        by_query = dict(zip(batch.query_index.tolist(), batch.doc_index.numpy()))
        kept.append(tuple(np.sort(by_query[3][by_query[3] >= 0])))
    assert len(set(kept)) > 1, "random truncation draws a new subset each epoch"


def test_truncation_top_label_keeps_highest_labels():
    dataset = make_dataset([25, 7, 60, 13], label_values=5, seed=4)
    loader = BatchLoader(dataset, batch_size=4, max_slate_length=6, truncation="top_label")
    (batch,) = list(loader)
    check_batch_content(batch, dataset)
    for b, query in enumerate(batch.query_index.tolist()):
        all_labels = np.sort(dataset.labels[dataset.query_slice(query)])[::-1]
        kept = np.sort(batch.labels[b][batch.mask[b]].numpy())[::-1]
        np.testing.assert_array_equal(kept, all_labels[:6])


@pytest.mark.parametrize("fraction, expected", [(0.3, [9, 2, 4, 12, 2, 1]), (1.0, [30, 5, 12, 40, 2, 1])])
def test_sublists_keep_the_fraction_and_are_uniform_per_epoch(fraction, expected):
    dataset = make_dataset([30, 5, 12, 40, 2, 1], label_values=3)
    loader = BatchLoader(dataset, batch_size=8, shuffle=True, sublist_fraction=fraction, bucket_by_length=False)
    seen = np.zeros(dataset.n_docs)
    epochs = 400 if fraction < 1 else 2
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        (batch,) = list(loader)
        check_batch_content(batch, dataset)
        by_query = dict(zip(batch.query_index.tolist(), batch.mask.sum(dim=1).tolist()))
        assert [by_query[q] for q in range(6)] == expected
        seen[batch.doc_index.numpy()[batch.mask.numpy()]] += 1
    if fraction == 1.0:
        assert np.all(seen == epochs)
        return
    # each document of a list of n is kept with probability k / n, drawn afresh per epoch
    lengths = dataset.list_lengths
    probability = np.repeat(np.asarray(expected) / lengths, lengths)
    tolerance = 4 * np.sqrt(probability * (1 - probability) / epochs) + 1e-12
    assert np.all(np.abs(seen / epochs - probability) <= tolerance)


def test_sublists_then_truncation_and_the_plan_agree():
    dataset = make_dataset([30, 5, 12, 40], label_values=5, seed=3)
    loader = BatchLoader(dataset, batch_size=2, shuffle=True, sublist_fraction=0.5, max_slate_length=8, truncation="top_label")
    kept = loader.padding_fraction()
    batches = list(loader)
    widths = [batch.mask.shape[1] for batch in batches]
    lengths = {q: int(n) for batch in batches for q, n in zip(batch.query_index.tolist(), batch.mask.sum(dim=1).tolist())}
    assert lengths == {0: 8, 1: 3, 2: 6, 3: 8}
    cells = sum(len(batch) * width for batch, width in zip(batches, widths))
    assert kept == pytest.approx(1 - sum(lengths.values()) / cells)
    for batch in batches:
        check_batch_content(batch, dataset)


def test_sublists_need_an_rng():
    loader = BatchLoader(make_dataset([6]), sublist_fraction=0.5)
    with pytest.raises(ValueError, match="rng is required to sample sub-lists"):
        loader.batch(np.array([0]))


def test_bucketing_reduces_padding_on_heavy_tailed_lengths():
    dataset = make_dataset(heavy_tailed_lengths(600), n_features=1)
    bucketed = BatchLoader(dataset, batch_size=32, shuffle=True, bucket_by_length=True)
    plain = BatchLoader(dataset, batch_size=32, shuffle=True, bucket_by_length=False)
    assert bucketed.padding_fraction() < 0.5 * plain.padding_fraction()
    # padding_fraction agrees with the batches actually produced
    for loader in (bucketed, plain):
        cells = real = 0
        for batch in loader:
            cells += batch.mask.numel()
            real += int(batch.mask.sum())
        assert loader.padding_fraction() == pytest.approx(1 - real / cells)


def test_memmap_features(tmp_path):
    dataset = make_dataset(heavy_tailed_lengths(40), n_features=4)
    path = tmp_path / "features.f32"
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=dataset.features.shape)
    mapped[:] = dataset.features
    mapped.flush()
    readonly = np.memmap(path, dtype=np.float32, mode="r", shape=dataset.features.shape)
    mapped_dataset = RankingDataset(readonly, dataset.labels, dataset.query_offsets, dataset.qids)
    loader = BatchLoader(mapped_dataset, batch_size=8, shuffle=True, max_slate_length=15)
    reference = BatchLoader(dataset, batch_size=8, shuffle=True, max_slate_length=15)
    for a, b in zip(loader, reference, strict=True):
        check_batch_content(a, dataset)
        assert torch.equal(a.features, b.features)


def test_empty_queries_dropped_or_kept():
    dataset = make_dataset([3, 0, 2, 0])
    assert sorted(epoch_queries(BatchLoader(dataset, batch_size=2))) == [0, 2]
    kept = BatchLoader(dataset, batch_size=4, drop_empty=False, bucket_by_length=False)
    (batch,) = list(kept)
    assert batch.query_index.tolist() == [0, 1, 2, 3]
    assert batch.mask.sum(dim=1).tolist() == [3, 0, 2, 0]
    only_empty = BatchLoader(make_dataset([0, 0]), batch_size=4)
    assert len(only_empty) == 0 and list(only_empty) == [] and only_empty.padding_fraction() == 0.0


def test_scores_to_rows_scatters_back():
    dataset = make_dataset(heavy_tailed_lengths(30))
    out = np.full(dataset.n_docs, np.nan, dtype=np.float32)
    for batch in BatchLoader(dataset, batch_size=7, shuffle=True):
        # score = the row number stored in feature 0, so out must become arange(n_docs)
        scores = batch.features[..., 0].clone().requires_grad_(True)
        scores_to_rows(batch, scores, out)
    np.testing.assert_array_equal(out, np.arange(dataset.n_docs, dtype=np.float32))


def test_batch_to_device():
    dataset = make_dataset([2, 3])
    batch = next(iter(BatchLoader(dataset, batch_size=2)))
    moved = batch.to("cpu")
    assert torch.equal(moved.features, batch.features) and moved.doc_index.device.type == "cpu"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(batch_size=None), "batch_size must be a positive int"),
        (dict(max_slate_length=-1), "max_slate_length must be a positive int or None, got -1"),
        (dict(max_docs_per_batch=2.5), "max_docs_per_batch must be a positive int or None, got 2.5"),
        (dict(seed=-1), "seed must be an int >= 0, got -1"),
        (dict(truncation="top"), r"truncation must be one of \['random', 'top_label'\], got 'top'"),
        (dict(sublist_fraction=0.0), r"sublist_fraction must be a number in \(0, 1\] or None, got 0.0"),
        (dict(sublist_fraction=1.5), r"sublist_fraction must be a number in \(0, 1\] or None, got 1.5"),
        (dict(sublist_fraction=True), r"sublist_fraction must be a number in \(0, 1\] or None, got True"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchLoader(make_dataset([2]), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="dataset must be a RankingDataset, got list"):
        BatchLoader([1, 2])
    loader = BatchLoader(make_dataset([2, 3]), batch_size=2)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        loader.set_epoch(-1)
    batch = next(iter(loader))
    with pytest.raises(ValueError, match=r"scores must be a tensor of the batch's shape \(2, 3\), got \(2, 2\)"):
        scores_to_rows(batch, torch.zeros(2, 2), np.zeros(5))
    with pytest.raises(ValueError, match="out has only 3 rows"):
        scores_to_rows(batch, torch.zeros(2, 3), np.zeros(3))


@settings(max_examples=40, deadline=None, database=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=0, max_size=30),
    batch_size=st.integers(1, 9),
    shuffle=st.booleans(),
    bucket=st.booleans(),
    max_slate=st.one_of(st.none(), st.integers(1, 12)),
    truncation=st.sampled_from(["random", "top_label"]),
    max_docs=st.one_of(st.none(), st.integers(1, 120)),
    drop_empty=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_invariants_hold_for_any_configuration(lengths, batch_size, shuffle, bucket, max_slate, truncation, max_docs, drop_empty, epoch):
    dataset = make_dataset(lengths)
    loader = BatchLoader(
        dataset, batch_size, shuffle=shuffle, seed=epoch, bucket_by_length=bucket, max_slate_length=max_slate,
        truncation=truncation, max_docs_per_batch=max_docs, drop_empty=drop_empty,
    )
    loader.set_epoch(epoch)
    expected_lengths = dataset.list_lengths if max_slate is None else np.minimum(dataset.list_lengths, max_slate)
    seen, cells, real = [], 0, 0
    for batch in loader:
        check_batch_content(batch, dataset)
        assert 1 <= len(batch) <= batch_size
        if max_docs is not None and len(batch) > 1:
            assert batch.mask.numel() <= max_docs
        np.testing.assert_array_equal(batch.mask.sum(dim=1).numpy(), expected_lengths[batch.query_index.numpy()])
        seen.extend(batch.query_index.tolist())
        cells += batch.mask.numel()
        real += int(batch.mask.sum())
    wanted = [q for q in range(len(lengths)) if lengths[q] > 0 or not drop_empty]
    assert sorted(seen) == wanted
    assert len(loader) == sum(1 for _ in loader)
    assert loader.padding_fraction() == pytest.approx(0.0 if cells == 0 else 1 - real / cells)
