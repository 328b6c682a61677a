"""A TREC run as ``ltrkit predict --format trec`` writes it, evaluated from the CLI alone:
``evaluate --data FILE --run RUN`` and ``evaluate --qrels QRELS --run RUN`` (qrels from
``data convert --to qrels``) give the numbers of ``evaluate --data FILE --scores SCORES``."""

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
from ltrkit.metrics.trec import write_trec_run

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
#: one file without document ids (positional ids) and one with '# docid = ...' comments
FILES = {"no_doc_ids": DATA / "lightgbm-rank" / "test.txt", "doc_ids": DATA / "mq2008" / "Fold1" / "vali.txt"}
METRICS = "ndcg@5,ndcg,map,mrr,err@10,p@5,recall@10"


def invoke(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module", params=sorted(FILES))
def scored(request, tmp_path_factory):
    source = FILES[request.param]
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    folder = tmp_path_factory.mktemp(request.param)
    data = load_dataset(source, cache=False)
    # one decimal: many ties, so the tie rules are exercised too
    scores = np.round(np.random.default_rng(3).normal(size=data.n_docs), 1)
    (folder / "scores.txt").write_text("".join(f"{s!r}\n" for s in scores.tolist()))
    write_trec_run(folder / "run.trec", data, scores, tag="ltrkit-test")  # what `predict --format trec` calls
    converted = invoke("data", "convert", source, folder / "test.qrels", "--no-cache")
    assert converted.exit_code == 0, converted.stderr
    return source, data, folder


@pytest.mark.parametrize("preset", ["ltrkit", "trec"])
def test_run_judged_by_the_data_file_or_its_qrels_equals_scores(scored, preset):
    source, _, folder = scored
    common = ("--metrics", METRICS, "--preset", preset, "--json")
    by_scores = invoke("evaluate", "--data", source, "--scores", folder / "scores.txt", "--no-cache", *common)
    by_data = invoke("evaluate", "--data", source, "--run", folder / "run.trec", "--no-cache", *common)
    by_qrels = invoke("evaluate", "--qrels", folder / "test.qrels", "--run", folder / "run.trec", *common)
    for result in (by_scores, by_data, by_qrels):
        assert result.exit_code == 0, result.stderr
    expected = json.loads(by_scores.stdout)
    for result in (by_data, by_qrels):
        payload = json.loads(result.stdout)
        assert list(payload["per_query"]) == list(expected["per_query"])
        for qid, values in expected["per_query"].items():
            assert payload["per_query"][qid] == pytest.approx(values, abs=1e-12), qid
        assert payload["mean"] == pytest.approx(expected["mean"], abs=1e-12)
        assert payload["conventions"] == {**expected["conventions"], "missing": "ignore"}


def test_qrels_file_names_documents_as_the_run_does(scored):
    _, data, folder = scored
    lines = [line.split() for line in (folder / "test.qrels").read_text().splitlines()]
    qids = np.repeat(data.qids.astype(str), data.list_lengths)
    if data.doc_ids is not None:
        names = data.doc_ids.astype(str)
    else:
        names = [f"{q}_{i}" for q, n in zip(data.qids.astype(str), data.list_lengths) for i in range(n)]
    assert lines == [[q, "0", d, str(int(label))] for q, d, label in zip(qids, names, data.labels)]
    run_docs = {(f[0], f[2]) for f in (line.split() for line in (folder / "run.trec").read_text().splitlines())}
    assert run_docs == {(q, d) for q, _, d, _ in lines}


def test_trec_preset_on_the_written_files_equals_pytrec_eval(scored):
    _, _, folder = scored
    qrels = {}
    for qid, _, doc, rel in (line.split() for line in (folder / "test.qrels").read_text().splitlines()):
        qrels.setdefault(qid, {})[doc] = int(rel)
    run = {}
    for qid, _, doc, _, score, _ in (line.split() for line in (folder / "run.trec").read_text().splitlines()):
        run.setdefault(qid, {})[doc] = float(score)
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5", "map", "P.5"}).evaluate(run)
    result = invoke("evaluate", "--qrels", folder / "test.qrels", "--run", folder / "run.trec", "--preset", "trec",
                    "--metrics", "ndcg@5,map,p@5", "--json")
    per_query = json.loads(result.stdout)["per_query"]
    assert set(per_query) == set(expected)
    for qid, values in per_query.items():
        assert values["ndcg@5"] == pytest.approx(expected[qid]["ndcg_cut_5"], abs=1e-12)
        assert values["map"] == pytest.approx(expected[qid]["map"], abs=1e-12)
        assert values["p@5"] == pytest.approx(expected[qid]["P_5"], abs=1e-12)


def test_run_with_documents_the_data_does_not_have(tmp_path):
    (tmp_path / "d.txt").write_text("2 qid:1 1:1\n0 qid:1 1:2\n1 qid:2 1:3\n")
    # positional ids 1_0, 1_1, 2_0; '1_9' is unjudged (non-relevant), query 2 is not in the run
    (tmp_path / "r.trec").write_text("1 Q0 1_9 1 3.0 t\n1 Q0 1_1 2 2.0 t\n1 Q0 1_0 3 1.0 t\n")
    common = ("--data", tmp_path / "d.txt", "--run", tmp_path / "r.trec", "--no-cache", "--metrics", "mrr", "--json")
    result = invoke("evaluate", *common)
    assert json.loads(result.stdout)["per_query"] == {"1": {"mrr": pytest.approx(1 / 3)}}
    counted = invoke("evaluate", *common, "--missing-queries", "zero")
    assert json.loads(counted.stdout)["per_query"] == {"1": {"mrr": pytest.approx(1 / 3)}, "2": {"mrr": 0.0}}


@pytest.mark.parametrize(
    "content, message",
    [
        ("1.5 qid:1 1:1\n", r"label 1\.5 at row 0 is not an integer; qrels hold integer relevance"),
        ("1 qid:1 1:1 # a\n0 qid:1 1:2 # a\n", r"document id 'a' appears twice in query '1'"),
        ("1 qid:1 1:1 # a\n0 qid:1 1:2\n", r"document id '' is empty or contains whitespace"),
    ],
)
def test_convert_to_qrels_refuses_what_trec_files_cannot_hold(tmp_path, content, message):
    (tmp_path / "d.txt").write_text(content)
    result = invoke("data", "convert", tmp_path / "d.txt", tmp_path / "out.qrels", "--no-cache")
    assert result.exit_code == 2
    assert re.search(message, result.stderr) and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "out.qrels").exists()
