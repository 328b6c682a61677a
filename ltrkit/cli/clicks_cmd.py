"""``ltrkit clicks simulate|fit|estimate-propensity``: click logs from a ranker, click models
fitted to them, examination propensities estimated from them.

Exit codes: 0 success; 2 bad input (a bad option, spec, data file or click log), reported as
one line on stderr naming the file, and for a click log the row and column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ltrkit.cli._errors import fail
from ltrkit.cli._options import CacheDir, IndexBase, NoCache, QueryFile, Regroup, choice, read_dataset

__all__ = ["register", "clicks_app"]

clicks_app = typer.Typer(
    name="clicks",
    help="Click models: simulate click logs from a ranker, fit click models, estimate propensities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_FIT_MODELS = ("pbm", "cm", "dcm", "ubm", "dbn", "sdbn")
_INTERVENTIONS = ("none", "topk_shuffle", "randpair", "randn")
_METHODS = ("randomization", "regression_em")


def _positive(name: str, value: int) -> None:
    if value < 1:
        fail(f"{name} must be >= 1, got {value}")


@clicks_app.command("simulate")
def simulate_command(
    data: Path = typer.Option(..., "--data", metavar="FILE", help="The documents to rank (LETOR/libsvm file or cache folder); its labels are the true relevance."),
    model: str = typer.Option(..., "--model", metavar="NAME|SPEC", help="A built-in click model (pbm, ubm, cascade, dcm, dbn, sdbn, ...) or a JSON/YAML click spec."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder: clicks.parquet|csv, train.txt, train.positions.csv, simulation.json."),
    run: Optional[Path] = typer.Option(None, "--run", metavar="DIR", help="Rank with this trained run folder (or give --scores)."),
    scores: Optional[Path] = typer.Option(None, "--scores", metavar="FILE", help="Rank by these scores: one per line, in the data file's row order."),
    checkpoint: str = typer.Option("best", "--checkpoint", metavar="best|last", callback=choice("best", "last"), help="Weights of --run."),
    sessions: int = typer.Option(10_000, "--sessions", metavar="N", help="Number of sessions (queries drawn uniformly)."),
    top_k: int = typer.Option(10, "--top-k", metavar="K", help="Documents shown per session."),
    seed: int = typer.Option(0, "--seed", help="The log is a pure function of the inputs and the seed."),
    fmt: str = typer.Option("parquet", "--format", metavar="parquet|csv", callback=choice("parquet", "csv"), help="Click log format."),
    intervention: str = typer.Option("none", "--intervention", metavar="|".join(_INTERVENTIONS), callback=choice(*_INTERVENTIONS),
                                     help="Randomise the shown list for propensity estimation."),
    label: str = typer.Option("ctr", "--label", metavar="ctr|clicks", callback=choice("ctr", "clicks"), help="Label of the aggregated training set."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output files of an earlier simulation in DIR."),
    index_base: IndexBase = "auto",
    query_file: QueryFile = None,
    regroup: Regroup = False,
    no_cache: NoCache = False,
    cache_dir: CacheDir = None,
) -> None:
    """Rank each query, sample sessions, simulate clicks; write the click log and a click training set."""
    from ltrkit.clicks.spec import load_click_spec
    from ltrkit.clicks.simulate import write_simulation
    from ltrkit.training.config import ConfigError

    _positive("--sessions", sessions)
    _positive("--top-k", top_k)
    if (run is None) == (scores is None):
        fail("give exactly one of --run DIR and --scores FILE (the logging policy)")
    existing = [out / name for name in (f"clicks.{fmt}", "train.txt", "train.positions.csv", "simulation.json")]
    if not overwrite and any(path.exists() for path in existing):
        fail(f"--out {out} already holds a simulation; pass --overwrite to replace it")
    try:
        behaviour = load_click_spec(model)
    except ConfigError as error:
        fail(error)
    if run is not None:
        from ltrkit.training.predict import Ranker

        try:
            ranker = Ranker.load(run, checkpoint=checkpoint)
            if not data.exists():
                fail(f"--data: file not found: {data}")
            dataset = ranker.read(data, query_file=query_file)
            values = ranker.predict(dataset)
        except (ConfigError, ValueError, OSError) as error:
            fail(error)
    else:
        from ltrkit.cli.evaluate_cmd import read_scores

        dataset = read_dataset(data, index_base=index_base, query_file=query_file, regroup=regroup,
                               no_cache=no_cache, cache_dir=cache_dir, what="--data")
        try:
            values = read_scores(scores)
        except (ValueError, OSError) as error:
            fail(f"--scores: {error}")
        if values.shape[0] != dataset.n_docs:
            fail(f"--scores {scores} has {values.shape[0]} scores but --data {data} has {dataset.n_docs} documents; "
                 f"give one score per document, in the data file's row order")
    try:
        result = write_simulation(
            out, dataset, values, behaviour, sessions=sessions, top_k=top_k, seed=seed, intervention=intervention,
            file_format=fmt, label=label,
            metadata={"data": str(data), "model": model, "logging_policy": str(run if run is not None else scores)},
        )
    except (ValueError, OSError) as error:
        fail(error)
    typer.echo(f"{sessions} sessions, {result.impressions} impressions, {result.clicks} clicks -> {result.log}; "
               f"training set {result.train} (+ {result.positions.name})")


def _read_log(log: Path, data: Optional[Path], **reading: object):
    from ltrkit.clicks.log import read_click_log

    dataset = None if data is None else read_dataset(data, what="--data", **reading)  # type: ignore[arg-type]
    try:
        sessions, _ = read_click_log(log, dataset)
    except (ValueError, OSError) as error:
        fail(error)
    return sessions, dataset


def _write_json(path: Optional[Path], payload: dict) -> None:
    if path is None:
        typer.echo(json.dumps(payload, allow_nan=False))
        return
    from ltrkit.training._io import write_json

    try:
        write_json(path, payload)
    except OSError as error:
        fail(f"--out: {error}")


@clicks_app.command("fit")
def fit_command(
    log: Path = typer.Option(..., "--log", metavar="LOG", help="Click log (.parquet or .csv)."),
    model: str = typer.Option(..., "--model", metavar="|".join(_FIT_MODELS), callback=choice(*_FIT_MODELS), help="The click model to fit."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="PARAMS.json", help="Write the parameters and evaluation here (default: print them)."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE", help="Check the log's qids and documents against this data file."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction of sessions held out for log-likelihood and perplexity (0: evaluate on the training sessions)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split."),
    max_iterations: int = typer.Option(100, "--max-iterations", help="EM iterations at most (PBM, UBM, DBN)."),
) -> None:
    """Fit a click model (MLE / EM) and report its log-likelihood and perplexity on held-out sessions."""
    from ltrkit.clicks.models import get_model

    if not 0.0 <= holdout < 1.0:
        fail(f"--holdout must be in [0, 1), got {holdout}")
    _positive("--max-iterations", max_iterations)
    sessions, _ = _read_log(log, data)
    if sessions.n_sessions == 0:
        fail(f"{log}: the click log has no impressions")
    train, held_out = (sessions.split(holdout, seed=seed) if holdout > 0 else (sessions, sessions))
    if train.n_sessions == 0 or held_out.n_sessions == 0:
        fail(f"{log}: {sessions.n_sessions} session(s) are too few to hold out {holdout}; lower --holdout")
    fitted = get_model(model).fit(train, max_iterations=max_iterations)
    perplexity, per_rank = fitted.perplexity(held_out)
    evaluation = {
        "on": "held_out" if holdout > 0 else "train", "train_sessions": train.n_sessions, "sessions": held_out.n_sessions,
        "log_likelihood": fitted.log_likelihood(held_out), "perplexity": perplexity, "perplexity_per_rank": per_rank.tolist(),
    }
    _write_json(out, {"log": str(log), **fitted.params(), "evaluation": evaluation})
    if out is not None:
        typer.echo(f"{model}: log-likelihood {evaluation['log_likelihood']:.4f}, perplexity {perplexity:.4f} "
                   f"on {held_out.n_sessions} {evaluation['on']} sessions -> {out}")


@clicks_app.command("estimate-propensity")
def estimate_propensity_command(
    log: Path = typer.Option(..., "--log", metavar="LOG", help="Click log (.parquet or .csv)."),
    method: str = typer.Option(..., "--method", metavar="|".join(_METHODS), callback=choice(*_METHODS),
                               help="randomization (needs a log with interventions) or regression_em (needs --data)."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE", help="The data file the log indexes (features for regression_em)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE.json", help="Write the estimate here (default: print it)."),
    max_iterations: int = typer.Option(100, "--max-iterations", help="EM iterations at most (regression_em)."),
) -> None:
    """Estimate examination propensities per rank, relative to rank 1."""
    from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em

    if method == "regression_em" and data is None:
        fail("--method regression_em needs --data (the documents' features)")
    _positive("--max-iterations", max_iterations)
    sessions, dataset = _read_log(log, data)
    details: dict = {}
    try:
        if method == "randomization":
            estimate = estimate_by_randomization(sessions)
        else:
            estimate, details = estimate_by_regression_em(sessions, dataset.features, max_iterations=max_iterations)
    except ValueError as error:
        fail(f"{log}: {error}")
    _write_json(out, {"log": str(log), "method": method, "relative_propensities": estimate.tolist(), **details})
    if out is not None:
        typer.echo(f"{method}: " + " ".join(f"{p:.4f}" for p in estimate.tolist()) + f" -> {out}")


def register(app: typer.Typer) -> None:
    """Add the ``clicks`` command group to ``app``."""
    app.add_typer(clicks_app, name="clicks")
