"""LTRRanker inside scikit-learn's own tools: estimator checks, cross_validate, GridSearchCV, pipelines, clone.

Each tool is compared with fitting LTRRanker by hand on the rows the tool chose, so a qid routed
to the wrong rows (or not at all: one list of every row) shows up as different scores.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

import sklearn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import UnsetMetadataPassedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from ltrkit.data.synthetic import generate_splits  # noqa: E402
from ltrkit.metrics import evaluate_dataset  # noqa: E402
from ltrkit.training.estimator import LTRRanker, _to_dataset  # noqa: E402

FAST = {"epochs": 2, "batch_size": 16, "num_threads": 1, "model_args": {"hidden_sizes": [8]}}

# the checks that cannot apply to a ranker, each with why
EXPECTED_FAILED_CHECKS = {
    "check_fit_score_takes_y": "score(X, y) without qid raises: a mean over queries needs the queries, and one list of "
    "every row would be a silently different number",
    "check_pipeline_consistency": "it compares score(X, y) without qid, which raises for the same reason",
}


@parametrize_with_checks(
    [LTRRanker(**{**FAST, "epochs": 1, "importance_repeats": 1})],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def data():
    """60 training queries with their rows shuffled (queries not contiguous), and a test split."""
    splits = generate_splits(train_queries=60, vali_queries=6, test_queries=20, n_features=8, mean_list_length=10.0, seed=5)
    train, test = splits["train"], splits["test"]
    perm = np.random.default_rng(0).permutation(train.n_docs)
    qid = np.repeat(train.qids, train.list_lengths)
    return {
        "X": train.features[perm], "y": train.labels[perm], "qid": qid[perm],
        "Xt": test.features, "yt": test.labels, "qt": np.repeat(test.qids, test.list_lengths),
    }


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _ndcg(estimator, X, y, qid, metric="ndcg@10") -> float:
    """Reference score: ltrkit's evaluate of the estimator's predictions, queries grouped here."""
    dataset, order = _to_dataset(X, y, qid, source="reference")
    return evaluate_dataset(dataset, estimator.predict(X, qid=qid)[order], [metric]).mean[metric]


def test_default_metadata_requests(routing) -> None:
    routing = LTRRanker().get_metadata_routing()
    for method in ("fit", "predict", "score"):
        assert getattr(routing, method).requests["qid"] is True
    assert routing.fit.requests["group"] is None and routing.fit.requests["eval_set"] is None
    unset = LTRRanker().set_score_request(qid=False)
    assert clone(unset).get_metadata_routing().score.requests["qid"] is False


def test_cross_validate_group_kfold_routes_qid_to_each_fold(data, routing) -> None:
    X, y, qid = data["X"], data["y"], data["qid"]
    result = cross_validate(
        LTRRanker(**FAST), X, y, cv=GroupKFold(3), params={"qid": qid, "groups": qid}, return_estimator=True, return_indices=True
    )
    for fold in range(3):
        train, test = result["indices"]["train"][fold], result["indices"]["test"][fold]
        assert not set(qid[train]) & set(qid[test])
        by_hand = LTRRanker(**FAST).fit(X[train], y[train], qid=qid[train])
        assert np.array_equal(result["estimator"][fold].predict(data["Xt"]), by_hand.predict(data["Xt"]))
        assert result["test_score"][fold] == pytest.approx(_ndcg(by_hand, X[test], y[test], qid[test]), abs=1e-12)


def test_grid_search_two_params(data, routing) -> None:
    X, y, qid = data["X"], data["y"], data["qid"]
    grid = {"lr": [1e-3, 3e-2], "loss": ["lambdarank", "listnet"]}
    search = GridSearchCV(LTRRanker(**FAST), grid, cv=GroupKFold(2)).fit(X, y, groups=qid, qid=qid)
    train, test = next(GroupKFold(2).split(X, y, qid))
    for params, split0 in zip(search.cv_results_["params"], search.cv_results_["split0_test_score"]):
        by_hand = LTRRanker(**FAST, **params).fit(X[train], y[train], qid=qid[train])
        assert split0 == pytest.approx(_ndcg(by_hand, X[test], y[test], qid[test]), abs=1e-12)
    refit = LTRRanker(**FAST, **search.best_params_).fit(X, y, qid=qid)
    assert np.array_equal(search.predict(data["Xt"]), refit.predict(data["Xt"]))
    assert search.score(data["Xt"], data["yt"], qid=data["qt"]) == pytest.approx(_ndcg(refit, data["Xt"], data["yt"], data["qt"]), abs=1e-12)


def test_eval_set_routed_after_set_fit_request(data, routing) -> None:
    """eval_set/eval_qid are not per-row: once requested they reach every fold's fit unsplit."""
    X, y, qid = data["X"], data["y"], data["qid"]
    est = LTRRanker(**FAST, early_stopping_patience=None).set_fit_request(eval_set=True, eval_qid=True)
    search = GridSearchCV(est, {"lr": [1e-2]}, cv=GroupKFold(2)).fit(
        X, y, groups=qid, qid=qid, eval_set=[(data["Xt"], data["yt"])], eval_qid=[data["qt"]]
    )
    by_hand = LTRRanker(**FAST, lr=1e-2, early_stopping_patience=None).fit(
        X, y, qid=qid, eval_set=[(data["Xt"], data["yt"])], eval_qid=[data["qt"]]
    )
    assert [r["vali_ndcg@10"] for r in search.best_estimator_.history_] == [r["vali_ndcg@10"] for r in by_hand.history_]
    with pytest.raises(UnsetMetadataPassedError, match="eval_set"):  # not requested: not dropped silently
        GridSearchCV(LTRRanker(**FAST), {"lr": [1e-2]}, cv=GroupKFold(2)).fit(X, y, groups=qid, qid=qid, eval_set=[(X, y)])


