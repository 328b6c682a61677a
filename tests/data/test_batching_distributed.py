"""The distributed side of BatchLoader: shards cover every query once, hold about the same
number of documents, have the same number of batches, and are a pure function of (seed, epoch)."""

from __future__ import annotations

import numpy as np
import pytest

from ltrkit.data.batching import BatchLoader, shard_batches, shard_queries
from tests.data.test_batching import heavy_tailed_lengths, make_dataset

SETTINGS = [
    dict(batch_size=16),
    dict(batch_size=16, max_docs_per_batch=2000),
    dict(batch_size=8, max_slate_length=50, truncation="top_label"),
    dict(batch_size=32, bucket_by_length=False),
    dict(batch_size=1),
]


def shard_loaders(dataset, world, **options):
    return [BatchLoader(dataset, shuffle=options.pop("shuffle", True), seed=3, num_replicas=world, rank=rank, **options) for rank in range(world)]


@pytest.mark.parametrize("options", SETTINGS)
@pytest.mark.parametrize("world", [2, 3, 4])
def test_every_query_once_and_equal_step_counts(options, world):
    dataset = make_dataset(heavy_tailed_lengths(203, seed=world))
    loaders = shard_loaders(dataset, world, **dict(options))
    for epoch in (0, 1):
        seen = []
        for loader in loaders:
            loader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(loader) == len(loaders[0])
            for batch in batches:
                seen.extend(batch.query_index.tolist())
                rows = batch.doc_index.numpy()[batch.mask.numpy()]
                # the batch holds the rows of its own queries
                owners = np.searchsorted(dataset.query_offsets, rows, side="right") - 1
                assert set(owners.tolist()) <= set(batch.query_index.tolist())
        assert sorted(seen) == list(range(dataset.n_queries))


@pytest.mark.parametrize("world", [2, 4])
def test_document_counts_balanced(world):
    lengths = heavy_tailed_lengths(997, seed=7)
    dataset = make_dataset(lengths)
    loaders = shard_loaders(dataset, world, batch_size=16)
    docs = [sum(int(batch.mask.sum()) for batch in loader) for loader in loaders]
    largest_batch = max(int(batch.mask.sum()) for loader in loaders for batch in loader)
    assert sum(docs) == int(lengths.sum())
    assert max(docs) - min(docs) <= largest_batch
    # dealing batches round-robin by count alone leaves a far larger gap on these lengths
    assert max(docs) - min(docs) < 0.02 * sum(docs)


def test_shard_batches_bound_on_random_plans():
    rng = np.random.default_rng(0)
    for _ in range(200):
        world = int(rng.integers(2, 6))
        docs_per_query = rng.integers(1, 300, size=int(rng.integers(world, 60)))
        cuts = np.unique(rng.integers(1, docs_per_query.shape[0], size=int(rng.integers(0, 10))))
        bounds = np.concatenate([[0], cuts, [docs_per_query.shape[0]]])
        new_bounds, shard = shard_batches(bounds, docs_per_query, world)
        assert new_bounds[0] == 0 and new_bounds[-1] == docs_per_query.shape[0] and np.all(np.diff(new_bounds) > 0)
        assert np.array_equal(np.bincount(shard, minlength=world), np.full(world, shard.shape[0] // world))
        batch_docs = np.add.reduceat(docs_per_query, new_bounds[:-1])
        totals = np.bincount(shard, weights=batch_docs, minlength=world)
        assert totals.max() - totals.min() <= batch_docs.max()


def test_deterministic_from_seed_and_epoch():
    dataset = make_dataset(heavy_tailed_lengths(150))

    def plan(epoch, seed=3):
        loader = BatchLoader(dataset, batch_size=8, shuffle=True, seed=seed, num_replicas=2, rank=1, max_slate_length=40)
        loader.set_epoch(epoch)
        return [(b.query_index.tolist(), b.doc_index.tolist()) for b in loader]

    assert plan(2) == plan(2)
    assert plan(2) != plan(3)
    assert plan(2) != plan(2, seed=4)


def test_single_process_plan_unchanged():
    dataset = make_dataset(heavy_tailed_lengths(120))
    plain = BatchLoader(dataset, batch_size=8, shuffle=True, seed=5)
    one = BatchLoader(dataset, batch_size=8, shuffle=True, seed=5, num_replicas=1, rank=0)
    for a, b in zip(plain, one):
        assert a.query_index.tolist() == b.query_index.tolist()


def test_single_query_batches_are_merged_to_an_even_count():
    dataset = make_dataset([3, 1, 4, 1, 5])
    loaders = shard_loaders(dataset, 2, batch_size=1)
    assert len(loaders[0]) == len(loaders[1]) == 2
    assert sorted(q for loader in loaders for batch in loader for q in batch.query_index.tolist()) == [0, 1, 2, 3, 4]


def test_shard_queries_balances_documents():
    lengths = heavy_tailed_lengths(1001, seed=2)
    for world in (2, 3, 8):
        shard = shard_queries(lengths, world)
        totals = np.bincount(shard, weights=lengths, minlength=world)
        assert totals.max() - totals.min() <= lengths.max()
        counts = np.bincount(shard, minlength=world)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(shard_queries(lengths, 3), shard_queries(lengths, 3))


def test_query_subset():
    dataset = make_dataset([3, 0, 4, 1, 5])
    loader = BatchLoader(dataset, batch_size=2, queries=np.array([4, 1, 0]))
    assert sorted(q for batch in loader for q in batch.query_index.tolist()) == [0, 4]
    with pytest.raises(ValueError, match=r"queries must be a 1-D int array of positions in \[0, 5\)"):
        BatchLoader(dataset, queries=np.array([5]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_replicas=0), "num_replicas must be a positive int"),
        (dict(num_replicas=2, rank=2), r"rank must be an int in \[0, 2\)"),
        (dict(num_replicas=2, rank=-1), r"rank must be an int in \[0, 2\)"),
        (dict(num_replicas=4, rank=0), "3 queries cannot be shared by 4 processes"),
    ],
)
def test_bad_replica_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchLoader(make_dataset([2, 2, 2]), **kwargs)
