"""The LambdaMART baseline of a training report: LightGBM on the run's own splits.

A neural ranker is worth shipping when it beats a gradient-boosted tree ensemble trained on the
same data, so every report can put one beside the model: LightGBM's ``lambdarank`` objective
(LambdaMART, Burges 2010) trained on the run's transformed training split, early-stopped on
the split that selects the model's best epoch, and scored by the same evaluator as the model.
LightGBM is optional (``pip install 'ltrkit[gbdt]'``).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from ltrkit._optional import require
from ltrkit.data.dataset import RankingDataset

__all__ = ["LAMBDAMART_PARAMS", "lambdamart_baseline", "lightgbm_available"]

#: LightGBM parameters of the baseline: a common, robust LambdaMART setting (31 leaves,
#: learning rate 0.05, row and feature subsampling), seeded by the run's seed.
LAMBDAMART_PARAMS: Dict[str, Any] = {
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "verbosity": -1,
}
MAX_TREES = 1000
EARLY_STOPPING_ROUNDS = 50


def lightgbm_available() -> bool:
    """Whether LightGBM can be imported (the ``gbdt`` extra is installed)."""
    try:
        require("the LambdaMART baseline", "gbdt", "lightgbm")
    except ImportError:
        return False
    return True


def lambdamart_baseline(
    train: RankingDataset,
    stop: RankingDataset,
    evaluate: Mapping[str, RankingDataset],
    *,
    stop_metric: str,
    seed: int,
    num_threads: Optional[int] = None,
    metric_names: Sequence[str],
    conventions: Mapping[str, Any],
) -> Dict[str, Any]:
    """Train LambdaMART on ``train``, stop on ``stop``, and evaluate it on each split of ``evaluate``.

    Early stopping uses LightGBM's own metric on ``stop``: ``ndcg@k`` when ``stop_metric`` is
    ``ndcg@k`` (``ndcg@10`` for any other metric), ``EARLY_STOPPING_ROUNDS`` rounds without
    improvement, at most ``MAX_TREES`` trees; the best iteration scores the splits, and
    :func:`ltrkit.training.scoring.evaluate_scores` computes ``metric_names`` under
    ``conventions``, exactly as for the model.

    Args:
        train: the (normalised, filtered) training split.
        stop: the split early stopping watches (the run's ``early_stopping.split``).
        evaluate: ``{split name: dataset}`` to report metrics on (e.g. ``{"test": test}``).
        stop_metric: the run's early-stopping metric (canonical name).
        seed: LightGBM's seed (bagging and feature subsampling).
        num_threads: LightGBM threads (``None``: LightGBM's default).
        metric_names: metrics to report.
        conventions: keyword arguments of :func:`ltrkit.metrics.evaluate_dataset`.

    Returns:
        ``{"label", "trees", "train_seconds", "early_stopping", "params", "metrics": {split: {...}}}``;
        ``early_stopping`` holds LightGBM's metric, its patience and its best value.

    Raises:
        MissingExtraError: LightGBM is not installed (the message names ``pip install 'ltrkit[gbdt]'``).
    """
    from ltrkit.metrics import parse_metric
    from ltrkit.training.scoring import evaluate_scores

    (lightgbm,) = require("the LambdaMART baseline", "gbdt", "lightgbm")
    spec = parse_metric(stop_metric)
    k = spec.k if spec.family == "ndcg" and spec.k is not None else 10
    params = {**LAMBDAMART_PARAMS, "metric": "ndcg", "eval_at": [k], "seed": seed}
    if num_threads is not None:
        params["num_threads"] = num_threads
    started = time.perf_counter()
    # LightGBM bins whole matrices: a lazily normalised split is materialised here
    train_set = lightgbm.Dataset(np.asarray(train.features), train.labels, group=train.list_lengths)
    stop_set = lightgbm.Dataset(np.asarray(stop.features), stop.labels, group=stop.list_lengths, reference=train_set)
    booster = lightgbm.train(
        params,
        train_set,
        num_boost_round=MAX_TREES,
        valid_sets=[stop_set],
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    seconds = time.perf_counter() - started
    trees = int(booster.best_iteration or booster.current_iteration())
    metrics = {
        split: evaluate_scores(dataset, booster.predict(np.asarray(dataset.features), num_iteration=trees), metric_names, conventions)
        for split, dataset in evaluate.items()
    }
    return {
        "label": "LightGBM LambdaMART",
        "trees": trees,
        "train_seconds": seconds,
        # LightGBM's own value of the stopping metric at the best iteration (its conventions:
        # exp2 gain, a query without a relevant document scores 1)
        "early_stopping": {
            "metric": f"ndcg@{k}",
            "rounds": EARLY_STOPPING_ROUNDS,
            "best_value": float(booster.best_score["valid_0"][f"ndcg@{k}"]),
        },
        "params": {key: value for key, value in params.items() if key != "verbosity"},
        "metrics": metrics,
    }
