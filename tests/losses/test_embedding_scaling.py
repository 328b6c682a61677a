"""The O(N^2) triplet losses (batch-all, batch-hard, semi-hard) against the brute-force [N, N, N]
definitions (values and gradients, ties included) and against pytorch-metric-learning's gradients."""

from __future__ import annotations

import pytest
import torch

from ltrkit.losses.embedding import batch_triplet_loss

def _masks(classes):
    same = classes[:, None] == classes[None, :]
    return same & ~torch.eye(len(classes), dtype=torch.bool), ~same


def _brute_force(embeddings, classes, mining, margin, p, squared, reduction):
    """Every (anchor, positive, negative) as one entry of an [N, N, N] tensor (batch-hard: the
    dense [N, N] max/min); amin/amax share the gradient of tied distances evenly."""
    if squared:  # straight from the differences: integer points give exact, exactly tied distances
        d = ((embeddings[:, None, :] - embeddings[None, :, :]) ** 2).sum(dim=2)
    else:
        d = torch.cdist(embeddings, embeddings, p=p, compute_mode="donot_use_mm_for_euclid_dist")
    positive, negative = _masks(classes)
    if mining == "batch_all":
        valid = positive[:, :, None] & negative[:, None, :]
        cost = torch.clamp(margin + d[:, :, None] - d[:, None, :], min=0.0) * valid
        if reduction == "mean":
            return cost.sum() / max(int((cost > 0).sum()), 1)
        per_anchor = cost.sum(dim=(1, 2))
    elif mining == "batch_hard":
        has_both = positive.any(dim=1) & negative.any(dim=1)
        hardest_positive = torch.where(positive, d, torch.zeros_like(d)).amax(dim=1)
        closest_negative = torch.where(negative, d, torch.full_like(d, float("inf"))).amin(dim=1)
        closest_negative = torch.where(has_both, closest_negative, torch.zeros_like(closest_negative))
        per_anchor = torch.where(has_both, torch.clamp(margin + hardest_positive - closest_negative, min=0.0), torch.zeros_like(closest_negative))
        if reduction == "mean":
            return per_anchor.sum() / max(int(has_both.sum()), 1)
    else:
        inf = torch.tensor(float("inf"), dtype=d.dtype)
        farther = negative[:, None, :] & (d[:, None, :] > d[:, :, None])
        closest_farther = torch.where(farther, d[:, None, :], inf).amin(dim=2)
        farthest = torch.where(negative, d, -inf).amax(dim=1, keepdim=True).expand_as(d)
        chosen = torch.where(farther.any(dim=2), closest_farther, farthest)
        counted = positive & negative.any(dim=1, keepdim=True)
        cost = torch.where(counted, torch.clamp(margin + d - torch.where(counted, chosen, torch.zeros_like(d)), min=0.0), torch.zeros_like(d))
        if reduction == "mean":
            return cost.sum() / max(int(counted.sum()), 1)
        per_anchor = cost.sum(dim=1)
    return per_anchor if reduction == "none" else per_anchor.sum()


def _value_and_grad(fn, embeddings):
    leaf = embeddings.clone().requires_grad_(True)
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out, leaf, grad_outputs=torch.ones_like(out))
    return out.detach(), grad


BATCHES = {
    # name: (embeddings, classes); integer points give many exactly tied distances and costs
    "random": (torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), torch.arange(40) % 7),
    "two_big_classes": (torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64), (torch.arange(50) % 5 == 0).long()),
    "ties": (torch.randint(0, 3, (36, 2), generator=torch.Generator().manual_seed(2)).double(), torch.randint(0, 4, (36,), generator=torch.Generator().manual_seed(3))),
    "singletons": (torch.randn(20, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64), torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 6, 6, 6, 7, 8, 9, 9, 10, 11, 12])),
}


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(
    "batch, p, squared, margin",
    [("random", 2.0, False, 0.5), ("two_big_classes", 1.0, False, 1.0), ("ties", 2.0, True, 2.0), ("ties", 1.0, False, 1.0), ("singletons", 2.0, False, 1.5)],
)
def test_equals_the_brute_force_triplet_cube(batch, mining, reduction, p, squared, margin):
    embeddings, classes = BATCHES[batch]

    def ours(e):
        return batch_triplet_loss(e, classes, mining=mining, margin=margin, p=p, squared=squared, reduction=reduction)

    got, got_grad = _value_and_grad(ours, embeddings)
    want, want_grad = _value_and_grad(lambda e: _brute_force(e, classes, mining, margin, p, squared, reduction), embeddings)
    assert float(want.sum()) > 0 and bool(want_grad.abs().sum() > 0)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-10)
    if reduction == "none":
        torch.testing.assert_close(got.sum(), batch_triplet_loss(embeddings, classes, mining=mining, margin=margin, p=p, squared=squared, reduction="sum"))


