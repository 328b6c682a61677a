"""The shared reading options reach the reader from every data-reading command (data stats,
data convert, evaluate --data), each with an effect seen from outside."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data import cache
from ltrkit.data.cache import load_dataset

GOOD = "1 qid:1 1:1 2:0.5\n0 qid:1 1:2\n2 qid:2 2:3\n"


def command(name: str, data: Path, folder: Path, n_docs: int) -> list[str]:
    if name == "stats":
        return ["data", "stats", str(data), "--json"]
    if name == "convert":
        return ["data", "convert", str(data), str(folder / "out" / "converted.txt"), "--overwrite"]
    scores = folder / "scores.txt"
    scores.write_text("".join(f"{i % 3}\n" for i in range(n_docs)))
    return ["evaluate", "--data", str(data), "--scores", str(scores), "--metrics", "ndcg", "--json"]


def run(name: str, folder: Path, content: str, n_docs: int, *options: str):
    data = folder / "data" / "file.txt"
    data.parent.mkdir(exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    if not data.exists() or data.read_text() != content:  # rewriting would make its cache stale
        data.write_text(content)
    return CliRunner().invoke(app, [*command(name, data, folder, n_docs), *options])


COMMANDS = ["stats", "convert", "evaluate"]

#: (option, file content, documents, options, whether it reads without them, and with them)
SCENARIOS = [
    ("index_base", "1 qid:1 0:1 1:2\n0 qid:1 0:3\n", 2, ("--index-base", "1"), True, False),
    ("query_file", "1 0:1 1:2\n0 1:3\n2 1:1\n", 3, ("--query-file", "{folder}/data/groups.txt"), False, True),
    ("regroup", "1 qid:1 1:1\n0 qid:2 1:2\n2 qid:1 1:3\n", 3, ("--regroup",), False, True),
    ("n_features_wider", "1 qid:1 1200000:1\n0 qid:1 1:3\n", 2, ("--n-features", "1200000"), False, True),
    ("n_features_narrower", "1 qid:1 5:1\n0 qid:1 1:3\n", 2, ("--n-features", "4"), True, False),
]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("option, content, n_docs, options, ok_without, ok_with", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_parse_options_reach_the_reader(tmp_path, name, option, content, n_docs, options, ok_without, ok_with):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "groups.txt").write_text("2\n1\n")
    without = run(name, tmp_path, content, n_docs, "--no-cache")
    assert (without.exit_code == 0) == ok_without, without.output
    with_options = run(name, tmp_path, content, n_docs, "--no-cache", *(o.format(folder=tmp_path) for o in options))
    assert (with_options.exit_code == 0) == ok_with, with_options.output
    for result in (without, with_options):
        if result.exit_code:
            assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and "file.txt" in result.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_values_option(tmp_path, name):
    content = "1 qid:1 1:NULL 2:1\n0 qid:1 1:2 2:nan\n"
    refused = run(name, tmp_path, content, 2, "--no-cache")
    assert refused.exit_code == 2 and "--missing" in refused.stderr
    # the query's other value of each feature is its minimum: 2 for feature 1, 1 for feature 2
    for rule, filled in (("zero", [[0, 1], [2, 0]]), ("min", [[2, 1], [2, 1]])):
        assert run(name, tmp_path, content, 2, "--no-cache", "--missing", rule).exit_code == 0
        if name == "convert":
            features = load_dataset(tmp_path / "out" / "converted.txt", cache=False).features
            np.testing.assert_array_equal(features, np.array(filled, dtype=np.float32))


@pytest.mark.parametrize("name", COMMANDS)
def test_cache_options(tmp_path, name):
    data_folder = tmp_path / "data"
    assert run(name, tmp_path, GOOD, 3, "--no-cache").exit_code == 0
    assert not list(tmp_path.rglob("*.ltrcache")), "--no-cache writes no cache"
    caches = tmp_path / "caches"
    assert run(name, tmp_path, GOOD, 3, "--cache-dir", str(caches)).exit_code == 0
    assert len(list(caches.glob("*.ltrcache"))) == 1 and not list(data_folder.glob("*.ltrcache"))
    assert run(name, tmp_path, GOOD, 3).exit_code == 0
    assert [p.name for p in data_folder.glob("*.ltrcache")] == ["file.txt.ltrcache"]


@pytest.mark.parametrize(
    "options, message",
    [
        (("--index-base", "2"), r"Invalid value for '--index-base': must be one of \['auto', '0', '1'\], got '2'"),
        (("--missing", "drop"), r"Invalid value for '--missing': must be one of \['error', 'zero', 'min'\], got 'drop'"),
        (("--query-file", "nope.txt"), r"--query-file: file not found: nope.txt"),
    ],
)
@pytest.mark.parametrize("name", COMMANDS)
def test_bad_reading_options(tmp_path, name, options, message):
    result = run(name, tmp_path, GOOD, 3, *options)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and re.search(message, result.stderr), result.stderr


def test_reader_warnings_are_one_line_each(tmp_path, monkeypatch):
    assert run("stats", tmp_path, GOOD, 3).exit_code == 0
    features = tmp_path / "data" / "file.txt.ltrcache" / "features.npy"
    features.write_bytes(features.read_bytes()[:-4])  # truncated: the cache is rebuilt, with a warning
    rebuilt = run("stats", tmp_path, GOOD, 3)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert [line.split(":")[0] for line in rebuilt.stderr.splitlines()] == ["warning"]
    assert "features.npy" in rebuilt.stderr and json.loads(rebuilt.stdout)["documents"] == 3

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache, "save_cache", read_only)
    unwritable = run("stats", tmp_path, GOOD, 3, "--cache-dir", str(tmp_path / "elsewhere"))
    assert unwritable.exit_code == 0
    lines = unwritable.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: could not write the cache") and "--cache-dir" in lines[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_unallocatable_feature_matrix_is_one_line(tmp_path, name):
    result = run(name, tmp_path, "1 qid:1 1:1\n0 qid:1 2:3\n", 2, "--no-cache", "--n-features", str(10**15))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines() if hasattr(result, "stderr") else result.output.strip().splitlines()
    assert len(lines) == 1 and re.search(r"file\.txt: the dense feature matrix of 2 documents x 1000000000000000 features needs [\d,.]+ GiB", lines[0])


def test_index_above_the_limit_names_the_cli_option(tmp_path):
    result = run("stats", tmp_path, "1 qid:1 99999999999:1\n", 1, "--no-cache")
    assert result.exit_code == 2 and "is above MAX_FEATURE_INDEX=1000000" in result.output and "pass --n-features" in result.output
