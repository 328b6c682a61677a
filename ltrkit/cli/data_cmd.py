"""``ltrkit data generate|stats|convert``: synthetic data, dataset summaries and format conversion.

Exit codes: 0 success; 2 bad input (missing or malformed file, bad option), reported as one line
on stderr without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ltrkit.cli._errors import fail

__all__ = ["register", "data_app"]

data_app = typer.Typer(
    name="data",
    help="Data tools: generate the built-in synthetic data, summarise a dataset, convert between formats.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_TEXT_FORMATS = ("letor", "libsvm")
_CONVERT_TARGETS = ("letor", "libsvm", "cache")
_LIBSVM_SUFFIXES = (".libsvm", ".svm")
_CACHE_SUFFIX = ".ltrcache"



def _index_base(value: str) -> object:
    if value == "auto":
        return "auto"
    if value in ("0", "1"):
        return int(value)
    fail(f"--index-base must be auto, 0 or 1, got {value!r}")


def _load(path: Path, *, query_file: Optional[Path], index_base: str, regroup: bool, cache: bool):
    """Load a data file or cache folder; every data error becomes one line and exit code 2."""
    from ltrkit.data.cache import CacheError, load_dataset
    from ltrkit.data.letor import LetorFormatError

    if not path.exists():
        fail(f"file not found: {path}")
    if query_file is not None and not query_file.is_file():
        fail(f"--query-file: file not found: {query_file}")
    options = {"index_base": _index_base(index_base), "regroup": regroup}
    if query_file is not None:
        options["query_file"] = query_file
    try:
        return load_dataset(path, cache=cache, **options)
    except (LetorFormatError, CacheError, OSError, ValueError) as error:
        fail(str(error))


@data_app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", help="folder for train.txt, vali.txt, test.txt (created if missing)"),
    train_queries: Optional[int] = typer.Option(None, "--train-queries", help="default: DEFAULT_SPLITS (1,500)"),
    vali_queries: Optional[int] = typer.Option(None, "--vali-queries", help="default: DEFAULT_SPLITS (300)"),
    test_queries: Optional[int] = typer.Option(None, "--test-queries", help="default: DEFAULT_SPLITS (300)"),
    features: Optional[int] = typer.Option(None, "--features", help="feature columns, >= 8 (default 136)"),
    mean_list_length: Optional[float] = typer.Option(None, "--mean-list-length", help="mean documents per query (default 50)"),
    seed: int = typer.Option(0, "--seed", help="the files are a pure function of the options"),
    fmt: str = typer.Option("letor", "--format", help="letor (label qid:Q i:v ...) or libsvm (+ <file>.query group file)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing train/vali/test files"),
) -> None:
    """Write the built-in MSLR-shaped synthetic data (query-disjoint splits) as text files."""
    from ltrkit.data.letor import write_letor, write_libsvm
    from ltrkit.data.synthetic import DEFAULT_SPLITS, generate_splits

    if fmt not in _TEXT_FORMATS:
        fail(f"--format must be one of {list(_TEXT_FORMATS)}, got {fmt!r}")
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
        out.mkdir(parents=True, exist_ok=True)
        for name, dataset in splits.items():
            if fmt == "letor":
                write_letor(dataset, targets[name])
            else:
                write_libsvm(dataset, targets[name])
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
    file: Path = typer.Argument(..., help="LETOR/libsvm file (optionally .gz/.bz2/.xz) or a cache folder"),
    query_file: Optional[Path] = typer.Option(None, "--query-file", help="group file of a libsvm FILE (default: FILE.query / FILE.group)"),
    min_docs: int = typer.Option(0, "--min-docs", help="drop queries with fewer documents before counting"),
    drop_without_relevant: bool = typer.Option(False, "--drop-without-relevant", help="drop queries with no relevant document before counting"),
    relevance_threshold: float = typer.Option(1.0, "--relevance-threshold", help="label >= this counts as relevant"),
    index_base: str = typer.Option("auto", "--index-base", help="feature index base: auto, 0 or 1"),
    regroup: bool = typer.Option(False, "--regroup", help="move the rows of a qid together when they are not contiguous (else an error)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="read/write the binary cache next to FILE"),
) -> None:
    """Summarise a dataset: counts, label histogram, list lengths, queries with no relevant document."""
    from ltrkit.data.dataset import dataset_statistics, filter_queries

    if min_docs < 0:
        fail(f"--min-docs must be >= 0, got {min_docs}")
    dataset = _load(file, query_file=query_file, index_base=index_base, regroup=regroup, cache=cache)
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
        if to not in _CONVERT_TARGETS:
            fail(f"--to must be one of {list(_CONVERT_TARGETS)}, got {to!r}")
        return to
    from ltrkit.data.cache import is_cache_folder

    if dst.suffix == _CACHE_SUFFIX or is_cache_folder(dst):
        return "cache"
    if dst.suffix in _LIBSVM_SUFFIXES:
        return "libsvm"
    return "letor"


@data_app.command("convert")
def convert_command(
    src: Path = typer.Argument(..., help="LETOR/libsvm file (optionally compressed) or a cache folder"),
    dst: Path = typer.Argument(..., help="output file, or cache folder (*.ltrcache)"),
    to: Optional[str] = typer.Option(
        None, "--to", help="letor, libsvm or cache (default: from DST: *.ltrcache or a cache folder -> cache, *.libsvm/*.svm -> libsvm, else letor)"
    ),
    query_file: Optional[Path] = typer.Option(None, "--query-file", help="group file of a libsvm SRC (default: SRC.query / SRC.group)"),
    group_out: Optional[Path] = typer.Option(None, "--group-out", help="group file written with --to libsvm (default: DST.query)"),
    index_base: str = typer.Option("auto", "--index-base", help="feature index base of SRC: auto, 0 or 1"),
    regroup: bool = typer.Option(False, "--regroup", help="move the rows of a qid together when they are not contiguous (else an error)"),
    no_doc_ids: bool = typer.Option(False, "--no-doc-ids", help="omit '# docid' comments in text output"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing DST (a file, or a cache folder)"),
) -> None:
    """Convert between LETOR, libsvm + group file, and the binary cache folder."""
    from ltrkit.data.cache import is_cache_folder, save_cache
    from ltrkit.data.letor import write_letor, write_libsvm

    target = _target_format(dst, to)
    if group_out is not None and target != "libsvm":
        fail(f"--group-out applies to libsvm output only, but the output format is {target}")
    if dst.resolve() == src.resolve():
        fail(f"DST is SRC ({src}); write to another path")
    if dst.is_dir() and not is_cache_folder(dst):
        # never replace a user's folder: only a cache folder may be overwritten
        fail(f"DST {dst} is a folder that is not an ltrkit cache; choose another path")
    if dst.exists() and not overwrite:
        fail(f"DST {dst} already exists; pass --overwrite to replace it")
    dataset = _load(src, query_file=query_file, index_base=index_base, regroup=regroup, cache=False)
    try:
        if target == "cache":
            save_cache(dataset, dst)
        elif target == "letor":
            write_letor(dataset, dst, write_doc_ids=not no_doc_ids)
        else:
            write_libsvm(dataset, dst, group_path=group_out, write_doc_ids=not no_doc_ids)
    except OSError as error:
        fail(f"cannot write {dst}: {error.strerror or error}")
    except ValueError as error:
        fail(str(error))
    extra = ""
    if target == "libsvm":
        extra = f" + group file {group_out if group_out is not None else Path(str(dst) + '.query')}"
    typer.echo(f"wrote {dst} ({target}{extra}): {dataset.n_queries:,} queries, {dataset.n_docs:,} documents, {dataset.n_features} features")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    app.add_typer(data_app, name="data")
