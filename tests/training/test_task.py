"""The trainer's task interface: a job that is not list ranking runs through the same loop (run
folder, checkpoints with the task's own state, exact resume, early stopping, report), and the
ranking task's sums and counts give evaluate_dataset's means."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional

import numpy as np
import pytest
import torch

from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset
from ltrkit.training import load_config
from ltrkit.training.checkpoint import load_checkpoint
from ltrkit.training.task import Evaluation, StepOutput, Task
from ltrkit.training.trainer import RankingTask, resume_task, resumed_config, run_task


class RegressionTask(Task):
    """Least squares on a fixed random problem; the metric is the negated validation MSE."""

    unit = "rows"
    loss_name = "mse"
    checkpoint_keys = ("steps_seen",)

    def __init__(self, config: Any) -> None:
        self.config = config
        self.metric_names = ["neg_mse"]
        self.stop_metric = "neg_mse"
        generator = np.random.default_rng(0)
        self.x = torch.from_numpy(generator.normal(size=(64, 3)).astype(np.float32))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.from_numpy(generator.normal(size=64).astype(np.float32))
        self.steps_seen = 0
        self.prepared_with: Optional[Mapping[str, Any]] = None

    def canonical_metric(self, name: str) -> str:
        return name.lower()

    def prepare(self, state: Optional[Mapping[str, Any]]) -> None:
        self.prepared_with = state

    def build(self, device: torch.device) -> None:
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1)).to(device)

    def steps_per_epoch(self) -> int:
        return 4

    def train_batches(self, epoch: int):
        self.model.train()
        order = np.random.default_rng([self.config.seed, epoch]).permutation(48)
        return [torch.from_numpy(order[i : i + 12]) for i in range(0, 48, 12)]

    def training_step(self, batch: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> StepOutput:
        self.steps_seen += 1
        prediction = self.model(self.x[batch]).squeeze(-1)
        return StepOutput(loss=torch.mean((prediction - self.y[batch]) ** 2), weight=len(batch), items=len(batch))

    def evaluate(self, split: str, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Optional[Evaluation]:
        if split != "vali":
            return None
        self.model.eval()
        with torch.no_grad():
            errors = (self.model(self.x[48:]).squeeze(-1) - self.y[48:]) ** 2
        return Evaluation(sums={"neg_mse": -float(errors.sum())}, counts={"neg_mse": float(errors.numel())})

    def state_dict(self) -> Dict[str, Any]:
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps_seen = state["steps_seen"]

    def report_identity(self) -> Dict[str, Any]:
        return {"model": "two-layer regressor", "loss": self.loss_name}


def _config(tmp_path, name: str, epochs: int, **sections: Any):
    return load_config(
        {
            "optimizer": {"name": "adamw", "lr": 0.05},
            "schedule": {"name": "cosine", "warmup_steps": 2},
            "training": {"epochs": epochs},
            "early_stopping": {"metric": "ndcg@10", "patience": None},
            "seed": 5,
            "num_threads": 1,
            "output": {"dir": str(tmp_path), "name": name, "tensorboard": False, "plots": False},
            **sections,
        }
    )


def test_a_custom_task_runs_through_the_loop(tmp_path):
    task = RegressionTask(_config(tmp_path, "reg", 3))
    result = run_task(task)
    run = tmp_path / "reg"
    report = json.loads((run / "report.json").read_text())
    assert report["model"] == "two-layer regressor" and report["early_stopping_metric"] == "vali_neg_mse"
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    assert {"train_loss", "rows_per_s", "vali_neg_mse"} <= set(result.history[0])
    best = max(result.history, key=lambda record: record["vali_neg_mse"])
    assert result.best_epoch == best["epoch"] and result.metrics["vali"]["neg_mse"] == best["vali_neg_mse"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["steps_seen"] == 12 and last["epoch"] == 3
    # the loss went down: the loop really stepped the task's model
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert "rows/s" in (run / "train.log").read_text()


def test_a_custom_task_resumes_exactly(tmp_path):
    whole = run_task(RegressionTask(_config(tmp_path, "whole", 4)))
    def interrupt(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_task(RegressionTask(_config(tmp_path, "part", 4)), on_epoch_end=interrupt)
    folder, config = resumed_config(tmp_path / "part", load_config, {})
    task = RegressionTask(config)
    resumed = resume_task(task, folder)
    assert task.prepared_with is not None and task.prepared_with["epoch"] == 2
    assert task.steps_seen == 16
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    strip = lambda history: [{k: v for k, v in r.items() if k not in ("seconds", "rows_per_s")} for r in history]  # noqa: E731
    assert strip(whole.history) == strip(resumed.history)


def test_a_checkpoint_without_the_task_state_does_not_resume(tmp_path):
    from ltrkit.training import ConfigError
    from ltrkit.training.checkpoint import save_checkpoint

    run_task(RegressionTask(_config(tmp_path, "r", 1)))
    path = tmp_path / "r" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["steps_seen"], state["format"]
    save_checkpoint(path, state)
    folder, config = resumed_config(tmp_path / "r", load_config, {"training.epochs": 2})
    with pytest.raises(ConfigError, match=r"lacks \['steps_seen'\]"):
        resume_task(RegressionTask(config), folder)


def test_evaluation_means_are_sums_over_counts():
    evaluation = Evaluation(sums={"a": 3.0, "b": 0.0}, counts={"a": 4.0, "b": 0.0})
    assert evaluation.means["a"] == 0.75 and math.isnan(evaluation.means["b"])


@pytest.mark.parametrize("empty", ["zero", "skip"])
def test_ranking_task_sums_and_counts_give_evaluate_dataset_means(tmp_path, empty):
    splits = generate_splits(train_queries=4, vali_queries=30, test_queries=2, n_features=8, mean_list_length=6.0, max_list_length=12, seed=1)
    vali = splits["vali"]
    config = _config(tmp_path, "x", 1, evaluation={"metrics": ["ndcg@5", "map", "mrr", "err@10"], "empty": empty})
    task = RankingTask(config)
    scores = np.random.default_rng(2).normal(size=vali.n_docs)
    evaluation = task._evaluation(vali, scores)
    expected = evaluate_dataset(vali, scores, task.metric_names, empty=empty).mean
    assert evaluation.means == pytest.approx(expected, rel=0, abs=0)
    without_relevant = int(sum(1 for q in range(vali.n_queries) if not (vali.labels[vali.query_offsets[q] : vali.query_offsets[q + 1]] >= 1).any()))
    assert without_relevant > 0
    assert evaluation.counts["map"] == vali.n_queries - (without_relevant if empty == "skip" else 0)
