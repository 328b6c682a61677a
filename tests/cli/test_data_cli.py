"""``ltrkit data generate|stats|convert`` through typer's CliRunner."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data.cache import load_dataset
from ltrkit.data.synthetic import generate_splits

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


SMALL = ("--train-queries", 12, "--vali-queries", 4, "--test-queries", 3, "--features", 10, "--mean-list-length", 8, "--seed", 7)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    result = invoke("data", "generate", "--out", out, *SMALL)
    assert result.exit_code == 0, result.stderr
    return out


def test_generate_writes_the_synthetic_splits(generated):
    expected = generate_splits(train_queries=12, vali_queries=4, test_queries=3, n_features=10, mean_list_length=8, seed=7)
    for name in ("train", "vali", "test"):
        read = load_dataset(generated / f"{name}.txt", cache=False)
        np.testing.assert_array_equal(read.features, expected[name].features)
        np.testing.assert_array_equal(read.labels, expected[name].labels)
        np.testing.assert_array_equal(read.query_offsets, expected[name].query_offsets)
        assert read.qids.tolist() == expected[name].qids.tolist()


def test_generate_summary_and_refusal_to_overwrite(tmp_path):
    result = invoke("data", "generate", "--out", tmp_path, *SMALL)
    assert result.exit_code == 0
    assert "train.txt" in result.stdout and "12" in result.stdout
    again = invoke("data", "generate", "--out", tmp_path, *SMALL)
    assert again.exit_code == 2 and "already exist; pass --overwrite" in again.stderr
    assert invoke("data", "generate", "--out", tmp_path, *SMALL, "--overwrite").exit_code == 0


def test_generate_libsvm(tmp_path):
    result = invoke("data", "generate", "--out", tmp_path, *SMALL, "--format", "libsvm")
    assert result.exit_code == 0, result.stderr
    sizes = [int(line) for line in (tmp_path / "train.txt.query").read_text().split()]
    read = load_dataset(tmp_path / "train.txt", cache=False)
    assert read.list_lengths.tolist() == sizes and len(sizes) == 12
    assert "qid:" not in (tmp_path / "train.txt").read_text()


def test_stats_json_matches_direct_counts(generated):
    result = invoke("data", "stats", generated / "train.txt", "--json", "--no-cache")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    data = load_dataset(generated / "train.txt", cache=False)
    assert (stats["queries"], stats["documents"], stats["features"]) == (data.n_queries, data.n_docs, data.n_features)
    values, counts = np.unique(data.labels, return_counts=True)
    assert stats["labels"] == {str(int(v)): int(c) for v, c in zip(values, counts)}
    assert not list(generated.glob("*.ltrcache")), "--no-cache writes nothing"


def test_stats_filters_apply_before_counting(generated):
    data = load_dataset(generated / "train.txt", cache=False)
    groups = [data.labels[data.query_slice(q)] for q in range(data.n_queries)]
    min_docs = int(np.median(data.list_lengths))
    result = invoke("data", "stats", generated / "train.txt", "--json", "--no-cache", "--min-docs", min_docs, "--drop-without-relevant", "--relevance-threshold", 2)
    stats = json.loads(result.stdout)
    kept = [g for g in groups if g.size >= min_docs and (g >= 2).any()]
    assert stats["queries"] == len(kept) and stats["documents"] == sum(g.size for g in kept)
    assert stats["dropped_queries"] == data.n_queries - len(kept)
    assert stats["queries_without_relevant"] == 0


def test_stats_table_on_shared_libsvm(tmp_path):
    source = SHARED / "lightgbm-rank" / "rank.train"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    result = invoke("data", "stats", source, "--no-cache", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    # figures from ../shared/data/README.md
    assert (stats["queries"], stats["documents"]) == (201, 3005)
    assert stats["labels"] == {"0": 645, "1": 1211, "2": 858, "3": 222, "4": 69}
    table = invoke("data", "stats", source, "--no-cache")
    assert table.exit_code == 0
    for text in ("queries", "3,005", "1,211", "documents per query", "no relevant"):
        assert text in table.stdout


def test_convert_round_trips_through_every_format(generated, tmp_path):
    original = load_dataset(generated / "vali.txt", cache=False)
    libsvm, group = tmp_path / "vali.libsvm", tmp_path / "vali.groups"
    result = invoke("data", "convert", generated / "vali.txt", libsvm, "--group-out", group)
    assert result.exit_code == 0, result.stderr
    assert group.read_text().split() == [str(n) for n in original.list_lengths]
    cache = tmp_path / "vali.ltrcache"
    assert invoke("data", "convert", libsvm, cache, "--query-file", group).exit_code == 0
    letor = tmp_path / "back.txt"
    assert invoke("data", "convert", cache, letor).exit_code == 0
    back = load_dataset(letor, cache=False)
    np.testing.assert_array_equal(back.features, original.features)
    np.testing.assert_array_equal(back.labels, original.labels)
    np.testing.assert_array_equal(back.query_offsets, original.query_offsets)


def test_convert_with_explicit_target(generated, tmp_path):
    out = tmp_path / "folder_cache"
    assert invoke("data", "convert", generated / "test.txt", out, "--to", "cache").exit_code == 0
    assert load_dataset(out).n_queries == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("data", "stats", "{tmp}/missing.txt"), "error: file not found: {tmp}/missing.txt"),
        (("data", "stats", "{tmp}/bad.txt"), r"error: {tmp}/bad.txt, line 2: .*'3:x'"),
        (("data", "stats", "{tmp}/bad.txt", "--query-file", "{tmp}/nope"), "error: --query-file: file not found"),
        (("data", "stats", "{tmp}/good.txt", "--min-docs", "-1"), "error: --min-docs must be >= 0, got -1"),
        (("data", "stats", "{tmp}/good.txt", "--index-base", "2"), r"error: Invalid value for '--index-base': must be one of \['auto', '0', '1'\], got '2' \(see 'ltrkit data stats --help'\)"),
        (("data", "convert", "{tmp}/good.txt", "{tmp}/out.txt", "--to", "parquet"), r"error: Invalid value for '--to': must be one of \['letor', 'libsvm', 'cache', 'qrels'\], got 'parquet'"),
        (("data", "convert", "{tmp}/good.txt", "{tmp}/good.txt"), "error: DST is SRC"),
        (("data", "convert", "{tmp}/good.txt", "{tmp}/existing.txt"), "already exists; pass --overwrite"),
        (("data", "convert", "{tmp}/good.txt", "{tmp}/somedir", "--to", "cache"), "is a folder that is not an ltrkit cache"),
        (("data", "convert", "{tmp}/good.txt", "{tmp}/o.txt", "--group-out", "{tmp}/g"), "--group-out applies to libsvm output only"),
        (("data", "convert", "{tmp}/badcache.ltrcache", "{tmp}/o.txt"), "badcache.ltrcache: not a cache folder"),
        (("data", "generate", "--out", "{tmp}/g", "--features", "3"), "error: --features must be an int >= 8, got 3"),
        (("data", "generate", "--out", "{tmp}/g", "--format", "csv"), r"error: Invalid value for '--format': must be one of \['letor', 'libsvm'\], got 'csv'"),
        (("data", "generate", "--out", "{tmp}/g", "--vali-queries", "0"), "error: vali-queries must be an int >= 1, got 0"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    (tmp_path / "good.txt").write_text("1 qid:1 1:0.5\n0 qid:1 2:1\n")
    (tmp_path / "existing.txt").write_text("keep me\n")
    (tmp_path / "bad.txt").write_text("1 qid:1 1:0.5\n0 qid:1 3:x\n")
    (tmp_path / "somedir").mkdir()
    (tmp_path / "somedir" / "user_file").write_text("keep me\n")
    (tmp_path / "badcache.ltrcache").mkdir()
    result = invoke(*(arg.format(tmp=tmp_path) for arg in args))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert re.search(message.format(tmp=re.escape(str(tmp_path))), lines[0]), lines[0]
    assert (tmp_path / "existing.txt").read_text() == "keep me\n"
    assert (tmp_path / "somedir" / "user_file").exists()


def test_stats_cache_is_written_and_reused(generated, tmp_path):
    copy = tmp_path / "train.txt"
    shutil.copyfile(generated / "train.txt", copy)
    first = invoke("data", "stats", copy, "--json")
    assert first.exit_code == 0 and (tmp_path / "train.txt.ltrcache").is_dir()
    second = invoke("data", "stats", copy, "--json")
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_stats_regroup_option(tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("1 qid:1 1:1\n0 qid:2 1:2\n2 qid:1 1:3\n")
    refused = invoke("data", "stats", split, "--no-cache", "--json")
    assert refused.exit_code == 2 and "qid" in refused.stderr
    result = invoke("data", "stats", split, "--no-cache", "--json", "--regroup")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["queries"], stats["list_length"]["max"], stats["queries_single_label"]) == (2, 2, 1)
