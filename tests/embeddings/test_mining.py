"""Triplet mining: the documented triplets on hand-made batches, the loss's own sums, and
pytorch-metric-learning where the definitions coincide (batch-all = TripletMarginMiner "all" +
AvgNonZero, batch-hard = BatchHardMiner)."""

from __future__ import annotations

import pytest
import torch

from ltrkit.embeddings.mining import mine_triplets
from ltrkit.losses.embedding import batch_triplet_loss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses, miners as pml_miners  # noqa: E402
from pytorch_metric_learning.distances import LpDistance  # noqa: E402
from pytorch_metric_learning.reducers import SumReducer  # noqa: E402

# 1-D points: distances are |x - y|, easy to check by hand
POINTS = torch.tensor([[0.0], [1.0], [3.0], [0.5], [2.0]])
CLASSES = torch.tensor([0, 0, 1, 1, 1])


def _triplets(result):
    return sorted(zip(*(t.tolist() for t in result)))


def test_batch_hard_on_a_hand_made_batch():
    # anchor 0: positive 1 (d 1); negatives 3 (0.5), 2 (3), 4 (2) -> closest 3
    # anchor 2: positives 3 (2.5), 4 (1) -> farthest 3; negatives 0 (3), 1 (2) -> closest 1
    # anchor 3: positives 2 (2.5), 4 (1.5) -> 2; negatives 0 (0.5), 1 (0.5): tie -> lowest index 0
    expected = [(0, 1, 3), (1, 0, 3), (2, 3, 1), (3, 2, 0), (4, 3, 1)]
    assert _triplets(mine_triplets(POINTS, CLASSES, mining="batch_hard")) == expected


def test_semi_hard_on_a_hand_made_batch():
    # (0, 1): d 1; negatives farther than 1: 2 (3), 4 (2) -> closest 4
    # (1, 0): d 1; negatives 2 (2), 3 (0.5), 4 (1): farther than 1: 2 only (4 ties at 1, not farther)
    # (2, 3): d 2.5; negatives 0 (3), 1 (2): farther: 0
    # (3, 2): d 2.5; negatives 0 (0.5), 1 (0.5): none farther -> the farthest, tie -> 0
    # (2, 4): d 1 -> farther negatives 0 (3), 1 (2) -> 1; (4, 2): d 1 -> 0 (2), 1 (1) -> farther: 0
    # (3, 4): d 1.5 -> none of 0 (0.5), 1 (0.5) -> farthest 0; (4, 3): d 1.5 -> 0 (2) only
    expected = [(0, 1, 4), (1, 0, 2), (2, 3, 0), (2, 4, 1), (3, 2, 0), (3, 4, 0), (4, 2, 0), (4, 3, 0)]
    assert _triplets(mine_triplets(POINTS, CLASSES, mining="semi_hard")) == expected


def test_batch_all_lists_every_valid_triplet():
    triplets = _triplets(mine_triplets(POINTS, CLASSES, mining="batch_all"))
    expected = [(a, p, n) for a in range(5) for p in range(5) for n in range(5)
                if a != p and CLASSES[a] == CLASSES[p] and CLASSES[n] != CLASSES[a]]
    assert triplets == expected
    positive = _triplets(mine_triplets(POINTS, CLASSES, mining="batch_all", margin=0.5, positive_loss_only=True))
    d = torch.cdist(POINTS, POINTS)
    assert positive == [t for t in expected if 0.5 + d[t[0], t[1]] - d[t[0], t[2]] > 0]


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
def test_the_mined_triplets_sum_to_the_loss(mining):
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(24, 5, generator=generator)
    classes = torch.randint(0, 4, (24,), generator=generator)
    a, p, n = mine_triplets(embeddings, classes, mining=mining, margin=0.7)
    d = torch.cdist(embeddings, embeddings)
    mined = torch.clamp(0.7 + d[a, p] - d[a, n], min=0).sum()
    expected = batch_triplet_loss(embeddings, classes, mining=mining, margin=0.7, reduction="sum")
    torch.testing.assert_close(mined, expected, rtol=1e-6, atol=1e-6)


def _batch(seed: int, n: int = 48):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=generator), torch.randint(0, 5, (n,), generator=generator)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_all_mean_equals_pml_triplet_margin_loss(seed):
    embeddings, classes = _batch(seed)
    ours = batch_triplet_loss(embeddings, classes, mining="batch_all", margin=0.3)
    theirs = pml_losses.TripletMarginLoss(margin=0.3, distance=LpDistance(normalize_embeddings=False))(embeddings, classes)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # and the triplets TripletMarginMiner("all") keeps are the ones with a positive loss
    miner = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="all", distance=LpDistance(normalize_embeddings=False))
    assert _triplets(miner(embeddings, classes)) == _triplets(
        mine_triplets(embeddings, classes, mining="batch_all", margin=0.3, positive_loss_only=True)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_equals_pml_batch_hard_miner(seed):
    embeddings, classes = _batch(seed)
    distance = LpDistance(normalize_embeddings=False)
    theirs = pml_miners.BatchHardMiner(distance=distance)(embeddings, classes)
    assert _triplets(theirs) == _triplets(mine_triplets(embeddings, classes, mining="batch_hard"))
    loss = pml_losses.TripletMarginLoss(margin=0.3, distance=distance, reducer=SumReducer())(embeddings, classes, theirs)
    torch.testing.assert_close(batch_triplet_loss(embeddings, classes, mining="batch_hard", margin=0.3, reduction="sum"), loss, rtol=1e-6, atol=1e-6)
