"""Metric-learning losses against PyTorch's own losses and loop references over all triplets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ltrkit.losses import get
from ltrkit.losses.embedding import batch_triplet_loss, contrastive_loss, cosine_embedding_loss, triplet_margin_loss

_spec = importlib.util.spec_from_file_location("reference_listwise", Path(__file__).with_name("reference_listwise.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

REDUCTIONS = ["mean", "sum", "none"]


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def value_and_grads(fn, *inputs):
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_outputs=torch.ones_like(out))
    return out.detach(), grads


# ------------------------------------------------------------------------------ triplet margin


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p, eps, swap, margin", [(2.0, 1e-6, False, 1.0), (1.0, 1e-3, True, 0.5), (3.0, 0.0, True, 2.0)])
def test_triplet_margin_matches_pytorch(reduction, p, eps, swap, margin):
    a, pos, neg = randn(16, 5, seed=1), randn(16, 5, seed=2), randn(16, 5, seed=3)
    theirs = torch.nn.TripletMarginLoss(margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)
    want, want_grads = value_and_grads(theirs, a, pos, neg)

    def ours(x, y, z):
        return triplet_margin_loss(x, y, z, margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)

    got, got_grads = value_and_grads(ours, a, pos, neg)
    assert float(want.sum()) > 0
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    module = get("triplet", margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)
    torch.testing.assert_close(module(a, pos, neg), want, rtol=0, atol=1e-6)


def test_triplet_margin_extra_batch_dims_and_gradcheck():
    a, pos, neg = randn(2, 3, 4, seed=4), randn(2, 3, 4, seed=5), randn(2, 3, 4, seed=6)
    flat = triplet_margin_loss(a.reshape(6, 4), pos.reshape(6, 4), neg.reshape(6, 4), reduction="none")
    torch.testing.assert_close(triplet_margin_loss(a, pos, neg, reduction="none"), flat.reshape(2, 3))
    leaves = [x.requires_grad_(True) for x in (a, pos, neg)]
    assert torch.autograd.gradcheck(lambda x, y, z: triplet_margin_loss(x, y, z, margin=3.0, swap=True), leaves)


# ------------------------------------------------------------------------------ cosine embedding


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
def test_cosine_embedding_matches_pytorch(reduction, margin):
    x1, x2 = randn(20, 6, seed=7), randn(20, 6, seed=8)
    x2[3] = 0.0  # a zero vector: PyTorch's eps keeps it finite
    y = torch.where(randn(20, seed=9) > 0, 1, -1)
    theirs = torch.nn.CosineEmbeddingLoss(margin=margin, reduction=reduction)
    want, want_grads = value_and_grads(lambda a, b: theirs(a, b, y), x1, x2)
    got, got_grads = value_and_grads(lambda a, b: cosine_embedding_loss(a, b, y, margin=margin, reduction=reduction), x1, x2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        # the zero vector's gradient is ~1e6 (1 / sqrt(eps)): compare it relatively
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-6)
    module = get("cosine_embedding", margin=margin, reduction=reduction)
    torch.testing.assert_close(module(x1, x2, y), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cosine_embedding_loss(torch.ones(3, 2), torch.ones(3, 2), torch.tensor([1, 0, -1])), "y must hold only 1"),
        (lambda: cosine_embedding_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(2)), r"y must have shape \(3,\)"),
        (lambda: cosine_embedding_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3), margin=2), r"margin must be a number in \[-1, 1\], got 2"),
        (lambda: cosine_embedding_loss(torch.ones(3, 2), torch.ones(3, 4), torch.ones(3)), "embedding shapes must match"),
        (lambda: triplet_margin_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(2, 2)), "embedding shapes must match"),
        (lambda: triplet_margin_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3, 2), p=0), "p must be a finite number > 0, got 0"),
        (lambda: triplet_margin_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3, 2), margin=-1), "margin must be a finite number >= 0, got -1"),
        (lambda: triplet_margin_loss(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2), torch.ones(3, 2)), "anchor must be a floating-point tensor"),
        (lambda: contrastive_loss(torch.ones(3, 2), torch.ones(3, 2), torch.tensor([0, 1, 2])), "same must be bool or hold only 0 and 1"),
        (lambda: contrastive_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3), distance="l1"), r"distance must be one of \['euclidean', 'cosine'\], got 'l1'"),
        (lambda: contrastive_loss(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3), reduction="avg"), "reduction must be one of"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ contrastive


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_contrastive_matches_loop_reference(distance, reduction):
    e1, e2 = randn(12, 4, seed=10), randn(12, 4, seed=11)
    same = torch.arange(12) % 3 == 0
    margin = 3.0 if distance == "euclidean" else 0.8
    got, got_grads = value_and_grads(
        lambda a, b: contrastive_loss(a, b, same, margin=margin, distance=distance, reduction=reduction), e1, e2
    )

    def reference(a, b):
        values = torch.stack([ref.contrastive(a[i], b[i], bool(same[i]), margin, distance) for i in range(12)])
        return {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]

    want, want_grads = value_and_grads(reference, e1, e2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # 0/1 numbers mean the same as bools
    as_float = contrastive_loss(e1, e2, same.double(), margin=margin, distance=distance, reduction=reduction)
    torch.testing.assert_close(as_float, got)


def test_contrastive_identical_embeddings_have_finite_gradients():
    e = randn(4, 3, seed=12).requires_grad_(True)
    loss = contrastive_loss(e, e.detach().clone(), torch.tensor([True, False, True, False]))
    loss.backward()
    assert torch.isfinite(e.grad).all()
    # two of four pairs are dissimilar at d = 0: each costs margin^2 / 2 = 0.5
    assert float(loss.detach()) == pytest.approx((0.5 + 0.5) / 4)


# ------------------------------------------------------------------------------ online mining


def _mining_reference(mining, reduction, margin, p, squared):
    def fn(emb, classes):
        cls = classes.tolist()
        if mining == "batch_all":
            total, positive, per_anchor = ref.batch_all(emb, cls, margin, p, squared)
            return {"mean": total / max(positive, 1), "sum": total, "none": per_anchor}[reduction]
        per_anchor, counted = (ref.batch_hard if mining == "batch_hard" else ref.semi_hard)(emb, cls, margin, p, squared)
        return {"mean": per_anchor.sum() / max(counted, 1), "sum": per_anchor.sum(), "none": per_anchor}[reduction]

    return fn


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p, squared, margin", [(2.0, False, 1.0), (2.0, True, 2.0), (1.0, False, 0.5)])
def test_mining_matches_loop_reference(mining, reduction, p, squared, margin):
    emb = randn(10, 3, seed=13)
    classes = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # class 3 has no positive
    got, (got_grad,) = value_and_grads(
        lambda e: batch_triplet_loss(e, classes, mining=mining, margin=margin, p=p, squared=squared, reduction=reduction), emb
    )
    want, (want_grad,) = value_and_grads(lambda e: _mining_reference(mining, reduction, margin, p, squared)(e, classes), emb)
    assert float(want.sum()) > 0
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)
    module = get("triplet", mining=mining, margin=margin, p=p, squared=squared, reduction=reduction)
    torch.testing.assert_close(module(emb, classes), got)


def test_mining_degenerate_batches_give_zero_not_nan():
    emb = randn(4, 3, seed=14).requires_grad_(True)
    for classes in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):
        for mining in ("batch_all", "batch_hard", "semi_hard"):
            loss = batch_triplet_loss(emb, classes, mining=mining)
            (grad,) = torch.autograd.grad(loss, emb)
            assert float(loss.detach()) == 0 and torch.all(grad == 0)


def test_mining_bad_inputs():
    emb = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"classes must be a tensor of shape \[4\], got \(3,\)"):
        batch_triplet_loss(emb, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="classes must hold integer or bool class labels, got dtype torch.float32"):
        batch_triplet_loss(emb, torch.zeros(4))
    with pytest.raises(ValueError, match=r"mining must be one of \['batch_all', 'batch_hard', 'semi_hard'\], got 'hard'"):
        batch_triplet_loss(emb, torch.zeros(4, dtype=torch.long), mining="hard")
    with pytest.raises(ValueError, match="squared=True needs p=2"):
        batch_triplet_loss(emb, torch.zeros(4, dtype=torch.long), p=1.0, squared=True)
    with pytest.raises(ValueError, match=r"embeddings must have shape \[N, D\], got \(2, 2, 2\)"):
        batch_triplet_loss(torch.zeros(2, 2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"called as loss\(embeddings, classes\), got 3 inputs"):
        get("triplet", mining="batch_hard")(emb, emb, emb)


PAIR_LOSSES = {
    "contrastive": lambda a, b, c, **kw: contrastive_loss(a, b, c > 0, margin=2.5, **kw),
    "contrastive_cosine": lambda a, b, c, **kw: contrastive_loss(a, b, c > 0, distance="cosine", margin=0.7, **kw),
    "cosine_embedding": lambda a, b, c, **kw: cosine_embedding_loss(a, b, torch.where(c > 0, 1, -1), margin=0.1, **kw),
    "triplet": lambda a, b, c, **kw: triplet_margin_loss(a, b, c.unsqueeze(-1) * b, margin=2.0, swap=True, **kw),
}


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_pair_losses_batch_dims_reductions_and_gradcheck(name):
    fn = PAIR_LOSSES[name]
    a, b = randn(2, 3, 4, seed=20), randn(2, 3, 4, seed=21)
    c = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]], dtype=torch.float64)
    none = fn(a, b, c, reduction="none")
    assert none.shape == (2, 3)
    torch.testing.assert_close(none, fn(a.reshape(6, 4), b.reshape(6, 4), c.reshape(6), reduction="none").reshape(2, 3))
    torch.testing.assert_close(none.sum(), fn(a, b, c, reduction="sum"))
    torch.testing.assert_close(none.mean(), fn(a, b, c, reduction="mean"))
    assert float(none.sum()) > 0
    leaves = (a.clone().requires_grad_(True), b.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, c), leaves)


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
def test_mining_gradcheck_and_none_sums_to_sum(mining):
    emb = randn(9, 3, seed=22)
    classes = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 3])
    none = batch_triplet_loss(emb, classes, mining=mining, margin=1.5, reduction="none")
    torch.testing.assert_close(none.sum(), batch_triplet_loss(emb, classes, mining=mining, margin=1.5, reduction="sum"))
    leaf = emb.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: batch_triplet_loss(e, classes, mining=mining, margin=1.5), (leaf,))
