"""ltrkit: learning to rank on PyTorch.

Data flows one way: files -> :mod:`ltrkit.data` -> batches -> :mod:`ltrkit.models` -> scores ->
:mod:`ltrkit.losses` / :mod:`ltrkit.metrics`; :mod:`ltrkit.training` drives the loop and
:mod:`ltrkit.cli` exposes it as the ``ltrkit`` command.

The training API is re-exported here (``ltrkit.train``, ``ltrkit.Ranker``, ``ltrkit.LTRRanker``,
...) and imported on first use, so ``import ltrkit`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

__version__ = "0.1.0"

_LAZY_EXPORTS: Dict[str, str] = {
    "train": "ltrkit.training",
    "resume": "ltrkit.training",
    "Ranker": "ltrkit.training",
    "TrainConfig": "ltrkit.training",
    "TrainResult": "ltrkit.training",
    "load_config": "ltrkit.training",
    "ConfigError": "ltrkit.training",
    "RegressionGateError": "ltrkit.training",
    "LTRRanker": "ltrkit.training.estimator",
    "load_dataset": "ltrkit.data",
    "RankingDataset": "ltrkit.data",
    "evaluate_dataset": "ltrkit.metrics",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ltrkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
