"""Mining without [N, N, N] tensors: the listed triplets equal the brute-force cube's, ties and
block boundaries included."""

from __future__ import annotations

import pytest
import torch

import ltrkit.embeddings.mining as mining_module
from ltrkit.embeddings.mining import mine_triplets


def _masks(classes):
    same = classes[:, None] == classes[None, :]
    return same & ~torch.eye(len(classes), dtype=torch.bool), ~same


def _brute_force_semi_hard(d, classes):
    """Per positive pair, over all N negatives at once; argmin/argmax take the first (lowest) index."""
    positive, negative = _masks(classes)
    a, pos = torch.nonzero(positive & negative.any(1, keepdim=True), as_tuple=True)
    farther = negative[a] & (d[a] > d[a, pos][:, None])
    inf = torch.tensor(float("inf"))
    closest = torch.where(farther, d[a], inf).argmin(dim=1)
    farthest = torch.where(negative[a], d[a], -inf).argmax(dim=1)
    return a, pos, torch.where(farther.any(1), closest, farthest)


def _as_list(triplets):
    return list(zip(*(t.tolist() for t in triplets)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_equals_the_brute_force_with_tied_distances(seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randint(0, 3, (40, 2), generator=generator).float()  # many equal distances
    classes = torch.randint(0, 5, (40,), generator=generator)
    classes[0] = 99  # an anchor without positives
    d = torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")
    # the same (a, p) order, so compare the lists as they come
    assert _as_list(mine_triplets(embeddings, classes, mining="semi_hard")) == _as_list(_brute_force_semi_hard(d, classes))


@pytest.mark.parametrize("positive_loss_only", [False, True])
def test_batch_all_listing_across_blocks_equals_the_cube(monkeypatch, positive_loss_only):
    generator = torch.Generator().manual_seed(3)
    embeddings, classes = torch.randn(30, 3, generator=generator), torch.randint(0, 4, (30,), generator=generator)
    d = torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")
    positive, negative = _masks(classes)
    valid = positive[:, :, None] & negative[:, None, :]
    if positive_loss_only:
        valid &= 0.4 + d[:, :, None] - d[:, None, :] > 0
    expected = _as_list(torch.nonzero(valid, as_tuple=True))
    assert len(expected) > 100
    # blocks of a few pairs' candidates: the lexicographic order must survive the block edges
    monkeypatch.setattr(mining_module, "_BLOCK_ELEMENTS", 50)
    got = mine_triplets(embeddings, classes, mining="batch_all", margin=0.4, positive_loss_only=positive_loss_only)
    assert _as_list(got) == expected


def test_batch_all_without_any_triplet_is_empty():
    a, p, n = mine_triplets(torch.randn(4, 2), torch.tensor([0, 1, 2, 3]), mining="batch_all")
    assert a.numel() == p.numel() == n.numel() == 0 and a.dtype == torch.long
