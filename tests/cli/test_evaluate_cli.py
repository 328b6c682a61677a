"""``ltrkit evaluate`` end to end: both input forms, JSON shape, table, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data.cache import load_dataset
from ltrkit.metrics.evaluation import evaluate_dataset

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TEST_FILE = DATA / "lightgbm-rank" / "test.txt"


def invoke(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scores")
    data = load_dataset(TEST_FILE, cache=False)
    scores = np.round(np.random.default_rng(0).normal(size=data.n_docs), 2)
    path = folder / "scores.txt"
    path.write_text("".join(f"{s!r}\n" for s in scores.tolist()) + "\n")
    return data, scores, path


def test_data_and_scores_json(scored):
    data, scores, path = scored
    result = invoke("--data", str(TEST_FILE), "--scores", str(path), "--no-cache", "--json", "--metrics", "ndcg@10,map,mrr,err@10,p@5,recall@100")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"conventions", "mean", "per_query"}
    assert list(payload["mean"]) == ["ndcg@10", "map", "mrr", "err@10", "p@5", "recall@100"]
    assert len(payload["per_query"]) == data.n_queries == 50
    expected = evaluate_dataset(data, scores, ["ndcg@10", "map", "mrr", "err@10", "p@5", "recall@100"]).to_dict()
    assert payload == expected


def test_options_reach_the_conventions(scored):
    _, _, path = scored
    result = invoke("--data", str(TEST_FILE), "--scores", str(path), "--no-cache", "--json", "--metrics", "ndcg@5",
                    "--gain", "linear", "--empty", "skip", "--ties", "average", "--threshold", "2", "--max-grade", "4",
                    "--preset", "trec", "--score-precision", "exact")
    assert result.exit_code == 0, result.stderr
    conventions = json.loads(result.stdout)["conventions"]
    assert conventions == {"preset": "trec", "gain": "linear", "empty": "skip", "ties": "average", "relevance_threshold": 2.0, "max_grade": 4.0, "score_precision": "exact"}


def test_table_output(scored):
    _, _, path = scored
    result = invoke("--data", str(TEST_FILE), "--scores", str(path), "--no-cache")
    assert result.exit_code == 0, result.stderr
    for name in ("ndcg@10", "map", "mrr", "err@10", "50 queries", "conventions: preset=ltrkit"):
        assert name in result.stdout
    per_query = invoke("--data", str(TEST_FILE), "--scores", str(path), "--no-cache", "--per-query", "--metrics", "ndcg@3")
    assert per_query.exit_code == 0
    assert "1001" in per_query.stdout and "mean" in per_query.stdout


def test_qrels_and_run_with_trec_preset_equal_pytrec_eval(tmp_path):
    qrels = {"1": {"a": 2, "b": 0, "c": 1, "z": 1}, "2": {"x": 1, "y": 0}, "3": {"m": 1}, "4": {"n": 0}}
    run = {"1": {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.9}, "2": {"y": 1.0, "x": 0.3}, "4": {"n": 2.0}, "9": {"q": 1.0}}
    (tmp_path / "qrels").write_text("".join(f"{q} 0 {d} {r}\n" for q, docs in qrels.items() for d, r in docs.items()))
    (tmp_path / "run").write_text("".join(f"{q} Q0 {d} 0 {s} tag\n" for q, docs in run.items() for d, s in docs.items()))
    result = invoke("--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "run"), "--preset", "trec", "--json",
                    "--metrics", "ndcg_cut_3,map,recip_rank,P_2,recall_1")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.3", "map", "recip_rank", "P.2", "recall.1"}).evaluate(run)
    assert set(payload["per_query"]) == set(expected) == {"1", "2", "4"}
    for qid, values in payload["per_query"].items():
        for ours, theirs in [("ndcg@3", "ndcg_cut_3"), ("map", "map"), ("mrr", "recip_rank"), ("p@2", "P_2"), ("recall@1", "recall_1")]:
            assert values[ours] == pytest.approx(expected[qid][theirs], abs=1e-12)
    counted = invoke("--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "run"), "--preset", "trec", "--json", "--metrics", "map", "--missing-queries", "zero")
    assert json.loads(counted.stdout)["per_query"]["3"] == {"map": 0.0}


def test_skipped_queries_are_json_null(tmp_path):
    (tmp_path / "qrels").write_text("1 0 a 0\n2 0 b 1\n")
    (tmp_path / "run").write_text("1 Q0 a 1 1.0 t\n2 Q0 b 1 1.0 t\n")
    result = invoke("--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "run"), "--json", "--empty", "skip", "--metrics", "ndcg")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["per_query"] == {"1": {"ndcg": None}, "2": {"ndcg": 1.0}}
    assert payload["mean"] == {"ndcg": 1.0}


@pytest.mark.parametrize(
    "args, message",
    [
        ([], r"give --data with --scores or --run, or --qrels with --run"),
        (["--data", str(TEST_FILE)], r"give --data with --scores or --run, or --qrels with --run"),
        (["--data", str(TEST_FILE), "--qrels", "q.txt", "--run", "r.txt"], r"give --data with --scores or --run, or --qrels with --run"),
        (["--data", "nothere.txt", "--scores", "s.txt"], r"--data: file not found: nothere.txt"),
        (["--qrels", "q.txt", "--run", "r.txt", "--regroup", "--index-base", "1"], r"--index-base, --regroup apply to --data only"),
        (["--metrics", "ndgc@10"], r"unknown metric 'ndgc@10'; known metrics:"),
        (["--gain", "log"], r"gain must be one of \['exp2', 'linear'\], got 'log'"),
        (["--preset", "trec_eval"], r"conventions preset must be one of"),
        (["--ties", "average", "--metrics", "map"], r"ties='average' is not supported by \['map'\]"),
        (["--missing-queries", "zero"], r"--missing-queries applies to runs only"),
        (["--missing-queries", "all"], r"Invalid value for '--missing-queries': must be one of \['ignore', 'zero'\], got 'all'"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(scored, args, message):
    _, _, path = scored
    base = [] if not args or args[0] in ("--data", "--qrels") else ["--data", str(TEST_FILE), "--scores", str(path), "--no-cache"]
    result = invoke(*base, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def test_score_file_errors(tmp_path, scored):
    data, _, _ = scored
    short = tmp_path / "short.txt"
    short.write_text("0.1\n0.2\n")
    result = invoke("--data", str(TEST_FILE), "--scores", str(short), "--no-cache")
    assert result.exit_code == 2
    assert f"has 2 scores but --data {TEST_FILE} has {data.n_docs} documents" in result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("0.1\nhigh\n")
    result = invoke("--data", str(TEST_FILE), "--scores", str(bad), "--no-cache")
    assert result.exit_code == 2 and f"{bad}:2: a score must be one number per line, got 'high'" in result.stderr
    nan = tmp_path / "nan.txt"
    nan.write_text("0.1\nnan\n")
    result = invoke("--data", str(TEST_FILE), "--scores", str(nan), "--no-cache")
    assert result.exit_code == 2 and f"{nan}:2: scores must be finite, got 'nan'" in result.stderr


def test_malformed_run_names_file_and_line(tmp_path):
    (tmp_path / "qrels").write_text("1 0 a 1\n")
    (tmp_path / "run").write_text("1 Q0 a 1 1.0 t\n1 Q0 b 2\n")
    result = invoke("--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'run'}:2: a run line needs 6 fields" in result.stderr


@pytest.mark.parametrize("metrics", ["ndcg@10,err@10", "ndcg@10,map"])
def test_max_grade_is_the_resolved_one_in_table_and_json(scored, metrics):
    data, _, path = scored
    common = ("--data", str(TEST_FILE), "--scores", str(path), "--no-cache", "--metrics", metrics)
    conventions = json.loads(invoke(*common, "--json").stdout)["conventions"]
    assert conventions["max_grade"] == float(data.labels.max()) == 4.0
    table = " ".join(invoke(*common).stdout.split())
    assert "max_grade=4.0" in table