def test_ties_at_the_margin_keep_the_cube_conventions():
    # integer points, p = 1, margin 1: many triplets cost exactly 0 (gradient still flows, as
    # clamp's does) and the mean counts only those with a positive cost
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [1.0], [2.0], [4.0], [0.0]], dtype=torch.float64)
    classes = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    for mining in ("batch_all", "semi_hard"):
        got, got_grad = _value_and_grad(lambda e: batch_triplet_loss(e, classes, mining=mining, margin=1.0, p=1.0), points)
        want, want_grad = _value_and_grad(lambda e: _brute_force(e, classes, mining, 1.0, 1.0, False, "mean"), points)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-12)


def test_float32_batch_all_keeps_its_precision_with_large_classes():
    # 2 classes of 200 with concentrated distances (~32 +- 1, margin 0.05): each anchor's closed
    # form S_j - j d(a, n) subtracts near-equal sums of up to 200 thresholds
    generator = torch.Generator().manual_seed(5)
    embeddings = torch.randn(400, 512, generator=generator)
    classes = torch.arange(400) % 2
    ours = batch_triplet_loss(embeddings, classes, mining="batch_all", margin=0.05, reduction="none")
    exact = batch_triplet_loss(embeddings.double(), classes, mining="batch_all", margin=0.05, reduction="none")
    torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=0)


@pytest.mark.parametrize("close_per_row", [64, 0])  # 0: every row has too many close pairs, the cdist fallback
def test_float32_distances_of_near_duplicates_stay_exact(monkeypatch, close_per_row):
    import ltrkit.losses.embedding as embedding

    monkeypatch.setattr(embedding, "_CLOSE_PER_ROW", close_per_row)
    # tight classes close together far from the origin: |x|^2 + |y|^2 - 2 x.y alone would cancel to noise
    generator = torch.Generator().manual_seed(6)
    centres = 10.0 * torch.randn(1, 16, generator=generator) + 1e-2 * torch.randn(6, 16, generator=generator)
    classes = torch.arange(48) % 6
    embeddings = centres[classes] + 1e-3 * torch.randn(48, 16, generator=generator)
    embeddings[1] = embeddings[7]  # an exact duplicate in another class: distance 0, gradient 0
    for mining in ("batch_hard", "semi_hard"):
        got, got_grad = _value_and_grad(lambda e: batch_triplet_loss(e, classes, mining=mining, margin=0.05, reduction="none"), embeddings)
        want, want_grad = _value_and_grad(lambda e: batch_triplet_loss(e, classes, mining=mining, margin=0.05, reduction="none"), embeddings.double())
        assert float(want.sum()) > 0 and torch.isfinite(got_grad).all()
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got_grad.double(), want_grad, rtol=1e-3, atol=1e-3)


pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses, miners as pml_miners  # noqa: E402
from pytorch_metric_learning.distances import LpDistance  # noqa: E402
from pytorch_metric_learning.reducers import SumReducer  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_all_gradient_equals_pml_triplet_margin_miner_and_loss(seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings, classes = torch.randn(96, 8, generator=generator), torch.randint(0, 12, (96,), generator=generator)
    distance = LpDistance(normalize_embeddings=False)

    def theirs(e):
        triplets = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="all", distance=distance)(e, classes)
        return pml_losses.TripletMarginLoss(margin=0.3, distance=distance)(e, classes, triplets)

    got, got_grad = _value_and_grad(lambda e: batch_triplet_loss(e, classes, mining="batch_all", margin=0.3), embeddings)
    want, want_grad = _value_and_grad(theirs, embeddings)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)


def test_batch_hard_gradient_equals_pml_batch_hard_miner_and_loss():
    generator = torch.Generator().manual_seed(2)
    embeddings, classes = torch.randn(96, 8, generator=generator), torch.randint(0, 12, (96,), generator=generator)
    distance = LpDistance(normalize_embeddings=False)

    def theirs(e):
        triplets = pml_miners.BatchHardMiner(distance=distance)(e, classes)
        return pml_losses.TripletMarginLoss(margin=0.3, distance=distance, reducer=SumReducer())(e, classes, triplets)

    got, got_grad = _value_and_grad(lambda e: batch_triplet_loss(e, classes, mining="batch_hard", margin=0.3, reduction="sum"), embeddings)
    want, want_grad = _value_and_grad(theirs, embeddings)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
