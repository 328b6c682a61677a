"""The training configuration: a validated schema, file loading, ``key.path=value`` overrides.

One file (JSON or YAML) describes a whole run, in the spirit of allRank's ``config.json``::

    {"data": {"train": "Fold1/train.txt", "vali": "Fold1/vali.txt", "test": "Fold1/test.txt"},
     "model": {"name": "mlp", "args": {"hidden_sizes": [256, 128]}},
     "loss": {"name": "lambdaloss", "args": {"weighting": "ndcg_loss2pp"}},
     "training": {"epochs": 20, "batch_size": 64}}

Every field has a default; ``{}`` is a valid config that trains the default model on the built-in
synthetic data. Validation reports *every* bad field at once, each with its dotted path, the
value received and what is allowed (:class:`ConfigError`). ``model.args`` / ``loss.args`` are
checked against the model and loss registries (names, keyword names, and the values, by building
the component once on a tiny input) before any data is read.

Relative data paths are resolved against the current working directory (as a shell user
expects), not against the config file's folder.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ClickTrainingConfig",
    "ConfigError",
    "TrainConfig",
    "DEFAULT_METRICS",
    "apply_overrides",
    "parse_override",
    "load_config",
    "config_to_yaml",
    "device_problem",
    "read_config_file",
    "run_name_problem",
]

DEFAULT_METRICS = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "mrr", "map", "err@10"]


class ConfigError(ValueError):
    """A config that cannot be used; ``errors`` holds one ``"dotted.path: problem"`` per issue."""

    def __init__(self, errors: Sequence[str], *, source: str = "config") -> None:
        self.errors = list(errors)
        self.source = source
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"{source} has {len(self.errors)} error(s):\n{lines}")


# letters (any script), digits and _ . - + = @; the first character a letter, digit or _ (a leading
# "-" reads as a command-line option, a leading "." hides the folder); 255 bytes is the usual
# file-name limit
_RUN_NAME = re.compile(r"\w[\w.+=@-]*")
_MAX_NAME_BYTES = 255


def run_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a run folder name, or ``None`` when it can.

    A run name is one plain folder name that survives shells, file systems and URLs unquoted:
    letters, digits and ``_ . - + = @``, starting with a letter, digit or ``_``, at most 255
    bytes. Whitespace, line breaks, path separators and other punctuation are refused.

    Example:
        >>> run_name_problem("mslr-fold1_lr1e-3") is None
        True
        >>> run_name_problem("my run")
        "must be a plain folder name of letters, digits and _ . - + = @ (starting with a letter, digit or _), got 'my run'"
    """
    if _RUN_NAME.fullmatch(name) is None:
        return f"must be a plain folder name of letters, digits and _ . - + = @ (starting with a letter, digit or _), got {name!r}"
    size = len(name.encode("utf-8"))
    if size > _MAX_NAME_BYTES:
        return f"is {size} bytes long; a folder name may have at most {_MAX_NAME_BYTES}"
    return None


def device_problem(name: str) -> Optional[str]:
    """Why ``name`` is not a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``), or ``None``.

    Only the spelling is checked here; whether the GPU exists is checked when a run starts
    (:func:`ltrkit.training.trainer.resolve_device`).
    """
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return None
    return f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """Options of the built-in synthetic data (:func:`ltrkit.data.synthetic.generate_splits`).

    ``None`` keeps the value of ``ltrkit.data.synthetic.DEFAULT_SPLITS`` / the generator default.
    """

    train_queries: Optional[int] = Field(None, ge=1, description="training queries (None: DEFAULT_SPLITS)")
    vali_queries: Optional[int] = Field(None, ge=1, description="validation queries (None: DEFAULT_SPLITS)")
    test_queries: Optional[int] = Field(None, ge=1, description="test queries (None: DEFAULT_SPLITS)")
    n_features: Optional[int] = Field(None, ge=1, description="number of features (None: generator default, 136)")
    mean_list_length: Optional[float] = Field(None, gt=0, description="mean documents per query")
    max_list_length: Optional[int] = Field(None, ge=1, description="longest list generated")
    noise: Optional[float] = Field(None, ge=0, description="label noise of the relevance function")
    seed: int = Field(0, description="seed of the generator (independent of the training seed)")


