"""Pairwise ranking losses: RankNet (pair, matrix and factorised forms), LambdaRank, LambdaLoss,
RankSVM-style hinge, and ``margin_ranking`` (the semantics of ``torch.nn.MarginRankingLoss``).

Conventions shared by the list losses here (``scores``, ``labels``, ``mask`` of shape ``[..., L]``,
``mask`` True = a real document, any number of leading batch dimensions):

* **Pairs** live inside one list; a pair needs two real documents and ``i != j``. Unless an option
  says otherwise a pair needs different labels (``l_i != l_j``, as in Burges 2010 and allRank);
  every unordered pair is counted once.
* **Per-list value** is the *sum* of the pair costs of that list (the cost RankNet/LambdaRank
  define per query).
* **normalize** (hyperparameter) chooses what ``reduction="mean"`` averages over:

  - ``"lists"`` (default): the mean, over lists that have at least one pair, of each list's summed
    cost; lists without a pair (all padding, one document, all labels equal) drop out.
  - ``"list_pairs"``: each list's value becomes the *mean* cost over its own pairs; then the mean
    over lists that have at least one pair (every query weighs the same, whatever its length).
  - ``"pairs"``: every pair in the batch weighs the same: the summed cost of the batch divided by
    its number of pairs (allRank's RankNet convention). ``reduction="none"`` then returns the
    per-list sums.

  ``reduction="sum"`` sums the per-list values and ``reduction="none"`` returns them with the leading
  shape ``[...]``; ``fn(reduction="none").sum() == fn(reduction="sum")`` always holds. A mean over
  nothing is 0, never NaN.
* **Precision**: pair counts are int64 and float16/bfloat16 scores are computed in float32
  (the loss is float32; see :mod:`ltrkit.losses._common`): in float16 the ``n^2`` of a list of
  300 documents overflows.
* **Ranks** (LambdaRank, LambdaLoss) come from the current scores with
  :func:`ltrkit.metrics.ranking.sort_order`: descending score, ties keep input order, padding last.
  They are not differentiated.
"""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import Optional, Tuple

import torch
from torch import nn

from ltrkit._checks import (
    check_choice,
    check_finite,
    check_k,
    check_non_negative,
    check_positive,
    check_reduction,
)
from ltrkit.losses import _pair_numba
from ltrkit.losses._common import at_least_float32, check_loss_inputs, reduce_lists
from ltrkit.losses._pairwise_kernels import (
    LambdaFunction,
    check_pair_memory,
    lambda_value_and_lambdas,
    lambdarank_value_and_lambdas,
    ranknet_value_and_lambdas,
)
from ltrkit.losses.registry import register
from ltrkit.metrics.ranking import check_gain, gain_values, rank_discounts, sort_order

__all__ = [
    "NORMALIZATIONS",
    "LAMBDALOSS_WEIGHTINGS",
    "ranknet_pair_loss",
    "ranknet_matrix_loss",
    "ranknet_loss",
    "lambdarank_loss",
    "lambdaloss",
    "pairwise_hinge_loss",
    "margin_ranking",
    "RankNetLoss",
    "RankNetMatrixLoss",
    "LambdaRankLoss",
    "LambdaLoss",
    "PairwiseHingeLoss",
    "MarginRankingLoss",
]

NORMALIZATIONS = ("lists", "list_pairs", "pairs")
LAMBDALOSS_WEIGHTINGS = ("ndcg_loss2", "ndcg_loss2pp", "ndcg_loss1", "arp_loss1", "arp_loss2", "lambdarank")


# ----------------------------------------------------------------------------------------------
# validation and reduction helpers


