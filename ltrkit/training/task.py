"""The task interface of the training loop: what one kind of job (list ranking, embeddings, ...)
supplies, in the manner of PyTorch Lightning's loop/module split.

The loop (:mod:`ltrkit.training.trainer`) owns everything that is the same for every job: the
run folder, seeding and thread settings, the optimiser and the per-step learning-rate schedule,
mixed precision, gradient clipping, the progress bar and ``train.log``, early stopping and model
selection, ``checkpoints/{best,last}.pt`` with exact resume, ``history.csv/json``, TensorBoard,
``curves.png``, the regression gate and ``report.{md,json}``. A :class:`Task` owns what differs:

============================  ==========================================================
what                          hook
============================  ==========================================================
data (read, checked)          :meth:`Task.prepare` (before a fresh run folder is made)
files of a fresh run folder   :meth:`Task.write_setup` (e.g. ``normalizer.json``)
model, loss                   :meth:`Task.build`, :meth:`Task.parameters`
what a batch is               :meth:`Task.train_batches` (an epoch's batches, by ``(seed, epoch)``)
the loss of a batch           :meth:`Task.training_step` -> :class:`StepOutput`
validation metrics            :meth:`Task.evaluate` -> :class:`Evaluation` (sums and counts)
checkpoint content            :meth:`Task.state_dict` / :meth:`Task.load_state_dict`
report                        :meth:`Task.final_metrics`, :meth:`Task.baselines`,
                              :meth:`Task.report_identity`, :meth:`Task.report_context`
============================  ==========================================================

Checkpoint: the loop writes ``epoch``, ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``rng``, ``early_stopping``, ``history`` and ``config`` (:data:`LOOP_CHECKPOINT_KEYS`); the entries
of :meth:`Task.state_dict` are added beside them at the top level, so a ranking checkpoint keeps
its format (``loss``, ``normalizer``, ``n_features``).

The config a task carries must have the sections the loop reads: ``seed``, ``device``,
``num_threads``, ``deterministic``, ``optimizer`` (:class:`~ltrkit.training.config.OptimizerConfig`),
``schedule`` (:class:`~ltrkit.training.config.ScheduleConfig`), ``training.epochs``,
``training.grad_clip``, ``training.mixed_precision``, ``early_stopping``
(:class:`~ltrkit.training.config.EarlyStoppingConfig`), ``expected`` and ``output``
(:class:`~ltrkit.training.config.OutputConfig`), and a ``to_dict()``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Collection, Dict, Iterator, List, Mapping, Optional

import torch

__all__ = ["Evaluation", "LOOP_CHECKPOINT_KEYS", "StepOutput", "Task"]

#: What the loop itself writes into every checkpoint (besides ``format``).
LOOP_CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "scheduler", "scaler", "rng", "early_stopping", "history", "config")


@dataclass
class StepOutput:
    """What :meth:`Task.training_step` returns for one batch.

    Attributes:
        loss: the scalar to minimise (float32). A loss without a graph (``requires_grad`` False,
            e.g. a batch with no pair to learn from) makes no optimiser or schedule step.
        weight: how many units the loss averages over (lists, anchors, ...): the epoch's
            ``train_loss`` is ``sum(loss * weight) / sum(weight)``.
        items: items processed (documents, embeddings), for the throughput ``<unit>_per_s``.
    """

    loss: torch.Tensor
    weight: float
    items: int


@dataclass
class Evaluation:
    """Metrics of one split as sums and counts, so partial results combine exactly.

    ``means[m] = sums[m] / counts[m]`` (NaN when nothing counts): the mean over all queries or
    items however the split was divided, never a mean of per-part means. A distributed strategy
    all-reduces ``sums`` and ``counts`` and divides once.

    Attributes:
        sums: ``{metric: sum of the per-query (per-item) values that count}``.
        counts: ``{metric: number of values that count}`` (a float; values excluded by a
            convention, e.g. ``empty="skip"``, are in neither).
    """

    sums: Dict[str, float]
    counts: Dict[str, float]

    @property
    def means(self) -> Dict[str, float]:
        """``{metric: sums / counts}``, NaN for a metric with nothing counted."""
        return {name: (self.sums[name] / self.counts[name] if self.counts[name] else math.nan) for name in self.sums}


class Task(ABC):
    """One kind of training job, driven by the shared loop (see the module docstring).

    Attributes:
        config: the validated run config (the loop reads the sections listed above).
        model: the trained ``nn.Module``, set by :meth:`build`; its ``state_dict`` is the
            checkpoint's ``model`` and it is what the run's result holds.
        metric_names: canonical names of the metrics :meth:`evaluate` returns, in display order
            (the early-stopping metric among them).
        stop_metric: the canonical name of ``config.early_stopping.metric``.
        unit: what :attr:`StepOutput.items` counts, for the progress bar and ``<unit>_per_s``.
        loss_name: the loss, as named in messages.
        checkpoint_keys: entries of :meth:`state_dict` a checkpoint must hold to resume.
    """

    config: Any
    model: torch.nn.Module
    metric_names: List[str]
    stop_metric: str
    unit: str = "items"
    loss_name: str = "loss"
    checkpoint_keys: tuple = ()

    @abstractmethod
    def canonical_metric(self, name: str) -> str:
        """The canonical spelling of metric ``name`` (the keys of :class:`Evaluation`)."""

    @abstractmethod
    def prepare(self, state: Optional[Mapping[str, Any]]) -> None:
        """Read and check the data; ``state`` is the checkpoint being resumed (``None``: a fresh run).

        Runs before the run folder of a fresh run is created, so bad data leaves no folder.

        Raises:
            ConfigError: bad data, or data that does not fit the checkpoint.
        """

    def write_setup(self, folder: Any) -> None:
        """Write the files a fresh run folder gets before the first epoch (default: none)."""

    @abstractmethod
    def build(self, device: torch.device) -> None:
        """Build :attr:`model` (and the loss) on ``device``; called right after seeding."""

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """What the optimiser trains (default: the model's parameters)."""
        return self.model.parameters()

    @abstractmethod
    def train_batches(self, epoch: int) -> Collection[Any]:
        """The batches of ``epoch`` (1-based), a pure function of ``(seed, epoch)``; sets train mode."""

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Batches per epoch, for the learning-rate schedule."""

    @abstractmethod
    def training_step(self, batch: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> StepOutput:
        """Forward pass and loss of one batch (the loop does backward and the optimiser step)."""

    @abstractmethod
    def evaluate(self, split: str, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Optional[Evaluation]:
        """Every metric of :attr:`metric_names` on ``split`` with the current weights, in eval mode.

        Returns ``None`` when the task has no data for ``split``.
        """

    def state_dict(self) -> Dict[str, Any]:
        """Checkpoint entries beyond the loop's (learnable loss parameters, a fitted normaliser, ...)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; ``state`` is the whole checkpoint."""

    def start_message(self, device: torch.device, folder: Any) -> str:
        """The line logged when a fresh run starts."""
        return f"training on {device}; run folder {folder.path}"

    def final_metrics(self, folder: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Dict[str, Dict[str, float]]:
        """Metrics of the best weights on splits not tracked per epoch (e.g. ``test``), writing any
        outputs that go with them (predictions) into ``folder``."""
        return {}

    def baselines(self) -> Dict[str, Any]:
        """Reference models for the report: ``{key: {"label", "metrics": {split: {...}}, ...}}``."""
        return {}

    def report_identity(self) -> Dict[str, Any]:
        """Report entries naming what was trained (e.g. ``model``, ``loss``)."""
        return {}

    def report_context(self) -> Dict[str, Any]:
        """Report entries describing the data and the conventions of the metrics."""
        return {}
