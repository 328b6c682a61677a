"""Helpers of the multi-process embedding tests: start ranks of ``ltrkit embed``'s task on loopback
(as torchrun would), and the one-process emulation of a ``W``-rank run they are checked against.

Run as a script, ``python embed_distributed_support.py CONFIG.json OUT_DIR``, it is one rank of a
job (RANK, WORLD_SIZE, ... from the environment): it trains the config and writes
``OUT_DIR/rank<R>.pt`` with the weights and the history record of the last epoch (model and
pre-training decoder),
the rows of every batch it trained on per epoch (``None`` for a filler step), its
``steps_per_epoch`` and, on rank 0, the run's final metrics.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from ltrkit.embeddings.config import load_embed_config
from ltrkit.embeddings.job import EmbeddingTask, _Corrupted, _Filler, shard_batches
from ltrkit.training.schedules import build_optimizer, build_scheduler
from ltrkit.training.trainer import run_task
from tests.training.distributed_support import finish_ranks, start_ranks


def batch_rows(batch: Any) -> Optional[List[int]]:
    """The item (or table) rows of a batch of :class:`~ltrkit.embeddings.job.EmbeddingTask`; ``None`` for a filler."""
    if isinstance(batch, _Filler):
        return None
    if isinstance(batch, _Corrupted):
        return batch.rows.tolist()
    if isinstance(batch, tuple):  # starspace: (rows, negatives)
        return batch[0].tolist()
    return batch.tolist()


def run_ranks(
    config: Mapping[str, Any], out: Path, world_size: int = 2, timeout_s: float = 120.0, stop_after_epoch: int = 0
) -> List[Dict[str, Any]]:
    """Train ``config`` in ``world_size`` processes on loopback; each rank's ``rank<R>.pt`` content.

    ``stop_after_epoch > 0``: every rank stops there, its checkpoint written (an interrupted run,
    left to resume). Every rank is killed if the job has not ended within ``timeout_s``.
    """
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config))
    processes = start_ranks(
        str(config_path), out, world_size, {"LTRKIT_DIST_TIMEOUT_S": "30"}, script=Path(__file__), args=[str(stop_after_epoch)]
    )
    outputs = finish_ranks(processes, timeout_s)
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank}:\n{output[-3000:]}"
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)]


def emulated_ranks(config: Mapping[str, Any], world_size: int = 2) -> Any:
    """The task after training ``config`` in one process as ``world_size`` ranks would: each step
    back-propagates the mean of the losses of the ranks' batches of that step (a filler's counts
    0), what DDP's average of the ranks' gradients is. No evaluation, checkpoint or early stopping
    (the configs tested have no patience, no dropout and no gradient clipping)."""
    resolved = load_embed_config(dict(config))
    task = EmbeddingTask(resolved)
    task.prepare(None)
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(resolved.seed)  # as the loop seeds before it builds (rank 0's weights)
            task.build(device)
        optimizer = build_optimizer(task.parameters(), resolved.optimizer)
        steps = math.ceil(len(task.train_batches(1)) / world_size)
        scheduler = build_scheduler(optimizer, resolved.schedule, total_steps=steps * resolved.training.epochs, steps_per_epoch=steps)
        for epoch in range(1, resolved.training.epochs + 1):
            batches = task.train_batches(epoch)  # one process: the whole epoch
            for step in zip(*(shard_batches(batches, rank, world_size) for rank in range(world_size))):
                optimizer.zero_grad(set_to_none=True)
                loss = sum(task.training_step(batch, device, None).loss for batch in step) / world_size
                loss.backward()
                optimizer.step()
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    return task


class RecordingTask(EmbeddingTask):
    """The job's task, recording the rows of this rank's batches and its steps per epoch."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.seen: Dict[int, List[Optional[List[int]]]] = {}
        self.steps = 0

    def train_batches(self, epoch: int) -> List[Any]:
        batches = super().train_batches(epoch)
        self.seen[epoch] = [batch_rows(batch) for batch in batches]
        self.steps = self.steps_per_epoch()
        return batches


class _Stop(Exception):
    """Raised on every rank after the epoch to stop at: the run is interrupted there."""


def main() -> None:
    config_path, out, stop_after = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    task = RecordingTask(load_embed_config(json.loads(config_path.read_text())))
    last: Dict[str, Any] = {}

    def keep(epoch: int, record: Mapping[str, Any]) -> None:
        last["record"] = dict(record)
        last["model"] = {name: tensor.detach().clone() for name, tensor in task.model.state_dict().items()}
        last["decoder"] = None if task.decoder is None else {name: tensor.detach().clone() for name, tensor in task.decoder.state_dict().items()}
        if epoch == stop_after:
            raise _Stop

    rank = int(os.environ["RANK"])
    try:
        metrics = run_task(task, quiet=True, on_epoch_end=keep).metrics
    except _Stop:
        metrics = {}
    torch.save({**last, "seen": task.seen, "steps": task.steps, "metrics": metrics}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