def test_grid_search_without_routing_names_the_fix(data) -> None:
    with pytest.raises(ValueError, match=r"enable_metadata_routing=True"):
        GridSearchCV(LTRRanker(**FAST), {"lr": [1e-3]}, cv=GroupKFold(2), error_score="raise").fit(
            data["X"], data["y"], groups=data["qid"], qid=data["qid"]
        )


def test_pipeline_with_scaler(data, routing) -> None:
    X, y, qid, Xt = data["X"], data["y"], data["qid"], data["Xt"]
    params = {**FAST, "normalization": "none"}
    pipe = make_pipeline(StandardScaler(), LTRRanker(**params)).fit(X, y, qid=qid)
    scaler = StandardScaler().fit(X)
    by_hand = LTRRanker(**params).fit(scaler.transform(X), y, qid=qid)
    expected = by_hand.predict(scaler.transform(Xt))
    assert np.array_equal(pipe.predict(Xt), expected)
    # with qid the rows are scored list by list: other matmul shapes, float32 rounding may differ
    np.testing.assert_allclose(pipe.predict(Xt, qid=data["qt"]), expected, rtol=1e-6, atol=1e-7)
    assert pipe.score(Xt, data["yt"], qid=data["qt"]) == pytest.approx(
        _ndcg(by_hand, scaler.transform(Xt), data["yt"], data["qt"]), abs=1e-12
    )


def test_pipeline_with_attention_needs_qid_at_predict(data, routing) -> None:
    X, y, qid, Xt, qt = data["X"], data["y"], data["qid"], data["Xt"], data["qt"]
    attention = {"model": "attention", "model_args": {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}}
    pipe = make_pipeline(StandardScaler(), LTRRanker(**{**FAST, **attention})).fit(X, y, qid=qid)
    assert pipe.predict(Xt, qid=qt).shape == (Xt.shape[0],)
    with pytest.raises(ValueError, match="qid \\(or group\\) is required with the context-aware model 'attention'"):
        pipe.predict(Xt)


def test_pipeline_without_routing_takes_step_params(data) -> None:
    """Routing off (scikit-learn's default): ``ltrranker__qid`` reaches fit, predict params the last step."""
    X, y, qid = data["X"], data["y"], data["qid"]
    pipe = make_pipeline(StandardScaler(), LTRRanker(**FAST)).fit(X, y, ltrranker__qid=qid)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = make_pipeline(StandardScaler(), LTRRanker(**FAST)).fit(X, y, qid=qid)
    assert np.array_equal(pipe.predict(data["Xt"], qid=data["qt"]), routed.predict(data["Xt"]))


def test_clone_copies_params_not_fit(data) -> None:
    est = LTRRanker(**{**FAST, "model": "attention", "model_args": {"d_model": 8, "n_heads": 2}, "lr": 0.05})
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert copy.model_args is not est.model_args
    with pytest.raises(ValueError, match="Invalid parameter 'learning_rate' for estimator LTRRanker"):
        est.set_params(learning_rate=0.1)
    assert repr(LTRRanker(epochs=2)) == "LTRRanker(epochs=2)"
    fitted = LTRRanker(**FAST).fit(data["X"], data["y"], qid=data["qid"])
    assert not hasattr(clone(fitted), "ranker_")


def test_dataframe_feature_names(data) -> None:
    pd = pytest.importorskip("pandas")
    columns = [f"f{j}" for j in range(data["X"].shape[1])]
    frame = pd.DataFrame(data["X"], columns=columns)
    est = LTRRanker(**FAST).fit(frame, data["y"], qid=data["qid"])
    assert list(est.feature_names_in_) == columns
    test = pd.DataFrame(data["Xt"], columns=columns)
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        est.predict(test[columns[::-1]])
    assert np.array_equal(est.predict(test), LTRRanker(**FAST).fit(data["X"], data["y"], qid=data["qid"]).predict(data["Xt"]))

