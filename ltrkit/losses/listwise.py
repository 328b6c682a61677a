"""Listwise ranking losses: ListNet, KL divergence, ListMLE, ApproxNDCG, NeuralNDCG and softmax
cross-entropy.

Every loss takes a padded batch ``scores [..., L]``, ``labels [..., L]`` (graded relevance) and an
optional boolean ``mask [..., L]`` (True = a real document; None = all real). Padded positions
never change a loss or a gradient: their scores and labels are ignored whatever they hold.

Reductions: ``"none"`` returns ``[...]`` (one loss per list), ``"sum"`` their sum and ``"mean"``
(default) the sum divided by the number of lists with at least one real document, so an
all-padding list contributes 0 and does not dilute the mean (:func:`kl_div_loss` adds
``"batchmean"``, its default, after ``torch.nn.KLDivLoss``). Losses are minimised: the metric
based losses return ``1 - (relaxed) NDCG``.

Precision: float16/bfloat16 scores are computed in float32 and the loss is float32 (float16
logits overflow: NeuralSort's ``(n + 1 - 2r) s`` passes 65,504 for scores near 1e4 and long
lists); the gradient reaches the scores in their own dtype.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ltrkit._checks import (
    check_choice,
    check_int,
    check_k,
    check_non_negative,
    check_positive,
    check_reduction,
)
from ltrkit.losses._listwise_neuralsort import (
    compact,
    neural_sort_logits,
    sinkhorn_kernel,
    sinkhorn_scalings,
    sinkhorn_weighted_sum,
)
from ltrkit.losses._pairwise_kernels import check_pair_memory
from ltrkit.losses._common import (
    check_loss_inputs,
    compute_mask,
    masked_log_softmax,
    reduce_lists,
)
from ltrkit.losses.registry import register
from ltrkit.metrics.ranking import check_gain, gain_values, ideal_dcg, rank_discounts, sort_order

__all__ = [
    "listnet_loss",
    "kl_div_loss",
    "listmle_loss",
    "approx_ndcg_loss",
    "neural_ndcg_loss",
    "neural_sort",
    "softmax_loss",
    "ListNetLoss",
    "KLDivLoss",
    "ListMLELoss",
    "ApproxNDCGLoss",
    "NeuralNDCGLoss",
    "SoftmaxLoss",
]

LABEL_TRANSFORMS = ("softmax", "sum", "exp2")
KL_REDUCTIONS = ("batchmean", "mean", "sum", "none")
TIE_BREAKS = ("random", "input_order")


def _check_non_negative_labels(labels: torch.Tensor, mask: torch.Tensor, why: str) -> None:
    if bool((labels[mask] < 0).any()):
        raise ValueError(f"labels must be >= 0 at real positions {why}, got min {labels[mask].min().item()}")


# --------------------------------------------------------------------------------------------
# ListNet
# --------------------------------------------------------------------------------------------


def _listnet_target(labels: torch.Tensor, mask: torch.Tensor, label_transform: str) -> torch.Tensor:
    """Target top-1 distribution over the real documents (all zero where it is undefined)."""
    if label_transform == "softmax":
        return masked_log_softmax(labels, mask).exp() * mask
    weights = labels if label_transform == "sum" else torch.pow(2.0, labels) - 1.0
    weights = weights * mask
    total = weights.sum(dim=-1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.ones_like(total))


def listnet_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    temperature: float = 1.0,
    label_transform: str = "softmax",
) -> torch.Tensor:
    r"""ListNet: cross-entropy between top-1 probabilities of labels and scores.

    .. math::
        \ell = -\sum_{i} P_y(i) \log \frac{\exp(s_i / T)}{\sum_{j} \exp(s_j / T)}

    with the sums over the real documents of a list and the target ``P_y`` given by
    ``label_transform``: ``"softmax"`` (``softmax(y)``, Cao et al.'s choice), ``"sum"``
    (``y_i / sum_j y_j``) or ``"exp2"`` (``(2^{y_i} - 1) / sum_j (2^{y_j} - 1)``). For ``"sum"``
    and ``"exp2"`` labels must be >= 0, and a list whose target weights sum to 0 has no target
    distribution and contributes 0 (it still counts in the mean).

    Args:
        scores: ``[..., L]`` float scores, higher = better.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"mean"`` (over lists with a real document), ``"sum"`` or ``"none"``.
        temperature: ``T > 0`` dividing the scores.
        label_transform: ``"softmax"``, ``"sum"`` or ``"exp2"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes/dtypes/labels (see ``check_ranking_inputs``), a bad reduction,
            ``temperature <= 0``, an unknown ``label_transform``, or negative labels with
            ``"sum"``/``"exp2"``.

    Paper: Cao, Qin, Liu, Tsai, Li. "Learning to Rank: From Pairwise Approach to Listwise
    Approach". ICML 2007.

    Example:
        >>> import torch
        >>> round(float(listnet_loss(torch.zeros(1, 4), torch.tensor([[2., 1., 0., 0.]]))), 4)
        1.3863
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    check_choice("label_transform", label_transform, LABEL_TRANSFORMS)
    if label_transform != "softmax":
        _check_non_negative_labels(labels, mask, f"with label_transform={label_transform!r}")
    valid, cmask = compute_mask(mask)
    log_p = masked_log_softmax(scores.masked_fill(~mask, 0.0) / temperature, cmask)
    target = _listnet_target(labels, cmask, label_transform)
    per_list = -(target * log_p).sum(dim=-1)
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# KL divergence
# --------------------------------------------------------------------------------------------


def kl_div_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "batchmean",
) -> torch.Tensor:
    r"""KL divergence of the score distribution from the label distribution of each list.

    .. math::
        P_y(i) = \frac{y_i}{\sum_j y_j}, \quad
        \log Q(i) = s_i - \log \sum_j \exp s_j, \quad
        \ell = \sum_i P_y(i) \big(\log P_y(i) - \log Q(i)\big)

    with the sums over the real documents of a list: ``torch.nn.KLDivLoss`` applied to
    ``input = log_softmax(scores)`` and ``target = P_y`` over the real documents (terms with
    ``P_y(i) = 0`` are 0, as there). It is ListNet with ``label_transform="sum"`` minus the
    entropy of ``P_y``, so it has the same gradient and is 0 at its minimum. Labels must be
    >= 0; a list whose labels are all 0 has no label distribution: its loss is 0 and
    ``"mean"`` leaves it out.

    Reductions (lists with no real document always contribute 0 and are never counted):

    * ``"batchmean"`` (default): the sum over lists divided by the number of lists with a real
      document (``torch.nn.KLDivLoss(reduction="batchmean")`` on ``[B, L]`` lists without
      padding divides by ``B``; lists with all-zero labels count, as zero target rows do there);
    * ``"mean"``: the sum divided by the number of lists with a label distribution;
    * ``"sum"``; ``"none"``: ``[...]``, one value per list.

    Args:
        scores: ``[..., L]`` float scores (logits of ``Q``).
        labels: ``[..., L]`` relevance, >= 0 at real positions.
        mask: ``[..., L]`` bool, True = real document; None = all real.
        reduction: ``"batchmean"``, ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs (see ``check_ranking_inputs``), a bad reduction, negative labels.

    Paper: Kullback, Leibler. "On Information and Sufficiency". Ann. Math. Statist. 22(1), 1951;
    as a listwise loss: Cao et al., ICML 2007 (ListNet's top-1 cross-entropy).

    Example:
        >>> import torch
        >>> round(float(kl_div_loss(torch.zeros(1, 2), torch.tensor([[1., 0.]]))), 4)
        0.6931
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_choice("reduction", reduction, KL_REDUCTIONS)
    _check_non_negative_labels(labels, mask, "for kl_div_loss")
    valid, cmask = compute_mask(mask)
    log_q = masked_log_softmax(scores.masked_fill(~mask, 0.0), cmask)
    target = _listnet_target(labels, cmask, "sum")
    per_list = (torch.xlogy(target, target) - target * log_q).sum(dim=-1)
    if reduction == "batchmean":
        return reduce_lists(per_list, valid, "mean")
    if reduction == "mean":
        return reduce_lists(per_list, labels.sum(dim=-1) > 0, "mean")
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy (TF-Ranking)
# --------------------------------------------------------------------------------------------


def softmax_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    weights: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    temperature: float = 1.0,
) -> torch.Tensor:
    r"""Softmax cross-entropy with the labels as weights (TF-Ranking's ``softmax_loss``).

    .. math::
        \ell = -\sum_{i} w_i y_i \log \frac{\exp(s_i / T)}{\sum_{j} \exp(s_j / T)}

    over the real documents. This equals TF-Ranking's per-list value: the cross-entropy with
    the normalised target ``w y / sum(w y)`` weighted by ``sum(w y)``, so a list without a
    relevant document contributes 0. Unlike ListNet with ``label_transform="sum"``, lists with
    more relevance weigh more. (TF-Ranking's default mean divides by the number of lists with a
    relevant document; ltrkit's ``"mean"`` divides by the lists with a real document.)

    Args:
        scores: ``[..., L]`` float scores.
        labels: ``[..., L]`` relevance, >= 0 at real positions.
        mask: ``[..., L]`` bool, True = real; None = all real.
        weights: optional ``[..., L]`` per-item weights (>= 0, finite at real positions).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        temperature: ``T > 0`` dividing the scores.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs, negative labels or weights, a weights shape mismatch,
            ``temperature <= 0``.

    Reference: Bruch, Wang, Bendersky, Najork. "An Analysis of the Softmax Cross Entropy Loss
    for Learning-to-Rank with Binary Relevance". ICTIR 2019; Pasumarthi et al. "TF-Ranking".
    KDD 2019.

    Example:
        >>> import torch
        >>> round(float(softmax_loss(torch.zeros(1, 2), torch.tensor([[2., 0.]]))), 4)
        1.3863
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    _check_non_negative_labels(labels, mask, "for softmax_loss")
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or weights.shape != scores.shape:
            got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise ValueError(f"weights must be a tensor of shape {tuple(scores.shape)}, got {got}")
        weights = weights.to(scores.dtype)
        real_weights = weights[mask]
        if not bool(torch.isfinite(real_weights).all()) or bool((real_weights < 0).any()):
            raise ValueError("weights must be finite and >= 0 at real (mask=True) positions")
        labels = labels * weights.masked_fill(~mask, 0.0)
    valid, cmask = compute_mask(mask)
    log_p = masked_log_softmax(scores.masked_fill(~mask, 0.0) / temperature, cmask)
    per_list = -(labels * log_p).sum(dim=-1)
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# ListMLE
# --------------------------------------------------------------------------------------------


def listmle_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""ListMLE: negative Plackett-Luce log-likelihood of the ranking by labels.

    .. math::
        \ell = -\sum_{r=1}^{n} \Big( s_{\pi(r)} - \log \sum_{t=r}^{n} \exp s_{\pi(t)} \Big)

    where ``pi`` orders the ``n`` real documents by descending label. Documents with equal
    labels are ordered by a random permutation drawn from ``generator`` (each call draws a new
    one and advances the generator); with ``generator=None`` they keep input order
    (deterministic). No global RNG is used. The per-list value is the sum over ranks, as in the
    paper.

    Args:
        scores: ``[..., L]`` float scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        generator: ``torch.Generator`` for the tie-break permutation (any device; the
            permutation is moved to the scores' device).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction, ``generator`` not a ``torch.Generator``.

    Paper: Xia, Liu, Wang, Zhang, Li. "Listwise Approach to Learning to Rank: Theory and
    Algorithm". ICML 2008.

    Example:
        >>> import torch
        >>> round(float(listmle_loss(torch.zeros(1, 2), torch.tensor([[1., 0.]]))), 4)
        0.6931
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    valid, cmask = compute_mask(mask)
    if generator is None:
        shuffle = None
        order = sort_order(labels, cmask)
    else:
        keys = torch.rand(labels.shape, generator=generator, device=generator.device)
        shuffle = keys.argsort(dim=-1).to(labels.device)
        order = sort_order(labels.gather(-1, shuffle), cmask.gather(-1, shuffle))
        order = shuffle.gather(-1, order)
    # Reverse the real part (worst first) so a forward log-cumsum-exp gives every rank the
    # log-sum over itself and the ranks below it, with trailing padding unable to enter it
    # (a reversed cumsum would need -inf padding, whose gradient is NaN).
    length = scores.shape[-1]
    n = cmask.sum(dim=-1, keepdim=True)
    position = torch.arange(length, device=scores.device)
    reverse = torch.where(position < n, n - 1 - position, position)
    order = order.gather(-1, reverse)
    real = cmask.gather(-1, order)
    ordered = scores.masked_fill(~mask, 0.0).gather(-1, order)
    log_denominator = torch.logcumsumexp(ordered, dim=-1)
    per_list = ((log_denominator - ordered) * real).sum(dim=-1)
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# ApproxNDCG
# --------------------------------------------------------------------------------------------


def _ndcg_loss_from_dcg(dcg: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, k: Optional[int], gain: str) -> torch.Tensor:
    """``1 - dcg / IDCG@k`` per list; 0 where IDCG is 0 (no relevant document)."""
    best = ideal_dcg(labels, mask, k=k, gain=gain)
    has_gain = best > 0
    return torch.where(has_gain, 1.0 - dcg / torch.where(has_gain, best, torch.ones_like(best)), torch.zeros_like(dcg))


def approx_ndcg_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    alpha: float = 1.0,
    gain: str = "exp2",
) -> torch.Tensor:
    r"""ApproxNDCG: ``1 - NDCG`` with ranks replaced by a smooth function of the scores.

    .. math::
        \hat\pi_i = 1 + \sum_{j \ne i} \sigma\big(\alpha (s_j - s_i)\big), \qquad
        \ell = 1 - \frac{1}{\mathrm{IDCG}} \sum_i \frac{G(y_i)}{\log_2(1 + \hat\pi_i)}

    over the real documents; ``G`` is ``2^y - 1`` (``gain="exp2"``) or ``y`` (``"linear"``) and
    IDCG the exact ideal DCG. As ``alpha`` grows the loss tends to ``1 - NDCG`` of the ranking
    by score (ties between scores count half a rank each way). A list with no relevant document
    (IDCG = 0) has loss 0. Memory: ``[..., L, L]``, about 16 bytes per pair; a call over
    ``LTRKIT_PAIR_MEMORY_GIB`` (default 4 GiB) is refused with a ``ValueError`` naming the length.

    Args:
        scores: ``[..., L]`` float scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        alpha: sharpness ``> 0`` of the sigmoid (an inverse temperature).
        gain: ``"exp2"`` or ``"linear"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction, ``alpha <= 0``, an unknown gain.

    Paper: Qin, Liu, Li. "A General Approximation Framework for Direct Optimization of
    Information Retrieval Measures". Information Retrieval 13(4), 2010.

    Example:
        >>> import torch
        >>> loss = approx_ndcg_loss(torch.tensor([[3., 0.]]), torch.tensor([[1., 0.]]), alpha=100.)
        >>> round(float(loss), 4)
        0.0
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    alpha = check_positive("alpha", alpha)
    check_gain(gain)
    check_pair_memory("approx_ndcg", math.prod(scores.shape[:-1]), scores.shape[-1], scores.shape[-1])
    valid, cmask = compute_mask(mask)
    s = scores.masked_fill(~mask, 0.0)
    above = torch.sigmoid(alpha * (s.unsqueeze(-2) - s.unsqueeze(-1)))
    # the j == i term is sigmoid(0) = 1/2, so 1/2 + sum over real j is 1 + sum over j != i
    approx_rank = 0.5 + (above * cmask.unsqueeze(-2)).sum(dim=-1)
    gains = gain_values(labels, gain) * mask
    dcg = (gains / torch.log2(1.0 + approx_rank)).sum(dim=-1)
    per_list = _ndcg_loss_from_dcg(dcg, labels, mask, None, gain)
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# NeuralSort / NeuralNDCG
# --------------------------------------------------------------------------------------------


def _check_sinkhorn(sinkhorn_iters: int, sinkhorn_tol: float) -> float:
    check_int("sinkhorn_iters", sinkhorn_iters, 0)
    return check_non_negative("sinkhorn_tol", sinkhorn_tol)


def neural_sort(
    scores: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    temperature: float = 1.0,
    sinkhorn_iters: int = 0,
    sinkhorn_tol: float = 1e-6,
) -> torch.Tensor:
    r"""NeuralSort relaxed permutation matrix ``P_hat [..., L, L]`` (row = rank, column = document).

    .. math::
        \hat P[r, :] = \mathrm{softmax}\Big(\frac{(n + 1 - 2r)\, s - A_s \mathbf{1}}{\tau}\Big),
        \quad (A_s)_{jk} = |s_j - s_k|,\ r = 1..n

    computed over the ``n`` real documents only: columns of padded documents and rows of ranks
    beyond ``n`` are 0, so padded documents never get probability mass, and the real block is
    exactly the matrix of the list with its padding deleted. Every real row sums to 1; with
    ``sinkhorn_iters > 0`` the real block is Sinkhorn-scaled until its columns
    sum to 1 as well (within ``sinkhorn_tol``) or the iterations run out. As ``tau -> 0`` it
    tends to the permutation matrix of the descending sort. An all-padding list gives zeros.

    Args:
        scores: ``[..., L]`` float scores.
        mask: ``[..., L]`` bool, True = real; None = all real.
        temperature: ``tau > 0``.
        sinkhorn_iters: max Sinkhorn rounds (0 = plain NeuralSort).
        sinkhorn_tol: early-stop tolerance on column sums (0 = always run every round).

    Returns:
        ``[..., L, L]`` tensor (float32 for float16/bfloat16 scores, else the scores' dtype).

    Raises:
        ValueError: bad scores/mask, ``temperature <= 0``, bad Sinkhorn settings.

    Paper: Grover, Wang, Zweig, Ermon. "Stochastic Optimization of Sorting Networks via
    Continuous Relaxations". ICLR 2019.
    """
    scores, _, mask = check_loss_inputs(scores, torch.zeros_like(scores), mask)
    temperature = check_positive("temperature", temperature)
    sinkhorn_tol = _check_sinkhorn(sinkhorn_iters, sinkhorn_tol)
    lead, length = scores.shape[:-1], scores.shape[-1]
    n_lists = math.prod(lead)  # reshape(-1, 0) is ambiguous for lists of length 0
    valid, cmask = compute_mask(mask)
    flat_mask = cmask.reshape(n_lists, length)
    order = compact(flat_mask)
    real = flat_mask.gather(-1, order)
    s = scores.masked_fill(~mask, 0.0).reshape(n_lists, length).gather(-1, order)
    kernel, start = sinkhorn_kernel(neural_sort_logits(s, real, temperature=temperature, rows=length))
    a, b = sinkhorn_scalings(kernel, start, iterations=sinkhorn_iters, tol=sinkhorn_tol)
    p = a.unsqueeze(-1) * kernel * b.unsqueeze(-2)
    keep = real.unsqueeze(-1) & real.unsqueeze(-2) & valid.reshape(n_lists, 1, 1)
    p = p * keep
    # move the columns back from compacted to input order
    inverse = order.argsort(dim=-1)
    p = p.gather(-1, inverse.unsqueeze(-2).expand(-1, length, -1))
    return p.reshape(*lead, length, length)


def neural_ndcg_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    temperature: float = 1.0,
    k: Optional[int] = None,
    gain: str = "exp2",
    sinkhorn_iters: int = 50,
    sinkhorn_tol: float = 1e-6,
) -> torch.Tensor:
    r"""NeuralNDCG: ``1 - NDCG@k`` with the sort replaced by the NeuralSort relaxation.

    .. math::
        \ell = 1 - \frac{1}{\mathrm{IDCG@k}} \sum_{r=1}^{\min(k, n)}
               \frac{(\hat P\, G(y))_r}{\log_2(1 + r)}

    where ``P_hat`` is :func:`neural_sort` of the scores (Sinkhorn-scaled when
    ``sinkhorn_iters > 0``, as in the paper) and ``G`` the gain, applied before the relaxed
    sort. Padded documents get no probability mass. As ``tau -> 0`` the loss tends to
    ``1 - NDCG@k`` of the ranking by score. A list with IDCG@k = 0 has loss 0. Without
    Sinkhorn only the first ``k`` rows are built (``[B, k, L]``); with it the kernel
    ``K = exp(logits)`` (shifted so every row and column holds an exact 1; entries below
    ``3 finfo.tiny`` are 0) is built once as ``[B, L, L]`` and the scaling vectors ``a, b`` of
    ``P_hat = diag(a) K diag(b)`` are iterated in probability space: two batched
    matrix-vector products per round, ``O(B L)`` autograd memory per round, and a hand-written
    backward that forms the gradient of ``K`` in one batched matmul. ``P_hat`` itself is never
    formed: ``sum_r D_r P_hat[r, j] = b_j sum_r D_r a_r K[r, j]``. About 16 bytes per cell of
    ``[B, L, L]`` (``[B, k, L]``); a call over ``LTRKIT_PAIR_MEMORY_GIB`` (default 4 GiB) is
    refused with a ``ValueError`` naming the length.

    Args:
        scores: ``[..., L]`` float scores.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        temperature: NeuralSort ``tau > 0``.
        k: rank cutoff (positive int) or None for the whole list.
        gain: ``"exp2"`` or ``"linear"``.
        sinkhorn_iters: max Sinkhorn rounds, 0 disables scaling (default 50, as in allRank).
        sinkhorn_tol: early stop once column sums are within this of 1 (default 1e-6).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs, reduction, temperature, k, gain or Sinkhorn settings.

    Paper: Pobrotyn, Białobrzeski. "NeuralNDCG: Direct Optimisation of a Ranking Metric via
    Differentiable Relaxation of Sorting". arXiv:2102.07831, 2021.

    Example:
        >>> import torch
        >>> loss = neural_ndcg_loss(torch.tensor([[5., 0.]]), torch.tensor([[1., 0.]]), temperature=0.01)
        >>> round(float(loss), 4)
        0.0
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    check_k(k)
    check_gain(gain)
    sinkhorn_tol = _check_sinkhorn(sinkhorn_iters, sinkhorn_tol)
    lead, length = scores.shape[:-1], scores.shape[-1]
    n_lists = math.prod(lead)  # reshape(-1, 0) is ambiguous for lists of length 0
    valid, cmask = compute_mask(mask)
    flat_mask = cmask.reshape(n_lists, length)
    order = compact(flat_mask)
    real = flat_mask.gather(-1, order)
    s = scores.masked_fill(~mask, 0.0).reshape(n_lists, length).gather(-1, order)
    gains = (gain_values(labels, gain) * mask).reshape(n_lists, length).gather(-1, order)
    cutoff = length if k is None else min(k, length)
    check_pair_memory("neural_ndcg", n_lists, length if sinkhorn_iters > 0 else cutoff, length)
    discounts = rank_discounts(cutoff, dtype=s.dtype, device=s.device)
    if sinkhorn_iters > 0:
        kernel, start = sinkhorn_kernel(neural_sort_logits(s, real, temperature=temperature, rows=length))
        rank_weights = torch.nn.functional.pad(discounts, (0, length - cutoff)).expand(n_lists, length)
        dcg = sinkhorn_weighted_sum(
            kernel, start, rank_weights, gains, iterations=sinkhorn_iters, tol=sinkhorn_tol
        ).reshape(lead)
    else:
        top = neural_sort_logits(s, real, temperature=temperature, rows=cutoff).softmax(dim=-1)
        dcg = torch.bmm(discounts.expand(n_lists, 1, cutoff), top).squeeze(-2).mul(gains).sum(dim=-1).reshape(lead)
    per_list = _ndcg_loss_from_dcg(dcg, labels, mask, k, gain)
    return reduce_lists(per_list, valid, reduction)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


@register("listnet")
class ListNetLoss(nn.Module):
    """Module form of :func:`listnet_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "mean", temperature: float = 1.0, label_transform: str = "softmax") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.label_transform = check_choice("label_transform", label_transform, LABEL_TRANSFORMS)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return listnet_loss(
            scores, labels, mask, reduction=self.reduction, temperature=self.temperature, label_transform=self.label_transform
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, temperature={self.temperature}, label_transform={self.label_transform!r}"


@register("kl_div")
class KLDivLoss(nn.Module):
    """Module form of :func:`kl_div_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "batchmean") -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, KL_REDUCTIONS)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return kl_div_loss(scores, labels, mask, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("softmax")
class SoftmaxLoss(nn.Module):
    """Module form of :func:`softmax_loss`; called as ``loss(scores, labels, mask=None, weights=None)``."""

    def __init__(self, *, reduction: str = "mean", temperature: float = 1.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)

    def forward(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        weights: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return softmax_loss(scores, labels, mask, weights=weights, reduction=self.reduction, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, temperature={self.temperature}"


@register("listmle")
class ListMLELoss(nn.Module):
    """Module form of :func:`listmle_loss` that owns its tie-break generator.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        tie_break: ``"random"`` (default: equal labels ordered by a fresh random permutation on
            every call, from a private ``torch.Generator``) or ``"input_order"``.
        seed: seed of the private generator; None uses ``torch.initial_seed()`` (the seed of
            the last ``torch.manual_seed``), so seeded runs stay reproducible.
    """

    def __init__(self, *, reduction: str = "mean", tie_break: str = "random", seed: Optional[int] = None) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.tie_break = check_choice("tie_break", tie_break, TIE_BREAKS)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self.generator: Optional[torch.Generator] = None
        if tie_break == "random":
            # torch.initial_seed() reads, and does not advance, the global seed: a run seeded
            # with torch.manual_seed(s) stays reproducible without this loss touching global RNG
            self.generator = torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return listmle_loss(scores, labels, mask, reduction=self.reduction, generator=self.generator)

    # The generator state travels in state_dict so that a checkpointed run resumes with the same
    # tie-break permutations it would have drawn without the interruption.
    def get_extra_state(self) -> Optional[torch.Tensor]:
        return None if self.generator is None else self.generator.get_state()

    def set_extra_state(self, state: Optional[torch.Tensor]) -> None:
        if (state is None) != (self.generator is None):
            raise ValueError("ListMLE state_dict does not match this module's tie_break setting")
        if state is not None:
            self.generator.set_state(state)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, tie_break={self.tie_break!r}, seed={self.seed}"


@register("approx_ndcg")
class ApproxNDCGLoss(nn.Module):
    """Module form of :func:`approx_ndcg_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "mean", alpha: float = 1.0, gain: str = "exp2") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.alpha = check_positive("alpha", alpha)
        self.gain = check_gain(gain)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return approx_ndcg_loss(scores, labels, mask, reduction=self.reduction, alpha=self.alpha, gain=self.gain)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, alpha={self.alpha}, gain={self.gain!r}"


@register("neural_ndcg")
class NeuralNDCGLoss(nn.Module):
    """Module form of :func:`neural_ndcg_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(
        self,
        *,
        reduction: str = "mean",
        temperature: float = 1.0,
        k: Optional[int] = None,
        gain: str = "exp2",
        sinkhorn_iters: int = 50,
        sinkhorn_tol: float = 1e-6,
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.k = check_k(k)
        self.gain = check_gain(gain)
        self.sinkhorn_tol = _check_sinkhorn(sinkhorn_iters, sinkhorn_tol)
        self.sinkhorn_iters = sinkhorn_iters

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return neural_ndcg_loss(
            scores,
            labels,
            mask,
            reduction=self.reduction,
            temperature=self.temperature,
            k=self.k,
            gain=self.gain,
            sinkhorn_iters=self.sinkhorn_iters,
            sinkhorn_tol=self.sinkhorn_tol,
        )

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, temperature={self.temperature}, k={self.k}, gain={self.gain!r}, "
            f"sinkhorn_iters={self.sinkhorn_iters}, sinkhorn_tol={self.sinkhorn_tol}"
        )
