"""Chunked pairwise kernels behind the factorised RankNet and LambdaRank losses and LambdaLoss.

Each kernel walks the upper triangle of the ``[B, L, L]`` pair matrix in blocks of rows (each
unordered pair once), so memory stays ``O(B * L * rows_per_chunk)``, and returns the per-list
loss value ``[B]`` together with the per-document lambdas ``[B, L]`` (the gradient of that value
with respect to the scores). :class:`LambdaFunction` computes both in forward and saves only the
lambdas; backward is one multiplication. One kernel, :func:`lambda_value_and_lambdas`, serves
RankNet (sign weights), LambdaRank (``|dNDCG|``) and the symmetric LambdaLoss weightings
(position weights per block): about a dozen elementwise passes per block into reused scratch
tensors, against about twice that (and an autograd graph over the pairs) before. These are the
GPU, half-precision and long-list path: on CPU the losses of :mod:`ltrkit.losses.pairwise` hand
most batches to the compiled kernel of :mod:`ltrkit.losses._pair_numba` instead.

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

# Elements per [B, rows, cols] block: 2^18 float32 values (1 MiB per scratch tensor). Small
# blocks keep a block's temporaries in cache, large ones amortise per-op dispatch; on a 2-core
# CPU (64 lists, L = 128..1024) 2^18..2^20 timed best among 2^14..2^22, and with the fused
# kernel (training batches of L = 27..240) 2^15..2^18 time within noise of each other.
BLOCK_ELEMENTS = 1 << 18

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
        raise PairMemoryError(f"LTRKIT_PAIR_MEMORY_GIB must be a positive number of GiB, got {text!r}")
    return gib * 2**30


class PairMemoryError(ValueError):
    """A quadratic loss refused a batch whose pair tensors would exceed ``LTRKIT_PAIR_MEMORY_GIB``
    (or that variable is not a positive number): a problem of the run's settings, which the CLI
    reports as one line with exit code 2."""


def check_pair_memory(loss: str, lists: int, rows: int, cols: int) -> None:
    """Refuse, before allocating, a call of quadratic loss ``loss`` whose pair tensors exceed the limit.

    ``lists * rows * cols * PAIR_BYTES[loss]`` bytes are compared with :func:`pair_memory_limit`,
    so a list of 100,000 documents gets a one-line error naming its length, the memory it would
    need and the alternatives, instead of an out-of-memory crash (or minutes of swapping).

    Raises:
        PairMemoryError: the estimate exceeds the limit, or the limit setting is bad.
    """
    need = lists * rows * cols * PAIR_BYTES[loss]
    limit = pair_memory_limit()
    if need > limit:
        raise PairMemoryError(
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


# A term function maps (rows, cols, work) to the two [B, rows, cols] tensors of a block: ``cost``
# (each pair's cost times its weight, 0 for non-pairs) and ``grad`` (its derivative with respect
# to s_i; the derivative with respect to s_j is -grad). ``work`` holds WORK_BUFFERS scratch
# tensors of the block's shape that the function may overwrite (and return).
PairTerms = Callable[[slice, slice, Tuple[torch.Tensor, ...]], Tuple[torch.Tensor, torch.Tensor]]
WORK_BUFFERS = 4


def _accumulate(
    terms: PairTerms, like: torch.Tensor, valid: torch.Tensor, top: int, block_elements: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sum a symmetric pair cost over the pairs with at least one index below ``top``.

    Rows ``[a, b)`` are paired with columns ``[a, L)`` only, so each unordered pair is visited
    once (plus the small ``[a, b) x [a, b)`` square, where it is visited twice and weighs half;
    its padded rows weigh nothing): about half the work of the full ``L x L`` matrix. Each block
    takes as many rows as fit in ``block_elements`` at its width, so the blocks stay the same
    size as the columns narrow. Row sums of ``grad`` go to the rows, minus column sums of the
    off-square part to the columns. The scratch tensors are allocated once per call and reused
    by every block (fresh multi-MiB tensors per block cost page faults comparable to the math).
    """
    batch, length = like.shape
    value = like.new_zeros(batch)
    lambdas = torch.zeros_like(like)
    if top <= 0 or batch == 0:
        return value, lambdas
    capacity = min(max(block_elements, batch * length), batch * top * length)
    scratch = like.new_empty(WORK_BUFFERS, capacity)
    half_valid = valid * 0.5
    start = 0
    while start < top:
        width_cols = length - start
        stop = min(top, start + rows_per_chunk(batch, width_cols, block_elements))
        width = stop - start
        size = batch * width * width_cols
        work = scratch[:, :size].view(WORK_BUFFERS, batch, width, width_cols).unbind(0)
        cost, grad = terms(slice(start, stop), slice(start, length), work)
        cost[:, :, :width].mul_(half_valid[:, start:stop, None])
        value += cost.sum(dim=(1, 2))
        lambdas[:, start:stop] += grad.sum(dim=2)
        if stop < length:
            lambdas[:, stop:] -= grad[:, :, width:].sum(dim=1)
        start = stop
    return value, lambdas


