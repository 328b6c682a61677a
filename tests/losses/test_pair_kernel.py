"""The numba fast path of the fused pair kernel against the torch path, a brute-force pair loop
differentiated by autograd, finite differences, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from ltrkit.losses import _pair_numba
from ltrkit.losses._pairwise_kernels import LambdaFunction, lambda_value_and_lambdas
from ltrkit.losses.pairwise import _pairs_touching_top, lambdaloss, lambdarank_loss, ranknet_loss

# (signs_only, discounts?, rank_gaps?): RankNet, ARP-Loss2, LambdaRank, NDCG-Loss2, NDCG-Loss2++
WEIGHTINGS = {
    "signs": (True, False, False),
    "uniform": (False, False, False),
    "discounts": (False, True, False),
    "rank_gaps": (False, False, True),
    "both": (False, True, True),
}


def batch_with_edge_cases(length: int, *, seed: int, dtype: torch.dtype, padding_last: bool):
    """Scores with ties, labels with ties, padded lists of every length 0..length (one list with
    all labels equal, one list of length 1 and one of length 2 among them), and position vectors."""
    gen = torch.Generator().manual_seed(seed)
    batch = length + 2
    scores = (torch.round(torch.randn(batch, length, generator=gen, dtype=torch.float64) * 2) / 2).to(dtype)
    labels = torch.randint(0, 4, (batch, length), generator=gen).to(dtype)
    lengths = torch.arange(batch) % (length + 1)
    if padding_last:
        mask = torch.arange(length)[None] < lengths[:, None]
    else:
        mask = torch.rand(batch, length, generator=gen) > 0.3
    labels[-1] = 2.0  # every label equal: no pair
    mask[-1] = True
    valid = mask.to(dtype)
    gains = ((2.0**labels - 1.0) / 7.0) * valid
    discounts = 1.0 / torch.log2(torch.arange(length, dtype=dtype) + 2.0)
    discounts[length // 2:] = 0.0  # truncated at k = length // 2
    rank_gaps = torch.rand(length, generator=gen, dtype=torch.float64).to(dtype)
    scores = scores.masked_fill(~mask, 123.0)  # padding holds any finite value
    return scores, gains, valid, discounts, rank_gaps


def kernel_args(weighting: str, discounts: torch.Tensor, rank_gaps: torch.Tensor):
    signs_only, with_discounts, with_gaps = WEIGHTINGS[weighting]
    return dict(
        signs_only=signs_only, discounts=discounts if with_discounts else None, rank_gaps=rank_gaps if with_gaps else None
    )


def brute_force(scores, gains, valid, *, sigma, top, signs_only, discounts, rank_gaps, max_cost, scale):
    """Value and autograd lambdas from an explicit double loop over the pairs (float64)."""
    s = scores.detach().double().requires_grad_()
    values = []
    for b in range(s.shape[0]):
        total = s.new_zeros(())
        for i in range(min(top, s.shape[1])):
            for j in range(i + 1, s.shape[1]):
                if valid[b, i] == 0 or valid[b, j] == 0:
                    continue
                gap = float(gains[b, j] - gains[b, i])
                if signs_only:
                    weight = math.copysign(1.0, gap) if gap != 0 else 0.0
                else:
                    position = 1.0 if discounts is None and rank_gaps is None else 0.0
                    if discounts is not None:
                        position += abs(float(discounts[i] - discounts[j]))
                    if rank_gaps is not None:
                        position += float(rank_gaps[j - i])
                    weight = gap * position
                if weight == 0.0:
                    continue
                z = math.copysign(1.0, weight) * sigma * (s[b, i] - s[b, j])
                cost = torch.nn.functional.softplus(z)
                if max_cost is not None:
                    cost = torch.clamp(cost, max=max_cost)
                total = total + abs(weight) * cost
        values.append(total * scale)
    value = torch.stack(values)
    (lambdas,) = torch.autograd.grad(value.sum(), s, allow_unused=False) if value.requires_grad else (torch.zeros_like(s),)
    return value.detach(), lambdas


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
@pytest.mark.parametrize("padding_last", [True, False])
def test_numba_matches_the_pair_loop_and_autograd(weighting, padding_last):
    scores, gains, valid, discounts, rank_gaps = batch_with_edge_cases(7, seed=3, dtype=torch.float64, padding_last=padding_last)
    kw = dict(sigma=1.7, **kernel_args(weighting, discounts, rank_gaps))
    for top, max_cost, scale in ((7, None, 1.0), (3, None, 1.0 / math.log(2.0)), (7, 0.9, 1.0), (0, None, 1.0)):
        value, lambdas = _pair_numba.pair_value_and_lambdas(scores, gains, valid, top=top, max_cost=max_cost, scale=scale, **kw)
        expected_value, expected_lambdas = brute_force(scores, gains, valid, top=top, max_cost=max_cost, scale=scale, **kw)
        torch.testing.assert_close(value, expected_value, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(lambdas, expected_lambdas, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_numba_matches_the_torch_path(weighting, dtype):
    tolerance = dict(atol=2e-5, rtol=2e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    for padding_last in (True, False):
        scores, gains, valid, discounts, rank_gaps = batch_with_edge_cases(11, seed=8, dtype=dtype, padding_last=padding_last)
        kw = dict(sigma=0.8, **kernel_args(weighting, discounts, rank_gaps))
        for top, max_cost in ((11, None), (4, None), (11, 1.5)):
            fast = lambda_value_and_lambdas(scores, gains, valid, top=top, max_cost=max_cost, scale=1.3, **kw)
            # small torch blocks: the chunk boundaries fall inside lists
            slow = lambda_value_and_lambdas(scores, gains, valid, top=top, max_cost=max_cost, scale=1.3, backend="torch",
                                            block_elements=37, **kw)
            for ours, theirs in zip(fast, slow):
                assert ours.dtype == dtype
                torch.testing.assert_close(ours, theirs, **tolerance)


def test_float32_lists_of_training_size_match_the_torch_path():
    gen = torch.Generator().manual_seed(4)
    scores = 3 * torch.randn(16, 240, generator=gen)
    labels = torch.randint(0, 5, (16, 240), generator=gen).float()
    mask = torch.arange(240)[None] < torch.randint(0, 241, (16, 1), generator=gen)
    gains = (2.0**labels - 1.0) * mask / 31.0
    valid = mask.float()
    discounts = 1.0 / torch.log2(torch.arange(240.0) + 2.0)
    rank_gaps = torch.cat([torch.ones(1), discounts]).diff().abs()[:240] * 10.0
    kw = dict(sigma=1.0, top=240, discounts=discounts, rank_gaps=rank_gaps, scale=1.0 / math.log(2.0))
    fast = _pair_numba.pair_value_and_lambdas(scores, gains, valid, **kw)  # "auto" sends this size to torch
    slow = lambda_value_and_lambdas(scores, gains, valid, backend="torch", **kw)
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighting", ["signs", "both"])
def test_lambdas_pass_finite_differences(weighting):
    scores, gains, valid, discounts, rank_gaps = batch_with_edge_cases(6, seed=11, dtype=torch.float64, padding_last=False)
    scores = (scores * 0.37).requires_grad_()  # break score ties: the cost is smooth away from them anyway
    kernel = lambda s: _pair_numba.pair_value_and_lambdas(  # noqa: E731
        s, gains, valid, sigma=1.3, top=4, scale=0.7, **kernel_args(weighting, discounts, rank_gaps)
    )
    assert torch.autograd.gradcheck(lambda s: LambdaFunction.apply(s, kernel), (scores,))


def test_large_score_gaps_stay_finite_and_exact():
    # a spread of 1600 (exp per pair) and one of 80 (the ratio of per-document exponentials)
    scores = torch.tensor([[800.0, -800.0, 0.0, 40.0, -40.0], [40.0, -40.0, 0.0, 20.0, -20.0]], dtype=torch.float64)
    gains = torch.tensor([[0.0, 1.0, 0.5, 0.25, 0.75]] * 2, dtype=torch.float64)
    valid = torch.ones_like(scores)
    value, lambdas = _pair_numba.pair_value_and_lambdas(scores, gains, valid, sigma=1.0, top=5)
    expected_value, expected_lambdas = brute_force(
        scores, gains, valid, sigma=1.0, top=5, signs_only=False, discounts=None, rank_gaps=None, max_cost=None, scale=1.0
    )
    assert torch.isfinite(value).all() and torch.isfinite(lambdas).all()
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(lambdas, expected_lambdas, rtol=1e-10, atol=1e-300)


def test_same_result_for_any_thread_count():
    scores, gains, valid, discounts, rank_gaps = batch_with_edge_cases(30, seed=2, dtype=torch.float32, padding_last=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_pair_numba.pair_value_and_lambdas(scores, gains, valid, sigma=1.0, top=30, discounts=discounts))
    finally:
        torch.set_num_threads(before)
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


def test_bad_input_is_refused():
    scores = torch.zeros(2, 4)
    good = dict(gains=torch.zeros(2, 4), valid=torch.ones(2, 4), sigma=1.0, top=4)
    with pytest.raises(ValueError, match="shape of the scores"):
        _pair_numba.pair_value_and_lambdas(scores, **{**good, "gains": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="shape of the scores"):
        _pair_numba.pair_value_and_lambdas(scores, **{**good, "valid": torch.ones(3, 4)})
    with pytest.raises(ValueError, match="top must lie"):
        _pair_numba.pair_value_and_lambdas(scores, **{**good, "top": 5})
    with pytest.raises(ValueError, match="discounts must hold"):
        _pair_numba.pair_value_and_lambdas(scores, **good, discounts=torch.ones(3))
    with pytest.raises(ValueError, match="rank_gaps must hold"):
        _pair_numba.pair_value_and_lambdas(scores, **good, rank_gaps=torch.ones(2))
    with pytest.raises(ValueError, match="backend"):
        lambda_value_and_lambdas(scores, **good, backend="cuda")


def test_half_precision_and_non_cpu_keep_the_torch_path():
    assert _pair_numba.applies(torch.zeros(1, 2)) and _pair_numba.applies(torch.zeros(1, 2, dtype=torch.float64))
    assert not _pair_numba.applies(torch.zeros(1, 2, dtype=torch.bfloat16))
    assert not _pair_numba.applies(torch.zeros(1, 2, device="meta"))


@pytest.mark.parametrize(
    "loss",
    [
        lambda s, l, m: ranknet_loss(s, l, m, reduction="none", sigma=1.2),
        lambda s, l, m: ranknet_loss(s, l, m, reduction="none", k=3),
        lambda s, l, m: lambdarank_loss(s, l, m, reduction="none", k=4),
        lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="ndcg_loss2pp", eps=1e-3),
        lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="ndcg_loss2", k=5),
        lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="arp_loss2"),
    ],
    ids=["ranknet", "ranknet_k", "lambdarank_k", "ndcg_loss2pp_eps", "ndcg_loss2_k", "arp_loss2"],
)
def test_losses_equal_their_torch_path(loss, monkeypatch):
    gen = torch.Generator().manual_seed(9)
    scores = torch.randn(6, 9, generator=gen).requires_grad_()
    labels = torch.randint(0, 3, (6, 9), generator=gen).float()
    mask = torch.rand(6, 9, generator=gen) > 0.2
    fast = loss(scores, labels, mask)
    (fast_grad,) = torch.autograd.grad(fast.sum(), scores)
    monkeypatch.setattr(_pair_numba, "applies", lambda scores: False)
    slow = loss(scores, labels, mask)
    (slow_grad,) = torch.autograd.grad(slow.sum(), scores)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_grad, slow_grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("top", [0, 1, 4, 9])
def test_loop_pair_count_matches_the_sorted_count(top, monkeypatch):
    gen = torch.Generator().manual_seed(top)
    labels = torch.randint(0, 3, (12, 9), generator=gen).double()
    mask = torch.rand(12, 9, generator=gen) > 0.3
    mask[0] = False  # an empty list
    mask[1, 1:] = False  # one document
    labels[2] = 1.0  # all labels equal
    counted = _pair_numba.count_pairs(labels, mask, top)
    assert torch.equal(_pairs_touching_top(labels, mask, top, include_ties=False), counted)  # the loop count serves
    monkeypatch.setattr(_pair_numba, "applies", lambda tensor: False)
    expected = _pairs_touching_top(labels, mask, top, include_ties=False)  # the sort-based count
    assert counted.dtype == torch.int64
    assert torch.equal(counted, expected)
    brute = [
        sum(1 for i in range(min(top, 9)) for j in range(i + 1, 9) if mask[b, i] and mask[b, j] and labels[b, i] != labels[b, j])
        for b in range(12)
    ]
    assert counted.tolist() == brute
    with pytest.raises(ValueError, match="top must lie"):
        _pair_numba.count_pairs(labels, mask, 10)
    with pytest.raises(ValueError, match="shape"):
        _pair_numba.count_pairs(labels, mask[:, :8], top)
