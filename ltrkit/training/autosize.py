"""Training-loop sizes that adapt to the data when the config leaves them out.

A fixed epoch count and batch size suit one data size only: 10 epochs of batch 64 are 10
optimiser steps in all on 63 training queries (the model never converges and the best epoch
is the last) and thousands on MSLR-WEB30K. So ``training.batch_size``, ``training.epochs`` and
``early_stopping.patience`` default to ``"auto"``:

* batch size: about :data:`STEPS_PER_EPOCH_TARGET` optimiser steps per epoch,
  :math:`\\mathrm{clip}(\\lceil Q / 16 \\rceil, 8, 128)` queries for ``Q`` training queries;
* epochs: enough for ``training.step_budget`` optimiser steps (default
  :data:`STEP_BUDGET`), :math:`\\mathrm{clip}(\\lceil \\text{budget} / \\text{steps per epoch}
  \\rceil, 10, 200)`;
* patience: a fifth of the epochs, at least 5, so early stopping can act long before the end
  and still outlast the noise of a small validation split.
"""

from __future__ import annotations

import math

__all__ = [
    "MAX_BATCH",
    "MAX_EPOCHS",
    "MIN_BATCH",
    "MIN_EPOCHS",
    "MIN_PATIENCE",
    "STEPS_PER_EPOCH_TARGET",
    "STEP_BUDGET",
    "auto_batch_size",
    "auto_epochs",
    "auto_patience",
]

STEPS_PER_EPOCH_TARGET = 16
MIN_BATCH, MAX_BATCH = 8, 128
STEP_BUDGET = 1000
MIN_EPOCHS, MAX_EPOCHS = 10, 200
MIN_PATIENCE = 5


def auto_batch_size(n_queries: int) -> int:
    """Queries per batch for ``n_queries`` training queries (about 16 steps per epoch, 8..128).

    Example:
        >>> auto_batch_size(63), auto_batch_size(471), auto_batch_size(30000)
        (8, 30, 128)
    """
    return min(MAX_BATCH, max(MIN_BATCH, math.ceil(n_queries / STEPS_PER_EPOCH_TARGET)))


def auto_epochs(steps_per_epoch: int, step_budget: int = STEP_BUDGET) -> int:
    """Epochs that spend ``step_budget`` optimiser steps (10..200).

    Example:
        >>> auto_epochs(8), auto_epochs(30), auto_epochs(235)
        (125, 34, 10)
    """
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(step_budget / max(steps_per_epoch, 1))))


def auto_patience(epochs: int) -> int:
    """Epochs without improvement before stopping: a fifth of ``epochs``, at least 5.

    Example:
        >>> auto_patience(10), auto_patience(125)
        (5, 25)
    """
    return max(MIN_PATIENCE, math.ceil(epochs / 5))
