"""TREC qrels/run reading and writing: round trips, trec_eval agreement, malformed files."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from ltrkit.data.dataset import RankingDataset
from ltrkit.metrics.evaluation import evaluate_dataset, evaluate_run
from ltrkit.metrics.trec import read_qrels, read_run, write_qrels, write_trec_run


def small_dataset(seed: int = 0, *, with_ids: bool = True) -> RankingDataset:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, size=30)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    return RankingDataset(
        features=np.zeros((n, 1), np.float32),
        labels=rng.integers(0, 3, size=n).astype(np.float32),
        query_offsets=offsets,
        qids=np.array([str(1000 + i) for i in range(30)]),
        doc_ids=np.array([f"GX{x:06d}" for x in rng.choice(10**6, n, replace=False)]) if with_ids else None,
        source="small",
    )


@pytest.mark.parametrize("with_ids", [True, False])
def test_written_files_evaluate_in_trec_eval_as_in_ltrkit(tmp_path, with_ids):
    data = small_dataset(1, with_ids=with_ids)
    scores = np.random.default_rng(2).integers(0, 5, size=data.n_docs).astype(np.float32) / 3  # ties
    write_qrels(tmp_path / "qrels", data)
    write_trec_run(tmp_path / "run", data, scores, tag="test", ties="docid_desc")
    qrels, run = read_qrels(tmp_path / "qrels"), read_run(tmp_path / "run")
    expected = pytrec_eval.RelevanceEvaluator({q: {d: int(v) for d, v in j.items()} for q, j in qrels.items()}, {"ndcg_cut.5", "map", "recip_rank"}).evaluate(run)
    ours = evaluate_dataset(data, scores, ["ndcg@5", "map", "mrr"], conventions="trec")
    from_files = evaluate_run(qrels, run, ["ndcg@5", "map", "mrr"], conventions="trec")
    for qid in data.qids:
        for name, theirs in [("ndcg@5", "ndcg_cut_5"), ("map", "map"), ("mrr", "recip_rank")]:
            assert ours.per_query[qid][name] == pytest.approx(expected[qid][theirs], abs=1e-12)
            assert from_files.per_query[qid][name] == pytest.approx(expected[qid][theirs], abs=1e-12)


@pytest.mark.parametrize("ties", ["input_order", "docid_desc", "pessimistic", "optimistic"])
def test_run_lines_are_in_rank_order(tmp_path, ties):
    data = small_dataset(3)
    scores = np.random.default_rng(4).integers(0, 3, size=data.n_docs).astype(np.float64)
    write_trec_run(tmp_path / "run", data, scores, ties=ties)
    lines = [line.split() for line in (tmp_path / "run").read_text().splitlines()]
    assert len(lines) == data.n_docs
    index_of = {d: i for i, d in enumerate(data.doc_ids)}
    for i, qid in enumerate(data.qids):
        rows = data.query_slice(i)
        block = [line for line in lines if line[0] == qid]
        assert [int(line[3]) for line in block] == list(range(1, rows.stop - rows.start + 1))
        assert {line[5] for line in block} == {"ltrkit"}
        written = [index_of[line[2]] for line in block]
        key = {
            "input_order": lambda r: (-scores[r], r),
            "docid_desc": lambda r: (-scores[r], [-ord(c) for c in data.doc_ids[r]]),
            "pessimistic": lambda r: (-scores[r], data.labels[r], r),
            "optimistic": lambda r: (-scores[r], -data.labels[r], r),
        }[ties]
        assert written == sorted(range(rows.start, rows.stop), key=key)
        assert [float(line[4]) for line in block] == [scores[r] for r in written]


def test_scores_are_written_exactly(tmp_path):
    data = small_dataset(5)
    scores = np.random.default_rng(6).normal(size=data.n_docs).astype(np.float32)
    write_trec_run(tmp_path / "run", data, scores)
    run = read_run(tmp_path / "run")
    for i, qid in enumerate(data.qids):
        rows = data.query_slice(i)
        for doc, score in zip(data.doc_ids[rows], scores[rows]):
            assert run[qid][doc] == float(score)


def test_positional_doc_ids(tmp_path):
    data = small_dataset(7, with_ids=False)
    write_qrels(tmp_path / "qrels", data)
    qrels = read_qrels(tmp_path / "qrels")
    first = data.query_slice(0)
    assert list(qrels["1000"]) == [f"1000_{i}" for i in range(first.stop - first.start)]
    assert list(qrels["1000"].values()) == [float(v) for v in data.labels[first]]


def test_write_is_atomic(tmp_path):
    data = small_dataset(8)
    target = tmp_path / "run"
    target.write_text("old\n")
    with pytest.raises(ValueError, match=r"scores must not be NaN: row 0"):
        write_trec_run(target, data, np.full(data.n_docs, np.nan))
    assert target.read_text() == "old\n"
    write_trec_run(target, data, np.zeros(data.n_docs))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("q1 0 d1\n", r"qrels:1: a qrels line needs 4 fields 'qid 0 docid relevance', got 3: 'q1 0 d1'"),
        ("q1 0 d1 1\nq1 0 d2 high\n", r"qrels:2: relevance must be a number, got 'high'"),
        ("q1 0 d1 nan\n", r"qrels:1: relevance must be finite, got 'nan'"),
        ("q1 0 d1 1\n\nq1 0 d1 0\n", r"qrels:3: document 'd1' of query 'q1' is already judged on line 1"),
    ],
)
def test_malformed_qrels(tmp_path, text, message):
    path = tmp_path / "qrels"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_qrels(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("q1 Q0 d1 1 0.5\n", r"run:1: a run line needs 6 fields 'qid Q0 docid rank score tag', got 5"),
        ("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 x t\n", r"run:2: score must be a number, got 'x'"),
        ("q1 Q0 d1 1 inf t\n", r"run:1: score must be finite, got 'inf'"),
        ("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", r"run:2: document 'd1' of query 'q1' is already listed on line 1"),
    ],
)
def test_malformed_run(tmp_path, text, message):
    path = tmp_path / "run"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_run(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere: no such file"):
        read_run(tmp_path / "nothere")
    (tmp_path / "run").write_bytes(b"q1 Q0 d1 1 0.5 t\nq1 Q0 \xff 2 0.4 t\n")
    with pytest.raises(ValueError, match=r"run:2: not valid UTF-8"):
        read_run(tmp_path / "run")


def test_write_errors(tmp_path):
    data = small_dataset(9)
    with pytest.raises(ValueError, match=rf"scores has shape \(2,\) but small has {data.n_docs} documents"):
        write_trec_run(tmp_path / "run", data, np.zeros(2))
    with pytest.raises(ValueError, match=r"tag must be a non-empty string without whitespace, got 'my run'"):
        write_trec_run(tmp_path / "run", data, np.zeros(data.n_docs), tag="my run")
    with pytest.raises(ValueError, match=r"ties must be one of .*, got 'average'"):
        write_trec_run(tmp_path / "run", data, np.zeros(data.n_docs), ties="average")
    spaced = RankingDataset(np.zeros((1, 1), np.float32), np.ones(1, np.float32), np.array([0, 1]), np.array(["q 1"]), source="spaced")
    with pytest.raises(ValueError, match=r"spaced: qid 'q 1' is empty or contains whitespace"):
        write_qrels(tmp_path / "qrels", spaced)
    graded = RankingDataset(np.zeros((1, 1), np.float32), np.array([0.5], np.float32), np.array([0, 1]), np.array(["q"]), source="graded")
    with pytest.raises(ValueError, match=r"graded: label 0.5 at row 0 is not an integer"):
        write_qrels(tmp_path / "qrels", graded)
