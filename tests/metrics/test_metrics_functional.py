"""Per-query metrics against loop references, sklearn, and their documented conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

import reference_metrics as ref
from ltrkit.metrics import functional as F
from ltrkit.metrics.evaluation import compute_metrics

EMPTY_FILL = {"zero": 0.0, "one": 1.0, "skip": math.nan}


def random_batch(seed: int, *, batch: int = 40, width: int = 9, tie_levels: int = 4, partial_retrieval: bool = False):
    """Graded labels 0-4, many tied scores, padding at random positions, some lists with no
    relevant document, one list entirely padding, optionally judged-but-unretrieved documents."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, width + 1, size=batch)
    lengths[0] = 0
    mask = np.zeros((batch, width), dtype=bool)
    for row, n in enumerate(lengths):
        mask[row, rng.choice(width, size=n, replace=False)] = True
    labels = rng.integers(0, 5, size=(batch, width)).astype(np.float64)
    labels[rng.random(batch) < 0.25] = 0.0
    binary_rows = rng.random(batch) < 0.15
    labels[binary_rows] = np.minimum(labels[binary_rows], 1.0)
    scores = rng.integers(0, tie_levels, size=(batch, width)).astype(np.float32)
    scores[~mask] = np.nan  # padding may hold anything
    labels_padded = np.where(mask, labels, np.nan)
    retrieved = mask & (rng.random((batch, width)) < 0.8) if partial_retrieval else mask.copy()
    return (
        torch.from_numpy(scores),
        torch.from_numpy(labels_padded),
        torch.from_numpy(mask),
        torch.from_numpy(retrieved),
    )


def reference_values(scores, labels, mask, retrieved, metric: str, *, k, ties, empty, gain="exp2", t=1.0, max_grade=4.0):
    out = []
    for row in range(scores.shape[0]):
        m = mask[row].numpy()
        s = scores[row].numpy()[m].astype(float).tolist()
        y = labels[row].numpy()[m].tolist()
        r = retrieved[row].numpy()[m].tolist()

        def one(ranked):
            if metric == "ndcg":
                return ref.ndcg(ranked, y, k, gain)
            if metric == "dcg":
                return ref.dcg(ranked, k, gain) if any(v > 0 for v in y) else None
            if metric == "rr":
                return ref.reciprocal_rank(ranked, y, k, t)
            if metric == "ap":
                return ref.average_precision(ranked, y, k, t)
            if metric == "err":
                return ref.err(ranked, y, k, max_grade)
            if metric == "p":
                return ref.precision(ranked, y, k, t)
            return ref.recall(ranked, y, k, t)

        if ties == "average":
            values = [one(order) for order in ref.all_tie_orders(s, y, r)]
            value = None if values[0] is None else float(np.mean(values))
        else:
            value = one(ref.ranked_labels(s, y, r, ties))
        out.append(EMPTY_FILL[empty] if value is None else value)
    return np.array(out)


def call(metric: str, scores, labels, mask, retrieved, *, k, ties, empty, gain="exp2", t=1.0, max_grade=4.0):
    common = dict(k=k, ties=ties, empty=empty, retrieved=retrieved)
    if metric in ("ndcg", "dcg"):
        return getattr(F, metric)(scores, labels, mask, gain=gain, **common)
    if metric == "err":
        return F.err(scores, labels, mask, max_grade=max_grade, **common)
    fn = {"rr": F.reciprocal_rank, "ap": F.average_precision, "p": F.precision, "r": F.recall}[metric]
    return fn(scores, labels, mask, relevance_threshold=t, **common)


ALL = ["ndcg", "dcg", "rr", "ap", "err", "p", "r"]


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("ties", ["input_order", "pessimistic", "optimistic"])
@pytest.mark.parametrize("k", [None, 1, 3, 20])
@pytest.mark.parametrize("tie_levels", [4, 10**6])  # most rows tied / most rows tie-free
def test_matches_loop_reference(metric, ties, k, tie_levels):
    scores, labels, mask, retrieved = random_batch(
        100 * ALL.index(metric) + 10 * len(ties) + (k or 0) + tie_levels, tie_levels=tie_levels, partial_retrieval=True
    )
    for empty in ("zero", "one", "skip"):
        got = call(metric, scores, labels, mask, retrieved, k=k, ties=ties, empty=empty).numpy()
        expected = reference_values(scores, labels, mask, retrieved, metric, k=k, ties=ties, empty=empty)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("metric", ["ndcg", "dcg", "p", "r"])
