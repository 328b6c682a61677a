"""DASALC scorer: a document tower crossed with list context (Qin et al., ICLR 2021)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ltrkit._checks import check_choice, check_int
from ltrkit.models._layers import (
    ACTIVATIONS,
    RankingModel,
    RealRows,
    attend_within_lists,
    check_dropout,
    check_sizes,
    dense_stack,
    list_encoder,
    make_input_norm,
)


class DASALCRanker(RankingModel):
    r"""Feed-forward document tower whose representation is modulated by self-attention over the list.

    .. math::
        \tilde x_i = \mathrm{norm}(x_i) + \epsilon_i,\quad \epsilon_i \sim \mathcal N(0, \sigma^2 I)
        \text{ (training only)}

        h_i = \mathrm{Tower}(\tilde x_i) \in \mathbb{R}^{d},\qquad
        (c_1, \dots, c_n) = \mathrm{TransformerEncoder}(W_{in} \tilde x_1, \dots, W_{in} \tilde x_n)

        a_i = W_{out} c_i \in \mathbb{R}^{d},\qquad
        s_i = w^\top \big((1 + a_i) \odot h_i\big) + b

    The tower is ``Linear -> batch norm -> activation -> dropout`` blocks; the self-attention
    output enters through the *latent cross* :math:`(1 + a_i) \odot h_i` (Beutel et al. 2018), so
    with a zero context the model is the plain tower. This is the "DASALC" recipe's scorer
    (Data Augmentation, Self-Attention, Latent Cross): train it with the listwise softmax loss on
    log1p-transformed features, with ``input_noise`` as the Gaussian data augmentation, which is
    active in training mode only (``model.eval()`` turns it off, as for dropout).

    Conventions:
        * Permutation-equivariant (no positional encoding); padding never changes a real
          document's score and padded outputs are 0; a list with no real document scores 0.
        * ``n_layers=0`` drops the context branch: the model is the tower alone and not
          context-aware.
        * ltrkit's defaults are smaller than the paper's MSLR-WEB30K setting (three hidden layers of
          1,024, more attention layers), so that an epoch stays fast on a CPU; widen them for
          large data.

    Args:
        n_features: number of input features ``F``.
        hidden_sizes: widths of the tower's hidden layers (at least one); ``d`` is the last.
        activation: activation of the tower blocks.
        dropout: dropout in the tower and the encoder, in ``[0, 1)``.
        input_norm: ``"batch"`` (the paper's), ``"affine"`` or ``"none"`` normalisation of the
            raw features.
        input_noise: standard deviation :math:`\sigma` of the Gaussian noise added to the
            normalised features in training mode (0 = off).
        d_model: width of the attention branch (divisible by ``n_heads``).
        n_heads: attention heads per encoder block.
        n_layers: encoder blocks (0 = no context branch).
        ff_dim: hidden width of each encoder block's feed-forward network.

    Shapes:
        ``features [B, L, F]``, ``mask [B, L]`` bool -> ``scores [B, L]``.

    Raises:
        ValueError: bad sizes, names or noise, or ``d_model`` not divisible by ``n_heads``.

    References:
        Qin, Yan, Zhuang, Tay, Pasumarthi, Wang, Bendersky, Najork 2021, "Are Neural Rankers still
        Outperformed by Gradient Boosted Decision Trees?" (ICLR); Beutel et al. 2018, "Latent
        Cross: Making Use of Context in Recurrent Recommender Systems" (WSDM).

    Example:
        >>> model = DASALCRanker(4, hidden_sizes=(8,), d_model=4, n_heads=2, ff_dim=8).eval()
        >>> model(torch.randn(2, 3, 4), torch.tensor([[True, True, False], [True, False, False]])).shape
        torch.Size([2, 3])
    """

    name = "dasalc"

    def __init__(
        self,
        n_features: int,
        *,
        hidden_sizes: Sequence[int] = (256, 256, 128),
        activation: str = "relu",
        dropout: float = 0.1,
        input_norm: str = "batch",
        input_noise: float = 0.1,
        d_model: int = 64,
        n_heads: int = 2,
        n_layers: int = 1,
        ff_dim: int = 128,
    ) -> None:
        super().__init__(n_features)
        sizes = check_sizes(hidden_sizes, "hidden_sizes")
        if not sizes:
            raise ValueError("hidden_sizes must hold at least one width (the latent cross needs a tower)")
        check_choice("activation", activation, list(ACTIVATIONS))
        dropout = check_dropout(dropout)
        if isinstance(input_noise, bool) or not isinstance(input_noise, (int, float)) or not 0.0 <= float(input_noise) < float("inf"):
            raise ValueError(f"input_noise must be a finite float >= 0, got {input_noise!r}")
        d_model = check_int("d_model", d_model)
        n_heads = check_int("n_heads", n_heads)
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
            raise ValueError(f"n_layers must be a non-negative int, got {n_layers!r}")
        ff_dim = check_int("ff_dim", ff_dim)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")

        self.input_norm_layer = make_input_norm(input_norm, self.n_features)
        self.input_noise = float(input_noise)
        self.tower, width = dense_stack(
            self.n_features, sizes, activation=activation, dropout=dropout, norm="batch", residual=False
        )
        self.encoder = list_encoder(
            d_model, n_heads, n_layers, ff_dim=ff_dim, dropout=dropout, activation="relu", norm_first=True
        )
        self.context_in = nn.Linear(self.n_features, d_model) if self.encoder is not None else None
        self.context_out = nn.Linear(d_model, width) if self.encoder is not None else None
        self.head = nn.Linear(width, 1)
        self.context_aware = self.encoder is not None
        self.config = {
            "hidden_sizes": list(sizes),
            "activation": activation,
            "dropout": dropout,
            "input_norm": input_norm,
            "input_noise": self.input_noise,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "ff_dim": ff_dim,
        }

    def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        real = RealRows(mask)
        rows = real.gather(features)
        if self.input_norm_layer is not None:
            rows = self.input_norm_layer(rows)
        if self.training and self.input_noise > 0:
            rows = rows + self.input_noise * torch.randn_like(rows)
        latent = self.tower(rows)
        if self.encoder is not None:
            context = attend_within_lists(self.encoder, real.scatter(self.context_in(rows)), mask)
            latent = (1.0 + self.context_out(real.gather(context))) * latent
        return real.scatter(self.head(latent).squeeze(-1))
