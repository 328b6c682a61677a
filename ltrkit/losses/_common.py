"""Private helpers shared by the loss families (reductions, masks, masked log-softmax).

Reductions follow the ltrkit convention: ``"none"`` returns one value per list, ``"sum"`` adds
them, ``"mean"`` divides that sum by the number of lists with at least one real document (a
mean over nothing is 0, never NaN).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch


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
