"""NeuralSort relaxation and Sinkhorn scaling on compacted lists (private).

Lists here are *compacted*: the ``n`` real documents of a row occupy positions ``0..n-1`` and
padding the rest, so the padding block of a permutation matrix can be the identity (padded rank
``r`` holds padded document ``r``). That keeps every row and column of the kernel
``K = exp(logits - rowmax)`` with a positive entry, so Sinkhorn can run on scaling vectors in
probability space (two batched matrix-vector products per round, no ``exp`` per round) with no
NaN in forward or backward, and it leaves the real ``n x n`` block exactly as if the padding
were deleted.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


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
    # a batch without padding (every list full) needs no [B, rows, L] fill, nor its backward
    if not bool(mask.all()):
        padded_rank = ranks.unsqueeze(0) >= real.unsqueeze(-1)
        logits.masked_fill_(padded_rank.unsqueeze(-1) | ~mask.unsqueeze(1), -math.inf)
        diagonal = logits.diagonal(dim1=-2, dim2=-1)
        diagonal.masked_fill_(padded_rank[:, : diagonal.shape[-1]], 0.0)
    return logits


class _FlooredExp(torch.autograd.Function):
    """``exp(x)`` in place, with every result at or below ``3 finfo.tiny`` set to exactly 0.

    NeuralSort logits of long lists are mostly far below the row maximum; ``exp`` of such
    inputs (and of ``-inf``) takes a slow path on CPU and yields subnormals that slow down every
    later product. Clamping the input first keeps ``exp`` on its fast path; the threshold then
    restores exact zeros (so padding keeps no mass). The entries dropped are below ``3 tiny``
    next to a row maximum of 1. Backward is ``grad * exp(x)``, 0 where zeroed.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tiny = torch.finfo(x.dtype).tiny
        torch.threshold_(x.clamp_min_(math.log(tiny) + 1.0).exp_(), 3.0 * tiny, 0.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        return grad * out


def sinkhorn_kernel(logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel ``K [B, L, L]`` (in place of ``logits``) and starting column scaling ``b0 [B, L]``.

    ``exp(logits) = diag(e^rowmax) K diag(b0)`` with ``K = exp(logits - rowmax - colmax)``,
    where ``colmax`` is the column maximum after the row shift and ``b0 = e^colmax``. Every row
    and every column of ``K`` then holds an exact 1, so no column underflows to 0 however large
    the logits, and the scalings of Sinkhorn stay in range. The row factor is absorbed by the
    first row normalisation; the column factor is carried by ``b0``, so the iterates are those
    of the unshifted matrix. Both shifts are detached: they cancel in ``P``, so no gradient is
    lost and no ``[B, L, L]`` tensor is added to the autograd graph. In exact arithmetic
    ``colmax`` is 0 (each document tops the row of its own rank); in floating point it is the
    rounding error of the logits. Entries of ``K`` below ``3 finfo.tiny`` (and the ``-inf`` of
    padding) come out as exact zeros, see :class:`_FlooredExp`.
    """
    if logits.shape[-1] == 0:  # lists of length 0 have no maximum
        return logits.exp_(), logits.new_ones(logits.shape[:-1])
    logits.sub_(logits.detach().amax(dim=-1, keepdim=True))
    colmax = logits.detach().amax(dim=-2, keepdim=True)
    return _FlooredExp.apply(logits.sub_(colmax)), colmax.squeeze(-2).exp()


def _matvec(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``K x`` for ``K [B, L, L]`` and ``x [B, L]``."""
    # as the row vector x^T K^T: on CPU this runs about 3x faster than bmm(K, x[..., None])
    return torch.bmm(x.unsqueeze(-2), kernel.mT).squeeze(-2)


def _vecmat(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``K^T x`` for ``K [B, L, L]`` and ``x [B, L]``."""
    return torch.bmm(x.unsqueeze(-2), kernel).squeeze(-2)


class _Sinkhorn(torch.autograd.Function):
    """Probability-space Sinkhorn on scaling vectors, with a hand-written backward.

    Forward: ``a_0 = 1 / (K b_0)``, then per round ``b_t = 1 / (K^T a_{t-1})`` and
    ``a_t = 1 / (K b_t)``; denominators are clamped at ``finfo.tiny`` as a last guard (with an
    exact 1 in every row and column of ``K`` they stay far above it). With ``row_weights`` and
    ``col_weights`` it also returns the weighted sum ``x^T P y`` of ``P = diag(a) K diag(b)``
    (0 without them), computed as ``sum_j (K^T (x a))_j b_j y_j`` so ``P`` is never formed.
    Backward walks the rounds in reverse with the same matrix-vector products and collects the
    gradient of ``K`` as a sum of outer products, formed by a single batched matmul
    ``[B, L, 2T+2] x [B, 2T+2, L]``; autograd would instead add one ``[B, L, L]`` outer product
    per matrix-vector product. Saved for backward: ``K`` and ``O(B L)`` per round. ``start``
    and the weights get no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        kernel: torch.Tensor,
        start: torch.Tensor,
        row_weights: Optional[torch.Tensor],
        col_weights: Optional[torch.Tensor],
        iterations: int,
        tol: float,
    ):
        tiny = torch.finfo(kernel.dtype).tiny
        b = start
        a = 1.0 / _matvec(kernel, b).clamp_min(tiny)
        a_steps, b_steps = [a], [b]
        # a sync per round is free on CPU; elsewhere test the tolerance every few rounds only
        every = 1 if kernel.device.type == "cpu" else 8
        for step in range(iterations if kernel.numel() else 0):
            col = _vecmat(a, kernel)
            # column sums of the current (row-normalised) matrix are b * (K^T a)
            if tol > 0 and step % every == 0 and bool(((b * col - 1.0).abs().max() < tol).item()):
                break
            b = 1.0 / col.clamp_min(tiny)
            a = 1.0 / _matvec(kernel, b).clamp_min(tiny)
            a_steps.append(a)
            b_steps.append(b)
        if row_weights is None or col_weights is None:
            value = a.new_zeros(a.shape[:-1])
        else:
            value = (_vecmat(row_weights * a, kernel) * b * col_weights).sum(dim=-1)
        ctx.save_for_backward(kernel, row_weights, col_weights, *a_steps, *b_steps)
        ctx.rounds = len(a_steps) - 1
        return a, b, value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_a: torch.Tensor, grad_b: torch.Tensor, grad_value: torch.Tensor):  # type: ignore[override]
        kernel, row_weights, col_weights, *steps = ctx.saved_tensors
        rounds = ctx.rounds
        a_steps, b_steps = steps[: rounds + 1], steps[rounds + 1 :]
        huge = 1.0 / torch.finfo(kernel.dtype).tiny

        def through_reciprocal(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            # d(1/x)/dx = -(1/x)^2, and 0 where the clamp was active (out == 1/tiny)
            return (-grad * out * out).masked_fill_(out >= huge, 0.0)

        left, right = [], []
        if row_weights is not None and col_weights is not None:
            # value = x^T K y with x = row_weights * a, y = b * col_weights
            x = grad_value.unsqueeze(-1) * row_weights * a_steps[-1]
            y = b_steps[-1] * col_weights
            left.append(x)
            right.append(y)
            grad_a = grad_a + grad_value.unsqueeze(-1) * row_weights * _matvec(kernel, y)
            grad_b = grad_b + _vecmat(x, kernel) * col_weights
        # b_0 is the constant start: a gradient for b only flows when a round replaced it
        grad_b_out: Optional[torch.Tensor] = grad_b if rounds else None
        for t in range(rounds, 0, -1):
            grad_row = through_reciprocal(grad_a, a_steps[t])
            left.append(grad_row)
            right.append(b_steps[t])
            grad_b_t = _vecmat(grad_row, kernel)
            if grad_b_out is not None:
                grad_b_t += grad_b_out
                grad_b_out = None
            grad_col = through_reciprocal(grad_b_t, b_steps[t])
            left.append(a_steps[t - 1])
            right.append(grad_col)
            grad_a = _matvec(kernel, grad_col)
        left.append(through_reciprocal(grad_a, a_steps[0]))
        right.append(b_steps[0])
        grad_kernel = torch.bmm(torch.stack(left, dim=-1), torch.stack(right, dim=-2))
        return grad_kernel, None, None, None, None, None


def sinkhorn_scalings(
    kernel: torch.Tensor, start: torch.Tensor, *, iterations: int, tol: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row and column scalings ``(a [B, L], b [B, L])`` with ``P = a[:, :, None] * K * b[:, None, :]``.

    ``kernel`` and ``start`` come from :func:`sinkhorn_kernel`. The first step is the row
    normalisation of ``K diag(start)`` (plain NeuralSort), then up to ``iterations`` rounds of
    column then row normalisation. It stops early, before a round, once every column sum of the
    current (row-normalised) matrix is within ``tol`` of 1 (checked every round on CPU, every 8
    rounds elsewhere to avoid a device sync per round). ``start`` gets no gradient: it only
    carries the column shift that :func:`sinkhorn_kernel` took out of ``K``.
    """
    a, b, _ = _Sinkhorn.apply(kernel, start.detach(), None, None, iterations, tol)
    return a, b


def sinkhorn_weighted_sum(
    kernel: torch.Tensor,
    start: torch.Tensor,
    row_weights: torch.Tensor,
    col_weights: torch.Tensor,
    *,
    iterations: int,
    tol: float,
) -> torch.Tensor:
    """``sum_{r, j} row_weights[r] P[r, j] col_weights[j]`` per list ``[B]`` for the ``P`` of
    :func:`sinkhorn_scalings`, without forming ``P``; its gradient reaches ``K`` through the same
    single batched matmul as the Sinkhorn rounds. The weights ``[B, L]`` are constants (no
    gradient).
    """
    return _Sinkhorn.apply(kernel, start.detach(), row_weights.detach(), col_weights.detach(), iterations, tol)[2]


def compact(mask: torch.Tensor) -> torch.Tensor:
    """Indices ``[B, L]`` that move the real positions of each row first (stable)."""
    return torch.sort((~mask).to(torch.uint8), dim=-1, stable=True).indices