def _is_padding_last(valid: torch.Tensor) -> bool:
    """Whether every list holds its real documents first and its padding after them."""
    return bool((valid[:, 1:] <= valid[:, :-1]).all()) if valid.shape[-1] > 1 else True


def lambda_value_and_lambdas(
    scores: torch.Tensor,
    gains: torch.Tensor,
    valid: torch.Tensor,
    *,
    sigma: float,
    top: int,
    discounts: Optional[torch.Tensor] = None,
    rank_gaps: Optional[torch.Tensor] = None,
    signs_only: bool = False,
    max_cost: Optional[float] = None,
    padding_last: Optional[bool] = None,
    scale: float = 1.0,
    block_elements: int = BLOCK_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Value ``[B]`` and lambdas ``[B, L]`` of a weighted logistic pair cost, in one pass over the pairs.

    .. math::
        w_{ij} = (g_j - g_i)\, T_{ij},\qquad
        \mathrm{value} = \sum_{\{i, j\}} |w_{ij}|\ \min\bigl(\mathrm{softplus}(z_{ij}), c\bigr),\quad
        z_{ij} = \mathrm{sign}(w_{ij})\, \sigma (s_i - s_j)

    over unordered pairs of real documents with at least one index below ``top``: the cost of
    ranking the document with the larger ``g`` (the more relevant one) below the other is the
    logistic loss of their score gap, weighted by ``|w|``. ``signs_only`` uses
    ``sign(g_j - g_i)`` as the weight (RankNet: every pair with different labels weighs 1).
    ``T_ij = |d_i - d_j| + t_{|i-j|}`` depends on the positions only: the discount-gap term when
    ``discounts`` ``d`` is given, the rank-gap term when ``rank_gaps`` ``t`` is (NDCG-Loss2), and
    ``T = 1`` when neither is. ``c = max_cost`` (None:
    infinite) clamps a pair's cost; a clamped pair has gradient 0. ``lambda_i = sigma *
    sum_j w_ij sigmoid(z_ij) * [softplus(z_ij) < c]`` is the gradient of the value.

    One block of pairs costs about a dozen elementwise passes (score gaps, weights, signs,
    sigmoid, softplus, products and the three sums) into four reused scratch tensors.

    Args:
        scores: ``[B, L]`` scores (padding any finite value).
        gains: ``[B, L]`` the per-document quantity whose order defines the pairs (labels,
            or ``G / IDCG``); it must be 0 at padding.
        valid: ``[B, L]`` float mask (1 real, 0 padding).
        sigma: steepness.
        top: rows ``[0, top)`` only (pairs with at least one document there).
        discounts: ``[L]`` per-position values whose absolute gaps enter ``T``, or None.
        rank_gaps: ``[L]`` values indexed by the position gap ``|i - j|`` that enter ``T``, or None.
        signs_only: weigh every pair by the sign of its gain gap only.
        max_cost: the clamp ``c``, or None.
        padding_last: whether every list's padding follows its real documents (True for lists
            in rank order; None: checked here).
        scale: a factor on the value and the lambdas (``1 / ln 2``: costs in bits).
        block_elements: scratch size per block (values per ``[B, rows, cols]`` tensor).
    """
    if padding_last is None:
        padding_last = _is_padding_last(valid)
    scaled = scores.masked_fill(valid == 0, 0.0)
    if sigma != 1.0:
        scaled.mul_(sigma)
    # softplus(z) > c  <=>  z > log(e^c - 1): clamp the pairs past that point
    max_gap = None if max_cost is None else math.log(math.expm1(max_cost))
    if max_gap is not None and bool(valid.any()):
        spread = (scaled.masked_fill(valid == 0, -math.inf).amax(dim=-1) - scaled.masked_fill(valid == 0, math.inf).amin(dim=-1))
        if not bool((spread[valid.any(dim=-1)] > max_gap).any()):
            max_gap = None  # no pair can reach the clamp: skip its two extra passes

    positions = torch.arange(scores.shape[-1], device=scores.device)

    def pair_weights(rows: slice, cols: slice) -> torch.Tensor:
        block = 0.0
        if rank_gaps is not None:
            block = rank_gaps[(positions[rows, None] - positions[None, cols]).abs_()]
        if discounts is not None:
            block = block + (discounts[rows, None] - discounts[None, cols]).abs_()
        return block

    def terms(rows: slice, cols: slice, work: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
        gap, weight, sign, grad = work
        torch.sub(scaled[:, rows, None], scaled[:, None, cols], out=gap)
        # g_j - g_i v_j: the gain gap, 0 for padded columns (their own g is 0 already)
        torch.addcmul(gains[:, None, cols], gains[:, rows, None], valid[:, None, cols], value=-1.0, out=weight)
        if not padding_last:
            weight.mul_(valid[:, rows, None])
        if signs_only:
            weight.sign_()
            sign = weight
        else:
            if discounts is not None or rank_gaps is not None:
                weight.mul_(pair_weights(rows, cols))
            torch.sign(weight, out=sign)
        z = gap.mul_(sign)
        torch.sigmoid(z, out=grad).mul_(weight)
        if max_gap is not None:
            over = z > max_gap
            grad.masked_fill_(over, 0.0)
            z.masked_fill_(over, max_gap)
        cost = torch.nn.functional.softplus(z, out=work[2] if signs_only else sign)
        return cost.mul_(weight.abs_()), grad

    value, lambdas = _accumulate(terms, scores, valid, top, block_elements)
    factor = sigma * scale
    lambdas.mul_(valid if factor == 1.0 else valid * factor)
    return (value if scale == 1.0 else value.mul_(scale)), lambdas


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
    Without ties this is :func:`lambda_value_and_lambdas` with ``signs_only``.
    """
    length = scores.shape[-1]
    top = length if top is None else min(top, length)
    valid = mask.to(scores.dtype)
    if not include_ties:
        return lambda_value_and_lambdas(
            scores, labels * valid, valid, sigma=sigma, top=top, signs_only=True, block_elements=block_elements
        )
    scores = scores.masked_fill(~mask, 0.0)

    def terms(rows: slice, cols: slice, work: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
        x = scores[:, rows, None] - scores[:, None, cols]
        if sigma != 1.0:
            x.mul_(sigma)
        pair = valid[:, rows, None] * valid[:, None, cols]
        width = rows.stop - rows.start
        diagonal = torch.arange(width, device=x.device)
        pair[:, diagonal, diagonal] = 0.0
        # (1 + sign(l_i - l_j)) / 2, from the sign of l_j - l_i
        target = torch.sub(labels[:, None, cols], labels[:, rows, None]).sign_().neg_().add_(1.0).mul_(0.5)
        # C = softplus(-x) + (1 - target) x ;  dC/dx = sigmoid(x) - target
        grad = torch.sigmoid(x).sub_(target).mul_(pair)
        cost = torch.nn.functional.softplus(-x).add_(x.mul_(target.neg_().add_(1.0))).mul_(pair)
        return cost, grad.mul_(sigma)

    return _accumulate(terms, scores, valid, top, block_elements)


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

    Inputs are in rank order (position 0 = rank 1, padding last): ``gains`` are ``G_i / IDCG`` (0 for
    padding and for lists with IDCG 0), ``discounts`` ``[L]`` the truncated ``1 / log2(1 + rank)``
    of each position (0 beyond ``top``), ``valid`` the float mask. A pair weighs
    ``|dNDCG_ij| = |g_i - g_j| * |d_i - d_j|``; only pairs with at least one document among the
    first ``top`` positions can weigh anything, so rows run over ``[0, top)`` only.
    """
    return lambda_value_and_lambdas(
        scores, gains, valid, sigma=sigma, top=top, discounts=discounts, padding_last=True, block_elements=block_elements
    )


class LambdaFunction(torch.autograd.Function):
    """``forward(scores [B, L], value_and_lambdas) -> [B]`` with the lambdas as the gradient.

    ``value_and_lambdas(scores)`` (one of the kernels above, its other inputs bound) computes each
    list's value and the lambdas ``[B, L]`` in forward; only the lambdas are saved and backward is
    ``grad[:, None] * lambdas``. No graph over the pairs is built; second derivatives are not
    supported.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, scores: torch.Tensor, value_and_lambdas: Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        value, lambdas = value_and_lambdas(scores.detach())
        ctx.save_for_backward(lambdas)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value: torch.Tensor) -> Tuple[Optional[torch.Tensor], None]:  # type: ignore[override]
        (lambdas,) = ctx.saved_tensors
        return grad_value.unsqueeze(-1) * lambdas, None
