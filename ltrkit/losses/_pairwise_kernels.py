"""Chunked pairwise kernels behind the factorised RankNet and LambdaRank losses.

Each kernel walks the ``[B, L, L]`` pair matrix in blocks of rows, so memory stays
``O(B * L * rows_per_chunk)``, and returns the per-list loss value ``[B]`` together with the
per-document lambdas ``[B, L]`` (the gradient of that value with respect to the scores). The
autograd Functions save only the lambdas; backward is one multiplication.

Shared notation: ``x_ij = sigma * (s_i - s_j)``; for a pair whose first document is the more
relevant one the RankNet cost is ``softplus(-x_ij) = -log sigmoid(x_ij)`` and
``dC/ds_i = -sigma * sigmoid(-x_ij)``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

# Elements per [B, rows, cols] block: 2^21 float32 values (8 MiB) keeps the dozen temporaries of
# one block inside the caches of a small CPU while amortising the per-op dispatch overhead.
BLOCK_ELEMENTS = 1 << 21


def rows_per_chunk(batch: int, cols: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``[batch, rows, cols]`` block fit in ``block_elements`` values (>= 1)."""
    return max(1, block_elements // max(1, batch * cols))


def ranknet_value_and_lambdas(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    sigma: float,
    include_ties: bool,
    block_elements: int = BLOCK_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list RankNet cost summed over unordered pairs ``[B]`` and its lambdas ``[B, L]``.

    Every unordered pair appears twice among the ordered pairs ``(i, j)`` with the same cost, so
    the value is half the sum over ordered pairs and the lambda of document ``i`` is the plain
    row sum ``sum_j sigma * (sigmoid(x_ij) - target_ij)``.
    """
    batch, length = scores.shape
    scores = scores.masked_fill(~mask, 0.0)
    valid = mask.to(scores.dtype)
    value = scores.new_zeros(batch)
    lambdas = torch.empty_like(scores)
    step = rows_per_chunk(batch, length, block_elements)
    cols = torch.arange(length, device=scores.device)
    for start in range(0, length, step):
        stop = min(length, start + step)
        x = scores[:, start:stop, None] - scores[:, None, :]
        if sigma != 1.0:
            x.mul_(sigma)
        # sign of l_i - l_j, zero for pairs touching padding: the pair weight and the target at once
        sign = torch.sign(labels[:, start:stop, None] - labels[:, None, :])
        sign.mul_(valid[:, start:stop, None]).mul_(valid[:, None, :])
        if include_ties:
            pair = valid[:, start:stop, None] * valid[:, None, :]
            pair[:, cols[start:stop] - start, cols[start:stop]] = 0.0  # the diagonal is no pair
            target = sign.add(1.0).mul_(0.5)
            # C = softplus(-x) + (1 - target) * x ; dC/dx = sigmoid(x) - target
            cost = torch.nn.functional.softplus(-x).add_(x * (1.0 - target)).mul_(pair)
            grad = torch.sigmoid(x).sub_(target).mul_(pair)
        else:
            z = x.mul_(sign).neg_()  # -x for more-relevant rows, +x for less-relevant ones
            cost = torch.nn.functional.softplus(z).mul_(sign.abs())
            # dC/dx_ij = -sign * sigmoid(-sign * x) = -sign * sigmoid(z)
            grad = torch.sigmoid(z).mul_(sign).neg_()
        value += cost.sum(dim=(1, 2))
        lambdas[:, start:stop] = grad.sum(dim=2)
    return value * 0.5, lambdas * sigma


def lambdarank_value_and_lambdas(
    scores: torch.Tensor,
    gains: torch.Tensor,
    discounts: torch.Tensor,
    valid: torch.Tensor,
    *,
    sigma: float,
    top: int,
    block_elements: int = BLOCK_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """LambdaRank value ``[B]`` and lambdas ``[B, L]`` for lists already in rank order.

    Inputs are in rank order (position 0 = rank 1, padding last): ``gains`` are
    ``G_i / IDCG`` (0 for padding and for lists with IDCG 0), ``discounts`` the truncated
    ``1 / log2(1 + rank)`` (0 beyond ``top`` and for padding), ``valid`` the float mask.
    A pair weighs ``|dNDCG_ij| = |g_i - g_j| * |d_i - d_j|``; only pairs with at least one document
    among the first ``top`` positions can be non-zero, so rows run over ``[0, top)`` only:
    the block of columns ``[0, top)`` holds each pair twice (half value, row sums), the block
    ``[top, L)`` holds each pair once (full value, row sums and minus column sums).
    """
    batch, length = scores.shape
    value = scores.new_zeros(batch)
    lambdas = torch.zeros_like(scores)
    for col_start, col_stop, twice in ((0, top, True), (top, length, False)):
        if col_stop <= col_start:
            continue
        s_cols = scores[:, None, col_start:col_stop]
        g_cols = gains[:, None, col_start:col_stop]
        d_cols = discounts[:, None, col_start:col_stop]
        v_cols = valid[:, None, col_start:col_stop]
        step = rows_per_chunk(batch, col_stop - col_start, block_elements)
        for start in range(0, top, step):
            stop = min(top, start + step)
            x = scores[:, start:stop, None] - s_cols
            if sigma != 1.0:
                x.mul_(sigma)
            delta = (gains[:, start:stop, None] - g_cols).mul_(v_cols).mul_(valid[:, start:stop, None])
            weight = (discounts[:, start:stop, None] - d_cols).abs_().mul_(delta)  # signed |dD| * dg
            z = x.mul_(torch.sign(delta)).neg_()
            cost = torch.nn.functional.softplus(z).mul_(weight.abs())
            # d(|w| C)/dx_ij = -|w| sign(dg) sigmoid(z) = -(signed weight) * sigmoid(z)
            grad = torch.sigmoid(z).mul_(weight)
            block_value = cost.sum(dim=(1, 2))
            if twice:
                value += 0.5 * block_value
                lambdas[:, start:stop] -= grad.sum(dim=2)
            else:
                value += block_value
                lambdas[:, start:stop] -= grad.sum(dim=2)
                lambdas[:, col_start:col_stop] += grad.sum(dim=1)
    return value, lambdas * sigma


class RankNetFunction(torch.autograd.Function):
    """Factorised RankNet: ``forward(scores [B, L], labels, mask, sigma, include_ties) -> [B]``.

    Forward computes each list's cost and the lambdas in row chunks and saves only the lambdas
    ``[B, L]``; backward returns ``grad[:, None] * lambdas``. No graph over the pairs is built.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, sigma: float, include_ties: bool
    ) -> torch.Tensor:
        value, lambdas = ranknet_value_and_lambdas(
            scores.detach(), labels, mask, sigma=sigma, include_ties=include_ties
        )
        ctx.save_for_backward(lambdas)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None, None, None]:  # type: ignore[override]
        (lambdas,) = ctx.saved_tensors
        return grad_value.unsqueeze(-1) * lambdas, None, None, None, None


class LambdaRankFunction(torch.autograd.Function):
    """Factorised LambdaRank on lists in rank order: ``forward(scores, gains, discounts, valid,
    sigma, top) -> [B]``; saves the lambdas ``[B, L]``, backward multiplies them by the output grad.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        scores: torch.Tensor,
        gains: torch.Tensor,
        discounts: torch.Tensor,
        valid: torch.Tensor,
        sigma: float,
        top: int,
    ) -> torch.Tensor:
        value, lambdas = lambdarank_value_and_lambdas(
            scores.detach(), gains, discounts, valid, sigma=sigma, top=top
        )
        ctx.save_for_backward(lambdas)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None, None, None, None]:  # type: ignore[override]
        (lambdas,) = ctx.saved_tensors
        return grad_value.unsqueeze(-1) * lambdas, None, None, None, None, None
