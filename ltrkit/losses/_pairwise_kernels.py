"""Chunked pairwise kernels behind the factorised RankNet and LambdaRank losses.

Each kernel walks the upper triangle of the ``[B, L, L]`` pair matrix in blocks of rows (each
unordered pair once), so memory stays ``O(B * L * rows_per_chunk)``, and returns the per-list
loss value ``[B]`` together with the per-document lambdas ``[B, L]`` (the gradient of that value
with respect to the scores). The autograd Functions compute both in forward and save only the
lambdas; backward is one multiplication.

Shared notation: ``x_ij = sigma * (s_i - s_j)``; for a pair whose first document is the more
relevant one the RankNet cost is ``softplus(-x_ij) = -log sigmoid(x_ij)`` and
``dC/ds_i = -sigma * sigmoid(-x_ij)``.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

# Elements per [B, rows, cols] block: 2^18 float32 values (1 MiB per temporary). Small blocks
# keep a block's temporaries in cache, large ones amortise per-op dispatch; on a 2-core CPU
# (64 lists, L = 128..1024) 2^18..2^20 timed best among 2^14..2^22.
BLOCK_ELEMENTS = 1 << 18

# A term function maps (rows, cols) slices to the two [B, rows, cols] tensors of a block:
# ``cost`` (each pair's cost times its weight, 0 for non-pairs) and ``grad`` (its derivative
# with respect to s_i; the derivative with respect to s_j is -grad).
PairTerms = Callable[[slice, slice], Tuple[torch.Tensor, torch.Tensor]]


#: Default ceiling, in GiB, on the pair tensors one call of a quadratic loss may allocate;
#: the environment variable ``LTRKIT_PAIR_MEMORY_GIB`` overrides it.
DEFAULT_PAIR_MEMORY_GIB = 4.0

#: Peak bytes per ``[B, rows, cols]`` cell of the losses that build whole pair tensors: measured
#: as the growth of peak RSS over one float32 forward + backward on CPU (B = 1, L = 3,000),
#: rounded up. They hold several pair-shaped temporaries plus what autograd saves.
PAIR_BYTES = {
    "lambdaloss": 40,
    "ranknet_matrix": 32,
    "pairwise_hinge": 20,
    "approx_ndcg": 16,
    "neural_ndcg": 16,
}

_ALTERNATIVES = (
    "use the chunked ranknet or lambdarank loss (memory O(B L); their k option restricts the pairs to the top k), "
    "cap the lists with training.max_slate_length, lower training.max_docs_per_batch, or raise LTRKIT_PAIR_MEMORY_GIB"
)


def pair_memory_limit() -> float:
    """The ceiling in bytes: ``LTRKIT_PAIR_MEMORY_GIB`` (a positive number of GiB) or the default.

    Raises:
        ValueError: if the variable is set to anything but a positive finite number.
    """
    text = os.environ.get("LTRKIT_PAIR_MEMORY_GIB")
    if text is None or not text.strip():
        return DEFAULT_PAIR_MEMORY_GIB * 2**30
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (gib > 0 and math.isfinite(gib)):
        raise ValueError(f"LTRKIT_PAIR_MEMORY_GIB must be a positive number of GiB, got {text!r}")
    return gib * 2**30


def check_pair_memory(loss: str, lists: int, rows: int, cols: int) -> None:
    """Refuse, before allocating, a call of quadratic loss ``loss`` whose pair tensors exceed the limit.

    ``lists * rows * cols * PAIR_BYTES[loss]`` bytes are compared with :func:`pair_memory_limit`,
    so a list of 100,000 documents gets a one-line error naming its length, the memory it would
    need and the alternatives, instead of an out-of-memory crash (or minutes of swapping).

    Raises:
        ValueError: the estimate exceeds the limit.
    """
    need = lists * rows * cols * PAIR_BYTES[loss]
    limit = pair_memory_limit()
    if need > limit:
        raise ValueError(
            f"{loss}: a batch of {lists} list(s) of {cols:,} documents needs about {_size(need)} for its "
            f"[{lists}, {rows:,}, {cols:,}] pair tensors, over the limit of {limit / 2**30:g} GiB; {_ALTERNATIVES}"
        )


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def largest_list(loss: str, lists: int = 1) -> int:
    """The longest list ``L`` for which ``lists`` lists pass :func:`check_pair_memory` (``rows = cols = L``)."""
    return math.isqrt(int(pair_memory_limit() // (lists * PAIR_BYTES[loss])))


def rows_per_chunk(batch: int, cols: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``[batch, rows, cols]`` block fit in ``block_elements`` values (>= 1)."""
    return max(1, block_elements // max(1, batch * cols))


def _accumulate(terms: PairTerms, like: torch.Tensor, top: int, block_elements: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sum a symmetric pair cost over the pairs with at least one index below ``top``.

    Rows ``[a, b)`` are paired with columns ``[a, L)`` only, so each unordered pair is visited
    once (plus the small ``[a, b) x [a, b)`` square, where it is visited twice and weighs half):
    about half the work of the full ``L x L`` matrix. Row sums of ``grad`` go to the rows, minus
    column sums of the off-square part to the columns.
    """
    batch, length = like.shape
    value = like.new_zeros(batch)
    lambdas = torch.zeros_like(like)
    step = rows_per_chunk(batch, length, block_elements)
    for start in range(0, top, step):
        stop = min(top, start + step)
        width = stop - start
        cost, grad = terms(slice(start, stop), slice(start, length))
        cost[:, :, :width].mul_(0.5)
        value += cost.sum(dim=(1, 2))
        lambdas[:, start:stop] += grad.sum(dim=2)
        if stop < length:
            lambdas[:, stop:] -= grad[:, :, width:].sum(dim=1)
    return value, lambdas


def ranknet_value_and_lambdas(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    sigma: float,
    include_ties: bool,
    top: Optional[int] = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list RankNet cost summed over unordered pairs ``[B]`` and its lambdas ``[B, L]``.

    ``lambda_i = sum_j sigma * (sigmoid(x_ij) - target_ij)`` over the pairs of ``i``. With
    ``top``, only pairs with at least one index below ``top`` count (rows run over ``[0, top)``:
    memory and time ``O(B L top)``); the caller puts the documents in rank order first.
    """
    scores = scores.masked_fill(~mask, 0.0)
    valid = None if bool(mask.all()) else mask.to(scores.dtype)

    def terms(rows: slice, cols: slice) -> Tuple[torch.Tensor, torch.Tensor]:
        x = scores[:, rows, None] - scores[:, None, cols]
        if sigma != 1.0:
            x.mul_(sigma)
        # sign of l_j - l_i: +1 when the column document is the more relevant one
        flip = torch.sub(labels[:, None, cols], labels[:, rows, None]).sign_()
        if valid is not None:
            flip.mul_(valid[:, rows, None]).mul_(valid[:, None, cols])
        if include_ties:
            pair = torch.ones_like(x) if valid is None else valid[:, rows, None] * valid[:, None, cols]
            width = rows.stop - rows.start
            diagonal = torch.arange(width, device=x.device)
            pair[:, diagonal, diagonal] = 0.0
            target = flip.neg_().add_(1.0).mul_(0.5)  # (1 + sign(l_i - l_j)) / 2
            # C = softplus(-x) + (1 - target) x ;  dC/dx = sigmoid(x) - target
            grad = torch.sigmoid(x).sub_(target).mul_(pair)
            cost = torch.nn.functional.softplus(-x).add_(x.mul_(target.neg_().add_(1.0))).mul_(pair)
            return cost, grad.mul_(sigma)
        # pairs with l_i > l_j cost softplus(-x), pairs with l_i < l_j cost softplus(x): softplus(flip x)
        z = x.mul_(flip)
        grad = torch.sigmoid(z).mul_(flip).mul_(sigma)
        cost = torch.nn.functional.softplus(z).mul_(flip.abs_())
        return cost, grad

    length = scores.shape[-1]
    return _accumulate(terms, scores, length if top is None else min(top, length), block_elements)


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
    among the first ``top`` positions can weigh anything, so rows run over ``[0, top)`` only.
    """
    masked = not bool((valid != 0).all())

    def terms(rows: slice, cols: slice) -> Tuple[torch.Tensor, torch.Tensor]:
        x = scores[:, rows, None] - scores[:, None, cols]
        if sigma != 1.0:
            x.mul_(sigma)
        # signed weight: (g_j - g_i) |d_i - d_j|, positive when the column document is more relevant
        weight = torch.sub(discounts[:, rows, None], discounts[:, None, cols]).abs_()
        weight.mul_(torch.sub(gains[:, None, cols], gains[:, rows, None]))
        if masked:
            weight.mul_(valid[:, rows, None]).mul_(valid[:, None, cols])
        z = x.mul_(torch.sign(weight))
        grad = torch.sigmoid(z).mul_(weight).mul_(sigma)
        cost = torch.nn.functional.softplus(z).mul_(weight.abs_())
        return cost, grad

    return _accumulate(terms, scores, top, block_elements)


class RankNetFunction(torch.autograd.Function):
    """Factorised RankNet: ``forward(scores [B, L], labels, mask, sigma, include_ties, top) -> [B]``.

    Forward computes each list's cost and the lambdas in row chunks and saves only the lambdas
    ``[B, L]``; backward returns ``grad[:, None] * lambdas``. No graph over the pairs is built.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, sigma: float, include_ties: bool,
        top: Optional[int],
    ) -> torch.Tensor:
        value, lambdas = ranknet_value_and_lambdas(
            scores.detach(), labels, mask, sigma=sigma, include_ties=include_ties, top=top
        )
        ctx.save_for_backward(lambdas)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None, None, None, None]:  # type: ignore[override]
        (lambdas,) = ctx.saved_tensors
        return grad_value.unsqueeze(-1) * lambdas, None, None, None, None, None


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
