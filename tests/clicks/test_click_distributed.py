"""Training on clicks under torchrun (2 CPU processes, gloo on loopback) against one process.

Stated tolerance: on this job (a PBM log of a policy that ranks by a noise column) the 2-process
runs, regression EM's IPS, DLA and an ensemble of 2 (each rank half of every epoch's batches, DDP
averaging the ranker's gradients: the same batches per epoch in half the steps), land within 0.03
of the single process's test NDCG@10 (world seeds 1, 2, 3, 5: regression EM within 0.007, DLA
within 0.023, the ensemble within 0.008). Exact properties: the shards partition the lists every epoch, with the
same batch count on every rank and documents balanced to within one batch; regression EM's
estimate and DLA's logits are bit-identical on both ranks and equal to what rank 0 saves; a run
interrupted after epoch 2 and resumed with ``torchrun ... ltrkit train --resume`` ends with the
uninterrupted 2-process run's weights, logits and metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ltrkit.clicks.simulate import write_simulation
from ltrkit.clicks.spec import load_click_spec
from ltrkit.clicks.task import ClickLoss, ClickTask, click_batches, load_click_config, train_on_clicks
from ltrkit.data.cache import load_dataset
from ltrkit.data.synthetic import generate_splits, write_splits
from ltrkit.training.checkpoint import load_checkpoint
from ltrkit.training.config import ConfigError
from ltrkit.training.distributed import DistributedContext
from ltrkit.training.predict import Ranker
from ltrkit.training.scoring import evaluate_scores, metric_conventions
from tests.clicks.click_distributed_support import start_job
from tests.training.distributed_support import finish_ranks, run_torchrun

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

TOLERANCE = 0.03
TOP_K = 8
EPOCHS = 16
STOP_AFTER_EPOCH = 2
WORLD_SEED = 5
#: (run, propensities, ensemble members) of the runs made with 1 and with 2 processes
RUNS = [("regression_em", "regression_em", 1), ("dla", "dla", 1), ("ensemble", "logged", 2)]


def click_config(world: dict, runs: Path, name: str, propensities: str, ensemble: int = 1) -> dict:
    files = world["files"]
    return {
        "data": {
            "train": str(files["train"]), "vali": str(files["vali"]), "test": str(files["test"]), "cache": False,
            "train_clicks": {"log": str(world["log"]), "propensities": propensities, "em_max_iterations": 20},
        },
        "model": {"name": "linear"},
        "loss": {"name": "softmax"},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": EPOCHS, "batch_size": 16, "ensemble": ensemble},
        "early_stopping": {"patience": None},
        "evaluation": {"baselines": False, "metrics": ["ndcg@10"]},
        "num_threads": 1,
        "output": {"dir": str(runs), "name": name, "tensorboard": False, "plots": False},
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Small LETOR splits (columns 0..7 carry the relevance, 8 and 9 are noise) and a PBM log of a
    logging policy that ranks by column 9."""
    folder = tmp_path_factory.mktemp("click_ddp_world")
    splits = generate_splits(train_queries=120, vali_queries=150, test_queries=200, n_features=10, mean_list_length=12, max_list_length=24, seed=WORLD_SEED)
    files = write_splits(splits, folder)
    train = load_dataset(files["train"], cache=False)
    behaviour = load_click_spec({"name": "pbm", "eta": 1.0}).with_max_grade(4.0)
    simulated = write_simulation(folder / "log", train, np.asarray(train.features[:, 9], dtype=np.float64), behaviour, sessions=6000, top_k=TOP_K, seed=WORLD_SEED)
    return {"folder": folder, "files": files, "log": simulated.log}


def _torchrun(*arguments: str) -> None:
    run_torchrun("train", *arguments, env={"LTRKIT_DIST_TIMEOUT_S": "60"})


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """1-process and 2-process runs of regression EM, DLA and an ensemble of 2 (logged
    propensities), and a 2-process DLA run stopped after epoch 2 (in the same job) and resumed with
    ``torchrun ... ltrkit train --resume``."""
    out = tmp_path_factory.mktemp("click_ddp_runs")
    runs = out / "runs"
    single = {name: train_on_clicks(click_config(world, runs, f"{name}-single", method, members)) for name, method, members in RUNS}
    jobs = {name: {"config": click_config(world, runs, f"{name}-ddp", method, members)} for name, method, members in RUNS}
    jobs["resumed"] = {"config": click_config(world, runs, "dla-resumed", "dla"), "stop_after_epoch": STOP_AFTER_EPOCH}
    path = out / "jobs.json"
    path.write_text(json.dumps(jobs))
    processes = start_job("train", out, path)
    for rank, (process, output) in enumerate(zip(processes, finish_ranks(processes))):
        assert process.returncode == 0, f"rank {rank}: {output[-3000:]}"
    records = {name: [json.loads((out / f"{name}.rank{rank}.json").read_text()) for rank in (0, 1)] for name in jobs}
    assert [record["stopped_after"] for record in records["resumed"]] == [STOP_AFTER_EPOCH] * 2
    assert load_checkpoint(runs / "dla-resumed" / "checkpoints" / "last.pt")["epoch"] == STOP_AFTER_EPOCH
    _torchrun("--resume", str(runs / "dla-resumed"))
    return {"runs": runs, "single": single, "records": records}


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.mark.parametrize("method", [name for name, _, _ in RUNS])
def test_two_processes_converge_to_the_single_process_metrics(runs, method):
    single = runs["single"][method].metrics["test"]["ndcg@10"]
    ddp = report(runs["runs"] / f"{method}-ddp")["metrics"]["test"]["ndcg@10"]
    assert abs(ddp - single) < TOLERANCE, (method, single, ddp)
    history = json.loads((runs["runs"] / f"{method}-ddp" / "history.json").read_text())
    # the epoch statistics are over both ranks: every shown document of every list once per epoch
    shown = sum(runs["records"][method][0]["docs_per_list"])
    assert history[0]["docs_per_s"] * history[0]["seconds"] == pytest.approx(shown, rel=1e-9)


