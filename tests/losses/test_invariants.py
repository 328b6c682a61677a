"""The invariant battery: properties every registered list loss must have.

Parametrised over ``ltrkit.losses.names(kind="list")`` at collection time, so a loss registered
later is checked with no change here. Each loss is built with its default hyperparameters except
where a default draws random numbers per call (ListMLE's tie-break), which is pinned so that two
calls can be compared.
"""

from __future__ import annotations

import pytest
import torch

from ltrkit.losses import get, names

LIST_LOSSES = names(kind="list")
# defaults that sample on every call, replaced by their deterministic option
DETERMINISTIC = {"listmle": {"tie_break": "input_order"}}


def make(name: str, **hp):
    return get(name, **{**DETERMINISTIC.get(name, {}), **hp})


def real_batch(batch, length, seed, dtype=torch.float64):
    """Scores (distinct) and graded labels 0..4 with no padding."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, length, generator=gen, dtype=dtype)
    labels = torch.randint(0, 5, (batch, length), generator=gen).to(dtype)
    labels[:, 0] = 4.0  # every list has a relevant document and differing labels
    labels[:, 1] = 0.0
    return scores, labels


def insert_padding(scores, labels, n_pad, seed):
    """Interleave ``n_pad`` padded positions per list at random places, with hostile contents."""
    gen = torch.Generator().manual_seed(seed)
    batch, length = scores.shape
    total = length + n_pad
    out_s = torch.empty(batch, total, dtype=scores.dtype)
    out_y = torch.empty(batch, total, dtype=labels.dtype)
    mask = torch.zeros(batch, total, dtype=torch.bool)
    for b in range(batch):
        real = torch.randperm(total, generator=gen)[:length].sort().values
        mask[b, real] = True
        out_s[b] = torch.tensor([1e4, -1e4, 3.0])[torch.randint(0, 3, (total,), generator=gen)].to(scores.dtype)
        out_y[b] = torch.tensor([float("nan"), 7.0, -3.0])[torch.randint(0, 3, (total,), generator=gen)].to(labels.dtype)
        out_s[b, real] = scores[b]
        out_y[b, real] = labels[b]
    return out_s, out_y, mask


def loss_and_grad(loss_fn, scores, labels, mask=None):
    leaf = scores.detach().clone().requires_grad_(True)
    out = loss_fn(leaf, labels, mask)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    return out.detach(), grad


@pytest.mark.parametrize("name", LIST_LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_padding_is_invisible(name, reduction):
    loss_fn = make(name, reduction=reduction)
    for seed in range(3):
        scores, labels = real_batch(3, 6, seed)
        plain, plain_grad = loss_and_grad(loss_fn, scores, labels)
        padded_s, padded_y, mask = insert_padding(scores, labels, 4, seed)
        padded, padded_grad = loss_and_grad(loss_fn, padded_s, padded_y, mask)
        torch.testing.assert_close(padded, plain, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(padded_grad[mask].reshape(3, 6), plain_grad, rtol=1e-9, atol=1e-12)
        assert torch.all(padded_grad[~mask] == 0)


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_non_finite_padded_scores_are_ignored(name):
    loss_fn = make(name, reduction="none")
    scores, labels = real_batch(2, 5, seed=3)
    plain, plain_grad = loss_and_grad(loss_fn, scores, labels)
    padded_s = torch.cat([scores, torch.tensor([[float("nan"), float("inf")], [-float("inf"), float("nan")]], dtype=scores.dtype)], 1)
    padded_y = torch.cat([labels, torch.full((2, 2), float("nan"), dtype=labels.dtype)], 1)
    mask = torch.cat([torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)], 1)
    padded, padded_grad = loss_and_grad(loss_fn, padded_s, padded_y, mask)
    torch.testing.assert_close(padded, plain, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(padded_grad[:, :5], plain_grad, rtol=1e-9, atol=1e-12)
    assert torch.all(padded_grad[:, 5:] == 0)


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_all_padding_row_contributes_zero_and_does_not_dilute_the_mean(name):
    scores, labels = real_batch(3, 5, seed=4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    with_empty = (torch.cat([scores, torch.randn(1, 5, dtype=scores.dtype)]), torch.cat([labels, torch.full((1, 5), 2.0, dtype=labels.dtype)]))
    empty_mask = torch.cat([mask, torch.zeros(1, 5, dtype=torch.bool)])
    for reduction in ("mean", "sum", "none"):
        loss_fn = make(name, reduction=reduction)
        plain, _ = loss_and_grad(loss_fn, scores, labels, mask)
        got, grad = loss_and_grad(loss_fn, *with_empty, empty_mask)
        if reduction == "none":
            assert got[3] == 0
            got = got[:3]
        torch.testing.assert_close(got, plain, rtol=1e-10, atol=1e-12)
        assert torch.isfinite(grad).all() and torch.all(grad[3] == 0)
    # a batch of nothing but padding: 0, not NaN
    only_padding, grad = loss_and_grad(make(name), scores, labels, torch.zeros(3, 5, dtype=torch.bool))
    assert float(only_padding) == 0 and torch.all(grad == 0)


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_none_sums_to_sum_and_has_one_value_per_list(name):
    scores, labels = real_batch(4, 6, seed=5)
    _, _, mask = insert_padding(scores[:, :4], labels[:, :4], 2, seed=5)
    none = make(name, reduction="none")(scores, labels, mask)
    assert none.shape == (4,)
    torch.testing.assert_close(none.sum(), make(name, reduction="sum")(scores, labels, mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_extra_leading_batch_dimensions(name):
    scores, labels = real_batch(6, 5, seed=6)
    mask = torch.rand(6, 5, generator=torch.Generator().manual_seed(6)) > 0.3
    mask[:, 0] = True
    flat_none = make(name, reduction="none")(scores, labels, mask)
    shaped = [t.reshape(2, 3, 5) for t in (scores, labels, mask)]
    none = make(name, reduction="none")(*shaped)
    assert none.shape == (2, 3)
    torch.testing.assert_close(none, flat_none.reshape(2, 3), rtol=1e-12, atol=1e-12)
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            make(name, reduction=reduction)(*shaped), make(name, reduction=reduction)(scores, labels, mask), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("name", LIST_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_on_extreme_inputs(name, dtype):
    gen = torch.Generator().manual_seed(7)
    cases = {
        "score gaps of 1e4": (torch.randn(3, 6, generator=gen).to(dtype) * 1e4, torch.randint(0, 5, (3, 6), generator=gen).to(dtype)),
        "lists of length 1": (torch.randn(4, 1, generator=gen).to(dtype), torch.randint(0, 5, (4, 1), generator=gen).to(dtype)),
        "all labels equal": (torch.randn(3, 6, generator=gen).to(dtype), torch.full((3, 6), 2.0, dtype=dtype)),
        "all labels zero": (torch.randn(3, 6, generator=gen).to(dtype), torch.zeros(3, 6, dtype=dtype)),
        "all scores equal": (torch.zeros(3, 6, dtype=dtype), torch.randint(0, 5, (3, 6), generator=gen).to(dtype)),
    }
    for case, (scores, labels) in cases.items():
        loss, grad = loss_and_grad(make(name), scores, labels)
        assert torch.isfinite(loss), f"{name}: non-finite loss for {case}"
        assert torch.isfinite(grad).all(), f"{name}: non-finite gradient for {case}"
        assert loss.dtype == dtype


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_gradcheck_float64(name):
    scores, labels = real_batch(2, 5, seed=8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3] = False
    loss_fn = make(name)
    leaf = scores.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, labels, mask), (leaf,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", LIST_LOSSES)
@pytest.mark.parametrize(
    "scores, labels, mask, message",
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), None, r"labels shape \(2, 4\) does not match scores shape \(2, 3\)"),
        (torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 1.0], [0.0, 1.0, 2.0]]), None, "labels must be finite"),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.int64), "mask must have dtype torch.bool"),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool), r"mask shape \(3, 2\) does not match"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3), None, "scores must be a floating-point tensor"),
    ],
)
def test_bad_input_raises_a_clear_value_error(name, scores, labels, mask, message):
    with pytest.raises(ValueError, match=message):
        make(name)(scores, labels, mask)


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_bad_reduction_is_rejected_at_construction(name):
    # kl_div also offers "batchmean" (torch.nn.KLDivLoss's)
    with pytest.raises(ValueError, match=r"reduction must be one of \[.*'mean', 'sum', 'none'\], got 'avg'"):
        make(name, reduction="avg")


@pytest.mark.parametrize("name", LIST_LOSSES)
def test_a_single_unbatched_list(name):
    scores, labels = real_batch(1, 6, seed=9)
    for reduction in ("mean", "sum", "none"):
        loss_fn = make(name, reduction=reduction)
        single = loss_fn(scores[0], labels[0])
        batched = loss_fn(scores, labels)
        assert single.shape == ()
        torch.testing.assert_close(single, batched.reshape(()), rtol=1e-12, atol=1e-12)


EMPTY_SHAPES = {"lists-of-length-0": (3, 0), "no-lists": (0, 5), "no-lists-3d": (2, 0, 4)}
EMPTY_CASES = [
    pytest.param(name, shape, id=f"{case}-{name}") for case, shape in EMPTY_SHAPES.items() for name in LIST_LOSSES
]


@pytest.mark.parametrize("name, shape", EMPTY_CASES)
def test_empty_batches_give_zero(name, shape):
    scores = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(shape, dtype=torch.float64)
    assert make(name, reduction="none")(scores, labels).shape == shape[:-1]
    loss = make(name)(scores, labels)
    (grad,) = torch.autograd.grad(loss, scores, allow_unused=True, materialize_grads=True)
    assert float(loss.detach()) == 0 and grad.shape == shape
