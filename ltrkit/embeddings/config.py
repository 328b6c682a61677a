"""The embedding job's config: the same strict pydantic style as :mod:`ltrkit.training.config`.

::

    {"data": {"train": "items_train.csv", "vali": "items_vali.csv", "test": "items_test.csv"},
     "encoder": {"name": "mlp", "args": {"hidden_sizes": [256], "dim": 32}},
     "loss": {"name": "triplet", "args": {"mining": "semi_hard", "margin": 0.2}},
     "sampler": {"p": 10, "k": 8}, "training": {"epochs": 20}}

``{}`` is the built-in example (digits, MLP encoder with 256 hidden units, triplet loss with
semi-hard mining, up to 40 epochs, the best validation p@1 kept: test p@1 0.994/0.983/0.986 for
seeds 0/1/2 against 0.969 for raw pixels);
:func:`example_config` ``("news")`` the near-duplicate news example (:mod:`ltrkit.embeddings.news`:
text items, a bag-of-words encoder pre-trained as a denoising autoencoder, then fine-tuned with
the triplet loss, duplicate detection against TF-IDF).

Multi-label items (``data.labels_column``, labels joined by ``data.label_separator`` in a CSV
cell, or a Parquet ``list<string>``): an item is relevant to the items sharing at least one of its
labels, and the vali/test retrieval metrics (model and baselines) use that relevance instead of
the classes; vali/test items then need no class column. Training still needs the classes (triplet
mining) or ``data.pairs``/``data.triplets``; StarSpace ranks class entities and takes no labels.

Text items (``data.text_column`` and/or ``data.tokens_column``) feed the ``bag_of_words``
encoder through a vocabulary built on the training items (``data.vocabulary``), saved in the run
folder (``vocabulary.json``, and in every checkpoint) so search and export tokenise alike.

``pretrain`` (text items only): the first ``pretrain.epochs`` of the ``training.epochs`` epochs
train the encoder as a denoising autoencoder (:class:`PretrainConfig`); the remaining epochs
train the objective's loss. Both phases run in the one loop with one optimiser and schedule, so
checkpoints and exact resume work across the switch.
The ``objective`` says what a training batch is:

* ``classes``: P x K class-balanced batches of labelled items, a mining loss
  (``triplet`` with ``mining``) on ``(embeddings, classes)``;
* ``pairs``: rows of ``data.pairs``, a pair loss (``contrastive``, ``cosine_embedding``);
* ``triplets``: rows of ``data.triplets``, ``triplet`` without mining or ``margin_ranking``
  (on the similarities ``s(a, p)`` vs ``s(a, n)``);
* ``starspace``: items and their classes as entities of two kinds in one space; each item
  against its class and ``starspace_negatives`` sampled other classes, ``margin_ranking``.

Validation reports every bad field at once (:class:`~ltrkit.training.config.ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from ltrkit.training.config import (
    ComponentConfig,
    ConfigError,
    OptimizerConfig,
    OutputConfig,
    ScheduleConfig,
    _format_validation_error,
    _Strict,
    apply_overrides,
    device_problem,
    raw_config,
)

__all__ = ["EmbedConfig", "load_embed_config", "example_config", "DEFAULT_RETRIEVAL_METRICS", "EXAMPLES"]

DEFAULT_RETRIEVAL_METRICS = ["p@1", "recall@1", "recall@5", "p@5", "map", "mrr", "ndcg@10"]

# which loss each objective calls, and how
_OBJECTIVE_LOSSES = {
    "classes": ("triplet",),
    "pairs": ("contrastive", "cosine_embedding"),
    "triplets": ("triplet", "margin_ranking"),
    "starspace": ("margin_ranking",),
}


class VocabularyConfig(_Strict):
    """The vocabulary of text items, built on the training items only (id 0 padding, 1 unknown)."""

    min_count: int = Field(1, ge=1, description="keep tokens seen at least this often in the training items")
    max_size: Optional[int] = Field(None, ge=3, description="at most this many ids, padding and unknown included (the most frequent tokens)")
    max_length: Optional[int] = Field(None, ge=1, description="tokens read per item (the first ones; None: all)")


class NewsConfig(_Strict):
    """Size of the generated corpus of the news example (:func:`ltrkit.embeddings.news.news_items`)."""

    train_stories: int = Field(600, ge=2, description="stories of the training split (2-4 items each)")
    vali_stories: int = Field(150, ge=2, description="stories of the validation split")
    test_stories: int = Field(150, ge=2, description="stories of the test split")
    topics: int = Field(12, ge=2, description="topics of the made-up language")
    concepts: int = Field(30, ge=11, description="concepts per topic (a story mentions 8 of its topic's and 3 of another's)")
    seed: int = Field(0, description="seed of the corpus")


class EmbedDataConfig(_Strict):
    """Items (CSV/Parquet), optional pair/triplet files; no ``train``: a built-in example."""

    train: Optional[str] = Field(None, description="training items (.csv/.parquet: id, label, feature or text columns); None: data.example")
    example: Literal["digits", "news"] = Field("digits", description="built-in items when data.train is not set: sklearn's digits, or the generated news corpus")
    news: NewsConfig = Field(default_factory=NewsConfig, description="corpus size of the news example")
    vali: Optional[str] = Field(None, description="validation items (retrieval metrics per epoch, early stopping)")
    test: Optional[str] = Field(None, description="test items (final retrieval metrics)")
    pairs: Optional[str] = Field(None, description="siamese pairs of training ids: columns a, b, target (1 similar, 0/-1 not); objective pairs")
    triplets: Optional[str] = Field(None, description="triplets of training ids: columns anchor, positive, negative; objective triplets")
    id_column: str = Field("id", description="item id column")
    label_column: str = Field("label", description="class column")
    labels_column: Optional[str] = Field(
        None, description="multi-label items: the column of their labels (CSV: joined by data.label_separator, empty = none; Parquet: list<string>); relevance = a shared label"
    )
    label_separator: str = Field("|", min_length=1, description="what joins the labels of a data.labels_column cell")
    text_column: Optional[str] = Field(None, description="text items: the column of their text (tokenised into lower-cased words)")
    tokens_column: Optional[str] = Field(None, description="text items: the column of their token-id lists (Parquet list<int>, or space-separated in CSV)")
    vocabulary: VocabularyConfig = Field(default_factory=VocabularyConfig, description="vocabulary of text items")

    @model_validator(mode="after")
    def _sources(self) -> "EmbedDataConfig":
        if self.train is None and any(path is not None for path in (self.vali, self.test, self.pairs, self.triplets)):
            raise ValueError("data.vali/test/pairs/triplets are set but data.train is not; set data.train too")
        if self.train is None and (self.text_column is not None or self.tokens_column is not None):
            raise ValueError("data.text_column/tokens_column name columns of data.train, which is not set")
        if self.labels_column is not None:
            if self.train is None:
                raise ValueError("data.labels_column names a column of data.train, which is not set")
            if self.labels_column in (self.id_column, self.label_column, self.text_column, self.tokens_column):
                raise ValueError(f"data.labels_column: {self.labels_column!r} is already the id, class, text or tokens column")
        return self

    @property
    def is_text(self) -> bool:
        """Whether the items are text (token lists) rather than feature rows."""
        return self.text_column is not None or self.tokens_column is not None or (self.train is None and self.example == "news")


class PretrainConfig(_Strict):
    """Denoising-autoencoder pre-training of a text encoder (``epochs: 0``: none).

    Each item's bag of tokens is corrupted (every token dropped with ``word_dropout``, else
    replaced by a uniformly drawn vocabulary token with ``word_replace``); the encoder's
    un-normalised output goes through a linear decoder to logits over the vocabulary, and the
    loss is the cross-entropy of their softmax against the clean bag's token frequencies,
    ``-sum_w p_w log softmax(z)_w``. The decoder is dropped after pre-training.
    """

    epochs: int = Field(0, ge=0, description="epochs of pre-training, counted within training.epochs (the first ones)")
    word_dropout: float = Field(0.3, ge=0, lt=1, description="chance that a token of the corrupted bag is dropped")
    word_replace: float = Field(0.1, ge=0, lt=1, description="chance that a kept token is replaced by a random vocabulary token")


class SamplerConfig(_Strict):
    """Class-balanced P x K batches (objective ``classes``)."""

    p: int = Field(10, ge=2, description="classes per batch")
    k: int = Field(8, ge=2, description="items per class in a batch")


class EmbedTrainingConfig(_Strict):
    """The training loop."""

    epochs: int = Field(40, ge=1, description="maximum number of epochs")
    batch_size: int = Field(128, ge=1, description="pairs/triplets/items per batch (objectives pairs, triplets, starspace)")
    eval_batch_size: int = Field(1024, ge=1, description="items per encoding batch (evaluation, search)")
    grad_clip: Optional[float] = Field(None, gt=0, description="clip the gradient norm to this value")
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = Field("off", description="autocast on a GPU; always off on CPU")
    starspace_negatives: int = Field(5, ge=1, description="sampled negative classes per item (objective starspace)")


class EmbedStoppingConfig(_Strict):
    """Model selection and early stopping on a retrieval metric (higher is better)."""

    metric: str = Field("p@1", description="retrieval metric that selects the best epoch")
    patience: Optional[int] = Field(5, ge=1, description="stop after this many epochs without improvement (None: never)")
    min_delta: float = Field(0.0, ge=0, description="improvement smaller than this does not count")
    split: Literal["vali", "train"] = Field("vali", description="split the metric is computed on")


class RetrievalConfig(_Strict):
    """Retrieval evaluation: every item of a split queries the others (:mod:`ltrkit.embeddings.retrieval`)."""

    metrics: List[str] = Field(default_factory=lambda: list(DEFAULT_RETRIEVAL_METRICS), min_length=1, description="recall@k, p@k, map, mrr, ndcg[@k]")
    similarity: Literal["cosine", "dot", "euclidean"] = Field("cosine", description="similarity ranking the items")
    empty: Literal["zero", "one", "skip"] = Field("zero", description="metric of a query whose class has no other item")
    baselines: bool = Field(True, description="also report the raw inputs (TF-IDF cosine for text items) and the untrained encoder")
    duplicates: bool = Field(
        False, description="report duplicate detection (pairs of one class) at the similarity threshold of the best validation F1 (every pair: O(N^2) memory, splits up to ~20k items)"
    )


class EmbedConfig(_Strict):
    """A complete embedding run (every field has a default)."""

    objective: Literal["classes", "pairs", "triplets", "starspace"] = Field("classes", description="what a training batch is")
    data: EmbedDataConfig = Field(default_factory=EmbedDataConfig, description="items and pair/triplet files")
    encoder: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="mlp", args={"hidden_sizes": [256], "dim": 32}),
        description="encoder from ltrkit.embeddings.encoders (mlp, bag_of_words, cnn)",
    )
    normalize: bool = Field(True, description="L2-normalise the embeddings")
    loss: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="triplet", args={"mining": "semi_hard", "margin": 0.2}),
        description="embedding loss from ltrkit.losses (triplet, contrastive, cosine_embedding, margin_ranking)",
    )
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="P x K batches")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="denoising-autoencoder pre-training (text items)")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="optimiser")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="learning-rate schedule")
    training: EmbedTrainingConfig = Field(default_factory=EmbedTrainingConfig, description="training loop")
    early_stopping: EmbedStoppingConfig = Field(default_factory=EmbedStoppingConfig, description="early stopping")
    evaluation: RetrievalConfig = Field(default_factory=RetrievalConfig, description="retrieval metrics")
    expected: Dict[Literal["vali", "test"], Dict[str, float]] = Field(default_factory=dict, description="regression gate: minimum metric values per split")
    seed: int = Field(0, description="seed of encoder init, dropout and batch sampling")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda or cuda:N")
    num_threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (None: all cores)")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms on GPUs")
    output: OutputConfig = Field(default_factory=OutputConfig, description="run folder")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        problem = device_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _objective(self) -> "EmbedConfig":
        allowed = _OBJECTIVE_LOSSES[self.objective]
        if self.loss.name not in allowed:
            raise ValueError(f"loss.name: objective {self.objective!r} trains with {list(allowed)}, got {self.loss.name!r}")
        mining = self.loss.args.get("mining")
        if self.loss.name == "triplet" and (mining is None) != (self.objective == "triplets"):
            raise ValueError(
                "loss.args.mining: objective 'classes' mines triplets in the batch (set mining: batch_all, batch_hard or semi_hard); "
                "objective 'triplets' reads them from data.triplets (no mining)"
            )
        for objective, field in (("pairs", "pairs"), ("triplets", "triplets")):
            if (self.objective == objective) != (getattr(self.data, field) is not None):
                raise ValueError(f"data.{field}: objective {objective!r} and data.{field} go together (objective is {self.objective!r})")
        if (self.encoder.name == "bag_of_words") != self.data.is_text:
            raise ValueError(
                "encoder.name: the bag_of_words encoder reads text items (set data.text_column or data.tokens_column) and the other encoders "
                f"read features; got encoder {self.encoder.name!r} with {'text' if self.data.is_text else 'feature'} items"
            )
        if self.pretrain.epochs and not self.data.is_text:
            raise ValueError("pretrain.epochs: pre-training reconstructs bags of tokens; it needs text items")
        if self.pretrain.epochs >= self.training.epochs:
            raise ValueError(f"pretrain.epochs: {self.pretrain.epochs} of training.epochs {self.training.epochs} leaves no epoch for the {self.loss.name} loss")
        if self.data.labels_column is not None and self.objective == "starspace":
            raise ValueError("data.labels_column: StarSpace ranks each item's class entity; multi-label relevance is for item-to-item retrieval")
        if self.evaluation.duplicates and self.objective == "starspace":
            raise ValueError("evaluation.duplicates: StarSpace ranks class entities, not items; duplicate detection needs item-to-item similarity")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict of every field (defaults included)."""
        return self.model_dump(mode="json")