@pytest.mark.parametrize("method", [name for name, _, _ in RUNS])
def test_the_shards_partition_the_lists_with_equal_steps_and_balanced_documents(runs, method):
    first, second = runs["records"][method]
    docs = np.array(first["docs_per_list"])
    assert first["n_lists"] == second["n_lists"] == runs["single"][method].report["clicks"]["lists"]
    assert first["docs_per_list"] == second["docs_per_list"]
    for epoch in map(str, range(1, EPOCHS + 1)):
        shards = [record["batches"][epoch] for record in (first, second)]
        assert len(shards[0]) == len(shards[1]) > 0
        seen = np.concatenate([np.array(batch) for shard in shards for batch in shard])
        np.testing.assert_array_equal(np.sort(seen), np.arange(first["n_lists"]))
        totals = [sum(int(docs[batch].sum()) for batch in shard) for shard in shards]
        assert abs(totals[0] - totals[1]) <= max(int(docs[batch].sum()) for shard in shards for batch in shard)
    # the plan is a function of (seed, epoch): epochs differ
    assert first["batches"]["1"] != first["batches"]["2"]


def test_regression_em_propensities_are_rank_zero_s_on_every_rank(runs):
    first, second = runs["records"]["regression_em"]
    assert first["estimated_propensities"] == second["estimated_propensities"] == runs["single"]["regression_em"].report["clicks"]["estimated_propensities"]
    assert first["list_propensities"] == second["list_propensities"]


def test_dla_logits_are_equal_on_every_rank_and_saved_by_rank_zero(runs):
    first, second = runs["records"]["dla"]
    assert first["logits"] == second["logits"] and len(first["logits"]) == EPOCHS
    assert first["logits"]["1"] != first["logits"][str(EPOCHS)]
    run = runs["runs"] / "dla-ddp"
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    np.testing.assert_array_equal(last["loss"]["raw_logits"].numpy(), np.array(first["logits"][str(EPOCHS)], dtype=np.float32))
    for key, value in last["model"].items():
        np.testing.assert_array_equal(np.array(first["model"][key], dtype=np.float32), np.array(second["model"][key], dtype=np.float32))
        np.testing.assert_array_equal(value.numpy(), np.array(first["model"][key], dtype=np.float32))
    # the report's propensities are those of rank 0's best checkpoint
    learned = ClickLoss("dla", {}, top_k=TOP_K, lr_multiplier=load_click_config(run / "config.resolved.json").data.train_clicks.dla_lr_multiplier)
    learned.load_state_dict(load_checkpoint(run / "checkpoints" / "best.pt")["loss"])
    reported = np.array(report(run)["clicks"]["learned_propensities"])
    np.testing.assert_allclose(reported, learned.propensities())
    # after the last epoch they are the 1-process run's (the simulator's are 1/rank); world seeds
    # 1, 2, 3, 5: within 0.06 of them, Spearman correlation with the rank -0.93..-1
    learned.load_state_dict(last["loss"])
    single = ClickLoss("dla", {}, top_k=TOP_K, lr_multiplier=learned.lr_multiplier)
    single.load_state_dict(load_checkpoint(runs["single"]["dla"].run_dir / "checkpoints" / "last.pt")["loss"])
    np.testing.assert_allclose(learned.propensities(), single.propensities(), atol=0.1)
    assert np.corrcoef(np.argsort(np.argsort(learned.propensities())), np.arange(TOP_K))[0, 1] < -0.8, learned.propensities()


def test_an_ensemble_s_members_learn_apart_under_torchrun(runs):
    members = Ranker.load(runs["runs"] / "ensemble-ddp").model.members
    assert len(members) == 2
    first, second = (next(member.parameters()).detach().numpy() for member in members)
    assert not np.allclose(first, second)
    # DDP kept both members equal on both ranks
    ranks = runs["records"]["ensemble"]
    assert ranks[0]["model"] == ranks[1]["model"]


