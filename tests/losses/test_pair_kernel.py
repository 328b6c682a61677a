"""The compiled CPU path of the pair losses (:func:`ltrkit.losses._pair_numba.ranked_pair_loss`)
against a brute-force pair loop differentiated by autograd, the torch path of the same losses,
finite differences, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from ltrkit.losses import _pair_numba, pairwise
from ltrkit.losses._pairwise_kernels import LambdaFunction
from ltrkit.losses.pairwise import lambdaloss, lambdarank_loss, ranknet_loss

# (signs_only, discounts?, rank_gaps?): RankNet, ARP-Loss2, LambdaRank, NDCG-Loss2, NDCG-Loss2++
WEIGHTINGS = {
    "signs": (True, False, False),
    "uniform": (False, False, False),
    "discounts": (False, True, False),
    "rank_gaps": (False, False, True),
    "both": (False, True, True),
}


def batch_with_edge_cases(length: int, *, seed: int, dtype: torch.dtype):
    """Scores with ties, labels with ties, padding anywhere, lists of every length 0..length
    (one with all labels equal, one with all labels 0: no IDCG), and position vectors."""
    gen = torch.Generator().manual_seed(seed)
    batch = length + 3
    scores = (torch.round(torch.randn(batch, length, generator=gen, dtype=torch.float64) * 2) / 2).to(dtype)
    labels = torch.randint(0, 4, (batch, length), generator=gen).to(dtype)
    lengths = torch.arange(batch) % (length + 1)
    mask = torch.rand(batch, length, generator=gen).argsort(dim=-1) < lengths[:, None]
    labels[-1] = 2.0  # every label equal: no pair
    mask[-1] = True
    labels[-2] = 0.0  # no relevant document: IDCG 0
    mask[-2] = True
    labels[-3] = -(torch.arange(length) % 2).to(dtype)  # labels 0 and -1: different labels, IDCG <= 0
    mask[-3] = True
    scores = scores.masked_fill(~mask, 123.0)  # padding holds any finite value
    discounts = 1.0 / torch.log2(torch.arange(length, dtype=torch.float64) + 2.0)
    discounts[length // 2:] = 0.0  # truncated at k = length // 2
    rank_gaps = torch.rand(length, generator=gen, dtype=torch.float64)
    return scores, labels, mask, discounts, rank_gaps


def position_args(weighting: str, discounts: torch.Tensor, rank_gaps: torch.Tensor):
    signs_only, with_discounts, with_gaps = WEIGHTINGS[weighting]
    return dict(signs_only=signs_only, discounts=discounts if with_discounts else None, rank_gaps=rank_gaps if with_gaps else None)


def brute_force(scores, labels, mask, *, sigma, top, by_score, gain, k, signs_only, discounts, rank_gaps, max_cost, scale):
    """Value, autograd lambdas and pair counts from explicit loops over each list (float64)."""
    s = scores.detach().double().requires_grad_()
    values, counts = [], []
    for b in range(s.shape[0]):
        real = [j for j in range(s.shape[1]) if mask[b, j]]
        if by_score:  # descending score, ties in input order
            real.sort(key=lambda j: -float(scores[b, j]))
        label = [float(labels[b, j]) for j in real]
        if gain == "labels":
            g, has_idcg = label, True
        else:
            gain_of = (lambda v: 2.0**v - 1.0) if gain == "exp2" else (lambda v: v)
            ideal = sorted(label, reverse=True)[: len(label) if k is None else k]
            idcg = sum(gain_of(v) / math.log2(p + 2.0) for p, v in enumerate(ideal))
            has_idcg = idcg > 0
            g = [gain_of(v) / idcg if has_idcg else 0.0 for v in label]
        total, count = s.new_zeros(()), 0
        for i in range(min(top, len(real))):
            for j in range(i + 1, len(real)):
                count += label[i] != label[j]
                gap = g[j] - g[i]
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
                z = math.copysign(1.0, weight) * sigma * (s[b, real[i]] - s[b, real[j]])
                cost = torch.nn.functional.softplus(z)
                if max_cost is not None:
                    cost = torch.clamp(cost, max=max_cost)
                total = total + abs(weight) * cost
        values.append(total * scale)
        counts.append(count if has_idcg else 0)
    value = torch.stack(values)
    (lambdas,) = torch.autograd.grad(value.sum(), s) if value.requires_grad else (torch.zeros_like(s),)
    return value.detach(), lambdas, torch.tensor(counts)


CASES = [  # (top, by_score, gain, k, max_cost, scale)
    (7, True, "exp2", None, None, 1.0),
    (3, True, "exp2", 3, None, 1.0 / math.log(2.0)),
    (7, True, "linear", 4, 0.9, 1.0),
    (7, False, "labels", None, None, 1.0),
    (2, True, "labels", None, None, 1.3),
    (0, True, "exp2", None, None, 1.0),
]


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_kernel_matches_the_pair_loop_and_autograd(weighting):
    scores, labels, mask, discounts, rank_gaps = batch_with_edge_cases(7, seed=3, dtype=torch.float64)
    for top, by_score, gain, k, max_cost, scale in CASES:
        kw = dict(sigma=1.7, top=top, by_score=by_score, gain=gain, k=k, max_cost=max_cost, scale=scale,
                  **position_args(weighting, discounts, rank_gaps))
        value, lambdas, counts = _pair_numba.ranked_pair_loss(scores, labels, mask, **kw)
        expected_value, expected_lambdas, expected_counts = brute_force(scores, labels, mask, **kw)
        torch.testing.assert_close(value, expected_value, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(lambdas, expected_lambdas, atol=1e-10, rtol=1e-10)
        assert counts.dtype == torch.int64 and counts.tolist() == expected_counts.tolist()


def test_tied_scores_keep_input_order_in_long_lists():
    # 3 distinct scores over 60 documents: the rank order rests on the sort being stable
    gen = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 3, (4, 60), generator=gen).double()
    labels = torch.randint(0, 4, (4, 60), generator=gen).double()
    mask = torch.rand(4, 60, generator=gen) > 0.1
    discounts = 1.0 / torch.log2(torch.arange(60, dtype=torch.float64) + 2.0)
    kw = dict(sigma=1.0, top=10, by_score=True, gain="exp2", k=10, signs_only=False, discounts=discounts, rank_gaps=None,
              max_cost=None, scale=1.0)
    value, lambdas, counts = _pair_numba.ranked_pair_loss(scores, labels, mask, **kw)
    expected_value, expected_lambdas, expected_counts = brute_force(scores, labels, mask, **kw)
    torch.testing.assert_close(value, expected_value, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(lambdas, expected_lambdas, atol=1e-10, rtol=1e-10)
    assert counts.tolist() == expected_counts.tolist()


@pytest.mark.parametrize("weighting", ["signs", "both"])
def test_lambdas_pass_finite_differences(weighting):
    scores, labels, mask, discounts, rank_gaps = batch_with_edge_cases(6, seed=11, dtype=torch.float64)
    scores = (scores * 0.37 + 0.01 * torch.arange(6.0)).requires_grad_()  # no score ties: the rank order is locally constant

    def kernel(s):
        value, lambdas, _ = _pair_numba.ranked_pair_loss(
            s, labels, mask, sigma=1.3, top=4, gain="exp2", scale=0.7, **position_args(weighting, discounts, rank_gaps)
        )
        return value, lambdas

    assert torch.autograd.gradcheck(lambda s: LambdaFunction.apply(s, kernel), (scores,))


LOSSES = {
    "ranknet": lambda s, l, m: ranknet_loss(s, l, m, reduction="none", sigma=1.2),
    "ranknet_k": lambda s, l, m: ranknet_loss(s, l, m, reduction="none", k=3),
    "ranknet_pairs": lambda s, l, m: ranknet_loss(s, l, m, normalize="pairs"),
    "lambdarank": lambda s, l, m: lambdarank_loss(s, l, m, reduction="none"),
    "lambdarank_k_linear": lambda s, l, m: lambdarank_loss(s, l, m, reduction="none", k=4, gain="linear", sigma=0.7),
    "lambdarank_list_pairs": lambda s, l, m: lambdarank_loss(s, l, m, k=5, normalize="list_pairs"),
    "ndcg_loss2pp_eps": lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="ndcg_loss2pp", eps=1e-3),
    "ndcg_loss2_k": lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="ndcg_loss2", k=5),
    "lambdaloss_lambdarank": lambda s, l, m: lambdaloss(s, l, m, reduction="sum", weighting="lambdarank", k=3),
    "arp_loss2": lambda s, l, m: lambdaloss(s, l, m, reduction="none", weighting="arp_loss2", k=6),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_losses_equal_their_torch_path(loss, dtype, monkeypatch):
    gen = torch.Generator().manual_seed(9)
    scores = torch.randn(40, 30, generator=gen, dtype=dtype).requires_grad_()
    labels = torch.randint(0, 4, (40, 30), generator=gen).to(dtype)
    mask = torch.rand(40, 30, generator=gen) > 0.3
    fast = LOSSES[loss](scores, labels, mask)
    (fast_grad,) = torch.autograd.grad(fast.sum(), scores)
    monkeypatch.setattr(_pair_numba, "applies", lambda scores: False)
    slow = LOSSES[loss](scores, labels, mask)
    (slow_grad,) = torch.autograd.grad(slow.sum(), scores)
    tolerance = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    assert fast.dtype == dtype and fast_grad.dtype == dtype
    torch.testing.assert_close(fast, slow, **tolerance)
    torch.testing.assert_close(fast_grad, slow_grad, **tolerance)


def test_training_size_lists_equal_the_torch_path(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    scores = (3 * torch.randn(16, 240, generator=gen)).requires_grad_()
    labels = torch.randint(0, 5, (16, 240), generator=gen).float()
    mask = torch.arange(240)[None] < torch.randint(0, 241, (16, 1), generator=gen)
    results = []
    for compiled in (True, False):
        monkeypatch.setattr(_pair_numba, "applies", lambda scores, compiled=compiled: compiled)
        value = lambdaloss(scores, labels, mask, weighting="ndcg_loss2pp", eps=1e-10)
        results.append((value, *torch.autograd.grad(value, scores)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)


def test_large_score_gaps_stay_finite_and_exact():
    # a spread of 698 (the largest the per-document exponentials serve) and one of 80
    scores = torch.tensor([[349.0, -349.0, 0.0, 40.0, -40.0], [40.0, -40.0, 0.0, 20.0, -20.0]], dtype=torch.float64)
    labels = torch.tensor([[0.0, 3.0, 1.0, 2.0, 2.0]] * 2, dtype=torch.float64)
    mask = torch.ones_like(scores, dtype=torch.bool)
    kw = dict(sigma=1.0, top=5, by_score=True, gain="exp2", k=None, signs_only=False, discounts=None, rank_gaps=None, max_cost=None, scale=1.0)
    value, lambdas, _ = _pair_numba.ranked_pair_loss(scores, labels, mask, **kw)
    expected_value, expected_lambdas, _ = brute_force(scores, labels, mask, **kw)
    assert torch.isfinite(value).all() and torch.isfinite(lambdas).all()
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(lambdas, expected_lambdas, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "spread"])
def test_scores_the_kernel_cannot_serve_take_the_torch_path(bad, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (6, 8), generator=gen).double()
    mask = torch.ones(6, 8, dtype=torch.bool)
    scores[2, 3] = 400.0 if bad == "spread" else bad
    if bad == "spread":
        scores[2, 5] = -400.0
    assert _pair_numba.ranked_pair_loss(scores, labels, mask, sigma=1.0, top=8, gain="exp2") is None
    for loss in (LOSSES["ranknet"], LOSSES["lambdarank"], LOSSES["ndcg_loss2pp_eps"]):
        served = loss(scores, labels, mask)
        monkeypatch.setattr(_pair_numba, "applies", lambda scores: False)
        reference = loss(scores, labels, mask)
        monkeypatch.undo()
        torch.testing.assert_close(served, reference, equal_nan=True)
    # padding is never read: a NaN there changes nothing
    scores[2, 3] = 0.5
    padded = mask.clone()
    padded[4, 6] = False
    nan_padding = scores.clone()
    nan_padding[4, 6] = math.nan
    first = _pair_numba.ranked_pair_loss(scores, labels, padded, sigma=1.0, top=8, gain="exp2")
    second = _pair_numba.ranked_pair_loss(nan_padding, labels, padded, sigma=1.0, top=8, gain="exp2")
    for ours, theirs in zip(first, second):
        assert torch.equal(ours, theirs)


def test_same_result_for_any_thread_count():
    scores, labels, mask, discounts, _ = batch_with_edge_cases(30, seed=2, dtype=torch.float32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_pair_numba.ranked_pair_loss(scores, labels, mask, sigma=1.0, top=30, gain="exp2", discounts=discounts))
            results.append(lambdarank_loss(scores, labels, mask, reduction="none"))
    finally:
        torch.set_num_threads(before)
    for ours, theirs in zip(results[0], results[2]):
        assert torch.equal(ours, theirs)
    assert torch.equal(results[1], results[3])


def test_a_few_long_lists_take_the_torch_path(monkeypatch):
    calls = []
    kernel = _pair_numba.ranked_pair_loss
    monkeypatch.setattr(_pair_numba, "ranked_pair_loss", lambda *args, **kw: calls.append(args[0].shape) or kernel(*args, **kw))
    long = math.isqrt(pairwise._LONG_LIST_PAIRS) + 1  # length * top above the limit
    for batch, length in ((pairwise._FEW_LISTS - 1, long), (pairwise._FEW_LISTS, 50), (1, 50)):
        scores = torch.randn(batch, length)
        ranknet_loss(scores, torch.randint(0, 2, (batch, length)).float())
    assert calls == [(pairwise._FEW_LISTS, 50), (1, 50)]


def test_bad_input_is_refused():
    scores = torch.zeros(2, 4)
    good = dict(labels=torch.zeros(2, 4), mask=torch.ones(2, 4, dtype=torch.bool), sigma=1.0, top=4)
    with pytest.raises(ValueError, match="shape of the scores"):
        _pair_numba.ranked_pair_loss(scores, **{**good, "labels": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="shape of the scores"):
        _pair_numba.ranked_pair_loss(scores, **{**good, "mask": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="top must lie"):
        _pair_numba.ranked_pair_loss(scores, **{**good, "top": 5})
    with pytest.raises(ValueError, match="position vectors"):
        _pair_numba.ranked_pair_loss(scores, **good, discounts=torch.ones(3))
    with pytest.raises(ValueError, match="position vectors"):
        _pair_numba.ranked_pair_loss(scores, **good, rank_gaps=torch.ones(2))


def test_half_precision_and_non_cpu_keep_the_torch_path():
    assert _pair_numba.applies(torch.zeros(1, 2)) and _pair_numba.applies(torch.zeros(1, 2, dtype=torch.float64))
    assert not _pair_numba.applies(torch.zeros(1, 2, dtype=torch.bfloat16))
    assert not _pair_numba.applies(torch.zeros(1, 2, device="meta"))
