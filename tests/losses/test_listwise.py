"""Listwise losses against loop references, PyTorch's cross-entropy and their limiting metrics."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ltrkit.losses import get
from ltrkit.losses._listwise_neuralsort import sinkhorn_kernel, sinkhorn_scalings, sinkhorn_weighted_sum, sum_abs_diff
from ltrkit.losses.listwise import (
    approx_ndcg_loss,
    kl_div_loss,
    listmle_loss,
    listnet_loss,
    neural_ndcg_loss,
    neural_sort,
    softmax_loss,
)

_spec = importlib.util.spec_from_file_location("reference_listwise", Path(__file__).with_name("reference_listwise.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def random_batch(batch=4, length=7, *, seed=0, levels=5, p_pad=0.3, dtype=torch.float64):
    """Random padded batch with at least one real document per list and distinct scores."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, length, generator=gen, dtype=dtype)
    labels = torch.randint(0, levels, (batch, length), generator=gen).to(dtype)
    mask = torch.rand(batch, length, generator=gen) > p_pad
    mask[:, 0] |= ~mask.any(dim=-1)
    return scores, labels, mask


def per_list_reference(scores, labels, mask, fn):
    """Values [B] and gradient [B, L] of a one-list reference applied to each list's real part."""
    leaf = scores.detach().clone().requires_grad_(True)
    values = []
    for b in range(scores.shape[0]):
        idx = mask[b].nonzero().flatten()
        values.append(fn(leaf[b, idx], labels[b, idx]))
    values = torch.stack(values)
    values.sum().backward()
    return values.detach(), leaf.grad


def values_and_grad(fn, scores, labels, mask, **kw):
    leaf = scores.detach().clone().requires_grad_(True)
    out = fn(leaf, labels, mask, reduction="none", **kw)
    out.sum().backward()
    return out.detach(), leaf.grad


# ------------------------------------------------------------------------------------- ListNet


@pytest.mark.parametrize("transform", ["softmax", "sum", "exp2"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_listnet_matches_loop_reference(transform, temperature):
    scores, labels, mask = random_batch(seed=1)
    got, got_grad = values_and_grad(listnet_loss, scores, labels, mask, temperature=temperature, label_transform=transform)
    want, want_grad = per_list_reference(scores, labels, mask, lambda s, y: ref.listnet(s, y, transform, temperature))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12)


def test_listnet_equals_cross_entropy_with_soft_targets():
    scores, labels, _ = random_batch(batch=6, length=9, seed=2)
    target = torch.softmax(labels, dim=-1)
    want = F.cross_entropy(scores / 0.7, target, reduction="none")
    got = listnet_loss(scores, labels, temperature=0.7, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(listnet_loss(scores, labels, temperature=0.7), want.mean(), rtol=1e-12, atol=1e-12)


def test_listnet_sum_transform_without_relevance_gives_zero():
    scores = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[0.0, 0, 0, 0], [1, 0, 2, 0]], dtype=torch.float64)
    out = listnet_loss(scores, labels, label_transform="sum", reduction="none")
    assert out[0] == 0 and out[1] > 0
    (grad,) = torch.autograd.grad(out.sum(), scores)
    assert torch.all(grad[0] == 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": float("nan")}, "temperature must be"),
        ({"label_transform": "log"}, r"label_transform must be one of \['softmax', 'sum', 'exp2'\], got 'log'"),
        ({"reduction": "avg"}, "reduction must be one of"),
    ],
)
def test_listnet_bad_hyperparameters(kwargs, message):
    scores, labels, mask = random_batch()
    with pytest.raises(ValueError, match=message):
        listnet_loss(scores, labels, mask, **kwargs)
    with pytest.raises(ValueError, match=message):
        get("listnet", **kwargs)


def test_listnet_negative_labels_rejected_for_sum_transform():
    with pytest.raises(ValueError, match=r"labels must be >= 0 .* label_transform='sum'"):
        listnet_loss(torch.zeros(1, 2), torch.tensor([[-1.0, 1.0]]), label_transform="sum")


