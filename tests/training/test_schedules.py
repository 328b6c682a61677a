"""Learning-rate schedules against their closed forms, and optimiser construction."""

from __future__ import annotations

import math

import pytest
import torch

from ltrkit.training.config import OptimizerConfig, ScheduleConfig
from ltrkit.training.schedules import build_optimizer, build_scheduler, lr_factor


def _lrs(config: ScheduleConfig, *, total: int, per_epoch: int, lr: float = 0.1) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=lr)
    scheduler = build_scheduler(optimizer, config, total_steps=total, steps_per_epoch=per_epoch)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_with_warmup_matches_closed_form():
    config = ScheduleConfig(name="cosine", warmup_steps=4, min_lr_ratio=0.1)
    total = 20
    seen = _lrs(config, total=total, per_epoch=5)
    for step, lr in enumerate(seen):
        if step < 4:
            expected = 0.1 * (step + 1) / 4
        else:
            progress = (step - 4) / (total - 4)
            expected = 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert lr == pytest.approx(expected, rel=1e-12)
    assert seen[4] == pytest.approx(0.1)  # the peak right after warm-up


def test_step_schedule_decays_every_step_epochs():
    config = ScheduleConfig(name="step", step_epochs=2, gamma=0.5)
    seen = _lrs(config, total=18, per_epoch=3)
    expected = [0.1 * 0.5 ** (step // 6) for step in range(18)]
    assert seen == pytest.approx(expected, rel=1e-12)


def test_constant_schedule_after_warmup():
    seen = _lrs(ScheduleConfig(name="constant", warmup_steps=2), total=6, per_epoch=3)
    assert seen == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_lr_factor_without_warmup_starts_at_peak():
    assert lr_factor(0, config=ScheduleConfig(name="cosine"), total_steps=10, steps_per_epoch=5) == 1.0


@pytest.mark.parametrize(
    ("config", "cls", "checks"),
    [
        (OptimizerConfig(name="adamw", lr=0.01, weight_decay=0.1), torch.optim.AdamW, {"weight_decay": 0.1, "lr": 0.01}),
        (OptimizerConfig(name="adam", lr=0.02), torch.optim.Adam, {"lr": 0.02}),
        (OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True), torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ],
)
def test_build_optimizer(config, cls, checks):
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    trained = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer([frozen, trained], config)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["params"] == [trained]
    for key, value in checks.items():
        assert group[key] == value
