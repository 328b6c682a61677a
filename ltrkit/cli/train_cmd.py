"""``ltrkit train``, ``ltrkit predict`` and ``ltrkit config show|init|schema``.

Exit codes: 0 success; 1 the regression gate failed (the run itself finished) or the loss
diverged (NaN/inf); 2 bad input
(config, data, run folder, a batch too large for a quadratic loss), reported as one line on
stderr without a traceback; 130 interrupted
(the run folder keeps its last checkpoint: continue with ``ltrkit train --resume RUN_DIR``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ltrkit.cli._errors import fail
from ltrkit.cli._options import CacheDir, IndexBase, Missing, NoCache, QueryFile, Regroup

__all__ = ["register"]

_SET_HELP = "override a config field, e.g. --set training.epochs=5 (value parsed as JSON when possible); repeatable"


def _config_error_line(error: Exception) -> str:
    from ltrkit.training.config import ConfigError

    if isinstance(error, ConfigError):
        return f"{error.source}: " + "; ".join(error.errors)
    return str(error)


def run_job(
    command: str,
    start: Callable[..., Any],
    resume_from: Callable[..., Any],
    *,
    config: Optional[Path],
    set_: List[str],
    resume: Optional[Path],
    name: Optional[str],
    overwrite: bool,
    device: Optional[str],
    quiet: bool,
) -> Any:
    """Start a run of ``command`` (``start(config, set=..., overwrite=..., quiet=...)``) or resume
    one (``resume_from(run_dir, set=..., quiet=...)``) with the shared flags; every failure ends
    as one line on stderr with the command's exit codes (see the module docstring)."""
    from ltrkit.losses import PairMemoryError
    from ltrkit.training.config import ConfigError, run_name_problem
    from ltrkit.training.distributed import DistributedError
    from ltrkit.training.run_folder import OutputError, RunExistsError
    from ltrkit.training.trainer import RegressionGateError

    if name is not None and run_name_problem(name):
        fail(f"--name: {run_name_problem(name)}")
    overrides = list(set_) + [
        f"{key}={json.dumps(value)}" for key, value in (("output.name", name), ("device", device)) if value is not None
    ]
    try:
        if resume is not None:
            if config is not None:
                fail("give either a CONFIG or --resume RUN_DIR (the run folder holds its config), not both")
            if overwrite:
                fail("--overwrite cannot be combined with --resume")
            return resume_from(resume, set=overrides, quiet=quiet)
        return start(config, set=overrides, overwrite=overwrite, quiet=quiet)
    except (RegressionGateError, FloatingPointError, DistributedError) as error:
        fail(str(error), code=1)
    except RunExistsError as error:
        fail(error.advice(overwrite="--overwrite", resume=f"--resume {str(error.path)!r}"))
    except (ConfigError, OutputError) as error:
        fail(_config_error_line(error))
    except PairMemoryError as error:
        fail(str(error))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the run folder keeps the last finished epoch; continue with {command} --resume RUN_DIR", err=True)
        raise typer.Exit(130)


def _device(value: Optional[str]) -> Optional[str]:
    """Option callback of ``--device``: the same spellings as the config's ``device`` field."""
    from ltrkit.training.config import device_problem

    problem = None if value is None else device_problem(value)
    if problem:
        fail(f"--device: {problem}")
    return value


_DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when available)"


