"""``ltrkit embed``'s task under torchrun (2 gloo processes on loopback) against one process.

Each rank trains on its share of every epoch's whole batches (:func:`shard_batches`); the checks:
the shards partition the epoch with equal per-rank step counts; the ranks keep identical weights
(the pre-training decoder too); the weights equal a one-process emulation of the 2 ranks (each
step back-propagating the mean of the two ranks' losses) within 1e-5; and the 2-process run's
test retrieval metrics land within 0.05 of the single process's (stated tolerance: the same
batches per epoch in half the steps, each averaging two batches' gradients).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch

import ltrkit.embeddings.job as job
from ltrkit.embeddings.config import example_config, load_embed_config
from ltrkit.embeddings.job import EmbeddingTask, _Filler, shard_batches, train_embeddings
from ltrkit.embeddings.retrieval import retrieval_values
from ltrkit.training.checkpoint import load_checkpoint
from ltrkit.training.distributed import DistributedContext
from tests.embeddings.embed_distributed_support import batch_rows, emulated_ranks, run_ranks
from tests.training.distributed_support import run_torchrun

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

TOLERANCE = 0.05
QUIET_OUTPUT = {"tensorboard": False, "plots": False}


def _write_items(path: Path, n_per_class: int, seed: int, classes: int = 6, features: int = 6) -> None:
    """Gaussian clusters, one per class, as a CSV items table (id, label, f0..)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=1.5, size=(classes, features))
    lines = ["id,label," + ",".join(f"f{j}" for j in range(features))]
    for c in range(classes):
        for i in range(n_per_class):
            lines.append(f"{path.stem}-{c}-{i},c{c}," + ",".join(f"{v:.6f}" for v in centres[c] + rng.normal(size=features)))
    path.write_text("\n".join(lines) + "\n")


def clusters_config(base: Path, name: str, **sections: Any) -> Dict[str, Any]:
    """240 training items of 6 classes; P x K = 4 x 4: 15 batches an epoch, 8 steps on 2 ranks."""
    data = {}
    for seed, (split, size) in enumerate((("train", 40), ("vali", 12), ("test", 12))):
        data[split] = str(base / f"{split}.csv")
        if not (base / f"{split}.csv").exists():
            _write_items(base / f"{split}.csv", size, seed)
    config: Dict[str, Any] = {
        "data": data,
        "encoder": {"name": "mlp", "args": {"hidden_sizes": [16], "dim": 8}},
        "sampler": {"p": 4, "k": 4},
        "optimizer": {"lr": 0.02},
        "training": {"epochs": 8, "batch_size": 16},
        "early_stopping": {"metric": "map", "patience": None},
        "evaluation": {"metrics": ["p@1", "map"], "baselines": False},
        "seed": 3,
        "num_threads": 1,
        "output": {"dir": str(base / "runs"), "name": name, **QUIET_OUTPUT},
    }
    config.update(sections)
    return config


def news_config(base: Path, name: str) -> Dict[str, Any]:
    """The shrunken news example: 2 epochs of denoising pre-training, then 2 of triplets."""
    config = example_config("news")
    config.update(num_threads=1, seed=2, output={"dir": str(base / "runs"), "name": name, **QUIET_OUTPUT})
    config["data"]["news"] = {"train_stories": 40, "vali_stories": 10, "test_stories": 10, "topics": 3, "concepts": 12, "seed": 1}
    config["encoder"]["args"] = {"token_dim": 16, "dim": 8}
    config["training"] = {"epochs": 4}
    config["pretrain"] = {"epochs": 2, "word_dropout": 0.3, "word_replace": 0.2}
    # 5 P x K batches an epoch: a filler on rank 1 in pre-training and fine-tuning alike
    config["sampler"] = {"p": 6, "k": 4}
    config["evaluation"] = {"metrics": ["map"], "baselines": False}
    return config


