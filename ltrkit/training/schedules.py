"""Optimisers and per-step learning-rate schedules built from the config."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ltrkit.training.config import OptimizerConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scheduler", "lr_factor"]


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), Adam (L2 in the gradient) or SGD (momentum, Nesterov)."""
    params = [p for p in parameters if p.requires_grad]
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=tuple(config.betas))
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, betas=tuple(config.betas))
    return torch.optim.SGD(
        params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum, nesterov=config.nesterov
    )


def lr_factor(step: int, *, config: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr before optimiser step ``step`` (0-based).

    .. math::
        f(t) = \\frac{t + 1}{W} \\text{ for } t < W, \\text{ else }
        \\begin{cases} 1 & \\text{constant} \\\\
        r + (1 - r) \\tfrac{1}{2}(1 + \\cos(\\pi \\tfrac{t - W}{T - W})) & \\text{cosine} \\\\
        \\gamma^{\\lfloor t / (E \\cdot S) \\rfloor} & \\text{step} \\end{cases}

    with ``W`` warm-up steps, ``T`` total steps, ``r`` = ``min_lr_ratio``, ``E`` = ``step_epochs``
    and ``S`` steps per epoch. Warm-up starts at ``1/W`` (not 0) so the first step already learns.

    Example:
        >>> config = ScheduleConfig(name="cosine", warmup_steps=2)
        >>> [round(lr_factor(t, config=config, total_steps=6, steps_per_epoch=3), 3) for t in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.name == "constant":
        return 1.0
    if config.name == "cosine":
        span = max(total_steps - warmup, 1)
        progress = min((step - warmup) / span, 1.0)
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.gamma ** (step // (config.step_epochs * max(steps_per_epoch, 1)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, *, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step with :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, config=config, total_steps=total_steps, steps_per_epoch=steps_per_epoch),
    )
