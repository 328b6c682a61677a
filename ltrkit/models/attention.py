"""Context-aware self-attention ranker (Pobrotyn et al. 2020, the allRank model)."""

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
    sinusoidal_positions,
)

POSITIONAL_ENCODINGS = ("none", "sinusoidal")
ENCODER_ACTIVATIONS = ("relu", "gelu")


class AttentionRanker(RankingModel):
    r"""Scores every document in the context of the other documents of its list.

    .. math::
        z_i = \mathrm{MLP}_{in}(x_i) \in \mathbb{R}^{d},\qquad
        (h_1, \dots, h_n) = \mathrm{TransformerEncoder}(z_1, \dots, z_n),\qquad
        s_i = \mathrm{MLP}_{out}(h_i)

    The input projection maps each document to ``d_model``; ``n_layers`` Transformer encoder
    blocks (multi-head self-attention + feed-forward, residual connections, layer norm before
    (``norm_first=True``, as in allRank) or after each sub-layer) let each document attend to the
    real documents of its list only (``src_key_padding_mask``); a per-document head gives the
    score.

    Conventions:
        * No positional encoding by default, so the model is permutation-equivariant: permuting
          the documents of a list permutes the scores. ``positional_encoding="sinusoidal"`` adds
          fixed encodings of the input position (for re-ranking a given initial order).
        * Padding never changes a real document's score; the output at padded positions is 0.
        * A list with no real document gets all-zero scores (PyTorch's attention over a fully
          masked row would give NaN; such rows attend over their padding instead, and their
          output is discarded).

    Args:
        n_features: number of input features ``F``.
        d_model: width of the document representations (divisible by ``n_heads``).
        n_heads: attention heads per layer.
        n_layers: number of encoder blocks (0 = the pointwise input MLP + head).
        ff_dim: hidden width of each block's feed-forward network.
        dropout: dropout in the encoder blocks and input projection, in ``[0, 1)``.
        input_hidden_sizes: hidden widths of the input projection MLP before the final linear
            map to ``d_model``.
        activation: activation of the input projection and head MLPs.
        encoder_activation: ``"relu"`` or ``"gelu"`` inside the encoder's feed-forward networks.
        norm_first: pre-norm (True, with a final layer norm) or post-norm (False) blocks.
        head_hidden_sizes: hidden widths of the scoring head before its final linear map.
        input_norm: ``"none"``, ``"batch"`` or ``"affine"`` normalisation of the raw features.
        positional_encoding: ``"none"`` or ``"sinusoidal"``.

    Shapes:
        ``features [B, L, F]``, ``mask [B, L]`` bool -> ``scores [B, L]``.

    Raises:
        ValueError: bad sizes or names, or ``d_model`` not divisible by ``n_heads``.

    References:
        Pobrotyn, Bartczak, Synowiec, Bialobrzeski, Bojar 2020, "Context-Aware Learning to Rank
        with Self-Attention" (SIGIR eCom); Vaswani et al. 2017, "Attention Is All You Need".

    Example:
        >>> model = AttentionRanker(4, d_model=8, n_heads=2, n_layers=1, ff_dim=16).eval()
        >>> mask = torch.tensor([[True, True, False], [False, False, False]])
        >>> model(torch.randn(2, 3, 4), mask)[1]
        tensor([0., 0., 0.], grad_fn=<SelectBackward0>)
    """

    name = "attention"

    def __init__(
        self,
        n_features: int,
        *,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 2,
        ff_dim: int = 512,
        dropout: float = 0.1,
        input_hidden_sizes: Sequence[int] = (),
        activation: str = "relu",
        encoder_activation: str = "relu",
        norm_first: bool = True,
        head_hidden_sizes: Sequence[int] = (),
        input_norm: str = "none",
        positional_encoding: str = "none",
    ) -> None:
        super().__init__(n_features)
        d_model = check_int("d_model", d_model)
        n_heads = check_int("n_heads", n_heads)
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
            raise ValueError(f"n_layers must be a non-negative int, got {n_layers!r}")
        ff_dim = check_int("ff_dim", ff_dim)
        dropout = check_dropout(dropout)
        in_sizes = check_sizes(input_hidden_sizes, "input_hidden_sizes")
        head_sizes = check_sizes(head_hidden_sizes, "head_hidden_sizes")
        check_choice("activation", activation, list(ACTIVATIONS))
        check_choice("encoder_activation", encoder_activation, ENCODER_ACTIVATIONS)
        check_choice("positional_encoding", positional_encoding, POSITIONAL_ENCODINGS)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")

        self.input_norm_layer = make_input_norm(input_norm, self.n_features)
        body, width = dense_stack(
            self.n_features, in_sizes, activation=activation, dropout=dropout, norm="none", residual=False
        )
        self.input_projection = nn.Sequential(body, nn.Linear(width, d_model))
        self.encoder = list_encoder(
            d_model, n_heads, n_layers, ff_dim=ff_dim, dropout=dropout, activation=encoder_activation, norm_first=bool(norm_first)
        )
        head_body, head_width = dense_stack(
            d_model, head_sizes, activation=activation, dropout=dropout, norm="none", residual=False
        )
        self.head = nn.Sequential(head_body, nn.Linear(head_width, 1))
        self.positional_encoding = positional_encoding
        # without encoder layers or positions each document is scored on its own features
        self.context_aware = n_layers > 0 or positional_encoding != "none"
        self.config = {
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "ff_dim": ff_dim,
            "dropout": dropout,
            "input_hidden_sizes": list(in_sizes),
            "activation": activation,
            "encoder_activation": encoder_activation,
            "norm_first": bool(norm_first),
            "head_hidden_sizes": list(head_sizes),
            "input_norm": input_norm,
            "positional_encoding": positional_encoding,
        }

    def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        real = RealRows(mask)
        rows = real.gather(features)
        if self.input_norm_layer is not None:
            rows = self.input_norm_layer(rows)
        hidden = real.scatter(self.input_projection(rows))
        if self.positional_encoding == "sinusoidal":
            hidden = hidden + sinusoidal_positions(
                hidden.shape[1], hidden.shape[2], device=hidden.device, dtype=hidden.dtype
            )
        if self.encoder is not None:
            hidden = attend_within_lists(self.encoder, hidden, mask)
        return real.scatter(self.head(real.gather(hidden)).squeeze(-1))