class SplitFiles(_Strict):
    """One optional path per split."""

    train: Optional[str] = Field(None, description="for the train split")
    vali: Optional[str] = Field(None, description="for the validation split")
    test: Optional[str] = Field(None, description="for the test split")


class ClickTrainingConfig(_Strict):
    """Clicks as training data (``data.train_clicks``): a click log whose rows index ``data.train``.

    ``data.train`` then holds the documents (features) the log's ``doc`` column refers to, read
    with the same options as when the log was simulated; their labels are not used for training
    and its filters (``drop_train_queries_without_relevant``, ``min_docs_per_query``) do not
    apply. ``loss`` names the list loss whose inverse-propensity-scored form is trained
    (softmax/listnet, ranknet, lambdarank); validation and test use their true labels. With
    ``pairs`` it names the pairwise loss (ranknet, pairwise_hinge) trained on the log's click
    preferences, and ``propensities`` is ``none`` (its default then).
    """

    log: Optional[str] = Field(None, description="click log (.parquet or .csv) as written by `ltrkit clicks simulate`")
    propensities: Literal["none", "logged", "randomization", "regression_em", "dla"] = Field(
        "logged",
        description=(
            "examination propensities: none (naive, clicks as labels), logged (the log's propensity column), "
            "randomization (estimated from interventions), regression_em (estimated without), dla (learned with the ranker)"
        ),
    )
    propensity_log: Optional[str] = Field(
        None, description="randomization: a log with interventions to estimate from (None: the training log itself)"
    )
    clip: Optional[float] = Field(
        None, gt=0, le=1, description="floor of the propensities (caps the inverse weights at 1/clip); clipped impressions are reported"
    )
    em_max_iterations: int = Field(100, ge=1, description="regression_em: EM iterations at most")
    dla_max_weight: Optional[float] = Field(10.0, gt=0, description="dla: cap on the inverse propensity and relevance weights (None: none)")
    dla_lr_multiplier: float = Field(
        50.0, gt=0, description="dla: the propensity logits learn this many times faster than the ranker (under adam/adamw)"
    )
    pairs: Optional[Literal["skip_above", "skip_next"]] = Field(
        None,
        description=(
            "train a pairwise loss (ranknet, pairwise_hinge) on Joachims' click preferences instead of the clicks: "
            "skip_above (a click over every skip above it) or skip_next (a click over the skip right below it); "
            "propensities are then none"
        ),
    )

    @model_validator(mode="after")
    def _propensity_log(self) -> "ClickTrainingConfig":
        if self.propensity_log is not None and self.propensities != "randomization":
            raise ValueError(f"propensity_log applies to propensities=randomization only, got propensities={self.propensities!r}")
        if self.pairs is not None and self.propensities != "none":
            raise ValueError(f"pairs={self.pairs!r} trains on click preferences without propensities; set propensities to none, not {self.propensities!r}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _pairs_without_propensities(cls, data: Any) -> Any:
        # pairs take no propensities: their default is then none, not logged
        if isinstance(data, Mapping) and data.get("pairs") is not None and "propensities" not in data:
            return {**data, "propensities": "none"}
        return data


class DataConfig(_Strict):
    """Where the data comes from and how it is read and filtered."""

    train: Optional[str] = Field(None, description="training file (LETOR/libsvm or a cache folder); None: built-in synthetic data")
    vali: Optional[str] = Field(None, description="validation file (early stopping and model selection)")
    test: Optional[str] = Field(None, description="test file (final report and predictions)")
    synthetic: Optional[SyntheticConfig] = Field(None, description="options of the built-in synthetic data, used when train is not set")
    vali_fraction: Optional[float] = Field(
        None, gt=0, lt=1, description="hold out this fraction of training queries as validation data when vali is not given"
    )
    query_files: SplitFiles = Field(default_factory=SplitFiles, description="libsvm group files (.query/.group); auto-detected beside the data when None")
    index_base: Literal["auto", 0, 1] = Field("auto", description="feature index base of the files: 'auto', 0 or 1")
    n_features: Optional[int] = Field(None, ge=1, description="feature count (None: the largest index in the training file)")
    cache: bool = Field(True, description="keep a binary cache beside each file (fast reloads)")
    cache_dir: Optional[str] = Field(None, description="put the caches here instead of beside the files")
    verify_cache: bool = Field(False, description="check a cache's array checksums when loading it (reads the whole cache once)")
    regroup: bool = Field(False, description="stably regroup rows whose query ids are not contiguous")
    missing: Literal["error", "zero", "min"] = Field(
        "error", description="missing feature values (NULL, NaN, 'idx:'): error, zero, or min (the query's minimum of that feature)"
    )
    drop_train_queries_without_relevant: bool = Field(
        True, description="drop training queries with no document at or above relevance_threshold (they carry no ranking signal)"
    )
    min_docs_per_query: int = Field(1, ge=1, description="drop training queries with fewer documents")
    relevance_threshold: float = Field(1.0, description="label at or above which a document counts as relevant (filtering)")
    train_clicks: Optional[ClickTrainingConfig] = Field(
        None, description="train on this click log (its rows index data.train's documents) instead of data.train's labels"
    )

    @model_validator(mode="after")
    def _sources(self) -> "DataConfig":
        if self.train is not None and self.synthetic is not None:
            raise ValueError("give either data.train (files) or data.synthetic (built-in data), not both")
        if self.train is None and any(path is not None for path in (self.vali, self.test)):
            raise ValueError("data.vali/data.test are set but data.train is not; set data.train too")
        if self.vali is not None and self.vali_fraction is not None:
            raise ValueError("give either data.vali or data.vali_fraction, not both")
        if self.train_clicks is not None:
            if self.train_clicks.log is None:
                raise ValueError("train_clicks.log is required: the click log to train on")
            if self.vali_fraction is not None:
                raise ValueError("data.vali_fraction cannot hold out queries of data.train when it holds the documents of data.train_clicks; give data.vali")
        return self


class ComponentConfig(_Strict):
    """A registry entry: ``name`` plus keyword ``args`` checked against its signature."""

    name: str = Field(description="registered name")
    args: Dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the component")


class OptimizerConfig(_Strict):
    """The optimiser (all of the model's and the loss's trainable parameters)."""

    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw, adam or sgd")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (decoupled for adamw, L2 for adam/sgd)")
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd momentum (sgd only)")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd only, needs momentum > 0)")
    betas: List[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2, description="Adam betas")

    @model_validator(mode="after")
    def _sgd_only(self) -> "OptimizerConfig":
        if self.name != "sgd" and (self.momentum != 0.0 or self.nesterov):
            raise ValueError(f"momentum/nesterov apply to sgd only, got name={self.name!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=true needs momentum > 0")
        return self


