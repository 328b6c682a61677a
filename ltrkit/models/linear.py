"""Linear scorer: ``s(x) = w^T x + b`` per document (RankSVM / linear RankNet style models)."""

from __future__ import annotations

import torch
from torch import nn

from ltrkit.models._layers import RankingModel, RealRows, make_input_norm


class LinearRanker(RankingModel):
    r"""Pointwise linear scorer.

    .. math:: s_i = w^\top \mathrm{norm}(x_i) + b

    Each document is scored on its own features only, so padding never affects a real
    document's score; the output at padded positions is 0.

    Args:
        n_features: number of input features ``F``.
        input_norm: ``"none"``, ``"batch"`` (BatchNorm over the real documents of the batch) or
            ``"affine"`` (learnable per-feature centre/scale, see
            :meth:`RankingModel.fit_input_normalization`).
        bias: whether to learn ``b`` (it never changes a ranking, only pointwise losses see it).

    Shapes:
        ``features [B, L, F]``, ``mask [B, L]`` bool -> ``scores [B, L]``.

    Example:
        >>> model = LinearRanker(3)
        >>> model(torch.ones(2, 4, 3), torch.tensor([[True] * 4, [True, False, False, False]])).shape
        torch.Size([2, 4])
    """

    name = "linear"

    def __init__(self, n_features: int, *, input_norm: str = "none", bias: bool = True) -> None:
        super().__init__(n_features)
        self.input_norm_layer = make_input_norm(input_norm, self.n_features)
        self.linear = nn.Linear(self.n_features, 1, bias=bool(bias))
        self.config = {"input_norm": input_norm, "bias": bool(bias)}

    def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        real = RealRows(mask)
        rows = real.gather(features)
        if self.input_norm_layer is not None:
            rows = self.input_norm_layer(rows)
        return real.scatter(self.linear(rows).squeeze(-1))
