"""CPU fast path of the fused pair kernel: one numba pass over each list's pairs.

:func:`ltrkit.losses._pairwise_kernels.lambda_value_and_lambdas` computes, for each list, a
weighted logistic pair cost and its gradient with respect to the scores (the lambdas). On CPU its
torch form spends about a dozen elementwise passes per block of pairs, and on the short lists of
training batches (tens of documents) mostly per-op dispatch. :func:`pair_value_and_lambdas` walks
each list's unordered pairs once instead: the score gap, the weight (gain gap times the position
term, computed from the ``[L]`` discount and rank-gap vectors) and ``e = exp(-|z|)``, from which
both ``sigmoid(z)`` and ``softplus(z) = max(z, 0) + log1p(e)`` follow (stable for any ``z``), all
in float64. ``e`` is the ratio ``min(E_i, E_j) / max(E_i, E_j)`` of per-document exponentials
``E = exp(sigma s - c)`` (one ``exp`` per document, not per pair; lists whose scores spread over
more than 700 take ``exp`` per pair) and ``log1p(e) = 2 atanh(e / (2 + e))`` a short series
(relative error below ``1e-10``): the pair loop calls no libm function, which would cost more
than the rest of the pair.

Threads: at ``torch.get_num_threads() == 1`` a serial build runs; otherwise lists run in
parallel (``prange``, ``nogil``) on that many numba threads. Each list is summed by one thread in
a fixed order, so the result does not depend on the thread count.

The kernels trust nothing: they check every array shape against the scores' ``[B, L]`` (and
``top <= L``) before reading, return an error code instead of raising, and the caller turns the
code into a ``ValueError``. Compiled on first use per dtype and build and cached on disk
(``cache=True``).
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
SHORT_DISCOUNTS = 3
SHORT_RANK_GAPS = 4

_MESSAGES = {
    BAD_SHAPE: "the inputs and outputs must have the shape of the scores (labels)",
    BAD_TOP: "top must lie in [0, L]",
    SHORT_DISCOUNTS: "discounts must hold at least L values (or none)",
    SHORT_RANK_GAPS: "rank_gaps must hold at least L values (or none)",
}

#: dtypes the kernel is compiled for (one signature each)
DTYPES = (torch.float32, torch.float64)


# Value-safe fast-math flags (no nnan/ninf: NaN and infinite scores propagate as in torch) and
# numpy's error model (no zero-division checks in the pair loop)
_FASTMATH = {"nsz", "arcp", "contract", "reassoc", "afn"}
# half the widest score spread (sigma s) whose centred exponentials stay finite and normal
_EXP_SPREAD = 350.0


def _pair_lists(scores, gains, valid, discounts, rank_gaps, uniform, top, signs_only, sigma, max_gap, max_cost, scale, value, lambdas):
    batch, length = scores.shape
    if (
        gains.shape != scores.shape or valid.shape != scores.shape or lambdas.shape != scores.shape
        or value.shape[0] != batch
    ):
        return BAD_SHAPE
    if top < 0 or top > length:
        return BAD_TOP
    if discounts.shape[0] < length:
        return SHORT_DISCOUNTS
    if rank_gaps.shape[0] < length:
        return SHORT_RANK_GAPS
    factor = sigma * scale
    # exp(-|x_i - x_j|) = min(E_i, E_j) / max(E_i, E_j) with E = exp(x - c) per document: one exp
    # per document and a division per pair
    shifted = np.empty((batch, length))
    for b in prange(batch):
        total = 0.0
        end = 0  # one past the last real document: padding after it holds no pair
        low = math.inf
        high = -math.inf
        for j in range(length):
            lambdas[b, j] = 0.0
            if valid[b, j] != 0:
                end = j + 1
                x = sigma * scores[b, j]
                low = min(low, x)
                high = max(high, x)
        # centred on the midpoint, E stays within exp(+-350) when the spread is below 700; wider
        # lists (no training batch has them) take exp per pair
        direct = not high - low < 2 * _EXP_SPREAD
        centre = 0.5 * (low + high) if end > 0 and not direct else 0.0
        for j in range(end):
            shifted[b, j] = math.exp(sigma * scores[b, j] - centre) if valid[b, j] != 0 and not direct else 1.0
        for i in range(min(top, end)):
            if valid[b, i] == 0:
                continue
            score_i = scores[b, i]
            gain_i = gains[b, i]
            discount_i = discounts[i]
            exp_i = shifted[b, i]
            row = 0.0
            for j in range(i + 1, end):
                real = valid[b, j] != 0
                # padding and equal gains give weight 0: the pair adds nothing
                gap = (gains[b, j] - gain_i) if real else 0.0
                if signs_only:
                    weight = (1.0 if gap > 0 else 0.0) - (1.0 if gap < 0 else 0.0)
                else:
                    weight = gap * (uniform + abs(discount_i - discounts[j]) + rank_gaps[j - i])
                # z: the logistic argument of ranking the more relevant of the two lower
                difference = sigma * (score_i - (scores[b, j] if real else 0.0))
                z = -difference if weight < 0 else difference
                exp_j = shifted[b, j] if real else 1.0
                if direct:
                    tail = math.exp(-abs(z))
                else:
                    tail = min(exp_i, exp_j) / max(exp_i, exp_j)
                # log1p(e) = 2 atanh(e / (2 + e)) for e = exp(-|z|) in (0, 1]: t <= 1/3, no
                # cancellation; the series to t^19 has relative error < 2e-11
                t = tail / (2.0 + tail)
                t2 = t * t
                log1p_tail = 2.0 * t * (1.0 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 * (
                    1.0 / 11 + t2 * (1.0 / 13 + t2 * (1.0 / 15 + t2 * (1.0 / 17 + t2 / 19)))))))))
                clamped = z > max_gap
                cost = max_cost if clamped else max(z, 0.0) + log1p_tail
                sigmoid = (1.0 if z >= 0 else tail) / (1.0 + tail)
                grad = 0.0 if clamped else weight * sigmoid
                total += abs(weight) * cost
                row += grad
                lambdas[b, j] -= grad
            lambdas[b, i] += row
        value[b] = total * scale
        for j in range(length):
            lambdas[b, j] *= factor
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


@njit(nogil=True, cache=True)
def _count_kernel(labels, valid, top, counts):
    batch, length = labels.shape
    if valid.shape != labels.shape or counts.shape[0] != batch:
        return BAD_SHAPE
    if top < 0 or top > length:
        return BAD_TOP
    for b in range(batch):
        pairs = 0
        end = 0
        for j in range(length):
            if valid[b, j] != 0:
                end = j + 1
        for i in range(min(top, end)):
            if valid[b, i] == 0:
                continue
            label_i = labels[b, i]
            for j in range(i + 1, end):
                pairs += (valid[b, j] != 0) & (labels[b, j] != label_i)
        counts[b] = pairs
    return OK


def count_pairs(labels: torch.Tensor, valid: torch.Tensor, top: int) -> torch.Tensor:
    """Pairs ``i < j`` of real documents with different labels and ``i < top``, per list ``[B]``
    (int64), by a double loop: ``O(B L top)``, for short lists (a sort counts long ones faster).
    ``labels`` float32/float64 on CPU, ``valid`` of its shape (any dtype, nonzero = real).

    Raises:
        ValueError: ``valid`` not of the shape of ``labels`` ``[B, L]``, ``top`` outside ``[0, L]``.
    """
    counts = np.empty(labels.shape[0], dtype=np.int64)
    code = _count_kernel(_array(labels, labels.dtype, 0), _array(valid, labels.dtype, 0), int(top), counts)
    if code != OK:
        raise ValueError(f"pair count: {_MESSAGES[code]} (labels {tuple(labels.shape)}, top {top})")
    return torch.from_numpy(counts)


def applies(scores: torch.Tensor) -> bool:
    """Whether the numba kernel serves ``scores``: a CPU float32/float64 tensor."""
    return scores.device.type == "cpu" and scores.dtype in DTYPES


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run numba's parallel loops on ``threads`` threads (at most numba's pool)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _array(tensor: Optional[torch.Tensor], dtype: torch.dtype, length: int) -> np.ndarray:
    """``tensor`` as a contiguous numpy array of ``dtype``; None: ``length`` zeros."""
    if tensor is None:
        return np.zeros(length, dtype=np.float64 if dtype == torch.float64 else np.float32)
    if tensor.dtype != dtype or not tensor.is_contiguous():
        tensor = tensor.to(dtype).contiguous()
    return tensor.detach().numpy()


def pair_value_and_lambdas(
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
    scale: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Value ``[B]`` and lambdas ``[B, L]`` of the weighted logistic pair cost, in one numba pass.

    .. math::
        w_{ij} = (g_j - g_i)\, T_{ij},\quad T_{ij} = |d_i - d_j| + t_{|i - j|},\quad
        \mathrm{value} = s \sum_{\{i, j\}} |w_{ij}| \min(\mathrm{softplus}(z_{ij}), c),\quad
        z_{ij} = \mathrm{sign}(w_{ij})\, \sigma (s_i - s_j)

    over unordered pairs ``i < j`` of real documents (``valid != 0``) with ``i < top``; the
    ``|d_i - d_j|`` term is present when ``discounts`` (``[>= L]``) is given, ``t`` when
    ``rank_gaps`` (``[>= L]``, indexed by the position gap) is, and ``T = 1`` when neither is.
    ``signs_only`` weighs a pair by ``sign(g_j - g_i)``. ``lambda_i = s \sigma \sum_j w_{ij}
    \mathrm{sigmoid}(z_{ij})`` over unclamped pairs, ``-`` the same for ``j``. The semantics of
    :func:`ltrkit.losses._pairwise_kernels.lambda_value_and_lambdas` (which calls this on CPU).

    Computed in float64 and returned in the scores' dtype (float32 or float64, CPU).

    Raises:
        ValueError: shapes that disagree with ``scores`` ``[B, L]``, ``top`` outside
            ``[0, L]``, position vectors shorter than ``L``.
    """
    dtype = scores.dtype
    batch = scores.shape[0]
    value = np.empty(batch, dtype=np.float64)
    lambdas = np.empty(tuple(scores.shape), dtype=np.float64)
    max_gap = math.inf if max_cost is None else math.log(math.expm1(max_cost))
    length = scores.shape[-1]
    uniform = 1.0 if discounts is None and rank_gaps is None else 0.0
    args = (
        _array(scores, dtype, length), _array(gains, dtype, length), _array(valid, dtype, length),
        _array(discounts, dtype, length), _array(rank_gaps, dtype, length), uniform, int(top), bool(signs_only),
        float(sigma), max_gap, math.inf if max_cost is None else float(max_cost), float(scale), value, lambdas,
    )
    threads = torch.get_num_threads()
    if threads == 1 or batch == 1:
        code = _pair_kernel_serial(*args)
    else:
        with _torch_threads(threads):
            code = _pair_kernel_parallel(*args)
    if code != OK:
        raise ValueError(f"pair kernel: {_MESSAGES[code]} (scores {tuple(scores.shape)}, top {top})")
    return torch.from_numpy(value).to(dtype), torch.from_numpy(lambdas).to(dtype)
