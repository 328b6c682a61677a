"""``ltrkit data generate|stats|convert|verify``: synthetic data, dataset summaries, format
conversion and cache checks.

Exit codes: 0 success; 1 ``verify`` found problems; 2 bad input (missing or malformed file, bad
option), reported as one line on stderr without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ltrkit.cli._errors import fail
from ltrkit.cli._options import CacheDir, IndexBase, Missing, NFeatures, NoCache, QueryFile, Regroup, choice, read_dataset

__all__ = ["register", "data_app"]

data_app = typer.Typer(
    name="data",
    help="Data tools: generate the built-in synthetic data, summarise a dataset, convert between formats, check a cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_TEXT_FORMATS = ("letor", "libsvm")
_CONVERT_TARGETS = ("letor", "libsvm", "cache", "qrels")
_LIBSVM_SUFFIXES = (".libsvm", ".svm")
_QRELS_SUFFIXES = (".qrels",)
_CACHE_SUFFIX = ".ltrcache"


@data_app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder for train.txt, vali.txt, test.txt (created if missing)."),
    train_queries: Optional[int] = typer.Option(None, "--train-queries", help="Training queries (default 1,500)."),
    vali_queries: Optional[int] = typer.Option(None, "--vali-queries", help="Validation queries (default 300)."),
    test_queries: Optional[int] = typer.Option(None, "--test-queries", help="Test queries (default 300)."),
    features: Optional[int] = typer.Option(None, "--features", help="Feature columns, >= 8 (default 136)."),
    mean_list_length: Optional[float] = typer.Option(None, "--mean-list-length", help="Mean documents per query (default 50)."),
    seed: int = typer.Option(0, "--seed", help="The files are a pure function of the options and the seed."),
    fmt: str = typer.Option(
        "letor", "--format", metavar="letor|libsvm", callback=choice(*_TEXT_FORMATS),
        help="letor (label qid:Q i:v ...) or libsvm (+ <file>.query group file).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing train/vali/test files."),
) -> None:
    """Write the built-in MSLR-shaped synthetic data (query-disjoint splits) as text files."""
    from ltrkit.data.synthetic import DEFAULT_SPLITS, generate_splits, write_splits

    options = dict(DEFAULT_SPLITS, seed=seed)
    given = {
        "train_queries": train_queries,
        "vali_queries": vali_queries,
        "test_queries": test_queries,
        "n_features": features,
        "mean_list_length": mean_list_length,
    }
    options.update({key: value for key, value in given.items() if value is not None})
    targets = {name: out / f"{name}.txt" for name in ("train", "vali", "test")}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not overwrite:
        fail(f"{', '.join(existing)} already exist; pass --overwrite to replace them")
    try:
        splits = generate_splits(**options)
    except ValueError as error:
        fail(str(error).replace("n_features", "--features").replace("_queries", "-queries"))
    try:
        write_splits(splits, out, fmt=fmt)
    except OSError as error:
        fail(f"cannot write to {out}: {error.strerror or error}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synthetic data (seed {seed}, {fmt}) in {out}")
    for column in ("split", "file", "queries", "documents", "features", "labels 0/1/2/3/4"):
        table.add_column(column, justify="left" if column in ("split", "file") else "right")
    for name, dataset in splits.items():
        counts = [int((dataset.labels == value).sum()) for value in range(5)]
        table.add_row(
            name, targets[name].name, f"{dataset.n_queries:,}", f"{dataset.n_docs:,}", str(dataset.n_features),
            "/".join(f"{count:,}" for count in counts),
        )
    Console(width=120).print(table)


@data_app.command("stats")
def stats_command(
    file: Path = typer.Argument(..., metavar="FILE", help="LETOR/libsvm file (optionally .gz/.bz2/.xz) or a cache folder."),
    min_docs: int = typer.Option(0, "--min-docs", help="Drop queries with fewer documents before counting."),
    drop_without_relevant: bool = typer.Option(False, "--drop-without-relevant", help="Drop queries with no relevant document before counting."),
    relevance_threshold: float = typer.Option(1.0, "--relevance-threshold", help="A label >= this counts as relevant."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    index_base: IndexBase = "auto",
    query_file: QueryFile = None,
    regroup: Regroup = False,
    no_cache: NoCache = False,
    cache_dir: CacheDir = None,
    missing: Missing = "error",
    n_features: NFeatures = None,
) -> None:
    """Summarise a dataset: counts, label histogram, list lengths, queries with no relevant document."""
    if min_docs < 0:
        fail(f"--min-docs must be >= 0, got {min_docs}")
    dataset = read_dataset(
        file, index_base=index_base, query_file=query_file, regroup=regroup, no_cache=no_cache, cache_dir=cache_dir, missing=missing,
        n_features=n_features,
    )
    from ltrkit.data.dataset import dataset_statistics, filter_queries

    try:
        filtered = filter_queries(
            dataset, min_docs=min_docs, drop_without_relevant=drop_without_relevant, relevance_threshold=relevance_threshold
        )
        stats = dataset_statistics(filtered, relevance_threshold=relevance_threshold)
    except ValueError as error:
        fail(str(error))
    stats = {"file": str(file), "dropped_queries": dataset.n_queries - filtered.n_queries, **stats}
    if as_json:
        typer.echo(json.dumps(stats))
        return
    _print_stats(stats)


def _print_stats(stats: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    summary = Table(title=str(stats["file"]), show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    relevant = f"label >= {stats['relevance_threshold']:g}"
    for label, value in (
        ("queries", stats["queries"]),
        ("documents", stats["documents"]),
        ("features", stats["features"]),
        ("queries dropped by filters", stats["dropped_queries"]),
        ("empty queries", stats["empty_queries"]),
        (f"queries with no relevant document ({relevant})", stats["queries_without_relevant"]),
        ("queries with a single label value", stats["queries_single_label"]),
    ):
        summary.add_row(label, f"{value:,}")
    console.print(summary)

    labels = Table(title="labels")
    for column in ("label", "documents", "share"):
        labels.add_column(column, justify="right")
    total = max(stats["documents"], 1)
    for label, count in stats["labels"].items():
        labels.add_row(label, f"{count:,}", f"{100.0 * count / total:.1f}%")
    console.print(labels)

    lengths = Table(title="documents per query")
    for key in ("min", "median", "mean", "p90", "p99", "max"):
        lengths.add_column(key, justify="right")
    lengths.add_row(*(f"{stats['list_length'][key]:,.4g}" for key in ("min", "median", "mean", "p90", "p99", "max")))
    console.print(lengths)


def _target_format(dst: Path, to: Optional[str]) -> str:
    if to is not None:
        return to
    from ltrkit.data.cache import is_cache_folder

    if dst.suffix == _CACHE_SUFFIX or is_cache_folder(dst):
        return "cache"
    if dst.suffix in _LIBSVM_SUFFIXES:
        return "libsvm"
    if dst.suffix in _QRELS_SUFFIXES:
        return "qrels"
    return "letor"


@data_app.command("convert")
def convert_command(
    src: Path = typer.Argument(..., metavar="SRC", help="LETOR/libsvm file (optionally compressed) or a cache folder."),
    dst: Path = typer.Argument(..., metavar="DST", help="Output file, or cache folder (*.ltrcache)."),
    to: Optional[str] = typer.Option(
        None, "--to", metavar="letor|libsvm|cache|qrels", callback=choice(*_CONVERT_TARGETS),
        help="Output format (default: from DST: *.ltrcache or a cache folder -> cache, *.libsvm/*.svm -> libsvm, "
        "*.qrels -> qrels, else letor). qrels: TREC 'qid 0 docid label' lines whose docids are the ones "
        "'ltrkit predict --format trec' writes for SRC: its '# docid' comments, else <qid>_<row within the query, from 0>.",
    ),
    group_out: Optional[Path] = typer.Option(None, "--group-out", metavar="FILE", help="Group file written with --to libsvm (default: DST.query)."),
    no_doc_ids: bool = typer.Option(False, "--no-doc-ids", help="Omit '# docid' comments in letor/libsvm output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing DST (a file, or a cache folder)."),
    index_base: IndexBase = "auto",
    query_file: QueryFile = None,
    regroup: Regroup = False,
    no_cache: NoCache = False,
    cache_dir: CacheDir = None,
    missing: Missing = "error",
    n_features: NFeatures = None,
) -> None:
    """Convert between LETOR, libsvm + group file and the binary cache folder, or write TREC qrels."""
    target = _target_format(dst, to)
    if group_out is not None and target != "libsvm":
        fail(f"--group-out applies to libsvm output only, but the output format is {target}")
    if no_doc_ids and target not in _TEXT_FORMATS:
        fail(f"--no-doc-ids applies to letor/libsvm output only, but the output format is {target}")
    if dst.resolve() == src.resolve():
        fail(f"DST is SRC ({src}); write to another path")
    from ltrkit.data.cache import is_cache_folder, save_cache

    if dst.is_dir() and not is_cache_folder(dst):
        # never replace a user's folder: only a cache folder may be overwritten
        fail(f"DST {dst} is a folder that is not an ltrkit cache; choose another path")
    if dst.exists() and not overwrite:
        fail(f"DST {dst} already exists; pass --overwrite to replace it")
    dataset = read_dataset(
        src, index_base=index_base, query_file=query_file, regroup=regroup, no_cache=no_cache, cache_dir=cache_dir, missing=missing,
        n_features=n_features,
    )
    try:
        if target == "cache":
            save_cache(dataset, dst)
        elif target in _TEXT_FORMATS:
            from ltrkit.data.letor import write_letor, write_libsvm

            if target == "letor":
                write_letor(dataset, dst, write_doc_ids=not no_doc_ids)
            else:
                write_libsvm(dataset, dst, group_path=group_out, write_doc_ids=not no_doc_ids)
        else:
            from ltrkit.metrics.trec import write_qrels

            write_qrels(dst, dataset)
    except OSError as error:
        fail(f"cannot write {dst}: {error.strerror or error}")
    except ValueError as error:
        fail(str(error))
    extra = ""
    if target == "libsvm":
        extra = f" + group file {group_out if group_out is not None else Path(str(dst) + '.query')}"
    typer.echo(f"wrote {dst} ({target}{extra}): {dataset.n_queries:,} queries, {dataset.n_docs:,} documents, {dataset.n_features} features")


@data_app.command("verify")
def verify_command(
    path: Path = typer.Argument(..., metavar="PATH", help="A cache folder, or a data file whose cache is checked."),
    cache_dir: CacheDir = None,
) -> None:
    """Check a binary cache: manifest, array files, headers, shapes, checksums.

    Prints OK, or each problem on its own line. Exit code 0 when the cache is intact, 1 when
    problems were found, 2 on bad input (no such path, no cache for the data file). Whether the
    cache still matches its data file is not checked: reading the file rebuilds a stale cache.
    """
    from ltrkit.data.cache import cache_folder_for, is_cache_folder, verify_cache

    if not path.exists():
        fail(f"not found: {path}")
    if path.is_dir():
        if cache_dir is not None:
            fail(f"--cache-dir applies to a data file, but {path} is a folder")
        if not is_cache_folder(path) and path.suffix != _CACHE_SUFFIX:
            fail(f"{path} is a folder that is not an ltrkit cache (no manifest.json)")
        folder = path
    else:
        folder = cache_folder_for(path, cache_dir)
        if not folder.is_dir():
            fail(f"{path} has no cache at {folder}; reading it once writes one (e.g. ltrkit data stats {path})")
    problems = verify_cache(folder)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"OK: {folder}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    app.add_typer(data_app, name="data")
