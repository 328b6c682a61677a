"""``Ranker``: a trained model plus its normaliser, loaded from a run folder, that scores data.

    >>> ranker = Ranker.load("runs/my-run")                      # doctest: +SKIP
    >>> scores = ranker.predict("Fold1/test.txt")               # doctest: +SKIP
    >>> scores = ranker.predict_features(x, query_offsets)      # doctest: +SKIP

Scores follow the input's row order, one per document; higher means ranked higher. Features
go through the normaliser fitted on the run's training data, exactly as during training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from ltrkit.data.dataset import RankingDataset, unlabelled_dataset
from ltrkit.training.checkpoint import load_checkpoint, state_error_summary
from ltrkit.training.config import ConfigError, TrainConfig
from ltrkit.training.run_folder import check_run_folder
from ltrkit.training.scoring import score_dataset

__all__ = ["Ranker"]

# the run's data options a caller may replace when reading a file to score
_READ_OPTIONS = ("index_base", "regroup", "missing", "cache", "cache_dir", "verify_cache")


class Ranker:
    """A trained scorer: ``model`` (eval mode) + fitted ``normalizer`` + the run's ``config``.

    Args:
        model: a ``forward(features [B, L, F], mask [B, L]) -> scores [B, L]`` module.
        normalizer: a fitted :class:`ltrkit.data.transforms.Normalizer`.
        config: the run's :class:`TrainConfig` (data reading options, batch sizes).
        device: where scoring runs.
    """

    def __init__(self, model: torch.nn.Module, normalizer: Any, config: TrainConfig, *, device: Union[str, torch.device] = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.config = config

    @property
    def n_features(self) -> int:
        """Number of features the model was trained on."""
        return int(self.normalizer.n_features)

    @classmethod
    def load(cls, run_dir: Union[str, Path], checkpoint: str = "best", *, device: Union[str, torch.device] = "cpu") -> "Ranker":
        """Load the ``best`` or ``last`` weights of a run folder.

        Args:
            run_dir: the run folder written by :func:`ltrkit.training.train`.
            checkpoint: ``"best"`` or ``"last"``.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``.

        Raises:
            ConfigError: not a run folder; the checkpoint is missing, unreadable (corrupt,
                truncated, refused by ``weights_only``) or does not fit its own config (an
                unknown model, bad model args, weights of other shapes); ``checkpoint`` is not
                best|last; an unknown or unavailable ``device``. The message names the checkpoint.
        """
        from ltrkit.data.transforms import Normalizer
        from ltrkit.training.trainer import build_ranking_model, resolve_device

        if checkpoint not in ("best", "last"):
            raise ConfigError([f"checkpoint must be 'best' or 'last', got {checkpoint!r}"], source="predict")
        target = device if isinstance(device, torch.device) else resolve_device(device)
        folder = check_run_folder(run_dir)
        path = folder.checkpoint_path(checkpoint)
        if not path.is_file():
            raise ConfigError([f"{str(folder.path)!r} has no checkpoints/{checkpoint}.pt (did any epoch finish?)"], source="predict")
        try:
            state: Dict[str, Any] = load_checkpoint(path, required=("config", "model", "normalizer", "n_features"))
        except ValueError as error:
            raise ConfigError([str(error)], source="predict") from error
        try:
            config = TrainConfig.model_validate(state["config"])
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise ConfigError([f"{str(path)!r} holds an invalid config: {error}"], source="predict") from error
        name, args = config.model.name, config.model.args
        try:
            model = build_ranking_model(config, int(state["n_features"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError([f"{str(path)!r} names model {name!r} with args {args}, which cannot be built: {error}"], source="predict") from error
        try:
            model.load_state_dict(state["model"])
            normalizer = Normalizer.from_state_dict(state["normalizer"])
        except (RuntimeError, KeyError, TypeError, ValueError) as error:
            raise ConfigError([f"{str(path)!r} does not fit its model {name!r} {args}: {state_error_summary(error)}"], source="predict") from error
        return cls(model, normalizer, config, device=target)

    def read(
        self,
        path: Union[str, Path],
        *,
        query_file: Optional[Union[str, Path]] = None,
        **read_options: Any,
    ) -> RankingDataset:
        """Read a LETOR/libsvm file (or cache folder) with the run's data options and feature count.

        A file with a feature index beyond the model's feature count is an error; absent
        trailing features are zeros (sparse files).

        Args:
            path: the file or cache folder.
            query_file: its libsvm group file (default: found beside it).
            **read_options: replace the run's ``data`` options for this file: ``index_base``,
                ``regroup``, ``missing``, ``cache``, ``cache_dir``, ``verify_cache``.

        Raises:
            FileNotFoundError: no such file.
            TypeError: an unknown read option.
            ValueError: a malformed file (:class:`ltrkit.data.letor.LetorFormatError`).
        """
        from ltrkit.data.cache import load_dataset

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"data file not found: {str(path)!r}")
        unknown = sorted(set(read_options) - set(_READ_OPTIONS))
        if unknown:
            raise TypeError(f"unknown read option(s) {unknown}; choose from {list(_READ_OPTIONS)}")
        options = {**{key: getattr(self.config.data, key) for key in _READ_OPTIONS}, **read_options}
        return load_dataset(
            path,
            cache=options["cache"],
            cache_dir=options["cache_dir"],
            verify=options["verify_cache"],
            index_base=options["index_base"],
            n_features=self.n_features,
            query_file=query_file,
            regroup=options["regroup"],
            missing=options["missing"],
        )

    def predict(self, data: Union[RankingDataset, str, Path], *, query_file: Optional[Union[str, Path]] = None) -> np.ndarray:
        """Scores ``[n_docs]`` (float32) of a dataset or a file (see :meth:`read`), in its row order.

        Raises:
            ValueError: the data's feature count differs from the model's, or the file is bad.
            FileNotFoundError: no such file.
        """
        dataset = data if isinstance(data, RankingDataset) else self.read(data, query_file=query_file)
        if dataset.n_features != self.n_features:
            raise ValueError(f"{dataset.source}: has {dataset.n_features} features but the model was trained on {self.n_features}")
        from ltrkit.data.batching import normalize_split

        # a cached file stays memory-mapped: each batch is normalised as it is scored
        normalised = normalize_split(dataset, self.normalizer)
        return score_dataset(self.model, normalised, batch_size=self.config.training.eval_batch_size, device=self.device)

    def predict_features(self, features: np.ndarray, query_offsets: np.ndarray) -> np.ndarray:
        """Scores ``[n_docs]`` of a raw feature matrix ``[n_docs, F]`` grouped by ``query_offsets``.

        Args:
            features: ``[n_docs, n_features]`` raw (un-normalised) features.
            query_offsets: ``[Q + 1]`` int boundaries: query ``q`` is rows
                ``query_offsets[q]:query_offsets[q + 1]``; ``[0, n_docs]`` treats all rows as one
                list (fine for per-document models, not for the attention model).

        Raises:
            ValueError: bad shapes, offsets, or a feature count different from the model's.
        """
        dataset = unlabelled_dataset(features, query_offsets)
        if dataset.n_features != self.n_features:
            raise ValueError(f"features has {dataset.n_features} columns but the model was trained on {self.n_features}")
        return self.predict(dataset)