class ScheduleConfig(_Strict):
    """Learning-rate schedule, applied per optimiser step: linear warm-up, then the decay."""

    name: Literal["constant", "cosine", "step"] = Field("cosine", description="constant, cosine or step")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr over this many steps")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine: final lr as a fraction of lr")
    step_epochs: int = Field(1, ge=1, description="step: multiply the lr by gamma every step_epochs epochs")
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor")


class TrainingConfig(_Strict):
    """The training loop."""

    epochs: Optional[int] = Field(
        None, ge=1, description="maximum number of epochs (None: enough for step_budget optimiser steps, 10..200; ltrkit.training.autosize)"
    )
    batch_size: Optional[int] = Field(
        None, ge=1, description="queries per training batch (None: about 16 batches per epoch, 8..128 queries)"
    )
    step_budget: int = Field(1000, ge=1, description="optimiser steps the automatic epoch count aims at (used when epochs is None)")
    ensemble: int = Field(1, ge=1, description="train this many members (seeds seed, seed+1, ...) side by side and score with their combination")
    ensemble_combine: Literal["mean", "rank_mean"] = Field(
        "mean", description="how an ensemble combines its members: mean of scores, or mean of ranks within each list"
    )
    eval_batch_size: int = Field(256, ge=1, description="queries per scoring batch (evaluation, prediction)")
    max_slate_length: Optional[int] = Field(None, ge=1, description="cut longer training lists to this many documents")
    truncation: Literal["random", "top_label"] = Field("random", description="how long lists are cut: random or top_label")
    sublist_fraction: Optional[float] = Field(
        None, gt=0, le=1, description="augmentation: each epoch, train on a uniform random sub-list of about this fraction of each list"
    )
    bucket_by_length: bool = Field(True, description="batch queries of similar length together (less padding)")
    max_docs_per_batch: Optional[int] = Field(None, ge=1, description="cap on batch_size x list length (long lists get smaller batches)")
    grad_clip: Optional[float] = Field(None, gt=0, description="clip the gradient norm to this value")
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="autocast on a GPU: auto = bf16 where supported; always off on CPU"
    )


