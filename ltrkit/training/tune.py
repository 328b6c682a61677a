"""Hyperparameter search over a training config with Optuna: ``tune(config, trials=N)``.

The config is a training config plus a ``tune`` section naming the search space, one entry per
dotted config path (the paths of ``--set``)::

    "tune": {
      "trials": 20,
      "sampler": "tpe",
      "pruner": "median",
      "seed": 0,
      "space": {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
        "model.args.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "training.batch_size": {"type": "int", "low": 8, "high": 64, "log": true},
        "loss": {"type": "categorical", "choices": [{"name": "softmax"}, {"name": "lambdarank"}]}
      }
    }

Every trial is an ordinary run (:func:`ltrkit.train`) in ``<output.dir>/<output.name>/trial-NNN/``
whose value is its best epoch's *validation* ``early_stopping.metric`` (higher is better): the
test split is never looked at to choose. After each epoch the trial reports its validation
value to Optuna through ``on_epoch_end``, and the pruner (``median``: Optuna's
``MedianPruner``, or ``none``) may stop it there; a pruned trial's folder keeps its last
checkpoint and history. The study folder gets ``leaderboard.csv`` / ``leaderboard.md`` (every
trial, best first), ``best_value.png`` (the best value after each trial) and ``tune.json`` (the
best trial, its overrides and run folder). Optuna is optional: ``pip install 'ltrkit[tune]'``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ltrkit._optional import require
from ltrkit.data.dataset import RankingDataset
from ltrkit.losses import PairMemoryError
from ltrkit.training import _io
from ltrkit.training.config import ConfigError, apply_overrides, load_config, read_config_file
from ltrkit.training.run_folder import create_run_folder, output_errors

__all__ = ["ParameterSpace", "TuneConfig", "TuneResult", "split_tune_section", "tune"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterSpace(_Strict):
    """One searched config field: a float or int range, or a list of choices (any JSON values)."""

    type: Literal["float", "int", "categorical"] = Field(description="float, int or categorical")
    low: Optional[float] = Field(None, description="float/int: lowest value")
    high: Optional[float] = Field(None, description="float/int: highest value")
    log: bool = Field(False, description="float/int: sample on a log scale")
    choices: Optional[List[Any]] = Field(None, min_length=1, description="categorical: the values (numbers, strings, lists, objects)")

    @model_validator(mode="after")
    def _consistent(self) -> "ParameterSpace":
        if self.type == "categorical":
            if self.choices is None or self.low is not None or self.high is not None:
                raise ValueError("a categorical entry takes choices only")
            return self
        if self.low is None or self.high is None or self.choices is not None:
            raise ValueError(f"a {self.type} entry takes low and high (no choices)")
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log=true needs low > 0, got low={self.low}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int entry needs whole low/high, got low={self.low}, high={self.high}")
        return self


class TuneConfig(_Strict):
    """The ``tune`` section of a config."""

    trials: int = Field(20, ge=1, description="trials to run (ltrkit tune --trials overrides it)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: tpe or random")
    pruner: Literal["median", "none"] = Field("median", description="stop unpromising trials after an epoch: median or none")
    seed: int = Field(0, description="seed of the sampler")
    space: Dict[str, ParameterSpace] = Field(min_length=1, description="dotted config path -> its search range or choices")


@dataclass
class TuneResult:
    """A finished search.

    Attributes:
        study_dir: the folder holding every trial's run folder and the leaderboard.
        best_value: the best trial's validation value of the stopping metric.
        best_overrides: ``{dotted path: value}`` of the best trial.
        best_run_dir: the best trial's run folder.
        leaderboard: one row per trial, best first (``trial``, ``state``, ``value``, ``run_dir``,
            and the sampled values).
    """

    study_dir: Path
    best_value: float
    best_overrides: Dict[str, Any]
    best_run_dir: Path
    leaderboard: List[Dict[str, Any]]


def split_tune_section(source: Union[str, Path, Mapping[str, Any]]) -> tuple[Dict[str, Any], TuneConfig]:
    """Split a config (file or dict) into the training config and its validated ``tune`` section.

    Raises:
        ConfigError: the file cannot be read, the ``tune`` section is missing or invalid (every
            problem, each with its dotted path).
    """
    label = "config" if isinstance(source, Mapping) else str(source)
    raw = dict(source) if isinstance(source, Mapping) else read_config_file(source)
    section = raw.pop("tune", None)
    if not isinstance(section, Mapping):
        raise ConfigError(["tune: the config needs a 'tune' section with a 'space' to search"], source=label)
    try:
        return raw, TuneConfig.model_validate(section)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            path = ".".join(["tune", *(str(part) for part in item["loc"])])
            problems.append(f"{path}: {item['msg'].removeprefix('Value error, ')}")
        raise ConfigError(problems, source=label) from None


def tune(
    config: Union[str, Path, Mapping[str, Any]],
    *,
    trials: Optional[int] = None,
    set: Sequence[str] = (),
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    overwrite: bool = False,
    quiet: bool = True,
) -> TuneResult:
    """Search the config's ``tune.space`` for the best validation value of ``early_stopping.metric``.

    Args:
        config: a config file or dict with a ``tune`` section (see the module docstring).
        trials: number of trials (default: ``tune.trials``).
        set: ``"key.path=value"`` overrides of the training config, as ``ltrkit train --set``.
        datasets: in-memory splits used by every trial instead of the config's files.
        overwrite: replace an existing study folder ``<output.dir>/<output.name>``.
        quiet: no per-trial line.

    Returns:
        The :class:`TuneResult`.

    Raises:
        MissingExtraError: Optuna is not installed (the message names ``pip install 'ltrkit[tune]'``).
        ConfigError: a bad config or ``tune`` section, a space entry the config refuses, model
            selection not on the validation split, or no trial that finished.
        RunExistsError: the study folder exists and is not empty, and ``overwrite`` is False.
    """
    from ltrkit.training.trainer import RegressionGateError, train

    (optuna,) = require("ltrkit tune", "tune", "optuna")
    label = "config" if isinstance(config, Mapping) else str(config)
    raw, settings = split_tune_section(config)
    raw = apply_overrides(raw, list(set))
    base = load_config(raw)
    if base.early_stopping.split != "vali":
        raise ConfigError(["early_stopping.split: tune chooses on the validation split only; set it to 'vali'"], source=label)
    _check_space(raw, settings, label)
    metric = base.early_stopping.metric
    study_folder = create_run_folder(base.output.dir, base.output.name, overwrite=overwrite)
    study_dir = study_folder.path

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler if settings.sampler == "tpe" else optuna.samplers.RandomSampler)(seed=settings.seed)
    # the first trials always run to the end: the median needs a few complete curves to compare with
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if settings.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    run_dirs: Dict[int, Path] = {}

    def objective(trial: Any) -> float:
        overrides = {path: _suggest(trial, path, spec) for path, spec in settings.space.items()}
        trial.set_user_attr("overrides", overrides)
        name = f"trial-{trial.number:03d}"
        run_dirs[trial.number] = study_dir / name
        trial_config = apply_overrides(raw, {**overrides, "output.dir": str(study_dir), "output.name": name})

        def report_epoch(epoch: int, record: Dict[str, Any]) -> None:
            trial.report(record[f"vali_{metric}"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        try:
            result = train(trial_config, datasets=datasets, quiet=True, on_epoch_end=report_epoch)
        except RegressionGateError as error:  # a trial below the config's gate is still a finished trial
            result = error.result
        return float(result.metrics["vali"][metric])

    def announce(study: Any, trial: Any) -> None:
        if not quiet:
            value = "-" if trial.value is None else f"{trial.value:.4f}"
            print(f"trial {trial.number}: {trial.state.name.lower()} vali {metric} {value} {json.dumps(trial.user_attrs.get('overrides', {}))}")

    # a diverged trial, or one whose sampled sizes are too large for a quadratic loss, is a failed
    # trial of the study, not the end of it
    study.optimize(objective, n_trials=trials or settings.trials, catch=(FloatingPointError, PairMemoryError), callbacks=[announce])
    leaderboard = _leaderboard(study, run_dirs)
    _write_leaderboard(study_dir, leaderboard, study, metric, list(settings.space))
    finished = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise ConfigError([f"tune: none of the {len(study.trials)} trial(s) finished; see {str(study_dir)!r}"], source=label)
    best = study.best_trial
    result = TuneResult(
        study_dir=study_dir,
        best_value=float(best.value),
        best_overrides=dict(best.user_attrs["overrides"]),
        best_run_dir=run_dirs[best.number],
        leaderboard=leaderboard,
    )
    summary = {
        "metric": f"vali_{metric}",
        "trials": len(study.trials),
        "best_trial": best.number,
        "best_value": result.best_value,
        "best_overrides": result.best_overrides,
        "best_run_dir": str(result.best_run_dir),
        "space": {path: spec.model_dump(exclude_none=True) for path, spec in settings.space.items()},
    }
    with output_errors(study_dir / "tune.json"):
        _io.write_json(study_dir / "tune.json", summary)
    return result


def _check_space(raw: Mapping[str, Any], settings: TuneConfig, label: str) -> None:
    """Every end of every range, and every choice, must give a valid config (found before any trial)."""
    problems: List[str] = []
    for path, spec in settings.space.items():
        values = spec.choices if spec.type == "categorical" else [spec.low, spec.high]
        for value in values:
            value = int(value) if spec.type == "int" else value
            try:
                load_config(raw, {path: value})
            except ConfigError as error:
                problems.extend(f"tune.space.{path}: value {value!r} is refused: {line}" for line in error.errors)
    if problems:
        raise ConfigError(problems, source=label)


def _suggest(trial: Any, path: str, spec: ParameterSpace) -> Any:
    if spec.type == "float":
        return trial.suggest_float(path, spec.low, spec.high, log=spec.log)
    if spec.type == "int":
        return trial.suggest_int(path, int(spec.low), int(spec.high), log=spec.log)
    # Optuna's choices must be plain scalars: objects and lists are chosen by their JSON text
    return json.loads(trial.suggest_categorical(path, [json.dumps(choice, sort_keys=True) for choice in spec.choices]))


def _leaderboard(study: Any, run_dirs: Mapping[int, Path]) -> List[Dict[str, Any]]:
    rows = []
    for trial in study.trials:
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": float("nan") if trial.value is None else float(trial.value),
                "run_dir": str(run_dirs.get(trial.number, "")),
                **{path: json.dumps(value) for path, value in trial.user_attrs.get("overrides", {}).items()},
            }
        )
    # finished trials by value, best first; pruned and failed ones after them, in trial order
    finished = sorted((row for row in rows if not math.isnan(row["value"])), key=lambda row: (-row["value"], row["trial"]))
    return finished + [row for row in rows if math.isnan(row["value"])]


def _write_leaderboard(study_dir: Path, rows: List[Dict[str, Any]], study: Any, metric: str, paths: List[str]) -> None:
    columns = ["trial", "state", "value", *paths, "run_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if key == "value" and math.isnan(row[key]) else row.get(key, "")) for key in columns})
    lines = [f"# ltrkit tune: vali {metric}, {len(rows)} trial(s)", "", "| " + " | ".join(columns[:-1]) + " |", "|" + " --- |" * (len(columns) - 1)]
    for row in rows:
        value = "-" if math.isnan(row["value"]) else f"{row['value']:.4f}"
        lines.append("| " + " | ".join([str(row["trial"]), row["state"], value, *(row.get(path, "") for path in paths)]) + " |")
    for name, text in (("leaderboard.csv", buffer.getvalue()), ("leaderboard.md", "\n".join(lines) + "\n")):
        with output_errors(study_dir / name):
            _io.write_text(study_dir / name, text)
    _write_best_value_plot(study_dir / "best_value.png", study, metric)


def _write_best_value_plot(path: Path, study: Any, metric: str) -> None:
    """Each finished trial's value (points) and the best value so far (a step line), by trial."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    numbers, values, best, best_so_far = [], [], [], -math.inf
    for trial in study.trials:
        if trial.value is None:
            continue
        best_so_far = max(best_so_far, trial.value)
        numbers.append(trial.number)
        values.append(trial.value)
        best.append(best_so_far)
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.scatter(numbers, values, label="trial", alpha=0.6)
    axes.step(numbers, best, where="post", label="best so far", color="C1")
    axes.set(title=f"ltrkit tune: vali {metric}", xlabel="trial", ylabel=f"vali {metric}")
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with output_errors(path):
        _io.write_bytes(path, buffer.getvalue())