@pytest.mark.parametrize("k", [None, 2, 5])
def test_average_ties_is_expectation_over_tie_orders(metric, k):
    scores, labels, mask, retrieved = random_batch(7 + (k or 0), batch=25, width=6, tie_levels=3, partial_retrieval=True)
    got = call(metric, scores, labels, mask, retrieved, k=k, ties="average", empty="skip").numpy()
    expected = reference_values(scores, labels, mask, retrieved, metric, k=k, ties="average", empty="skip")
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("gain", ["exp2", "linear"])
def test_ndcg_average_ties_equals_sklearn(gain):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(60, 12)).astype(np.float64)
    scores = rng.integers(0, 3, size=(60, 12)).astype(np.float64)
    # sklearn's gain is linear in y_true: give it 2^rel - 1 to get the exp2 gain
    y_true = labels if gain == "linear" else 2.0**labels - 1.0
    for k in (None, 1, 5, 30):
        got = F.ndcg(torch.from_numpy(scores), torch.from_numpy(labels), k=k, gain=gain, ties="average").numpy()
        expected = [ndcg_score(y_true[i : i + 1], scores[i : i + 1], k=k) for i in range(60)]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_sklearn_ignore_ties_is_input_order_only_without_ties():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, size=(30, 10)).astype(np.float64)
    scores = rng.permutation(np.arange(300.0)).reshape(30, 10)
    got = F.ndcg(torch.from_numpy(scores), torch.from_numpy(labels), k=5, gain="linear").numpy()
    expected = [ndcg_score(labels[i : i + 1], scores[i : i + 1], k=5, ignore_ties=True) for i in range(30)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_padding_equals_deleting_documents():
    scores, labels, mask, _ = random_batch(11)
    metrics = ["ndcg@3", "dcg", "map@5", "mrr", "err@4", "p@3", "recall@2"]
    batched = compute_metrics(scores, labels, mask, metrics, max_grade=4.0)
    for row in range(scores.shape[0]):
        m = mask[row]
        single = compute_metrics(scores[row][m][None], labels[row][m][None], None, metrics, max_grade=4.0)
        for name in metrics:
            torch.testing.assert_close(batched[name][row], single[name][0], rtol=0, atol=0)


def test_extra_batch_dimensions_are_kept():
    scores, labels, mask, _ = random_batch(12, batch=24)
    flat = F.ndcg(scores, labels, mask, k=3)
    shaped = F.ndcg(scores.reshape(2, 3, 4, -1), labels.reshape(2, 3, 4, -1), mask.reshape(2, 3, 4, -1), k=3)
    assert shaped.shape == (2, 3, 4)
    torch.testing.assert_close(shaped.reshape(-1), flat)


def test_minus_infinity_scores_rank_before_padding():
    scores = torch.tensor([[-math.inf, 0.0, -math.inf]])
    labels = torch.tensor([[2.0, 0.0, 1.0]])
    mask = torch.tensor([[True, False, True]])
    # padding in the middle must not take rank 2 from the second -inf document
    assert F.ndcg(scores, labels, mask).item() == pytest.approx(1.0)
    assert F.dcg(scores, labels, mask).item() == pytest.approx(3.0 + 1.0 / math.log2(3.0))
    assert F.ndcg(scores, labels, mask, ties="pessimistic").item() == pytest.approx(
        (1.0 + 3.0 / math.log2(3.0)) / (3.0 + 1.0 / math.log2(3.0))
    )


def test_k_beyond_list_length():
    scores, labels, mask, _ = random_batch(13)
    torch.testing.assert_close(F.ndcg(scores, labels, mask, k=50), F.ndcg(scores, labels, mask))
    torch.testing.assert_close(F.average_precision(scores, labels, mask, k=50), F.average_precision(scores, labels, mask))
    torch.testing.assert_close(F.recall(scores, labels, mask, k=50), F.recall(scores, labels, mask))
    # precision@k divides by k, not by the list length (trec_eval's P_k)
    three_relevant = F.precision(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[1.0, 2.0, 1.0]]), k=10)
    assert three_relevant.item() == pytest.approx(0.3)


def test_gain_exp2_and_linear_differ_only_on_graded_labels():
    scores, labels, mask, _ = random_batch(14)
    graded_exp2 = F.ndcg(scores, labels, mask, k=5, gain="exp2")
    graded_linear = F.ndcg(scores, labels, mask, k=5, gain="linear")
    assert not torch.allclose(graded_exp2, graded_linear)
    binary = (labels >= 1).to(labels.dtype)
    torch.testing.assert_close(
        F.ndcg(scores, binary, mask, k=5, gain="exp2"), F.ndcg(scores, binary, mask, k=5, gain="linear")
    )


