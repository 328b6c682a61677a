"""Checkpoint files, RNG state capture and atomic writes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ltrkit.training import _io
from ltrkit.training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def _draw() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    _draw()
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state(), "epoch": 1})
    expected = _draw()
    _draw()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert _draw() == expected


def test_checkpoint_loads_with_weights_only_and_keeps_tensors(tmp_path):
    model = torch.nn.Linear(3, 1)
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "history": [{"epoch": 1, "train_loss": 0.5}]})
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw["format"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(raw["model"][key], value)


@pytest.mark.parametrize(("content", "match"), [(b"not a checkpoint", "corrupt or truncated"), (None, "not an ltrkit checkpoint")])
def test_load_checkpoint_rejects_foreign_files(tmp_path, content, match):
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"weights": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_load_checkpoint_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    _io.write_text(path, "old")

    def explode(handle):
        handle.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(path, explode, binary=False)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_write_json_is_strict_json(tmp_path):
    _io.write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.5, float("inf")]})
    assert (tmp_path / "a.json").read_text().split() == ["{", '"x":', "null,", '"y":', "[", "1.5,", "null", "]", "}"]
