"""Ranking losses: pure functions on padded ``(scores, labels, mask)`` plus registered modules.

``get(name, **hyperparams)`` returns a loss module; ``names()`` lists the registered ones.
"""

from ltrkit.losses import embedding, listwise, pairwise, pointwise  # noqa: F401  (registers)
from ltrkit.losses._pairwise_kernels import PairMemoryError
from ltrkit.losses.registry import get, hyperparameters, names, register

__all__ = ["PairMemoryError", "get", "hyperparameters", "names", "register", "embedding", "listwise", "pairwise", "pointwise"]
