"""Pointwise ranking losses: regression (MSE/RMSE), sigmoid cross-entropy and ordinal regression.

Inputs are padded batches ``scores [..., L]``, ``labels [..., L]``, ``mask [..., L]`` (bool, True =
real document) like every list loss. Each list's loss is the *mean over its real documents*, so
lists weigh the same whatever their length; ``reduction`` then works over lists: ``"none"``
returns ``[...]``, ``"sum"`` sums, ``"mean"`` (default) divides by the number of lists with at
least one real document (an all-padding list contributes 0 and does not dilute the mean).
Float16/bfloat16 scores are computed in float32 and the loss is float32.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ltrkit._checks import check_reduction
from ltrkit._checks import check_finite
from ltrkit.losses._common import check_loss_inputs, reduce_lists
from ltrkit.losses.registry import register

__all__ = [
    "mse_loss",
    "rmse_loss",
    "sigmoid_bce_loss",
    "ordinal_loss",
    "ordinal_probabilities",
    "MSELoss",
    "RMSELoss",
    "SigmoidBCELoss",
    "OrdinalLoss",
]

# smallest gap the ordinal module keeps between consecutive cutpoints, so that no class can get
# probability exactly 0 in float32 for cutpoints of moderate size
_MIN_CUTPOINT_GAP = 1e-4


def _list_mean(per_item: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_item`` over the real positions of each list (0 for an empty list)."""
    count = mask.sum(dim=-1).clamp(min=1).to(per_item.dtype)
    return (per_item * mask).sum(dim=-1) / count


def mse_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""Mean squared error between scores and labels, per list.

    .. math:: \ell = \frac{1}{n} \sum_{i \text{ real}} (s_i - y_i)^2

    Args:
        scores: ``[..., L]`` predicted relevance.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"`` (over lists with a real document), ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction.

    Example:
        >>> import torch
        >>> float(mse_loss(torch.tensor([[1., 3.]]), torch.tensor([[0., 1.]])))
        2.5
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    valid = mask.any(dim=-1)
    per_list = _list_mean((scores.masked_fill(~mask, 0.0) - labels) ** 2, mask)
    return reduce_lists(per_list, valid, reduction)


def rmse_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""Root mean squared error per list: ``sqrt(mse_loss(..., reduction="none"))``.

    .. math:: \ell = \sqrt{\frac{1}{n} \sum_{i \text{ real}} (s_i - y_i)^2}

    The square root is taken per list, then lists are reduced (so ``"mean"`` is the mean RMSE
    over lists, not the RMSE of all documents pooled). At a perfect fit the gradient is 0 (the
    subgradient), not NaN.

    Args:
        scores: ``[..., L]`` predicted relevance.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction.

    Example:
        >>> import torch
        >>> round(float(rmse_loss(torch.tensor([[3., 4.]]), torch.tensor([[0., 0.]]))), 4)
        3.5355
    """
    mse = mse_loss(scores, labels, mask, reduction="none")
    check_reduction(reduction)
    positive = mse > 0
    per_list = torch.where(positive, torch.sqrt(torch.where(positive, mse, torch.ones_like(mse))), torch.zeros_like(mse))
    valid = torch.ones_like(positive) if mask is None else mask.any(dim=-1)
    return reduce_lists(per_list, valid, reduction)


def sigmoid_bce_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reduction: str = "mean",
    threshold: float = 0.0,
) -> torch.Tensor:
    r"""Sigmoid binary cross-entropy on labels binarised as ``y > threshold``.

    .. math::
        \ell = \frac{1}{n} \sum_{i \text{ real}} -\big(b_i \log \sigma(s_i) + (1 - b_i) \log(1 - \sigma(s_i))\big),
        \quad b_i = [y_i > \text{threshold}]

    Per item this is exactly ``torch.nn.functional.binary_cross_entropy_with_logits`` (the
    stable ``max(s, 0) - s b + log(1 + exp(-|s|))`` form).

    Args:
        scores: ``[..., L]`` logits.
        labels: ``[..., L]`` graded relevance.
        mask: ``[..., L]`` bool, True = real; None = all real.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        threshold: finite; labels strictly above it are positive (default 0: any relevance).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction, non-finite threshold.

    Example:
        >>> import torch
        >>> round(float(sigmoid_bce_loss(torch.zeros(1, 2), torch.tensor([[2., 0.]]))), 4)
        0.6931
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    threshold = check_finite("threshold", threshold)
    valid = mask.any(dim=-1)
    targets = (labels > threshold).to(scores.dtype)
    per_item = F.binary_cross_entropy_with_logits(scores.masked_fill(~mask, 0.0), targets, reduction="none")
    return reduce_lists(_list_mean(per_item, mask), valid, reduction)


