"""The README's scikit-learn estimator example runs as written (on a few MQ2008 queries, with one
epoch of a small MLP on one thread, to stay fast)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

import sklearn  # noqa: E402

import ltrkit.data  # noqa: E402
from ltrkit.training.estimator import LTRRanker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data" / "mq2008" / "Fold1"


def _example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"## scikit-learn estimator.*?```python\n(.*?)```", text, re.S)
    assert found, "README.md has no Python example under '## scikit-learn estimator'"
    return found.group(1)


def _first_queries(path, *, load, n_queries: int):
    return load(path, cache=False).subset(np.arange(n_queries))


def _small(config_of):
    def config(self, parent, *, has_eval):
        config = config_of(self, parent, has_eval=has_eval)
        config["model"]["args"] = {"hidden_sizes": [8]}
        config["training"]["epochs"] = 1
        config["num_threads"] = 1
        return config

    return config


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/mq2008")
def test_readme_estimator_example_runs(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the example's relative paths are from the project folder
    monkeypatch.setattr(ltrkit.data, "load_dataset", functools.partial(_first_queries, load=ltrkit.data.load_dataset, n_queries=12))
    monkeypatch.setattr(LTRRanker, "_config", _small(LTRRanker._config))
    names: dict = {}
    with sklearn.config_context():  # the example turns metadata routing on for the process
        exec(compile(_example(), "README.md", "exec"), names)
    assert not sklearn.get_config()["enable_metadata_routing"]
    assert 0.0 <= names["test_ndcg"] <= 1.0 and names["importances"].shape == (46,)
    assert names["cv"]["test_score"].shape == (3,) and np.isfinite(names["cv"]["test_score"]).all()
    assert names["search"].best_params_ in [{"lr": lr, "loss": loss} for lr in names["grid"]["lr"] for loss in names["grid"]["loss"]]
