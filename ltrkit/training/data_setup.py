"""Turn the ``data`` section of a config into normalised train/vali/test datasets.

Everything that can be wrong with the data (a missing file, a parse error, a feature count that
differs between splits, an empty split, labels the loss or the metrics cannot take) is found
here, before any training, and raised as a :class:`~ltrkit.training.config.ConfigError` naming
the config field and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ltrkit.data.dataset import RankingDataset
from ltrkit.training.config import ConfigError, DataConfig, TrainConfig

__all__ = ["PreparedData", "SPLITS", "check_labels", "exp2_label_users", "load_splits", "prepare_data", "split_summary"]

SPLITS = ("train", "vali", "test")


@dataclass
class PreparedData:
    """Normalised splits plus the fitted normaliser.

    Attributes:
        train: filtered, normalised training data.
        vali: normalised validation data (``None`` when there is none).
        test: normalised test data in the source file's row order (``None`` when there is none).
        normalizer: the :class:`ltrkit.data.transforms.Normalizer` fitted on ``train``.
        summary: per split ``{"source", "queries", "documents", "features"}`` and filtering counts.
    """

    train: RankingDataset
    vali: Optional[RankingDataset]
    test: Optional[RankingDataset]
    normalizer: object
    summary: Dict[str, Dict[str, object]] = field(default_factory=dict)

    def split(self, name: str) -> Optional[RankingDataset]:
        """The dataset of split ``name`` (``"train"``, ``"vali"`` or ``"test"``)."""
        return {"train": self.train, "vali": self.vali, "test": self.test}[name]


def split_summary(dataset: RankingDataset) -> Dict[str, object]:
    """Small JSON-able description of a dataset."""
    lengths = dataset.list_lengths
    return {
        "source": dataset.source,
        "queries": dataset.n_queries,
        "documents": dataset.n_docs,
        "features": dataset.n_features,
        "max_list_length": int(lengths.max(initial=0)),
    }


def load_splits(config: DataConfig, *, seed: int = 0) -> Dict[str, Optional[RankingDataset]]:
    """Read (or generate) the raw, unfiltered splits named by ``config``.

    With ``config.train`` unset the built-in synthetic data is generated in memory
    (:func:`ltrkit.data.synthetic.generate_splits` with ``DEFAULT_SPLITS`` updated by
    ``config.synthetic``). Files are read with :func:`ltrkit.data.cache.load_dataset`; every
    missing file is reported at once. Validation and test files are read with the training
    feature count when ``config.n_features`` is set; otherwise their own feature count must
    equal the training one.

    ``vali_fraction`` holds out that fraction of training queries (a seeded permutation, at
    least one query on each side) as validation data.

    Raises:
        ConfigError: missing files, parse errors, differing feature counts, empty splits.
    """
    if config.train is None:
        splits = _synthetic_splits(config)
    else:
        splits = _file_splits(config)
    if config.vali_fraction is not None:
        splits["train"], splits["vali"] = _hold_out(splits["train"], config.vali_fraction, seed=seed)
    for name in SPLITS:
        dataset = splits.get(name)
        if dataset is not None and dataset.n_queries == 0:
            raise ConfigError([f"data.{name}: {dataset.source} holds no queries"], source="data")
    return splits


def prepare_data(
    config: TrainConfig,
    *,
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    normalizer_state: Optional[dict] = None,
) -> PreparedData:
    """Load, check, filter and normalise the splits of ``config``.

    Args:
        config: the validated run config.
        datasets: in-memory splits (``{"train": ..., "vali": ..., "test": ...}``, ``vali``/
            ``test`` optional) used instead of ``config.data``'s files (the Python API path).
        normalizer_state: a saved ``Normalizer.state_dict()`` to reuse instead of fitting (resume).

    Raises:
        ConfigError: any data problem (see :func:`load_splits`), a training set that filtering
            empties, a missing validation split when early stopping needs it, a split named in
            ``expected`` that has no data.
    """
    from ltrkit.data.batching import normalize_split
    from ltrkit.data.dataset import filter_queries
    from ltrkit.data.transforms import Normalizer

    if datasets is not None:
        unknown = sorted(set(datasets) - set(SPLITS))
        if unknown or "train" not in datasets:
            raise ConfigError([f"datasets must map 'train' (and optionally 'vali', 'test') to RankingDataset, got keys {sorted(datasets)}"], source="datasets")
        raw: Dict[str, Optional[RankingDataset]] = {name: datasets.get(name) for name in SPLITS}
        if raw["vali"] is None and config.data.vali_fraction is not None:
            raw["train"], raw["vali"] = _hold_out(raw["train"], config.data.vali_fraction, seed=config.seed)
        _check_feature_counts(raw, explicit=None)
        for name, dataset in raw.items():
            if dataset is not None and dataset.n_queries == 0:
                raise ConfigError([f"datasets[{name!r}] holds no queries"], source="datasets")
    else:
        raw = load_splits(config.data, seed=config.seed)

    # labels are checked before filtering and fitting, so a bad one is named with its file and row
    users = exp2_label_users(config)
    field_name = "datasets[{!r}]" if datasets is not None else "data.{}"
    label_errors = []
    for name, dataset in raw.items():
        problem = None if dataset is None else check_labels(dataset, exp2_users=users)
        if problem is not None:
            label_errors.append(f"{field_name.format(name)}: {problem}")
    if label_errors:
        raise ConfigError(label_errors, source="data")

    if config.early_stopping.split == "vali" and raw.get("vali") is None:
        raise ConfigError(
            ["early_stopping.split: 'vali' needs validation data; set data.vali or data.vali_fraction, or early_stopping.split=train"],
            source="config",
        )
    missing_gate = [
        f"expected.{split}: the regression gate needs {split} data, but none is configured"
        for split in config.expected
        if raw.get(split) is None
    ]
    if missing_gate:
        raise ConfigError(missing_gate, source="config")
    data = config.data
    summary = {name: split_summary(ds) for name, ds in raw.items() if ds is not None}
    train = filter_queries(
        raw["train"],
        min_docs=data.min_docs_per_query,
        drop_without_relevant=data.drop_train_queries_without_relevant,
        relevance_threshold=data.relevance_threshold,
    )
    summary["train"]["queries_after_filtering"] = train.n_queries
    if train.n_queries == 0:
        raise ConfigError(
            [
                f"data.train: no training query is left after filtering (min_docs_per_query={data.min_docs_per_query}, "
                f"drop_train_queries_without_relevant={data.drop_train_queries_without_relevant}, "
                f"relevance_threshold={data.relevance_threshold}) of {raw['train'].n_queries} queries in {raw['train'].source}"
            ],
            source="config",
        )
    if normalizer_state is not None:
        normalizer = Normalizer.from_state_dict(normalizer_state)
    else:
        normalizer = Normalizer(config.normalization).fit(train)
    vali, test = raw.get("vali"), raw.get("test")
    return PreparedData(
        train=normalize_split(train, normalizer),
        vali=None if vali is None else normalize_split(vali, normalizer),
        test=None if test is None else normalize_split(test, normalizer),
        normalizer=normalizer,
        summary=summary,
    )


def exp2_label_users(config: TrainConfig) -> List[str]:
    """The configured metrics and loss that compute ``2^label`` (exp2 gains), by name.

    NDCG/DCG use the evaluation gain (``exp2`` under the ``ltrkit`` preset, ``linear`` under
    ``trec`` or ``evaluation.gain=linear``); ERR always uses ``2^label``; a loss does when its
    ``gain`` or ``label_transform`` hyperparameter (given or default) is ``"exp2"``.
    """
    import ltrkit.losses
    from ltrkit.metrics import parse_metric
    from ltrkit.training.scoring import metric_conventions, resolved_conventions

    gain = resolved_conventions(metric_conventions(config.evaluation))["gain"]
    names = [*config.evaluation.metrics, config.early_stopping.metric, *(name for table in config.expected.values() for name in table)]
    users: List[str] = []
    for name in names:
        spec = parse_metric(name)
        if (spec.family == "err" or (spec.family in ("ndcg", "dcg") and gain == "exp2")) and spec.name not in users:
            users.append(spec.name)
    hyperparameters = {**ltrkit.losses.hyperparameters(config.loss.name), **config.loss.args}
    if "exp2" in (hyperparameters.get("gain"), hyperparameters.get("label_transform")):
        users.append(f"loss {config.loss.name}")
    return users


def check_labels(dataset: RankingDataset, *, exp2_users: Sequence[str] = ()) -> Optional[str]:
    """What is wrong with the labels of ``dataset``, as one line naming its source, row and qid, or ``None``.

    Labels are graded relevance: finite and ``>= 0`` (every ltrkit metric requires it; a gain
    ``2^label - 1`` of a negative label is negative). When ``exp2_users`` (see
    :func:`exp2_label_users`) is not empty, the gains of a whole list must also stay finite in
    float32, the precision they are computed in:

    .. math::

        L \\cdot 2^{\\max \\text{label}} < 2^{128}
        \\iff \\max \\text{label} < 128 - \\log_2 L

    with ``L`` the longest list; past that, 2^label overflows and the loss or metric turns to
    inf/NaN. Rows are numbered from 1 in the dataset's order (the file's order unless it was
    regrouped).
    """
    labels = np.asarray(dataset.labels, dtype=np.float64)
    if labels.size == 0:
        return None
    finite = np.isfinite(labels)
    limit = None
    if exp2_users:
        limit = 128.0 - np.log2(max(int(dataset.list_lengths.max(initial=1)), 1))
    checks = [
        (~finite, "labels must be finite numbers"),
        (finite & (labels < 0), "labels are graded relevance and must be >= 0"),
    ]
    if limit is not None:
        checks.append(
            (
                finite & (labels >= limit),
                f"labels are out of range: 2**label overflows float32 in the exp2 gain of {', '.join(exp2_users)}; "
                f"labels must be below {limit:.4g} here (or use linear gains: evaluation.gain=linear and a linear-gain loss)",
            )
        )
    for bad, rule in checks:
        rows = np.flatnonzero(bad)
        if rows.size:
            row = int(rows[0])
            query = int(np.searchsorted(dataset.query_offsets, row, side="right")) - 1
            more = f" (and {rows.size - 1} more row(s))" if rows.size > 1 else ""
            return f"{dataset.source}: row {row + 1} (qid {dataset.qids[query]}) has label {labels[row]:g}{more}; {rule}"
    return None


def _synthetic_splits(config: DataConfig) -> Dict[str, Optional[RankingDataset]]:
    from ltrkit.data.synthetic import DEFAULT_SPLITS, generate_splits

    options = dict(DEFAULT_SPLITS)
    if config.synthetic is not None:
        options.update({key: value for key, value in config.synthetic.model_dump().items() if value is not None})
    splits = generate_splits(**options)
    return {name: splits.get(name) for name in SPLITS}


def _file_splits(config: DataConfig) -> Dict[str, Optional[RankingDataset]]:
    from ltrkit.data.cache import load_dataset
    from ltrkit.data.remote import is_url

    paths = {name: getattr(config, name) for name in SPLITS}
    query_files = {name: getattr(config.query_files, name) for name in SPLITS}
    missing: List[str] = []
    for name in SPLITS:
        if paths[name] is not None and not is_url(paths[name]) and not Path(paths[name]).exists():
            missing.append(f"data.{name}: file not found: {paths[name]!r} (relative paths are read from {str(Path.cwd())!r})")
        if query_files[name] is not None and not Path(query_files[name]).is_file():
            missing.append(f"data.query_files.{name}: file not found: {query_files[name]!r}")
        if query_files[name] is not None and paths[name] is None:
            missing.append(f"data.query_files.{name}: set, but data.{name} is not")
    if missing:
        raise ConfigError(missing, source="data")

    def read(name: str, n_features: Optional[int]) -> RankingDataset:
        try:
            return load_dataset(
                paths[name],
                cache=config.cache,
                cache_dir=config.cache_dir,
                verify=config.verify_cache,
                index_base=config.index_base,
                n_features=n_features,
                query_file=query_files[name],
                regroup=config.regroup,
                missing=config.missing,
            )
        except (ValueError, OSError) as error:
            raise ConfigError([f"data.{name}: {error}"], source="data") from error

    splits: Dict[str, Optional[RankingDataset]] = {"train": read("train", config.n_features)}
    for name in ("vali", "test"):
        splits[name] = None if paths[name] is None else read(name, config.n_features)
    _check_feature_counts(splits, explicit=config.n_features)
    return splits


def _check_feature_counts(splits: Mapping[str, Optional[RankingDataset]], *, explicit: Optional[int]) -> None:
    expected = splits["train"].n_features
    errors = []
    for name in ("vali", "test"):
        dataset = splits.get(name)
        if dataset is not None and dataset.n_features != expected:
            hint = "" if explicit is not None else (
                f"; if the files are sparse (absent features mean 0), set data.n_features to the true count, e.g. {max(expected, dataset.n_features)}"
            )
            errors.append(
                f"data.{name}: {dataset.source} has {dataset.n_features} features but the training data "
                f"{splits['train'].source} has {expected}{hint}"
            )
    if errors:
        raise ConfigError(errors, source="data")


def _hold_out(train: RankingDataset, fraction: float, *, seed: int) -> tuple[RankingDataset, RankingDataset]:
    n_queries = train.n_queries
    if n_queries < 2:
        raise ConfigError([f"data.vali_fraction: {train.source} has {n_queries} query; at least 2 are needed to hold some out"], source="data")
    n_vali = min(max(int(round(fraction * n_queries)), 1), n_queries - 1)
    order = np.random.default_rng(seed).permutation(n_queries)
    vali_idx = np.sort(order[:n_vali])
    train_idx = np.sort(order[n_vali:])
    vali = train.subset(vali_idx)
    vali.source = f"{train.source} (held-out {fraction:g})"
    return train.subset(train_idx), vali
