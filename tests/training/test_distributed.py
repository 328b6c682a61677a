"""torch.distributed on this machine: 2 gloo processes on loopback, started like torchrun.

* sharded metrics equal single-process metrics to 1e-6 (sums and counts reduced, not means);
* a rank that is killed, or that hangs, makes the surviving rank fail with a clear message
  within a bounded time, never a hang.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from ltrkit.data.dataset import RankingDataset
from ltrkit.metrics import evaluate_dataset
from ltrkit.training.distributed import (
    DistributedContext,
    DistributedError,
    all_reduce_sum,
    evaluation_shard,
    init_distributed,
    shard_metric_sums,
    sharded_metric_means,
)
from tests.training.distributed_support import CONVENTIONS, METRICS, metric_dataset, start_ranks, wait_for

pytestmark = pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="torch.distributed is not built")

# start-up of a rank (interpreter + torch import) is a few seconds on 2 busy cores
JOB_LIMIT_S = 120


def finish(processes, limit_s=JOB_LIMIT_S):
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=limit_s)
        except Exception:
            process.kill()
            output, _ = process.communicate()
        outputs.append(output)
    return outputs


def test_sharded_metrics_equal_single_process(tmp_path):
    processes = start_ranks("metrics", tmp_path)
    outputs = finish(processes)
    assert [p.returncode for p in processes] == [0, 0], outputs
    dataset, scores = metric_dataset()
    ranks = [json.loads((tmp_path / f"metrics{rank}.json").read_text()) for rank in range(2)]
    for index, conventions in enumerate(CONVENTIONS):
        reference = evaluate_dataset(dataset, scores, METRICS, **conventions).mean
        for rank in range(2):
            means = ranks[rank][index]["means"]
            for name in METRICS:
                assert means[name] == pytest.approx(reference[name], abs=1e-6), (conventions, name)
        # 46 and 45 queries: a mean of the two shard means would be off
        local = np.array([ranks[rank][index]["local_means"] for rank in range(2)])
        assert np.abs(local.mean(axis=0) - np.array([reference[n] for n in METRICS])).max() > 1e-6


@pytest.mark.parametrize("where, what", [
    ("all_reduce", "all_reduce of the metric sums"), ("ddp_forward", "epoch 1 of training"), ("ddp_backward", "epoch 1 of training"),
])
@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_lost_rank_fails_the_job_within_the_timeout(tmp_path, failure, where, what):
    """Whether rank 0 waits in ltrkit's own collective or in one DDP runs (buffer broadcast in
    forward, gradient all-reduce in backward), the lost peer ends it with one line."""
    timeout_s = 4
    processes = start_ranks("peer_lost", tmp_path, extra_env={"LTRKIT_TEST_TIMEOUT_S": str(timeout_s)}, args=[where])
    try:
        wait_for(tmp_path / "ready1", JOB_LIMIT_S)
        if failure == "killed":
            processes[1].send_signal(signal.SIGKILL)
        started = time.monotonic()
        output, _ = processes[0].communicate(timeout=JOB_LIMIT_S)
        waited = time.monotonic() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        finish(processes)
    assert processes[0].returncode == 3, output
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["message"].startswith(f"rank 0 of 2: {what} failed: another process of the job died or did not answer within 4 s")
    assert "\n" not in report["message"]
    # killed: the closed connection is seen at once or at the timeout; hung: at the timeout
    assert report["seconds"] < timeout_s + 10 and waited < timeout_s + 20


def test_a_group_the_caller_set_up_is_used_and_left_alone(tmp_path):
    processes = start_ranks("caller_group", tmp_path)
    outputs = finish(processes)
    assert [p.returncode for p in processes] == [0, 0], outputs
    for rank in range(2):
        assert json.loads((tmp_path / f"caller{rank}.json").read_text()) == {"owns": False, "still_up": True}


def test_single_process_context_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext() and context.is_main and not context.enabled
    torch = pytest.importorskip("torch")
    values = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert all_reduce_sum(context, values).tolist() == [1.0, 2.0]
    dataset, scores = metric_dataset()
    assert evaluation_shard(context, dataset).tolist() == list(range(dataset.n_queries))
    means = sharded_metric_means(context, dataset, scores, METRICS, {"conventions": "ltrkit"})
    assert means == pytest.approx(evaluate_dataset(dataset, scores, METRICS).mean, abs=1e-12)


def test_shard_sums_skip_queries_left_out_of_the_mean():
    dataset = RankingDataset(np.zeros((4, 1), np.float32), np.array([0, 0, 2, 0], np.float32), np.array([0, 2, 4]), np.array(["a", "b"]))
    scores = np.array([0.1, 0.2, 0.9, 0.3])
    sums, counts = shard_metric_sums(dataset, scores, np.array([0, 1]), ["ndcg"], {"empty": "skip"})
    assert sums.tolist() == [1.0] and counts.tolist() == [1.0]
    sums, counts = shard_metric_sums(dataset, scores, np.array([], dtype=np.int64), ["ndcg"], {})
    assert sums.tolist() == [0.0] and counts.tolist() == [0.0]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' must be an integer"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 and WORLD_SIZE=2 do not describe a process"),
    ],
)
def test_bad_environment(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DistributedError, match=message):
        init_distributed("cpu")


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        init_distributed("cpu", timeout_s=0)
    with pytest.raises(ValueError, match="device_type must be 'cpu' or 'cuda'"):
        init_distributed("tpu")


def test_collective_errors_translate_backend_failures_only():
    from ltrkit.training.distributed import collective_errors

    context = DistributedContext(rank=1, world_size=2, backend="gloo", timeout_s=5)
    with pytest.raises(DistributedError, match=r"^rank 1 of 2: epoch 3 failed: another process .* within 5 s \(\[gloo/pair.cc\] Connection closed by peer\)$"):
        with collective_errors(context, "epoch 3"):
            raise RuntimeError("[gloo/pair.cc] Connection closed by peer\nmore detail")
    # gloo's timeout names no backend, and DDP's buffer broadcast raises from torch's own distributed code
    with pytest.raises(DistributedError, match=r"within 5 s \(Application timeout caused pair closure\)$"):
        with collective_errors(context, "epoch 3"):
            raise RuntimeError("Application timeout caused pair closure")
    import torch.nn.parallel.distributed as ddp_source

    ddp_code = compile(
        "def _distributed_broadcast_coalesced():\n    raise RuntimeError('unexpected end of stream')\n"
        "def _pre_forward():\n    raise RuntimeError('Expected to have finished reduction in the prior iteration')\n",
        ddp_source.__file__, "exec",
    )
    scope = {}
    exec(ddp_code, scope)
    with pytest.raises(DistributedError, match=r"within 5 s \(unexpected end of stream\)$"):
        with collective_errors(context, "epoch 3"):
            scope["_distributed_broadcast_coalesced"]()
    # a usage error DDP raises itself is no lost peer
    with pytest.raises(RuntimeError, match="^Expected to have finished reduction"):
        with collective_errors(context, "epoch 3"):
            scope["_pre_forward"]()
    # a model's own error is not a lost peer, and one process translates nothing
    for ctx, error in ((context, RuntimeError("mat1 and mat2 shapes cannot be multiplied")), (DistributedContext(), RuntimeError("gloo timeout"))):
        with pytest.raises(RuntimeError) as raised:
            with collective_errors(ctx, "epoch 3"):
                raise error
        assert raised.value is error


def test_an_ensemble_trains_through_one_forward_with_each_member_s_own_gradient(tmp_path):
    """The training step scores every member in one forward ([K, B, L]); each member gets the
    gradient of its own loss alone, and DistributedDataParallel over the member view (a gloo
    group of one process on loopback: the average over one rank is the identity) gives the same."""
    import torch
    import torch.distributed as dist

    from ltrkit.training.config import load_config
    from ltrkit.training.distributed import EnsembleMembers
    from ltrkit.training.trainer import RankingTask
    from tests.training.conftest import tiny_config
    from tests.training.distributed_support import free_port

    config = tiny_config(tmp_path, training={"epochs": 1, "batch_size": 8, "max_slate_length": 20, "ensemble": 3})
    config["model"]["args"]["dropout"] = 0.0
    task = RankingTask(load_config(config))
    task.prepare(None)
    task.build(torch.device("cpu"))
    batch = next(iter(task.train_batches(1)))
    members = list(task.model.members)

    def gradients():
        grads = [[p.grad.clone() for p in member.parameters()] for member in members]
        task.model.zero_grad(set_to_none=True)
        return grads

    task.training_step(batch, torch.device("cpu"), None).loss.backward()
    together = gradients()
    for member in members:  # the reference: each member's own loss, differentiated alone
        task.loss_fn(member(batch.features, batch.mask), batch.labels, batch.mask).backward()
    alone = gradients()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        task.model = torch.nn.parallel.DistributedDataParallel(EnsembleMembers(task.model))
        task.training_step(batch, torch.device("cpu"), None).loss.backward()
        task.model = task.model.module.ensemble
        through_ddp = gradients()
    finally:
        dist.destroy_process_group()
    assert len(together) == 3 and not torch.equal(together[0][0], together[1][0])
    for mine, reference, ddp in zip(together, alone, through_ddp):
        for a, b, c in zip(mine, reference, ddp):
            torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)
            torch.testing.assert_close(c, b, atol=1e-7, rtol=1e-6)
