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

Example:
    >>> emb = torch.tensor([[0.0], [1.0], [3.0], [0.5]])
    >>> a, p, n = mine_triplets(emb, torch.tensor([0, 0, 1, 1]), mining="batch_hard")
    >>> list(zip(a.tolist(), p.tolist(), n.tolist()))
    [(0, 1, 3), (1, 0, 3), (2, 3, 1), (3, 2, 0)]
"""

from __future__ import annotations

from typing import Tuple

import torch

from ltrkit._checks import check_choice, check_non_negative, check_positive

__all__ = ["mine_triplets"]

MININGS = ("batch_all", "batch_hard", "semi_hard")


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
        d = torch.cdist(embeddings.float(), embeddings.float(), p=p, compute_mode="donot_use_mm_for_euclid_dist")
        if squared:
            d = d * d
        n = d.shape[0]
        same = classes[:, None] == classes[None, :]
        positive = same & ~torch.eye(n, dtype=torch.bool, device=d.device)
        negative = ~same
        inf = torch.tensor(float("inf"), device=d.device)
        if mining == "batch_all":
            valid = positive[:, :, None] & negative[:, None, :]
            a, pos, neg = torch.nonzero(valid, as_tuple=True)
        elif mining == "batch_hard":
            a = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
            # argmax/argmin return the first extreme: ties go to the lowest index
            pos = torch.where(positive, d, -inf)[a].argmax(dim=1)
            neg = torch.where(negative, d, inf)[a].argmin(dim=1)
        else:
            a, pos = torch.nonzero(positive & negative.any(1, keepdim=True), as_tuple=True)
            d_ap = d[a, pos]
            farther = negative[a] & (d[a] > d_ap[:, None])
            semi = torch.where(farther, d[a], inf).argmin(dim=1)
            farthest = torch.where(negative[a], d[a], -inf).argmax(dim=1)
            neg = torch.where(farther.any(1), semi, farthest)
        if positive_loss_only:
            keep = margin + d[a, pos] - d[a, neg] > 0
            a, pos, neg = a[keep], pos[keep], neg[keep]
    return a, pos, neg