def test_empty_conventions():
    scores = torch.tensor([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    labels = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for fn in (F.ndcg, F.reciprocal_rank, F.average_precision, F.err, F.precision, F.recall):
        zero, one, skip = (fn(scores, labels, empty=e) for e in ("zero", "one", "skip"))
        assert zero[0].item() == 0.0 and one[0].item() == 1.0 and math.isnan(skip[0].item())
        assert zero[1].item() == one[1].item() == skip[1].item() > 0


def test_relevance_threshold_for_binary_metrics():
    scores = torch.tensor([[0.9, 0.5, 0.1]])
    labels = torch.tensor([[1.0, 2.0, 3.0]])
    assert F.reciprocal_rank(scores, labels, relevance_threshold=2).item() == pytest.approx(0.5)
    assert F.average_precision(scores, labels, relevance_threshold=3).item() == pytest.approx(1 / 3)
    assert F.precision(scores, labels, k=2, relevance_threshold=2).item() == pytest.approx(0.5)
    assert F.recall(scores, labels, k=2, relevance_threshold=2).item() == pytest.approx(0.5)


def test_err_max_grade_defaults_to_largest_label_in_batch():
    scores, labels, mask, _ = random_batch(15)
    top = float(labels[mask].max())
    torch.testing.assert_close(F.err(scores, labels, mask, k=5), F.err(scores, labels, mask, k=5, max_grade=top))
    assert not torch.allclose(F.err(scores, labels, mask), F.err(scores, labels, mask, max_grade=top + 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, r"k must be a positive int or None, got 0"),
        ({"k": 2.5}, r"k must be a positive int or None, got 2.5"),
        ({"gain": "exp"}, r"gain must be one of \['exp2', 'linear'\], got 'exp'"),
        ({"empty": "nan"}, r"empty must be one of \['zero', 'one', 'skip'\], got 'nan'"),
        ({"ties": "random"}, r"ties must be one of .*'average'\], got 'random'"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.ndcg(torch.zeros(1, 3), torch.zeros(1, 3), **kwargs)


@pytest.mark.parametrize(
    "scores, labels, mask, message",
    [
        (torch.tensor([[0.1, math.nan]]), torch.tensor([[1.0, 0.0]]), None, r"scores must not be NaN"),
        (torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0, -1.0]]), None, r"labels must be >= 0 .* got minimum -1.0"),
        (torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0, math.inf]]), None, r"labels must be finite"),
        (torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0]]), None, r"labels shape \(1, 1\) does not match scores shape \(1, 2\)"),
        (torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1, 0]]), r"mask must have dtype torch.bool"),
        (torch.tensor([[1, 2]]), torch.tensor([[1.0, 0.0]]), None, r"scores must be a floating-point tensor"),
    ],
)
def test_bad_inputs(scores, labels, mask, message):
    with pytest.raises(ValueError, match=message):
        F.ndcg(scores, labels, mask)


def test_nan_score_at_padding_is_fine():
    value = F.ndcg(torch.tensor([[0.1, math.nan]]), torch.tensor([[1.0, math.nan]]), torch.tensor([[True, False]]))
    assert value.item() == 1.0


@pytest.mark.parametrize("fn", [F.reciprocal_rank, F.average_precision, F.err])
def test_average_ties_rejected_where_not_exact(fn):
    with pytest.raises(ValueError, match=r"ties='average' is not supported by"):
        fn(torch.zeros(1, 3), torch.ones(1, 3), ties="average")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_grade": 2}, r"labels must be <= max_grade=2 for err, got a label 3.0"),
        ({"max_grade": -1}, r"max_grade must be a finite number >= 0 or None, got -1"),
    ],
)
def test_err_bad_max_grade(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.err(torch.zeros(1, 3), torch.tensor([[0.0, 3.0, 1.0]]), **kwargs)


@pytest.mark.parametrize("threshold", [0, -1, math.nan, "1"])
def test_bad_relevance_threshold(threshold):
    with pytest.raises(ValueError, match=r"relevance_threshold must be"):
        F.precision(torch.zeros(1, 3), torch.ones(1, 3), relevance_threshold=threshold)


def test_bad_retrieved():
    with pytest.raises(ValueError, match=r"retrieved must be a torch.Tensor of dtype torch.bool"):
        F.recall(torch.zeros(1, 3), torch.ones(1, 3), retrieved=torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"retrieved shape \(1, 2\) does not match scores shape \(1, 3\)"):
        F.recall(torch.zeros(1, 3), torch.ones(1, 3), retrieved=torch.ones(1, 2, dtype=torch.bool))
