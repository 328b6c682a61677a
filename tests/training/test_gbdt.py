"""The LambdaMART baseline (ltrkit.training.gbdt): LightGBM on a run's splits, scored by ltrkit."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ltrkit._optional import MissingExtraError
from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset
from ltrkit.training.gbdt import EARLY_STOPPING_ROUNDS, MAX_TREES, lambdamart_baseline, lightgbm_available

pytestmark = pytest.mark.skipif(not lightgbm_available(), reason="needs lightgbm (pip install 'ltrkit[gbdt]')")

METRICS = ["ndcg@5", "ndcg@10"]


@pytest.fixture(scope="module")
def splits():
    return generate_splits(train_queries=150, vali_queries=40, test_queries=40, n_features=12, mean_list_length=15.0, seed=1)


def _baseline(splits, **kwargs):
    options = {
        "stop_metric": "ndcg@10",
        "seed": 0,
        "num_threads": 1,
        "metric_names": METRICS,
        "conventions": {"empty": "one", "ties": "average"},
    }
    options.update(kwargs)
    return lambdamart_baseline(splits["train"], splits["vali"], {"vali": splits["vali"], "test": splits["test"]}, **options)


def test_stops_early_and_reports_lightgbms_own_value_through_ltrkits_evaluator(splits):
    result = _baseline(splits)
    stopping = result["early_stopping"]
    assert stopping["metric"] == "ndcg@10" and stopping["rounds"] == EARLY_STOPPING_ROUNDS
    assert 1 <= result["trees"] < MAX_TREES
    assert result["train_seconds"] > 0
    # LightGBM's validation NDCG@10 at its best iteration (exp2 gain, empty queries = 1) is what
    # ltrkit's evaluator gives the same scores under the same conventions
    assert result["metrics"]["vali"]["ndcg@10"] == pytest.approx(stopping["best_value"], abs=1e-6)


def test_beats_a_random_ranker_on_test(splits):
    test = splits["test"]
    result = _baseline(splits)
    random = evaluate_dataset(test, np.random.default_rng(0).random(test.n_docs), METRICS, empty="one", ties="average")
    assert result["metrics"]["test"]["ndcg@10"] > random.mean["ndcg@10"] + 0.1


def test_seeded_and_stop_metric_cutoff(splits):
    first, again = _baseline(splits, seed=3), _baseline(splits, seed=3)
    assert first["metrics"] == again["metrics"] and first["trees"] == again["trees"]
    # a non-NDCG stopping metric falls back to LightGBM's ndcg@10; ndcg@k keeps its cut-off
    assert _baseline(splits, stop_metric="map")["early_stopping"]["metric"] == "ndcg@10"
    assert _baseline(splits, stop_metric="ndcg@5")["early_stopping"]["metric"] == "ndcg@5"


def test_missing_lightgbm_names_the_extra(splits, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # an import of it now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'ltrkit\[gbdt\]'"):
        _baseline(splits)
    assert not lightgbm_available()