def test_sharded_validation_is_the_checkpointed_model_s(world, runs):
    run = runs["runs"] / "dla-ddp"
    first, second = runs["records"]["dla"]
    vali = load_dataset(world["files"]["vali"], cache=False)
    conventions = metric_conventions(load_click_config(run / "config.resolved.json").evaluation)
    expected = evaluate_scores(vali, Ranker.load(run, checkpoint="last").predict(vali), ["ndcg@10"], conventions)["ndcg@10"]
    last = json.loads((run / "history.json").read_text())[-1]
    assert last["vali_ndcg@10"] == pytest.approx(expected, abs=1e-6)
    # each rank scored its own part of the queries; the loop's value is the sum over both over the count of both
    counts = [record["vali"]["counts"]["ndcg@10"] for record in (first, second)]
    assert sum(counts) == vali.n_queries and 0 < min(counts)
    sums = [record["vali"]["sums"]["ndcg@10"] for record in (first, second)]
    assert last["vali_ndcg@10"] == pytest.approx(sum(sums) / sum(counts), rel=1e-12)


def test_resume_under_torchrun_is_exact(runs):
    whole, resumed = (runs["runs"] / name for name in ("dla-ddp", "dla-resumed"))
    assert report(resumed)["metrics"] == report(whole)["metrics"]
    a, b = (load_checkpoint(folder / "checkpoints" / "last.pt") for folder in (whole, resumed))
    assert a["epoch"] == b["epoch"] == EPOCHS and a["clicks"] == b["clicks"]
    for part in ("model", "loss"):
        for key, value in a[part].items():
            torch.testing.assert_close(value, b[part][key], rtol=0, atol=0)
    assert [record["train_loss"] for record in a["history"]] == [record["train_loss"] for record in b["history"]]
    assert (whole / "predictions" / "test.scores").read_text() == (resumed / "predictions" / "test.scores").read_text()


# ---------------------------------------------------------------------------- without processes


@pytest.mark.parametrize("n_lists, batch_size, replicas", [(37, 8, 2), (40, 8, 2), (37, 5, 3), (9, 1, 2), (10, 64, 4), (5, 2, 5)])
def test_click_batches_partition_the_lists_evenly(n_lists, batch_size, replicas):
    docs = np.random.default_rng(n_lists).integers(1, 11, size=n_lists)
    for epoch in (1, 2):
        shards = [click_batches(docs, batch_size, seed=3, epoch=epoch, num_replicas=replicas, rank=rank) for rank in range(replicas)]
        assert len({len(shard) for shard in shards}) == 1
        seen = np.concatenate([batch for shard in shards for batch in shard])
        np.testing.assert_array_equal(np.sort(seen), np.arange(n_lists))
        totals = [sum(int(docs[batch].sum()) for batch in shard) for shard in shards]
        assert max(totals) - min(totals) <= max(int(docs[batch].sum()) for shard in shards for batch in shard)


def test_one_process_takes_the_permuted_lists_batch_size_at_a_time():
    docs = np.full(23, 4)
    order = np.random.default_rng([11, 3]).permutation(23)
    expected = [order[start:start + 5] for start in range(0, 23, 5)]
    got = click_batches(docs, 5, seed=11, epoch=3)
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_more_processes_than_click_lists_is_a_one_line_config_error(world, tmp_path, monkeypatch):
    log = tmp_path / "three.csv"
    train = load_dataset(world["files"]["train"], cache=False)
    rows = ["session,qid,doc,position,clicked,propensity"]
    for session in range(3):
        first = int(train.query_offsets[session])
        rows += [f"{session},{train.qids[session]},{first + k},{k + 1},{int(k == 0)},{1.0 / (k + 1)}" for k in range(2)]
    log.write_text("\n".join(rows) + "\n")
    config = click_config(world, tmp_path, "few", "logged")
    config["data"]["train_clicks"]["log"] = str(log)
    task = ClickTask(load_click_config(config))
    monkeypatch.setattr("ltrkit.clicks.task.current_context", lambda: DistributedContext(rank=0, world_size=4))
    with pytest.raises(ConfigError, match="gives 3 click lists, fewer than the 4 processes of the job") as caught:
        task.prepare(None)
    assert len(caught.value.errors) == 1 and "\n" not in caught.value.errors[0]


def test_rank_zero_alone_estimates_and_every_rank_gets_its_value_or_error(monkeypatch):
    from ltrkit.clicks import task as click_task

    sent = []

    def broadcast(context, value, *, source=0, what=""):
        # rank 0 runs first here: what it sends is what rank 1 receives
        if context.rank == source:
            sent.append(value)
        return sent[-1]

    monkeypatch.setattr(click_task, "broadcast_object", broadcast)
    ranks = [DistributedContext(rank=rank, world_size=2) for rank in (0, 1)]
    calls = []

    def estimate():
        calls.append(len(calls))
        return np.array([1.0, 0.5]), {"em_iterations": 3}

    values = [click_task._from_rank_zero(context, estimate, "the estimate") for context in ranks]
    assert calls == [0] and values[0] is values[1]

    def failing():
        raise ConfigError(["data.train_clicks.log: clicks.parquet: no randomised impression"], source="data")

    for context in ranks:
        with pytest.raises(ConfigError, match="no randomised impression") as caught:
            click_task._from_rank_zero(context, failing, "the estimate")
        assert caught.value.source == "data"