def _fake_rank(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setattr(job, "current_context", lambda: DistributedContext(rank=rank, world_size=world_size))


def test_shard_batches_deals_whole_batches_round_robin():
    assert shard_batches(list("abcd"), 0, 2) == ["a", "c"] and shard_batches(list("abcd"), 1, 2) == ["b", "d"]
    # 5 batches on 3 ranks: 2 steps each, rank 2 forwards batch 5 mod 5 = 0 in the last, counted 0 times
    assert [shard_batches(list("abcde"), rank, 3) for rank in range(3)] == [["a", "d"], ["b", "e"], ["c", _Filler("a")]]
    # fewer batches than ranks: one step each
    assert [shard_batches(["a"], rank, 2) for rank in range(2)] == [["a"], [_Filler("a")]]
    assert shard_batches(list("abc"), 0, 1) == list("abc")
    with pytest.raises(ValueError, match="rank 2 is not one of the 2 ranks"):
        shard_batches(["a"], 2, 2)


@pytest.mark.parametrize("objective", ["classes", "starspace", "pretrain"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_partition_the_epoch_with_equal_step_counts(tmp_path, monkeypatch, objective, world_size):
    if objective == "pretrain":
        config = news_config(tmp_path, "unused")
    elif objective == "starspace":
        config = clusters_config(tmp_path, "unused", objective="starspace", loss={"name": "margin_ranking", "args": {"margin": 0.2}})
    else:
        config = clusters_config(tmp_path, "unused")
    task = EmbeddingTask(load_embed_config(config))
    task.prepare(None)
    task.build(torch.device("cpu"))
    for epoch in (1, 3):
        whole = [batch_rows(batch) for batch in task.train_batches(epoch)]
        assert len(whole) == (5 if objective == "pretrain" else 15)
        shards = []
        for rank in range(world_size):
            _fake_rank(monkeypatch, rank, world_size)
            shards.append(task.train_batches(epoch))
            assert len(shards[-1]) == task.steps_per_epoch() == math.ceil(len(whole) / world_size)
        real = [batch_rows(batch) for step in zip(*shards) for batch in step if not isinstance(batch, _Filler)]
        # step by step the ranks cover the single-process epoch in order, every batch once
        assert real == whole
        fillers = [batch for shard in shards for batch in shard if isinstance(batch, _Filler)]
        assert len(fillers) == len(shards[0]) * world_size - len(whole)
        assert all(batch_rows(filler.batch) in whole for filler in fillers)
        monkeypatch.undo()


def test_a_filler_step_learns_nothing(tmp_path):
    task = EmbeddingTask(load_embed_config(clusters_config(tmp_path, "unused")))
    task.prepare(None)
    task.build(torch.device("cpu"))
    batch = task.train_batches(1)[0]
    step = task.training_step(_Filler(batch), torch.device("cpu"), None)
    assert (step.weight, step.items) == (0.0, 0) and float(step.loss.detach()) == 0.0
    step.loss.backward()
    assert all(parameter.grad is None or not parameter.grad.any() for parameter in task.parameters())


def test_query_rows_split_a_retrieval_evaluation_exactly():
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(23, 4, generator=generator)
    classes = torch.randint(0, 4, (23,), generator=generator)
    labels = torch.rand(23, 3, generator=generator) < 0.4
    entities = torch.randn(4, 4, generator=generator)
    metrics = ["recall@3", "map", "mrr", "ndcg@5", "p@2"]
    for relevance, options in ((classes, {}), (labels, {"empty": "skip"}), (classes, {"index": entities, "index_classes": torch.arange(4)})):
        whole = retrieval_values(vectors, relevance, metrics, **options)
        rows = torch.tensor([20, 3, 7, 0])
        torch.testing.assert_close(retrieval_values(vectors, relevance, metrics, query_rows=rows, chunk=3, **options), whole[rows], equal_nan=True)
    with pytest.raises(ValueError, match="query_rows must be a 1-d integer tensor of rows 0..22 of queries"):
        retrieval_values(vectors, classes, metrics, query_rows=torch.tensor([23]))


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_validation_sums_to_the_whole_split(tmp_path, monkeypatch, world_size):
    task = EmbeddingTask(load_embed_config(clusters_config(tmp_path, "unused")))
    task.prepare(None)
    task.build(torch.device("cpu"))
    whole = task.evaluate("vali", torch.device("cpu"), None)
    shards = []
    for rank in range(world_size):
        _fake_rank(monkeypatch, rank, world_size)
        shards.append(task.evaluate("vali", torch.device("cpu"), None))
    assert [shard.counts["map"] for shard in shards] == [len(range(rank, 72, world_size)) for rank in range(world_size)]
    for name in whole.sums:
        assert sum(shard.counts[name] for shard in shards) == whole.counts[name]
        assert sum(shard.sums[name] for shard in shards) == pytest.approx(whole.sums[name], rel=1e-12)


def _assert_same(first: Dict[str, torch.Tensor], second: Dict[str, torch.Tensor], **tolerance: float) -> None:
    assert first.keys() == second.keys()
    for name in first:
        if tolerance:
            torch.testing.assert_close(first[name], second[name], **tolerance, msg=name)
        else:
            assert torch.equal(first[name], second[name]), name


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    base = tmp_path_factory.mktemp("embed-ddp")
    ranks = run_ranks(clusters_config(base, "ddp"), base / "ddp-out")
    single = train_embeddings(clusters_config(base, "single"))
    return base, ranks, single


def test_two_processes_keep_one_model_and_train_on_their_shards(clusters):
    base, ranks, _ = clusters
    _assert_same(ranks[0]["model"], ranks[1]["model"])
    assert ranks[0]["steps"] == ranks[1]["steps"] == 8
    task = EmbeddingTask(load_embed_config(clusters_config(base, "unused")))
    task.prepare(None)
    task.build(torch.device("cpu"))
    for epoch in range(1, 9):
        whole = [batch_rows(batch) for batch in task.train_batches(epoch)]
        seen = [rank["seen"][epoch] for rank in ranks]
        assert len(seen[0]) == len(seen[1]) == 8 and seen[1][-1] is None
        assert [rows for step in zip(*seen) for rows in step if rows is not None] == whole


def test_sharded_validation_is_the_final_model_s(clusters):
    base, ranks, _ = clusters
    task = EmbeddingTask(load_embed_config(clusters_config(base, "unused")))
    task.prepare(None)
    task.build(torch.device("cpu"))
    task.model.load_state_dict(ranks[0]["model"])
    expected = task.evaluate("vali", torch.device("cpu"), None).means
    for rank in ranks:
        assert rank["record"]["vali_map"] == pytest.approx(expected["map"], rel=1e-12)
        assert rank["record"]["vali_p@1"] == pytest.approx(expected["p@1"], rel=1e-12)


def test_two_processes_average_the_gradients_of_their_batches(clusters):
    base, ranks, _ = clusters
    reference = emulated_ranks(clusters_config(base, "unused"))
    _assert_same(ranks[0]["model"], reference.model.state_dict(), rtol=1e-5, atol=1e-5)


def test_two_processes_reach_the_single_process_retrieval_metrics(clusters):
    _, ranks, single = clusters
    ddp = ranks[0]["metrics"]["test"]
    for name in ("p@1", "map"):
        assert abs(ddp[name] - single.metrics["test"][name]) < TOLERANCE, (name, ddp[name], single.metrics["test"][name])
    assert ranks[1]["metrics"] == {}  # test metrics and the report are rank 0's


def test_resume_under_torchrun_is_exact(clusters):
    base, _, _ = clusters
    # the same job as the fixture's, stopped after epoch 3 and resumed through the CLI
    run_ranks(clusters_config(base, "resumed"), base / "resumed-out", stop_after_epoch=3)
    assert load_checkpoint(base / "runs" / "resumed" / "checkpoints" / "last.pt")["epoch"] == 3
    run_torchrun("embed", "--resume", str(base / "runs" / "resumed"), env={"LTRKIT_DIST_TIMEOUT_S": "30"})
    whole, resumed = (load_checkpoint(base / "runs" / name / "checkpoints" / "last.pt") for name in ("ddp", "resumed"))
    assert whole["epoch"] == resumed["epoch"] == 8
    _assert_same(whole["model"], resumed["model"])
    assert [record["train_loss"] for record in whole["history"]] == [record["train_loss"] for record in resumed["history"]]
    reports = [json.loads((base / "runs" / name / "report.json").read_text()) for name in ("ddp", "resumed")]
    assert reports[0]["metrics"] == reports[1]["metrics"]


def test_pretraining_then_fine_tuning_under_two_processes(tmp_path):
    config = news_config(tmp_path, "ddp")
    ranks = run_ranks(config, tmp_path / "out")
    _assert_same(ranks[0]["model"], ranks[1]["model"])
    _assert_same(ranks[0]["decoder"], ranks[1]["decoder"])
    assert ranks[0]["steps"] == 3 and [len(ranks[1]["seen"][epoch]) for epoch in range(1, 5)] == [3, 3, 3, 3]
    reference = emulated_ranks(config)
    _assert_same(ranks[0]["model"], reference.model.state_dict(), rtol=1e-5, atol=1e-5)
    _assert_same(ranks[0]["decoder"], reference.decoder.state_dict(), rtol=1e-5, atol=1e-5)
    assert ranks[0]["metrics"]["test"]["map"] > 0


def test_starspace_under_two_processes(tmp_path):
    config = clusters_config(tmp_path, "ddp", objective="starspace", loss={"name": "margin_ranking", "args": {"margin": 0.2}})
    config["training"].update(epochs=2, starspace_negatives=2)
    ranks = run_ranks(config, tmp_path / "out")
    _assert_same(ranks[0]["model"], ranks[1]["model"])
    _assert_same(ranks[0]["model"], emulated_ranks(config).model.state_dict(), rtol=1e-5, atol=1e-5)
