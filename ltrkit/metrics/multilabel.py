"""Multi-label ranking metrics: label ranking loss, coverage error, label ranking average precision.

Inputs are ``scores [N, C]`` (one row per sample, one column per label; higher = ranked higher)
and ``targets [N, C]`` in label-indicator format (0/1 or bool, 1 = the label is relevant to
the sample), as torch tensors or numpy arrays (anything ``numpy.asarray`` takes). Results
follow scikit-learn's ``label_ranking_loss``, ``coverage_error`` and
``label_ranking_average_precision_score`` (the same definitions as torchmetrics'
``LabelRankingLoss``, ``CoverageError`` and ``LabelRankingAveragePrecision``):

* **Ties** in scores count against the ranking: a label's rank is the number of labels scored
  at least as high as it (itself included), so tied labels all take the worst rank of their
  group, and a relevant/irrelevant pair with equal scores is mis-ordered.
* **Rows with no relevant label or with every label relevant** have no ranking to judge:
  label ranking loss 0 and LRAP 1; coverage error is 0 for a row with no relevant label and
  ``C`` for a row with all of them.
* **Averaging**: ``reduction="mean"`` (default) returns the mean over rows as a Python float,
  weighted by ``sample_weight`` (``sum_i w_i v_i / sum_i w_i``) when given; ``"none"`` returns
  the ``[N]`` float64 per-row values.

Every row is handled at once: one sort of the scores and one of the relevant scores per batch,
then counts by ``searchsorted`` (``O(N C log C)`` time, ``O(N C)`` memory, no loop over rows).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch

from ltrkit._checks import check_choice

__all__ = ["MULTILABEL_REDUCTIONS", "coverage_error", "label_ranking_average_precision", "label_ranking_loss"]

MULTILABEL_REDUCTIONS = ("mean", "none")

ArrayLike = Union[torch.Tensor, np.ndarray]


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric or bool array, got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _check_inputs(
    scores: object, targets: object, sample_weight: object, reduction: str
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """``(scores float64 [N, C], relevant bool [N, C], weights float64 [N] or None)``."""
    check_choice("reduction", reduction, MULTILABEL_REDUCTIONS)
    scores = _as_tensor("scores", scores)
    targets = _as_tensor("targets", targets)
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be 2-D [N, C] with C >= 1 labels, got shape {tuple(scores.shape)}")
    if scores.is_complex() or not torch.isfinite(scores.double()).all():
        raise ValueError("scores must be finite real numbers (no NaN or inf)")
    if targets.shape != scores.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match scores shape {tuple(scores.shape)}")
    if targets.dtype != torch.bool:
        if targets.is_complex() or not ((targets == 0) | (targets == 1)).all():
            raise ValueError("targets must hold only 0 and 1 (label indicator format: 1 = relevant)")
        targets = targets != 0
    if reduction == "mean" and scores.shape[0] == 0:
        raise ValueError("scores has no rows: a mean over 0 samples is undefined")
    weights = None
    if sample_weight is not None:
        if reduction != "mean":
            raise ValueError("sample_weight weighs the mean over rows; it does not apply to reduction='none'")
        weights = _as_tensor("sample_weight", sample_weight).to(device=scores.device, dtype=torch.float64)
        if weights.shape != scores.shape[:1]:
            raise ValueError(
                f"sample_weight must have shape [{scores.shape[0]}] (one weight per row), got {tuple(weights.shape)}"
            )
        if not torch.isfinite(weights).all() or (weights < 0).any() or not weights.sum() > 0:
            raise ValueError("sample_weight must be finite, >= 0 and have a positive sum")
    return scores.to(torch.float64), targets, weights


def _counts_at_or_above(scores: torch.Tensor, relevant: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ge_all, ge_rel)`` ``[N, C]`` int64: for each label ``j`` of row ``i``, the labels of that
    row scored ``>= s_ij`` (its tie-pessimistic rank), and how many of them are relevant."""
    n_labels = scores.shape[1]
    # the number of entries below s_ij is the left insertion point of s_ij in the sorted row
    below_all = torch.searchsorted(scores.sort(dim=1).values, scores)
    # irrelevant labels become -inf, which is below every (finite) score
    relevant_scores = scores.masked_fill(~relevant, -math.inf).sort(dim=1).values
    below_rel = torch.searchsorted(relevant_scores, scores)
    return n_labels - below_all, n_labels - below_rel


def _reduce(per_row: torch.Tensor, weights: Optional[torch.Tensor], reduction: str) -> Union[float, torch.Tensor]:
    if reduction == "none":
        return per_row
    if weights is None:
        return float(per_row.mean())
    return float((per_row * weights).sum() / weights.sum())


