"""A scikit-learn estimator over the training API: ``LTRRanker().fit(X, y, qid=qid)``.

    >>> ranker = LTRRanker(epochs=5).fit(X, y, qid=qid)          # doctest: +SKIP
    >>> ranker = LTRRanker(epochs=5).fit(X, y, group=sizes)      # LightGBM style  # doctest: +SKIP
    >>> scores = ranker.predict(X_test, qid=qid_test)            # doctest: +SKIP
    >>> ranker.score(X_test, y_test, qid=qid_test)               # eval_metric, NDCG@10  # doctest: +SKIP

``fit`` builds a :class:`~ltrkit.data.dataset.RankingDataset` from the arrays and calls
:func:`ltrkit.training.trainer.train` with a config made of the estimator's parameters, in a
temporary run folder that is removed afterwards (or under ``output_dir``, kept); the trained model
and its normaliser stay in memory as a :class:`~ltrkit.training.predict.Ranker`, so a fitted
estimator pickles and clones like any scikit-learn estimator.

Queries: each row's query comes from ``qid`` (one id per row, ints or strings) or, LightGBM's
way, from ``group`` (the sizes of consecutive queries, summing to the row count). Rows of a
query need not be contiguous: they are grouped stably (queries in order of first appearance,
rows of a query in their input order), and ``predict`` returns scores in the caller's row order.
``fit`` without either treats all rows as one query (one ranked list).

scikit-learn tools: ``qid`` is requested by default by ``fit``, ``predict`` and ``score``
(metadata routing, as GroupKFold requests ``groups``), so with
``sklearn.set_config(enable_metadata_routing=True)``

    >>> cross_validate(LTRRanker(), X, y, cv=GroupKFold(3), params={"qid": qid, "groups": qid})  # doctest: +SKIP
    >>> GridSearchCV(LTRRanker(), grid, cv=GroupKFold(3)).fit(X, y, groups=qid, qid=qid)   # doctest: +SKIP
    >>> make_pipeline(StandardScaler(), LTRRanker()).fit(X, y, qid=qid).predict(X_test)    # doctest: +SKIP

hand each fold's rows their own ``qid`` in ``fit`` and ``score`` (with routing on,
``cross_validate`` takes ``groups`` inside ``params``). Without routing ``qid`` still reaches
``fit`` but not ``score``, which then raises and says so. Split with a group splitter
(``GroupKFold``, ``GroupShuffleSplit``) on ``groups=qid`` so a query's rows stay in one fold.
``group=`` sizes cannot be split by a cross-validator: use ``qid`` there. ``group``,
``eval_set``, ``eval_qid`` and ``eval_group`` are routed only after ``set_fit_request``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ltrkit._optional import require

require("LTRRanker (the scikit-learn estimator)", "sklearn", "sklearn")

from sklearn.base import BaseEstimator  # noqa: E402  (after the check that names the extra)
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data  # noqa: E402

from ltrkit.data.dataset import RankingDataset

__all__ = ["LTRRanker", "NotFittedError"]

# rows per pseudo-query when a per-document model predicts without qids: the Ranker scores
# eval_batch_size (256) queries per padded batch, so this bounds a batch at 256 * 256 rows
_POINTWISE_CHUNK = 256

# what scikit-learn's validation is asked for: sparse rows are densified (the trainer's batches
# are dense) and finiteness is checked here, to name the row and column of the first bad value
_ARRAY_OPTIONS: Dict[str, Any] = {"accept_sparse": "csr", "dtype": np.float32, "ensure_all_finite": False}


class LTRRanker(BaseEstimator):
    """Learning-to-rank estimator with the scikit-learn interface.

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
        eval_metric: the metric (:func:`ltrkit.metrics.parse_metric`, e.g. ``"ndcg@10"``,
            ``"map"``, ``"err@10"``) that selects the best epoch on the eval set, that ``score``
            returns and whose drop ``feature_importances_`` measures.
        importance_repeats: permutations per feature for ``feature_importances_``; 0 (the
            default) computes none: each repeat costs one prediction and evaluation of the
            importance set per feature, which every fit of a grid search would pay.
        seed: seed of initialisation, dropout, shuffling, slate sampling and the importance
            permutations (same seed, same data, CPU: the same model).
        device: where training runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. The fitted
            model is kept on the CPU (``predict`` runs there), so a fitted estimator unpickles
            on a machine without a GPU.
        num_threads: torch CPU threads during training (None: the trainer's default).
        verbose: show the trainer's progress bar and tables.
        output_dir: keep the run folder (checkpoints, history, report) under this folder; None
            trains in a temporary folder that is removed after ``fit``.

    Attributes (after ``fit``):
        ranker_: the :class:`~ltrkit.training.predict.Ranker` (model + normaliser).
        n_features_in_: number of features seen in ``fit`` (``feature_names_in_`` too when
            ``X`` is a DataFrame with string column names).
        history_: one record per epoch (train loss, seconds, eval metrics).
        best_epoch_: the epoch whose weights are kept (1-based).
        run_dir_: the run folder when ``output_dir`` is set, else None.
        feature_importances_: ``[n_features]`` permutation importance: the mean drop of
            ``score`` (``eval_metric`` over queries) when one feature column is shuffled across
            all rows, on the eval set when one is given, else on the training rows; computed by
            ``fit`` when ``importance_repeats > 0``. Negative values mean shuffling the feature
            helped.

    Raises:
        ValueError: from ``fit``: bad arrays (shape, length mismatch, NaN/inf, negative label,
            group sizes not matching the rows) or a bad parameter (the trainer's
            :class:`~ltrkit.training.config.ConfigError`, which lists every problem).
    """

    # a ranker needs its rows' queries the way a group splitter needs its groups: request them
    # by default so routing works without set_*_request calls (the caller can still unset it)
    __metadata_request__fit = {"qid": True}
    __metadata_request__predict = {"qid": True}
    __metadata_request__score = {"qid": True}

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
        importance_repeats: int = 0,
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
        self.importance_repeats = importance_repeats
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.verbose = verbose
        self.output_dir = output_dir

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        # graded relevance labels are >= 0
        tags.target_tags.positive_only = True
        return tags

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Any,
        y: Any,
        qid: Any = None,
        *,
        group: Any = None,
        eval_set: Any = None,
        eval_qid: Any = None,
        eval_group: Any = None,
    ) -> "LTRRanker":
        """Train on rows ``X [n, F]`` with relevance labels ``y [n]`` grouped by ``qid`` or ``group``.

        Args:
            X: ``[n_rows, n_features]`` numeric features (finite; dense, scipy sparse or a
                DataFrame).
            y: ``[n_rows]`` graded relevance labels (finite, >= 0).
            qid: ``[n_rows]`` query id of each row (ints or strings); see the module docstring.
            group: LightGBM's ``[n_queries]`` sizes of consecutive queries (instead of ``qid``).
            eval_set: validation data for early stopping and the best epoch: ``(X_val, y_val)``
                or a list of one such pair (LightGBM's form).
            eval_qid: ``[qid_val]``, a list of one qid array for the eval set.
            eval_group: ``[sizes_val]``, a list of one group-size array for the eval set.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: bad arrays or parameters (see the class docstring).
        """
        from ltrkit.training.trainer import train

        X_arr, y_arr = _check_rows(*validate_data(self, X, y, y_numeric=True, **_ARRAY_OPTIONS), where="fit")
        # without queries all rows are one list: scikit-learn's own checks fit this way
        qid_arr = _queries(qid, group, X_arr.shape[0], where="fit", default_one_query=True)
        train_set, _ = _to_dataset(X_arr, y_arr, qid_arr, source="fit(X, y)")
        datasets = {"train": train_set}
        held_out = self._eval_rows(eval_set, eval_qid, eval_group, X_arr.shape[1])
        if held_out is not None:
            datasets["vali"], _ = _to_dataset(*held_out, source="eval_set")

        keep = self.output_dir is not None
        parent = Path(self.output_dir) if keep else Path(tempfile.mkdtemp(prefix="ltrkit-estimator-"))
        try:
            result = train(self._config(parent, has_eval=held_out is not None), datasets=datasets, quiet=not self.verbose)
            self.ranker_ = result.ranker("best" if held_out is not None else "last")
        finally:
            if not keep:
                shutil.rmtree(parent, ignore_errors=True)
        self.history_ = list(result.history)
        self.best_epoch_ = int(result.best_epoch) if held_out is not None else len(result.history)
        self.run_dir_ = Path(result.run_dir) if keep else None
        self._feature_importances = (
            self._permutation_importances(*(held_out or (X_arr, y_arr, qid_arr))) if self.importance_repeats else None
        )
        return self

    @property
    def feature_importances_(self) -> np.ndarray:
        """``[n_features]`` permutation importances (see the class docstring).

        Raises:
            NotFittedError: before ``fit``.
            AttributeError: the fit had ``importance_repeats=0`` (so ``hasattr`` is False).
        """
        check_is_fitted(self)
        if self._feature_importances is None:
            raise AttributeError(
                "feature_importances_ is computed by fit only when importance_repeats > 0; this LTRRanker was "
                "fitted with importance_repeats=0"
            )
        return self._feature_importances

    def _eval_rows(self, eval_set: Any, eval_qid: Any, eval_group: Any, n_features: int) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if eval_set is None:
            if eval_qid is not None or eval_group is not None:
                raise ValueError("fit: eval_qid/eval_group was given without an eval_set")
            return None
        pair = _only(eval_set, "eval_set", "an (X_val, y_val) pair")
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError("fit: eval_set must be an (X_val, y_val) pair or a list of one such pair")
        qid = None if eval_qid is None else _only(eval_qid, "eval_qid", "a qid array")
        group = None if eval_group is None else _only(eval_group, "eval_group", "a group-size array")
        Xv, yv = _check_rows(*check_X_y(pair[0], pair[1], y_numeric=True, **_ARRAY_OPTIONS), where="eval_set")
        if Xv.shape[1] != n_features:
            raise ValueError(f"eval_set: X_val has {Xv.shape[1]} features, but X has {n_features}")
        return Xv, yv, _queries(qid, group, Xv.shape[0], where="eval_set")

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

    def _permutation_importances(self, X: np.ndarray, y: np.ndarray, qid: np.ndarray) -> np.ndarray:
        # the rows keep their order under permutation_importance (it shuffles one column in
        # place of another), so the qids of the importance set stay aligned with them
        def metric(estimator: "LTRRanker", X_perm: np.ndarray, y_perm: np.ndarray) -> float:
            return estimator.score(X_perm, y_perm, qid=qid)

        result = permutation_importance(self, X, y, scoring=metric, n_repeats=self.importance_repeats, random_state=self.seed)
        return np.asarray(result.importances_mean, dtype=np.float64)

    # ------------------------------------------------------------------ prediction
    def predict(self, X: Any, qid: Any = None, *, group: Any = None) -> np.ndarray:
        """Scores ``[n_rows]`` (float32, higher = ranked higher) in the row order of ``X``.

        Args:
            X: ``[n_rows, n_features]`` features.
            qid: query id per row. Optional for per-document models (``linear``, ``mlp``),
                whose scores do not depend on grouping; required (or ``group``) for
                context-aware models (``attention``), which score each document against its
                query's other documents.
            group: LightGBM's sizes of consecutive queries (instead of ``qid``).

        Raises:
            NotFittedError: before ``fit``.
            ValueError: bad ``X``/``qid`` (shape, NaN, feature count differing from ``fit``), or
                no ``qid``/``group`` with a context-aware model.
        """
        check_is_fitted(self)
        X_arr = _check_finite(validate_data(self, X, reset=False, **_ARRAY_OPTIONS), "X", where="predict")
        return self._scores(X_arr, _queries(qid, group, X_arr.shape[0], where="predict"))

    def _scores(self, X: np.ndarray, qid: Optional[np.ndarray]) -> np.ndarray:
        n = X.shape[0]
        if qid is None:
            if getattr(self.ranker_.model, "context_aware", True):
                raise ValueError(
                    f"predict: qid (or group) is required with the context-aware model {self.ranker_.config.model.name!r}: each "
                    f"document is scored against the other documents of its query"
                )
            offsets = np.append(np.arange(0, n, _POINTWISE_CHUNK, dtype=np.int64), n)
            return self.ranker_.predict_features(X, offsets)
        order, offsets, _ = _group(qid)
        scores = np.empty(n, dtype=np.float32)
        scores[order] = self.ranker_.predict_features(X[order], offsets)
        return scores

    def score(self, X: Any, y: Any, qid: Any = None, *, group: Any = None, sample_weight: Any = None) -> float:
        r"""Mean ``eval_metric`` (default NDCG@10) over the queries of ``(X, y)``.

        .. math:: \mathrm{score} = \frac{\sum_q w_q\, m_q}{\sum_q w_q}

        where ``m_q`` is the metric of query ``q`` and ``w_q`` its weight (1 without
        ``sample_weight``). Conventions (ltrkit's defaults, :func:`ltrkit.metrics.evaluate_dataset`):
        gain ``2^rel - 1``, ties in input order, a query without a relevant document scores 0.

        Args:
            X: ``[n_rows, n_features]`` features.
            y: ``[n_rows]`` graded relevance labels.
            qid: query id per row (or ``group``, LightGBM's sizes of consecutive queries).
            group: see ``qid``.
            sample_weight: ``[n_rows]`` weights >= 0, equal on the rows of a query: they weight
                queries, not documents (scikit-learn's per-row form, so pipelines pass it).

        Raises:
            NotFittedError: before ``fit``.
            ValueError: bad arrays, weights that differ within a query or sum to 0, or neither
                ``qid`` nor ``group`` (a mean over queries needs the queries; with scikit-learn
                tools, enable metadata routing so ``qid`` reaches ``score``).
        """
        from ltrkit.metrics import evaluate_dataset, parse_metric

        check_is_fitted(self)
        X_arr, y_arr = _check_rows(*validate_data(self, X, y, reset=False, y_numeric=True, **_ARRAY_OPTIONS), where="score")
        qid_arr = _queries(qid, group, X_arr.shape[0], where="score")
        if qid_arr is None:
            raise ValueError(
                "score: qid (or group) is required to average the metric over queries; with scikit-learn "
                "tools call sklearn.set_config(enable_metadata_routing=True) and pass qid to fit (LTRRanker "
                "requests it in fit, predict and score)"
            )
        dataset, order = _to_dataset(X_arr, y_arr, qid_arr, source="score(X, y)")
        metric = parse_metric(self.eval_metric).name  # the canonical key of the results ("NDCG@10" -> "ndcg@10")
        result = evaluate_dataset(dataset, self._scores(X_arr, qid_arr)[order], [metric])
        if sample_weight is None:
            return float(result.mean[metric])
        weights = _query_weights(sample_weight, dataset, order)
        values = np.array([result.per_query[q][metric] for q in dataset.qids])
        return float(np.dot(weights, values) / weights.sum())


def _query_weights(sample_weight: Any, dataset: RankingDataset, order: np.ndarray) -> np.ndarray:
    """``[n_queries]`` weights from per-row ``sample_weight`` that must be constant within a query."""
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (dataset.n_docs,):
        raise ValueError(f"score: sample_weight must be 1-D with one weight per row of X ({dataset.n_docs}), got shape {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("score: sample_weight must be finite and >= 0")
    starts = dataset.query_offsets[:-1]
    grouped = weights[order]
    low, high = np.minimum.reduceat(grouped, starts), np.maximum.reduceat(grouped, starts)
    differing = np.flatnonzero(low != high)
    if differing.size:
        q = int(differing[0])
        raise ValueError(
            f"score: sample_weight weights queries, so it must be equal on the rows of a query; qid "
            f"{dataset.qids[q]} has {low[q]} and {high[q]}"
        )
    if low.sum() == 0:
        raise ValueError("score: sample_weight sums to 0")
    return low


# ---------------------------------------------------------------------- array checks


def _check_finite(X: Any, name: str, *, where: str) -> np.ndarray:
    X_arr = np.ascontiguousarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    bad = ~np.isfinite(X_arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{where}: {name} must be finite (no NaN or inf), got {X_arr[row, col]} at row {row}, column {col}")
    return X_arr


def _check_rows(X: Any, y: Any, *, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """Dense finite float32 ``X`` and float32 labels >= 0, from arrays scikit-learn validated.

    scikit-learn's validation has already checked the shapes, the row counts and that ``y`` is
    finite; ``X``'s finiteness is checked here to name the first bad row and column.
    """
    X_arr = _check_finite(X, "X", where=where)
    y_arr = np.asarray(y, dtype=np.float32)
    if (y_arr < 0).any():
        row = int(np.flatnonzero(y_arr < 0)[0])
        raise ValueError(f"{where}: y must be >= 0 (graded relevance), got {y_arr[row]} at row {row}")
    return X_arr, y_arr


def _only(value: Any, name: str, what: str) -> Any:
    """The single entry of LightGBM's one-element list arguments (a bare pair/array passes through)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"fit: {name} must hold {what} for one eval set (ltrkit validates on one), got a list of {len(value)}")
        return value[0]
    return value


def _queries(qid: Any, group: Any, n_rows: int, *, where: str, default_one_query: bool = False) -> Optional[np.ndarray]:
    """Per-row query ids from ``qid`` or from LightGBM group sizes; None when neither is given."""
    if qid is not None and group is not None:
        raise ValueError(f"{where}: give qid or group, not both")
    if group is not None:
        sizes = np.asarray(group)
        if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
            raise ValueError(f"{where}: group must be a 1-D array of positive integer query sizes, got {sizes!r:.80}")
        if int(sizes.sum()) != n_rows:
            raise ValueError(
                f"{where}: group sizes sum to {int(sizes.sum())} but X has {n_rows} rows (under cross-validation "
                f"pass per-row qid instead: group sizes cannot be split into folds)"
            )
        return np.repeat(np.arange(sizes.shape[0]), sizes)
    if qid is None:
        return np.zeros(n_rows, dtype=np.int64) if default_one_query else None
    qid_arr = np.asarray(qid)
    if qid_arr.ndim != 1 or qid_arr.shape[0] != n_rows:
        raise ValueError(f"{where}: qid must be 1-D with one entry per row of X ({n_rows}), got shape {qid_arr.shape}")
    if qid_arr.dtype.kind == "f" and not np.isfinite(qid_arr).all():
        raise ValueError(f"{where}: qid must not hold NaN or inf")
    if qid_arr.dtype.kind not in "biufUS":
        qid_arr = qid_arr.astype(str)
    return qid_arr


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
