"""A 2-member ensemble run resumed from last.pt half-way ends where the uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch

from ltrkit.training import resume, train
from ltrkit.training.checkpoint import load_checkpoint

# dropout and input noise draw from the RNG in every step: a resume must restore its state too
DASALC = {"name": "dasalc", "args": {"hidden_sizes": [16], "dropout": 0.2, "input_noise": 0.3, "d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}}


class Interrupt(Exception):
    pass


def _stop_after_two(epoch: int, record: dict) -> None:
    if epoch == 2:
        raise Interrupt


def _weights(path) -> dict:
    return load_checkpoint(path)["model"]


def test_a_resumed_ensemble_equals_the_uninterrupted_run(tmp_path, make_tiny):
    runs = tmp_path / "runs"
    config = make_tiny(
        runs,
        model=DASALC,
        loss={"name": "softmax", "args": {}},
        training={"epochs": 4, "batch_size": 8, "max_slate_length": 20, "sublist_fraction": 0.7, "ensemble": 2, "ensemble_combine": "rank_mean"},
    )
    full = train(config, output={"dir": str(runs), "name": "full"})
    with pytest.raises(Interrupt):
        train(config, output={"dir": str(runs), "name": "cut"}, on_epoch_end=_stop_after_two)
    cut = runs / "cut"
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = resume(cut)

    for checkpoint in ("last.pt", "best.pt"):
        expected, got = _weights(full.run_dir / "checkpoints" / checkpoint), _weights(cut / "checkpoints" / checkpoint)
        assert sorted(got) == sorted(expected) and any(key.startswith("members.1.") for key in got)
        for key, value in expected.items():
            assert torch.equal(got[key], value), key
    # the members learnt differently (seeds seed and seed + 1), so the comparison covers both
    assert not torch.equal(expected["members.0.head.weight"], expected["members.1.head.weight"])
    strip = lambda history: [{k: v for k, v in r.items() if k not in ("seconds", "docs_per_s")} for r in history]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.metrics == full.metrics
