"""Validation helpers shared by every public boundary (losses, metrics, models).

Each helper raises ``ValueError`` naming the argument, what was received and what is allowed.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``, else raise."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_k(k: Optional[int], name: str = "k") -> Optional[int]:
    """Return ``k`` if it is ``None`` or a positive int, else raise."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be a positive int or None, got {k!r}")
    return k


def check_ranking_inputs(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a padded ranking batch and return ``(scores, labels, mask)``.

    Shapes: ``scores [..., L]`` floating point, ``labels`` the same shape, ``mask`` the same
    shape and ``torch.bool`` (True = a real document). A missing mask means every position is
    real. Labels are cast to the dtype of ``scores``. Labels at padded positions may hold any
    value (NaN included): they are zeroed here so they never reach a computation.

    Raises:
        ValueError: on a non-tensor, a shape mismatch, a non-float ``scores``, a mask that is
            not boolean, a 0-d input, or NaN/inf labels at real positions.
    """
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if scores.dim() == 0:
        raise ValueError("scores must have at least one dimension [..., L], got a 0-d tensor")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got dtype {scores.dtype}")
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match scores shape {tuple(scores.shape)}"
        )
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    else:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"mask must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must have dtype torch.bool (True = real document), got {mask.dtype}")
        if mask.shape != scores.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match scores shape {tuple(scores.shape)}"
            )
    labels = labels.to(scores.dtype)
    # elementwise rather than labels[mask]: boolean indexing copies and dominates metric time
    if not torch.isfinite(labels).logical_or(~mask).all():
        raise ValueError("labels must be finite (no NaN or inf) at real (mask=True) positions")
    labels = labels.masked_fill(~mask, 0.0)
    return scores, labels, mask
