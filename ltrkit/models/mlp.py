"""Feed-forward scorer: a multilayer perceptron applied to each document independently."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ltrkit._checks import check_choice
from ltrkit.models._layers import (
    ACTIVATIONS,
    NORMS,
    RankingModel,
    RealRows,
    check_dropout,
    check_sizes,
    dense_stack,
    make_input_norm,
)


class MLPRanker(RankingModel):
    r"""Pointwise MLP scorer (the RankNet / LambdaRank / ListNet network family).

    .. math:: s_i = w^\top h_K(\dots h_1(\mathrm{norm}(x_i))) + b,\quad
              h_k(z) = \mathrm{dropout}(\mathrm{act}(\mathrm{norm}_k(W_k z + b_k))) \;[+\, P_k z]

    Each hidden block is ``Linear -> norm -> activation -> dropout``; with ``residual=True`` the
    block input is added back (through a bias-free projection when the widths differ).
    The network runs on the real documents only (:class:`~ltrkit.models._layers.RealRows`), so batch normalisation
    sees real documents' statistics only and padding never changes a real document's score;
    the output at padded positions is 0.

    Args:
        n_features: number of input features ``F``.
        hidden_sizes: widths of the hidden layers (empty = a linear model).
        activation: one of ``relu``, ``gelu``, ``tanh``, ``leaky_relu``, ``silu``, ``elu``.
        dropout: dropout probability after each hidden activation, in ``[0, 1)``.
        norm: normalisation inside each hidden block: ``"none"``, ``"batch"`` or ``"layer"``.
        input_norm: ``"none"``, ``"batch"`` or ``"affine"`` normalisation of the raw features
            (see :meth:`RankingModel.fit_input_normalization`).
        residual: add residual connections around the hidden blocks.

    Shapes:
        ``features [B, L, F]``, ``mask [B, L]`` bool -> ``scores [B, L]``.

    Raises:
        ValueError: a bad size, activation, dropout or normalisation name.

    References:
        Burges et al. 2005, "Learning to Rank using Gradient Descent" (RankNet).

    Example:
        >>> model = MLPRanker(5, hidden_sizes=(8, 4), activation="gelu").eval()
        >>> model(torch.randn(3, 6, 5), torch.ones(3, 6, dtype=torch.bool)).shape
        torch.Size([3, 6])
    """

    name = "mlp"

    def __init__(
        self,
        n_features: int,
        *,
        hidden_sizes: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        input_norm: str = "none",
        residual: bool = False,
    ) -> None:
        super().__init__(n_features)
        sizes = check_sizes(hidden_sizes, "hidden_sizes")
        check_choice("activation", activation, list(ACTIVATIONS))
        check_choice("norm", norm, NORMS)
        dropout = check_dropout(dropout)
        self.input_norm_layer = make_input_norm(input_norm, self.n_features)
        self.body, width = dense_stack(
            self.n_features, sizes, activation=activation, dropout=dropout, norm=norm, residual=bool(residual)
        )
        self.head = nn.Linear(width, 1)
        self.config = {
            "hidden_sizes": list(sizes),
            "activation": activation,
            "dropout": dropout,
            "norm": norm,
            "input_norm": input_norm,
            "residual": bool(residual),
        }

    def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        real = RealRows(mask)
        rows = real.gather(features)
        if self.input_norm_layer is not None:
            rows = self.input_norm_layer(rows)
        return real.scatter(self.head(self.body(rows)).squeeze(-1))
