"""Simulation pipeline, interventions, click-log round trip and bad logs, propensity estimation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from ltrkit.clicks.log import ClickLogError, read_click_log
from ltrkit.clicks.models import PBM
from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em
from ltrkit.clicks.sessions import ClickSessions
from ltrkit.clicks.simulate import intervene, logging_ranking, simulate_log, write_simulation
from ltrkit.clicks.spec import load_click_spec
from ltrkit.data.cache import load_dataset
from ltrkit.data.dataset import RankingDataset

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MQ_TEST = DATA / "mq2008" / "Fold1" / "test.txt"


def tiny() -> RankingDataset:
    return RankingDataset(
        features=np.arange(14, dtype=np.float32).reshape(7, 2),
        labels=np.array([0, 2, 1, 1, 0, 2, 0], dtype=np.float32),
        query_offsets=np.array([0, 3, 7]),
        qids=np.array(["a", "b"]),
        doc_ids=np.array([f"d{i}" for i in range(7)]),
    )


def test_logging_ranking_sorts_by_score_with_row_order_ties():
    shown = logging_ranking(tiny(), np.array([0.1, 0.9, 0.1, 0.0, 0.5, 0.5, 2.0]), top_k=3)
    assert shown.tolist() == [[1, 0, 2], [6, 4, 5]]
    assert logging_ranking(tiny(), np.zeros(7), top_k=5).tolist() == [[0, 1, 2, -1, -1], [3, 4, 5, 6, -1]]
    with pytest.raises(ValueError, match="6 scores for 7 documents"):
        logging_ranking(tiny(), np.zeros(6), top_k=3)


@pytest.mark.parametrize("intervention", ["none", "topk_shuffle", "randpair", "randn"])
def test_interventions_permute_only_shown_ranks(intervention):
    n_shown = np.array([4, 2, 1] * 2000)
    perm = intervene(n_shown, 4, intervention, np.random.default_rng(0))
    assert (np.sort(perm, axis=1) == np.arange(4)).all()
    assert (perm[n_shown == 2][:, 2:] == [2, 3]).all() and (perm[n_shown == 1] == np.arange(4)).all()
    full = perm[n_shown == 4]
    moved = (full != np.arange(4)).sum(axis=1)
    if intervention == "none":
        assert moved.max() == 0
    elif intervention == "topk_shuffle":
        # each logging rank lands on each shown rank with probability 1/4
        assert np.abs((full == 0).mean(axis=0) - 0.25).max() < 0.05
    else:
        assert set(moved.tolist()) <= {0, 2}
        if intervention == "randpair":
            assert ((full[:, 0] == 0) | (moved == 2)).all() and np.abs((full[:, 0] == 2).mean() - 0.25) < 0.05


def test_simulation_is_reproducible_and_consistent():
    data = load_dataset(MQ_TEST, cache=False)
    scores = data.features[:, 0].astype(np.float64)
    first, s1 = simulate_log(data, scores, load_click_spec("pbm"), sessions=3000, top_k=5, seed=4, intervention="topk_shuffle", chunk_size=1000)
    second, _ = simulate_log(data, scores, load_click_spec("pbm"), sessions=3000, top_k=5, seed=4, intervention="topk_shuffle", chunk_size=1000)
    assert np.array_equal(first.docs, second.docs) and np.array_equal(first.clicks, second.clicks)
    shown = logging_ranking(data, scores, 5)
    # logging ranks point back to the logging policy's list
    rows = np.take_along_axis(shown[first.queries], np.where(first.mask, first.logging_ranks - 1, 0), axis=1)
    assert np.array_equal(np.where(first.mask, rows, -1), first.docs)
    np.testing.assert_allclose(first.propensities[first.mask], np.broadcast_to(1 / np.arange(1, 6), first.docs.shape)[first.mask])
    assert np.allclose(s1[first.mask], scores[first.docs[first.mask]])


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_written_log_round_trips_and_aggregates(tmp_path, file_format):
    data = tiny()
    scores = np.array([0.1, 0.9, 0.1, 0.0, 0.5, 0.5, 2.0])
    result = write_simulation(tmp_path, data, scores, load_click_spec("pbm"), sessions=500, top_k=3, seed=1,
                              file_format=file_format, chunk_size=128)
    expected, _ = simulate_log(data, scores, load_click_spec("pbm"), sessions=500, top_k=3, seed=1, chunk_size=128)
    sessions, info = read_click_log(result.log, data)
    assert np.array_equal(sessions.docs, expected.docs) and np.array_equal(sessions.clicks, expected.clicks)
    assert np.array_equal(sessions.queries, expected.queries) and info["columns"][3] == "docid"
    np.testing.assert_allclose(sessions.propensities, expected.propensities)
    train = load_dataset(result.train, cache=False)
    positions = np.loadtxt(result.positions, delimiter=",", skiprows=1, dtype=str)
    assert train.n_docs == positions.shape[0] == 6  # the three top documents of each query
    rows = positions[:, 1].astype(int)
    impressions = np.bincount(expected.docs[expected.mask], minlength=7)[rows]
    clicks = np.bincount(expected.docs[expected.mask], expected.clicks[expected.mask], minlength=7)[rows]
    np.testing.assert_allclose(train.labels, clicks / impressions, rtol=1e-6)
    np.testing.assert_array_equal(train.features, data.features[rows])
    # PBM's propensity is known: the IPS click-through rate is clicks / propensity per impression
    np.testing.assert_allclose(positions[:, 5].astype(float), clicks / (1 / positions[:, 4].astype(float)) / impressions, rtol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([result.log.name, "simulation.json", "train.positions.csv", "train.txt"])


def test_log_without_data_numbers_queries(tmp_path):
    result = write_simulation(tmp_path, tiny(), np.zeros(7), load_click_spec("random"), sessions=20, top_k=2, seed=0)
    sessions, info = read_click_log(result.log)
    assert sessions.propensities is None and set(info["qids"].tolist()) <= {"a", "b"}
    assert (sessions.clicks.sum(axis=1) == 1).all()


def write_rows(path: Path, rows: dict) -> Path:
    table = pa.table(rows)
    if path.suffix == ".csv":
        pcsv.write_csv(table, str(path))
    else:
        pq.write_table(table, str(path))
    return path


GOOD = {"session": [0, 0, 1], "qid": ["a", "a", "b"], "doc": [0, 1, 3], "position": [1, 2, 1], "clicked": [True, False, False]}


@pytest.mark.parametrize("change, message", [
    ({"qid": ["a", "a", "zz"]}, r"row 3, column 'qid': unknown qid 'zz'"),
    ({"doc": [0, 5, 3]}, r"row 2, column 'doc': unknown document 5: query 'a' has rows 0..2"),
    ({"position": [1, 3, 1]}, r"row 2, column 'position': position 3 beyond the 2 document\(s\) session 0 shows"),
    ({"position": [1, 1, 1]}, r"row 2, column 'position': position 1 repeated in session 0"),
    # the row out of range is named, not the first one its sorted session puts out of place
    ({"session": [0, 0, 0], "qid": ["a"] * 3, "doc": [0, 1, 2], "position": [9, 2, 3]},
     r"row 1, column 'position': position 9 beyond the 3 document\(s\) session 0 shows"),
    ({"session": [0, 0, 0], "qid": ["a"] * 3, "doc": [0, 1, 2], "position": [3, 1, 3]}, r"row 3, column 'position': position 3 repeated in session 0"),
    ({"session": [0, 0, 0, 0], "qid": ["a"] * 4, "doc": [0, 1, 2, 3], "position": [1, 3, 4, 4], "clicked": [False] * 4},
     r"row 4, column 'position': position 4 repeated in session 0"),
    ({"position": [0, 1, 1]}, r"row 1, column 'position': positions are 1-based"),
    ({"propensity": [1.0, 0.0, 0.5]}, r"row 2, column 'propensity': must be a finite number in \(0, 1\], got 0.0"),
    # a NaN is written to CSV as an empty field, which reads back as a missing value
    ({"propensity": [1.0, float("nan"), 0.5]}, r"row 2, column 'propensity': (must be a finite number|missing value)"),
    ({"propensity": [1.0, 0.5, -0.5]}, r"row 3, column 'propensity': must be a finite number"),
    ({"qid": ["a", "b", "b"]}, r"row 2, column 'qid': session 0 mixes queries"),
    ({"clicked": [1, 2, 0]}, r"row 2, column 'clicked': must be true/false or 1/0"),
    ({"doc": [0, None, 3]}, r"row 2, column 'doc': missing value"),
])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_bad_logs_name_file_row_and_column(tmp_path, change, message, suffix):
    path = write_rows(tmp_path / f"log{suffix}", {**GOOD, **change})
    with pytest.raises(ClickLogError, match=f"^{path}: {message}"):
        read_click_log(path, tiny())


def test_missing_column_and_malformed_csv_values(tmp_path):
    rows = {key: value for key, value in GOOD.items() if key != "position"}
    path = write_rows(tmp_path / "log.parquet", rows)
    with pytest.raises(ClickLogError, match=r"row 1, column 'position': missing \(a click log needs"):
        read_click_log(path)
    csv = tmp_path / "log.csv"
    csv.write_text("session,qid,doc,position,clicked\n0,a,0,1,true\n0,a,1,x2,false\n")
    with pytest.raises(ClickLogError, match=r"log.csv: row 2, column 'position': not a number: 'x2'"):
        read_click_log(csv)
    with pytest.raises(FileNotFoundError):
        read_click_log(tmp_path / "absent.parquet")


def test_an_interrupted_write_leaves_nothing(tmp_path):
    class Broken:
        needs_features = False

        def with_max_grade(self, grade):
            return self

        calls = 0

        def simulate(self, impressions, rng):
            Broken.calls += 1
            if Broken.calls > 1:
                raise RuntimeError("interrupted")
            return impressions.mask.copy(), None

    with pytest.raises(RuntimeError):
        write_simulation(tmp_path, tiny(), np.zeros(7), Broken(), sessions=40, top_k=2, chunk_size=10)
    assert list(tmp_path.iterdir()) == []


def pbm_log(intervention: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    n_queries, per_query, k, n_features = 200, 10, 5, 4
    x = rng.normal(size=(n_queries * per_query, n_features))
    w = rng.normal(size=n_features)
    alpha = 1 / (1 + np.exp(-(x @ w - 1)))
    data = RankingDataset(x.astype(np.float32), alpha.astype(np.float32), np.arange(0, n_queries * per_query + 1, per_query),
                          np.array([str(q) for q in range(n_queries)]))
    truth = (1 / np.arange(1, k + 1)) ** 1.0
    spec = {"name": "pbm", "propensities": truth.tolist(), "attraction": {"kind": "graded", "max_grade": 1.0, "epsilon_minus": 0.0}}
    # graded (2^a - 1) with max 1 maps a in [0, 1] to 2^a - 1; feed labels log2(1 + alpha) to get alpha back
    data.labels[:] = np.log2(1 + alpha)
    scores = x @ w + rng.normal(size=x.shape[0])
    sessions, _ = simulate_log(data, scores, load_click_spec(spec), sessions=n, top_k=k, seed=seed, intervention=intervention)
    return sessions, data, truth


@pytest.mark.parametrize("intervention", ["topk_shuffle", "randpair", "randn"])
def test_randomization_recovers_propensities(intervention):
    sessions, _, truth = pbm_log(intervention, 60_000, seed=0)
    estimate = estimate_by_randomization(sessions)
    clicks_at = np.bincount(np.broadcast_to(np.arange(5), sessions.mask.shape)[sessions.clicks], minlength=5)
    # a ratio of click counts: a few standard errors of sqrt(1/c_k + 1/c_1) (RandPair uses ~1/k of them)
    used = clicks_at / (5 if intervention == "randpair" else 1)
    tolerance = 6 * truth * np.sqrt(1 / used + 1 / used[0])
    assert (np.abs(estimate - truth) <= tolerance).all(), (estimate, truth, tolerance)


def test_randomization_needs_an_intervention_and_regression_em_does_not():
    sessions, data, truth = pbm_log("none", 60_000, seed=1)
    with pytest.raises(ValueError, match="no randomised impressions link rank 2 to rank 1"):
        estimate_by_randomization(sessions)
    naive = PBM().fit(sessions, max_iterations=200).relative_propensities_
    estimate, info = estimate_by_regression_em(sessions, data.features)
    assert np.abs(estimate - truth).max() < 0.03 < np.abs(naive - truth).max()
    assert len(info["weights"]) == data.n_features + 1


def test_sessions_checks():
    with pytest.raises(ValueError, match="clicks must be False at padding"):
        ClickSessions(np.zeros((1, 2)), np.array([[False, True]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match="mask is a prefix"):
        ClickSessions(np.zeros((1, 2)), np.zeros((1, 2), bool), np.array([[False, True]]))


def test_unreachable_ranks_are_logged_with_a_positive_propensity(tmp_path):
    # the top label maps to attraction 1: under the cascade model nothing below it is examined
    data = RankingDataset(np.zeros((3, 1), np.float32), np.array([2, 0, 0], np.float32), np.array([0, 3]), np.array(["q"]))
    result = write_simulation(tmp_path, data, np.array([3.0, 2.0, 1.0]), load_click_spec("cascade"), sessions=50, top_k=3)
    sessions, _ = read_click_log(result.log, data)
    assert (sessions.propensities[:, 1:] == 1e-6).all() and not sessions.clicks[:, 1:].any()
    assert sessions.clicks[:, 0].all()


def test_randomization_compares_lists_of_one_length_only():
    # short lists hold relevant documents, long ones do not: ranks 3..5 exist in long lists only,
    # so comparing them with rank 1 of every list would mistake relevance for examination
    lengths = [2] * 50 + [5] * 50
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = np.concatenate([np.full(n, 2.0 if n == 2 else 0.0) for n in lengths]).astype(np.float32)
    data = RankingDataset(np.zeros((labels.size, 1), np.float32), labels, offsets, np.array([str(q) for q in range(100)]))
    truth = (1 / np.arange(1, 6)) ** 1.0
    spec = {"name": "pbm", "propensities": truth.tolist(), "attraction": {"kind": "binary", "threshold": 1, "epsilon_minus": 0.2}}
    sessions, _ = simulate_log(data, np.zeros(labels.size), load_click_spec(spec), sessions=60_000, top_k=5, seed=5,
                               intervention="topk_shuffle")
    estimate = estimate_by_randomization(sessions)
    clicks_at = np.bincount(np.broadcast_to(np.arange(5), sessions.mask.shape)[sessions.clicks], minlength=5) / 2
    assert (np.abs(estimate - truth) <= 6 * truth * np.sqrt(1 / clicks_at + 1 / clicks_at[0])).all(), estimate


def test_a_training_set_that_cannot_be_written_keeps_no_log(tmp_path):
    data = tiny()
    data.qids = np.array(["a", "b c"])  # LETOR cannot hold a qid with whitespace
    with pytest.raises(ValueError, match="qid"):
        write_simulation(tmp_path, data, np.zeros(7), load_click_spec("pbm"), sessions=20, top_k=2)
    assert list(tmp_path.iterdir()) == []
