"""Helpers of the multi-process tests: start ranks the way torchrun does (environment variables,
loopback rendezvous) and the worker scenarios they run.

Run as a script, ``python distributed_support.py SCENARIO OUT_DIR``, it is one rank of a job:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
LTRKIT = str(Path(sys.executable).with_name("ltrkit"))

METRICS = ["ndcg@10", "ndcg", "map", "mrr", "err@10", "p@5"]
CONVENTIONS = [
    {"conventions": "ltrkit"},
    {"conventions": "trec"},
    {"conventions": "ltrkit", "empty": "skip", "ties": "pessimistic"},
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_ranks(
    scenario: str, out: Path, world_size: int = 2, extra_env: Optional[Dict[str, str]] = None, *,
    script: Optional[Path] = None, args: Sequence[str] = (),
) -> List[subprocess.Popen]:
    """Start ``world_size`` processes of ``script SCENARIO OUT ARGS...`` (default: this module's
    scenarios) on loopback, as torchrun would."""
    port = free_port()
    processes = []
    for rank in range(world_size):
        env = dict(os.environ)
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE=str(world_size),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            GLOO_SOCKET_IFNAME="lo",
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        )
        env.update(extra_env or {})
        processes.append(
            subprocess.Popen([sys.executable, str(Path(script or __file__).resolve()), scenario, str(out), *args], env=env, cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return processes


def torchrun_command(subcommand: str, *arguments: str, processes: int = 2) -> List[str]:
    """``torchrun`` (PyTorch's own launcher) running ``ltrkit SUBCOMMAND ARGUMENTS -q`` in
    ``processes`` processes, rendezvous on a free loopback port."""
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--no-python", LTRKIT, subcommand, *arguments, "-q",
    ]


def run_torchrun(subcommand: str, *arguments: str, env: Optional[Dict[str, str]] = None, timeout_s: float = 180.0) -> str:
    """Run :func:`torchrun_command` to its end (its output), asserting exit code 0; past
    ``timeout_s`` the launcher and its workers, a process group of their own, are killed together."""
    environment = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", **(env or {}))
    job = subprocess.Popen(torchrun_command(subcommand, *arguments), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=environment, cwd=REPO, start_new_session=True)
    try:
        output, _ = job.communicate(timeout=timeout_s)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode == 0, output[-3000:]
    return output


def finish_ranks(processes: List[subprocess.Popen], timeout_s: float = 120.0) -> List[str]:
    """Wait for every rank (killing them all past ``timeout_s``); their outputs, rank by rank."""
    deadline = time.monotonic() + timeout_s
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            outputs.append(output)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.05)


def metric_dataset():
    """The data and scores every rank and the single-process reference evaluate."""
    import numpy as np

    from ltrkit.data.synthetic import generate

    dataset = generate(91, n_features=8, seed=5, mean_list_length=15.0, max_list_length=60)
    # one decimal: many tied scores, so the tie rules matter
    scores = np.round(np.random.default_rng(11).normal(size=dataset.n_docs), 1)
    return dataset, scores


def _scenario_metrics(context, out: Path) -> None:
    import numpy as np

    from ltrkit.training.distributed import evaluation_shard, shard_metric_sums, sharded_metric_means

    dataset, scores = metric_dataset()
    # only this rank's rows are filled: the others must never be read
    mine = np.full(dataset.n_docs, np.nan)
    for query in evaluation_shard(context, dataset):
        rows = dataset.query_slice(int(query))
        mine[rows] = scores[rows]
    results = []
    for conventions in CONVENTIONS:
        means = sharded_metric_means(context, dataset, mine, METRICS, conventions)
        sums, counts = shard_metric_sums(dataset, mine, evaluation_shard(context, dataset), METRICS, conventions)
        results.append({"means": means, "local_means": (sums / np.maximum(counts, 1)).tolist()})
    (out / f"metrics{context.rank}.json").write_text(json.dumps(results))


def _scenario_peer_lost(context, out: Path, where: str = "all_reduce") -> None:
    """Rank 0 waits for a rank that never comes (killed by the test, or hung) in a collective of
    its own (``all_reduce``), in DDP's buffer broadcast of a forward (``ddp_forward``) or in DDP's
    gradient all-reduce of a backward (``ddp_backward``)."""
    import torch

    from ltrkit.training.distributed import DistributedError, all_reduce_sum, collective_errors, wrap_model

    # BatchNorm's running statistics are buffers, which DDP broadcasts before every forward; a
    # module without buffers communicates in backward only
    layers = [torch.nn.Linear(3, 2)] + ([torch.nn.BatchNorm1d(2)] if where == "ddp_forward" else [])
    model = wrap_model(context, torch.nn.Sequential(*layers), torch.device("cpu"))
    if context.rank != 0:
        (out / f"ready{context.rank}").write_text("")
        time.sleep(600)
        return
    features = torch.randn(8, 3)
    started = time.monotonic()
    try:
        if where == "all_reduce":
            all_reduce_sum(context, torch.ones(3, dtype=torch.float64), what="all_reduce of the metric sums")
        else:
            with collective_errors(context, "epoch 1 of training"):
                model(features).sum().backward()
    except DistributedError as error:
        (out / "rank0.json").write_text(json.dumps({"message": str(error), "seconds": time.monotonic() - started}))
        # no interpreter shutdown: gloo's destructor may abort on the collective that timed out
        os._exit(3)


def _scenario_caller_group(context, out: Path) -> None:
    """The caller set the group up: ltrkit uses it and leaves it in place."""
    import torch.distributed as dist

    from ltrkit.training.distributed import shutdown

    shutdown(context)
    (out / f"caller{context.rank}.json").write_text(json.dumps({"owns": context.owns_group, "still_up": dist.is_initialized()}))
    dist.destroy_process_group()


def main() -> None:
    scenario, out, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    import torch

    from ltrkit.training.distributed import init_distributed, shutdown

    torch.set_num_threads(1)
    if scenario == "caller_group":
        import torch.distributed as dist

        dist.init_process_group("gloo")
    context = init_distributed("cpu", timeout_s=float(os.environ.get("LTRKIT_TEST_TIMEOUT_S", "30")))
    try:
        {"metrics": _scenario_metrics, "peer_lost": _scenario_peer_lost, "caller_group": _scenario_caller_group}[scenario](context, out, *args)
    finally:
        if scenario == "metrics":
            shutdown(context)


if __name__ == "__main__":
    main()
