"""Ranking primitives shared by the metrics and the metric-aware losses.

Conventions (used everywhere in ltrkit):

* Higher score = ranked higher. Ties in scores keep input order (a stable sort), so the rule is
  deterministic; padded positions (``mask`` False) always sort after every real document.
* Ranks are 1-based. The DCG discount of rank ``r`` is ``1 / log2(r + 1)``.
* Gains: ``"exp2"`` is ``2^rel - 1`` (the LTR default, as in LightGBM and allRank);
  ``"linear"`` is ``rel`` (trec_eval's ``ndcg``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ltrkit._checks import check_choice

GAINS = ("exp2", "linear")


def check_gain(gain: str) -> str:
    """Return ``gain`` if it is a known gain name, else raise ``ValueError``."""
    return check_choice("gain", gain, GAINS)


def gain_values(labels: torch.Tensor, gain: str = "exp2") -> torch.Tensor:
    """Gain of each label: ``2^rel - 1`` for ``"exp2"``, ``rel`` for ``"linear"``. Shape kept."""
    if check_gain(gain) == "exp2":
        return torch.pow(2.0, labels) - 1.0
    return labels


def rank_discounts(length: int, *, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> torch.Tensor:
    """``[length]`` discounts ``1 / log2(r + 1)`` for ranks ``r = 1..length``."""
    ranks = torch.arange(1, length + 1, dtype=dtype, device=device)
    return 1.0 / torch.log2(ranks + 1.0)


def sort_order(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Indices ``[..., L]`` that rank each list by descending score, real documents first.

    Ties keep input order; padded positions come last whatever their score (NaN included).
    """
    by_score = torch.sort(scores.masked_fill(~mask, 0.0), dim=-1, descending=True, stable=True).indices
    mask_in_score_order = torch.gather(mask, -1, by_score)
    # a stable sort on "is padding" moves padding last without disturbing the score order
    real_first = torch.sort((~mask_in_score_order).to(torch.uint8), dim=-1, stable=True).indices
    return torch.gather(by_score, -1, real_first)


def sorted_labels_and_mask(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Labels and mask reordered by :func:`sort_order` (rank 1 first)."""
    order = sort_order(scores, mask)
    return torch.gather(labels, -1, order), torch.gather(mask, -1, order)


def dcg_of_sorted(
    sorted_labels: torch.Tensor, sorted_mask: torch.Tensor, *, k: Optional[int] = None, gain: str = "exp2"
) -> torch.Tensor:
    """DCG@k ``[...]`` of lists already in rank order; padded positions contribute nothing."""
    length = sorted_labels.shape[-1]
    cutoff = length if k is None else min(k, length)
    gains = gain_values(sorted_labels[..., :cutoff], gain) * sorted_mask[..., :cutoff]
    discounts = rank_discounts(cutoff, dtype=gains.dtype, device=gains.device)
    return (gains * discounts).sum(dim=-1)


def ideal_dcg(labels: torch.Tensor, mask: torch.Tensor, *, k: Optional[int] = None, gain: str = "exp2") -> torch.Tensor:
    """DCG@k ``[...]`` of the ideal ranking (labels sorted descending) of each list."""
    ideal_labels, ideal_mask = sorted_labels_and_mask(labels, labels, mask)
    return dcg_of_sorted(ideal_labels, ideal_mask, k=k, gain=gain)
