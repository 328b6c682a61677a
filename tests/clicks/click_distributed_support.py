"""Worker scenarios of the multi-process click tests: ranks started the way torchrun does
(environment variables, loopback rendezvous; :mod:`tests.training.distributed_support`).

Run as a script, ``python click_distributed_support.py SCENARIO OUT_DIR JOBS_JSON``, it is one
rank of a job (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from the environment);
``JOBS_JSON`` holds ``{name: {"config": click config dict, "stop_after_epoch": int or null}}``.
Scenario ``train`` trains every config in turn (the process group is the script's, so one
start-up serves them all), every rank stopping after ``stop_after_epoch`` when it is set (an
interrupted run, left to resume), and writes ``NAME.rank{R}.json``: this rank's batches of every
epoch, the lists' size and propensities, the estimated propensities, DLA's logits after every
epoch, and the model's parameters and this rank's validation sums and counts after the last one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional

from tests.training.distributed_support import start_ranks


def start_job(scenario: str, out: Path, jobs: Path, world_size: int = 2) -> List[subprocess.Popen]:
    """Start ``world_size`` processes of ``scenario`` on loopback, as torchrun would."""
    return start_ranks(scenario, out, world_size, {"LTRKIT_DIST_TIMEOUT_S": "60"}, script=Path(__file__), args=[str(jobs)])


class _Stop(Exception):
    """Raised on every rank after an epoch: the run is interrupted there."""


def _scenario_train(rank: int, out: Path, jobs: Dict[str, Any]) -> None:
    for name, job in jobs.items():
        (out / f"{name}.rank{rank}.json").write_text(json.dumps(_train(job["config"], job.get("stop_after_epoch"))))


def _train(config: Dict[str, Any], stop_after: Optional[int]) -> Dict[str, Any]:
    """Train ``config`` on this rank (stopping after epoch ``stop_after``, if set); what it saw."""
    import torch

    from ltrkit.clicks.task import ClickTask, load_click_config
    from ltrkit.training.trainer import run_task

    task = ClickTask(load_click_config(config))
    record: Dict[str, Any] = {"batches": {}, "logits": {}, "stopped_after": None}

    def on_epoch_end(epoch: int, _: Dict[str, Any]) -> None:
        # the loop is still in the job here: the batches are this rank's share
        record["batches"][epoch] = [batch.tolist() for batch in task.train_batches(epoch)]
        if task.form == "dla":
            record["logits"][epoch] = task.loss_fn.raw_logits.detach().tolist()
        record["model"] = {key: value.tolist() for key, value in task.model.state_dict().items()}
        # this rank's part of the validation the loop all-reduced
        evaluation = task.evaluate("vali", torch.device("cpu"), None)
        record["vali"] = {"sums": evaluation.sums, "counts": evaluation.counts}
        if epoch == stop_after:
            raise _Stop

    try:
        run_task(task, on_epoch_end=on_epoch_end)
    except _Stop:
        record["stopped_after"] = stop_after
    lists = task.lists
    record.update(
        n_lists=lists.n_lists,
        docs_per_list=(lists.docs >= 0).sum(axis=1).tolist(),
        list_propensities=lists.propensities.tolist(),
        estimated_propensities=task.report_context()["clicks"].get("estimated_propensities"),
    )
    return record


def main() -> None:
    scenario, out, jobs = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    # the script's own group: ltrkit joins it for every run and leaves it up between them
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        {"train": _scenario_train}[scenario](dist.get_rank(), out, jobs)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
