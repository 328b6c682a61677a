"""``ltrkit tune CONFIG --trials N``: hyperparameter search over the config's ``tune.space``.

Exit codes: 0 a best trial was found; 2 bad input (config, ``tune`` section, data, an existing
study folder, Optuna not installed) or no trial finished, one line on stderr; 130 interrupted
(finished trials keep their run folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ltrkit.cli._errors import fail

__all__ = ["register"]


def tune_command(
    config: Path = typer.Argument(..., help="training config (.json/.yaml) with a 'tune' section naming the search space"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="number of trials (default: the config's tune.trials)"),
    set_: List[str] = typer.Option([], "--set", help="override a training config field, e.g. --set training.epochs=5; repeatable"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing study folder"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no line per trial"),
) -> None:
    """Search hyperparameters with Optuna, choosing on validation only; every trial is a run folder."""
    from ltrkit._optional import MissingExtraError
    from ltrkit.cli.train_cmd import _config_error_line
    from ltrkit.training.config import ConfigError
    from ltrkit.training.run_folder import OutputError, RunExistsError
    from ltrkit.training.tune import tune

    try:
        result = tune(config, trials=trials, set=set_, overwrite=overwrite, quiet=quiet)
    except RunExistsError as error:
        fail(f"study folder {str(error.path)!r} already exists and is not empty; pass --overwrite to replace it")
    except (MissingExtraError, ConfigError, OutputError) as error:
        fail(_config_error_line(error))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished trials keep their run folders", err=True)
        raise typer.Exit(130)
    typer.echo(
        f"best trial: vali {result.best_value:.4f} with {result.best_overrides}; run folder {result.best_run_dir}; "
        f"leaderboard {result.study_dir / 'leaderboard.md'}"
    )


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_command)