def _check_cutpoints(cutpoints: torch.Tensor) -> torch.Tensor:
    if not isinstance(cutpoints, torch.Tensor) or cutpoints.dim() != 1 or cutpoints.numel() < 1:
        got = tuple(cutpoints.shape) if isinstance(cutpoints, torch.Tensor) else type(cutpoints).__name__
        raise ValueError(f"cutpoints must be a 1-d tensor [n_classes - 1] with at least 1 entry, got {got}")
    if not cutpoints.is_floating_point() or not bool(torch.isfinite(cutpoints).all()):
        raise ValueError("cutpoints must be finite floating-point values")
    if cutpoints.numel() > 1 and not bool((cutpoints[1:] > cutpoints[:-1]).all()):
        raise ValueError(f"cutpoints must be strictly increasing, got {cutpoints.detach().tolist()}")
    return cutpoints


def _check_ordinal_labels(labels: torch.Tensor, mask: torch.Tensor, n_classes: int) -> None:
    real = labels[mask]
    if real.numel() and (
        bool((real != torch.round(real)).any()) or bool((real < 0).any()) or bool((real > n_classes - 1).any())
    ):
        bad = real[(real != torch.round(real)) | (real < 0) | (real > n_classes - 1)][0].item()
        raise ValueError(f"labels must be integers in [0, {n_classes - 1}] at real positions for ordinal_loss, got {bad}")


def ordinal_probabilities(scores: torch.Tensor, cutpoints: torch.Tensor) -> torch.Tensor:
    r"""Class probabilities ``[..., C]`` of the cumulative-logit model.

    ``P(y > c) = sigmoid(s - theta_c)`` for ``c = 0..C-2``, so
    ``P(y = c) = P(y > c - 1) - P(y > c)`` with ``P(y > -1) = 1`` and ``P(y > C - 1) = 0``.

    Args:
        scores: ``[...]`` latent scores.
        cutpoints: ``[C - 1]`` strictly increasing thresholds.

    Returns:
        ``[..., C]`` probabilities summing to 1.

    Raises:
        ValueError: bad cutpoints.
    """
    cutpoints = _check_cutpoints(cutpoints)
    above = torch.sigmoid(scores.unsqueeze(-1) - cutpoints.to(device=scores.device, dtype=scores.dtype))
    ones = torch.ones_like(above[..., :1])
    zeros = torch.zeros_like(above[..., :1])
    return torch.cat([ones, above], dim=-1) - torch.cat([above, zeros], dim=-1)


