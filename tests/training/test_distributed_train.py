"""``ltrkit train`` under ``torchrun --nproc-per-node 2`` (gloo, loopback) against one process.

Stated tolerance: on this job the 2-process run (each rank half of every epoch's batches, DDP
averaging their gradients: the same number of batches per epoch in half the steps) lands within
0.03 of the single process's vali and test NDCG@10, and so does an ensemble of 2 (its members
trained through one forward per step). Resume under torchrun is exact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ltrkit.data.batching import NormalizedFeatures
from ltrkit.data.cache import load_dataset
from ltrkit.data.synthetic import generate_splits, write_splits
from ltrkit.training.config import load_config
from ltrkit.training.data_setup import prepare_data
from ltrkit.training.distributed import MutedRunFolder
from ltrkit.training.predict import Ranker
from ltrkit.training.run_folder import RunFolder
from ltrkit.training.scoring import evaluate_scores, metric_conventions, score_dataset
from ltrkit.training.trainer import train
from tests.training.conftest import tiny_config
from tests.training.distributed_support import LTRKIT, REPO, run_torchrun, torchrun_command

TOLERANCE = 0.03
def job(output_dir: Path, epochs: int) -> dict:
    config = tiny_config(output_dir, training={"epochs": epochs, "batch_size": 16, "max_slate_length": 40})
    config["data"]["synthetic"].update(train_queries=240, vali_queries=80, test_queries=80, mean_list_length=20.0, max_list_length=60)
    # batch norm: its running statistics must be rank 0's when the shards are evaluated
    config["model"]["args"].update(dropout=0.1, norm="batch")
    config["optimizer"]["lr"] = 0.02
    config["evaluation"] = {"baselines": False}
    return config


ENV = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")


def torchrun(*arguments: str) -> None:
    run_torchrun("train", *arguments, timeout_s=300)


def interrupted_torchrun(config: Path, run_dir: Path) -> None:
    """Start the job and stop torchrun (SIGTERM, as a scheduler would) once an epoch is checkpointed."""
    job = subprocess.Popen(torchrun_command("train", str(config), "--name", run_dir.name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
    deadline = time.monotonic() + 300
    while not (run_dir / "history.json").exists():
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before its first epoch"
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=120)
    assert not (run_dir / "report.json").exists(), "the job finished before it could be interrupted"


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    config = base / "job.json"
    config.write_text(json.dumps(job(base / "runs", 4)))
    single = subprocess.run([LTRKIT, "train", str(config), "--name", "single", "-q"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun(str(config), "--name", "ddp")
    interrupted_torchrun(config, base / "runs" / "ddp-resumed")
    torchrun("--resume", str(base / "runs" / "ddp-resumed"))
    ensemble = job(base / "runs", 2)
    ensemble["training"]["ensemble"] = 2
    (base / "ensemble.json").write_text(json.dumps(ensemble))
    single = subprocess.run([LTRKIT, "train", str(base / "ensemble.json"), "--name", "ensemble-single", "-q"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun(str(base / "ensemble.json"), "--name", "ensemble-ddp")
    return base / "runs"


def test_two_processes_converge_to_the_single_process_metrics(runs):
    single, ddp = report(runs / "single"), report(runs / "ddp")
    for split in ("vali", "test"):
        assert abs(ddp["metrics"][split]["ndcg@10"] - single["metrics"][split]["ndcg@10"]) < TOLERANCE, split
    assert ddp["metrics"]["vali"]["ndcg@10"] > report(runs / "single")["baselines"].get("random", {}).get("ndcg@10", 0.3)
    history = json.loads((runs / "ddp" / "history.json").read_text())
    # the epoch statistics are over both ranks: every training document once per epoch
    assert history[0]["docs_per_s"] * history[0]["seconds"] == pytest.approx(
        json.loads((runs / "single" / "history.json").read_text())[0]["docs_per_s"] * json.loads((runs / "single" / "history.json").read_text())[0]["seconds"], rel=1e-6
    )


def test_an_ensemble_trains_under_torchrun_like_in_one_process(runs):
    single, ddp = report(runs / "ensemble-single"), report(runs / "ensemble-ddp")
    for split in ("vali", "test"):
        assert abs(ddp["metrics"][split]["ndcg@10"] - single["metrics"][split]["ndcg@10"]) < TOLERANCE, split
    members = Ranker.load(runs / "ensemble-ddp").model.members
    assert len(members) == 2
    first, second = (next(member.parameters()) for member in members)
    assert not np.allclose(first.detach().numpy(), second.detach().numpy())


def test_sharded_validation_is_the_checkpointed_model_s(runs):
    config = load_config(json.loads((runs / "ddp" / "config.resolved.json").read_text()))
    vali = prepare_data(config).vali
    ranker = Ranker.load(runs / "ddp", checkpoint="last")
    scores = score_dataset(ranker.model, vali)
    expected = evaluate_scores(vali, scores, ["ndcg@10", "map"], metric_conventions(config.evaluation))
    last = json.loads((runs / "ddp" / "history.json").read_text())[-1]
    assert last["vali_ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
    assert last["vali_map"] == pytest.approx(expected["map"], abs=1e-6)


def test_rank_zero_alone_writes_the_run_folder(runs):
    ddp = runs / "ddp"
    assert sorted(path.name for path in runs.iterdir()) == ["ddp", "ddp-resumed", "ensemble-ddp", "ensemble-single", "single"]
    log = (ddp / "train.log").read_text()
    assert log.count("finished: best epoch") == 1
    assert len((ddp / "predictions" / "test.scores").read_text().splitlines()) == report(runs / "single")["data"]["test"]["documents"]


def test_resume_under_torchrun_is_exact(runs):
    whole, resumed = report(runs / "ddp"), report(runs / "ddp-resumed")
    assert resumed["metrics"] == whole["metrics"]
    assert (runs / "ddp" / "predictions" / "test.scores").read_text() == (runs / "ddp-resumed" / "predictions" / "test.scores").read_text()


def test_muted_folder_mutes_every_writer():
    writers = [name for name in vars(RunFolder) if name.startswith(("write_", "log", "close")) and callable(getattr(RunFolder, name))]
    assert writers and all(name in vars(MutedRunFolder) for name in writers)


def test_memory_mapped_splits_are_normalised_lazily(tmp_path):
    files = write_splits(generate_splits(train_queries=30, vali_queries=10, test_queries=10, n_features=9, seed=2), tmp_path)
    for path in files.values():
        load_dataset(path)  # writes the caches: the run then maps them
    config = load_config(tiny_config(tmp_path / "runs", data={"train": str(files["train"]), "vali": str(files["vali"]), "test": str(files["test"])}))
    data = prepare_data(config)
    for name in ("train", "vali", "test"):
        split = data.split(name)
        assert isinstance(split.features, NormalizedFeatures), name
        raw = load_dataset(files[name], cache=False)
        np.testing.assert_array_equal(np.asarray(split.features), data.normalizer.transform(raw).features)
    # scoring a cached file reads it mapped, batch by batch, with the same scores
    result = train(config.to_dict(), training={"epochs": 1})
    ranker = Ranker.load(result.run_dir)
    mapped = ranker.predict(files["test"])
    np.testing.assert_array_equal(mapped, ranker.predict(load_dataset(files["test"], cache=False)))


def worker_pids(agent_pid: int) -> dict:
    """``{LOCAL_RANK: pid}`` of the worker processes torchrun's agent started."""
    pids = {}
    for task in Path(f"/proc/{agent_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = next((item.split(b"=", 1)[1] for item in environ if item.startswith(b"LOCAL_RANK=")), None)
            if rank is not None:
                pids[int(rank)] = int(child)
    return pids


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc")
@pytest.mark.parametrize("failure", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_lost_rank_ends_the_job_with_a_clear_message(tmp_path, failure):
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job(tmp_path / "runs", 30)))
    run_dir = tmp_path / "runs" / "lost"
    env = dict(ENV, LTRKIT_DIST_TIMEOUT_S="5")
    agent = subprocess.Popen(torchrun_command("train", str(config), "--name", "lost"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    workers = {}
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "history.json").exists():
            assert agent.poll() is None and time.monotonic() < deadline, "the job ended before its first epoch"
            time.sleep(0.02)
        workers = worker_pids(agent.pid)
        os.kill(workers[1], failure)
        started = time.monotonic()
        while running(workers[0]) and time.monotonic() - started < 90:
            time.sleep(0.05)
        # rank 0 is gone; a stopped process ignores torchrun's SIGTERM for its 30 s grace period
        waited = time.monotonic() - started
        if failure == signal.SIGSTOP:
            os.kill(workers[1], signal.SIGKILL)
        output, _ = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
        for pid in workers.values():
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert agent.returncode != 0
    assert not (run_dir / "report.json").exists()
    if failure == signal.SIGSTOP:
        # rank 0 waits out the 5 s timeout in a collective and says why it stops
        assert "error: rank 0 of 2:" in output and "did not answer within 5 s" in output, output[-3000:]
    else:
        # rank 0 sees the closed connection, or torchrun sees the dead worker first and stops the job
        assert "error: rank 0 of 2:" in output or "local_rank: 1" in output, output[-3000:]
    assert waited < 5 + 30, waited
