"""LTRRanker: learning, queries (qid / LightGBM group), eval sets, score, importances, run folders, bad input."""

from __future__ import annotations

import importlib
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import ndcg_score  # noqa: E402

from ltrkit.data import load_dataset  # noqa: E402
from ltrkit.data.dataset import RankingDataset  # noqa: E402
from ltrkit.data.synthetic import generate_splits  # noqa: E402
from ltrkit.metrics import evaluate_dataset  # noqa: E402
from ltrkit.training.estimator import LTRRanker, _group, _to_dataset  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
N_FEATURES = 12
FAST = {"epochs": 3, "batch_size": 16, "num_threads": 1, "model_args": {"hidden_sizes": [16]}}
ATTENTION = {"model": "attention", "model_args": {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}}


def _arrays(dataset):
    return dataset.features, dataset.labels, np.repeat(dataset.qids, dataset.list_lengths)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(
        train_queries=120, vali_queries=30, test_queries=60, n_features=N_FEATURES, mean_list_length=15.0, seed=3
    )


@pytest.fixture(scope="module")
def fitted(splits):
    X, y, qid = _arrays(splits["train"])
    return LTRRanker(lr=1e-2, **FAST).fit(X, y, qid=qid)


def test_learns_above_random(splits, fitted) -> None:
    test = splits["test"]
    X, y, qid = _arrays(test)
    rng = np.random.default_rng(0)
    random_ndcg = np.mean(
        [evaluate_dataset(test, rng.random(test.n_docs), ["ndcg@10"]).mean["ndcg@10"] for _ in range(20)]
    )
    assert fitted.score(X, y, qid=qid) > random_ndcg + 0.05


def test_score_matches_sklearn_ndcg(splits, fitted) -> None:
    X, y, qid = _arrays(splits["test"])
    scores = fitted.predict(X, qid=qid)
    per_query = []
    for q in np.unique(qid):
        rows = qid == q
        gains = 2.0 ** y[rows] - 1.0
        per_query.append(0.0 if gains.sum() == 0 else ndcg_score([gains], [scores[rows]], k=10))
    assert fitted.score(X, y, qid=qid) == pytest.approx(np.mean(per_query), abs=1e-9)


@pytest.mark.parametrize("metric", ["ndcg@10", "map", "err@5", "mrr", "P@5"])
def test_score_uses_eval_metric_like_evaluate_dataset(splits, fitted, metric) -> None:
    """``score`` is ltrkit's evaluate of the same predictions, in the configured ``eval_metric``."""
    test = splits["test"]
    X, y, qid = _arrays(test)
    est = pickle.loads(pickle.dumps(fitted)).set_params(eval_metric=metric)
    (expected,) = evaluate_dataset(test, fitted.predict(X, qid=qid), [metric]).mean.values()
    assert est.score(X, y, qid=qid) == pytest.approx(expected, abs=1e-12)
    # shuffled rows: the same queries, so the same mean
    perm = np.random.default_rng(4).permutation(X.shape[0])
    assert est.score(X[perm], y[perm], qid=qid[perm]) == pytest.approx(expected, abs=1e-6)


def test_sample_weight_weights_queries_like_repeating_them(splits, fitted) -> None:
    """Weight k on a query = that query k times (under new qids) in an unweighted score."""
    test = splits["test"]
    X, y, qid = _arrays(test)
    per_query = np.random.default_rng(7).integers(0, 4, size=test.n_queries)
    weights = np.repeat(per_query, test.list_lengths).astype(float)
    rows = [np.arange(test.query_offsets[q], test.query_offsets[q + 1]) for q in range(test.n_queries)]
    copies = [(q, k) for q in range(test.n_queries) for k in range(per_query[q])]
    repeated = np.concatenate([rows[q] for q, _ in copies])
    repeated_qid = np.concatenate([np.full(len(rows[q]), f"{q}-{k}") for q, k in copies])
    expected = fitted.score(X[repeated], y[repeated], qid=repeated_qid)
    perm = np.random.default_rng(8).permutation(X.shape[0])
    assert fitted.score(X[perm], y[perm], qid=qid[perm], sample_weight=weights[perm]) == pytest.approx(expected, abs=1e-12)
    assert fitted.score(X, y, qid=qid, sample_weight=np.ones(X.shape[0])) == fitted.score(X, y, qid=qid)
    weights[0] += 1.0
    with pytest.raises(ValueError, match=f"must be equal on the rows of a query; qid {qid[0]} has"):
        fitted.score(X, y, qid=qid, sample_weight=weights)
    with pytest.raises(ValueError, match="score: sample_weight sums to 0"):
        fitted.score(X, y, qid=qid, sample_weight=np.zeros(X.shape[0]))


