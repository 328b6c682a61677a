"""CPU fast path of the pair losses: one numba call per batch from raw scores to lambdas.

RankNet (without ties), LambdaRank and the symmetric LambdaLoss weightings spend, on the short
lists of training batches, most of their CPU time outside the pairs: two sorts, gathers, the
ideal DCG, gain normalisation and pair counts, a dozen small torch ops each paying dispatch.
:func:`ranked_pair_loss` does all of it per list in compiled code: it gathers the list's real
documents, puts them in rank order (a stable sort by descending score, ties in input order, as
:func:`ltrkit.metrics.ranking.sort_order`), then in label order (a stable sort of the labels,
which also gives ``IDCG@k`` for ``G / IDCG@k``), walks the pairs of different labels once,
counts them, and scatters the lambdas back to the input positions.

Every weighting gives a pair of equal labels weight 0, and those pairs are skipped, not
computed: in label order the documents less relevant than ``u`` are a prefix, and ``u`` pairs
with that prefix alone. On MSLR-WEB30K's label distribution that is about 39% of the pairs.

The pair loop is written to vectorise (SIMD over ``j``): it reads only contiguous per-list
arrays (the rank-gap term, gathered by the pair's rank distance, is loaded in a loop of its
own), writes each pair's lambda to a scratch row that a second loop subtracts (a
read-modify-write of the lambdas inside the pair loop defeats LLVM's alias checks), and does no
libm call: ``e = exp(-|z|)`` is the ratio ``min(E_i, E_j) / max(E_i, E_j)`` of per-document
exponentials ``E = exp(sigma s - c)`` (a list whose scores spread over more than 700, a diverged
model, takes the torch path), ``log1p(e) = 2 atanh(e / (2 + e))`` a short series (relative error below ``1e-10``),
and ``sigmoid`` and the series share one division. Everything is computed in float64.

Threads: at ``torch.get_num_threads() == 1`` a serial build runs; otherwise lists run in
parallel (``prange``, ``nogil``) on that many numba threads. Each list is summed by one thread in
a fixed order, so the result does not depend on the thread count.

The kernel trusts nothing: it checks every array shape against the scores' ``[B, L]`` (and
``top <= L``) before reading and returns an error code instead of raising; the caller turns the
code into a ``ValueError``. A list with a non-finite real score, or scores spread over more than
700, is flagged (its pair count is -1) and the caller takes the torch path, whose NaN/inf
semantics are the reference. Compiled on first
use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import contextlib
import math
import types
from typing import Iterator, Optional, Tuple

import numba
import numpy as np
import torch
from numba import njit, prange

OK = 0
BAD_SHAPE = 1
BAD_TOP = 2
SHORT_VECTORS = 3

_MESSAGES = {
    BAD_SHAPE: "labels, mask and outputs must have the shape of the scores",
    BAD_TOP: "top must lie in [0, L]",
    SHORT_VECTORS: "the position vectors must hold at least L values",
}

#: the pair weights' per-document quantity ``g``: the labels themselves, or ``gain(l) / IDCG@k``
GAINS = {"labels": 0, "exp2": 1, "linear": 2}

#: dtypes the kernel serves
DTYPES = (torch.float32, torch.float64)

# Value-safe fast-math flags (no nnan/ninf: NaN and infinite scores propagate as in torch) and
# numpy's error model (no zero-division checks in the pair loop)
_FASTMATH = {"nsz", "arcp", "contract", "reassoc", "afn"}
# half the widest score spread (sigma s) whose centred exponentials stay finite and normal
_EXP_SPREAD = 350.0


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FASTMATH, inline="always")
def _pair_row(x_u, exp_u, gain_u, discount_u, position_u, count, x, shifted, gains, discounts, positions, rank_gaps, has_gaps, uniform, signs_only, max_gap, max_cost, scratch):
    """Pairs of document ``u`` with the first ``count`` documents of the candidate arrays (each
    less relevant than ``u``): their summed weighted cost and the lambda of ``u`` (each
    candidate's, negated, left in ``scratch[j]``)."""
    total = 0.0
    row = 0.0
    # unsigned indices: numba then emits no negative-index wraparound, which turns every load of
    # the vectorised loop into a gather. The rank-gap term is gathered in a loop of its own:
    # inside the pair loop the gather keeps LLVM from vectorising it
    end = np.uint64(count)
    if has_gaps:
        for j in range(end):
            position_j = positions[j]
            scratch[j] = rank_gaps[position_j - position_u if position_j > position_u else position_u - position_j]
    for j in range(end):
        gap = gains[j] - gain_u
        if signs_only:
            weight = (1.0 if gap > 0 else 0.0) - (1.0 if gap < 0 else 0.0)
        else:
            weight = gap * (uniform + abs(discount_u - discounts[j]) + (scratch[j] if has_gaps else 0.0))
        # z: the logistic argument of ranking the more relevant of the two lower
        difference = x_u - x[j]
        z = -difference if weight < 0 else difference
        tail = min(exp_u, shifted[j]) / max(exp_u, shifted[j])
        # log1p(e) = 2 atanh(t), t = e / (2 + e) <= 1/3 for e = exp(-|z|) in (0, 1]: no
        # cancellation, and the series to t^19 has relative error < 2e-11. One division serves
        # t and sigmoid(z) = (1 or e) / (1 + e)
        inverse = 1.0 / ((1.0 + tail) * (2.0 + tail))
        t = tail * (1.0 + tail) * inverse
        t2 = t * t
        log1p_tail = 2.0 * t * (1.0 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 * (
            1.0 / 11 + t2 * (1.0 / 13 + t2 * (1.0 / 15 + t2 * (1.0 / 17 + t2 / 19)))))))))
        clamped = z > max_gap
        cost = max_cost if clamped else max(z, 0.0) + log1p_tail
        sigmoid = (1.0 if z >= 0 else tail) * (2.0 + tail) * inverse
        grad = 0.0 if clamped else weight * sigmoid
        total += abs(weight) * cost
        row += grad
        scratch[j] = grad
    return total, row


