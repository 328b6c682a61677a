"""Dataset/run evaluation against pytrec_eval, ranx and gdeval (ir_measures), and its options."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
import torch

from ltrkit.data.dataset import RankingDataset, pad_ragged
from ltrkit.metrics.evaluation import (
    DEFAULT_METRICS,
    MetricSpec,
    compute_metrics,
    evaluate_dataset,
    evaluate_run,
    parse_metric,
    resolve_conventions,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CUTOFFS = (1, 5, 10, 100)


def random_trec(seed: int, *, n_queries: int = 80, ties: bool = True):
    """Random qrels/run over numeric qids: graded labels 0-4, tied scores, unjudged run documents,
    relevant documents missing from the run, queries without relevant documents, queries only in
    the qrels and queries only in the run."""
    rng = np.random.default_rng(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(n_queries):
        qid = str(100 + q)
        n = int(rng.integers(1, 40))
        docs = [f"d{x}" for x in rng.choice(10**6, size=n, replace=False)]
        labels = rng.integers(0, 5, size=n) * (rng.random() > 0.2)
        judged = rng.random(n) < 0.8
        in_run = rng.random(n) < 0.85
        scores = rng.integers(0, 8, size=n) / 4.0 if ties else rng.permutation(n) + rng.random()
        if q % 13 != 5 and judged.any():
            qrels[qid] = {d: int(y) for d, y, j in zip(docs, labels, judged) if j}
        if q % 17 != 3 and in_run.any():
            run[qid] = {d: float(s) for d, s, r in zip(docs, scores, in_run) if r}
    return qrels, run


def pytrec_values(qrels, run, measures):
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(measures))
    return evaluator.evaluate(run)


TREC_MEASURES = {
    "ndcg": "ndcg",
    **{f"ndcg@{k}": f"ndcg_cut_{k}" for k in CUTOFFS},
    "map": "map",
    **{f"map@{k}": f"map_cut_{k}" for k in CUTOFFS},
    "mrr": "recip_rank",
    **{f"p@{k}": f"P_{k}" for k in CUTOFFS},
    **{f"recall@{k}": f"recall_{k}" for k in CUTOFFS},
}


@pytest.mark.parametrize("seed", [0, 1])
def test_trec_preset_equals_pytrec_eval(seed):
    qrels, run = random_trec(seed)
    cut = ",".join(map(str, CUTOFFS))
    expected = pytrec_values(qrels, run, ["ndcg", f"ndcg_cut.{cut}", "map", f"map_cut.{cut}", "recip_rank", f"P.{cut}", f"recall.{cut}"])
    result = evaluate_run(qrels, run, list(TREC_MEASURES), conventions="trec")
    assert set(result.per_query) == set(expected)
    for qid, values in result.per_query.items():
        for ours, theirs in TREC_MEASURES.items():
            assert values[ours] == pytest.approx(expected[qid][theirs], abs=1e-12), (qid, ours)


def test_trec_preset_ties_scores_equal_in_float32_as_trec_eval():
    qrels, run = random_trec(9, ties=False)
    # float64 scores 1e-9 apart are distinct, but equal once stored as trec_eval's C float
    near = {q: {d: 1.0 + (i % 3) * 1e-9 for i, d in enumerate(docs)} for q, docs in run.items()}
    expected = pytrec_values(qrels, near, ["recip_rank", "ndcg_cut.5"])
    trec = evaluate_run(qrels, near, ["mrr", "ndcg@5"], conventions="trec")
    exact = evaluate_run(qrels, near, ["mrr", "ndcg@5"], conventions="trec", score_precision="exact")
    assert trec.conventions["score_precision"] == "float32"
    for qid, values in trec.per_query.items():
        assert values["mrr"] == pytest.approx(expected[qid]["recip_rank"], abs=1e-12)
        assert values["ndcg@5"] == pytest.approx(expected[qid]["ndcg_cut_5"], abs=1e-12)
    assert any(exact.per_query[q]["mrr"] != trec.per_query[q]["mrr"] for q in trec.per_query)


def test_trec_relevance_level_matches_threshold():
    qrels, run = random_trec(2)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"map", "P.5", "recip_rank", "ndcg_cut.5"}, relevance_level=3)
    expected = evaluator.evaluate(run)
    result = evaluate_run(qrels, run, ["map", "p@5", "mrr", "ndcg@5"], conventions="trec", relevance_threshold=3)
    for qid, values in result.per_query.items():
        assert values["map"] == pytest.approx(expected[qid]["map"], abs=1e-12)
        assert values["p@5"] == pytest.approx(expected[qid]["P_5"], abs=1e-12)
        assert values["mrr"] == pytest.approx(expected[qid]["recip_rank"], abs=1e-12)
        # trec_eval's nDCG is graded: the relevance level does not touch it
        assert values["ndcg@5"] == pytest.approx(expected[qid]["ndcg_cut_5"], abs=1e-12)


def test_missing_queries_ignored_or_zero_as_trec_eval_c():
    qrels, run = random_trec(3)
    ignored = evaluate_run(qrels, run, ["map", "ndcg@10"], conventions="trec")
    counted = evaluate_run(qrels, run, ["map", "ndcg@10"], conventions="trec", missing="zero")
    missing = [q for q in qrels if q not in run]
    assert missing and all(q not in ignored.per_query for q in missing)
    assert all(counted.per_query[q] == {"map": 0.0, "ndcg@10": 0.0} for q in missing)
    n_evaluated = len(ignored.per_query)
    assert counted.mean["map"] == pytest.approx(ignored.mean["map"] * n_evaluated / (n_evaluated + len(missing)))
    assert counted.conventions["missing"] == "zero"


RANX_NAMES = {
    "ndcg@5": ("ndcg@5", "linear"),
    "ndcg@10": ("ndcg_burges@10", "exp2"),
    "map@5": ("map@5", None),
    "mrr": ("mrr", None),
    "p@10": ("precision@10", None),
    "recall@10": ("recall@10", None),
}


def test_equals_ranx_without_ties():
    ranx = pytest.importorskip("ranx")
    qrels, run = random_trec(4, ties=False)
    common = [q for q in run if q in qrels]
    qrels = {q: qrels[q] for q in common}
    run = {q: run[q] for q in common}
    # ranx drops queries without relevant documents from Qrels; compare the others
    judged = [q for q in common if any(v > 0 for v in qrels[q].values())]
    ranx_qrels = ranx.Qrels({q: qrels[q] for q in judged})
    ranx_run = ranx.Run({q: run[q] for q in judged})
    names = [name for name, _ in RANX_NAMES.values()]
    expected = ranx.evaluate(ranx_qrels, ranx_run, names, return_mean=False)
    order = list(ranx_run.keys())
    for ours, (theirs, gain) in RANX_NAMES.items():
        result = evaluate_run(qrels, run, [ours], gain=gain or "exp2")
        got = np.array([result.per_query[q][ours] for q in order])
        np.testing.assert_allclose(got, expected[theirs], rtol=1e-9, atol=1e-12, err_msg=ours)


def test_err_and_ndcg_equal_gdeval():
    if shutil.which("perl") is None:
        pytest.skip("gdeval needs perl")
    ir_measures = pytest.importorskip("ir_measures")
    qrels, run = random_trec(5)
    measures = [ir_measures.ERR @ 5, ir_measures.ERR @ 20, ir_measures.nDCG @ 20]
    expected = {(m.query_id, str(m.measure)): m.value for m in ir_measures.gdeval.iter_calc(measures, qrels, run)}
    # gdeval: exp2 gain, trec_eval's tie rule, ERR's top grade fixed at 4, 5 printed decimals
    result = evaluate_run(qrels, run, ["err@5", "err@20", "ndcg@20"], gain="exp2", ties="docid_desc", max_grade=4)
    compared = 0
    for qid, values in result.per_query.items():
        if not any(v > 0 for v in qrels[qid].values()):
            continue
        compared += 1
        assert values["err@5"] == pytest.approx(expected[qid, "ERR@5"], abs=6e-6)
        assert values["err@20"] == pytest.approx(expected[qid, "ERR@20"], abs=6e-6)
        assert values["ndcg@20"] == pytest.approx(expected[qid, "nDCG@20"], abs=6e-6)
    assert compared > 40


def make_dataset(seed: int, *, n_queries: int = 70, with_ids: bool = True) -> RankingDataset:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 30, size=n_queries)
    lengths[3] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    labels = rng.integers(0, 5, size=n).astype(np.float32)
    labels[offsets[5] : offsets[6]] = 0
    return RankingDataset(
        features=np.zeros((n, 2), np.float32),
        labels=labels,
        query_offsets=offsets,
        qids=np.array([f"q{i}" for i in range(n_queries)]),
        doc_ids=np.array([f"doc{x}" for x in rng.choice(10**6, n, replace=False)]) if with_ids else None,
        source="random",
    )


def test_dataset_trec_preset_equals_pytrec_eval_on_mq2008():
    from ltrkit.data.cache import load_dataset

    data = load_dataset(DATA / "mq2008" / "Fold1" / "test.txt", cache=False)
    scores = np.round(np.random.default_rng(6).random(data.n_docs), 1)  # many ties
    qrels, run = {}, {}
    for i, qid in enumerate(data.qids):
        rows = data.query_slice(i)
        qrels[qid] = {d: int(y) for d, y in zip(data.doc_ids[rows], data.labels[rows])}
        run[qid] = {d: float(s) for d, s in zip(data.doc_ids[rows], scores[rows])}
    expected = pytrec_values(qrels, run, ["ndcg_cut.5,10", "map", "recip_rank", "P.10", "recall.10"])
    result = evaluate_dataset(data, scores, ["ndcg@5", "ndcg@10", "map", "mrr", "p@10", "recall@10"], conventions="trec")
    assert len(result.per_query) == data.n_queries == 156
    for qid, values in result.per_query.items():
        for ours, theirs in [("ndcg@5", "ndcg_cut_5"), ("ndcg@10", "ndcg_cut_10"), ("map", "map"), ("mrr", "recip_rank"), ("p@10", "P_10"), ("recall@10", "recall_10")]:
            assert values[ours] == pytest.approx(expected[qid][theirs], abs=1e-12), (qid, ours)
    mean_map = np.mean([v["map"] for v in expected.values()])
    assert result.mean["map"] == pytest.approx(mean_map, abs=1e-12)


@pytest.mark.parametrize("ties", ["input_order", "average", "docid_desc"])
def test_chunking_does_not_change_results(ties):
    data = make_dataset(7)
    scores = np.random.default_rng(8).integers(0, 4, size=data.n_docs).astype(np.float64)
    metrics = ["ndcg@5", "ndcg", "p@3", "recall@10"] + ([] if ties == "average" else ["map", "mrr", "err@10"])
    whole = evaluate_dataset(data, scores, metrics, ties=ties, batch_size=4096)
    for batch_size in (1, 7):
        chunked = evaluate_dataset(data, scores, metrics, ties=ties, batch_size=batch_size)
        assert list(chunked.per_query) == list(whole.per_query)
        for qid, values in chunked.per_query.items():
            # only the summation order over padding differs between chunk widths
            assert values == pytest.approx(whole.per_query[qid], rel=1e-13, abs=1e-15)
        assert chunked.mean == pytest.approx(whole.mean, rel=1e-13)


def test_dataset_equals_compute_metrics_on_the_padded_dataset():
    data = make_dataset(9)
    scores = np.random.default_rng(10).normal(size=data.n_docs)
    padded_scores, mask = pad_ragged(scores, data.query_offsets)
    padded_labels, _ = pad_ragged(data.labels, data.query_offsets)
    metrics = list(DEFAULT_METRICS)
    batch = compute_metrics(torch.from_numpy(padded_scores), torch.from_numpy(padded_labels), torch.from_numpy(mask), metrics, max_grade=float(data.labels.max()))
    result = evaluate_dataset(data, scores, metrics, empty="skip")
    for name in metrics:
        per_query = np.array([result.per_query[q][name] for q in data.qids])
        with_skip = torch.where(torch.from_numpy(np.isnan(per_query)), torch.nan, batch[name]).numpy()
        np.testing.assert_allclose(per_query, with_skip, rtol=1e-12, equal_nan=True)
        assert result.mean[name] == pytest.approx(np.nanmean(per_query))
    assert math.isnan(result.per_query["q3"]["ndcg"]) and math.isnan(result.per_query["q5"]["map"])


def test_docid_desc_without_doc_ids_uses_positional_ids():
    data = make_dataset(11, with_ids=False)
    scores = np.zeros(data.n_docs)  # everything tied: the order is decided by the ids
    result = evaluate_dataset(data, scores, ["mrr"], ties="docid_desc")
    checked = 0
    for i, qid in enumerate(data.qids):
        relevant = data.labels[data.query_slice(i)] >= 1
        if len(relevant) < 12 or not relevant.any():
            continue
        # ids "<qid>_<position>" compared as strings: "q1_9" > "q1_10" > "q1_1"
        ranked = sorted(range(len(relevant)), key=lambda p: f"{qid}_{p}", reverse=True)
        first_hit = next(rank for rank, p in enumerate(ranked, 1) if relevant[p])
        assert result.per_query[qid]["mrr"] == pytest.approx(1.0 / first_hit)
        checked += 1
    assert checked > 10


def test_conventions_are_recorded_and_to_dict_is_json_ready():
    data = make_dataset(12)
    result = evaluate_dataset(data, np.arange(data.n_docs, dtype=float), ["err@5", "ndcg@3"], empty="skip")
    as_dict = result.to_dict()
    assert set(as_dict) == {"conventions", "mean", "per_query"}
    assert as_dict["conventions"] == {
        "preset": "ltrkit", "gain": "exp2", "empty": "skip", "ties": "input_order",
        "relevance_threshold": 1.0, "max_grade": float(data.labels.max()), "score_precision": "exact",
    }
    assert as_dict["per_query"]["q3"] == {"err@5": None, "ndcg@3": None}
    assert list(as_dict["per_query"]) == list(data.qids)


def test_empty_conventions_change_the_mean_as_documented():
    data = make_dataset(13)
    scores = np.random.default_rng(14).normal(size=data.n_docs)
    skip = evaluate_dataset(data, scores, ["ndcg@10"], empty="skip")
    zero = evaluate_dataset(data, scores, ["ndcg@10"], empty="zero")
    one = evaluate_dataset(data, scores, ["ndcg@10"], empty="one")
    values = np.array([v["ndcg@10"] for v in skip.per_query.values()])
    n_empty = int(np.isnan(values).sum())
    assert n_empty >= 2
    total = np.nansum(values)
    assert zero.mean["ndcg@10"] == pytest.approx(total / len(values))
    assert one.mean["ndcg@10"] == pytest.approx((total + n_empty) / len(values))
    assert skip.mean["ndcg@10"] == pytest.approx(total / (len(values) - n_empty))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ndcg@10", MetricSpec("ndcg", 10)),
        (" NDCG ", MetricSpec("ndcg", None)),
        ("dcg@3", MetricSpec("dcg", 3)),
        ("ap@100", MetricSpec("map", 100)),
        ("map", MetricSpec("map", None)),
        ("rr@10", MetricSpec("mrr", 10)),
        ("recip_rank", MetricSpec("mrr", None)),
        ("err@20", MetricSpec("err", 20)),
        ("precision@5", MetricSpec("p", 5)),
        ("P_5", MetricSpec("p", 5)),
        ("r@100", MetricSpec("recall", 100)),
        ("ndcg_cut_10", MetricSpec("ndcg", 10)),
        ("map_cut_5", MetricSpec("map", 5)),
        ("recall_1000", MetricSpec("recall", 1000)),
    ],
)
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize(
    "name, message",
    [
        ("ndgc@10", r"unknown metric 'ndgc@10'; known metrics: ndcg, ndcg@k, "),
        ("ndcg@0", r"metric 'ndcg@0': the cutoff after '@' must be a positive integer, got '0'"),
        ("ndcg@x", r"the cutoff after '@' must be a positive integer, got 'x'"),
        ("ndcg@", r"the cutoff after '@' must be a positive integer, got ''"),
        ("", r"unknown metric ''"),
    ],
)
def test_parse_metric_errors(name, message):
    with pytest.raises(ValueError, match=message):
        parse_metric(name)


def test_resolve_conventions_errors():
    with pytest.raises(ValueError, match=r"conventions preset must be one of \['ltrkit', 'trec'\], got 'trec_eval'"):
        resolve_conventions("trec_eval")
    with pytest.raises(ValueError, match=r"ties must be one of .*'docid_desc'\], got 'docid'"):
        resolve_conventions(ties="docid")
    with pytest.raises(ValueError, match=r"score_precision must be one of \['exact', 'float32'\], got 'float16'"):
        resolve_conventions(score_precision="float16")


def test_dataset_input_errors():
    data = make_dataset(15)
    with pytest.raises(ValueError, match=rf"scores has shape \(3,\) but random has {data.n_docs} documents"):
        evaluate_dataset(data, np.zeros(3))
    scores = np.zeros(data.n_docs)
    scores[int(data.query_offsets[2])] = np.nan
    with pytest.raises(ValueError, match=rf"scores must not be NaN: row {int(data.query_offsets[2])} \(qid q2\)"):
        evaluate_dataset(data, scores)
    duplicate = RankingDataset(np.zeros((2, 1), np.float32), np.zeros(2, np.float32), np.array([0, 1, 2]), np.array(["a", "a"]), source="dup")
    with pytest.raises(ValueError, match=r"dup: qid 'a' names more than one query"):
        evaluate_dataset(duplicate, np.zeros(2))
    with pytest.raises(ValueError, match=r"ties='average' is not supported by \['map'\]"):
        evaluate_dataset(data, np.zeros(data.n_docs), ["ndcg", "map"], ties="average")
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        evaluate_dataset(data, np.zeros(data.n_docs), batch_size=0)
    with pytest.raises(ValueError, match=r"missing must be one of \['ignore', 'zero'\], got 'drop'"):
        evaluate_run({}, {}, missing="drop")


def test_compute_metrics_rejects_docid_desc():
    with pytest.raises(ValueError, match=r"ties='docid_desc' needs document ids"):
        compute_metrics(torch.zeros(1, 2), torch.zeros(1, 2), None, ["ndcg"], ties="docid_desc")
