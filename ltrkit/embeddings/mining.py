"""Online triplet mining as explicit index triplets: the triplets
:func:`ltrkit.losses.embedding.batch_triplet_loss` sums over, for inspection and for other losses.

Distances are those of the loss (p-norm, optionally squared). A triplet ``(a, p, n)`` is valid when
``a != p``, ``class(a) == class(p)`` and ``class(n) != class(a)``.

* ``"batch_all"``: every valid triplet (``positive_loss_only``: those with
  ``margin + d(a, p) - d(a, n) > 0``, the ones the loss's mean counts), in ``(a, p, n)``
  lexicographic order.
* ``"batch_hard"``: per anchor with a positive and a negative, its farthest positive and its
  closest negative (ties: the lowest index).
* ``"semi_hard"``: per positive pair ``(a, p)`` whose anchor has a negative, the closest negative
  farther than the positive (``d(a, n) > d(a, p)``), else the farthest negative (ties: the lowest
  index), in ``(a, p)`` order.

With these triplets, ``sum(max(0, margin + d(a, p) - d(a, n)))`` is ``batch_triplet_loss(...,
reduction="sum")`` (up to how ties share the gradient).

Memory: ``O(N^2)`` plus the triplets returned; ``"batch_all"`` lists them in blocks of about
``2^23`` candidates, never as an ``[N, N, N]`` mask (at N = 4096 with classes of 8 there are
117 million valid triplets, 2.8 GB of indices: prefer ``positive_loss_only`` or the loss itself,
which never lists them).

Example:
    >>> emb = torch.tensor([[0.0], [1.0], [3.0], [0.5]])
    >>> a, p, n = mine_triplets(emb, torch.tensor([0, 0, 1, 1]), mining="batch_hard")
    >>> list(zip(a.tolist(), p.tolist(), n.tolist()))
    [(0, 1, 3), (1, 0, 3), (2, 3, 1), (3, 2, 0)]
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ltrkit._checks import check_choice, check_non_negative, check_positive
from ltrkit.losses.embedding import padded_columns, semi_hard_choice, triplet_distances

__all__ = ["mine_triplets"]

MININGS = ("batch_all", "batch_hard", "semi_hard")
# candidate triplets per block of the batch-all listing (bools + indices: about 100 MB)
_BLOCK_ELEMENTS = 1 << 23


def mine_triplets(
    embeddings: torch.Tensor,
    classes: torch.Tensor,
    *,
    mining: str = "semi_hard",
    margin: float = 1.0,
    p: float = 2.0,
    squared: bool = False,
    positive_loss_only: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices ``(anchors, positives, negatives)``, each ``[T]`` int64, of the mined triplets.

    Args:
        embeddings: ``[N, D]`` float embeddings.
        classes: ``[N]`` integer classes.
        mining: ``"batch_all"``, ``"batch_hard"`` or ``"semi_hard"`` (see the module docstring).
        margin: ``>= 0`` (used by ``positive_loss_only``).
        p: norm degree ``> 0``.
        squared: squared Euclidean distances (``p = 2`` only).
        positive_loss_only: keep only triplets with a positive loss.

    Raises:
        ValueError: bad shapes or options.
    """
    check_choice("mining", mining, MININGS)
    margin = check_non_negative("margin", margin)
    p = check_positive("p", p)
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError("embeddings must be a float tensor [N, D]")
    if not isinstance(classes, torch.Tensor) or classes.shape != embeddings.shape[:1] or classes.is_floating_point():
        raise ValueError(f"classes must be an integer tensor [{embeddings.shape[0]}]")
    if squared and p != 2.0:
        raise ValueError(f"squared=True needs p=2, got p={p}")
    with torch.no_grad():
        d = triplet_distances(embeddings.float(), p, squared)
        n = d.shape[0]
        same = classes[:, None] == classes[None, :]
        positive = same & ~torch.eye(n, dtype=torch.bool, device=d.device)
        negative = ~same
        inf = torch.tensor(float("inf"), device=d.device)
        if mining == "batch_all":
            return _all_triplets(d, positive, negative, margin if positive_loss_only else None)
        if mining == "batch_hard":
            a = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
            # argmax/argmin return the first extreme: ties go to the lowest index
            pos = torch.where(positive, d, -inf)[a].argmax(dim=1)
            neg = torch.where(negative, d, inf)[a].argmin(dim=1)
        else:
            a, pos, neg = _semi_hard_triplets(d, positive, negative)
        if positive_loss_only:
            keep = margin + d[a, pos] - d[a, neg] > 0
            a, pos, neg = a[keep], pos[keep], neg[keep]
    return a, pos, neg


def _all_triplets(d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: Optional[float]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every valid triplet (with ``margin``: those with a positive loss), ``_BLOCK_ELEMENTS``
    candidates at a time: positive pairs in ``(a, p)`` order against their anchor's negatives."""
    anchors, positives = torch.nonzero(positive, as_tuple=True)
    negatives, real = padded_columns(negative)
    pairs_per_block = max(1, _BLOCK_ELEMENTS // negatives.shape[1])
    found = []
    for start in range(0, anchors.numel(), pairs_per_block):
        a, pos = anchors[start : start + pairs_per_block], positives[start : start + pairs_per_block]
        candidates, keep = negatives[a], real[a]
        if margin is not None:
            keep = keep & (margin + d[a, pos][:, None] - d[a[:, None], candidates] > 0)
        rows, slots = torch.nonzero(keep, as_tuple=True)
        found.append((a[rows], pos[rows], candidates[rows, slots]))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=d.device)
        return empty, empty, empty
    return tuple(torch.cat(column) for column in zip(*found))


def _semi_hard_triplets(d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The semi-hard triplets of :func:`ltrkit.losses.embedding.semi_hard_choice` in ``(a, p)``
    order, each chosen distance's tie going to its lowest-index negative."""
    n = d.shape[0]
    choice = semi_hard_choice(d, positive, negative)
    width = choice.chosen.shape[1]
    columns = torch.arange(n, device=d.device).expand(n, n)
    lowest = torch.full((n, width + 1), n, dtype=torch.long, device=d.device)
    lowest = lowest.scatter_reduce(1, choice.group, torch.where(choice.tied, columns, n), "amin")
    counted = choice.real & negative.any(dim=1, keepdim=True)
    # back from slots by distance to slots by positive column, so the triplets come in (a, p) order
    by_column = torch.sort(torch.where(counted, choice.positives, n), dim=1)
    a = torch.arange(n, device=d.device)[:, None].expand(n, width)
    keep = by_column.values < n
    neg = torch.gather(torch.gather(lowest, 1, choice.first), 1, by_column.indices)
    return a[keep], by_column.values[keep], neg[keep]
