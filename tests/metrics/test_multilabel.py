"""Multi-label ranking metrics against scikit-learn, ties and degenerate rows included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from ltrkit.metrics import coverage_error, label_ranking_average_precision, label_ranking_loss

# (ltrkit, scikit-learn)
PAIRS = [
    (label_ranking_loss, skm.label_ranking_loss),
    (coverage_error, skm.coverage_error),
    (label_ranking_average_precision, skm.label_ranking_average_precision_score),
]
IDS = ["label_ranking_loss", "coverage_error", "lrap"]


def random_case(seed, *, n=60, c=7, integer_scores=True):
    """Scores (integer-valued: many ties, or continuous) and 0/1 targets with an all-zero row,
    an all-one row, a row with one relevant label and one with one irrelevant label."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n, c)).astype(np.float64) if integer_scores else rng.normal(size=(n, c))
    targets = (rng.random((n, c)) < rng.uniform(0.1, 0.9, size=(n, 1))).astype(np.int64)
    targets[0] = 0
    targets[1] = 1
    targets[2] = np.eye(c, dtype=np.int64)[3]
    targets[3] = 1 - np.eye(c, dtype=np.int64)[5]
    scores[4] = 2.0  # every label tied
    return scores, targets


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer_scores", [True, False])
def test_mean_equals_sklearn(ours, theirs, seed, integer_scores):
    scores, targets = random_case(seed, integer_scores=integer_scores)
    want = theirs(targets, scores)
    assert abs(ours(scores, targets) - want) <= 1e-12
    assert abs(ours(torch.from_numpy(scores).float(), torch.from_numpy(targets).bool()) - want) <= 1e-12


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=IDS)
def test_sample_weight_equals_sklearn(ours, theirs):
    scores, targets = random_case(3)
    weights = np.random.default_rng(3).random(scores.shape[0])
    weights[:6] = [0.0, 2.5, 0.0, 1.0, 3.0, 0.5]
    want = theirs(targets, scores, sample_weight=weights)
    assert abs(ours(scores, targets, sample_weight=weights) - want) <= 1e-12
    tensors = torch.from_numpy(scores), torch.from_numpy(targets)
    assert abs(ours(*tensors, sample_weight=torch.from_numpy(weights)) - want) <= 1e-12


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=IDS)
def test_per_row_values_equal_sklearn_on_each_row(ours, theirs):
    scores, targets = random_case(4, n=25)
    per_row = ours(scores, targets, reduction="none")
    assert per_row.shape == (25,) and per_row.dtype == torch.float64
    want = np.array([theirs(targets[i : i + 1], scores[i : i + 1]) for i in range(25)])
    np.testing.assert_allclose(per_row.numpy(), want, rtol=0, atol=1e-12)
    assert abs(float(per_row.mean()) - ours(scores, targets)) <= 1e-12


def test_degenerate_rows_follow_sklearns_conventions():
    scores = np.array([[0.3, 0.1, 0.2], [0.3, 0.1, 0.2], [1.0, 1.0, 1.0]])
    targets = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0]])
    assert label_ranking_loss(scores, targets, reduction="none").tolist() == [0.0, 0.0, 1.0]
    assert coverage_error(scores, targets, reduction="none").tolist() == [0.0, 3.0, 3.0]
    assert label_ranking_average_precision(scores, targets, reduction="none").tolist() == [1.0, 1.0, 1.0 / 3.0]


@pytest.mark.parametrize(
    "scores, targets, kwargs, message",
    [
        (np.zeros(3), np.zeros(3), {}, r"scores must be 2-D \[N, C\] with C >= 1 labels, got shape \(3,\)"),
        (np.zeros((2, 3)), np.zeros((2, 4)), {}, r"targets shape \(2, 4\) does not match scores shape \(2, 3\)"),
        (np.zeros((2, 3)), np.full((2, 3), 2), {}, "targets must hold only 0 and 1"),
        (np.array([[0.0, np.nan]]), np.zeros((1, 2)), {}, "scores must be finite"),
        (np.zeros((0, 3)), np.zeros((0, 3)), {}, "scores has no rows"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"sample_weight": [1.0]}, r"sample_weight must have shape \[2\]"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"sample_weight": [0.0, 0.0]}, "positive sum"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"sample_weight": [1.0, -1.0]}, ">= 0"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"sample_weight": [1.0, 1.0], "reduction": "none"}, "does not apply to reduction='none'"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"reduction": "sum"}, r"reduction must be one of \['mean', 'none'\], got 'sum'"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), {}, "scores must be a numeric or bool array"),
    ],
)
@pytest.mark.parametrize("fn", [label_ranking_loss, coverage_error, label_ranking_average_precision])
def test_bad_input_raises_a_clear_value_error(fn, scores, targets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fn(scores, targets, **kwargs)