def _pair_lists(scores, labels, valid, ideal_discounts, discounts, rank_gaps, has_gaps, by_score, gain, cutoff, uniform, top, signs_only, sigma, max_gap, max_cost, scale, value, lambdas, pairs):
    batch, length = scores.shape
    if (
        labels.shape != scores.shape or valid.shape != scores.shape or lambdas.shape != scores.shape
        or value.shape[0] != batch or pairs.shape[0] != batch
    ):
        return BAD_SHAPE
    if top < 0 or top > length:
        return BAD_TOP
    if ideal_discounts.shape[0] < length or discounts.shape[0] < length or rank_gaps.shape[0] < length:
        return SHORT_VECTORS
    factor = sigma * scale
    for b in prange(batch):
        # the list's real documents, in input order, then in rank order
        index = np.empty(length, dtype=np.int64)
        n = 0
        finite = True
        for j in range(length):
            lambdas[b, j] = 0.0
            if valid[b, j]:
                finite = finite and math.isfinite(scores[b, j])
                index[n] = j
                n += 1
        value[b] = 0.0
        pairs[b] = 0
        if not finite:
            pairs[b] = -1
            continue
        if by_score:
            keys = np.empty(n)
            for p in range(n):
                keys[p] = -scores[b, index[p]]
            index[:n] = index[:n][np.argsort(keys, kind="mergesort")]
        # the per-document arrays are in label order (ties in rank order), so that the less
        # relevant documents of each are a prefix (see the module docstring); ``positions`` maps back
        ranked_labels = np.empty(n)
        for p in range(n):
            ranked_labels[p] = labels[b, index[p]]
        order = np.argsort(ranked_labels, kind="mergesort")
        x, shifted, gains, ranked_discounts, lambda_l, scratch = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        positions = np.empty(n, dtype=np.uint64)
        low = math.inf
        high = -math.inf
        for u in range(n):
            position = order[u]
            x[u] = sigma * scores[b, index[position]]
            low = min(low, x[u])
            high = max(high, x[u])
            ranked_discounts[u] = discounts[position]
            positions[u] = position
            lambda_l[u] = 0.0
        if gain == 0:
            for u in range(n):
                gains[u] = ranked_labels[order[u]]
        else:
            idcg = 0.0
            for p in range(min(cutoff, n)):
                label = ranked_labels[order[n - 1 - p]]
                idcg += ((2.0**label - 1.0) if gain == 1 else label) * ideal_discounts[p]
            if not idcg > 0:
                # g = 0 for every document, so every pair weighs 0: value, lambdas and count stay 0
                continue
            for u in range(n):
                label = ranked_labels[order[u]]
                gains[u] = ((2.0**label - 1.0) if gain == 1 else label) / idcg
        # exp(-|x_i - x_j|) = min(E_i, E_j) / max(E_i, E_j) with E = exp(x - c): one exp per
        # document. Centred on the midpoint, E stays within exp(+-350) while the spread is below
        # 700; a wider list (a diverged model) is flagged for the torch path
        if not high - low < 2 * _EXP_SPREAD and n > 1:
            pairs[b] = -1
            continue
        centre = 0.5 * (low + high) if n > 0 else 0.0
        for u in range(n):
            shifted[u] = math.exp(x[u] - centre)
        # The documents ranked in the top, in label order (none are needed when top >= n: every
        # document is). A document ranked there pairs with every less relevant one; one ranked
        # below, with the less relevant ones ranked there
        truncated = top < n
        if truncated:
            heads = np.nonzero(positions < top)[0]
            x_h, shifted_h, gains_h, discounts_h, lambda_h = x[heads], shifted[heads], gains[heads], ranked_discounts[heads], np.zeros(heads.shape[0])
            positions_h = positions[heads]
        else:
            heads, x_h, shifted_h, gains_h, discounts_h, lambda_h, positions_h = order[:0], x, shifted, gains, ranked_discounts, lambda_l, positions
        n_heads = heads.shape[0]
        total = 0.0
        count = 0
        below = 0  # documents of lower label than u: u's first index in label order
        heads_below = 0  # of them, those ranked in the top
        for u in range(n):
            if u > 0 and ranked_labels[order[u]] != ranked_labels[order[u - 1]]:
                below = u
                while heads_below < n_heads and heads[heads_below] < below:
                    heads_below += 1
            if not truncated or positions[u] < top:
                partners, x_p, shifted_p, gains_p, discounts_p, positions_p, lambda_p = below, x, shifted, gains, ranked_discounts, positions, lambda_l
            else:
                partners, x_p, shifted_p, gains_p, discounts_p, positions_p, lambda_p = heads_below, x_h, shifted_h, gains_h, discounts_h, positions_h, lambda_h
            cost, row = _pair_row(
                x[u], shifted[u], gains[u], ranked_discounts[u], positions[u], partners, x_p, shifted_p, gains_p, discounts_p,
                positions_p, rank_gaps, has_gaps, uniform, signs_only, max_gap, max_cost, scratch,
            )
            for j in range(np.uint64(partners)):
                lambda_p[j] -= scratch[j]
            total += cost
            count += partners
            lambda_l[u] += row
        for h in range(n_heads):
            lambda_l[heads[h]] += lambda_h[h]
        value[b] = total * scale
        pairs[b] = count
        for u in range(n):
            lambdas[b, index[order[u]]] = lambda_l[u] * factor
    return OK


