"""The config-driven training loop: ``train(config)`` and ``resume(run_dir)``.

One loop drives every job through the :class:`~ltrkit.training.task.Task` interface
(:func:`run_task`, :func:`resume_task`); list ranking is :class:`RankingTask`. One epoch: the
task's batches for ``(seed, e)`` (``BatchLoader.set_epoch(e)`` for ranking: data order and slate
sampling are a function of ``(seed, e)``), a forward/backward/step per batch with the LR schedule
stepped per optimiser step, then the task's validation metrics (for ranking, scoring of every
validation document and :func:`ltrkit.metrics.evaluate_dataset`). The best epoch
(``early_stopping.metric``, higher is better, ``min_delta``) is kept in ``checkpoints/best.pt``;
``checkpoints/last.pt`` holds the complete state after every epoch, so ``resume(run_dir)``
continues to exactly the weights an uninterrupted run reaches (same seed, same machine, CPU).
After training the best weights are evaluated on vali and test, test predictions are written, and
the report compares the model with a random ranker, the best single feature and (LightGBM
installed) LambdaMART, and warns when the model does not beat its best single feature.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import platform
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

import ltrkit
from ltrkit.data.dataset import RankingDataset
from ltrkit.training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, state_error_summary
from ltrkit.training.config import ConfigError, TrainConfig, device_problem, load_config
from ltrkit.training.data_setup import PreparedData, prepare_data
from ltrkit.training.distributed import (
    EnsembleMembers,
    broadcast_buffers,
    broadcast_object,
    collective_errors,
    current_context,
    evaluation_shard,
    follow_run_folder,
    join_job,
    loss_for_step,
    reduce_evaluation,
    seed_epoch,
    shard_metric_sums,
    shutdown,
    sum_over_ranks,
    wrap_model,
)
from ltrkit.training.progress import ProgressReporter
from ltrkit.training.run_folder import (
    RunFolder,
    check_run_folder,
    check_writable,
    create_run_folder,
    new_run_path,
    output_errors,
    report_table,
)
from ltrkit.training.schedules import build_optimizer, build_scheduler
from ltrkit.training.task import LOOP_CHECKPOINT_KEYS, Evaluation, StepOutput, Task
from ltrkit.training.scoring import (
    autocast_context,
    best_single_feature,
    canonical_metric,
    evaluate_scores,
    metric_conventions,
    random_scores,
    resolved_conventions,
    score_dataset,
)

__all__ = [
    "RankingTask",
    "RegressionGateError",
    "TrainResult",
    "merge_overrides",
    "resolve_device",
    "resume",
    "resume_task",
    "resumed_config",
    "run_task",
    "train",
]

ConfigSource = Union[None, str, Path, Mapping[str, Any], TrainConfig]
EpochCallback = Callable[[int, Dict[str, Any]], None]


class RegressionGateError(RuntimeError):
    """The trained model landed below a metric declared in the config's ``expected`` section.

    ``failures`` lists ``{"split", "metric", "value", "expected"}``; ``result`` is the finished
    :class:`TrainResult` (the run folder and its report are complete).
    """

    def __init__(self, failures: List[Dict[str, Any]], result: "TrainResult") -> None:
        self.failures = failures
        self.result = result
        parts = [f"{f['split']} {f['metric']} = {f['value']:.4f} < expected {f['expected']:.4f}" for f in failures]
        super().__init__(f"regression gate failed for run {str(result.run_dir)!r}: " + "; ".join(parts))


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run folder.
        config: the resolved config (a :class:`TrainConfig` for list ranking).
        history: one record per epoch (``epoch``, ``train_loss``, ``lr``, ``seconds``,
            ``docs_per_s``, ``vali_<metric>`` ...).
        best_epoch: the epoch whose weights are in ``checkpoints/best.pt`` (1-based).
        stopped_early: whether early stopping ended the run before ``training.epochs``.
        metrics: ``{"vali": {...}, "test": {...}}`` of the best weights (splits that exist).
        baselines: ``{"random": {...}, "single_feature": {...}}`` as in ``report.json``.
        report: the content of ``report.json``.
        model: the trained model with the best weights, in eval mode, on the CPU.
    """

    run_dir: Path
    config: Any
    history: List[Dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    metrics: Dict[str, Dict[str, float]]
    baselines: Dict[str, Any]
    report: Dict[str, Any]
    model: torch.nn.Module = field(repr=False)

    def ranker(self, checkpoint: str = "best") -> Any:
        """A :class:`ltrkit.training.predict.Ranker` loaded from this run folder (list ranking runs)."""
        from ltrkit.training.predict import Ranker

        return Ranker.load(self.run_dir, checkpoint=checkpoint)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error.

    Raises:
        ConfigError: ``name`` is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a CUDA device
            was asked for but none (or not that one) is available.
    """
    problem = device_problem(name)
    if problem:
        raise ConfigError([f"device: {problem}"])
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError([f"device: {name!r} was asked for but no CUDA GPU is available; use 'cpu' or 'auto'"])
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError([f"device: {name!r} does not exist; {torch.cuda.device_count()} GPU(s) are visible"])
    return device


def train(
    config: ConfigSource = None,
    *,
    set: Sequence[str] = (),
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Optional[EpochCallback] = None,
    **overrides: Any,
) -> TrainResult:
    """Train a ranker as described by ``config`` and write its run folder.

    Args:
        config: a path to a ``.json``/``.yaml`` config, a dict, a :class:`TrainConfig`, or
            ``None`` for the default job (MLP on the built-in synthetic data).
        set: ``"key.path=value"`` overrides, exactly as ``ltrkit train --set``.
        datasets: in-memory ``{"train", "vali"?, "test"?}`` RankingDatasets used instead of the
            config's data files.
        overwrite: replace an existing non-empty run folder of the same name.
        quiet: no progress bar or tables (the default for the Python API).
        on_epoch_end: called as ``fn(epoch, record)`` after each epoch's checkpoint is written.
        **overrides: more overrides; ``section__field=value`` sets ``section.field`` and a
            dict value for a section is merged into it (``training={"epochs": 3}``).

    Returns:
        The :class:`TrainResult`.

    Raises:
        ConfigError: a bad config or bad data, before any training (lists every problem); a
            config with ``data.train_clicks`` (see :func:`ltrkit.clicks.train_on_clicks`).
        RunExistsError: (a ``FileExistsError``) the run folder exists and is not empty, and
            ``overwrite`` is False; checked before any data is read.
        OutputError: (an ``OSError``) a file of the run folder could not be written (full disk,
            read-only file system, no permission); an unwritable ``output.dir`` is found
            before any data is read.
        RegressionGateError: the model landed below the config's ``expected`` metrics.
    """
    resolved = _trains_on_labels(load_config(config, merge_overrides(set, overrides)))
    return run_task(RankingTask(resolved, datasets=datasets), overwrite=overwrite, quiet=quiet, on_epoch_end=on_epoch_end)


def resume(
    run_dir: Union[str, Path],
    *,
    set: Sequence[str] = (),
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    quiet: bool = True,
    on_epoch_end: Optional[EpochCallback] = None,
    **overrides: Any,
) -> TrainResult:
    """Continue an interrupted (or finished) run from ``run_dir/checkpoints/last.pt``.

    The run's ``config.resolved.json`` is reloaded; overrides may raise ``training.epochs`` to
    train longer, or change ``early_stopping.patience``, ``expected``, the TensorBoard/plot
    switches and the ``device``; anything else would make the continuation a different run and
    is refused. With the same config the result equals the uninterrupted run's weights exactly
    (CPU and GPU, same machine). A run that early stopping ended stays ended.

    Raises:
        ConfigError: ``run_dir`` is not a run folder, has no last checkpoint or one that cannot
            be read or restored (corrupt, truncated, refused by ``weights_only``), or an override
            changes a field that cannot change.
        OutputError: the run folder cannot be written.
    """
    folder, resolved = resumed_config(run_dir, load_config, merge_overrides(set, overrides))
    return resume_task(RankingTask(_trains_on_labels(resolved), datasets=datasets), folder, quiet=quiet, on_epoch_end=on_epoch_end)


def _trains_on_labels(config: TrainConfig) -> TrainConfig:
    """``config``, refused when it names a click log: training on it here would silently use
    ``data.train``'s labels instead (the click layer above training runs such configs)."""
    if config.data.train_clicks is not None:
        raise ConfigError(
            ["data.train_clicks: this config trains on a click log; run it with ltrkit.clicks.train_on_clicks "
             "(resume: ltrkit.clicks.resume_on_clicks), as `ltrkit train CONFIG` does"]
        )
    return config


def run_task(task: Task, *, overwrite: bool = False, quiet: bool = True, on_epoch_end: Optional[EpochCallback] = None) -> TrainResult:
    """Train ``task`` from scratch in a new run folder (``task.config.output``): the shared loop.

    Args:
        task: the job (its ``config`` is validated already).
        overwrite: replace an existing non-empty run folder of the same name.
        quiet: no progress bar or tables.
        on_epoch_end: called as ``fn(epoch, record)`` after each epoch's checkpoint is written.

    Raises:
        ConfigError, RunExistsError, OutputError, RegressionGateError: as :func:`train`.
    """
    return _Session(task, quiet=quiet).run_new(overwrite=overwrite, on_epoch_end=on_epoch_end)


def resume_task(task: Task, folder: RunFolder, *, quiet: bool = True, on_epoch_end: Optional[EpochCallback] = None) -> TrainResult:
    """Continue ``task`` in ``folder`` from ``checkpoints/last.pt`` (see :func:`resumed_config`).

    Raises:
        ConfigError: the checkpoint cannot be read or does not fit the task.
        OutputError: the run folder cannot be written.
    """
    return _Session(task, quiet=quiet).run_resume(folder, on_epoch_end=on_epoch_end)


def resumed_config(run_dir: Union[str, Path], load: Callable[..., Any], overrides: Mapping[str, Any]) -> tuple[RunFolder, Any]:
    """The run folder and the config a resumed run continues with.

    ``load(source, overrides)`` validates a config (:func:`load_config` for ranking); the
    saved ``config.resolved.json`` is reloaded with ``overrides``, which may change only the
    fields of ``_RESUMABLE_CHANGES``.

    Raises:
        ConfigError: ``run_dir`` is not a run folder or has no last checkpoint, or an override
            changes a field that cannot change.
    """
    folder = check_run_folder(run_dir)
    if not folder.checkpoint_path("last").is_file():
        raise ConfigError([f"{str(folder.path)!r} has no checkpoints/last.pt to resume from (no epoch finished)"], source="run")
    saved = load(folder.config_path)
    resolved = load(saved, overrides)
    before, after = _flat(saved.to_dict()), _flat(resolved.to_dict())
    changed = [
        key
        for key in dict.fromkeys([*before, *after])
        if before.get(key) != after.get(key) and not key.startswith(_RESUMABLE_CHANGES)
    ]
    if changed:
        raise ConfigError(
            [f"{key}: cannot change when resuming (only {', '.join(_RESUMABLE_CHANGES)} may change); start a new run instead" for key in changed],
            source="--resume",
        )
    return folder, resolved


# what may differ between a run's saved config and its resumed config: training longer, patience,
# the regression gate, how outputs are written, and the device (a run may continue on another
# machine; only the same device reproduces the uninterrupted run bit for bit)
_RESUMABLE_CHANGES = ("training.epochs", "early_stopping.patience", "expected", "output.tensorboard", "output.plots", "device")


def _flat(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not path.endswith(".args"):
            flat.update(_flat(value, path + "."))
        else:
            flat[path] = value
    return flat


def merge_overrides(set_items: Sequence[str], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """``{"key.path": value}`` of ``--set`` strings and ``section__field=value`` keyword overrides
    (a dict value for a section is merged into it)."""
    from ltrkit.training.config import parse_override

    merged: Dict[str, Any] = {}
    for text in set_items:
        parts, value = parse_override(text)
        merged[".".join(parts)] = value
    for key, value in overrides.items():
        path = key.replace("__", ".")
        if isinstance(value, Mapping):
            for sub_key, sub_value in _flatten(value, path).items():
                merged[sub_key] = sub_value
        else:
            merged[path] = value
    return merged


def _flatten(value: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}.{key}"
        if isinstance(item, Mapping) and item and not path.endswith(".args"):
            flat.update(_flatten(item, path))
        else:
            flat[path] = item
    return flat


@contextlib.contextmanager
def _torch_settings(config: TrainConfig) -> Iterator[None]:
    """Thread count and deterministic algorithms for the run, restored afterwards."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = config.deterministic and _resolved_device_type(config.device) == "cuda"
    torch.set_num_threads(config.num_threads or _available_cores())
    # CPU kernels are deterministic for a fixed thread count already; the switch matters on GPUs
    # (and its first call imports torch's compiler stack, seconds of start-up on a small machine)
    if cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        if cuda:
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)


class _Session:
    """One run of a :class:`~ltrkit.training.task.Task` (fresh or resumed): the shared loop.

    Internal: the public surface is :func:`train`/:func:`resume` (list ranking) and
    :func:`run_task`/:func:`resume_task` (any task).
    """

    def __init__(self, task: Task, *, quiet: bool) -> None:
        self.task = task
        self.config = task.config
        self.reporter = ProgressReporter(quiet=quiet, unit=task.unit)
        self.context = current_context()

    # ------------------------------------------------------------------ entry points
    def run_new(self, *, overwrite: bool, on_epoch_end: Optional[EpochCallback]) -> TrainResult:
        device = self._join(resolve_device(self.config.device))
        # an existing or unwritable run folder fails here, before the data is read and trained on
        path = new_run_path(self.config.output.dir, self.config.output.name, overwrite=overwrite)
        self.task.prepare(None)
        # under torchrun rank 0 alone creates and writes the folder
        folder = follow_run_folder(self.context, create_run_folder(path.parent, path.name, overwrite=overwrite) if self.context.is_main else None)
        # the saved config names its own folder (a timestamp when output.name was not given)
        self.config.output.name = folder.path.name
        self.reporter.log = folder.log
        try:
            folder.write_config(self.config.to_dict())
            self.task.write_setup(folder)
            return self._train(folder, device, state=None, on_epoch_end=on_epoch_end)
        finally:
            folder.close()
            shutdown(self.context)

    def _join(self, device: torch.device) -> torch.device:
        """Join the torchrun job, if any (:mod:`ltrkit.training.distributed`): ranks other than 0 print nothing."""
        self.context, device = join_job(device)
        self.reporter.quiet = self.reporter.quiet or not self.context.is_main
        return device

    def run_resume(self, folder: RunFolder, *, on_epoch_end: Optional[EpochCallback]) -> TrainResult:
        device = self._join(resolve_device(self.config.device))
        folder = follow_run_folder(self.context, folder)
        check_writable(folder.path)
        path = folder.checkpoint_path("last")
        try:
            state = load_checkpoint(path, required=LOOP_CHECKPOINT_KEYS + tuple(self.task.checkpoint_keys))
        except ValueError as error:
            raise ConfigError([f"{error}; cannot resume from it"], source="--resume") from error
        self.task.prepare(state)
        self.reporter.log = folder.log
        try:
            folder.write_config(self.config.to_dict())
            return self._train(folder, device, state=state, on_epoch_end=on_epoch_end)
        finally:
            folder.close()
            shutdown(self.context)

    # ------------------------------------------------------------------ the loop
    def _train(
        self,
        folder: RunFolder,
        device: torch.device,
        *,
        state: Optional[Dict[str, Any]],
        on_epoch_end: Optional[EpochCallback],
    ) -> TrainResult:
        config, task = self.config, self.task
        with _torch_settings(config):
            _seed_everything(config.seed)
            task.build(device)
            self.ddp_model = wrap_model(self.context, task.model, device)
            optimizer = build_optimizer(task.parameters(), config.optimizer)
            steps_per_epoch = task.steps_per_epoch()
            scheduler = build_scheduler(
                optimizer, config.schedule, total_steps=steps_per_epoch * config.training.epochs, steps_per_epoch=steps_per_epoch
            )
            amp_dtype = _amp_dtype(config.training.mixed_precision, device)
            scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

            history: List[Dict[str, Any]] = []
            best_value = -float("inf")
            best_epoch = 0
            bad_epochs = 0
            start_epoch = 1
            stopped_early = False
            if state is not None:
                try:
                    task.model.load_state_dict(state["model"])
                    task.load_state_dict(state)
                    optimizer.load_state_dict(state["optimizer"])
                    scheduler.load_state_dict(state["scheduler"])
                    if scaler is not None and state.get("scaler") is not None:
                        scaler.load_state_dict(state["scaler"])
                    restore_rng_state(state["rng"])
                    history = list(state["history"])
                    stopping = state["early_stopping"]
                    best_value, best_epoch, bad_epochs = stopping["best_value"], stopping["best_epoch"], stopping["bad_epochs"]
                    stopped_early = stopping["stopped"]
                    start_epoch = state["epoch"] + 1
                except (RuntimeError, ValueError, KeyError, TypeError) as error:
                    # a checkpoint that loads but does not fit this run (other shapes, a damaged entry)
                    raise ConfigError(
                        [f"{str(folder.checkpoint_path('last'))!r} does not match the run's model and optimiser: {state_error_summary(error)}"],
                        source="--resume",
                    ) from error
                self.reporter.message(f"resuming {folder.path} after epoch {state['epoch']}")
            else:
                self.reporter.message(task.start_message(device, folder))

            stop_split = config.early_stopping.split
            trained = False
            curves: Optional[Future] = None
            try:
                for epoch in range(start_epoch, config.training.epochs + 1):
                    if stopped_early:
                        break
                    # DDP's own collectives (gradient all-reduce, buffer broadcast) fail with one clear line too
                    with collective_errors(self.context, f"epoch {epoch} of training"):
                        record = self._train_epoch(epoch, optimizer, scheduler, scaler, device, amp_dtype)
                    for split in ("vali",) + (("train",) if stop_split == "train" else ()):
                        evaluation = reduce_evaluation(self.context, task.evaluate(split, device, amp_dtype))
                        if evaluation is not None:
                            for name, value in evaluation.means.items():
                                record[f"{split}_{name}"] = value
                    value = record[f"{stop_split}_{task.stop_metric}"]
                    improved = value > best_value + config.early_stopping.min_delta or best_epoch == 0
                    if improved:
                        best_value, best_epoch, bad_epochs = value, epoch, 0
                    else:
                        bad_epochs += 1
                    patience = config.early_stopping.patience
                    stopped_early = patience is not None and bad_epochs >= patience and epoch < config.training.epochs
                    improved, stopped_early = broadcast_object(self.context, (improved, stopped_early), what="broadcast of the early-stopping decision")
                    history.append(record)
                    checkpoint = {
                        "epoch": epoch,
                        "model": task.model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": None if scaler is None else scaler.state_dict(),
                        "rng": capture_rng_state(),
                        "early_stopping": {
                            "best_value": best_value,
                            "best_epoch": best_epoch,
                            "bad_epochs": bad_epochs,
                            "stopped": stopped_early,
                        },
                        "history": history,
                        "config": config.to_dict(),
                        **task.state_dict(),
                    }
                    if improved:
                        folder.write_checkpoint("best", checkpoint)
                    folder.write_checkpoint("last", checkpoint)
                    folder.write_history(history)
                    if config.output.tensorboard:
                        folder.log_scalars(epoch, record)
                    self.reporter.end_epoch(record, task.metric_names, best=improved)
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, record)
                    if stopped_early:
                        self.reporter.message(
                            f"early stopping: no {stop_split} {task.stop_metric} improvement for {bad_epochs} epochs"
                        )
                trained = True
            finally:
                # drawn once, not per epoch: a matplotlib figure costs ~0.4 s, more than a small
                # epoch; TensorBoard is the live view. After a complete loop it is drawn on a
                # thread while the test split is scored and the baselines train (the call
                # returns once curves.png is written); after a failure, before the error leaves
                if config.output.plots and history:
                    if trained:
                        # matplotlib is imported here, not on the thread: imports on two threads at
                        # once (the baselines import LightGBM) may meet half-initialised modules
                        for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
                            importlib.import_module(module)
                        curves = _in_background(folder.write_curves, list(history), task.metric_names)
                    else:
                        folder.write_curves(history, task.metric_names)
                self.reporter.close()
            train_seconds = sum(record["seconds"] for record in history)
            try:
                if not self.context.is_main:
                    # test metrics, predictions, baselines and the report are rank 0's
                    result = TrainResult(folder.path, config, history, best_epoch, stopped_early, {}, {}, {}, task.model.cpu().eval())
                else:
                    result = self._finish(folder, device, amp_dtype, history, best_epoch, stopped_early, train_seconds)
            except BaseException:
                if curves is not None:
                    curves.exception()  # waits; the error being raised is the one to report
                raise
            if curves is not None:
                curves.result()
            return result

    def _train_epoch(self, epoch, optimizer, scheduler, scaler, device, amp_dtype) -> Dict[str, Any]:
        config, task = self.config, self.task
        batches = task.train_batches(epoch)
        seed_epoch(self.context, config.seed, epoch)
        # the steps run through the DDP wrapper (gradients averaged over the ranks in backward);
        # everything else (checkpoints, evaluation) sees the task's own model
        model, task.model = task.model, self.ddp_model
        self.reporter.start_epoch(epoch, config.training.epochs, len(batches))
        started = time.perf_counter()
        loss_sum = 0.0
        weight = 0.0
        items = 0
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for batch in batches:
            step = task.training_step(batch, device, amp_dtype)
            loss = step.loss
            optimizer.zero_grad(set_to_none=True)
            # a batch without any pair/list signal (e.g. only one-document lists) may give a
            # constant loss with no graph: nothing to learn from it, so no optimiser/schedule step
            stepped = loss_for_step(self.context, loss, params)
            if stepped is not None:
                if scaler is not None:
                    scaler.scale(stepped).backward()
                    scaler.unscale_(optimizer)
                else:
                    stepped.backward()
                if config.training.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.training.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
            loss_value = float(loss.detach())
            if not np.isfinite(loss_value):
                raise FloatingPointError(
                    f"epoch {epoch}: the {task.loss_name} loss became {loss_value}; lower optimizer.lr, "
                    f"set training.grad_clip, or check the features for extreme values"
                )
            loss_sum += loss_value * step.weight
            weight += step.weight
            items += step.items
            elapsed = time.perf_counter() - started
            self.reporter.update(loss=loss_sum / max(weight, 1), rate=items / max(elapsed, 1e-9))
        task.model = model
        broadcast_buffers(self.context, model)
        loss_sum, weight, items = sum_over_ranks(self.context, loss_sum, weight, items)
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "train_loss": loss_sum / max(weight, 1),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": seconds,
            f"{task.unit}_per_s": items / max(seconds, 1e-9),
        }

    # ------------------------------------------------------------------ after training
    def _finish(self, folder, device, amp_dtype, history, best_epoch, stopped_early, train_seconds) -> TrainResult:
        config, task = self.config, self.task
        best_path = folder.checkpoint_path("best")
        if best_path.is_file():
            task.model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
        task.model.eval()
        metrics: Dict[str, Dict[str, float]] = {}
        best_record = next((record for record in history if record["epoch"] == best_epoch), {})
        if any(f"vali_{name}" in best_record for name in task.metric_names):
            # the best epoch's record was computed from exactly these weights in eval mode
            metrics["vali"] = {name: best_record.get(f"vali_{name}", float("nan")) for name in task.metric_names}
        metrics.update(task.final_metrics(folder, device, amp_dtype))
        baselines = task.baselines()
        report: Dict[str, Any] = {
            "run_name": folder.path.name,
            "run_dir": str(folder.path.resolve()),
            "device": str(device),
            "seed": config.seed,
            "versions": {"ltrkit": ltrkit.__version__, "torch": torch.__version__, "python": platform.python_version()},
            **task.report_identity(),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "stopped_early": stopped_early,
            "early_stopping_metric": f"{config.early_stopping.split}_{task.stop_metric}",
            "train_seconds": train_seconds,
            **task.report_context(),
            "metrics": metrics,
            "baselines": baselines,
        }
        failures: List[Dict[str, Any]] = []
        if config.expected:
            checks = []
            for split, table in config.expected.items():
                for raw_name, minimum in table.items():
                    name = task.canonical_metric(raw_name)
                    value = metrics.get(split, {}).get(name)
                    passed = value is not None and value >= minimum
                    checks.append({"split": split, "metric": name, "value": float("nan") if value is None else value, "expected": minimum, "passed": passed})
            report["expected_check"] = checks
            failures = [check for check in checks if not check["passed"]]
        shown = "; ".join(f"{split} {name} {value:.4f}" for split, table in metrics.items() for name, value in table.items())
        folder.log(f"finished: best epoch {best_epoch} of {len(history)}" + (f"; {shown}" if shown else ""))
        for warning in report.get("warnings", []):
            folder.log(f"warning: {warning}")
        folder.write_report(report)
        self._print_summary(report)
        result = TrainResult(
            run_dir=folder.path,
            config=config,
            history=history,
            best_epoch=best_epoch,
            stopped_early=stopped_early,
            metrics=metrics,
            baselines=baselines,
            report=report,
            model=task.model.cpu().eval(),
        )
        if failures:
            raise RegressionGateError(failures, result)
        return result

    def _print_summary(self, report: Mapping[str, Any]) -> None:
        if self.reporter.quiet:
            return
        from rich.console import Console
        from rich.table import Table

        rows = report_table(report)
        table = Table(title=f"run {report['run_name']}: best epoch {report['best_epoch']} of {report['epochs_run']}", title_justify="left")
        for index, title in enumerate(rows[0] if rows else []):
            table.add_column(title, justify="left" if index == 0 else "right")
        for row in rows[1:]:
            table.add_row(*row)
        console = Console()
        console.print(table)
        for warning in report.get("warnings", []):
            console.print(f"warning: {warning}", style="yellow", markup=False)
        console.print(f"run folder: {report['run_dir']}")


class RankingTask(Task):
    """List ranking (the :func:`train` job): a scorer of ``[B, L, F]`` padded lists, a list loss,
    validation by :func:`ltrkit.metrics.evaluate_dataset` per query.

    A batch is a :class:`ltrkit.data.batching.Batch` of queries (length-bucketed, slates cut to
    ``training.max_slate_length``); the epoch's ``train_loss`` is the mean over lists. Besides the
    loop's entries a checkpoint holds the loss's learnable state (``loss``), the fitted normaliser
    (``normalizer``) and the feature count (``n_features``). After training the best weights
    score the test split (``predictions/test.{scores,trec}``) and the report adds a random ranker,
    the best single feature and LambdaMART. Loop sizes the config leaves out (``None``/``"auto"``)
    are resolved from the training data in :meth:`prepare`; with ``training.ensemble > 1`` the
    model is an :class:`~ltrkit.models.ensemble.EnsembleRanker` (:func:`build_ranking_model`).

    Args:
        config: the validated :class:`TrainConfig`.
        datasets: in-memory ``{"train", "vali"?, "test"?}`` splits used instead of the config's files.
    """

    unit = "docs"
    checkpoint_keys = ("loss", "normalizer", "n_features")

    def __init__(self, config: TrainConfig, *, datasets: Optional[Mapping[str, RankingDataset]] = None) -> None:
        self.config = config
        self.datasets = datasets
        self.loss_name = config.loss.name
        self.stop_metric = canonical_metric(config.early_stopping.metric)
        gated = [name for table in config.expected.values() for name in table]
        self.metric_names = list(
            dict.fromkeys([canonical_metric(name) for name in list(config.evaluation.metrics) + gated] + [self.stop_metric])
        )
        self.conventions = metric_conventions(config.evaluation)
        self.data: Optional[PreparedData] = None
        self._test_metrics: Dict[str, float] = {}
        self._warnings: List[str] = []

    def canonical_metric(self, name: str) -> str:
        return canonical_metric(name)

    def prepare(self, state: Optional[Mapping[str, Any]]) -> None:
        if state is None:
            self.data = prepare_data(self.config, datasets=self.datasets)
        else:
            self.data = prepare_data(self.config, datasets=self.datasets, normalizer_state=state["normalizer"])
            if self.data.train.n_features != state["n_features"]:
                raise ConfigError(
                    [f"data: the run was trained on {state['n_features']} features, the data now has {self.data.train.n_features}"], source="run"
                )
        self._resolve_sizes()

    def _resolve_sizes(self) -> None:
        """Fill in the loop sizes the config leaves to the data (:mod:`ltrkit.training.autosize`).

        The loop writes the config after :meth:`prepare`, so ``config.resolved.json`` holds the
        numbers used and a resumed run continues with them.
        """
        from ltrkit.training.autosize import auto_batch_size, auto_epochs, auto_patience

        training, stopping = self.config.training, self.config.early_stopping
        if training.batch_size is None:
            training.batch_size = auto_batch_size(self.data.train.n_queries)
        if training.epochs is None:
            training.epochs = auto_epochs(len(self._loader()), training.step_budget)
        if stopping.patience == "auto":
            stopping.patience = auto_patience(training.epochs)

    def _loader(self) -> Any:
        from ltrkit.data.batching import BatchLoader

        training = self.config.training
        return BatchLoader(
            self.data.train,
            batch_size=training.batch_size,
            shuffle=True,
            seed=self.config.seed,
            bucket_by_length=training.bucket_by_length,
            max_slate_length=training.max_slate_length,
            truncation=training.truncation,
            sublist_fraction=training.sublist_fraction,
            max_docs_per_batch=training.max_docs_per_batch,
            num_replicas=current_context().world_size,
            rank=current_context().rank,
        )

    def write_setup(self, folder: RunFolder) -> None:
        folder.write_normalizer(self.data.normalizer)

    def build(self, device: torch.device) -> None:
        import ltrkit.losses

        config = self.config
        self.model = build_ranking_model(config, self.data.train.n_features).to(device)
        self.loss_fn = ltrkit.losses.get(config.loss.name, **config.loss.args).to(device)
        self.loader = self._loader()

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return itertools.chain(self.model.parameters(), self.loss_fn.parameters())

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def train_batches(self, epoch: int) -> Any:
        self.loader.set_epoch(epoch)
        self.model.train()
        self.loss_fn.train()
        return self.loader

    def training_step(self, batch: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> StepOutput:
        from ltrkit.models.ensemble import EnsembleRanker

        batch = batch.to(device)
        # an ensemble's members learn side by side from the same batches: the sum of their losses
        # gives each member exactly the gradient it would get alone. One forward returns every
        # member's scores [K, B, L] (under torchrun the model is DDP over that same view)
        scorer = EnsembleMembers(self.model) if isinstance(self.model, EnsembleRanker) else self.model
        with autocast_context(device, amp_dtype):
            output = scorer(batch.features, batch.mask)
        scores = output.unbind(0) if output.dim() == 3 else [output]
        # losses run in float32 whatever the autocast dtype: their sorts and exps need the range
        losses = [self.loss_fn(member_scores.float(), batch.labels, batch.mask) for member_scores in scores]
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        return StepOutput(loss=loss, weight=int(batch.mask.any(dim=-1).sum()), items=int(batch.mask.sum()))

    def evaluate(self, split: str, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Optional[Evaluation]:
        dataset = self.data.split(split)
        if dataset is None:
            return None
        # under torchrun each rank scores its shard of the queries; the loop all-reduces the sums
        shard = evaluation_shard(current_context(), dataset)
        scores = score_dataset(
            self.model, dataset, batch_size=self.config.training.eval_batch_size, device=device, amp_dtype=amp_dtype, queries=shard
        )
        return self._evaluation(dataset, scores, shard)

    def _evaluation(self, dataset: RankingDataset, scores: np.ndarray, queries: Optional[np.ndarray] = None) -> Evaluation:
        """Sums and counts of the per-query metrics of ``queries`` (default: every query)."""
        names = self.metric_names
        shard = np.arange(dataset.n_queries) if queries is None else queries
        sums, counts = shard_metric_sums(dataset, scores, shard, names, self.conventions)
        return Evaluation(sums={name: float(sums[j]) for j, name in enumerate(names)}, counts={name: float(counts[j]) for j, name in enumerate(names)})

    def state_dict(self) -> Dict[str, Any]:
        return {"loss": self.loss_fn.state_dict(), "normalizer": self.data.normalizer.state_dict(), "n_features": self.data.train.n_features}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss_fn.load_state_dict(state["loss"])

    def start_message(self, device: torch.device, folder: RunFolder) -> str:
        train_data = self.data.train
        return (
            f"training {self.config.model.name} with {self.config.loss.name} on {train_data.n_queries} queries "
            f"({train_data.n_docs} docs, {train_data.n_features} features) on {device}; run folder {folder.path}"
        )

    def final_metrics(self, folder: RunFolder, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Dict[str, Dict[str, float]]:
        test = self.data.test
        if test is None:
            return {}
        scores = score_dataset(self.model, test, batch_size=self.config.training.eval_batch_size, device=device, amp_dtype=amp_dtype)
        metrics = {"test": evaluate_scores(test, scores, self.metric_names, self.conventions)}
        self._test_metrics = metrics["test"]
        self._write_predictions(folder, test, scores)
        return metrics

    def _write_predictions(self, folder: RunFolder, dataset: RankingDataset, scores: np.ndarray) -> None:
        from ltrkit.metrics import write_trec_run

        folder.write_text("predictions/test.scores", format_scores(scores))
        trec = folder.predictions_dir / "test.trec"
        with output_errors(trec):
            write_trec_run(trec, dataset, scores, tag=f"ltrkit-{folder.path.name}")

    def baselines(self) -> Dict[str, Any]:
        """Random ranker, best single feature (chosen on vali, else train) and, when LightGBM is
        installed and ``evaluation.lightgbm_baseline`` is on, LambdaMART (:mod:`ltrkit.training.gbdt`),
        on the test split."""
        from ltrkit.training.gbdt import lambdamart_baseline, lightgbm_available

        config, data = self.config, self.data
        test = data.test
        if not config.evaluation.baselines or test is None:
            return {}
        baselines: Dict[str, Any] = {
            "random": {
                "label": "random",
                "seed": config.seed,
                "metrics": {"test": evaluate_scores(test, random_scores(test, seed=config.seed), self.metric_names, self.conventions)},
            }
        }
        selection_split = "vali" if data.vali is not None else "train"
        chosen = best_single_feature(data.split(selection_split), metric=self.stop_metric, conventions=self.conventions)
        scores = chosen["sign"] * np.asarray(test.features[:, chosen["feature"]], dtype=np.float64)
        baselines["single_feature"] = {
            "label": f"feature col {chosen['feature']}{'' if chosen['sign'] > 0 else ' negated'}",
            "feature_column": chosen["feature"],
            "sign": chosen["sign"],
            "chosen_on": selection_split,
            f"{selection_split}_{self.stop_metric}": chosen["value"],
            "metrics": {"test": evaluate_scores(test, scores, self.metric_names, self.conventions)},
        }
        if config.evaluation.lightgbm_baseline and lightgbm_available():
            # the same transformed train split, stopped on the split that selects the model's epoch
            baselines["lightgbm"] = lambdamart_baseline(
                data.train,
                data.split(config.early_stopping.split),
                {"test": test},
                stop_metric=self.stop_metric,
                seed=config.seed,
                num_threads=config.num_threads,
                metric_names=self.metric_names,
                conventions=self.conventions,
            )
        self._warnings = self._baseline_warnings(baselines)
        return baselines

    def _baseline_warnings(self, baselines: Mapping[str, Any]) -> List[str]:
        """A warning when the model's test metric does not beat its best single feature's."""
        ours = self._test_metrics.get(self.stop_metric)
        single = baselines.get("single_feature", {}).get("metrics", {}).get("test", {}).get(self.stop_metric)
        if ours is None or single is None or ours > single:
            return []
        return [
            f"the model's test {self.stop_metric} {ours:.4f} does not beat its best single feature "
            f"({baselines['single_feature']['label']}: {single:.4f}); train longer, tune, or check the data"
        ]

    def report_identity(self) -> Dict[str, Any]:
        return {"model": self.config.model.name, "loss": self.config.loss.name}

    def report_context(self) -> Dict[str, Any]:
        # the loop asks for the context after final_metrics and baselines, which set the warnings
        return {"data": self.data.summary, "conventions": resolved_conventions(self.conventions), "warnings": list(self._warnings)}


def build_ranking_model(config: TrainConfig, n_features: int) -> torch.nn.Module:
    """The scorer of a ranking run: ``config.model``, or with ``training.ensemble: N > 1`` an
    :class:`~ltrkit.models.ensemble.EnsembleRanker` of N of them combined by ``training.ensemble_combine``.

    Member 0 is initialised from the global torch RNG exactly as a plain model would be (the loop
    seeds it with ``seed`` just before), member ``k`` from ``seed + k`` without moving the global
    RNG, so an ensemble of one is the plain model and the first member of any ensemble starts as it.
    """
    from ltrkit.models import build_model
    from ltrkit.models.ensemble import EnsembleRanker

    def member() -> torch.nn.Module:
        return build_model(config.model.name, n_features, **config.model.args)

    if config.training.ensemble == 1:
        return member()
    members = [member()]
    for k in range(1, config.training.ensemble):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + k)
            members.append(member())
    return EnsembleRanker(members, combine=config.training.ensemble_combine)


def format_scores(scores: np.ndarray) -> str:
    """One score per line, 9 significant digits (enough to round-trip a float32 exactly)."""
    return "".join(f"{value:.9g}\n" for value in np.asarray(scores, dtype=np.float64))


def _amp_dtype(setting: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype: never on CPU; ``auto`` is bf16 on GPUs that support it."""
    if device.type != "cuda" or setting == "off":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _in_background(function: Callable[..., None], *args: Any) -> Future:
    """``function(*args)`` on a thread of its own; the Future's ``result()`` waits and re-raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltrkit-curves")
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)


def _available_cores() -> int:
    """Cores this process may run on (the affinity mask in containers), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _resolved_device_type(name: str) -> str:
    return "cuda" if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()) else "cpu"


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