class EarlyStoppingConfig(_Strict):
    """Model selection and early stopping on a per-epoch metric (higher is better)."""

    metric: str = Field("ndcg@10", description="metric that selects the best epoch")
    patience: Union[int, Literal["auto"], None] = Field(
        "auto", description="stop after this many epochs without improvement (auto: a fifth of the epochs, at least 5; None: never)"
    )
    min_delta: float = Field(0.0, ge=0, description="improvement smaller than this does not count")
    split: Literal["vali", "train"] = Field("vali", description="split the metric is computed on")

    @field_validator("patience", mode="before")
    @classmethod
    def _patience(cls, value: Any) -> Any:
        if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be a positive int, 'auto' or null, got {value!r}")


class EvaluationConfig(_Strict):
    """Metrics and their conventions (see :mod:`ltrkit.metrics`)."""

    metrics: List[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1, description="metric names, e.g. ndcg@10, map, mrr, err@10")
    preset: Literal["ltrkit", "trec"] = Field("ltrkit", description="convention preset of ltrkit.metrics: ltrkit (exp2 gain) or trec (trec_eval's)")
    gain: Optional[Literal["exp2", "linear"]] = Field(None, description="DCG gain: exp2 = 2^rel - 1, linear = rel (None: the preset's)")
    empty: Optional[Literal["zero", "one", "skip"]] = Field(
        None, description="metric of a query with no relevant document: zero, one, skip (None: the preset's)"
    )
    ties: Optional[Literal["input_order", "pessimistic", "optimistic", "docid_desc", "average"]] = Field(
        None, description="rule for tied scores (None: the preset's)"
    )
    relevance_threshold: float = Field(1.0, description="label at or above which a document is relevant (MAP, MRR, ...)")
    baselines: bool = Field(True, description="also report a random ranker and the best single feature (chosen on vali)")
    lightgbm_baseline: bool = Field(
        True, description="with baselines: also report LightGBM LambdaMART trained on the same splits, when lightgbm is installed"
    )


class OutputConfig(_Strict):
    """Where the run folder goes: ``<dir>/<name>/``."""

    dir: str = Field("runs", description="parent folder of run folders")
    name: Optional[str] = Field(None, description="run folder name (None: a UTC timestamp)")
    tensorboard: bool = Field(True, description="write TensorBoard event files")
    plots: bool = Field(True, description="write curves.png")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: Optional[str]) -> Optional[str]:
        problem = None if value is None else run_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TrainConfig(_Strict):
    """A complete, validated training run description (every field has a default)."""

    data: DataConfig = Field(default_factory=DataConfig, description="data sources and reading options")
    normalization: str = Field(
        "rank_gauss", description="feature normalisation fitted on train: rank_gauss, zscore, log1p, quantile, minmax, none, ..."
    )
    model: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="mlp", args={"hidden_sizes": [128, 64], "dropout": 0.1, "norm": "batch"}),
        description="scoring model from ltrkit.models",
    )
    loss: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="lambdaloss", args={"weighting": "ndcg_loss2pp"}),
        description="list loss from ltrkit.losses",
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="optimiser")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="learning-rate schedule")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="training loop")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig, description="early stopping")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="metrics and conventions")
    expected: Dict[Literal["vali", "test"], Dict[str, float]] = Field(
        default_factory=dict, description="regression gate: minimum metric values per split, e.g. {test: {ndcg@10: 0.5}}"
    )
    seed: int = Field(0, description="seed of model init, dropout, shuffling and slate sampling")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda or cuda:N")
    num_threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (None: all cores)")
    deterministic: bool = Field(
        True, description="torch.use_deterministic_algorithms on GPUs (CPU runs are deterministic for a fixed seed and thread count)"
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="run folder")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        problem = device_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict of every field (defaults included)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- loading