#: The built-in examples: ``ltrkit embed --example NAME`` (``digits`` is also ``ltrkit embed``).
EXAMPLES: Dict[str, Dict[str, Any]] = {
    "digits": {},
    "news": {
        "data": {"example": "news"},
        "encoder": {"name": "bag_of_words", "args": {"token_dim": 128, "dim": 64}},
        "pretrain": {"epochs": 10, "word_dropout": 0.3, "word_replace": 0.1},
        "loss": {"name": "triplet", "args": {"mining": "semi_hard", "margin": 0.3}},
        "sampler": {"p": 32, "k": 4},
        "optimizer": {"lr": 0.01},
        "training": {"epochs": 100},
        "early_stopping": {"metric": "map", "patience": None},
        "evaluation": {"metrics": ["p@1", "recall@5", "map", "mrr", "ndcg@10"], "duplicates": True},
    },
}


def example_config(name: str) -> Dict[str, Any]:
    """A copy of the config of built-in example ``name`` (see :data:`EXAMPLES`).

    Raises:
        ValueError: an unknown name.
    """
    import copy

    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; choose from {sorted(EXAMPLES)}")
    return copy.deepcopy(EXAMPLES[name])


def load_embed_config(
    source: Union[None, str, Path, Mapping[str, Any], EmbedConfig] = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> EmbedConfig:
    """A validated :class:`EmbedConfig` from a file, a dict or a config, plus ``key.path=value`` overrides.

    The encoder, loss and metric names and arguments are checked against their registries.

    Raises:
        ConfigError: every problem at once, each with its dotted path.
    """
    raw, label = raw_config(source, EmbedConfig)
    raw = apply_overrides(raw, overrides)
    errors: List[str] = []
    config: Optional[EmbedConfig] = None
    try:
        config = EmbedConfig.model_validate(raw)
    except ValidationError as error:
        errors.extend(line.removeprefix("<top level>: ") for line in _format_validation_error(error, EmbedConfig))
    errors.extend(_component_errors(raw))
    if errors:
        raise ConfigError(errors, source=label)
    return config


def _component_errors(raw: Mapping[str, Any]) -> List[str]:
    """Registry checks of the encoder, loss and metric names on the raw config (best effort:
    a section that is itself malformed is left to the schema's errors)."""
    import ltrkit.losses
    from ltrkit.embeddings.encoders import encoder_hyperparameters, encoder_names
    from ltrkit.embeddings.retrieval import canonical_retrieval_metric

    errors = []

    def section(key: str) -> Mapping[str, Any]:
        value = raw.get(key, {})
        return value if isinstance(value, Mapping) else {}

    encoder = section("encoder") or {"name": "mlp", "args": {}}
    name, args = encoder.get("name"), encoder.get("args", {})
    if isinstance(name, str) and isinstance(args, Mapping):
        if name not in encoder_names():
            errors.append(f"encoder.name: unknown encoder {name!r}; choose from {encoder_names()}")
        else:
            unknown = sorted(set(args) - set(encoder_hyperparameters(name)))
            if unknown:
                errors.append(f"encoder.args: encoder {name!r} got unknown argument(s) {unknown}; it takes {sorted(encoder_hyperparameters(name))}")
    loss = section("loss") or {"name": "triplet", "args": {}}
    name, args = loss.get("name"), loss.get("args", {})
    if isinstance(name, str) and isinstance(args, Mapping) and name in ltrkit.losses.names(kind="embedding"):
        allowed = {key for key in ltrkit.losses.hyperparameters(name) if key != "reduction"}
        unknown = sorted(set(args) - allowed)
        if unknown:
            errors.append(f"loss.args: loss {name!r} got unknown argument(s) {unknown}; it takes {sorted(allowed)}")
        else:
            try:
                ltrkit.losses.get(name, **args)
            except (ValueError, TypeError) as error:
                errors.append(f"loss.args: loss {name!r} rejects {dict(args)}: {' '.join(str(error).split())}")
    elif isinstance(name, str):
        errors.append(f"loss.name: unknown embedding loss {name!r}; choose from {ltrkit.losses.names(kind='embedding')}")
    metrics = section("evaluation").get("metrics", DEFAULT_RETRIEVAL_METRICS)
    names = [(f"evaluation.metrics.{i}", metric) for i, metric in enumerate(metrics)] if isinstance(metrics, list) else []
    names.append(("early_stopping.metric", section("early_stopping").get("metric", "p@1")))
    names += [(f"expected.{split}.{metric}", metric) for split, table in section("expected").items() if isinstance(table, Mapping) for metric in table]
    for field, metric in names:
        try:
            canonical_retrieval_metric(str(metric))
        except ValueError as error:
            errors.append(f"{field}: {' '.join(str(error).split())}")
    return errors
