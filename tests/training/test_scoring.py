"""Scoring helpers against slow, direct references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltrkit.data.dataset import RankingDataset, pad_ragged
from ltrkit.data.synthetic import generate
from ltrkit.metrics import evaluate_dataset
from ltrkit.models import build_model
from ltrkit.training.scoring import best_single_feature, random_scores, score_dataset


@pytest.fixture(scope="module")
def dataset():
    return generate(25, n_features=8, mean_list_length=9.0, max_list_length=40, seed=11)


def test_score_dataset_equals_scoring_each_query_alone(dataset):
    torch.manual_seed(0)
    model = build_model("mlp", dataset.n_features, hidden_sizes=[6], dropout=0.5)
    model.train()  # score_dataset must switch to eval mode (no dropout) and back
    scores = score_dataset(model, dataset, batch_size=4)
    assert model.training
    model.eval()
    with torch.no_grad():
        for q in range(dataset.n_queries):
            rows = dataset.query_slice(q)
            features = torch.from_numpy(np.asarray(dataset.features[rows]))[None]
            alone = model(features, torch.ones(features.shape[:2], dtype=torch.bool))[0].numpy()
            np.testing.assert_allclose(scores[rows], alone, rtol=1e-5, atol=1e-6)


def test_score_dataset_attention_model_matches_padded_forward(dataset):
    torch.manual_seed(0)
    model = build_model("attention", dataset.n_features, n_layers=1, d_model=8, n_heads=2).eval()
    scores = score_dataset(model, dataset, batch_size=3)
    padded, mask = pad_ragged(np.asarray(dataset.features), dataset.query_offsets)
    with torch.no_grad():
        direct = model(torch.from_numpy(padded), torch.from_numpy(mask)).numpy()[mask]
    np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-5)


def test_best_single_feature_matches_a_loop_over_evaluate_dataset(dataset):
    chosen = best_single_feature(dataset, metric="ndcg@10", conventions={"conventions": "ltrkit"}, batch_size=4)
    best = None
    for column in range(dataset.n_features):
        for sign in (1, -1):
            value = evaluate_dataset(dataset, sign * np.asarray(dataset.features[:, column], np.float64), ["ndcg@10"]).mean["ndcg@10"]
            if best is None or value > best[0] + 1e-12:
                best = (value, column, sign)
    assert (chosen["feature"], chosen["sign"]) == (best[1], best[2])
    assert chosen["value"] == pytest.approx(best[0], abs=1e-9)


def test_random_scores_are_seeded(dataset):
    np.testing.assert_array_equal(random_scores(dataset, seed=4), random_scores(dataset, seed=4))
    assert not np.array_equal(random_scores(dataset, seed=4), random_scores(dataset, seed=5))


def test_best_single_feature_takes_errs_top_grade_over_the_dataset_not_each_batch():
    # one query per batch, each with its own top grade: a per-batch top grade inflates ERR
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 9, size=12)
    labels = np.concatenate([rng.integers(0, top + 1, size=n) for n, top in zip(lengths, [1, 2, 3, 4] * 3)]).astype(np.float32)
    features = rng.normal(size=(int(lengths.sum()), 5)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = RankingDataset(features, labels, offsets, np.array([str(q) for q in range(12)]))
    chosen = best_single_feature(data, metric="err@5", conventions={"conventions": "ltrkit"}, batch_size=1)
    values = {
        (column, sign): evaluate_dataset(data, sign * features[:, column].astype(np.float64), ["err@5"]).mean["err@5"]
        for column in range(5)
        for sign in (1, -1)
    }
    assert chosen["value"] == pytest.approx(values[chosen["feature"], chosen["sign"]], abs=1e-9)
    assert chosen["value"] == pytest.approx(max(values.values()), abs=1e-9)
