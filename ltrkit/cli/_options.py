"""Options shared by every command that reads a data file, and the one loader they call.

A command declares the reading options as parameters annotated with the types below (their
names, help texts and checks live here, once) and passes them to :func:`read_dataset`::

    def stats_command(file: Path = ..., index_base: IndexBase = "auto", query_file: QueryFile = None,
                      regroup: Regroup = False, no_cache: NoCache = False, cache_dir: CacheDir = None,
                      missing: Missing = "error") -> None:
        dataset = read_dataset(file, index_base=index_base, query_file=query_file, regroup=regroup,
                               no_cache=no_cache, cache_dir=cache_dir, missing=missing)

Nothing here imports numpy, numba or torch at module level.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

from ltrkit.cli._errors import fail, one_line

if TYPE_CHECKING:
    from ltrkit.data.dataset import RankingDataset

__all__ = ["CacheDir", "IndexBase", "Missing", "NFeatures", "NoCache", "QueryFile", "Regroup", "choice", "read_dataset"]

INDEX_BASES = ("auto", "0", "1")
MISSING_RULES = ("error", "zero", "min")


def choice(*allowed: str) -> Callable[[Optional[str]], Optional[str]]:
    """An option callback accepting only ``allowed`` values (``None`` passes: the option's unset)."""

    def check(value: Optional[str]) -> Optional[str]:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"must be one of {list(allowed)}, got {value!r}")
        return value

    return check


IndexBase = Annotated[
    str,
    typer.Option(
        "--index-base", metavar="auto|0|1", callback=choice(*INDEX_BASES),
        help="Feature index base: 1 (LETOR, SVMlight), 0, or auto (0-based when some line has index 0).",
    ),
]
QueryFile = Annotated[
    Optional[Path],
    typer.Option(
        "--query-file", metavar="FILE",
        help="Group file of a libsvm file: one query size per line (default: <file>.query or <file>.group beside it).",
    ),
]
Regroup = Annotated[
    bool,
    typer.Option("--regroup", help="Gather the rows of a qid that are not contiguous (default: an error)."),
]
NoCache = Annotated[
    bool,
    typer.Option("--no-cache", help="Parse the text file; neither read nor write its binary cache."),
]
CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", metavar="DIR", help="Keep binary caches in DIR instead of beside the data file."),
]
NFeatures = Annotated[
    Optional[int],
    typer.Option(
        "--n-features", metavar="N", min=1,
        help="Width of the feature matrix: an index beyond it is an error (default: the largest index "
        "seen, at most 1,000,000; give N for wider files).",
    ),
]
Missing = Annotated[
    str,
    typer.Option(
        "--missing", metavar="error|zero|min", callback=choice(*MISSING_RULES),
        help="Missing feature values (NULL, NaN, 'idx:'): an error, 0, or the query's minimum of that feature.",
    ),
]


def read_dataset(
    path: Path,
    *,
    index_base: str = "auto",
    query_file: Optional[Path] = None,
    regroup: bool = False,
    no_cache: bool = False,
    cache_dir: Optional[Path] = None,
    missing: str = "error",
    n_features: Optional[int] = None,
    what: str = "",
) -> "RankingDataset":
    """Load a data file or cache folder with the shared reading options; bad input exits 2.

    Args:
        path: LETOR/libsvm file (optionally compressed) or cache folder.
        index_base: ``"auto"``, ``"0"`` or ``"1"`` as given on the command line.
        query_file, regroup, cache_dir, missing, n_features: passed to
            :func:`ltrkit.data.cache.load_dataset`.
        no_cache: neither read nor write the cache.
        what: the option that named ``path`` (e.g. ``"--data"``), used in error messages.

    Returns:
        The dataset. A warning of the reader (e.g. a cache that cannot be written) is printed
        as one ``warning:`` line on stderr.
    """
    from ltrkit.data.cache import load_dataset

    label = f"{what}: " if what else ""
    if not path.exists():
        fail(f"{label}file not found: {path}")
    if query_file is not None and not query_file.is_file():
        fail(f"--query-file: file not found: {query_file}")
    options = {
        "index_base": index_base if index_base == "auto" else int(index_base),
        "regroup": regroup,
        "missing": missing,
        "n_features": n_features,
    }
    if query_file is not None:
        options["query_file"] = query_file
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = load_dataset(path, cache=not no_cache, cache_dir=cache_dir, **options)
    except (OSError, ValueError) as error:  # LetorFormatError and CacheError are ValueErrors
        fail(str(error).replace("pass n_features=", "pass --n-features"))
    # a cache that cannot be read or written is worth a line, not Python's two-line warning format
    for warning in caught:
        typer.echo(f"warning: {one_line(str(warning.message).replace('cache_dir=', '--cache-dir'))}", err=True)
    return dataset