# ------------------------------------------------------------------------------- KL divergence


def label_distribution(labels):
    total = labels.sum(dim=-1, keepdim=True)
    return labels / torch.where(total > 0, total, torch.ones_like(total))


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none"])
def test_kl_div_equals_torch_kl_div_loss_on_unpadded_lists(reduction):
    scores, labels, _ = random_batch(batch=6, length=9, seed=20)
    labels[2] = 0.0  # no label distribution: a zero target row, as torch sees it
    theirs = torch.nn.KLDivLoss(reduction="batchmean" if reduction == "batchmean" else "none")
    leaf = scores.clone().requires_grad_(True)
    want = theirs(F.log_softmax(leaf, dim=-1), label_distribution(labels))
    if reduction == "none":
        want = want.sum(dim=-1)
    elif reduction == "sum":
        want = want.sum()
    (want_grad,) = torch.autograd.grad(want.sum(), leaf)
    got, got_grad = values_and_grad(lambda *a, **k: kl_div_loss(*a, **{**k, "reduction": reduction}), scores, labels, None)
    torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12)
    module = get("kl_div", reduction=reduction)
    torch.testing.assert_close(module(scores, labels), want.detach(), rtol=1e-12, atol=1e-12)


def test_kl_div_padding_is_deleted_and_mean_drops_lists_without_label_distribution():
    scores, labels, mask = random_batch(batch=6, length=9, seed=21)
    labels[1] = 0.0
    mask[4] = False
    got = kl_div_loss(scores, labels, mask, reduction="none")
    theirs = torch.nn.KLDivLoss(reduction="sum")
    for b in range(6):
        real = mask[b]
        want = theirs(F.log_softmax(scores[b, real], dim=-1), label_distribution(labels[b, real])) if real.any() else 0.0
        torch.testing.assert_close(got[b], torch.as_tensor(want, dtype=got.dtype), rtol=1e-12, atol=1e-12)
    assert got[1] == 0 and got[4] == 0
    torch.testing.assert_close(kl_div_loss(scores, labels, mask), got.sum() / 5)  # list 4 has no real document
    torch.testing.assert_close(kl_div_loss(scores, labels, mask, reduction="mean"), got.sum() / 4)