def read_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a ``.json``, ``.yaml`` or ``.yml`` config file into a dict (not yet validated).

    Raises:
        ConfigError: missing or unreadable file, text that is not UTF-8, unknown suffix, a parse
            error (with line), a non-mapping top level.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"file not found: {str(path)!r}"], source=str(path))
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"cannot read the file: {(error.strerror or str(error)).lower()}"], source=str(path)) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"not UTF-8 text (byte {error.start})"], source=str(path)) from None
    try:
        if suffix == ".json":
            raw = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError([f"unknown config suffix {suffix!r}; use .json, .yaml or .yml"], source=str(path))
    except json.JSONDecodeError as error:
        raise ConfigError([f"line {error.lineno}, column {error.colno}: invalid JSON: {error.msg}"], source=str(path)) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"invalid YAML: {error}".replace("\n", " ")], source=str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of sections, got {type(raw).__name__}"], source=str(path))
    return raw


def raw_config(source: Union[None, str, Path, Mapping[str, Any], BaseModel], config_type: type) -> tuple[Dict[str, Any], str]:
    """The raw dict of a config ``source`` (``None`` = defaults, a file, a dict or a ``config_type``
    instance) and the label its errors are reported under (the file name, else ``"config"``)."""
    if source is None:
        return {}, "config"
    if isinstance(source, config_type):
        return source.to_dict(), "config"
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source)), "config"
    return read_config_file(source), str(source)


