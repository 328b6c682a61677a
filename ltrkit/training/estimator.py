"""A scikit-learn style estimator over the training API: ``LTRRanker().fit(X, y, qid)``.

    >>> ranker = LTRRanker(epochs=5).fit(X, y, qid)            # doctest: +SKIP
    >>> scores = ranker.predict(X_test, qid_test)             # doctest: +SKIP
    >>> ranker.score(X_test, y_test, qid_test)                # NDCG@10   # doctest: +SKIP

``fit`` builds a :class:`~ltrkit.data.dataset.RankingDataset` from the arrays and calls
:func:`ltrkit.training.trainer.train` with a config made of the estimator's parameters, in a
temporary run folder (or ``output_dir``); the trained model and its normaliser are kept in memory
as a :class:`~ltrkit.training.predict.Ranker`.

Query grouping: ``qid`` gives each row's query. Rows of a query need not be contiguous: they are
grouped stably (queries in order of first appearance, rows of a query in their input order), and
``predict`` returns scores in the caller's row order.

scikit-learn is not imported: ``get_params``/``set_params`` follow its conventions, so
``sklearn.base.clone`` and ``GridSearchCV``-style tools that only need those work.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ltrkit.data.dataset import RankingDataset

__all__ = ["LTRRanker", "NotFittedError"]

# rows per pseudo-query when a per-document model predicts without qids: the Ranker scores
# eval_batch_size (256) queries per padded batch, so this bounds a batch at 256 * 256 rows
_POINTWISE_CHUNK = 256


class NotFittedError(ValueError, AttributeError):
    """``predict``/``score`` was called before ``fit`` (same bases as scikit-learn's)."""


class LTRRanker:
    """Learning-to-rank estimator with a scikit-learn interface.

    Args:
        model: a name from :func:`ltrkit.models.names` (``"linear"``, ``"mlp"``, ``"attention"``).
        model_args: keyword arguments of the model (see :func:`ltrkit.models.model_hyperparameters`).
        loss: a list loss name from :func:`ltrkit.losses.names`.
        loss_args: hyperparameters of the loss.
        epochs: training epochs (the maximum when early stopping is on).
        batch_size: queries per training batch.
        lr: peak learning rate.
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"``.
        weight_decay: weight decay of the optimiser.
        schedule: learning-rate schedule: ``"cosine"``, ``"constant"`` or ``"step"``.
        normalization: feature normalisation fitted on the training rows (``"zscore"``,
            ``"minmax"``, ``"log1p"``, ``"none"``, ... as the trainer's config accepts).
        max_slate_length: cut longer training lists to this many documents (None: no cut).
        early_stopping_patience: with an ``eval_set``, stop after this many epochs without
            improvement of ``eval_metric`` and keep the best epoch's weights (None: train all
            epochs and keep the best). Without an ``eval_set`` the last epoch's weights are kept.
        eval_metric: metric of the eval set that selects the best epoch, e.g. ``"ndcg@10"``.
        seed: seed of initialisation, dropout, shuffling and slate sampling (same seed, same
            data, CPU: the same model).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        num_threads: torch CPU threads during training (None: the trainer's default).
        verbose: show the trainer's progress bar and tables.
        output_dir: keep the run folder (checkpoints, history, report) under this folder; None
            trains in a temporary folder that is removed after ``fit``.

    Attributes (after ``fit``):
        ranker_: the :class:`~ltrkit.training.predict.Ranker` (model + normaliser).
        n_features_in_: number of features seen in ``fit``.
        history_: one record per epoch (train loss, seconds, eval metrics).
        best_epoch_: the epoch whose weights are kept.
        run_dir_: the run folder when ``output_dir`` is set, else None.

    Raises:
        ValueError: from ``fit``: bad arrays (shape, length mismatch, NaN/inf) or a bad
            parameter (the trainer's :class:`~ltrkit.training.config.ConfigError`, which lists
            every problem).
    """

    def __init__(
        self,
        model: str = "mlp",
        model_args: Optional[Mapping[str, Any]] = None,
        loss: str = "lambdarank",
        loss_args: Optional[Mapping[str, Any]] = None,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        optimizer: str = "adamw",
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        normalization: str = "zscore",
        max_slate_length: Optional[int] = None,
        early_stopping_patience: Optional[int] = 5,
        eval_metric: str = "ndcg@10",
        seed: int = 0,
        device: str = "cpu",
        num_threads: Optional[int] = None,
        verbose: bool = False,
        output_dir: Optional[str] = None,
    ) -> None:
        # scikit-learn convention: store parameters untouched; validation happens in fit
        self.model = model
        self.model_args = model_args
        self.loss = loss
        self.loss_args = loss_args
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.normalization = normalization
        self.max_slate_length = max_slate_length
        self.early_stopping_patience = early_stopping_patience
        self.eval_metric = eval_metric
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.verbose = verbose
        self.output_dir = output_dir

    # ------------------------------------------------------------------ scikit-learn protocol
    @classmethod
    def _param_names(cls) -> List[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor parameters as a dict (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "LTRRanker":
        """Set constructor parameters; returns ``self``.

        Raises:
            ValueError: a name that is not a constructor parameter (the message lists them).
        """
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for LTRRanker; valid parameters are {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{name}={value!r}" for name, value in self.get_params().items() if value != defaults[name]]
        return f"LTRRanker({', '.join(changed)})"

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Any,
        y: Any,
        qid: Any,
        *,
        eval_set: Optional[Tuple[Any, Any, Any] | Sequence[Tuple[Any, Any, Any]]] = None,
    ) -> "LTRRanker":
        """Train on rows ``X [n, F]`` with relevance labels ``y [n]`` and query ids ``qid [n]``.

        Args:
            X: ``[n_rows, n_features]`` numeric features (finite).
            y: ``[n_rows]`` graded relevance labels (finite, >= 0).
            qid: ``[n_rows]`` query id of each row (ints or strings); see the module docstring
                for how rows are grouped.
            eval_set: ``(X_val, y_val, qid_val)`` (or a one-element list of it): validation data
                for early stopping and choosing the best epoch.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: bad arrays or parameters (see the class docstring).
        """
        from ltrkit.training.trainer import train

        X_arr, y_arr, qid_arr = _check_rows(X, y, qid, where="fit")
        train_set, _ = _to_dataset(X_arr, y_arr, qid_arr, source="fit(X, y, qid)")
        datasets = {"train": train_set}
        if eval_set is not None:
            if isinstance(eval_set, list):
                if len(eval_set) != 1:
                    raise ValueError(f"eval_set must be one (X, y, qid) tuple, got a list of {len(eval_set)}")
                eval_set = eval_set[0]
            if not isinstance(eval_set, tuple) or len(eval_set) != 3:
                raise ValueError("eval_set must be a tuple (X_val, y_val, qid_val)")
            Xv, yv, qv = _check_rows(*eval_set, where="eval_set")
            if Xv.shape[1] != X_arr.shape[1]:
                raise ValueError(f"eval_set X has {Xv.shape[1]} features, but X has {X_arr.shape[1]}")
            datasets["vali"], _ = _to_dataset(Xv, yv, qv, source="eval_set")

        keep = self.output_dir is not None
        parent = Path(self.output_dir) if keep else Path(tempfile.mkdtemp(prefix="ltrkit-estimator-"))
        try:
            result = train(self._config(parent, has_eval=eval_set is not None), datasets=datasets, quiet=not self.verbose)
            self.ranker_ = result.ranker("best" if eval_set is not None else "last")
        finally:
            if not keep:
                shutil.rmtree(parent, ignore_errors=True)
        self.n_features_in_ = int(X_arr.shape[1])
        self.history_ = list(result.history)
        self.best_epoch_ = int(result.best_epoch) if eval_set is not None else len(result.history)
        self.run_dir_ = Path(result.run_dir) if keep else None
        return self

    def _config(self, parent: Path, *, has_eval: bool) -> Dict[str, Any]:
        return {
            "normalization": self.normalization,
            "model": {"name": self.model, "args": dict(self.model_args or {})},
            "loss": {"name": self.loss, "args": dict(self.loss_args or {})},
            "optimizer": {"name": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay},
            "schedule": {"name": self.schedule},
            "training": {"epochs": self.epochs, "batch_size": self.batch_size, "max_slate_length": self.max_slate_length},
            "early_stopping": {
                "metric": self.eval_metric,
                # without an eval set the trainer tracks the metric on the training data, but the
                # last epoch is kept: selecting on training data would only select overfitting
                "patience": self.early_stopping_patience if has_eval else None,
                "split": "vali" if has_eval else "train",
            },
            "evaluation": {"metrics": [self.eval_metric], "baselines": False},
            "seed": self.seed,
            "device": self.device,
            "num_threads": self.num_threads,
            "output": {"dir": str(parent), "tensorboard": False, "plots": False},
        }

    # ------------------------------------------------------------------ prediction
    def predict(self, X: Any, qid: Any = None) -> np.ndarray:
        """Scores ``[n_rows]`` (float32, higher = ranked higher) in the row order of ``X``.

        Args:
            X: ``[n_rows, n_features]`` features.
            qid: query id per row. Optional for per-document models (``linear``, ``mlp``),
                whose scores do not depend on grouping; required for context-aware models
                (``attention``), which score each document against its query's other documents.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: bad ``X``/``qid`` (shape, NaN, feature count differing from ``fit``), or
                ``qid=None`` with a context-aware model.
        """
        ranker = self._fitted()
        X_arr = _check_features(X, "X", where="predict")
        if X_arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X_arr.shape[1]} features, but LTRRanker was fitted with {self.n_features_in_} features")
        n = X_arr.shape[0]
        if qid is None:
            if getattr(ranker.model, "context_aware", True):
                raise ValueError(
                    f"qid is required to predict with the context-aware model {self.model!r}: each document is "
                    f"scored against the other documents of its query"
                )
            offsets = np.append(np.arange(0, n, _POINTWISE_CHUNK, dtype=np.int64), n)
            return ranker.predict_features(X_arr, offsets)
        qid_arr = _check_qid(qid, n, where="predict")
        order, offsets, _ = _group(qid_arr)
        scores = np.empty(n, dtype=np.float32)
        scores[order] = ranker.predict_features(X_arr[order], offsets)
        return scores

    def score(self, X: Any, y: Any, qid: Any) -> float:
        """Mean NDCG@10 over the queries of ``(X, y, qid)``.

        Conventions (ltrkit's defaults, :func:`ltrkit.metrics.evaluate_dataset`): gain
        ``2^rel - 1``, ties in input order, a query without a relevant document scores 0.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: bad arrays.
        """
        from ltrkit.metrics import evaluate_dataset

        self._fitted()
        X_arr, y_arr, qid_arr = _check_rows(X, y, qid, where="score")
        dataset, order = _to_dataset(X_arr, y_arr, qid_arr, source="score(X, y, qid)")
        scores = self.predict(X_arr, qid_arr)[order]
        return float(evaluate_dataset(dataset, scores, ["ndcg@10"]).mean["ndcg@10"])

    def _fitted(self) -> Any:
        ranker = getattr(self, "ranker_", None)
        if ranker is None:
            raise NotFittedError("this LTRRanker instance is not fitted yet; call fit(X, y, qid) first")
        return ranker


# ---------------------------------------------------------------------- array checks


def _check_features(X: Any, name: str, *, where: str) -> np.ndarray:
    X_arr = np.asarray(X)
    if X_arr.ndim != 2:
        raise ValueError(f"{where}: {name} must be a 2-D array [n_rows, n_features], got shape {X_arr.shape}")
    if X_arr.shape[0] == 0 or X_arr.shape[1] == 0:
        raise ValueError(f"{where}: {name} must have at least one row and one feature, got shape {X_arr.shape}")
    if X_arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {name} must be numeric, got dtype {X_arr.dtype}")
    X_arr = np.ascontiguousarray(X_arr, dtype=np.float32)
    bad = ~np.isfinite(X_arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{where}: {name} must be finite, got {X_arr[row, col]} at row {row}, column {col}")
    return X_arr


def _check_qid(qid: Any, n_rows: int, *, where: str) -> np.ndarray:
    qid_arr = np.asarray(qid)
    if qid_arr.ndim != 1 or qid_arr.shape[0] != n_rows:
        raise ValueError(f"{where}: qid must be 1-D with one entry per row of X ({n_rows}), got shape {qid_arr.shape}")
    if qid_arr.dtype.kind == "f" and not np.isfinite(qid_arr).all():
        raise ValueError(f"{where}: qid must not hold NaN or inf")
    if qid_arr.dtype.kind not in "biufUS":
        qid_arr = qid_arr.astype(str)
    return qid_arr


def _check_rows(X: Any, y: Any, qid: Any, *, where: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    X_arr = _check_features(X, "X", where=where)
    n = X_arr.shape[0]
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or y_arr.shape[0] != n:
        raise ValueError(f"{where}: y must be 1-D with one label per row of X ({n}), got shape {y_arr.shape}")
    if y_arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: y must be numeric, got dtype {y_arr.dtype}")
    y_arr = y_arr.astype(np.float32)
    if not np.isfinite(y_arr).all():
        raise ValueError(f"{where}: y must be finite, got {y_arr[~np.isfinite(y_arr)][0]} at row {int(np.flatnonzero(~np.isfinite(y_arr))[0])}")
    if (y_arr < 0).any():
        row = int(np.flatnonzero(y_arr < 0)[0])
        raise ValueError(f"{where}: y must be >= 0 (graded relevance), got {y_arr[row]} at row {row}")
    return X_arr, y_arr, _check_qid(qid, n, where=where)


def _group(qid: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable grouping: ``(order [n], query_offsets [Q+1], qids [Q])``.

    Queries come in order of first appearance and rows of a query keep their input order, so
    ``X[order]`` has each query's rows contiguous.
    """
    unique, first, inverse = np.unique(qid, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    position = np.empty_like(by_appearance)
    position[by_appearance] = np.arange(by_appearance.shape[0])
    query_of_row = position[inverse.reshape(-1)]
    order = np.argsort(query_of_row, kind="stable")
    counts = np.bincount(query_of_row, minlength=unique.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, offsets, unique[by_appearance]


def _to_dataset(X: np.ndarray, y: np.ndarray, qid: np.ndarray, *, source: str) -> Tuple[RankingDataset, np.ndarray]:
    order, offsets, qids = _group(qid)
    dataset = RankingDataset(
        features=X[order], labels=y[order], query_offsets=offsets, qids=qids.astype(str), source=source
    )
    return dataset, order
