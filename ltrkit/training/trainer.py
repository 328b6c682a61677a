"""The config-driven training loop: ``train(config)`` and ``resume(run_dir)``.

One epoch: ``BatchLoader.set_epoch(e)`` (data order and slate sampling are a function of
``(seed, e)``), a forward/backward/step per batch with the LR schedule stepped per optimiser
step, then scoring of every validation document and :func:`ltrkit.metrics.evaluate_dataset`.
The best epoch (``early_stopping.metric``, higher is better, ``min_delta``) is kept in
``checkpoints/best.pt``; ``checkpoints/last.pt`` holds the complete state after every epoch, so
``resume(run_dir)`` continues to exactly the weights an uninterrupted run reaches (same seed, same
machine, CPU). After training the best weights are evaluated on vali and test, test predictions
are written, and the report compares the model with a random ranker and the best single feature.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

import ltrkit
from ltrkit.data.dataset import RankingDataset
from ltrkit.training.checkpoint import CHECKPOINT_KEYS, capture_rng_state, load_checkpoint, restore_rng_state, state_error_summary
from ltrkit.training.config import ConfigError, TrainConfig, device_problem, load_config
from ltrkit.training.data_setup import PreparedData, prepare_data
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

__all__ = ["RegressionGateError", "TrainResult", "train", "resume", "resolve_device"]

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
        config: the resolved config.
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
    config: TrainConfig
    history: List[Dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    metrics: Dict[str, Dict[str, float]]
    baselines: Dict[str, Any]
    report: Dict[str, Any]
    model: torch.nn.Module = field(repr=False)

    def ranker(self, checkpoint: str = "best") -> Any:
        """A :class:`ltrkit.training.predict.Ranker` loaded from this run folder."""
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
        ConfigError: a bad config or bad data, before any training (lists every problem).
        RunExistsError: (a ``FileExistsError``) the run folder exists and is not empty, and
            ``overwrite`` is False; checked before any data is read.
        OutputError: (an ``OSError``) a file of the run folder could not be written (full disk,
            read-only file system, no permission); an unwritable ``output.dir`` is found
            before any data is read.
        RegressionGateError: the model landed below the config's ``expected`` metrics.
    """
    resolved = load_config(config, _merge_overrides(set, overrides))
    return _Session(resolved, quiet=quiet).run_new(datasets=datasets, overwrite=overwrite, on_epoch_end=on_epoch_end)


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
    folder = check_run_folder(run_dir)
    if not folder.checkpoint_path("last").is_file():
        raise ConfigError([f"{str(folder.path)!r} has no checkpoints/last.pt to resume from (no epoch finished)"], source="run")
    saved = load_config(folder.config_path)
    resolved = load_config(saved, _merge_overrides(set, overrides))
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
    return _Session(resolved, quiet=quiet).run_resume(folder, datasets=datasets, on_epoch_end=on_epoch_end)


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