def test_pickle_round_trip_predicts_the_same(splits, fitted) -> None:
    X, _, qid = _arrays(splits["test"])
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.predict(X, qid=qid), fitted.predict(X, qid=qid))
    assert restored.n_features_in_ == N_FEATURES and restored.best_epoch_ == fitted.best_epoch_


def test_predict_without_qid_for_pointwise(splits, fitted) -> None:
    X, _, qid = _arrays(splits["test"])
    scores = fitted.predict(X, qid=qid)
    assert scores.shape == (X.shape[0],) and np.isfinite(scores).all()
    np.testing.assert_allclose(fitted.predict(X), scores, rtol=1e-6, atol=1e-6)


def test_determinism_with_seed(splits) -> None:
    X, y, qid = _arrays(splits["train"])
    Xt = splits["test"].features
    a = LTRRanker(seed=5, **FAST).fit(X, y, qid).predict(Xt)
    b = LTRRanker(seed=5, **FAST).fit(X, y, qid).predict(Xt)
    c = LTRRanker(seed=6, **FAST).fit(X, y, qid).predict(Xt)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_rows_need_not_be_contiguous_attention(splits) -> None:
    """Shuffled rows: per-row scores follow the caller's order; the context model needs qid."""
    X, y, qid = _arrays(splits["train"])
    Xt, _, qt = _arrays(splits["test"])
    est = LTRRanker(**{**FAST, **ATTENTION, "epochs": 2}).fit(X, y, qid=qid)
    perm_t = np.random.default_rng(2).permutation(Xt.shape[0])
    scores = est.predict(Xt, qid=qt)
    np.testing.assert_allclose(est.predict(Xt[perm_t], qid=qt[perm_t]), scores[perm_t], rtol=1e-5, atol=1e-5)
    # attention depends on the list: scoring all rows as one list would give other scores
    sizes = np.diff(np.flatnonzero(np.r_[True, qt[1:] != qt[:-1], True]))
    np.testing.assert_allclose(est.predict(Xt, group=sizes), scores, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="predict: qid \\(or group\\) is required with the context-aware model 'attention'"):
        est.predict(Xt)


def test_group_sizes_train_the_same_model_as_qid() -> None:
    """LightGBM's rank.train + rank.train.query (group sizes) vs the same rows with per-row qids."""
    path = SHARED / "lightgbm-rank" / "rank.train"
    data = load_dataset(path, cache=False)
    sizes = np.loadtxt(str(path) + ".query", dtype=np.int64)
    X, y, qid = _arrays(data)
    Xv, yv, qv = _arrays(load_dataset(SHARED / "lightgbm-rank" / "rank.test", cache=False))
    sizes_v = np.loadtxt(SHARED / "lightgbm-rank" / "rank.test.query", dtype=np.int64)
    params = {**FAST, "epochs": 2, "seed": 11, "early_stopping_patience": None}
    by_group = LTRRanker(**params).fit(X, y, group=sizes, eval_set=[(Xv, yv)], eval_group=[sizes_v])
    by_qid = LTRRanker(**params).fit(X, y, qid=qid, eval_set=(Xv, yv), eval_qid=[qv])
    assert np.array_equal(by_group.predict(Xv), by_qid.predict(Xv))
    assert [r["vali_ndcg@10"] for r in by_group.history_] == [r["vali_ndcg@10"] for r in by_qid.history_]
    assert by_group.score(Xv, yv, group=sizes_v) == by_qid.score(Xv, yv, qid=qv)


def test_group_matches_loop_reference() -> None:
    qid = np.array(["b", "a", "b", "c", "a", "b", "d"])
    order, offsets, qids = _group(qid)
    seen: dict = {}
    for row, q in enumerate(qid):
        seen.setdefault(q, []).append(row)
    assert qids.tolist() == list(seen)
    assert order.tolist() == [row for rows in seen.values() for row in rows]
    assert offsets.tolist() == [0, 3, 5, 6, 7]
    dataset, order2 = _to_dataset(np.arange(7, dtype=np.float32)[:, None], np.zeros(7, np.float32), qid, source="t")
    assert dataset.features[:, 0].tolist() == order.tolist() and np.array_equal(order2, order)