def test_kl_div_is_listnet_sum_minus_the_label_entropy():
    scores, labels, mask = random_batch(seed=22)
    target = label_distribution(labels * mask)
    entropy = -torch.xlogy(target, target).sum(dim=-1)
    got, got_grad = values_and_grad(kl_div_loss, scores, labels, mask)
    want, want_grad = values_and_grad(listnet_loss, scores, labels, mask, label_transform="sum")
    torch.testing.assert_close(got, want - entropy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ([[1.0, 0.0]], {"reduction": "avg"}, r"reduction must be one of \['batchmean', 'mean', 'sum', 'none'\], got 'avg'"),
        ([[-1.0, 1.0]], {}, r"labels must be >= 0 at real positions for kl_div_loss"),
    ],
)
def test_kl_div_bad_input(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kl_div_loss(torch.zeros(1, 2), torch.tensor(labels), **kwargs)


# ------------------------------------------------------------------------------------- Softmax


def test_softmax_loss_matches_reference_with_weights():
    scores, labels, mask = random_batch(seed=3)
    weights = torch.rand(scores.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    got, got_grad = values_and_grad(softmax_loss, scores, labels, mask, weights=weights)
    leaf = scores.clone().requires_grad_(True)
    want = []
    for b in range(scores.shape[0]):
        idx = mask[b].nonzero().flatten()
        want.append(ref.softmax_ce(leaf[b, idx], labels[b, idx], weights[b, idx]))
    torch.stack(want).sum().backward()
    torch.testing.assert_close(got, torch.stack(want).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, leaf.grad, rtol=1e-10, atol=1e-12)


def test_softmax_loss_is_label_sum_times_normalised_cross_entropy():
    # TF-Ranking: cross-entropy with target y / sum(y), weighted by sum(y)
    scores, labels, _ = random_batch(batch=5, length=6, seed=4)
    labels[0] = 0.0
    label_sum = labels.sum(dim=-1)
    target = labels / label_sum.clamp(min=1e-300).unsqueeze(-1)
    want = F.cross_entropy(scores, target, reduction="none") * label_sum
    torch.testing.assert_close(softmax_loss(scores, labels, reduction="none"), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "weights, message",
    [
        (torch.ones(2, 3), r"weights must be a tensor of shape \(2, 4\), got \(2, 3\)"),
        (-torch.ones(2, 4), "weights must be finite and >= 0"),
        (torch.full((2, 4), float("nan")), "weights must be finite and >= 0"),
    ],
)
def test_softmax_loss_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        softmax_loss(torch.zeros(2, 4), torch.ones(2, 4), weights=weights)


# ------------------------------------------------------------------------------------- ListMLE


def test_listmle_matches_plackett_luce_for_distinct_labels():
    gen = torch.Generator().manual_seed(5)
    batch, length = 4, 6
    scores = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    labels = torch.stack([torch.randperm(length, generator=gen) for _ in range(batch)]).double()
    mask = torch.rand(batch, length, generator=gen) > 0.3
    mask[:, 0] = True

    def reference(s, y):
        order = sorted(range(len(y)), key=lambda i: -float(y[i]))
        return ref.plackett_luce_nll(s, order)

    want, want_grad = per_list_reference(scores, labels, mask, reference)
    for generator in (None, torch.Generator().manual_seed(0)):
        got, got_grad = values_and_grad(listmle_loss, scores, labels, mask, generator=generator)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12)


def _consistent_orders(labels):
    """Every order of the documents that sorts the labels descending (ties in any order)."""
    n = len(labels)
    return [p for p in itertools.permutations(range(n)) if all(labels[p[t]] >= labels[p[t + 1]] for t in range(n - 1))]


def test_listmle_tie_break_is_random_from_the_generator_only():
    scores = torch.tensor([[0.3, -1.2, 0.8, 2.0, -0.4]], dtype=torch.float64)
    labels = torch.tensor([[1.0, 2.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    candidates = {
        order: float(ref.plackett_luce_nll(scores[0], order)) for order in _consistent_orders(labels[0].tolist())
    }
    assert len(set(round(v, 12) for v in candidates.values())) == 6
    seen = set()
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    for seed in range(60):
        value = float(listmle_loss(scores, labels, generator=torch.Generator().manual_seed(seed)))
        again = float(listmle_loss(scores, labels, generator=torch.Generator().manual_seed(seed)))
        assert value == again
        match = [order for order, v in candidates.items() if abs(v - value) < 1e-12]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 6  # all 3! tie orders occur
    assert torch.equal(torch.get_rng_state(), global_state)
    # no generator: ties keep input order (documents 0, 2, 4 among the label-1 ties)
    assert float(listmle_loss(scores, labels)) == pytest.approx(candidates[(1, 0, 2, 4, 3)], abs=1e-12)


def test_listmle_module_seed_reproducible_and_varies_per_call():
    scores = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.zeros(3, 8, dtype=torch.float64)
    labels[:, :2] = 1.0
    a, b = get("listmle", seed=7), get("listmle", seed=7)
    first = [float(a(scores, labels)) for _ in range(4)]
    assert first == [float(b(scores, labels)) for _ in range(4)]
    assert len(set(first)) > 1
    fixed = get("listmle", tie_break="input_order")
    assert float(fixed(scores, labels)) == float(listmle_loss(scores, labels))


def test_listmle_module_state_dict_carries_the_tie_break_generator():
    scores = torch.randn(3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.zeros(3, 8, dtype=torch.float64)
    labels[:, :4] = 1.0
    interrupted = get("listmle", seed=3)
    [interrupted(scores, labels) for _ in range(2)]
    resumed = get("listmle", seed=99)
    resumed.load_state_dict(interrupted.state_dict())
    assert [float(resumed(scores, labels)) for _ in range(3)] == [float(interrupted(scores, labels)) for _ in range(3)]
    with pytest.raises(ValueError, match="does not match this module's tie_break"):
        get("listmle", tie_break="input_order").load_state_dict(interrupted.state_dict())


def test_listmle_bad_generator():
    with pytest.raises(ValueError, match="generator must be a torch.Generator or None, got int"):
        listmle_loss(torch.zeros(1, 2), torch.zeros(1, 2), generator=3)
    with pytest.raises(ValueError, match=r"tie_break must be one of \['random', 'input_order'\]"):
        get("listmle", tie_break="first")


# ---------------------------------------------------------------------------------- ApproxNDCG


@pytest.mark.parametrize("gain", ["exp2", "linear"])
@pytest.mark.parametrize("alpha", [1.0, 5.0])
def test_approx_ndcg_matches_loop_reference(gain, alpha):
    scores, labels, mask = random_batch(seed=6)
    labels[1] = 0.0  # a list without relevance: loss 0
    got, got_grad = values_and_grad(approx_ndcg_loss, scores, labels, mask, alpha=alpha, gain=gain)
    want, want_grad = per_list_reference(scores, labels, mask, lambda s, y: ref.approx_ndcg(s, y, alpha, gain))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-12)
    assert got[1] == 0


def test_approx_ndcg_tends_to_one_minus_ndcg_as_alpha_grows():
    scores, labels, mask = random_batch(batch=6, length=9, seed=7)
    labels[:, 0] = 3.0  # every list has relevance
    want = torch.tensor(
        [
            1.0 - ref.ndcg_of_scores(scores[b, mask[b]].tolist(), labels[b, mask[b]].tolist(), None, "exp2")
            for b in range(scores.shape[0])
        ],
        dtype=torch.float64,
    )
    errors = [
        float((approx_ndcg_loss(scores, labels, mask, alpha=alpha, reduction="none") - want).abs().max())
        for alpha in (1.0, 10.0, 100.0, 1e4)
    ]
    assert errors == sorted(errors, reverse=True)
    gaps = (scores.unsqueeze(-1) - scores.unsqueeze(-2)).abs() + torch.eye(9)
    assert float(gaps.min()) * 1e4 > 50  # sigmoid saturates at alpha = 1e4 for these scores
    assert errors[-1] < 1e-12


def test_approx_ndcg_bad_hyperparameters():
    with pytest.raises(ValueError, match="alpha must be a finite number > 0, got -1"):
        approx_ndcg_loss(torch.zeros(1, 2), torch.zeros(1, 2), alpha=-1)
    with pytest.raises(ValueError, match=r"gain must be one of \['exp2', 'linear'\], got 'log'"):
        approx_ndcg_loss(torch.zeros(1, 2), torch.zeros(1, 2), gain="log")


# ---------------------------------------------------------------------------------- NeuralSort


def test_sum_abs_diff_matches_brute_force_with_ties():
    gen = torch.Generator().manual_seed(8)
    scores = torch.randint(-3, 4, (5, 9), generator=gen).double()
    n = torch.tensor([9, 4, 1, 6, 7])
    mask = torch.arange(9).unsqueeze(0) < n.unsqueeze(1)
    scores = scores.masked_fill(~mask, 0.0)
    got = sum_abs_diff(scores, mask)
    for b in range(5):
        real = scores[b, : n[b]]
        want = (real.unsqueeze(1) - real.unsqueeze(0)).abs().sum(dim=1)
        torch.testing.assert_close(got[b, : n[b]], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_neural_sort_matches_reference_and_hides_padding(tau):
    scores, _, mask = random_batch(batch=3, length=6, seed=9)
    p = neural_sort(scores, mask, temperature=tau)
    for b in range(3):
        idx = mask[b].nonzero().flatten()
        n = len(idx)
        want = ref.neural_sort(scores[b, idx], tau)
        torch.testing.assert_close(p[b, :n][:, idx], want, rtol=1e-12, atol=1e-12)
        assert torch.all(p[b, n:] == 0) and torch.all(p[b][:, ~mask[b]] == 0)
        torch.testing.assert_close(p[b, :n].sum(dim=-1), torch.ones(n, dtype=torch.float64))


def test_sinkhorn_makes_rows_and_columns_sum_to_one_and_matches_reference():
    scores, _, mask = random_batch(batch=3, length=7, seed=10)
    plain = neural_sort(scores, mask, temperature=0.5)
    assert float((plain.sum(dim=-2)[mask] - 1).abs().max()) > 1e-3  # columns were not stochastic
    scaled = neural_sort(scores, mask, temperature=0.5, sinkhorn_iters=500, sinkhorn_tol=1e-10)
    real_ranks = (torch.arange(7) < mask.sum(dim=-1, keepdim=True)).double()
    torch.testing.assert_close(scaled.sum(dim=-1), real_ranks, rtol=0, atol=1e-12)
    torch.testing.assert_close(scaled.sum(dim=-2), mask.double(), rtol=0, atol=1e-9)
    exact_rounds = neural_sort(scores, mask, temperature=0.5, sinkhorn_iters=3, sinkhorn_tol=0.0)
    for b in range(3):
        idx = mask[b].nonzero().flatten()
        n = len(idx)
        want = ref.sinkhorn(ref.neural_sort(scores[b, idx], 0.5), 3)
        torch.testing.assert_close(exact_rounds[b, :n][:, idx], want, rtol=1e-12, atol=1e-12)


def _random_kernel(batch, length, seed):
    gen = torch.Generator().manual_seed(seed)
    kernel = torch.rand(batch, length, length, generator=gen, dtype=torch.float64) + 0.05
    start = torch.rand(batch, length, generator=gen, dtype=torch.float64) + 0.5
    weights = torch.randn(batch, length, length, generator=gen, dtype=torch.float64)
    return kernel, start, weights


@pytest.mark.parametrize("rounds", [0, 1, 5])
def test_sinkhorn_scalings_match_probability_space_loop_and_its_autograd(rounds):
    kernel, start, weights = _random_kernel(3, 5, seed=20)
    leaf = kernel.clone().requires_grad_(True)
    a, b = sinkhorn_scalings(leaf, start, iterations=rounds, tol=0.0)
    got = a.unsqueeze(-1) * leaf * b.unsqueeze(-2)
    (got * weights).sum().backward()
    ref_leaf = kernel.clone().requires_grad_(True)
    want = []
    for i in range(3):
        m = ref_leaf[i] * start[i]
        want.append(ref.sinkhorn(m / m.sum(dim=1, keepdim=True), rounds))
    want = torch.stack(want)
    (want * weights).sum().backward()
    torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("rounds", [0, 4])
def test_sinkhorn_weighted_sum_matches_the_formed_matrix_and_its_autograd(rounds):
    kernel, start, _ = _random_kernel(3, 6, seed=25)
    gen = torch.Generator().manual_seed(26)
    rows, cols = torch.rand(2, 3, 6, generator=gen, dtype=torch.float64)
    leaf = kernel.clone().requires_grad_(True)
    got = sinkhorn_weighted_sum(leaf, start, rows, cols, iterations=rounds, tol=0.0)
    got.backward(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    ref_leaf = kernel.clone().requires_grad_(True)
    want = []
    for i in range(3):
        m = ref_leaf[i] * start[i]
        want.append(rows[i] @ ref.sinkhorn(m / m.sum(dim=1, keepdim=True), rounds) @ cols[i])
    want = torch.stack(want)
    want.backward(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-9, atol=1e-11)


def test_sinkhorn_scalings_gradcheck_both_outputs():
    kernel, start, _ = _random_kernel(2, 4, seed=21)
    kernel.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda k: sinkhorn_scalings(k, start, iterations=3, tol=0.0), (kernel,))


def test_sinkhorn_early_stop_equals_the_rounds_it_ran():
    kernel, start, _ = _random_kernel(2, 6, seed=22)
    a, b = sinkhorn_scalings(kernel, start, iterations=200, tol=1e-5)
    sums = (a.unsqueeze(-1) * kernel * b.unsqueeze(-2)).sum(dim=-2)
    assert float((sums - 1).abs().max()) < 1e-5
    stopped = [r for r in range(200) if torch.equal(sinkhorn_scalings(kernel, start, iterations=r, tol=0.0)[0], a)]
    assert stopped and stopped[0] < 200
    # the tolerance stops before a round: one round fewer would not have met it
    a_prev, b_prev = sinkhorn_scalings(kernel, start, iterations=stopped[0] - 1, tol=0.0)
    prev = (a_prev.unsqueeze(-1) * kernel * b_prev.unsqueeze(-2)).sum(dim=-2)
    assert float((prev - 1).abs().max()) >= 1e-5


def test_sinkhorn_kernel_has_a_one_in_every_row_and_column_and_keeps_the_matrix():
    gen = torch.Generator().manual_seed(23)
    logits = torch.randn(2, 5, 5, generator=gen, dtype=torch.float64) * 50
    logits[0, 1, 2] = -torch.inf
    kernel, start = sinkhorn_kernel(logits.clone())
    assert torch.all(kernel.amax(dim=-1) == 1) and torch.all(kernel.amax(dim=-2) == 1)
    # each row of exp(logits) is a multiple of that row of K diag(start): row normalisation agrees
    rescaled = kernel * start.unsqueeze(-2)
    torch.testing.assert_close(rescaled / rescaled.sum(dim=-1, keepdim=True), logits.softmax(dim=-1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scale, tau", [(1e6, 1e-2), (1e4, 1e-4)])
def test_neural_ndcg_float32_extreme_logits_finite_and_close_to_float64(scale, tau):
    gen = torch.Generator().manual_seed(24)
    # ties at huge scores make logits of ~1e11 in float32: rounding alone would underflow whole
    # columns of exp(logits - rowmax)
    scores = (torch.randn(4, 200, generator=gen) * 3).round() * scale
    labels = torch.randint(0, 5, (4, 200), generator=gen).float()
    mask = torch.arange(200) < torch.tensor([[200], [150], [7], [1]])
    values = {}
    for dtype in (torch.float32, torch.float64):
        leaf = scores.to(dtype).detach().requires_grad_(True)
        loss = neural_ndcg_loss(leaf, labels.to(dtype), mask, temperature=tau, reduction="none")
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(leaf.grad).all()
        values[dtype] = loss.detach().double()
    torch.testing.assert_close(values[torch.float32], values[torch.float64], rtol=0, atol=1e-3)


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("sinkhorn_iters", [0, 4])
def test_neural_ndcg_matches_loop_reference(k, sinkhorn_iters):
    scores, labels, mask = random_batch(seed=11)
    labels[2] = 0.0
    kw = {"temperature": 0.8, "k": k, "sinkhorn_iters": sinkhorn_iters, "sinkhorn_tol": 0.0}
    got, got_grad = values_and_grad(neural_ndcg_loss, scores, labels, mask, **kw)
    want, want_grad = per_list_reference(
        scores, labels, mask, lambda s, y: ref.neural_ndcg(s, y, 0.8, k, "exp2", sinkhorn_iters)
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)
    assert got[2] == 0


@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("gain", ["exp2", "linear"])
def test_neural_ndcg_tends_to_true_ndcg_as_tau_shrinks(k, gain):
    scores, labels, mask = random_batch(batch=5, length=8, seed=12)
    labels[:, 0] = 2.0
    want = torch.tensor(
        [1.0 - ref.ndcg_of_scores(scores[b, mask[b]].tolist(), labels[b, mask[b]].tolist(), k, gain) for b in range(5)],
        dtype=torch.float64,
    )
    errors = [
        float((neural_ndcg_loss(scores, labels, mask, temperature=tau, k=k, gain=gain, reduction="none") - want).abs().max())
        for tau in (1.0, 0.1, 1e-4)
    ]
    assert errors[-1] < 1e-9  # the closest scores are 4e-3 apart: saturated at tau = 1e-4
    assert errors[0] > errors[-1]


def test_neural_ndcg_long_list_float32_is_finite():
    gen = torch.Generator().manual_seed(13)
    scores = (torch.randn(2, 100, generator=gen) * 1e3).requires_grad_(True)
    labels = torch.randint(0, 5, (2, 100), generator=gen).float()
    mask = torch.ones(2, 100, dtype=torch.bool)
    mask[1, 40:] = False
    loss = neural_ndcg_loss(scores, labels, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[1, 40:] == 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, "temperature must be a finite number > 0, got 0"),
        ({"k": 0}, "k must be a positive int or None, got 0"),
        ({"sinkhorn_iters": -1}, "sinkhorn_iters must be an int >= 0, got -1"),
        ({"sinkhorn_iters": 2.5}, "sinkhorn_iters must be an int >= 0, got 2.5"),
        ({"sinkhorn_tol": -1e-3}, "sinkhorn_tol must be a finite number >= 0"),
        ({"gain": "pow"}, "gain must be one of"),
    ],
)
def test_neural_ndcg_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        neural_ndcg_loss(torch.zeros(1, 3), torch.zeros(1, 3), **kwargs)
    with pytest.raises(ValueError, match=message):
        get("neural_ndcg", **kwargs)


# ------------------------------------------------------------------------------------ modules


@pytest.mark.parametrize(
    "name, fn, kw",
    [
        ("listnet", listnet_loss, {"temperature": 0.5, "label_transform": "exp2"}),
        ("softmax", softmax_loss, {"temperature": 2.0}),
        ("approx_ndcg", approx_ndcg_loss, {"alpha": 3.0, "gain": "linear"}),
        ("neural_ndcg", neural_ndcg_loss, {"temperature": 0.5, "k": 4, "sinkhorn_iters": 7}),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_modules_call_the_function(name, fn, kw, reduction):
    scores, labels, mask = random_batch(seed=14)
    module = get(name, reduction=reduction, **kw)
    torch.testing.assert_close(module(scores, labels, mask), fn(scores, labels, mask, reduction=reduction, **kw))


@pytest.mark.parametrize("fn", [listnet_loss, softmax_loss, listmle_loss, approx_ndcg_loss, neural_ndcg_loss])
def test_mean_is_over_lists_with_a_real_document(fn):
    scores, labels, mask = random_batch(batch=5, seed=15)
    mask[3] = False
    per_list = fn(scores, labels, mask, reduction="none")
    assert per_list[3] == 0
    torch.testing.assert_close(fn(scores, labels, mask), per_list.sum() / 4)


def test_listmle_module_without_seed_follows_torch_manual_seed_without_consuming_it():
    scores = torch.randn(2, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.tensor([[1.0, 1, 1, 0, 0, 2], [0.0, 0, 0, 1, 1, 1]], dtype=torch.float64)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        state = torch.get_rng_state()
        loss = get("listmle")
        runs.append([float(loss(scores, labels)) for _ in range(3)])
        assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not advanced
    assert runs[0] == runs[1] and len(set(runs[0])) > 1