def train_command(
    config: Optional[Path] = typer.Argument(None, help="config file (.json/.yaml); none = the built-in synthetic job"),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this folder from its last checkpoint"),
    name: Optional[str] = typer.Option(None, "--name", help="run folder name (same as --set output.name=NAME)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing non-empty run folder"),
    device: Optional[str] = typer.Option(None, "--device", callback=_device, help=f"{_DEVICE_HELP}; overrides the config's device"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or tables; one summary line at the end"),
) -> None:
    """Train a ranker; with no CONFIG, an MLP on the built-in synthetic data (about 30 seconds on 2 cores).

    A config with data.train_clicks trains on that click log instead of data.train's labels.
    """
    result = run_job(
        "ltrkit train", _start_training, _resume_training,
        config=config, set_=set_, resume=resume, name=name, overwrite=overwrite, device=device, quiet=quiet,
    )
    if quiet:
        test = result.metrics.get("test") or result.metrics.get("vali") or {}
        split = "test" if "test" in result.metrics else "vali"
        shown = ", ".join(f"{split} {key}={value:.4f}" for key, value in test.items() if key.startswith("ndcg@10"))
        typer.echo(f"{result.run_dir}: best epoch {result.best_epoch}/{len(result.history)}" + (f", {shown}" if shown else ""))


def _trains_on_clicks(raw: Any) -> bool:
    data = raw.get("data") if isinstance(raw, dict) else None
    return isinstance(data, dict) and data.get("train_clicks") is not None


def _start_training(config: Optional[Path], *, set: List[str], overwrite: bool, quiet: bool) -> Any:
    """Train on labels (:func:`ltrkit.training.train`) or, with ``data.train_clicks``, on clicks
    (:func:`ltrkit.clicks.task.train_on_clicks`); a config that cannot be read goes to the former,
    which reports it."""
    from ltrkit.training.config import ConfigError, TrainConfig, apply_overrides, raw_config
    from ltrkit.training.trainer import train

    try:
        clicks = _trains_on_clicks(apply_overrides(raw_config(config, TrainConfig)[0], set))
    except ConfigError:
        clicks = False
    if clicks:
        from ltrkit.clicks.task import train_on_clicks

        return train_on_clicks(config, set=set, overwrite=overwrite, quiet=quiet)
    return train(config, set=set, overwrite=overwrite, quiet=quiet)


def _resume_training(run_dir: Path, *, set: List[str], quiet: bool) -> Any:
    """Resume a run with the task it was started with (a click run's config sets ``data.train_clicks``)."""
    from ltrkit.training.config import ConfigError, read_config_file
    from ltrkit.training.run_folder import RunFolder
    from ltrkit.training.trainer import resume

    try:
        clicks = _trains_on_clicks(read_config_file(RunFolder(run_dir).config_path))
    except ConfigError:
        clicks = False
    if clicks:
        from ltrkit.clicks.task import resume_on_clicks

        return resume_on_clicks(run_dir, set=set, quiet=quiet)
    return resume(run_dir, set=set, quiet=quiet)


def predict_command(
    run: Optional[Path] = typer.Option(None, "--run", help="run folder written by ltrkit train"),
    model: Optional[Path] = typer.Option(
        None, "--model", metavar="FILE", help="a model file written by ltrkit export (ONNX or TorchScript), instead of --run"
    ),
    data: Path = typer.Option(..., "--data", help="LETOR/libsvm file (or cache folder) to score"),
    out: Path = typer.Option(..., "--out", help="output: one score per line, or a TREC run (.trec/.run or --format trec); - = stdout"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="best (default) or last; with --run"),
    fmt: Optional[str] = typer.Option(None, "--format", help="scores or trec (default: from the --out suffix; scores for -)"),
    device: Optional[str] = typer.Option(None, "--device", callback=_device, help=f"{_DEVICE_HELP}; with --run (default cpu)"),
    # the reading options default to None: the run's own data options, which read its training data
    index_base: IndexBase = None,
    query_file: QueryFile = None,
    regroup: Regroup = None,
    no_cache: NoCache = None,
    cache_dir: CacheDir = None,
    missing: Missing = None,
) -> None:
    """Score a data file with a trained run (same normaliser, same feature count) or an exported model.

    The reading options not given are the run's (its config's ``data`` section); an exported
    model reads with the run's index base and its feature count.
    """
    from ltrkit._optional import MissingExtraError
    from ltrkit.training.config import ConfigError
    from ltrkit.training.predict import Ranker
    from ltrkit.training.run_folder import OutputError, check_writable, output_errors
    from ltrkit.training.trainer import format_scores

    if (run is None) == (model is None):
        fail("give either --run RUN_DIR or --model FILE")
    if model is not None and (checkpoint is not None or device is not None):
        fail("--checkpoint and --device apply to --run only (an exported model has one set of weights and runs on the CPU)")
    to_stdout = str(out) == "-"
    if fmt is None:
        fmt = "trec" if out.suffix.lower() in (".trec", ".run") else "scores"
    if fmt not in ("scores", "trec"):
        fail(f"--format must be 'scores' or 'trec', got {fmt!r}")
    given = {
        "index_base": None if index_base is None else (index_base if index_base == "auto" else int(index_base)),
        "regroup": regroup,
        "cache": None if no_cache is None else not no_cache,
        "cache_dir": None if cache_dir is None else str(cache_dir),
        "missing": missing,
    }
    options = {key: value for key, value in given.items() if value is not None}
    try:
        if run is not None:
            ranker = Ranker.load(run, checkpoint=checkpoint or "best", device=device or "cpu")
        else:
            from ltrkit.export import load_exported

            ranker = load_exported(model)
        if not data.exists():
            fail(f"--data: file not found: {str(data)!r}")
        if query_file is not None and not query_file.is_file():
            fail(f"--query-file: file not found: {str(query_file)!r}")
        if not to_stdout:
            # scoring a large file takes a while: find an unwritable destination first
            check_writable(out.parent)
        dataset = ranker.read(data, query_file=query_file, **options)
        scores = ranker.predict(dataset)
        with output_errors(out):
            if fmt == "trec":
                _write_trec(out, dataset, scores, tag=f"ltrkit-{(run or model).name}", to_stdout=to_stdout)
            elif to_stdout:
                sys.stdout.write(format_scores(scores))
            else:
                from ltrkit.training import _io

                _io.write_text(out, format_scores(scores))
    except (ConfigError, OutputError, MissingExtraError, ValueError, OSError) as error:
        fail(_config_error_line(error))
    typer.echo(f"wrote {len(scores)} scores for {dataset.n_queries} queries to {'stdout' if to_stdout else out}", err=True)


def _write_trec(out: Path, dataset, scores, *, tag: str, to_stdout: bool) -> None:
    from ltrkit.metrics import write_trec_run

    if not to_stdout:
        write_trec_run(out, dataset, scores, tag=tag)
        return
    # write_trec_run writes files (atomically); a temporary one keeps a single TREC formatter
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.trec"
        write_trec_run(path, dataset, scores, tag=tag)
        sys.stdout.write(path.read_text(encoding="utf-8"))


config_app = typer.Typer(help="Show, create and describe training configs.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    config: Optional[Path] = typer.Argument(None, help="config file; none = the defaults"),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    fmt: str = typer.Option("json", "--format", help="json or yaml"),
) -> None:
    """Print the resolved config (defaults filled in, overrides applied, everything validated)."""
    from ltrkit.training.config import ConfigError, config_to_yaml, load_config

    if fmt not in ("json", "yaml"):
        fail(f"--format must be 'json' or 'yaml', got {fmt!r}")
    try:
        resolved = load_config(config, set_)
    except ConfigError as error:
        fail(_config_error_line(error))
    if fmt == "json":
        typer.echo(json.dumps(resolved.to_dict(), indent=2))
    else:
        typer.echo(config_to_yaml(resolved, comments=False), nl=False)


@config_app.command("init")
def config_init(
    path: Path = typer.Argument(..., help="file to write: .yaml/.yml (commented) or .json"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing file"),
    force: bool = typer.Option(False, "--force", hidden=True, help="old spelling of --overwrite"),
) -> None:
    """Write the default config: YAML with a comment on every field, or JSON (see `ltrkit config schema`)."""
    from ltrkit.training import _io
    from ltrkit.training.config import TrainConfig, config_to_yaml
    from ltrkit.training.run_folder import OutputError, output_errors

    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        fail(f"{str(path)!r}: the suffix must be .json, .yaml or .yml, got {suffix or 'none'!r}")
    if path.exists() and not (overwrite or force):
        fail(f"{str(path)!r} already exists; pass --overwrite to replace it")
    text = config_to_yaml() if suffix != ".json" else json.dumps(TrainConfig().to_dict(), indent=2) + "\n"
    try:
        with output_errors(path):
            _io.write_text(path, text)
    except OutputError as error:
        fail(error)
    typer.echo(f"wrote {path}", err=True)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config (every field with its type, default and description)."""
    from ltrkit.training.config import TrainConfig

    typer.echo(json.dumps(TrainConfig.model_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict`` and the ``config`` group to ``app``."""
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.add_typer(config_app, name="config")
