"""``ltrkit evaluate``: IR metrics of a scored dataset or of a TREC run.

Two input forms:

* ``--data FILE --scores FILE``: a LETOR/libsvm file (or cache folder) and one score per line in
  the data file's row order;
* ``--qrels FILE --run FILE``: TREC qrels and run files, evaluated as trec_eval does.

Prints a table, or with ``--json`` exactly one JSON object
``{"conventions": {...}, "mean": {...}, "per_query": {qid: {...}}}`` (NaN as ``null``). Errors
print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from ltrkit.cli._errors import fail
from ltrkit.metrics.evaluation import DEFAULT_METRICS, EvaluationResult, evaluate_dataset, evaluate_run


def read_scores(path: Path) -> np.ndarray:
    """Read one finite score per line (trailing blank lines allowed) into ``[n]`` float64.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: ``"<path>:<line>: ..."`` for a blank line, a non-number or a NaN/inf.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
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


def _evaluate(
    data: Optional[Path],
    scores: Optional[Path],
    qrels: Optional[Path],
    run: Optional[Path],
    *,
    cache: bool,
    missing: str,
    **options: Any,
) -> EvaluationResult:
    if data is not None and scores is not None and qrels is None and run is None:
        if missing != "ignore":
            raise ValueError("--missing applies to --qrels/--run only (every query of --data has its documents)")
        if not data.exists():
            raise ValueError(f"--data {data}: no such file or folder")
        from ltrkit.data.cache import load_dataset

        dataset = load_dataset(data, cache=cache)
        values = read_scores(scores)
        if values.shape[0] != dataset.n_docs:
            raise ValueError(
                f"--scores {scores} has {values.shape[0]} scores but --data {data} has {dataset.n_docs} documents; "
                f"give one score per document, in the data file's row order"
            )
        return evaluate_dataset(dataset, values, **options)
    if qrels is not None and run is not None and data is None and scores is None:
        from ltrkit.metrics.trec import read_qrels, read_run

        return evaluate_run(read_qrels(qrels), read_run(run), missing=missing, **options)
    if (data is None) != (scores is None) or (qrels is None) != (run is None):
        raise ValueError("give --data with --scores, or --qrels with --run")
    raise ValueError("give either --data/--scores or --qrels/--run (exactly one pair)")


def evaluate(
    data: Optional[Path] = typer.Option(None, "--data", help="LETOR/libsvm data file or ltrkit cache folder."),
    scores: Optional[Path] = typer.Option(None, "--scores", help="One score per line, in the data file's row order."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="TREC qrels file: 'qid 0 docid rel'."),
    run: Optional[Path] = typer.Option(None, "--run", help="TREC run file: 'qid Q0 docid rank score tag'."),
    metrics: str = typer.Option(",".join(DEFAULT_METRICS), "--metrics", help="Comma-separated, e.g. ndcg@10,map,mrr,err@10,p@5,recall@100."),
    preset: str = typer.Option("ltrkit", "--preset", help="Conventions preset: ltrkit (exp2 gain, input-order ties) or trec (as trec_eval)."),
    gain: Optional[str] = typer.Option(None, "--gain", help="exp2 (2^rel-1) or linear (rel); overrides the preset."),
    empty: Optional[str] = typer.Option(None, "--empty", help="Queries without relevant documents: zero, one or skip."),
    ties: Optional[str] = typer.Option(None, "--ties", help="input_order, pessimistic, optimistic, average or docid_desc."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Binary relevance: label >= threshold (default 1)."),
    max_grade: Optional[float] = typer.Option(None, "--max-grade", help="ERR's top grade (default: the largest label)."),
    score_precision: Optional[str] = typer.Option(None, "--score-precision", help="exact, or float32 (trec_eval stores scores as float; the trec preset's default)."),
    missing: str = typer.Option("ignore", "--missing", help="Qrels queries absent from the run: ignore (trec_eval) or zero (trec_eval -c)."),
    per_query: bool = typer.Option(False, "--per-query", help="Show every query's values."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object {conventions, mean, per_query}."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Use/write the binary cache of --data."),
) -> None:
    """Evaluate ranking scores with IR metrics (NDCG, MAP, MRR, ERR, P@k, recall@k)."""
    try:
        result = _evaluate(
            data, scores, qrels, run, cache=cache,
            metrics=metrics, conventions=preset, gain=gain, empty=empty, ties=ties,
            relevance_threshold=threshold, max_grade=max_grade, score_precision=score_precision, missing=missing,
        )
    except (ValueError, FileNotFoundError, OSError) as error:
        fail(error)
    if json_output:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False))
    else:
        _print_table(result, per_query=per_query)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate)