def test_eval_set_selects_best_epoch(splits) -> None:
    X, y, qid = _arrays(splits["train"])
    Xv, yv, qv = _arrays(splits["vali"])
    est = LTRRanker(**{**FAST, "early_stopping_patience": None}).fit(X, y, qid, eval_set=[(Xv, yv)], eval_qid=[qv])
    vali_values = [record["vali_ndcg@10"] for record in est.history_]
    assert est.best_epoch_ == int(np.argmax(vali_values)) + 1
    assert est.run_dir_ is None and est.n_features_in_ == N_FEATURES


def _planted(n_queries: int, seed: int):
    """Lists where only feature 0 decides the label; features 1..3 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_queries * 10, 4)).astype(np.float32)
    y = np.digitize(X[:, 0], [-0.5, 0.5, 1.2]).astype(np.float32)
    return X, y, np.repeat(np.arange(n_queries), 10)


def test_feature_importances_are_the_metric_drop_on_the_eval_set() -> None:
    X, y, qid = _planted(40, 0)
    Xv, yv, qv = _planted(20, 1)
    params = {**FAST, "model": "linear", "model_args": {}, "lr": 0.05, "importance_repeats": 3, "seed": 2}
    est = LTRRanker(**params).fit(X, y, qid=qid, eval_set=(Xv, yv), eval_qid=[qv])

    # reference: scikit-learn's permutation importance with a scorer made from ltrkit's evaluate
    def ndcg10(estimator, X_perm, y_perm):
        data = RankingDataset(features=X_perm, labels=y_perm, query_offsets=np.arange(0, len(yv) + 1, 10), qids=np.arange(20).astype(str))
        return evaluate_dataset(data, estimator.predict(X_perm), ["ndcg@10"]).mean["ndcg@10"]

    reference = permutation_importance(est, Xv, yv, scoring=ndcg10, n_repeats=3, random_state=2).importances_mean
    np.testing.assert_allclose(est.feature_importances_, reference, atol=1e-12)
    assert est.feature_importances_[0] > 0.1 and np.abs(est.feature_importances_[1:]).max() < 0.05
    # without an eval set the training rows are permuted
    train_only = LTRRanker(**params).fit(X, y, qid=qid)
    on_train = permutation_importance(train_only, X, y, scoring=lambda e, Xp, yp: e.score(Xp, yp, qid=qid), n_repeats=3, random_state=2)
    np.testing.assert_allclose(train_only.feature_importances_, on_train.importances_mean, atol=1e-12)
    refit = train_only.set_params(importance_repeats=0).fit(X, y, qid=qid)
    with pytest.raises(AttributeError, match="computed by fit only when importance_repeats > 0"):
        refit.feature_importances_
    assert not hasattr(LTRRanker(), "feature_importances_")


def test_temporary_run_folder_is_removed_and_output_dir_kept(splits, tmp_path, monkeypatch) -> None:
    X, y, qid = _arrays(splits["vali"])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    LTRRanker(**FAST).fit(X, y, qid=qid)
    assert list(scratch.iterdir()) == []
    with pytest.raises(ValueError, match="unknown model 'mpl'"):
        LTRRanker(**{**FAST, "model": "mpl"}).fit(X, y, qid=qid)
    assert list(scratch.iterdir()) == []
    kept = LTRRanker(**FAST, output_dir=str(tmp_path / "runs")).fit(X, y, qid=qid)
    assert kept.run_dir_.parent == tmp_path / "runs" and (kept.run_dir_ / "report.json").is_file()
    assert list(scratch.iterdir()) == []


def test_sparse_input_equals_dense(splits) -> None:
    sparse = pytest.importorskip("scipy.sparse")
    X, y, qid = _arrays(splits["vali"])
    X = np.where(X > 0.5, X, 0.0).astype(np.float32)
    dense = LTRRanker(**FAST).fit(X, y, qid=qid)
    csr = LTRRanker(**FAST).fit(sparse.csr_matrix(X), y, qid=qid)
    assert np.array_equal(csr.predict(sparse.csr_matrix(X)), dense.predict(X))


X0 = np.zeros((4, 3))
Y0 = np.array([0.0, 1.0, 2.0, 0.0])
Q0 = np.array([1, 1, 2, 2])


@pytest.mark.parametrize(
    "X,y,kwargs,message",
    [
        (X0, Y0[:3], {"qid": Q0}, "inconsistent numbers of samples: \\[4, 3\\]"),
        (X0, Y0, {"qid": Q0[:3]}, r"fit: qid must be 1-D with one entry per row of X \(4\), got shape \(3,\)"),
        (X0[0], Y0, {"qid": Q0}, "Expected 2D array, got 1D array instead"),
        (np.zeros((0, 3)), Y0[:0], {"qid": Q0[:0]}, "minimum of 1 is required"),
        (np.where(np.eye(4, 3) > 0, np.nan, 0.0), Y0, {"qid": Q0}, r"fit: X must be finite \(no NaN or inf\), got nan at row 0, column 0"),
        (X0, np.array([0.0, -1.0, 0.0, 0.0]), {"qid": Q0}, r"fit: y must be >= 0 \(graded relevance\), got -1.0 at row 1"),
        (X0, np.array([0.0, np.inf, 0.0, 0.0]), {"qid": Q0}, "Input y contains infinity"),
        (X0, Y0, {"qid": np.array([1.0, np.nan, 2.0, 2.0])}, "fit: qid must not hold NaN or inf"),
        (np.full((4, 3), "high"), Y0, {"qid": Q0}, "could not convert string to float"),
        (X0, Y0, {"qid": Q0, "group": [2, 2]}, "fit: give qid or group, not both"),
        (X0, Y0, {"group": [2, 1]}, r"fit: group sizes sum to 3 but X has 4 rows \(under cross-validation pass per-row qid"),
        (X0, Y0, {"group": [2.0, 2.0]}, "fit: group must be a 1-D array of positive integer query sizes"),
        (X0, Y0, {"group": [4, 0]}, "fit: group must be a 1-D array of positive integer query sizes"),
        (X0, Y0, {"qid": Q0, "eval_qid": [Q0]}, "fit: eval_qid/eval_group was given without an eval_set"),
        (X0, Y0, {"qid": Q0, "eval_set": (X0, Y0, Q0)}, r"fit: eval_set must be an \(X_val, y_val\) pair or a list of one such pair"),
        (X0, Y0, {"qid": Q0, "eval_set": [(X0, Y0), (X0, Y0)]}, "fit: eval_set must hold an \\(X_val, y_val\\) pair for one eval set .* got a list of 2"),
        (X0, Y0, {"qid": Q0, "eval_set": (X0[:, :2], Y0), "eval_qid": [Q0]}, "eval_set: X_val has 2 features, but X has 3"),
        (X0, Y0, {"qid": Q0, "eval_set": (X0, Y0), "eval_group": [[3]]}, "eval_set: group sizes sum to 3 but X has 4 rows"),
    ],
)
def test_bad_fit_input(X, y, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        LTRRanker(**FAST).fit(X, y, **kwargs)


def test_bad_predict_and_score_input(fitted) -> None:
    with pytest.raises(ValueError, match="X has 3 features, but LTRRanker is expecting 12 features as input"):
        fitted.predict(X0)
    with pytest.raises(ValueError, match=r"predict: qid must be 1-D with one entry per row of X \(2\)"):
        fitted.predict(np.zeros((2, N_FEATURES)), qid=[1, 2, 3])
    with pytest.raises(ValueError, match=r"score: qid \(or group\) is required .* sklearn.set_config\(enable_metadata_routing=True\)"):
        fitted.score(np.zeros((4, N_FEATURES)), Y0)
    with pytest.raises(NotFittedError, match="This LTRRanker instance is not fitted yet"):
        LTRRanker().score(X0, Y0, qid=Q0)
    with pytest.raises(NotFittedError, match="This LTRRanker instance is not fitted yet"):
        LTRRanker().predict(X0)


def test_missing_scikit_learn_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # None in sys.modules makes the import fail
    monkeypatch.delitem(sys.modules, "ltrkit.training.estimator")
    with pytest.raises(ImportError, match=r"LTRRanker \(the scikit-learn estimator\) needs sklearn: pip install 'ltrkit\[sklearn\]'"):
        importlib.import_module("ltrkit.training.estimator")
