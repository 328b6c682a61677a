"""ltrkit: learning to rank on PyTorch.

Data flows one way: files -> :mod:`ltrkit.data` -> batches -> :mod:`ltrkit.models` -> scores ->
:mod:`ltrkit.losses` / :mod:`ltrkit.metrics`; :mod:`ltrkit.training` drives the loop and
:mod:`ltrkit.cli` exposes it as the ``ltrkit`` command.

The training API is re-exported here (``ltrkit.train``, ``ltrkit.Ranker``, ``ltrkit.LTRRanker``,
...) and imported on first use, so ``import ltrkit`` stays cheap.
"""

from ltrkit._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
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

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
