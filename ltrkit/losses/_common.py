"""Private helpers shared by the loss families (precision, reductions, masks, masked log-softmax).

Precision: every loss computes in float32 or wider. Scores in a 16-bit float type are promoted
to float32 on entry (float64 stays float64), as ``torch.autocast`` runs PyTorch's own losses:
float16 overflows at 65,504 (``n^2`` pair counts from ``n = 256``, sums of pair costs,
NeuralSort logits of scores near 1e4) and bfloat16 keeps 8 significant bits (integers are
exact only up to 256, so pair counts and list sums come out wrong). The loss comes back in
float32; autograd returns the gradient to the 16-bit scores in their own dtype. Pair counts
are int64.

Reductions follow the ltrkit convention: ``"none"`` returns one value per list, ``"sum"`` adds
them, ``"mean"`` divides that sum by the number of lists with at least one real document (a
mean over nothing is 0, never NaN).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, TypeVar

import torch

from ltrkit._checks import check_ranking_inputs

T = TypeVar("T")


def at_least_float32(x: T) -> T:
    """``x`` as float32 if it is a floating-point tensor narrower than 32 bits, else ``x`` itself.

    Anything else (float32/float64 tensors, integer tensors, non-tensors) passes through
    unchanged, so the validation that follows still reports what the caller passed.
    """
    if isinstance(x, torch.Tensor) and x.is_floating_point() and torch.finfo(x.dtype).bits < 32:
        return x.float()
    return x


def check_loss_inputs(
    scores: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~ltrkit._checks.check_ranking_inputs` on scores promoted by :func:`at_least_float32`.

    Labels are then cast straight to the computation dtype, never through the 16-bit one.
    """
    return check_ranking_inputs(at_least_float32(scores), labels, mask)


def reduce_lists(per_list: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-list losses ``[...]``; lists where ``valid`` is False contribute exactly 0.

    The caller must already have produced finite values for invalid lists (``masked_fill`` after
    a NaN would still leak NaN into the backward pass).
    """
    per_list = per_list.masked_fill(~valid, 0.0)
    if reduction == "none":
        return per_list
    total = per_list.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1).to(per_list.dtype)


def compute_mask(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(valid, mask_for_compute)``: lists with a real document, and a mask that treats every
    position of an all-padding list as real.

    Computing an all-padding list as a list of zeros keeps every intermediate finite (a softmax
    over nothing is NaN); its loss is then dropped by :func:`reduce_lists`.
    """
    valid = mask.any(dim=-1)
    return valid, mask | ~valid.unsqueeze(-1)


def masked_log_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the real positions of the last dim; 0 at padded positions.

    Every row of ``mask`` must hold at least one True (see :func:`compute_mask`). Padded entries
    enter as ``-inf`` so their probability is exactly 0; the backward pass of ``log_softmax``
    multiplies by ``exp(-inf) = 0`` there, so no NaN reaches the gradient.
    """
    return x.masked_fill(~mask, -math.inf).log_softmax(dim=-1).masked_fill(~mask, 0.0)
