"""LTRRanker: learning, scikit-learn protocol, row grouping, determinism and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset
from ltrkit.training.estimator import LTRRanker, NotFittedError, _group, _to_dataset

N_FEATURES = 12
FAST = {"epochs": 3, "batch_size": 16, "num_threads": 1, "model_args": {"hidden_sizes": [16]}}


def _arrays(dataset):
    return dataset.features, dataset.labels, np.repeat(dataset.qids, dataset.list_lengths)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(
        train_queries=120, vali_queries=30, test_queries=60, n_features=N_FEATURES, mean_list_length=15.0, seed=3
    )


@pytest.fixture(scope="module")
def fitted(splits):
    return LTRRanker(lr=1e-2, **FAST).fit(*_arrays(splits["train"]))


def test_learns_above_random(splits, fitted) -> None:
    test = splits["test"]
    X, y, qid = _arrays(test)
    rng = np.random.default_rng(0)
    random_ndcg = np.mean(
        [evaluate_dataset(test, rng.random(test.n_docs), ["ndcg@10"]).mean["ndcg@10"] for _ in range(20)]
    )
    assert fitted.score(X, y, qid) > random_ndcg + 0.05


def test_score_matches_sklearn_ndcg(splits, fitted) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    X, y, qid = _arrays(splits["test"])
    scores = fitted.predict(X, qid)
    per_query = []
    for q in np.unique(qid):
        rows = qid == q
        gains = 2.0 ** y[rows] - 1.0
        per_query.append(0.0 if gains.sum() == 0 else sklearn_metrics.ndcg_score([gains], [scores[rows]], k=10))
    assert fitted.score(X, y, qid) == pytest.approx(np.mean(per_query), abs=1e-9)


def test_sklearn_clone_and_params() -> None:
    base = pytest.importorskip("sklearn.base")
    est = LTRRanker(model="attention", model_args={"d_model": 8, "n_heads": 2}, epochs=2, lr=0.05)
    copy = base.clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert copy.model_args is not est.model_args  # clone deep-copies parameters
    assert est.set_params(lr=0.1, epochs=4) is est and (est.lr, est.epochs) == (0.1, 4)
    with pytest.raises(ValueError, match=r"invalid parameter 'learning_rate' for LTRRanker; valid parameters are \['model'"):
        est.set_params(learning_rate=0.1)
    assert repr(LTRRanker(epochs=2)) == "LTRRanker(epochs=2)"


def test_clone_of_fitted_is_unfitted(splits, fitted) -> None:
    base = pytest.importorskip("sklearn.base")
    copy = base.clone(fitted)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        copy.predict(splits["test"].features)


def test_predict_shape_and_grouping_free_for_pointwise(splits, fitted) -> None:
    X, _, qid = _arrays(splits["test"])
    scores = fitted.predict(X, qid)
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
    """Shuffled rows give the same model and the same per-row scores (stable grouping)."""
    X, y, qid = _arrays(splits["train"])
    Xt, _, qt = _arrays(splits["test"])
    params = {"model": "attention", "model_args": {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}}
    params.update({k: v for k, v in FAST.items() if k != "model_args"}, epochs=2)
    est = LTRRanker(**params).fit(X, y, qid)
    perm = np.random.default_rng(1).permutation(X.shape[0])
    shuffled = LTRRanker(**params).fit(X[perm], y[perm], qid[perm])
    # the shuffled fit sees each query's rows in another order: compare scores, not weights
    perm_t = np.random.default_rng(2).permutation(Xt.shape[0])
    scores = est.predict(Xt, qt)
    np.testing.assert_allclose(est.predict(Xt[perm_t], qt[perm_t]), scores[perm_t], rtol=1e-5, atol=1e-5)
    assert shuffled.predict(Xt, qt).shape == scores.shape
    with pytest.raises(ValueError, match="qid is required to predict with the context-aware model 'attention'"):
        est.predict(Xt)


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
    est = LTRRanker(early_stopping_patience=None, **FAST).fit(X, y, qid, eval_set=_arrays(splits["vali"]))
    vali_values = [record["vali_ndcg@10"] for record in est.history_]
    assert est.best_epoch_ == int(np.argmax(vali_values)) + 1
    assert est.run_dir_ is None and est.n_features_in_ == N_FEATURES


X0 = np.zeros((4, 3))
Y0 = np.array([0.0, 1.0, 2.0, 0.0])
Q0 = np.array([1, 1, 2, 2])


@pytest.mark.parametrize(
    "X,y,qid,message",
    [
        (X0, Y0[:3], Q0, r"fit: y must be 1-D with one label per row of X \(4\), got shape \(3,\)"),
        (X0, Y0, Q0[:3], r"fit: qid must be 1-D with one entry per row of X \(4\), got shape \(3,\)"),
        (X0[0], Y0, Q0, r"fit: X must be a 2-D array \[n_rows, n_features\], got shape \(3,\)"),
        (np.zeros((0, 3)), Y0[:0], Q0[:0], "fit: X must have at least one row and one feature"),
        (np.where(np.eye(4, 3) > 0, np.nan, 0.0), Y0, Q0, "fit: X must be finite, got nan at row 0, column 0"),
        (X0, np.array([0.0, -1.0, 0.0, 0.0]), Q0, r"fit: y must be >= 0 \(graded relevance\), got -1.0 at row 1"),
        (X0, np.array([0.0, np.inf, 0.0, 0.0]), Q0, "fit: y must be finite, got inf at row 1"),
        (X0, Y0, np.array([1.0, np.nan, 2.0, 2.0]), "fit: qid must not hold NaN or inf"),
        (X0.astype(str), Y0, Q0, "fit: X must be numeric, got dtype <U32"),
    ],
)
def test_bad_fit_input(X, y, qid, message) -> None:
    with pytest.raises(ValueError, match=message):
        LTRRanker(**FAST).fit(X, y, qid)


def test_bad_eval_set_and_params(splits) -> None:
    X, y, qid = _arrays(splits["train"])
    with pytest.raises(ValueError, match="eval_set X has 3 features, but X has 12"):
        LTRRanker(**FAST).fit(X, y, qid, eval_set=(X0, Y0, Q0))
    with pytest.raises(ValueError, match=r"eval_set must be a tuple \(X_val, y_val, qid_val\)"):
        LTRRanker(**FAST).fit(X, y, qid, eval_set=(X0, Y0))
    with pytest.raises(ValueError, match="unknown model 'mpl'"):
        LTRRanker(**{**FAST, "model": "mpl"}).fit(X, y, qid)


def test_bad_predict_input(fitted) -> None:
    with pytest.raises(ValueError, match="X has 3 features, but LTRRanker was fitted with 12 features"):
        fitted.predict(X0)
    with pytest.raises(ValueError, match=r"predict: qid must be 1-D with one entry per row of X \(2\)"):
        fitted.predict(np.zeros((2, N_FEATURES)), qid=[1, 2, 3])
    with pytest.raises(NotFittedError, match=r"call fit\(X, y, qid\) first"):
        LTRRanker().score(X0, Y0, Q0)