def _build(name: str, *, parallel: bool):
    """A numba build of :func:`_pair_lists` under its own name: numba keys its on-disk cache by
    the function's name and bytecode, not by its flags, so two builds of one function would load
    each other's machine code."""
    function = types.FunctionType(_pair_lists.__code__, _pair_lists.__globals__, name)
    function.__qualname__ = name
    return njit(parallel=parallel, nogil=True, cache=True, error_model="numpy", fastmath=_FASTMATH)(function)


# one thread: the serial build, which pays no thread-pool wake-up per call (on a busy machine the
# parallel build's pool costs more than the pairs of a training batch)
_pair_kernel_serial = _build("_pair_lists_serial", parallel=False)
_pair_kernel_parallel = _build("_pair_lists_parallel", parallel=True)


def applies(scores: torch.Tensor) -> bool:
    """Whether the numba kernel serves ``scores``: a CPU float32/float64 tensor."""
    return scores.device.type == "cpu" and scores.dtype in DTYPES


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """Run numba's parallel loops on ``threads`` threads (at most numba's pool)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _array(tensor: Optional[torch.Tensor], length: int, dtype: type = np.float64) -> np.ndarray:
    """``tensor`` as a contiguous numpy array of ``dtype``; None: ``length`` zeros."""
    if tensor is None:
        return np.zeros(length, dtype=dtype)
    return np.ascontiguousarray(tensor.detach().numpy(), dtype=dtype)


def ranked_pair_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    sigma: float,
    top: int,
    by_score: bool = True,
    gain: str = "labels",
    k: Optional[int] = None,
    discounts: Optional[torch.Tensor] = None,
    rank_gaps: Optional[torch.Tensor] = None,
    signs_only: bool = False,
    max_cost: Optional[float] = None,
    scale: float = 1.0,
) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    r"""Value ``[B]``, lambdas ``[B, L]`` and pair counts ``[B]`` of a weighted logistic pair cost.

    Each list's real documents (``mask``) are put in rank order (``by_score``: descending score,
    ties in input order; otherwise input order) at positions ``p = 0..n-1``; then

    .. math::
        w_{ij} = (g_j - g_i)\, T_{ij},\quad T_{ij} = |d_i - d_j| + t_{j - i},\quad
        \mathrm{value} = s \sum_{i < j,\ i < top} |w_{ij}| \min(\mathrm{softplus}(z_{ij}), c),\quad
        z_{ij} = \mathrm{sign}(w_{ij})\, \sigma (s_i - s_j)

    over positions ``i < j`` with ``i < top``. ``g`` is the label (``gain="labels"``) or
    ``gain(l) / IDCG@k`` (``"exp2"``: ``2^l - 1``, ``"linear"``: ``l``; IDCG@k over the list's
    ideal order, ``k`` None: the whole list; a list with ``IDCG@k <= 0`` has ``g = 0`` and no
    pair). The ``|d_i - d_j|`` term is present when ``discounts`` (``[>= L]``, by position) is
    given, ``t`` when ``rank_gaps`` (``[>= L]``, by position gap) is, and ``T = 1`` when neither
    is. ``signs_only`` weighs a pair by ``sign(g_j - g_i)``. ``c = max_cost`` (None: infinite)
    clamps a pair's cost, and a clamped pair has gradient 0. The lambdas ``s \sigma \sum_j
    w_{ij} \mathrm{sigmoid}(z_{ij})`` (``-`` the same for ``j``) are the value's gradient with
    respect to the scores, at the documents' input positions (0 at padding). The count is the
    number of those pairs whose labels differ (0 where ``IDCG@k <= 0``).

    ``scores`` float32 or float64 on CPU; ``labels`` of its shape (cast to float64), ``mask``
    bool. Returns tensors in the scores' dtype (counts int64), or None when a real score is NaN
    or infinite: the caller then takes the torch path, whose NaN/inf semantics are the
    reference (also when the scores of a list spread over more than ``700 / sigma``).

    Raises:
        ValueError: shapes that disagree with ``scores`` ``[B, L]``, ``top`` outside
            ``[0, L]``, position vectors shorter than ``L``.
    """
    dtype = scores.dtype
    batch, length = scores.shape
    value = np.empty(batch, dtype=np.float64)
    lambdas = np.empty((batch, length), dtype=np.float64)
    pairs = np.empty(batch, dtype=np.int64)
    max_gap = math.inf if max_cost is None else math.log(math.expm1(max_cost))
    uniform = 1.0 if discounts is None and rank_gaps is None else 0.0
    cutoff = length if k is None else min(int(k), length)
    ideal_discounts = (1.0 / np.log2(np.arange(length, dtype=np.float64) + 2.0)) if gain != "labels" else np.zeros(length)
    args = (
        np.ascontiguousarray(scores.detach().numpy()), _array(labels, length), _array(mask, length, np.bool_), ideal_discounts,
        _array(discounts, length), _array(rank_gaps, length), rank_gaps is not None, bool(by_score), GAINS[gain], cutoff, uniform, int(top),
        bool(signs_only), float(sigma), max_gap, math.inf if max_cost is None else float(max_cost), float(scale), value, lambdas, pairs,
    )
    threads = torch.get_num_threads()
    if threads == 1 or batch == 1:
        code = _pair_kernel_serial(*args)
    else:
        with _numba_threads(threads):
            code = _pair_kernel_parallel(*args)
    if code != OK:
        raise ValueError(f"pair kernel: {_MESSAGES[code]} (scores {tuple(scores.shape)}, top {top})")
    if (pairs < 0).any():
        return None
    return torch.from_numpy(value).to(dtype), torch.from_numpy(lambdas).to(dtype), torch.from_numpy(pairs)
