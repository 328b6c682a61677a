"""An ensemble of scorers that ranks as one model: the mean of their scores or of their ranks."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ltrkit._checks import check_choice
from ltrkit.models._layers import RankingModel

__all__ = ["COMBINES", "EnsembleRanker", "list_ranks"]

COMBINES = ("mean", "rank_mean")


def list_ranks(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""0-based rank of each document in its list by descending score, ties sharing their mean rank.

    .. math:: r_i = \#\{j : s_j > s_i\} + \tfrac12\,\#\{j \ne i : s_j = s_i\}

    over the real documents ``j`` of the list. ``O(L^2)`` per list (scoring batches are capped
    in documents, so ``B L^2`` stays bounded).

    Shapes:
        ``scores [B, L]``, ``mask [B, L]`` -> ``ranks [B, L]`` (float, 0 at padded positions).
    """
    scores = scores.to(torch.float64)
    real = mask.unsqueeze(1) & mask.unsqueeze(2)  # [B, i, j]: both documents real
    above = ((scores.unsqueeze(1) > scores.unsqueeze(2)) & real).sum(-1)
    tied = ((scores.unsqueeze(1) == scores.unsqueeze(2)) & real).sum(-1) - 1  # minus the document itself
    return torch.where(mask, above + 0.5 * tied, torch.zeros_like(scores))


class EnsembleRanker(RankingModel):
    r"""Scores a list with every member and combines them into one score per document.

    .. math::
        \text{mean:}\quad s_i = \frac1K \sum_k s^{(k)}_i \qquad\qquad
        \text{rank\_mean:}\quad s_i = -\frac1K \sum_k r^{(k)}_i

    where :math:`r^{(k)}_i` is document ``i``'s 0-based rank in its list under member ``k``
    (:func:`list_ranks`, ties averaged). ``mean`` suits members whose scores share a scale (the
    same recipe trained from different seeds); ``rank_mean`` ignores scales, and its scores are
    only comparable within a list. An ensemble of one member is that member (``mean``: the same
    scores; ``rank_mean``: the same order).

    Conventions:
        Padding has no influence and padded outputs are 0 (each member guarantees it, and the
        combination only mixes real documents); the ensemble is context-aware when a member is
        (``rank_mean`` always is: a rank depends on the list).

    Args:
        members: the trained scorers, all built for the same ``n_features``.
        combine: ``"mean"`` or ``"rank_mean"``.

    Shapes:
        ``features [B, L, F]``, ``mask [B, L]`` bool -> ``scores [B, L]``.

    Raises:
        ValueError: no member, members for different feature counts, or an unknown ``combine``.

    Example:
        >>> from ltrkit.models import build_model
        >>> members = [build_model("linear", 3) for _ in range(2)]
        >>> EnsembleRanker(members)(torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)).shape
        torch.Size([2, 4])
    """

    name = "ensemble"

    def __init__(self, members: Sequence[RankingModel], *, combine: str = "mean") -> None:
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member, got none")
        counts = sorted({member.n_features for member in members})
        if len(counts) > 1:
            raise ValueError(f"ensemble members must take the same number of features, got {counts}")
        check_choice("combine", combine, COMBINES)
        super().__init__(counts[0])
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.context_aware = combine == "rank_mean" or any(member.context_aware for member in members)
        self.config = {
            "combine": combine,
            "members": [{"name": member.name, "config": dict(member.config)} for member in members],
        }

    def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = [member(features, mask) for member in self.members]
        if self.combine == "rank_mean":
            scores = [-list_ranks(score, mask).to(score.dtype) for score in scores]
        return torch.stack(scores).mean(0)