def parse_override(text: str) -> tuple[List[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``.

    The value is parsed as JSON when it is valid JSON (``3``, ``1e-3``, ``true``, ``null``,
    ``[64, 32]``, ``{"k": 1}``, ``"quoted"``), else kept as the raw string (``mlp``, ``runs/x``).

    Raises:
        ConfigError: no ``=``, or an empty key / key segment.

    Example:
        >>> parse_override("model.args.hidden_sizes=[64, 32]")
        (['model', 'args', 'hidden_sizes'], [64, 32])
        >>> parse_override("model.name=mlp")
        (['model', 'name'], 'mlp')
    """
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"override {text!r} must look like key.path=value"], source="--set")
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError([f"override key {key!r} has an empty segment"], source="--set")
    try:
        value = json.loads(value_text)
    except json.JSONDecodeError:
        value = value_text
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> Dict[str, Any]:
    """Return a deep copy of ``raw`` with the overrides applied.

    ``overrides`` is a list of ``"key.path=value"`` strings (see :func:`parse_override`) or a
    mapping ``{"key.path": value}`` (values used as given). Missing intermediate sections are
    created; an intermediate that holds a non-mapping value (or ``null``) is replaced by a new
    section. Unknown keys are not rejected here: validation reports them with their path.

    Example:
        >>> apply_overrides({"training": {"epochs": 5}}, ["training.batch_size=8", "seed=3"])
        {'training': {'epochs': 5, 'batch_size': 8}, 'seed': 3}
    """
    result = copy.deepcopy(dict(raw))
    items = (
        [parse_override(text) for text in overrides]
        if not isinstance(overrides, Mapping)
        else [(str(key).split("."), value) for key, value in overrides.items()]
    )
    for parts, value in items:
        node = result
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return result


def load_config(
    source: Union[None, str, Path, Mapping[str, Any], TrainConfig] = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    check_components: bool = True,
) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a file, a dict or a config, plus overrides.

    Args:
        source: path to a ``.json``/``.yaml`` file, a dict, a ``TrainConfig``, or ``None`` for
            the defaults (the built-in synthetic job).
        overrides: ``["training.epochs=3", ...]`` or ``{"training.epochs": 3}``.
        check_components: also check model/loss names and args, metric names, the
            normalisation and the regression gate against the registries.

    Raises:
        ConfigError: listing every problem found, each with its dotted path.

    Example:
        >>> load_config({"training": {"epochs": 3}}, ["optimizer.lr=0.01"]).optimizer.lr
        0.01
        >>> load_config({"training": {"epochs": 0}}, check_components=False)
        Traceback (most recent call last):
        ...
        ltrkit.training.config.ConfigError: config has 1 error(s):
          - training.epochs: Input should be greater than or equal to 1 (got 0)
    """
    raw, label = raw_config(source, TrainConfig)
    raw = _default_components(apply_overrides(raw, overrides))
    errors: List[str] = []
    config: Optional[TrainConfig] = None
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as error:
        errors.extend(_format_validation_error(error))
    if check_components:
        errors.extend(_check_components(raw))
    if errors:
        raise ConfigError(errors, source=label)
    assert config is not None  # no errors means validation succeeded
    return config


def _default_components(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A ``model``/``loss`` section without ``name`` means the default component, its default
    args updated by the given ones (so ``--set model.args.dropout=0.3`` keeps the default MLP);
    with a ``name``, ``args`` are exactly what is given."""
    defaults = TrainConfig()
    for key in ("model", "loss"):
        section = raw.get(key)
        if isinstance(section, dict) and "name" not in section:
            default: ComponentConfig = getattr(defaults, key)
            args = section.get("args", {})
            merged_args = {**default.args, **args} if isinstance(args, dict) else args
            raw[key] = {**section, "name": default.name, "args": merged_args}
    return raw


def _format_validation_error(error: ValidationError, root: Optional[type[BaseModel]] = None) -> List[str]:
    """One ``"dotted.path: problem"`` line per error of validating ``root`` (default :class:`TrainConfig`)."""
    lines = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or "<top level>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            parent = _model_at(item["loc"][:-1], root or TrainConfig)
            allowed = sorted(parent.model_fields) if parent is not None else []
            message = f"unknown field; allowed: {allowed}"
            lines.append(f"{path}: {message}")
            continue
        message = message.removeprefix("Value error, ")
        received = item.get("input")
        shown = "" if isinstance(received, dict) or "got " in message else f" (got {received!r})"
        lines.append(f"{path}: {message}{shown}")
    return lines


def _model_at(loc: Sequence[Any], root: type[BaseModel]) -> Optional[type[BaseModel]]:
    """The pydantic model class at ``loc`` inside ``root`` (None when not a model)."""
    model: Any = root
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        model = _model_in(annotation)
        if model is None:
            return None
    return model


def _model_in(annotation: Any) -> Optional[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- component checks


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def _check_components(raw: Mapping[str, Any]) -> List[str]:
    """Check registry-backed fields of a raw config; best effort on partially invalid input."""
    defaults = TrainConfig()
    errors: List[str] = []
    model = _section(raw, "model")
    model_name = model.get("name", defaults.model.name if "model" not in raw else None)
    model_args = model.get("args", defaults.model.args if "model" not in raw else {})
    if isinstance(model_name, str) and isinstance(model_args, Mapping):
        errors.extend(_check_model(model_name, dict(model_args)))
    loss = _section(raw, "loss")
    loss_name = loss.get("name", defaults.loss.name if "loss" not in raw else None)
    loss_args = loss.get("args", defaults.loss.args if "loss" not in raw else {})
    if isinstance(loss_name, str) and isinstance(loss_args, Mapping):
        errors.extend(_check_loss(loss_name, dict(loss_args)))

    evaluation = _section(raw, "evaluation")
    metrics = evaluation.get("metrics", defaults.evaluation.metrics)
    if isinstance(metrics, list):
        for index, name in enumerate(metrics):
            if isinstance(name, str):
                problem = _metric_problem(name)
                if problem:
                    errors.append(f"evaluation.metrics.{index}: {problem}")
    stopping = _section(raw, "early_stopping")
    stop_metric = stopping.get("metric", defaults.early_stopping.metric)
    if isinstance(stop_metric, str):
        problem = _metric_problem(stop_metric)
        if problem:
            errors.append(f"early_stopping.metric: {problem}")
    expected = raw.get("expected", {})
    if isinstance(expected, Mapping):
        for split, table in expected.items():
            if isinstance(table, Mapping):
                for name in table:
                    problem = _metric_problem(str(name))
                    if problem:
                        errors.append(f"expected.{split}.{name}: {problem}")
    normalization = raw.get("normalization", defaults.normalization)
    if isinstance(normalization, str):
        problem = _normalization_problem(normalization)
        if problem:
            errors.append(f"normalization: {problem}")
    return errors


def _check_model(name: str, args: Dict[str, Any]) -> List[str]:
    import torch

    from ltrkit.models import build_model, model_hyperparameters
    from ltrkit.models import names as model_names

    known = model_names()
    if name not in known:
        return [f"model.name: unknown model {name!r}; choose from {known}"]
    allowed = {key for key in model_hyperparameters(name) if key != "n_features"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        return [f"model.args: model {name!r} got unknown argument(s) {unknown}; it takes {sorted(allowed)}"]
    try:
        probe = build_model(name, 3, **args)
        probe.eval()
        with torch.no_grad():
            probe(torch.zeros(2, 4, 3), torch.ones(2, 4, dtype=torch.bool))
    except Exception as error:  # any failure here is a bad argument value; report it, do not crash
        return [f"model.args: model {name!r} rejects {args}: {_one_line(error)}"]
    return []


def _check_loss(name: str, args: Dict[str, Any]) -> List[str]:
    import torch

    import ltrkit.losses

    known = ltrkit.losses.names(kind="list")
    if name not in known:
        return [f"loss.name: unknown list loss {name!r}; choose from {known}"]
    # the trainer needs one scalar per batch, so the reduction is not a config choice
    allowed = {key for key in ltrkit.losses.hyperparameters(name) if key != "reduction"}
    unknown = sorted(set(args) - allowed)
    if unknown:
        return [f"loss.args: loss {name!r} got unknown argument(s) {unknown}; it takes {sorted(allowed)}"]
    try:
        loss = ltrkit.losses.get(name, **args)
        scores = torch.linspace(-1.0, 1.0, 8).reshape(2, 4).requires_grad_(True)
        labels = torch.tensor([[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
        mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
        value = loss(scores, labels, mask)
        if value.requires_grad:
            value.backward()
    except Exception as error:  # any failure here is a bad hyperparameter value; report it
        return [f"loss.args: loss {name!r} rejects {args}: {_one_line(error)}"]
    return []


def _metric_problem(name: str) -> Optional[str]:
    from ltrkit.metrics import parse_metric

    try:
        parse_metric(name)
    except (ValueError, KeyError) as error:
        return _one_line(error)
    return None


def _normalization_problem(method: str) -> Optional[str]:
    from ltrkit.data.transforms import Normalizer

    try:
        Normalizer(method)
    except (ValueError, KeyError) as error:
        return _one_line(error)
    return None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().strip("'\"")
    return " ".join(text.split()) or type(error).__name__


# --------------------------------------------------------------------------- documented defaults


def config_to_yaml(config: Optional[TrainConfig] = None, *, comments: bool = True) -> str:
    """YAML text of ``config`` (default: the defaults), each field followed by its description."""
    config = config or TrainConfig()
    lines: List[str] = []
    if comments:
        lines += [
            "# ltrkit training config. Every field is optional; `ltrkit config show FILE` prints the",
            "# resolved values and `ltrkit train FILE --set key.path=value` overrides any of them.",
        ]
    _yaml_lines(config, 0, lines, comments)
    return "\n".join(lines) + "\n"


def _yaml_lines(model: BaseModel, indent: int, lines: List[str], comments: bool) -> None:
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        note = f"  # {field.description}" if comments and field.description else ""
        if isinstance(value, BaseModel):
            if comments and field.description and indent == 0:
                lines.append("")
            lines.append(f"{pad}{name}:{note}")
            _yaml_lines(value, indent + 1, lines, comments)
            continue
        dumped = yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
        dumped = dumped.removesuffix("...").strip()
        lines.append(f"{pad}{name}: {dumped}{note}")
        section = _model_in(field.annotation)
        if comments and value is None and section is not None:
            # an optional section left out: show its fields, commented, so users see what it takes
            nested: List[str] = []
            _yaml_lines(section(), indent + 1, nested, comments)
            lines.append(f"{pad}# {name}:")
            lines.extend(f"{pad}# {line[len(pad):]}" for line in nested)
