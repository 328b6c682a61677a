"""Config-driven training: the validated config, the trainer, the run folder, and ``Ranker``.

    >>> from ltrkit.training import train, Ranker              # doctest: +SKIP
    >>> result = train("configs/mq2008.json", training__epochs=5)  # doctest: +SKIP
    >>> scores = Ranker.load(result.run_dir).predict("test.txt")   # doctest: +SKIP
"""

from ltrkit.training.config import ConfigError, TrainConfig, load_config
from ltrkit.training.predict import Ranker
from ltrkit.training.trainer import RegressionGateError, TrainResult, resume, train

__all__ = ["ConfigError", "Ranker", "RegressionGateError", "TrainConfig", "TrainResult", "load_config", "resume", "train"]
