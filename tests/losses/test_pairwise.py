"""Tests of the pairwise losses against loop-based references, autograd and PyTorch's own losses."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from ltrkit.losses import get, hyperparameters, names
from ltrkit.losses._pairwise_kernels import lambdarank_value_and_lambdas, ranknet_value_and_lambdas
from ltrkit.losses.pairwise import (
    LAMBDALOSS_WEIGHTINGS,
    lambdaloss,
    lambdarank_loss,
    margin_ranking,
    pairwise_hinge_loss,
    ranknet_loss,
    ranknet_matrix_loss,
    ranknet_pair_loss,
)

_spec = importlib.util.spec_from_file_location("reference_pairwise", Path(__file__).with_name("reference_pairwise.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

LIST_LOSSES = {
    "ranknet": ranknet_loss,
    "ranknet_matrix": ranknet_matrix_loss,
    "lambdarank": lambdarank_loss,
    "lambdaloss": lambdaloss,
    "pairwise_hinge": pairwise_hinge_loss,
}


def random_batch(batch=4, length=7, *, seed=0, levels=4, dtype=torch.float64, p_pad=0.25, score_ties=False):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, length, generator=gen, dtype=dtype)
    if score_ties:
        scores = torch.round(scores * 2) / 2
    labels = torch.randint(0, levels, (batch, length), generator=gen).to(dtype)
    mask = torch.rand(batch, length, generator=gen) > p_pad
    return scores, labels, mask


def real_items(scores, labels, mask, b):
    keep = mask[b]
    return scores[b][keep], labels[b][keep].tolist()


# ------------------------------------------------------------------------------------------ RankNet


def test_pair_form_matches_bce_with_logits_values_and_gradients():
    gen = torch.Generator().manual_seed(1)
    diffs = (3 * torch.randn(50, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 3, (50,), generator=gen).double() / 2
    weights = torch.rand(50, generator=gen, dtype=torch.float64)
    for sigma in (1.0, 2.5):
        for reduction in ("mean", "sum", "none"):
            ours = ranknet_pair_loss(diffs, targets, weights=weights, sigma=sigma, reduction=reduction)
            theirs = torch.nn.functional.binary_cross_entropy_with_logits(
                sigma * diffs, targets, weight=weights, reduction=reduction
            )
            torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-12)
            g1, = torch.autograd.grad(ours.sum(), diffs)
            g2, = torch.autograd.grad(theirs.sum(), diffs)
            torch.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-10)


def test_pair_form_is_stable_and_mean_of_nothing_is_zero():
    diffs = torch.tensor([1e4, -1e4, 1e4], requires_grad=True)
    loss = ranknet_pair_loss(diffs, torch.tensor([0.0, 1.0, 1.0]), reduction="none")
    assert torch.equal(loss.detach(), torch.tensor([1e4, 1e4, 0.0]))
    loss.sum().backward()
    assert torch.isfinite(diffs.grad).all()
    assert ranknet_pair_loss(torch.zeros(0), torch.zeros(0)).item() == 0.0


@pytest.mark.parametrize("include_ties", [False, True])
def test_pair_form_over_all_pairs_equals_matrix_form(include_ties):
    scores, labels, mask = random_batch(seed=2)
    diffs, targets, owner = [], [], []
    for b in range(scores.shape[0]):
        idx = mask[b].nonzero().flatten().tolist()
        for a_pos, i in enumerate(idx):
            for j in idx[a_pos + 1:]:
                if labels[b, i] == labels[b, j] and not include_ties:
                    continue
                diffs.append(scores[b, i] - scores[b, j])
                targets.append(0.5 * (1 + torch.sign(labels[b, i] - labels[b, j])))
                owner.append(b)
    pair_costs = ranknet_pair_loss(torch.stack(diffs), torch.stack(targets), reduction="none")
    per_list = torch.zeros(scores.shape[0], dtype=scores.dtype).index_add_(0, torch.tensor(owner), pair_costs)
    matrix = ranknet_matrix_loss(scores, labels, mask, include_ties=include_ties, reduction="none")
    torch.testing.assert_close(matrix, per_list, atol=1e-12, rtol=1e-12)
    pairs_mean = ranknet_matrix_loss(scores, labels, mask, include_ties=include_ties, normalize="pairs")
    torch.testing.assert_close(pairs_mean, ranknet_pair_loss(torch.stack(diffs), torch.stack(targets)))


@pytest.mark.parametrize("include_ties", [False, True])
@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_matrix_form_matches_loop_reference(include_ties, sigma):
    scores, labels, mask = random_batch(seed=3)
    values = ranknet_matrix_loss(scores, labels, mask, sigma=sigma, include_ties=include_ties, reduction="none")
    for b in range(scores.shape[0]):
        s, l = real_items(scores, labels, mask, b)
        expected, _ = ref.ranknet_list(s.tolist(), l, sigma=sigma, include_ties=include_ties)
        assert values[b].item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("include_ties", [False, True])
@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("normalize", ["lists", "list_pairs", "pairs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_factorised_form_matches_matrix_form_value_and_gradient(include_ties, sigma, normalize, reduction):
    scores, labels, mask = random_batch(batch=5, length=9, seed=4, dtype=torch.float32)
    scores = (3 * scores).requires_grad_()
    kw = dict(sigma=sigma, include_ties=include_ties, normalize=normalize, reduction=reduction)
    fast = ranknet_loss(scores, labels, mask, **kw)
    slow = ranknet_matrix_loss(scores, labels, mask, **kw)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    g_fast, = torch.autograd.grad(fast.sum(), scores)
    g_slow, = torch.autograd.grad(slow.sum(), scores)
    torch.testing.assert_close(g_fast, g_slow, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("include_ties", [False, True])
def test_chunk_boundaries_do_not_change_the_result(include_ties):
    scores, labels, mask = random_batch(batch=3, length=23, seed=5)
    whole = ranknet_value_and_lambdas(scores, labels, mask, sigma=1.3, include_ties=include_ties)
    for block in (1, 23, 50, 3 * 23 * 4 + 1):
        chunked = ranknet_value_and_lambdas(scores, labels, mask, sigma=1.3, include_ties=include_ties, block_elements=block)
        for a, b in zip(whole, chunked):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_factorised_ranknet_gradcheck_and_lambda_formula():
    scores, labels, mask = random_batch(batch=3, length=6, seed=6)
    scores.requires_grad_()
    for include_ties in (False, True):
        assert torch.autograd.gradcheck(
            lambda s: ranknet_loss(s, labels, mask, sigma=1.5, include_ties=include_ties, reduction="none"), (scores,)
        )
    # lambda_i = sum_j sigma (sigmoid(sigma (s_i - s_j)) - P̄_ij), straight from Burges 2010
    ranknet_loss(scores, labels, mask, sigma=1.5, reduction="sum").backward()
    for b in range(3):
        idx = mask[b].nonzero().flatten().tolist()
        for i in idx:
            expected = sum(
                1.5 * (1 / (1 + math.exp(-1.5 * (scores[b, i] - scores[b, j]).item())) - (labels[b, i] > labels[b, j]).item())
                for j in idx
                if labels[b, i] != labels[b, j]
            )
            assert scores.grad[b, i].item() == pytest.approx(expected, abs=1e-10)
        assert (scores.grad[b][~mask[b]] == 0).all()


def test_long_list_in_many_small_chunks_matches_autograd():
    gen = torch.Generator().manual_seed(17)
    scores = torch.randn(1, 1500, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (1, 1500), generator=gen).double()
    mask = torch.rand(1, 1500, generator=gen) > 0.1
    value, lambdas = ranknet_value_and_lambdas(
        scores.detach(), labels, mask, sigma=1.0, include_ties=False, block_elements=1 << 14
    )
    expected = ranknet_matrix_loss(scores, labels, mask, reduction="sum")
    expected.backward()
    torch.testing.assert_close(value.sum(), expected.detach(), atol=1e-8, rtol=1e-12)
    torch.testing.assert_close(lambdas, scores.grad, atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------------------------------------- LambdaRank


@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("gain", ["exp2", "linear"])
@pytest.mark.parametrize("score_ties", [False, True])
def test_lambdarank_matches_burges_swap_reference(k, gain, score_ties):
    scores, labels, mask = random_batch(batch=6, length=7, seed=7, score_ties=score_ties)
    labels[0] = 0.0  # a list with IDCG 0
    scores.requires_grad_()
    values = lambdarank_loss(scores, labels, mask, k=k, gain=gain, sigma=1.5, reduction="none")
    values.sum().backward()
    for b in range(scores.shape[0]):
        s, l = real_items(scores.detach(), labels, mask, b)
        value, lambdas, _ = ref.lambdarank_list(s.tolist(), l, sigma=1.5, k=k, kind=gain)
        assert values[b].item() == pytest.approx(value, abs=1e-10)
        torch.testing.assert_close(scores.grad[b][mask[b]], torch.tensor(lambdas, dtype=scores.dtype), atol=1e-10, rtol=1e-9)
        assert (scores.grad[b][~mask[b]] == 0).all()


@pytest.mark.parametrize("normalize", ["lists", "list_pairs", "pairs"])
def test_lambdarank_reduction_counts_pairs_like_the_reference(normalize):
    scores, labels, mask = random_batch(batch=6, length=8, seed=8)
    labels[1] = 0.0
    got = lambdarank_loss(scores, labels, mask, k=3, normalize=normalize)
    values, counts = [], []
    for b in range(scores.shape[0]):
        s, l = real_items(scores, labels, mask, b)
        value, _, pairs = ref.lambdarank_list(s.tolist(), l, sigma=1.0, k=3, kind="exp2")
        values.append(value)
        counts.append(pairs)
    if normalize == "pairs":
        expected = sum(values) / sum(counts)
    else:
        per_list = [v / c if normalize == "list_pairs" and c else v for v, c in zip(values, counts)]
        expected = sum(per_list) / sum(c > 0 for c in counts)
    assert got.item() == pytest.approx(expected, abs=1e-10)


def test_lambdarank_gradcheck_and_chunking():
    scores, labels, mask = random_batch(batch=3, length=6, seed=9)
    scores.requires_grad_()
    # with distinct scores the ranks are locally constant, so the lambdas are the value's gradient
    assert torch.autograd.gradcheck(lambda s: lambdarank_loss(s, labels, mask, k=3, reduction="none"), (scores,))
    gains = torch.rand(3, 20, dtype=torch.float64)
    discounts = torch.rand(20, dtype=torch.float64)  # per position
    valid = torch.ones(3, 20, dtype=torch.float64)
    s = torch.randn(3, 20, dtype=torch.float64)
    for top in (20, 7):
        whole = lambdarank_value_and_lambdas(s, gains, discounts, valid, sigma=1.0, top=top)
        chunked = lambdarank_value_and_lambdas(s, gains, discounts, valid, sigma=1.0, top=top, block_elements=7)
        for a, b in zip(whole, chunked):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------------------- LambdaLoss


@pytest.mark.parametrize("weighting", LAMBDALOSS_WEIGHTINGS)
@pytest.mark.parametrize("k", [None, 2])
def test_lambdaloss_matches_paper_reference_values_and_gradients(weighting, k):
    scores, labels, mask = random_batch(batch=4, length=6, seed=10, score_ties=True)
    labels[0] = 0.0
    scores.requires_grad_()
    got = lambdaloss(scores, labels, mask, weighting=weighting, k=k, sigma=1.3, mu=4.0, gain="exp2", reduction="none")
    grad, = torch.autograd.grad(got.sum(), scores)
    for b in range(scores.shape[0]):
        idx = mask[b].nonzero().flatten().tolist()
        leaf = scores.detach()[b].clone().requires_grad_()
        expected, _ = ref.lambdaloss_list([leaf[i] for i in idx], labels[b, idx].tolist(),
                                          weighting=weighting, k=k, sigma=1.3, mu=4.0, kind="exp2")
        assert got[b].item() == pytest.approx(expected.detach().item(), abs=1e-10)
        if expected.requires_grad:
            expected.backward()
            torch.testing.assert_close(grad[b], leaf.grad, atol=1e-10, rtol=1e-9)
        else:
            assert (grad[b] == 0).all()


@pytest.mark.parametrize("k", [None, 3])
def test_lambdaloss_lambdarank_weighting_has_lambdarank_gradient(k):
    scores, labels, mask = random_batch(batch=4, length=8, seed=11)
    scores.requires_grad_()
    g1, = torch.autograd.grad(lambdaloss(scores, labels, mask, weighting="lambdarank", k=k, reduction="sum"), scores)
    g2, = torch.autograd.grad(lambdarank_loss(scores, labels, mask, k=k, reduction="sum"), scores)
    torch.testing.assert_close(g1 * math.log(2.0), g2, atol=1e-10, rtol=1e-9)


def test_lambdaloss_eps_clamps_like_allrank():
    scores = torch.tensor([[-1e4, 1e4]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0]])
    exact = lambdaloss(scores, labels, weighting="arp_loss2")
    assert exact.item() == pytest.approx(2e4 / math.log(2), rel=1e-6)
    clamped = lambdaloss(scores, labels, weighting="arp_loss2", eps=1e-10)
    assert clamped.item() == pytest.approx(-math.log2(1e-10), rel=1e-6)
    clamped.backward()
    assert (scores.grad == 0).all()


# ------------------------------------------------------------------------------------------- hinge


@pytest.mark.parametrize("weight_by_label_diff", [False, True])
def test_hinge_matches_loop_reference(weight_by_label_diff):
    scores, labels, mask = random_batch(seed=12)
    scores.requires_grad_()
    got = pairwise_hinge_loss(scores, labels, mask, margin=0.5, weight_by_label_diff=weight_by_label_diff, reduction="none")
    grad, = torch.autograd.grad(got.sum(), scores)
    for b in range(scores.shape[0]):
        idx = mask[b].nonzero().flatten().tolist()
        leaf = scores.detach()[b].clone().requires_grad_()
        expected, _ = ref.hinge_list([leaf[i] for i in idx], labels[b, idx].tolist(), margin=0.5,
                                     weight_by_label_diff=weight_by_label_diff)
        assert got[b].item() == pytest.approx(float(torch.as_tensor(expected).detach()), abs=1e-12)
        if isinstance(expected, torch.Tensor) and expected.requires_grad:
            expected.backward()
            torch.testing.assert_close(grad[b], leaf.grad)


# ---------------------------------------------------------------------------------- margin_ranking


@pytest.mark.parametrize(
    "shapes", [((5,), (5,), (5,)), ((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), (3, 4)), ((2, 3), (2, 3), (1, 1))]
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_margin_ranking_matches_torch(shapes, reduction, margin):
    gen = torch.Generator().manual_seed(13)
    x1 = torch.randn(shapes[0], generator=gen, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(shapes[1], generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, shapes[2], generator=gen).double() * 2 - 1
    ours = margin_ranking(x1, x2, y, margin=margin, reduction=reduction)
    theirs = torch.nn.MarginRankingLoss(margin=margin, reduction=reduction)(x1, x2, y)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-12)
    g_ours = torch.autograd.grad(ours.sum(), (x1, x2))
    g_theirs = torch.autograd.grad(theirs.sum(), (x1, x2))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    module = get("margin_ranking", margin=margin, reduction=reduction)
    torch.testing.assert_close(module(x1, x2, y), theirs)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(3), torch.zeros(3, 1), torch.ones(3)), "same number of dimensions"),
        ((torch.zeros(3), torch.zeros(4), torch.ones(3)), "do not broadcast"),
        ((torch.zeros(3), torch.zeros(3), torch.zeros(3)), "y must hold only 1"),
        ((torch.zeros(3, dtype=torch.long), torch.zeros(3), torch.ones(3)), "x1 must be a floating-point"),
        (([0.0], torch.zeros(1), torch.ones(1)), "x1 must be a floating-point torch.Tensor, got list"),
    ],
)
def test_margin_ranking_errors(args, message):
    with pytest.raises(ValueError, match=message):
        margin_ranking(*args)


def test_margin_ranking_empty_mean_is_zero():
    assert margin_ranking(torch.zeros(0), torch.zeros(0), torch.ones(0)).item() == 0.0


# ------------------------------------------------------------------- shared conventions and stability

LOSS_CASES = [
    ("ranknet", {}),
    ("ranknet", {"include_ties": True, "sigma": 2.0}),
    ("ranknet_matrix", {}),
    ("lambdarank", {}),
    ("lambdarank", {"k": 2, "gain": "linear"}),
    *[("lambdaloss", {"weighting": w}) for w in LAMBDALOSS_WEIGHTINGS],
    ("lambdaloss", {"weighting": "ndcg_loss2pp", "k": 3}),
    ("pairwise_hinge", {}),
    ("pairwise_hinge", {"weight_by_label_diff": True}),
]


@pytest.mark.parametrize("name, hp", LOSS_CASES)
def test_masking_equals_deleting_and_none_sums_to_sum(name, hp):
    scores, labels, mask = random_batch(batch=3, length=6, seed=14, p_pad=0.0)
    mask[1, 2] = False
    scores[1, 2] = float("nan")  # a padded score never leaks
    labels[1, 2] = float("nan")
    loss = get(name, reduction="none", **hp)
    masked = loss(scores, labels, mask)
    keep = [0, 1, 3, 4, 5]
    deleted = loss(scores[1:2, keep], labels[1:2, keep], None)
    torch.testing.assert_close(masked[1:2], deleted, atol=1e-10, rtol=1e-10)
    total = get(name, reduction="sum", **hp)(scores, labels, mask)
    torch.testing.assert_close(masked.sum(), total, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name, hp", LOSS_CASES)
def test_extreme_and_degenerate_lists_stay_finite(name, hp):
    scores = torch.tensor(
        [[1e4, -1e4, 0.0, 5e3], [0.3, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [9.0, 8.0, 7.0, 6.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    labels = torch.tensor([[0.0, 3.0, 1.0, 2.0], [2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]],
                          dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, False, False, False], [True] * 4, [False] * 4])
    loss = get(name, **hp)
    value = loss(scores, labels, mask)
    per_list = get(name, reduction="none", **hp)(scores, labels, mask)
    assert torch.isfinite(value) and torch.isfinite(per_list).all()
    value.backward()
    assert torch.isfinite(scores.grad).all()
    # a one-document list and an all-padding list give 0 and no gradient
    assert per_list[1].item() == 0.0 and per_list[3].item() == 0.0
    assert (scores.grad[1] == 0).all() and (scores.grad[3] == 0).all()
    # nor do they dilute the mean; the all-equal list holds pairs only with ties or all-pairs schemes
    tied_pairs = hp.get("include_ties", False) or hp.get("weighting") in ("ndcg_loss1", "arp_loss1")
    expected_lists = 2 if tied_pairs else 1
    assert value.item() == pytest.approx(per_list.sum().item() / expected_lists, rel=1e-12)


@pytest.mark.parametrize("name, hp", LOSS_CASES)
def test_leading_batch_dimensions(name, hp):
    scores, labels, mask = random_batch(batch=6, length=5, seed=15)
    loss = get(name, reduction="none", **hp)
    flat = loss(scores, labels, mask)
    nested = loss(scores.view(2, 3, 5), labels.view(2, 3, 5), mask.view(2, 3, 5))
    assert nested.shape == (2, 3)
    torch.testing.assert_close(nested.flatten(), flat)
    single = loss(scores[2], labels[2], mask[2])
    assert single.shape == ()
    torch.testing.assert_close(single, flat[2])


@pytest.mark.parametrize("name, hp", LOSS_CASES)
def test_gradcheck_float64(name, hp):
    scores, labels, mask = random_batch(batch=2, length=5, seed=16)
    scores.requires_grad_()
    loss = get(name, reduction="sum", **hp)
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, mask), (scores,))


@pytest.mark.parametrize("name, hp", LOSS_CASES)
@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (2, 0, 4), (0,)])
def test_empty_inputs_give_zero(name, hp, shape):
    scores = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(shape, dtype=torch.float64)
    assert get(name, reduction="none", **hp)(scores, labels).shape == shape[:-1]
    loss = get(name, **hp)(scores, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert scores.grad is None or (scores.grad == 0).all()


def test_registry_names_kinds_and_hyperparameters():
    assert {"ranknet", "ranknet_matrix", "lambdarank", "lambdaloss", "pairwise_hinge"} <= set(names("list"))
    assert "margin_ranking" in names("embedding")
    assert hyperparameters("lambdaloss")["weighting"] == "ndcg_loss2"
    assert hyperparameters("ranknet")["include_ties"] is False


# ------------------------------------------------------------------------------------------ errors

BAD_CALLS = [
    (lambda: ranknet_loss(torch.zeros(2, 3), torch.zeros(2, 4)), "labels shape"),
    (lambda: ranknet_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3)), "mask must have dtype torch.bool"),
    (lambda: ranknet_loss(torch.zeros(1, 2), torch.tensor([[float("nan"), 0.0]])), "labels must be finite"),
    (lambda: ranknet_loss(torch.zeros(1, 2), torch.zeros(1, 2), sigma=0.0), "sigma must be a finite number > 0, got 0.0"),
    (lambda: ranknet_loss(torch.zeros(1, 2), torch.zeros(1, 2), reduction="avg"), "reduction must be one of"),
    (lambda: ranknet_matrix_loss(torch.zeros(1, 2), torch.zeros(1, 2), normalize="queries"), "normalize must be one of"),
    (lambda: ranknet_loss(torch.zeros(1, 2), torch.zeros(1, 2), include_ties=1), "include_ties must be True or False"),
    (lambda: lambdarank_loss(torch.zeros(1, 2), torch.zeros(1, 2), k=0), "k must be a positive int or None, got 0"),
    (lambda: lambdarank_loss(torch.zeros(1, 2), torch.zeros(1, 2), gain="log"), "gain must be one of"),
    (lambda: lambdaloss(torch.zeros(1, 2), torch.zeros(1, 2), weighting="ndcg"), "weighting must be one of"),
    (lambda: lambdaloss(torch.zeros(1, 2), torch.zeros(1, 2), mu=-1.0), "mu must be a finite number >= 0, got -1.0"),
    (lambda: lambdaloss(torch.zeros(1, 2), torch.zeros(1, 2), eps=1.0), r"eps must be a number in \[0, 1\), got 1.0"),
    (lambda: pairwise_hinge_loss(torch.zeros(1, 2), torch.zeros(1, 2), margin=float("inf")), "margin must be a finite number"),
    (lambda: ranknet_pair_loss(torch.zeros(2), torch.tensor([0.0, 2.0])), r"targets must be probabilities in \[0, 1\]"),
    (lambda: ranknet_pair_loss(torch.zeros(2), torch.zeros(3)), "targets shape"),
    (lambda: ranknet_pair_loss(torch.zeros(2), torch.zeros(2), weights=torch.tensor([1.0, -1.0])), "weights must be non-negative"),
    (lambda: ranknet_pair_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2)), "score_diffs must be a floating-point"),
    (lambda: get("lambdaloss", weighting="ndcg3"), "weighting must be one of"),
    (lambda: get("ranknet", sigma=-1), "sigma must be a finite number > 0, got -1"),
]


@pytest.mark.parametrize("call, message", BAD_CALLS)
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------ fused kernel


def test_rank_order_is_sort_order():
    from ltrkit.losses.pairwise import _rank_order
    from ltrkit.metrics.ranking import sort_order

    scores, _, mask = random_batch(batch=6, length=11, seed=30, score_ties=True)
    assert torch.equal(_rank_order(scores, mask), sort_order(scores, mask))
    # a real -inf score and padding before it: the single sort would tie them; sort_order decides
    scores[0, 5], mask[0, 2], mask[0, 5] = -math.inf, False, True
    scores[1, 3] = math.nan
    assert torch.equal(_rank_order(scores, mask), sort_order(scores, mask))


def test_lambdaloss_clamp_is_decided_per_pair_not_per_batch():
    # one list has a pair past the eps clamp, the others none: each list's value and gradient
    # are those it has alone (where no pair can reach the clamp, the clamp is skipped)
    scores, labels, mask = random_batch(batch=4, length=7, seed=31)
    scores[2, :2] = torch.tensor([-40.0, 40.0], dtype=scores.dtype)
    labels[2, :2] = torch.tensor([3.0, 0.0], dtype=labels.dtype)
    mask[2, :2] = True
    scores.requires_grad_()
    kw = dict(weighting="ndcg_loss2pp", eps=1e-10, reduction="none")
    together = lambdaloss(scores, labels, mask, **kw)
    grad, = torch.autograd.grad(together.sum(), scores)
    for b in range(4):
        leaf = scores.detach()[b : b + 1].clone().requires_grad_()
        alone = lambdaloss(leaf, labels[b : b + 1], mask[b : b + 1], **kw)
        alone.sum().backward()
        torch.testing.assert_close(together[b : b + 1], alone, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(grad[b : b + 1], leaf.grad, atol=1e-12, rtol=1e-12)
    clamped = lambdaloss(scores.detach()[2:3], labels[2:3], mask[2:3], weighting="ndcg_loss2pp", reduction="none")
    assert together[2] < clamped[0]  # the clamp took effect on that list