def _check_bool(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be a number in [0, 1), got {eps!r}")
    return float(eps)


def _describe(value: object) -> str:
    """How an argument that failed a type check looks, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__


def _flatten(
    scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Size]:
    """Validate and view ``[..., L]`` inputs as ``[B, L]``; also return the leading shape."""
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    lead = scores.shape[:-1]
    # an explicit row count: reshape(-1, 0) is ambiguous for lists of length 0
    shape = (math.prod(lead), scores.shape[-1])
    return scores.reshape(shape), labels.reshape(shape), mask.reshape(shape), lead


def _reduce(
    per_list: torch.Tensor, n_pairs: torch.Tensor, lead: torch.Size, *, reduction: str, normalize: str
) -> torch.Tensor:
    """Apply the ``normalize``/``reduction`` conventions of the module docstring.

    ``per_list`` ``[B]`` holds summed pair costs, ``n_pairs`` ``[B]`` (int64) the number of pairs
    of each list; counts are summed in int64 and only the results are cast to the loss dtype.
    """
    if normalize == "list_pairs":
        per_list = per_list / n_pairs.clamp(min=1).to(per_list.dtype)
    if normalize == "pairs" and reduction == "mean":
        return per_list.sum() / n_pairs.sum().clamp(min=1).to(per_list.dtype)
    return reduce_lists(per_list, n_pairs > 0, reduction).reshape(lead if reduction == "none" else ())


def _ideal_order(labels: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each list's real labels in descending order, padding after them as 0 ``[B, L]``, and the
    mask of that order (real positions first). The ideal ranking of :func:`~ltrkit.metrics.ranking.ideal_dcg`, from one
    values-only sort (equal labels are interchangeable, so the sort need not be stable)."""
    ideal = torch.sort(labels.masked_fill(~mask, -math.inf), dim=-1, descending=True).values
    ideal_mask = torch.arange(labels.shape[-1], device=labels.device) < mask.sum(dim=-1, keepdim=True)
    return ideal.masked_fill(~ideal_mask, 0.0), ideal_mask


def _count_pairs(
    labels: torch.Tensor, mask: torch.Tensor, *, include_ties: bool, ideal: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
) -> torch.Tensor:
    """Unordered pairs of real documents per list ``[B]`` (int64): all of them, or those with
    different labels.

    Counts in ``O(L log L)`` from the labels in sorted order (:func:`_ideal_order`, or
    ``ideal`` when the caller has it): there a document ties with the documents from the start of
    its run of equal labels up to itself, so the tied pairs number ``sum_i (i - run_start_i)``
    over the real positions ``i``.
    """
    n = mask.sum(dim=-1)
    all_pairs = n * (n - 1) // 2
    if include_ties or labels.shape[-1] == 0:
        return all_pairs
    ordered, ordered_mask = _ideal_order(labels, mask) if ideal is None else ideal
    positions = torch.arange(ordered.shape[-1], device=labels.device)
    run_starts = torch.ones_like(ordered_mask)
    run_starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run_start = torch.cummax(torch.where(run_starts, positions, 0), dim=-1).values
    tied = ((positions - run_start) * ordered_mask).sum(dim=-1)
    return all_pairs - tied


def _pairs_touching_top(
    labels: torch.Tensor, mask: torch.Tensor, top: int, *, include_ties: bool, ideal: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
) -> torch.Tensor:
    """Pairs per list ``[B]`` (int64) with at least one document among the first ``top``
    positions of lists in rank order: all pairs minus those lying wholly below ``top``
    (``ideal``: :func:`_ideal_order` of the same lists, if the caller has it)."""
    n_pairs = _count_pairs(labels, mask, include_ties=include_ties, ideal=ideal)
    if top < labels.shape[-1]:
        outside = mask.clone()
        outside[:, :top] = False
        n_pairs = n_pairs - _count_pairs(labels, outside, include_ties=include_ties)
    return n_pairs


def _rank_order(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`~ltrkit.metrics.ranking.sort_order` (descending score, ties in input order, padding
    last), from one stable sort of the scores with padding as ``-inf`` when no real score is
    ``-inf`` (padding then sorts after every real document, NaN scores first as there); from
    :func:`~ltrkit.metrics.ranking.sort_order` itself otherwise."""
    keyed = scores.masked_fill(~mask, -math.inf)
    if bool((torch.isneginf(scores) & mask).any()):
        return sort_order(scores, mask)
    return torch.sort(keyed, dim=-1, descending=True, stable=True).indices


def _rank_ordered(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, longest: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (differentiable gather), labels and mask in current rank order, trimmed to the
    longest real list of the batch (``longest``, when the caller has counted it; padding sorts
    last, so the trimmed tail is padding only)."""
    order = _rank_order(scores.detach(), mask)
    if longest is None:
        longest = int(mask.sum(dim=-1).max()) if mask.numel() else 0
    order = order[:, :longest]
    return torch.gather(scores, -1, order), torch.gather(labels, -1, order), torch.gather(mask, -1, order)


def _normalised_gains(
    ideal: Tuple[torch.Tensor, torch.Tensor], sorted_labels: torch.Tensor, sorted_mask: torch.Tensor,
    *, k: Optional[int], gain: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``G_i / IDCG@k`` in rank order ``[B, n]`` (0 for padding and where IDCG@k <= 0), and
    a ``[B]`` bool telling which lists have IDCG@k > 0; ``ideal`` is :func:`_ideal_order`."""
    ideal_labels, ideal_mask = ideal
    cutoff = ideal_labels.shape[-1] if k is None else min(k, ideal_labels.shape[-1])
    # dcg_of_sorted's sum, with the shared discounts
    discounts = _truncated_inverse_discounts(cutoff, None, sorted_labels)
    idcg = (gain_values(ideal_labels[:, :cutoff], gain) * ideal_mask[:, :cutoff] * discounts).sum(dim=-1)
    has_idcg = idcg > 0
    # 1 / IDCG where it is positive, 0 elsewhere (the inner where keeps the division finite)
    scale = has_idcg.to(idcg.dtype) / torch.where(has_idcg, idcg, torch.ones_like(idcg))
    return gain_values(sorted_labels, gain) * sorted_mask * scale[:, None], has_idcg


def _truncated_inverse_discounts(length: int, k: Optional[int], like: torch.Tensor) -> torch.Tensor:
    """``[length]`` values ``1 / log2(1 + r)`` for ranks ``r <= k``, 0 beyond ``k`` (shared: read only)."""
    return _cached_discounts(length, k, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _cached_discounts(length: int, k: Optional[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # a loss call needs these O(L) vectors several times, and a run meets a few dozen lengths
    inverse = rank_discounts(length, dtype=dtype, device=device)
    if k is not None:
        inverse[k:] = 0.0
    return inverse


# batches of fewer lists than this, of more pair cells each than that, take the torch blocks
_FEW_LISTS = 4
_LONG_LIST_PAIRS = 1 << 20


def _compiled_pair_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, **kernel: object
) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Per-list values ``[B]`` (differentiable: the lambdas are their gradient) and pair counts
    ``[B]`` of :func:`~ltrkit.losses._pair_numba.ranked_pair_loss` on the raw ``[B, L]`` lists, or
    None where that kernel does not serve (not a CPU float32/float64 tensor, a batch of a few long
    lists, a non-finite score): the caller then takes the torch path. ``kernel``: its keyword
    arguments."""
    batch, length = scores.shape
    # a few long lists: the torch blocks spread a list's pairs over every thread, the kernel (a
    # list per thread) would not. Decided by shape alone, so the result never depends on the
    # thread count
    if not _pair_numba.applies(scores) or (batch < _FEW_LISTS and length * kernel["top"] > _LONG_LIST_PAIRS):
        return None
    result = _pair_numba.ranked_pair_loss(scores.detach(), labels, mask, **kernel)
    if result is None:
        return None
    value, lambdas, n_pairs = result
    return LambdaFunction.apply(scores, lambda _: (value, lambdas)), n_pairs


# ----------------------------------------------------------------------------------------------
# RankNet


def ranknet_pair_loss(
    score_diffs: torch.Tensor,
    targets: torch.Tensor,
    *,
    weights: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""RankNet cross-entropy on explicit pairs.

    .. math::
        C_{ij} = -\bar P_{ij} \log P_{ij} - (1 - \bar P_{ij}) \log (1 - P_{ij})
               = \mathrm{softplus}(-x) + (1 - \bar P_{ij})\, x,
        \quad x = \sigma (s_i - s_j),\ P_{ij} = \mathrm{sigmoid}(x)

    computed with ``softplus`` so that score gaps of any size stay finite.

    Args:
        score_diffs: ``[...]`` score differences ``s_i - s_j``, floating point.
        targets: ``[...]`` target probabilities ``P̄_ij`` in ``[0, 1]`` (same shape). For Burges'
            ``S_ij in {1, 0, -1}`` pass ``(1 + S_ij) / 2``: 1 if ``i`` is more relevant, 0.5 for a
            tie, 0 if less relevant.
        weights: optional ``[...]`` non-negative weight of each pair (same shape).
        sigma: positive steepness of the sigmoid.
        reduction: ``"mean"`` (weighted cost summed over pairs divided by the number of pairs; 0 if
            there is none), ``"sum"`` or ``"none"`` (``[...]``).

    Returns:
        The reduced cost (0-d), or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: on non-tensors, non-float ``score_diffs``, shape mismatches, targets outside
            ``[0, 1]`` or NaN, negative/NaN weights, a bad ``sigma`` or ``reduction``.

    Reference: Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Example:
        >>> import torch
        >>> round(float(ranknet_pair_loss(torch.tensor([0.0]), torch.tensor([1.0]))), 4)
        0.6931
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    if not isinstance(score_diffs, torch.Tensor) or not score_diffs.is_floating_point():
        raise ValueError(f"score_diffs must be a floating-point torch.Tensor, got {_describe(score_diffs)}")
    score_diffs = at_least_float32(score_diffs)
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.shape != score_diffs.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match score_diffs shape {tuple(score_diffs.shape)}")
    targets = targets.to(score_diffs.dtype)
    if not ((targets >= 0) & (targets <= 1)).all():
        raise ValueError("targets must be probabilities in [0, 1] (use (1 + S_ij) / 2 for S_ij in {-1, 0, 1})")
    x = sigma * score_diffs
    cost = torch.nn.functional.softplus(-x) + (1.0 - targets) * x
    if weights is not None:
        if not isinstance(weights, torch.Tensor):
            raise ValueError(f"weights must be a torch.Tensor or None, got {type(weights).__name__}")
        if weights.shape != score_diffs.shape:
            raise ValueError(f"weights shape {tuple(weights.shape)} does not match score_diffs shape {tuple(score_diffs.shape)}")
        weights = weights.to(score_diffs.dtype)
        if not (weights >= 0).all():
            raise ValueError("weights must be non-negative and not NaN")
        cost = cost * weights
    if reduction == "none":
        return cost
    if reduction == "sum":
        return cost.sum()
    return cost.sum() / max(cost.numel(), 1)


def ranknet_matrix_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    sigma: float = 1.0,
    include_ties: bool = False,
    normalize: str = "lists",
) -> torch.Tensor:
    r"""RankNet over all pairs of each list, as one ``[..., L, L]`` matrix differentiated by autograd.

    .. math::
        \mathrm{loss}(q) = \sum_{\{i, j\}} \mathrm{softplus}(-x_{ij}) + (1 - \bar P_{ij}) x_{ij},
        \quad x_{ij} = \sigma (s_i - s_j),\ \bar P_{ij} = (1 + \mathrm{sign}(l_i - l_j)) / 2

    over unordered pairs of real documents, by default only those with different labels.
    Memory is ``O(B L^2)`` (about 32 bytes per pair with the backward pass): a call whose pair
    tensors would exceed ``LTRKIT_PAIR_MEMORY_GIB`` (default 4 GiB) is refused with a
    ``ValueError`` naming the list length; :func:`ranknet_loss` computes the same value and
    gradient in chunks.

    Args:
        scores: ``[..., L]`` floating-point scores (higher = ranked higher).
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[...]`` per-list values); see the module
            docstring for ``normalize``.
        sigma: positive steepness of the sigmoid.
        include_ties: also use pairs with equal labels (target 0.5). Default False, as in
            Burges 2010 and allRank: tied pairs only pull scores together.
        normalize: ``"lists"`` (default), ``"list_pairs"`` or ``"pairs"``.

    Returns:
        The reduced loss (0-d), or the per-list values ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, mask dtype, non-finite labels or hyperparameters, or pair
            tensors over the memory limit.

    Reference: Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Example:
        >>> import torch
        >>> loss = ranknet_matrix_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
        >>> round(float(loss), 4)
        0.6931
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    _check_bool(include_ties, "include_ties")
    check_choice("normalize", normalize, NORMALIZATIONS)
    s, l, m, lead = _flatten(scores, labels, mask)
    check_pair_memory("ranknet_matrix", s.shape[0], s.shape[-1], s.shape[-1])
    s = s.masked_fill(~m, 0.0)
    x = sigma * (s[:, :, None] - s[:, None, :])
    target = (1.0 + torch.sign(l[:, :, None] - l[:, None, :])) / 2.0
    pair = m[:, :, None] & m[:, None, :]
    if include_ties:
        pair = pair & ~torch.eye(s.shape[-1], dtype=torch.bool, device=s.device)
    else:
        pair = pair & (l[:, :, None] != l[:, None, :])
    cost = torch.nn.functional.softplus(-x) + (1.0 - target) * x
    # each unordered pair appears twice with the same cost
    per_list = 0.5 * (cost * pair).sum(dim=(1, 2))
    n_pairs = pair.sum(dim=(1, 2)) // 2
    return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)


def ranknet_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    sigma: float = 1.0,
    include_ties: bool = False,
    normalize: str = "lists",
    k: Optional[int] = None,
) -> torch.Tensor:
    r"""Factorised RankNet: the value of :func:`ranknet_matrix_loss` with hand-written lambdas.

    .. math::
        \lambda_i = \frac{\partial\, \mathrm{loss}(q)}{\partial s_i}
                  = \sum_j \lambda_{ij},\quad
        \lambda_{ij} = \sigma\,(\mathrm{sigmoid}(\sigma (s_i - s_j)) - \bar P_{ij})

    (``\lambda_{ji} = -\lambda_{ij}``, so this is Burges' ``sum_j lambda_ij - sum_j lambda_ji``).
    A ``torch.autograd.Function`` computes the per-list cost and the lambdas in chunks of rows of
    the pair matrix (memory ``O(B L chunk)``: 64 lists of 4,096 documents fit in well under
    1 GiB), saves only the lambdas ``[B, L]`` and returns them in backward: no autograd graph over
    the ``L^2`` pairs. Second derivatives are not supported.

    Long lists: memory stays ``O(B L)`` whatever ``L`` (one list of 100,000 documents needs a few
    MiB), but time is ``O(B L^2)``. ``k`` truncates the lambdas to the top of the current
    ranking: only pairs with at least one document among the ``k`` highest-scored of its list
    (descending score, ties by input order, via :func:`~ltrkit.metrics.ranking.sort_order`; not
    differentiated) count, so time is ``O(B L k)`` and pairs deep in the list, which no top-k
    metric sees, cost nothing.

    Args:
        scores: ``[..., L]`` floating-point scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; see the module docstring.
        sigma: positive steepness of the sigmoid.
        include_ties: also use pairs with equal labels (target 0.5). Default False.
        normalize: ``"lists"`` (default), ``"list_pairs"`` or ``"pairs"`` (pairs as restricted
            by ``k``).
        k: keep only pairs touching the current top ``k`` (positive int), or None for all pairs.

    Returns:
        The reduced loss (0-d), or the per-list values ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, mask dtype, non-finite labels or hyperparameters.

    Reference: Burges, "From RankNet to LambdaRank to LambdaMART: An Overview", MSR-TR-2010-82.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[0.0, 0.0]], requires_grad=True)
        >>> ranknet_loss(scores, torch.tensor([[1.0, 0.0]])).backward()
        >>> scores.grad
        tensor([[-0.5000,  0.5000]])
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    _check_bool(include_ties, "include_ties")
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_k(k)
    s, l, m, lead = _flatten(scores, labels, mask)
    length = s.shape[-1]
    compiled = None if include_ties else _compiled_pair_loss(
        s, l, m, sigma=sigma, top=length if k is None else min(k, length), by_score=k is not None, signs_only=True
    )
    if compiled is not None:
        per_list, n_pairs = compiled
    elif k is None:
        kernel = partial(ranknet_value_and_lambdas, labels=l, mask=m, sigma=sigma, include_ties=include_ties)
        per_list = LambdaFunction.apply(s, kernel)
        n_pairs = _pairs_touching_top(l, m, l.shape[-1], include_ties=include_ties)
    else:
        s_sorted, l_sorted, m_sorted = _rank_ordered(s.masked_fill(~m, 0.0), l, m)
        top = min(k, s_sorted.shape[-1])
        kernel = partial(ranknet_value_and_lambdas, labels=l_sorted, mask=m_sorted, sigma=sigma, include_ties=include_ties, top=top)
        per_list = LambdaFunction.apply(s_sorted, kernel)
        n_pairs = _pairs_touching_top(l_sorted, m_sorted, top, include_ties=include_ties)
    return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)


# ----------------------------------------------------------------------------------------------
# LambdaRank


def lambdarank_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    sigma: float = 1.0,
    k: Optional[int] = None,
    gain: str = "exp2",
    normalize: str = "lists",
) -> torch.Tensor:
    r"""LambdaRank: RankNet lambdas scaled by the NDCG@k change of swapping the two documents.

    .. math::
        \lambda_i = \sum_{j} |\Delta \mathrm{NDCG}@k_{ij}|\ \sigma\,(\mathrm{sigmoid}(\sigma(s_i - s_j)) - \bar P_{ij}),
        \quad |\Delta \mathrm{NDCG}@k_{ij}| = \frac{|G_i - G_j|\ |D_{r_i} - D_{r_j}|}{\mathrm{IDCG}@k}

    with ``G = gain(label)``, ``D_r = 1 / log2(1 + r)`` for ``r <= k`` and 0 beyond, and ``r_i`` the
    rank of document ``i`` under the current scores (descending, ties by input order, via
    :func:`~ltrkit.metrics.ranking.sort_order`); the ranks and weights are not differentiated.
    Pairs with equal labels and pairs where neither document is in the top ``k`` weigh 0;
    queries with ``IDCG@k = 0`` contribute 0 and hold no pair.

    LambdaRank's gradient is not the gradient of a simple loss. The forward value is
    ``sum_{i,j: l_i > l_j} |dNDCG_ij| * C_ij`` (``C_ij`` the RankNet cost, natural log) - the
    loss whose gradient, with the weights held constant, equals the lambdas above - and the
    backward returns exactly the lambdas. Computed in chunks by a ``torch.autograd.Function``
    over the rows in the top ``k`` only (memory and time ``O(B L min(k, L))``).

    Args:
        scores: ``[..., L]`` floating-point scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; see the module docstring (the pairs of a
            list are those with different labels and at least one document in the top ``k``).
        sigma: positive steepness of the sigmoid.
        k: NDCG truncation (positive int) or None for the whole list.
        gain: ``"exp2"`` (``2^l - 1``, default) or ``"linear"`` (``l``).
        normalize: ``"lists"`` (default), ``"list_pairs"`` or ``"pairs"``.

    Returns:
        The reduced loss (0-d), or the per-list values ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, mask dtype, non-finite labels or hyperparameters.

    Reference: Burges, "From RankNet to LambdaRank to LambdaMART: An Overview", MSR-TR-2010-82.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[0.0, 1.0]], requires_grad=True)
        >>> lambdarank_loss(scores, torch.tensor([[1.0, 0.0]])).backward()
        >>> bool(scores.grad[0, 0] < 0 < scores.grad[0, 1])
        True
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    check_k(k)
    check_gain(gain)
    check_choice("normalize", normalize, NORMALIZATIONS)
    s, l, m, lead = _flatten(scores, labels, mask)
    length = s.shape[-1]
    compiled = _compiled_pair_loss(
        s, l, m, sigma=sigma, top=length if k is None else min(k, length), gain=gain, k=k,
        discounts=_cached_discounts(length, k, torch.float64, s.device),
    )
    if compiled is not None:
        per_list, n_pairs = compiled
        return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)
    s_sorted, l_sorted, m_sorted = _rank_ordered(s.masked_fill(~m, 0.0), l, m)
    length = s_sorted.shape[-1]
    ideal = _ideal_order(l, m)
    gains, has_idcg = _normalised_gains(ideal, l_sorted, m_sorted, k=k, gain=gain)
    valid = m_sorted.to(s.dtype)
    top = length if k is None else min(k, length)
    kernel = partial(
        lambdarank_value_and_lambdas, gains=gains, discounts=_truncated_inverse_discounts(length, k, s), valid=valid,
        sigma=sigma, top=top,
    )
    per_list = LambdaFunction.apply(s_sorted, kernel)
    n_pairs = _pairs_touching_top(l_sorted, m_sorted, top, include_ties=False, ideal=ideal) * has_idcg
    return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)


# ----------------------------------------------------------------------------------------------
# LambdaLoss


def lambdaloss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    weighting: str = "ndcg_loss2",
    k: Optional[int] = None,
    sigma: float = 1.0,
    mu: float = 10.0,
    gain: str = "exp2",
    eps: float = 0.0,
    normalize: str = "lists",
) -> torch.Tensor:
    r"""The LambdaLoss framework: pairwise logistic losses weighted to bound a ranking metric.

    .. math::
        \mathrm{loss}(q) = \sum_{(i, j) \in P} w_{ij}\ \bigl(-\log_2 \mathrm{sigmoid}(\sigma (s_i - s_j))\bigr)

    with ranks ``r_i`` from the current scores (1-based, ties by input order),
    ``D_r = log2(1 + r)``, ``G_i = gain(l_i) / IDCG@k`` and the weights (detached, as in the paper):

    ============== ========================================================= =====================
    weighting      ``w_ij``                                                  pairs ``P``
    ============== ========================================================= =====================
    ndcg_loss2     ``|1/D_{|r_i-r_j|} - 1/D_{|r_i-r_j|+1}| * |G_i - G_j|``   ``l_i > l_j``
    ndcg_loss2pp   ``mu * ndcg_loss2 + lambdarank``                          ``l_i > l_j``
    lambdarank     ``|1/D_{r_i} - 1/D_{r_j}| * |G_i - G_j|``                 ``l_i > l_j``
    ndcg_loss1     ``G_i / D_{r_i}``                                         all ``i != j``
    arp_loss1      ``l_i``                                                   all ``i != j``
    arp_loss2      ``|l_i - l_j|``                                           ``l_i > l_j``
    ============== ========================================================= =====================

    Truncation at ``k``: ``IDCG@k`` normalises the gains, ``1/D_r`` is 0 beyond ``k`` in the
    ``lambdarank`` and ``ndcg_loss1`` weights, and a pair whose two documents both rank below
    ``k`` is dropped (allRank keeps only pairs with *both* documents in the top ``k``; ltrkit keeps
    every pair that can change NDCG@k, as LambdaRank does). Lists with ``IDCG@k = 0`` hold no pair
    under the NDCG weightings. The cost is in bits (log base 2, as in the paper); ``eps > 0`` clamps
    each pair's probability to at least ``eps`` as allRank does (default 0: exact log-sigmoid,
    finite for any score gap). The ``lambdarank`` weighting has the gradient of
    :func:`lambdarank_loss` divided by ``ln 2``. The symmetric weightings (``ndcg_loss2``,
    ``ndcg_loss2pp``, ``lambdarank``, ``arp_loss2``) compute each pair once with hand-written
    lambdas (no graph over the pairs): memory ``O(B n)`` on CPU, ``O(B n)`` plus fixed-size
    blocks elsewhere (``n`` = longest real list of the batch), time ``O(B n min(k, n))``, so they
    train on lists of any length. ``ndcg_loss1`` and ``arp_loss1`` are differentiated by autograd
    over the ``[B, n, n]`` pair matrix: memory ``O(B n^2)``, about 40 bytes per pair; a call over
    ``LTRKIT_PAIR_MEMORY_GIB`` (default 4 GiB: one list of about 10,000 documents) is refused
    with a ``ValueError`` naming the list length.

    Args:
        scores: ``[..., L]`` floating-point scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; see the module docstring.
        weighting: one of ``"ndcg_loss2"`` (default), ``"ndcg_loss2pp"``, ``"ndcg_loss1"``,
            ``"arp_loss1"``, ``"arp_loss2"``, ``"lambdarank"``.
        k: metric truncation (positive int) or None.
        sigma: positive steepness of the sigmoid.
        mu: non-negative weight of NDCG-Loss2 inside NDCG-Loss2++ (default 10, as allRank).
        gain: ``"exp2"`` (default) or ``"linear"``.
        eps: lower clamp of the pair probabilities, in ``[0, 1)``.
        normalize: ``"lists"`` (default), ``"list_pairs"`` or ``"pairs"``.

    Returns:
        The reduced loss (0-d), or the per-list values ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, mask dtype, non-finite labels or hyperparameters.

    Reference: Wang et al., "The LambdaLoss Framework for Ranking Metric Optimization", CIKM 2018.

    Example:
        >>> import torch
        >>> loss = lambdaloss(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[2.0, 1.0, 0.0]]))
        >>> bool(loss > 0)
        True
    """
    check_reduction(reduction)
    if weighting not in LAMBDALOSS_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {list(LAMBDALOSS_WEIGHTINGS)}, got {weighting!r}")
    check_k(k)
    sigma = check_positive("sigma", sigma)
    mu = check_non_negative("mu", mu)
    check_gain(gain)
    eps = _check_eps(eps)
    check_choice("normalize", normalize, NORMALIZATIONS)
    s, l, m, lead = _flatten(scores, labels, mask)
    longest = int(m.sum(dim=-1).max()) if m.numel() else 0
    if weighting in _SYMMETRIC_WEIGHTINGS:
        return _symmetric_lambdaloss(
            s, l, m, lead, longest, weighting=weighting, k=k, sigma=sigma, mu=mu, gain=gain, eps=eps, reduction=reduction,
            normalize=normalize,
        )
    check_pair_memory("lambdaloss", s.shape[0], longest, longest)
    s_sorted, l_sorted, m_sorted = _rank_ordered(s.masked_fill(~m, 0.0), l, m, longest)
    with torch.no_grad():
        weights, pairs = _lambdaloss_weights(l, m, l_sorted, m_sorted, weighting=weighting, k=k, mu=mu, gain=gain)
    x = sigma * (s_sorted[:, :, None] - s_sorted[:, None, :])
    bits = torch.nn.functional.softplus(-x)
    if eps > 0.0:
        bits = bits.clamp(max=-math.log(eps))
    bits = bits / math.log(2.0)
    per_list = (bits * weights * pairs).sum(dim=(1, 2))
    return _reduce(per_list, pairs.sum(dim=(1, 2)), lead, reduction=reduction, normalize=normalize)


# weightings whose w_ij is symmetric and whose pairs are those with l_i > l_j: computed by the
# fused pair kernel (one pass over the pairs, no autograd graph); the others by autograd
_SYMMETRIC_WEIGHTINGS = ("ndcg_loss2", "ndcg_loss2pp", "lambdarank", "arp_loss2")


def _symmetric_lambdaloss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    lead: torch.Size,
    longest: int,
    *,
    weighting: str,
    k: Optional[int],
    sigma: float,
    mu: float,
    gain: str,
    eps: float,
    reduction: str,
    normalize: str,
) -> torch.Tensor:
    """LambdaLoss of a weighting in :data:`_SYMMETRIC_WEIGHTINGS` on ``[B, L]`` lists whose
    longest holds ``longest`` real documents.

    ``w_ij = |G_i - G_j| * T_ij`` with ``T`` depending on the two positions only (``|1/D_i -
    1/D_j|``, the NDCG-Loss2 rank-gap term, their ``mu`` mix), or ``|l_i - l_j|`` for ARP-Loss2,
    through :func:`~ltrkit.losses._pair_numba.ranked_pair_loss` on CPU, else on the lists in rank
    order through :func:`~ltrkit.losses._pairwise_kernels.lambda_value_and_lambdas`; the cost in
    bits is the kernels' natural-log cost times ``1 / ln 2``, ``eps`` its clamp at ``-log(eps)``.
    """
    length = scores.shape[-1]
    max_cost = -math.log(eps) if eps > 0.0 else None
    ndcg = weighting != "arp_loss2"
    positions = _cached_position_weights(length, weighting, k, mu, torch.float64, scores.device) if ndcg else (None, None)
    compiled = _compiled_pair_loss(
        scores, labels, mask, sigma=sigma, top=length if k is None else min(k, length), gain=gain if ndcg else "labels", k=k,
        discounts=positions[0], rank_gaps=positions[1], max_cost=max_cost, scale=1.0 / math.log(2.0),
    )
    if compiled is not None:
        per_list, n_pairs = compiled
        return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)
    s_sorted, sorted_labels, sorted_mask = _rank_ordered(scores.masked_fill(~mask, 0.0), labels, mask, longest)
    length = s_sorted.shape[-1]
    top = length if k is None else min(k, length)
    valid = sorted_mask.to(s_sorted.dtype)
    ideal = _ideal_order(labels, mask)
    n_pairs = _pairs_touching_top(sorted_labels, sorted_mask, top, include_ties=False, ideal=ideal)
    if weighting == "arp_loss2":
        gains, (discounts, rank_gaps) = sorted_labels * valid, (None, None)
    else:
        gains, has_idcg = _normalised_gains(ideal, sorted_labels, sorted_mask, k=k, gain=gain)
        discounts, rank_gaps = _position_weights(length, weighting=weighting, k=k, mu=mu, like=s_sorted)
        n_pairs = n_pairs * has_idcg
    kernel = partial(
        lambda_value_and_lambdas, gains=gains, valid=valid, sigma=sigma, top=top, discounts=discounts, rank_gaps=rank_gaps,
        max_cost=max_cost, padding_last=True, scale=1.0 / math.log(2.0),
    )
    per_list = LambdaFunction.apply(s_sorted, kernel)
    return _reduce(per_list, n_pairs, lead, reduction=reduction, normalize=normalize)


def _position_weights(
    length: int, *, weighting: str, k: Optional[int], mu: float, like: torch.Tensor
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The position part ``T_ij = |d_i - d_j| + t_{|i-j|}`` of the NDCG LambdaLoss weights, as
    the ``(discounts d, rank_gaps t)`` vectors ``[length]`` of
    :func:`~ltrkit.losses._pairwise_kernels.lambda_value_and_lambdas` (None: the term is absent;
    no list-sized matrix is ever built).

    ``lambdarank``: ``|1/D_i - 1/D_j|`` (``1/D`` 0 beyond ``k``); ``ndcg_loss2``:
    ``|1/D_{|i-j|} - 1/D_{|i-j|+1}|``; ``ndcg_loss2pp``: ``mu * ndcg_loss2 + lambdarank``. The
    diagonal is never a pair (its gain gap is 0), whatever its value. Shared: read only.
    """
    return _cached_position_weights(length, weighting, k, mu, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _cached_position_weights(
    length: int, weighting: str, k: Optional[int], mu: float, dtype: torch.dtype, device: torch.device
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    # every batch of a run asks for these O(L) vectors again, at a few dozen lengths
    like = torch.empty(0, dtype=dtype, device=device)
    inverse = _truncated_inverse_discounts(length, k, like)
    if weighting == "lambdarank":
        return inverse, None
    # 1/D_r - 1/D_{r+1} for rank gaps r = 0..length-1 (r = 0 only serves the diagonal)
    full_inverse = torch.cat([torch.zeros(1, dtype=dtype, device=device), _truncated_inverse_discounts(length, None, like)])
    gap_delta = (full_inverse[:-1] - full_inverse[1:]).abs()
    if weighting == "ndcg_loss2pp":
        return inverse, gap_delta.mul_(mu)
    return None, gap_delta


def _lambdaloss_weights(
    labels: torch.Tensor,
    mask: torch.Tensor,
    sorted_labels: torch.Tensor,
    sorted_mask: torch.Tensor,
    *,
    weighting: str,
    k: Optional[int],
    mu: float,
    gain: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Detached weights ``[B, n, n]`` and the bool pair set ``[B, n, n]`` in rank order."""
    length = sorted_labels.shape[-1]
    dtype, device = sorted_labels.dtype, sorted_labels.device
    positions = torch.arange(length, device=device)
    pairs = sorted_mask[:, :, None] & sorted_mask[:, None, :]
    if weighting in ("ndcg_loss1", "arp_loss1"):
        pairs = pairs & (positions[:, None] != positions[None, :])
    else:
        pairs = pairs & (sorted_labels[:, :, None] > sorted_labels[:, None, :])
    if k is not None:
        in_top = positions < k
        pairs = pairs & (in_top[:, None] | in_top[None, :])
    if weighting == "arp_loss1":
        return sorted_labels[:, :, None].expand(-1, -1, length), pairs
    if weighting == "arp_loss2":
        return (sorted_labels[:, :, None] - sorted_labels[:, None, :]).abs(), pairs
    gains, has_idcg = _normalised_gains(_ideal_order(labels, mask), sorted_labels, sorted_mask, k=k, gain=gain)
    pairs = pairs & has_idcg[:, None, None]
    inverse = _truncated_inverse_discounts(length, k, gains)
    gain_gaps = (gains[:, :, None] - gains[:, None, :]).abs()
    if weighting == "ndcg_loss1":
        return (gains * inverse)[:, :, None].expand(-1, -1, length), pairs
    lambdarank = (inverse[:, None] - inverse[None, :]).abs() * gain_gaps
    if weighting == "lambdarank":
        return lambdarank, pairs
    # 1/D_r indexed by r = 0..length; a pair's rank gap is 1..length-1, so gap + 1 <= length
    # (index 0 and the clamps only serve the diagonal, which is never a pair)
    full_inverse = torch.cat([torch.zeros(1, dtype=dtype, device=device), rank_discounts(length, dtype=dtype, device=device)])
    gaps = (positions[:, None] - positions[None, :]).abs().clamp(min=1)
    delta = (full_inverse[gaps] - full_inverse[(gaps + 1).clamp(max=length)]).abs()
    ndcg_loss2 = delta[None] * gain_gaps
    if weighting == "ndcg_loss2":
        return ndcg_loss2, pairs
    return mu * ndcg_loss2 + lambdarank, pairs


# ----------------------------------------------------------------------------------------------
# hinge


def pairwise_hinge_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    margin: float = 1.0,
    weight_by_label_diff: bool = False,
    normalize: str = "lists",
) -> torch.Tensor:
    r"""RankSVM-style pairwise hinge loss.

    .. math::
        \mathrm{loss}(q) = \sum_{i, j: l_i > l_j} w_{ij} \max(0,\ m - (s_i - s_j)),
        \quad w_{ij} = 1 \text{ or } l_i - l_j

    over pairs of real documents of one list. At the hinge point the subgradient is 0 (as
    ``torch.relu``). Memory ``O(B L^2)``, about 20 bytes per pair; a call over
    ``LTRKIT_PAIR_MEMORY_GIB`` (default 4 GiB) is refused with a ``ValueError``.

    Args:
        scores: ``[..., L]`` floating-point scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; see the module docstring.
        margin: finite margin ``m`` (default 1).
        weight_by_label_diff: weigh each pair by ``l_i - l_j``.
        normalize: ``"lists"`` (default), ``"list_pairs"`` or ``"pairs"``.

    Returns:
        The reduced loss (0-d), or the per-list values ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, mask dtype, non-finite labels or hyperparameters.

    Reference: Joachims, "Optimizing Search Engines using Clickthrough Data", KDD 2002;
    Herbrich et al., "Large Margin Rank Boundaries for Ordinal Regression", 2000.

    Example:
        >>> import torch
        >>> float(pairwise_hinge_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])))
        1.0
    """
    check_reduction(reduction)
    margin = check_finite("margin", margin)
    _check_bool(weight_by_label_diff, "weight_by_label_diff")
    check_choice("normalize", normalize, NORMALIZATIONS)
    s, l, m, lead = _flatten(scores, labels, mask)
    check_pair_memory("pairwise_hinge", s.shape[0], s.shape[-1], s.shape[-1])
    s = s.masked_fill(~m, 0.0)
    label_gaps = l[:, :, None] - l[:, None, :]
    pairs = m[:, :, None] & m[:, None, :] & (label_gaps > 0)
    cost = torch.relu(margin - (s[:, :, None] - s[:, None, :]))
    if weight_by_label_diff:
        cost = cost * label_gaps
    per_list = (cost * pairs).sum(dim=(1, 2))
    return _reduce(per_list, pairs.sum(dim=(1, 2)), lead, reduction=reduction, normalize=normalize)


# ----------------------------------------------------------------------------------------------
# margin ranking (embedding kind)


def margin_ranking(
    x1: torch.Tensor,
    x2: torch.Tensor,
    y: torch.Tensor,
    *,
    margin: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""``max(0, -y (x1 - x2) + margin)``, elementwise: the semantics of ``torch.nn.MarginRankingLoss``.

    ``y = 1`` says ``x1`` should rank above ``x2``, ``y = -1`` the reverse. The three inputs must
    have the same number of dimensions and broadcast together (PyTorch's rules). ``"mean"``
    averages over the broadcast elements; unlike PyTorch, the mean of an empty input is 0, not NaN.

    Args:
        x1: ``[...]`` floating-point scores of the first items.
        x2: ``[...]`` scores of the second items.
        y: ``[...]`` targets, each 1 or -1.
        margin: finite margin (default 0).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the broadcast shape).

    Returns:
        The reduced loss (0-d), or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: non-tensors, non-float ``x1``/``x2``, different numbers of dimensions, shapes
            that do not broadcast, targets other than 1/-1, a bad margin or reduction.

    Example:
        >>> import torch
        >>> float(margin_ranking(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.0]), margin=0.5))
        1.5
    """
    check_reduction(reduction)
    margin = check_finite("margin", margin)
    for name, value in (("x1", x1), ("x2", x2)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got {_describe(value)}")
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor of 1/-1 targets, got {type(y).__name__}")
    if not x1.dim() == x2.dim() == y.dim():
        raise ValueError(
            "x1, x2 and y must have the same number of dimensions, got shapes "
            f"{tuple(x1.shape)}, {tuple(x2.shape)} and {tuple(y.shape)}"
        )
    try:
        torch.broadcast_shapes(x1.shape, x2.shape, y.shape)
    except RuntimeError as error:
        raise ValueError(
            f"x1, x2 and y shapes {tuple(x1.shape)}, {tuple(x2.shape)} and {tuple(y.shape)} do not broadcast"
        ) from error
    if not ((y == 1) | (y == -1)).all():
        raise ValueError("y must hold only 1 (x1 ranks higher) or -1 (x2 ranks higher)")
    x1, x2 = at_least_float32(x1), at_least_float32(x2)
    loss = torch.relu(-y.to(x1.dtype) * (x1 - x2) + margin)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(loss.numel(), 1)


# ----------------------------------------------------------------------------------------------
# modules (registered)


class _ListLoss(nn.Module):
    """Common ``forward(scores, labels, mask=None)`` of the list-loss wrappers."""

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._call(scores, labels, mask)


@register("ranknet_matrix")
class RankNetMatrixLoss(_ListLoss):
    """Module wrapper of :func:`ranknet_matrix_loss` (all-pairs matrix RankNet, autograd)."""

    def __init__(self, *, reduction: str = "mean", sigma: float = 1.0, include_ties: bool = False, normalize: str = "lists") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.sigma = check_positive("sigma", sigma)
        self.include_ties = _check_bool(include_ties, "include_ties")
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return ranknet_matrix_loss(scores, labels, mask, reduction=self.reduction, sigma=self.sigma,
                                   include_ties=self.include_ties, normalize=self.normalize)


@register("ranknet")
class RankNetLoss(_ListLoss):
    """Module wrapper of :func:`ranknet_loss` (factorised RankNet)."""

    def __init__(self, *, reduction: str = "mean", sigma: float = 1.0, include_ties: bool = False, normalize: str = "lists",
                 k: Optional[int] = None) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.sigma = check_positive("sigma", sigma)
        self.include_ties = _check_bool(include_ties, "include_ties")
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self.k = check_k(k)

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return ranknet_loss(scores, labels, mask, reduction=self.reduction, sigma=self.sigma,
                            include_ties=self.include_ties, normalize=self.normalize, k=self.k)


@register("lambdarank")
class LambdaRankLoss(_ListLoss):
    """Module wrapper of :func:`lambdarank_loss`."""

    def __init__(self, *, reduction: str = "mean", sigma: float = 1.0, k: Optional[int] = None,
                 gain: str = "exp2", normalize: str = "lists") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.sigma = check_positive("sigma", sigma)
        self.k = check_k(k)
        self.gain = check_gain(gain)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return lambdarank_loss(scores, labels, mask, reduction=self.reduction, sigma=self.sigma, k=self.k,
                               gain=self.gain, normalize=self.normalize)


@register("lambdaloss")
class LambdaLoss(_ListLoss):
    """Module wrapper of :func:`lambdaloss`."""

    def __init__(self, *, reduction: str = "mean", weighting: str = "ndcg_loss2", k: Optional[int] = None,
                 sigma: float = 1.0, mu: float = 10.0, gain: str = "exp2", eps: float = 0.0,
                 normalize: str = "lists") -> None:
        super().__init__()
        if weighting not in LAMBDALOSS_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(LAMBDALOSS_WEIGHTINGS)}, got {weighting!r}")
        self.reduction = check_reduction(reduction)
        self.weighting = weighting
        self.k = check_k(k)
        self.sigma = check_positive("sigma", sigma)
        self.mu = check_non_negative("mu", mu)
        self.gain = check_gain(gain)
        self.eps = _check_eps(eps)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return lambdaloss(scores, labels, mask, reduction=self.reduction, weighting=self.weighting, k=self.k,
                          sigma=self.sigma, mu=self.mu, gain=self.gain, eps=self.eps, normalize=self.normalize)


@register("pairwise_hinge")
class PairwiseHingeLoss(_ListLoss):
    """Module wrapper of :func:`pairwise_hinge_loss`."""

    def __init__(self, *, reduction: str = "mean", margin: float = 1.0, weight_by_label_diff: bool = False,
                 normalize: str = "lists") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.margin = check_finite("margin", margin)
        self.weight_by_label_diff = _check_bool(weight_by_label_diff, "weight_by_label_diff")
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def _call(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return pairwise_hinge_loss(scores, labels, mask, reduction=self.reduction, margin=self.margin,
                                   weight_by_label_diff=self.weight_by_label_diff, normalize=self.normalize)


@register("margin_ranking", kind="embedding")
class MarginRankingLoss(nn.Module):
    """Module wrapper of :func:`margin_ranking`: ``forward(x1, x2, y)``, like ``torch.nn.MarginRankingLoss``."""

    def __init__(self, *, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_finite("margin", margin)
        self.reduction = check_reduction(reduction)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margin_ranking(x1, x2, y, margin=self.margin, reduction=self.reduction)