def label_ranking_loss(
    scores: ArrayLike,
    targets: ArrayLike,
    *,
    sample_weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
) -> Union[float, torch.Tensor]:
    r"""Label ranking loss: the fraction of relevant/irrelevant label pairs ranked the wrong way.

    .. math::
        \mathrm{loss}_i = \frac{\big|\{(k, l) : y_{ik} = 1,\ y_{il} = 0,\ s_{ik} \le s_{il}\}\big|}
                               {|Y_i|\,(C - |Y_i|)}

    with ``|Y_i|`` the number of relevant labels of row ``i``; ties count as errors, and a row
    with ``|Y_i| = 0`` or ``|Y_i| = C`` has loss 0 (scikit-learn's ``label_ranking_loss``).

    Args:
        scores: ``[N, C]`` finite scores.
        targets: ``[N, C]`` 0/1 or bool, 1 = relevant.
        sample_weight: optional ``[N]`` weights ``>= 0`` with a positive sum (``"mean"`` only).
        reduction: ``"mean"`` (a float) or ``"none"`` (``[N]`` float64 tensor).

    Returns:
        The (weighted) mean over rows, or the per-row values.

    Raises:
        ValueError: not 2-D, shape mismatch, non-finite scores, targets other than 0/1, bad
            weights, a mean over no rows, a bad reduction.

    Reference: Tsoumakas, Katakis, Vlahavas. "Mining Multi-label Data". Data Mining and
    Knowledge Discovery Handbook, 2010.

    Example:
        >>> label_ranking_loss([[0.75, 0.5, 1.0], [1.0, 0.2, 0.1]], [[1, 0, 0], [0, 0, 1]])
        0.75
    """
    scores, relevant, weights = _check_inputs(scores, targets, sample_weight, reduction)
    ge_all, ge_rel = _counts_at_or_above(scores, relevant)
    # irrelevant labels scored at or above each relevant one, summed over the relevant ones
    errors = torch.where(relevant, ge_all - ge_rel, 0).sum(dim=1)
    n_relevant = relevant.sum(dim=1)
    n_pairs = n_relevant * (scores.shape[1] - n_relevant)
    # int64 / int64 would divide in the default float dtype (float32)
    per_row = torch.where(n_pairs > 0, errors.double() / n_pairs.clamp(min=1).double(), 0.0)
    return _reduce(per_row, weights, reduction)


def coverage_error(
    scores: ArrayLike,
    targets: ArrayLike,
    *,
    sample_weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
) -> Union[float, torch.Tensor]:
    r"""Coverage error: how far down the ranking one must go to cover every relevant label.

    .. math::
        \mathrm{coverage}_i = \max_{k : y_{ik} = 1} \mathrm{rank}_{ik},
        \quad \mathrm{rank}_{ik} = \big|\{j : s_{ij} \ge s_{ik}\}\big|

    so tied labels take the worst rank of their group, and a row with no relevant label has
    coverage 0 (scikit-learn's ``coverage_error``; 1 more than Tsoumakas et al.'s definition).
    The best value is the mean number of relevant labels per row.

    Args:
        scores: ``[N, C]`` finite scores.
        targets: ``[N, C]`` 0/1 or bool, 1 = relevant.
        sample_weight: optional ``[N]`` weights ``>= 0`` with a positive sum (``"mean"`` only).
        reduction: ``"mean"`` (a float) or ``"none"`` (``[N]`` float64 tensor).

    Returns:
        The (weighted) mean over rows, or the per-row values.

    Raises:
        ValueError: as :func:`label_ranking_loss`.

    Example:
        >>> coverage_error([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1, 0, 0], [0, 1, 1]])
        1.5
    """
    scores, relevant, weights = _check_inputs(scores, targets, sample_weight, reduction)
    ge_all, _ = _counts_at_or_above(scores, relevant)
    per_row = torch.where(relevant, ge_all, 0).amax(dim=1).to(torch.float64)
    return _reduce(per_row, weights, reduction)


def label_ranking_average_precision(
    scores: ArrayLike,
    targets: ArrayLike,
    *,
    sample_weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
) -> Union[float, torch.Tensor]:
    r"""Label ranking average precision (LRAP).

    .. math::
        \mathrm{LRAP}_i = \frac{1}{|Y_i|} \sum_{k : y_{ik} = 1}
            \frac{\big|\{j : y_{ij} = 1,\ s_{ij} \ge s_{ik}\}\big|}{\big|\{j : s_{ij} \ge s_{ik}\}\big|}

    the mean, over the relevant labels of a row, of the fraction of relevant labels among those
    ranked at or above it (ties taking the worst rank); a row with no relevant label or with
    every label relevant scores 1 (scikit-learn's ``label_ranking_average_precision_score``).
    Always in ``(0, 1]``; 1 is best.

    Args:
        scores: ``[N, C]`` finite scores.
        targets: ``[N, C]`` 0/1 or bool, 1 = relevant.
        sample_weight: optional ``[N]`` weights ``>= 0`` with a positive sum (``"mean"`` only).
        reduction: ``"mean"`` (a float) or ``"none"`` (``[N]`` float64 tensor).

    Returns:
        The (weighted) mean over rows, or the per-row values.

    Raises:
        ValueError: as :func:`label_ranking_loss`.

    Example:
        >>> round(label_ranking_average_precision([[0.75, 0.5, 1.0], [1.0, 0.2, 0.1]], [[1, 0, 0], [0, 0, 1]]), 4)
        0.4167
    """
    scores, relevant, weights = _check_inputs(scores, targets, sample_weight, reduction)
    ge_all, ge_rel = _counts_at_or_above(scores, relevant)
    precision = torch.where(relevant, ge_rel.double() / ge_all.double(), 0.0)
    n_relevant = relevant.sum(dim=1)
    ranked = (n_relevant > 0) & (n_relevant < scores.shape[1])
    per_row = torch.where(ranked, precision.sum(dim=1) / n_relevant.clamp(min=1).double(), 1.0)
    return _reduce(per_row, weights, reduction)
