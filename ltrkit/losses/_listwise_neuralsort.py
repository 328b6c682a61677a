"""NeuralSort relaxation and log-space Sinkhorn scaling on compacted lists (private).

Lists here are *compacted*: the ``n`` real documents of a row occupy positions ``0..n-1`` and
padding the rest, so the padding block of a permutation matrix can be the identity (padded rank
``r`` holds padded document ``r``). That keeps every row and column of the log matrix with at
least one finite entry, which is what lets Sinkhorn run in log space with no NaN in forward or
backward, and it leaves the real ``n x n`` block exactly as if the padding were deleted.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch


class _BroadcastLogSumExp(torch.autograd.Function):
    """``logsumexp(x + vec, dim)`` that keeps only ``x``, ``vec`` and the result for backward.

    A plain ``torch.logsumexp(x + vec)`` saves the ``[B, L, L]`` sum for every Sinkhorn step;
    here the sum is transient and the softmax weights are recomputed in backward, so the memory
    held for autograd is ``O(B L)`` per step instead of ``O(B L^2)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, vec: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        out = torch.logsumexp(x + vec, dim=dim)
        ctx.save_for_backward(x, vec, out)
        ctx.dim = dim
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, vec, out = ctx.saved_tensors
        dim = ctx.dim
        weights = x + vec
        weights.sub_(out.unsqueeze(dim)).exp_().mul_(grad.unsqueeze(dim))
        other = -2 if dim == -1 else -1
        grad_vec = weights.sum(dim=other, keepdim=True) if ctx.needs_input_grad[1] else None
        return (weights if ctx.needs_input_grad[0] else None), grad_vec, None


def sum_abs_diff(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``b_j = sum_k |s_j - s_k|`` over real ``k`` for compacted ``[B, L]`` lists, in ``O(L log L)``.

    With the real scores sorted ascending, position ``t`` of ``n`` has ``t`` scores below it and
    ``n - 1 - t`` above, so ``b = s_t t - prefix_t + suffix_t - s_t (n - 1 - t)``; ties contribute
    0 on either side, so their order does not matter. Padded positions get garbage (finite).
    """
    length = scores.shape[-1]
    n = mask.sum(dim=-1, keepdim=True).to(scores.dtype)
    ascending = scores.masked_fill(~mask, math.inf).argsort(dim=-1)
    # compacted lists keep padding last after an ascending sort with +inf padding keys
    values = scores.gather(-1, ascending).masked_fill(~mask, 0.0)
    inclusive = values.cumsum(dim=-1)
    total = inclusive[..., -1:]
    t = torch.arange(length, dtype=scores.dtype, device=scores.device)
    below = values * t - (inclusive - values)
    above = (total - inclusive) - values * (n - 1.0 - t)
    return torch.zeros_like(values).scatter(-1, ascending, below + above)


def neural_sort_logits(
    scores: torch.Tensor, mask: torch.Tensor, *, temperature: float, rows: int
) -> torch.Tensor:
    """Log-potentials ``[B, rows, L]`` of NeuralSort for compacted lists (each with a real item).

    Real rank ``r`` (0-based, ``r < n``) over real document ``j``:
    ``((n - 1 - 2 r) s_j - sum_k |s_j - s_k|) / temperature``; padded documents get ``-inf``
    on real ranks; padded rank ``r >= n`` is the identity row (0 at column ``r``).
    A row-wise softmax of this is Grover et al.'s ``P_hat``.
    """
    real = mask.sum(dim=-1)
    # centring changes each row by a constant (so not the softmax) and keeps the prefix sums
    # of sum_abs_diff small, which is where float32 would lose digits
    centred = scores - (scores * mask).sum(dim=-1, keepdim=True) / real.unsqueeze(-1).to(scores.dtype)
    centred = centred.masked_fill(~mask, 0.0)
    spread = sum_abs_diff(centred, mask)
    ranks = torch.arange(rows, device=scores.device)
    coef = (real.unsqueeze(-1) - 1 - 2 * ranks).to(scores.dtype) / temperature
    logits = torch.baddbmm(
        (-spread / temperature).unsqueeze(1), coef.unsqueeze(-1), centred.unsqueeze(1)
    )
    padded_rank = ranks.unsqueeze(0) >= real.unsqueeze(-1)
    logits.masked_fill_(~mask.unsqueeze(1), -math.inf)
    logits.masked_fill_(padded_rank.unsqueeze(-1), -math.inf)
    diagonal = logits.diagonal(dim1=-2, dim2=-1)
    diagonal.masked_fill_(padded_rank[:, : diagonal.shape[-1]], 0.0)
    return logits


def sinkhorn_potentials(
    logits: torch.Tensor, *, iterations: int, tol: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row/column log-scalings ``(u [B, L, 1], v [B, 1, L])`` of ``exp(logits)``.

    ``P = exp(logits + u + v)``; the first step is the row softmax (plain NeuralSort), then up
    to ``iterations`` rounds of column then row normalisation. It stops early once every column
    sum of the current (row-normalised) matrix is within ``tol`` of 1 in log space.
    """
    zeros_col = torch.zeros_like(logits[..., :1, :])
    u = -_BroadcastLogSumExp.apply(logits, zeros_col, -1).unsqueeze(-1)
    v = zeros_col
    # an empty batch (no list, or lists of length 0) has nothing to scale
    for _ in range(iterations if logits.numel() else 0):
        v_next = -_BroadcastLogSumExp.apply(logits, u, -2).unsqueeze(-2)
        # column sums of exp(logits + u + v) are exp(v - v_next)
        if tol > 0 and bool(((v_next - v).detach().abs().max() < tol).item()):
            break
        v = v_next
        u = -_BroadcastLogSumExp.apply(logits, v, -1).unsqueeze(-1)
    return u, v


def compact(mask: torch.Tensor) -> torch.Tensor:
    """Indices ``[B, L]`` that move the real positions of each row first (stable)."""
    return torch.sort((~mask).to(torch.uint8), dim=-1, stable=True).indices