def _merge_overrides(set_items: Sequence[str], overrides: Mapping[str, Any]) -> Dict[str, Any]:
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
    """One training run (fresh or resumed). Internal: the public surface is train()/resume()."""

    def __init__(self, config: TrainConfig, *, quiet: bool) -> None:
        self.config = config
        self.reporter = ProgressReporter(quiet=quiet)
        self.stop_metric = canonical_metric(config.early_stopping.metric)
        gated = [name for table in config.expected.values() for name in table]
        self.metric_names = list(
            dict.fromkeys([canonical_metric(name) for name in list(config.evaluation.metrics) + gated] + [self.stop_metric])
        )
        self.conventions = metric_conventions(config.evaluation)

    # ------------------------------------------------------------------ entry points
    def run_new(self, *, datasets: Optional[Mapping[str, RankingDataset]], overwrite: bool, on_epoch_end: Optional[EpochCallback]) -> TrainResult:
        device = resolve_device(self.config.device)
        # an existing or unwritable run folder fails here, before the data is read and trained on
        path = new_run_path(self.config.output.dir, self.config.output.name, overwrite=overwrite)
        data = prepare_data(self.config, datasets=datasets)
        folder = create_run_folder(path.parent, path.name, overwrite=overwrite)
        # the saved config names its own folder (a timestamp when output.name was not given)
        self.config.output.name = folder.path.name
        self.reporter.log = folder.log
        try:
            folder.write_config(self.config.to_dict())
            folder.write_normalizer(data.normalizer)
            return self._train(folder, data, device, state=None, on_epoch_end=on_epoch_end)
        finally:
            folder.close()

    def run_resume(self, folder: RunFolder, *, datasets: Optional[Mapping[str, RankingDataset]], on_epoch_end: Optional[EpochCallback]) -> TrainResult:
        device = resolve_device(self.config.device)
        check_writable(folder.path)
        path = folder.checkpoint_path("last")
        try:
            state = load_checkpoint(path, required=CHECKPOINT_KEYS)
        except ValueError as error:
            raise ConfigError([f"{error}; cannot resume from it"], source="--resume") from error
        data = prepare_data(self.config, datasets=datasets, normalizer_state=state["normalizer"])
        if data.train.n_features != state["n_features"]:
            raise ConfigError(
                [f"data: the run was trained on {state['n_features']} features, the data now has {data.train.n_features}"], source="run"
            )
        self.reporter.log = folder.log
        try:
            folder.write_config(self.config.to_dict())
            return self._train(folder, data, device, state=state, on_epoch_end=on_epoch_end)
        finally:
            folder.close()

    # ------------------------------------------------------------------ the loop
    def _train(
        self,
        folder: RunFolder,
        data: PreparedData,
        device: torch.device,
        *,
        state: Optional[Dict[str, Any]],
        on_epoch_end: Optional[EpochCallback],
    ) -> TrainResult:
        import ltrkit.losses
        from ltrkit.data.batching import BatchLoader
        from ltrkit.models import build_model

        config = self.config
        with _torch_settings(config):
            _seed_everything(config.seed)
            model = build_model(config.model.name, data.train.n_features, **config.model.args).to(device)
            loss_fn = ltrkit.losses.get(config.loss.name, **config.loss.args).to(device)
            optimizer = build_optimizer(itertools.chain(model.parameters(), loss_fn.parameters()), config.optimizer)
            loader = BatchLoader(
                data.train,
                batch_size=config.training.batch_size,
                shuffle=True,
                seed=config.seed,
                bucket_by_length=config.training.bucket_by_length,
                max_slate_length=config.training.max_slate_length,
                truncation=config.training.truncation,
                max_docs_per_batch=config.training.max_docs_per_batch,
            )
            steps_per_epoch = len(loader)
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
                    model.load_state_dict(state["model"])
                    loss_fn.load_state_dict(state["loss"])
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
                self.reporter.message(
                    f"training {config.model.name} with {config.loss.name} on {data.train.n_queries} queries "
                    f"({data.train.n_docs} docs, {data.train.n_features} features) on {device}; run folder {folder.path}"
                )

            stop_split = config.early_stopping.split
            try:
                for epoch in range(start_epoch, config.training.epochs + 1):
                    if stopped_early:
                        break
                    record = self._train_epoch(epoch, model, loss_fn, optimizer, scheduler, scaler, loader, device, amp_dtype)
                    for split in ("vali",) + (("train",) if stop_split == "train" else ()):
                        dataset = data.split(split)
                        if dataset is not None:
                            scores = score_dataset(model, dataset, batch_size=config.training.eval_batch_size, device=device, amp_dtype=amp_dtype)
                            for name, value in evaluate_scores(dataset, scores, self.metric_names, self.conventions).items():
                                record[f"{split}_{name}"] = value
                    value = record[f"{stop_split}_{self.stop_metric}"]
                    improved = value > best_value + config.early_stopping.min_delta or best_epoch == 0
                    if improved:
                        best_value, best_epoch, bad_epochs = value, epoch, 0
                    else:
                        bad_epochs += 1
                    patience = config.early_stopping.patience
                    stopped_early = patience is not None and bad_epochs >= patience and epoch < config.training.epochs
                    history.append(record)
                    checkpoint = {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "loss": loss_fn.state_dict(),
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
                        "normalizer": data.normalizer.state_dict(),
                        "n_features": data.train.n_features,
                    }
                    if improved:
                        folder.write_checkpoint("best", checkpoint)
                    folder.write_checkpoint("last", checkpoint)
                    folder.write_history(history)
                    if config.output.tensorboard:
                        folder.log_scalars(epoch, record)
                    self.reporter.end_epoch(record, self.metric_names, best=improved)
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, record)
                    if stopped_early:
                        self.reporter.message(
                            f"early stopping: no {stop_split} {self.stop_metric} improvement for {bad_epochs} epochs"
                        )
            finally:
                # drawn once, not per epoch: a matplotlib figure costs ~0.4 s, more than a small
                # epoch; TensorBoard is the live view
                if config.output.plots and history:
                    folder.write_curves(history, self.metric_names)
                self.reporter.close()
            train_seconds = sum(record["seconds"] for record in history)
            return self._finish(folder, data, device, amp_dtype, model, history, best_epoch, stopped_early, train_seconds)

    def _train_epoch(self, epoch, model, loss_fn, optimizer, scheduler, scaler, loader, device, amp_dtype) -> Dict[str, Any]:
        config = self.config
        loader.set_epoch(epoch)
        model.train()
        loss_fn.train()
        self.reporter.start_epoch(epoch, config.training.epochs, len(loader))
        started = time.perf_counter()
        loss_sum = 0.0
        lists = 0
        docs = 0
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for batch in loader:
            batch = batch.to(device)
            with autocast_context(device, amp_dtype):
                scores = model(batch.features, batch.mask)
            # losses run in float32 whatever the autocast dtype: their sorts and exps need the range
            loss = loss_fn(scores.float(), batch.labels, batch.mask)
            optimizer.zero_grad(set_to_none=True)
            # a batch without any pair/list signal (e.g. only one-document lists) may give a
            # constant loss with no graph: nothing to learn from it, so no optimiser/schedule step
            if loss.requires_grad:
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if config.training.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.training.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
            n_lists = int(batch.mask.any(dim=-1).sum())
            loss_value = float(loss.detach())
            if not np.isfinite(loss_value):
                raise FloatingPointError(
                    f"epoch {epoch}: the {config.loss.name} loss became {loss_value}; lower optimizer.lr, "
                    f"set training.grad_clip, or check the features for extreme values"
                )
            loss_sum += loss_value * n_lists
            lists += n_lists
            docs += int(batch.mask.sum())
            elapsed = time.perf_counter() - started
            self.reporter.update(loss=loss_sum / max(lists, 1), docs_per_s=docs / max(elapsed, 1e-9))
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "train_loss": loss_sum / max(lists, 1),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": seconds,
            "docs_per_s": docs / max(seconds, 1e-9),
        }

    # ------------------------------------------------------------------ after training
    def _finish(self, folder, data, device, amp_dtype, model, history, best_epoch, stopped_early, train_seconds) -> TrainResult:
        config = self.config
        best_path = folder.checkpoint_path("best")
        if best_path.is_file():
            model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
        model.eval()
        metrics: Dict[str, Dict[str, float]] = {}
        test_scores = None
        if data.vali is not None and best_epoch > 0:
            # the best epoch's record was computed from exactly these weights in eval mode
            best_record = next(record for record in history if record["epoch"] == best_epoch)
            metrics["vali"] = {name: best_record.get(f"vali_{name}", float("nan")) for name in self.metric_names}
        if data.test is not None:
            test_scores = score_dataset(model, data.test, batch_size=config.training.eval_batch_size, device=device, amp_dtype=amp_dtype)
            metrics["test"] = evaluate_scores(data.test, test_scores, self.metric_names, self.conventions)
        if test_scores is not None:
            self._write_predictions(folder, data.test, test_scores)
        baselines = self._baselines(data) if config.evaluation.baselines else {}
        report: Dict[str, Any] = {
            "run_name": folder.path.name,
            "run_dir": str(folder.path.resolve()),
            "device": str(device),
            "seed": config.seed,
            "versions": {"ltrkit": ltrkit.__version__, "torch": torch.__version__, "python": platform.python_version()},
            "model": config.model.name,
            "loss": config.loss.name,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "stopped_early": stopped_early,
            "early_stopping_metric": f"{config.early_stopping.split}_{self.stop_metric}",
            "train_seconds": train_seconds,
            "data": data.summary,
            "conventions": resolved_conventions(self.conventions),
            "metrics": metrics,
            "baselines": baselines,
        }
        failures: List[Dict[str, Any]] = []
        if config.expected:
            checks = []
            for split, table in config.expected.items():
                for raw_name, minimum in table.items():
                    name = canonical_metric(raw_name)
                    value = metrics.get(split, {}).get(name)
                    passed = value is not None and value >= minimum
                    checks.append({"split": split, "metric": name, "value": float("nan") if value is None else value, "expected": minimum, "passed": passed})
            report["expected_check"] = checks
            failures = [check for check in checks if not check["passed"]]
        shown = "; ".join(f"{split} {name} {value:.4f}" for split, table in metrics.items() for name, value in table.items())
        folder.log(f"finished: best epoch {best_epoch} of {len(history)}" + (f"; {shown}" if shown else ""))
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
            model=model.cpu().eval(),
        )
        if failures:
            raise RegressionGateError(failures, result)
        return result

    def _write_predictions(self, folder: RunFolder, dataset: RankingDataset, scores: np.ndarray) -> None:
        from ltrkit.metrics import write_trec_run

        folder.write_text("predictions/test.scores", format_scores(scores))
        trec = folder.predictions_dir / "test.trec"
        with output_errors(trec):
            write_trec_run(trec, dataset, scores, tag=f"ltrkit-{folder.path.name}")

    def _baselines(self, data: PreparedData) -> Dict[str, Any]:
        """Random ranker and best single feature (chosen on vali, else train), on the test split."""
        config = self.config
        test = data.test
        if test is None:
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
        return baselines

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
        console.print(f"run folder: {report['run_dir']}")


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
