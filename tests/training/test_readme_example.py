"""The README's Python example runs as written on the shared data, also where an earlier run left
its run folder (with one epoch, no caches and the run folder in a temporary folder, to stay fast
and leave nothing behind)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest

import ltrkit
import ltrkit.data

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data" / "mq2008" / "Fold1"


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"From Python.*?```python\n(.*?)```", text, re.S)
    assert found, "README.md has no Python example after 'From Python'"
    return found.group(1)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/mq2008")
def test_readme_python_example_runs_over_an_earlier_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's relative paths are from the project folder
    monkeypatch.setattr(ltrkit.data, "load_dataset", functools.partial(ltrkit.data.load_dataset, cache=False))
    monkeypatch.setattr(
        ltrkit,
        "train",
        functools.partial(ltrkit.train, training={"epochs": 1}, data={"cache": False}, output={"dir": str(tmp_path)}),
    )
    earlier = tmp_path / "mq2008-fold1"
    earlier.mkdir()
    (earlier / "report.json").write_text("{}")  # what a first run leaves
    names: dict = {}
    exec(compile(_readme_python(), "README.md", "exec"), names)
    assert names["result"].run_dir == earlier and names["result"].report["epochs_run"] == 1
    assert names["scores"].shape == (2874,) and np.isfinite(names["scores"]).all()
    assert names["train"].n_queries == 471
