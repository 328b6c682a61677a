"""``ltrkit evaluate``: IR metrics of a scored dataset or of a TREC run.

Three input forms:

* ``--data FILE --scores FILE``: a LETOR/libsvm file (or cache folder) and one score per line in
  the data file's row order;
* ``--data FILE --run FILE``: a TREC run (e.g. from ``ltrkit predict --format trec``) judged by
  the labels of the data file, whose documents are named as ``predict`` names them (the file's
  ``# docid`` comments, else ``<qid>_<row within the query, from 0>``);
* ``--qrels FILE --run FILE``: TREC qrels and run files, evaluated as trec_eval does;
* ``--multilabel --scores FILE --targets FILE``: multi-label ranking metrics (label ranking
  loss, coverage error, LRAP, as scikit-learn defines them) of two whitespace-separated
  ``[N, C]`` matrices, one row per item: scores, and 0/1 targets (1 = the label is relevant).

Prints a table, or with ``--json`` exactly one JSON object
``{"conventions": {...}, "mean": {...}, "per_query": {qid: {...}}}`` (NaN as ``null``;
``{"items", "labels", "mean"}`` for ``--multilabel``). Errors
print one line on stderr and exit with code 2. Nothing is imported at module level beyond typer,
so registering the command costs nothing; torch comes with the metrics when the command runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ltrkit.cli._errors import fail
from ltrkit.cli._options import CacheDir, IndexBase, Missing, NFeatures, NoCache, QueryFile, Regroup, choice, read_dataset

if TYPE_CHECKING:
    import numpy as np

    from ltrkit.metrics.evaluation import EvaluationResult

__all__ = ["read_scores", "register"]

#: ``ltrkit.metrics.DEFAULT_METRICS`` as ``--help`` shows it, spelled out so that building the
#: command does not import torch (a test keeps the two equal); the default itself is the library's.
_DEFAULT_METRICS_SHOWN = "ndcg@1,ndcg@5,ndcg@10,ndcg,map,mrr,err@10,p@10,recall@10"

#: (option, parameter, unset value) of the reading options, which only --data uses.
_READING_DEFAULTS = (
    ("--index-base", "index_base", "auto"),
    ("--query-file", "query_file", None),
    ("--regroup", "regroup", False),
    ("--no-cache", "no_cache", False),
    ("--cache-dir", "cache_dir", None),
    ("--missing", "missing", "error"),
    ("--n-features", "n_features", None),
)


def _text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without its trailing blank lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_scores(path: Path) -> "np.ndarray":
    """Read one finite score per line (trailing blank lines allowed) into ``[n]`` float64.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: ``"<path>:<line>: ..."`` for a blank line, a non-number or a NaN/inf.
    """
    import numpy as np

    lines = _text_lines(path)
    try:
        scores = np.array(lines, dtype=np.float64) if lines else np.zeros(0)
    except ValueError:
        scores = None
    if scores is None or not np.isfinite(scores).all():
        for number, line in enumerate(lines, start=1):
            try:
                value = float(line)
            except ValueError:
                raise ValueError(f"{path}:{number}: a score must be one number per line, got {line.strip()!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}:{number}: scores must be finite, got {line.strip()!r}")
    return scores


def read_matrix(path: Path, *, binary: bool = False) -> "np.ndarray":
    """Read a whitespace-separated matrix, one row per line, into ``[N, C]`` float64.

    Every line holds the same number ``C >= 1`` of finite numbers (trailing blank lines are
    allowed); with ``binary`` every value is 0 or 1.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: ``"<path>:<line>: ..."`` for an empty file, a blank line, a row whose length
            differs from the first row's, a non-number, a NaN/inf, or (``binary``) a value other
            than 0 and 1.
    """
    import numpy as np

    rows = [line.split() for line in _text_lines(path)]
    if not rows:
        raise ValueError(f"{path}: no rows; give one row of values per item")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width or not row:
            raise ValueError(f"{path}:{number}: {len(row)} values, but line 1 has {width}; every row needs one value per label")
    try:
        matrix = np.array(rows, dtype=np.float64)
    except ValueError:
        matrix = None
    if matrix is None or not np.isfinite(matrix).all() or (binary and not np.isin(matrix, (0.0, 1.0)).all()):
        # the fast conversion failed or found a bad value: report the first one by line
        for number, row in enumerate(rows, start=1):
            for token in row:
                problem = _value_problem(token, binary)
                if problem is not None:
                    raise ValueError(f"{path}:{number}: {problem}")
    return matrix


def _value_problem(token: str, binary: bool) -> Optional[str]:
    """What is wrong with one matrix value, or ``None``."""
    try:
        value = float(token)
    except ValueError:
        return f"{token!r} is not a number"
    if not math.isfinite(value):
        return f"values must be finite, got {token!r}"
    if binary and value not in (0.0, 1.0):
        return f"targets must be 0 or 1 (1 = relevant), got {token!r}"
    return None


def _evaluate_multilabel(scores: Path, targets: Path) -> dict[str, Any]:
    """``{"items", "labels", "mean"}`` of the three multi-label ranking metrics."""
    from ltrkit.metrics.multilabel import coverage_error, label_ranking_average_precision, label_ranking_loss

    values, relevant = read_matrix(scores), read_matrix(targets, binary=True)
    if relevant.shape[0] != values.shape[0]:
        shorter = targets if relevant.shape[0] < values.shape[0] else scores
        raise ValueError(
            f"{shorter}:{min(relevant.shape[0], values.shape[0]) + 1}: no row here, but --scores {scores} has "
            f"{values.shape[0]} rows and --targets {targets} {relevant.shape[0]}; give one row per item in both"
        )
    if relevant.shape[1] != values.shape[1]:
        raise ValueError(f"{targets}:1: {relevant.shape[1]} labels, but {scores}:1 has {values.shape[1]}; give one column per label in both")
    return {
        "items": values.shape[0],
        "labels": values.shape[1],
        "mean": {
            "label_ranking_loss": label_ranking_loss(values, relevant),
            "coverage_error": coverage_error(values, relevant),
            "label_ranking_average_precision": label_ranking_average_precision(values, relevant),
        },
    }


def _format(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _print_table(result: EvaluationResult, *, per_query: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = list(result.mean)
    if per_query:
        table = Table(title="per query")
        table.add_column("qid")
        for name in names:
            table.add_column(name, justify="right")
        for qid, values in result.per_query.items():
            table.add_row(qid, *(_format(values[name]) for name in names))
        table.add_row("mean", *(_format(result.mean[name]) for name in names), style="bold")
        console.print(table)
    else:
        table = Table(title=f"{len(result.per_query)} queries")
        table.add_column("metric")
        table.add_column("mean", justify="right")
        for name in names:
            table.add_row(name, _format(result.mean[name]))
        console.print(table)
    conventions = ", ".join(f"{key}={value}" for key, value in result.conventions.items())
    console.print(f"conventions: {conventions}", highlight=False)


def _print_multilabel(summary: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['items']:,} items, {summary['labels']:,} labels")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for name, value in summary["mean"].items():
        table.add_row(name, _format(value))
    Console().print(table)


def _evaluate(
    data: Optional[Path],
    scores: Optional[Path],
    qrels: Optional[Path],
    run: Optional[Path],
    *,
    reading: dict[str, Any],
    missing_queries: str,
    **options: Any,
) -> EvaluationResult:
    form = (data is not None, scores is not None, qrels is not None, run is not None)
    if form not in ((True, True, False, False), (True, False, False, True), (False, False, True, True)):
        raise ValueError("give --data with --scores or --run, or --qrels with --run")
    if data is None:
        given = [name for name, value, unset in _READING_DEFAULTS if reading[value] != unset]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --data only")
    if scores is not None and missing_queries != "ignore":
        raise ValueError("--missing-queries applies to runs only (every query of --data has its scores)")

    from ltrkit.metrics.evaluation import evaluate_dataset, evaluate_run
    from ltrkit.metrics.trec import dataset_qrels, read_qrels, read_run

    if data is not None:
        dataset = read_dataset(data, what="--data", **reading)
        if scores is not None:
            values = read_scores(scores)
            if values.shape[0] != dataset.n_docs:
                raise ValueError(
                    f"--scores {scores} has {values.shape[0]} scores but --data {data} has {dataset.n_docs} documents; "
                    f"give one score per document, in the data file's row order"
                )
            return evaluate_dataset(dataset, values, **options)
        judgements = dataset_qrels(dataset)
    else:
        judgements = read_qrels(qrels)
    return evaluate_run(judgements, read_run(run), missing=missing_queries, **options)


def evaluate(
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE", help="LETOR/libsvm data file or ltrkit cache folder."),
    scores: Optional[Path] = typer.Option(None, "--scores", metavar="FILE", help="One score per line, in the data file's row order."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", metavar="FILE", help="TREC qrels file: 'qid 0 docid rel'."),
    run: Optional[Path] = typer.Option(
        None, "--run", metavar="FILE",
        help="TREC run file: 'qid Q0 docid rank score tag'; judged by --qrels, or by the labels of --data "
        "(documents named as 'ltrkit predict --format trec' names them).",
    ),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", metavar="LIST",
        help=f"Comma-separated, e.g. ndcg@10,map,mrr,err@10,p@5,recall@100 (default: {_DEFAULT_METRICS_SHOWN}).",
    ),
    preset: str = typer.Option("ltrkit", "--preset", metavar="ltrkit|trec", help="Conventions preset: ltrkit (exp2 gain, input-order ties) or trec (as trec_eval)."),
    gain: Optional[str] = typer.Option(None, "--gain", metavar="exp2|linear", help="exp2 (2^rel-1) or linear (rel); overrides the preset."),
    empty: Optional[str] = typer.Option(None, "--empty", metavar="zero|one|skip", help="Queries without relevant documents: zero, one or skip."),
    ties: Optional[str] = typer.Option(None, "--ties", metavar="RULE", help="input_order, pessimistic, optimistic, average or docid_desc."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Binary relevance: label >= threshold (default 1)."),
    max_grade: Optional[float] = typer.Option(None, "--max-grade", help="ERR's top grade (default: the largest label)."),
    score_precision: Optional[str] = typer.Option(
        None, "--score-precision", metavar="exact|float32",
        help="exact, or float32 (trec_eval stores scores as float; the trec preset's default).",
    ),
    missing_queries: str = typer.Option(
        "ignore", "--missing-queries", metavar="ignore|zero", callback=choice("ignore", "zero"),
        help="Judged queries absent from the run: ignore (trec_eval) or zero (trec_eval -c).",
    ),
    per_query: bool = typer.Option(False, "--per-query", help="Show every query's values."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object {conventions, mean, per_query}."),
    multilabel: bool = typer.Option(
        False, "--multilabel",
        help="Multi-label ranking metrics of --scores and --targets, two [N, C] matrices (one row per item): "
        "label ranking loss, coverage error, label ranking average precision.",
    ),
    targets: Optional[Path] = typer.Option(None, "--targets", metavar="FILE", help="With --multilabel: 0/1 matrix, 1 = the label is relevant."),
    index_base: IndexBase = "auto",
    query_file: QueryFile = None,
    regroup: Regroup = False,
    no_cache: NoCache = False,
    cache_dir: CacheDir = None,
    missing: Missing = "error",
    n_features: NFeatures = None,
) -> None:
    """Evaluate ranking scores with IR metrics (NDCG, MAP, MRR, ERR, P@k, recall@k), or multi-label ranking metrics."""
    reading = {
        "index_base": index_base, "query_file": query_file, "regroup": regroup,
        "no_cache": no_cache, "cache_dir": cache_dir, "missing": missing, "n_features": n_features,
    }
    if multilabel or targets is not None:
        ranking_only = {
            "--data": data, "--qrels": qrels, "--run": run, "--metrics": metrics, "--gain": gain, "--empty": empty,
            "--ties": ties, "--threshold": threshold, "--max-grade": max_grade, "--score-precision": score_precision,
            "--per-query": per_query or None, "--preset": None if preset == "ltrkit" else preset,
            "--missing-queries": None if missing_queries == "ignore" else missing_queries,
        }
        given = [name for name, value in ranking_only.items() if value is not None]
        given += [name for name, key, unset in _READING_DEFAULTS if reading[key] != unset]
        if not multilabel:
            fail("--targets applies to --multilabel only")
        if given or scores is None or targets is None:
            fail("--multilabel takes --scores and --targets only" + (f", not {', '.join(given)}" if given else ""))
        try:
            summary = _evaluate_multilabel(scores, targets)
        except (ValueError, OSError) as error:
            fail(error)
        _print_multilabel(summary, as_json=json_output)
        return
    options = {
        "conventions": preset, "gain": gain, "empty": empty, "ties": ties, "relevance_threshold": threshold,
        "max_grade": max_grade, "score_precision": score_precision,
    }
    if metrics is not None:
        options["metrics"] = metrics
    try:
        result = _evaluate(data, scores, qrels, run, reading=reading, missing_queries=missing_queries, **options)
    except (ValueError, FileNotFoundError, OSError) as error:
        fail(error)
    if json_output:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False))
    else:
        _print_table(result, per_query=per_query)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate)
