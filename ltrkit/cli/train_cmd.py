"""``ltrkit train``, ``ltrkit predict`` and ``ltrkit config show|init|schema``.

Exit codes: 0 success; 1 the regression gate failed (the run itself finished) or the loss
diverged (NaN/inf); 2 bad input
(config, data, run folder), reported as one line on stderr without a traceback; 130 interrupted
(the run folder keeps its last checkpoint: continue with ``ltrkit train --resume RUN_DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ltrkit.cli._errors import fail

__all__ = ["register"]

_SET_HELP = "override a config field, e.g. --set training.epochs=5 (value parsed as JSON when possible); repeatable"



def _config_error_line(error: Exception) -> str:
    from ltrkit.training.config import ConfigError

    if isinstance(error, ConfigError):
        return f"{error.source}: " + "; ".join(error.errors)
    return str(error)


def train_command(
    config: Optional[Path] = typer.Argument(None, help="config file (.json/.yaml); none = the built-in synthetic job"),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this folder from its last checkpoint"),
    name: Optional[str] = typer.Option(None, "--name", help="run folder name (same as --set output.name=NAME)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing non-empty run folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or tables; one summary line at the end"),
) -> None:
    """Train a ranker; with no CONFIG, an MLP on the built-in synthetic data (about 2 minutes on 2 cores)."""
    from ltrkit.training.config import ConfigError
    from ltrkit.training.trainer import RegressionGateError, resume as resume_run, train

    overrides = list(set_) + ([f"output.name={json.dumps(name)}"] if name is not None else [])
    try:
        if resume is not None:
            if config is not None:
                fail("give either a CONFIG or --resume RUN_DIR (the run folder holds its config), not both")
            if overwrite:
                fail("--overwrite cannot be combined with --resume")
            result = resume_run(resume, set=overrides, quiet=quiet)
        else:
            result = train(config, set=overrides, overwrite=overwrite, quiet=quiet)
    except (RegressionGateError, FloatingPointError) as error:
        fail(str(error), code=1)
    except (ConfigError, FileExistsError) as error:
        fail(_config_error_line(error))
    except KeyboardInterrupt:
        typer.echo("interrupted: the run folder keeps the last finished epoch; continue with ltrkit train --resume RUN_DIR", err=True)
        raise typer.Exit(130)
    if quiet:
        test = result.metrics.get("test") or result.metrics.get("vali") or {}
        split = "test" if "test" in result.metrics else "vali"
        shown = ", ".join(f"{split} {key}={value:.4f}" for key, value in test.items() if key.startswith("ndcg@10"))
        typer.echo(f"{result.run_dir}: best epoch {result.best_epoch}/{len(result.history)}" + (f", {shown}" if shown else ""))


def predict_command(
    run: Path = typer.Option(..., "--run", help="run folder written by ltrkit train"),
    data: Path = typer.Option(..., "--data", help="LETOR/libsvm file (or cache folder) to score"),
    out: Path = typer.Option(..., "--out", help="output: one score per line, or a TREC run (.trec/.run or --format trec)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
    fmt: Optional[str] = typer.Option(None, "--format", help="scores or trec (default: from the --out suffix)"),
    query_file: Optional[Path] = typer.Option(None, "--query-file", help="libsvm group file of --data"),
) -> None:
    """Score a data file with a trained run (same normaliser, same feature count)."""
    from ltrkit.training import _io
    from ltrkit.training.config import ConfigError
    from ltrkit.training.predict import Ranker
    from ltrkit.training.trainer import format_scores

    if fmt is None:
        fmt = "trec" if out.suffix.lower() in (".trec", ".run") else "scores"
    if fmt not in ("scores", "trec"):
        fail(f"--format must be 'scores' or 'trec', got {fmt!r}")
    try:
        ranker = Ranker.load(run, checkpoint=checkpoint)
        if not data.exists():
            fail(f"--data: file not found: {str(data)!r}")
        dataset = ranker.read(data, query_file=query_file)
        scores = ranker.predict(dataset)
        if fmt == "trec":
            from ltrkit.metrics import write_trec_run

            write_trec_run(out, dataset, scores, tag=f"ltrkit-{Path(run).name}")
        else:
            _io.write_text(out, format_scores(scores))
    except (ConfigError, ValueError, OSError) as error:
        fail(_config_error_line(error))
    typer.echo(f"wrote {len(scores)} scores for {dataset.n_queries} queries to {out}", err=True)


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
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write the default config: YAML with a comment on every field, or JSON (see `ltrkit config schema`)."""
    from ltrkit.training import _io
    from ltrkit.training.config import TrainConfig, config_to_yaml

    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        fail(f"{str(path)!r}: the suffix must be .json, .yaml or .yml, got {suffix or 'none'!r}")
    if path.exists() and not force:
        fail(f"{str(path)!r} already exists; pass --force to overwrite it")
    text = config_to_yaml() if suffix != ".json" else json.dumps(TrainConfig().to_dict(), indent=2) + "\n"
    _io.write_text(path, text)
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
