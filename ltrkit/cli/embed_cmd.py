"""``ltrkit embed [CONFIG]`` (train an encoder; no CONFIG = the digits example), ``ltrkit embed
--example news`` (the near-duplicate news example) and
``ltrkit embed search --run RUN --index ITEMS --query QUERIES --k 10``.

Exit codes as ``ltrkit train``: 0 success; 1 the regression gate failed or the loss diverged; 2
bad input (config, items/pairs/triplets file, run folder), one line on stderr naming the file,
line and column; 130 interrupted (continue with ``ltrkit embed --resume RUN_DIR``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperGroup

from ltrkit.cli._errors import fail
from ltrkit.cli._options import choice
from ltrkit.cli.train_cmd import _DEVICE_HELP, _SET_HELP, _config_error_line, _device, run_job

__all__ = ["register", "embed_app"]


class _TrainByDefault(TyperGroup):
    """``ltrkit embed [CONFIG] [options]`` is ``ltrkit embed train ...``; ``search`` and ``--help`` stay themselves."""

    def parse_args(self, ctx: Any, args: List[str]) -> List[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["train", *args]
        return super().parse_args(ctx, args)


embed_app = typer.Typer(
    name="embed",
    cls=_TrainByDefault,
    help="Siamese/triplet embeddings: train an encoder (default: the digits example), search with it.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@embed_app.command("train")
def train_command(
    config: Optional[Path] = typer.Argument(None, help="config file (.json/.yaml); none = the digits example"),
    example: Optional[str] = typer.Option(
        None, "--example", metavar="digits|news", callback=choice("digits", "news"),
        help="a built-in example instead of CONFIG: digits, or news (near-duplicate articles, DAE pre-training, against TF-IDF; ~1 min)",
    ),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this folder from its last checkpoint"),
    name: Optional[str] = typer.Option(None, "--name", help="run folder name (same as --set output.name=NAME)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing non-empty run folder"),
    device: Optional[str] = typer.Option(None, "--device", callback=_device, help=f"{_DEVICE_HELP}; overrides the config's device"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or tables; one summary line at the end"),
) -> None:
    """Train an encoder; with no CONFIG, scikit-learn's digits with an MLP and semi-hard triplet mining (seconds)."""
    from ltrkit.embeddings.config import example_config
    from ltrkit.embeddings.job import resume_embeddings, train_embeddings

    if example is not None and (config is not None or resume is not None):
        fail("--example is a config of its own; give it without CONFIG or --resume")
    result = run_job(
        "ltrkit embed", train_embeddings, resume_embeddings,
        config=example_config(example) if example is not None else config, set_=set_, resume=resume, name=name, overwrite=overwrite, device=device, quiet=quiet,
    )
    # under torchrun only rank 0 has a report, and only it prints the summary
    if quiet and result.report:
        split = "test" if "test" in result.metrics else "vali"
        stop = result.report["early_stopping_metric"].split("_", 1)[1]
        value = result.metrics.get(split, {}).get(stop)
        baselines = "; ".join(
            f"{entry['label']} {entry['metrics'][split][stop]:.4f}" for entry in result.baselines.values() if split in entry.get("metrics", {})
        )
        shown = f", {split} {stop}={value:.4f}" + (f" ({baselines})" if baselines else "") if value is not None else ""
        typer.echo(f"{result.run_dir}: best epoch {result.best_epoch}/{len(result.history)}{shown}")


@embed_app.command("search")
def search_command(
    run: Path = typer.Option(..., "--run", help="run folder written by ltrkit embed"),
    index: Path = typer.Option(..., "--index", metavar="ITEMS", help="items to search (.csv/.parquet: id, features; label optional)"),
    query: Path = typer.Option(..., "--query", metavar="QUERIES", help="query items, same columns"),
    k: int = typer.Option(10, "--k", help="neighbours per query"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the results here (TSV) instead of stdout"),
    backend: str = typer.Option("exact", "--backend", metavar="exact|faiss", callback=choice("exact", "faiss"), help="exact torch search, or faiss (pip install 'ltrkit[faiss]')"),
    checkpoint: str = typer.Option("best", "--checkpoint", metavar="best|last", callback=choice("best", "last"), help="weights of --run"),
    device: Optional[str] = typer.Option(None, "--device", callback=_device, help=f"{_DEVICE_HELP} (default cpu)"),
) -> None:
    """Nearest index items of every query by the run's similarity: TSV lines ``query_id rank item_id score``.

    With ``--backend faiss`` the exact search runs too and its recall@k against exact is printed on stderr.
    """
    from ltrkit._optional import MissingExtraError
    from ltrkit.embeddings.job import Embedder
    from ltrkit.embeddings.search import neighbour_recall, search
    from ltrkit.training import _io
    from ltrkit.training.config import ConfigError
    from ltrkit.training.run_folder import OutputError, output_errors
    from ltrkit.training.trainer import resolve_device

    if k < 1:
        fail(f"--k must be >= 1, got {k}")
    try:
        embedder = Embedder.load(run, checkpoint, device=resolve_device(device or "cpu"))
        items = {}
        for option, path in (("--index", index), ("--query", query)):
            try:
                items[option] = embedder.read_items(path)
                vectors = embedder.encode(items[option])
            except ValueError as error:
                fail(f"{option}: {error}")
            items[option] = (items[option], vectors)
        (index_items, index_vectors), (query_items, query_vectors) = items["--index"], items["--query"]
        kind = embedder.config.evaluation.similarity
        scores, rows = search(index_vectors, query_vectors, k, similarity_kind=kind, backend=backend)
        if backend == "faiss":
            _, exact = search(index_vectors, query_vectors, k, similarity_kind=kind)
            typer.echo(f"faiss recall@{min(k, len(index_items))} against exact search: {neighbour_recall(rows, exact):.4f}", err=True)
    except MissingExtraError as error:
        fail(str(error))
    except ConfigError as error:
        fail(_config_error_line(error))
    lines = ["query_id\trank\titem_id\tscore\n"]
    for q, query_id in enumerate(query_items.ids.tolist()):
        for rank in range(rows.shape[1]):
            lines.append(f"{query_id}\t{rank + 1}\t{index_items.ids[int(rows[q, rank])]}\t{float(scores[q, rank]):.6g}\n")
    text = "".join(lines)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with output_errors(out):
            _io.write_text(out, text)
    except OutputError as error:
        fail(str(error))


def register(app: typer.Typer) -> None:
    """Add the ``embed`` command group to ``app``."""
    app.add_typer(embed_app, name="embed")