def ordinal_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    cutpoints: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of the cumulative-logit (proportional-odds) model.

    .. math::
        P(y > c) = \sigma(s - \theta_c),\ c = 0..C-2, \qquad
        \ell = \frac{1}{n} \sum_{i \text{ real}} -\log\big(\sigma(s_i - \theta_{y_i - 1})
               - \sigma(s_i - \theta_{y_i})\big)

    with ``theta_{-1} = -inf`` and ``theta_{C-1} = +inf``. The log of the difference is computed
    stably as ``log sigma(a) + log sigma(-b) + log(1 - exp(-(a - b)))`` with
    ``a = s - theta_{y-1}``, ``b = s - theta_y`` (``a - b`` is a cutpoint gap, independent of
    ``s``), so no score, however large, gives NaN or inf.

    Args:
        scores: ``[..., L]`` latent scores.
        labels: ``[..., L]`` integer classes ``0..C-1`` at real positions.
        mask: ``[..., L]`` bool, True = real; None = all real.
        cutpoints: ``[C - 1]`` strictly increasing thresholds (may require grad).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: bad inputs or reduction, bad cutpoints, labels that are not integers in
            ``[0, C-1]``.

    Paper: McCullagh. "Regression Models for Ordinal Data". JRSS B 42(2), 1980.

    Example:
        >>> import torch
        >>> loss = ordinal_loss(torch.zeros(1, 2), torch.tensor([[0., 1.]]), cutpoints=torch.tensor([0.]))
        >>> round(float(loss), 4)
        0.6931
    """
    scores, labels, mask = check_loss_inputs(scores, labels, mask)
    check_reduction(reduction)
    cutpoints = _check_cutpoints(cutpoints).to(device=scores.device, dtype=scores.dtype)
    n_classes = cutpoints.numel() + 1
    _check_ordinal_labels(labels, mask, n_classes)
    valid = mask.any(dim=-1)
    s = scores.masked_fill(~mask, 0.0)
    cls = labels.long()
    has_lower = cls > 0
    has_upper = cls < n_classes - 1
    # gather theta_{y-1} and theta_y with in-range indices; the where()s below drop the
    # placeholder values before they can enter a log
    lower = cutpoints[(cls - 1).clamp(min=0)]
    upper = cutpoints[cls.clamp(max=n_classes - 2)]
    a = s - lower
    b = s - upper
    term_a = torch.where(has_lower, F.logsigmoid(a), torch.zeros_like(a))
    term_b = torch.where(has_upper, F.logsigmoid(-b), torch.zeros_like(b))
    gap = torch.where(has_lower & has_upper, upper - lower, torch.ones_like(a))
    term_gap = torch.where(has_lower & has_upper, torch.log(-torch.expm1(-gap)), torch.zeros_like(a))
    per_item = -(term_a + term_b + term_gap)
    return reduce_lists(_list_mean(per_item, mask), valid, reduction)


@register("mse")
class MSELoss(nn.Module):
    """Module form of :func:`mse_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return mse_loss(scores, labels, mask, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("rmse")
class RMSELoss(nn.Module):
    """Module form of :func:`rmse_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return rmse_loss(scores, labels, mask, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("sigmoid_bce")
class SigmoidBCELoss(nn.Module):
    """Module form of :func:`sigmoid_bce_loss`; called as ``loss(scores, labels, mask=None)``."""

    def __init__(self, *, reduction: str = "mean", threshold: float = 0.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.threshold = check_finite("threshold", threshold)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return sigmoid_bce_loss(scores, labels, mask, reduction=self.reduction, threshold=self.threshold)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, threshold={self.threshold}"


@register("ordinal")
class OrdinalLoss(nn.Module):
    r"""Cumulative-logit loss with learnable, always-ordered cutpoints.

    The cutpoints are ``theta_0 = first`` and ``theta_c = theta_{c-1} + softplus(raw_c) + 1e-4``,
    so any parameter values give strictly increasing cutpoints. They start evenly spaced one
    apart and centred on 0. The trainer must add ``loss.parameters()`` to the optimiser.

    Args:
        n_classes: number of ordinal classes ``C >= 2`` (labels ``0..C-1``; default 5, the
            MSLR/LETOR grades 0-4).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: ``n_classes`` not an int >= 2, a bad reduction.
    """

    def __init__(self, *, n_classes: int = 5, reduction: str = "mean") -> None:
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.n_classes = n_classes
        self.reduction = check_reduction(reduction)
        self.first = nn.Parameter(torch.tensor(-(n_classes - 2) / 2.0))
        # softplus(raw) + gap = 1 gives unit spacing at initialisation
        raw = math.log(math.expm1(1.0 - _MIN_CUTPOINT_GAP))
        self.raw_gaps = nn.Parameter(torch.full((n_classes - 2,), raw))

    def cutpoints(self) -> torch.Tensor:
        """The current ``[n_classes - 1]`` strictly increasing cutpoints."""
        gaps = F.softplus(self.raw_gaps) + _MIN_CUTPOINT_GAP
        return torch.cat([self.first.reshape(1), self.first + torch.cumsum(gaps, dim=0)])

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return ordinal_loss(scores, labels, mask, cutpoints=self.cutpoints(), reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, reduction={self.reduction!r}"
