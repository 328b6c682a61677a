"""Validation helpers shared by every public boundary (losses, metrics, models).

Each helper raises ``ValueError`` naming the argument, what was received and what is allowed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    import torch

REDUCTIONS = ("mean", "sum", "none")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _is_real_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_finite(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number, else raise ``ValueError``."""
    if not _is_real_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ``ValueError``."""
    if not _is_real_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise ``ValueError``."""
    if not _is_real_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum`` (bools rejected), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``, else raise."""
    return check_choice("reduction", reduction, REDUCTIONS)


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
    # imported here, not at module level: the scalar checks serve torch-free code too (the
    # synthetic generator behind `ltrkit data generate`)
    import torch

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
