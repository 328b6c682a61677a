"""Helpers of the export tests: the three exportable models, tiny runs of them, raw test lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np

import ltrkit
from ltrkit.data.synthetic import generate

N_FEATURES = 10
MODELS: Dict[str, Dict[str, Any]] = {
    "linear": {},
    # batch norm (RowBatchNorm) and affine input normalisation exercise the graph's layer swaps
    "mlp": {"hidden_sizes": [16], "norm": "batch", "input_norm": "affine"},
    "attention": {"d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32, "positional_encoding": "sinusoidal"},
}
# list lengths of the equivalence tests: a single document up to 1,000, scored in one padded batch
LIST_LENGTHS = (1, 2, 7, 33, 1000)


def train_run(out: Path, model: str, normalization: str = "zscore") -> Path:
    """Train ``model`` for one epoch on tiny synthetic data; returns the run folder."""
    config = {
        "data": {"synthetic": {"train_queries": 30, "vali_queries": 8, "test_queries": 8, "n_features": N_FEATURES, "mean_list_length": 10.0, "max_list_length": 25, "seed": 3}},
        "normalization": normalization,
        "model": {"name": model, "args": MODELS[model]},
        "loss": {"name": "listnet", "args": {}},
        "training": {"epochs": 1, "batch_size": 8},
        "early_stopping": {"metric": "ndcg@10", "patience": None},
        "num_threads": 1,
        "output": {"dir": str(out), "name": model, "tensorboard": False, "plots": False},
    }
    return Path(ltrkit.train(config).run_dir)


def raw_lists(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(features [n, F], query_offsets)`` of raw synthetic documents in lists of :data:`LIST_LENGTHS`."""
    features = generate(30, n_features=N_FEATURES, seed=seed, mean_list_length=60.0, max_list_length=1000).features
    total = sum(LIST_LENGTHS)
    assert features.shape[0] >= total
    return features[:total], np.concatenate([[0], np.cumsum(LIST_LENGTHS)])
