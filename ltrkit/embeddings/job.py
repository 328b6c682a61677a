"""The embedding job on the shared training loop: :class:`EmbeddingTask`, ``train_embeddings``,
``resume_embeddings`` and :class:`Embedder` (a trained run, loaded to encode and search).

Everything but the task is the list-ranking job's: the run folder (``config.resolved.json``,
``history.csv/json``, ``train.log``, TensorBoard, ``curves.png``, ``checkpoints/{best,last}.pt``
with exact resume, ``report.{md,json}``), the progress bar, schedules, early stopping and the
regression gate (:func:`ltrkit.training.trainer.run_task`). The task adds ``projection.png``
(PCA of the test embeddings, coloured by class) and, as baselines, the retrieval metrics of the
raw inputs and of the untrained encoder (same seed, so the same initial weights).

Multi-label items (``data.labels_column``) are evaluated by shared labels: wherever a split's
items have labels, their retrieval metrics (the model's, the raw inputs' and the untrained
encoder's) count as relevant the items sharing at least one label, instead of those of the same
class (:func:`~ltrkit.embeddings.retrieval.retrieval_metrics` on the ``[N, L]`` multi-hot).

Text items add ``vocabulary.json`` to the run folder; their raw-input baseline is TF-IDF cosine
(scikit-learn's ``TfidfVectorizer`` fitted on the training texts; token-id items: none). With
``evaluation.duplicates`` the report adds duplicate-detection precision, recall and F1 on the
test items at the threshold of the best validation F1 (:mod:`ltrkit.embeddings.news`), for the
model and the baselines alike, and the threshold itself (``dup_threshold``).

A checkpoint holds, besides the loop's entries, ``loss`` (the loss module's state),
``n_inputs`` (features, or the vocabulary size) and ``class_names`` (the training classes;
StarSpace's entity table is indexed by them), ``vocabulary`` (text items, else ``None``) and
``decoder`` (the pre-training decoder's state, else ``None``).

Under ``torchrun`` (:mod:`ltrkit.training.distributed`) every rank builds the whole epoch's
batches from ``(seed, epoch)`` (P x K batches, pair/triplet rows, StarSpace negatives and
pre-training corruptions alike) and trains on its share, whole batches dealt round robin by
:func:`shard_batches`: at step ``s`` rank ``r`` takes batch ``s * W + r``, so one step of ``W``
ranks covers ``W`` consecutive batches of the single-process epoch, DDP averaging their
gradients. The pre-training decoder trains under its own ``DistributedDataParallel``, so every
rank keeps the same decoder. Validation shards the queries: every rank embeds the whole split
(the index), rank ``r`` ranks it for items ``r, r + W, ...`` only, and the loop all-reduces each
metric's float64 sum and count over the disjoint shards: the single-process mean up to the
order of summation. Test metrics, baselines and the report are rank 0's, in full.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ltrkit.embeddings.config import EmbedConfig, load_embed_config
from ltrkit.embeddings.data import ItemSet, Vocabulary, check_triplet_classes, digits_items, load_items, load_pairs, load_triplets, pk_batches
from ltrkit.embeddings.encoders import EmbeddingModel, build_encoder, encoder_hyperparameters
from ltrkit.embeddings.retrieval import canonical_retrieval_metric, retrieval_metrics
from ltrkit.training.config import ConfigError
from ltrkit.training.distributed import current_context, wrap_model
from ltrkit.training.task import Evaluation, StepOutput, Task
from ltrkit.training.trainer import EpochCallback, TrainResult, merge_overrides, resume_task, resumed_config, run_task

__all__ = ["Embedder", "EmbeddingTask", "encode", "resume_embeddings", "shard_batches", "train_embeddings"]

SPLITS = ("train", "vali", "test")
VOCABULARY_FILE = "vocabulary.json"


@dataclass
class _Corrupted:
    """A pre-training batch: training item ``rows`` and their corrupted token ids ``[B, T]``."""

    rows: torch.Tensor
    corrupted: torch.Tensor


@dataclass
class _Filler:
    """A rank's step without a batch of its own (see :func:`shard_batches`): ``batch`` (another
    rank's) is forwarded so that every rank steps, and its loss counts zero times."""

    batch: Any


def shard_batches(batches: Sequence[Any], rank: int, world_size: int) -> List[Any]:
    """Rank ``rank``'s share of an epoch's ``batches`` among ``world_size`` ranks.

    Whole batches are dealt round robin: rank ``r`` takes batches ``r, r + W, r + 2W, ...``, so
    the shards are disjoint, their union is ``batches`` (each exactly once), and step ``s`` of the
    ranks together covers batches ``s * W .. s * W + W - 1``. Every rank takes the same number of
    steps, ``ceil(len(batches) / W)`` (DDP needs each rank in every step): when ``W`` does not
    divide the batch count, the ranks left without a batch in the last step take a filler that
    forwards batch ``(s * W + r) mod len(batches)`` and counts zero times (loss times 0, weight
    0, no items). Nothing is dropped or trained on twice; that last step's averaged gradient is
    the sum of its ``m < W`` real batches' gradients over ``W`` (DDP divides by the rank count),
    i.e. ``m / W`` of their mean. With ``world_size`` 1 the shard is ``batches`` itself.

    Raises:
        ValueError: ``rank`` outside ``0 .. world_size - 1``.

    Example:
        >>> shard_batches(["a", "b", "c"], 1, 2)
        ['b', _Filler(batch='a')]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of the {world_size} ranks")
    share: List[Any] = list(batches[rank::world_size])
    steps = -(-len(batches) // world_size)
    if len(share) < steps:
        share.append(_Filler(batches[((steps - 1) * world_size + rank) % len(batches)]))
    return share


def train_embeddings(
    config: Union[None, str, Path, Mapping[str, Any], EmbedConfig] = None,
    *,
    set: Sequence[str] = (),
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Optional[EpochCallback] = None,
    **overrides: Any,
) -> TrainResult:
    """Train an encoder as described by ``config`` (``None``: the built-in digits example).

    Overrides work as in :func:`ltrkit.train` (``set=["training.epochs=3"]``, ``training__epochs=3``).

    Raises:
        ConfigError, RunExistsError, OutputError, RegressionGateError: as :func:`ltrkit.train`.
    """
    resolved = load_embed_config(config, merge_overrides(set, overrides))
    return run_task(EmbeddingTask(resolved), overwrite=overwrite, quiet=quiet, on_epoch_end=on_epoch_end)


def resume_embeddings(
    run_dir: Union[str, Path], *, set: Sequence[str] = (), quiet: bool = True, on_epoch_end: Optional[EpochCallback] = None, **overrides: Any
) -> TrainResult:
    """Continue an embedding run from ``checkpoints/last.pt`` (exactly as :func:`ltrkit.resume`)."""
    folder, resolved = resumed_config(run_dir, load_embed_config, merge_overrides(set, overrides))
    return resume_task(EmbeddingTask(resolved), folder, quiet=quiet, on_epoch_end=on_epoch_end)


@torch.no_grad()
def encode(model: torch.nn.Module, inputs: torch.Tensor, *, batch_size: int = 1024, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``[N, dim]`` float32 embeddings of ``inputs`` on the CPU, model in eval mode (its mode restored)."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(inputs[start : start + batch_size].to(device)).float().cpu() for start in range(0, inputs.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 0)


class EmbeddingTask(Task):
    """Encoder training (see :mod:`ltrkit.embeddings.config` for the objectives).

    A batch is a tensor of rows (objective ``classes``: a P x K batch of items; ``pairs`` and
    ``triplets``: rows of the pair/triplet table) or, for ``starspace``, ``(item rows, negative
    classes [B, n])``; every batch is a function of ``(seed, epoch)``. ``train_loss`` averages
    over the batch's rows. Validation: retrieval metrics of the ``vali`` items among themselves
    (``starspace``: each item ranks every class's entity vector; ``recall@k`` is hits@k).

    Under torchrun each rank trains on its :func:`shard_batches` share of every epoch, and
    :meth:`steps_per_epoch` counts one rank's steps (the schedule's steps).

    Epochs ``1..pretrain.epochs`` are denoising pre-training instead (text items): a batch is a
    :class:`_Corrupted` (every training item once per epoch, in as many batches as the
    objective's epoch has),
    its loss the reconstruction cross-entropy averaged over the items with tokens. The validation
    metric is tracked (and the best epoch kept) over every epoch, both phases alike, and early
    stopping's patience counts from epoch 1.
    """

    unit = "items"
    checkpoint_keys = ("loss", "n_inputs", "class_names")

    def __init__(self, config: EmbedConfig) -> None:
        self.config = config
        self.loss_name = config.loss.name
        self.stop_metric = canonical_retrieval_metric(config.early_stopping.metric)
        gated = [name for table in config.expected.values() for name in table]
        self.metric_names = list(dict.fromkeys([canonical_retrieval_metric(name) for name in [*config.evaluation.metrics, *gated]] + [self.stop_metric]))
        self.splits: Dict[str, Optional[ItemSet]] = {}
        self.table: Dict[str, torch.Tensor] = {}

    def canonical_metric(self, name: str) -> str:
        return canonical_retrieval_metric(name)

    # ------------------------------------------------------------------ data
    def prepare(self, state: Optional[Mapping[str, Any]]) -> None:
        config, data = self.config, self.config.data
        if data.train is None and data.example == "news":
            from ltrkit.embeddings.news import news_items

            self.splits = dict(news_items(**data.news.model_dump()))
        elif data.train is None:
            self.splits = dict(digits_items(seed=0))
        else:
            self.splits = {"train": self._read("train", None, None)}
            # other splits are their own retrieval problems (classes need not be the training
            # ones), except for StarSpace, which ranks the training classes' entities; their
            # labels take the training vocabulary's columns first (see load_items)
            known = self.splits["train"].class_names if config.objective == "starspace" else None
            for split in ("vali", "test"):
                self.splits[split] = None if getattr(data, split) is None else self._read(split, known, self.splits["train"].label_names)
        self.vocabulary = self._vocabulary() if data.is_text else None
        train = self.splits["train"]
        self.n_inputs = train.n_inputs if self.vocabulary is None else len(self.vocabulary)
        errors = []
        for split in SPLITS:
            items = self.splits.get(split)
            if items is not None and not items.is_text and items.n_inputs != train.n_inputs:
                errors.append(f"data.{split}: {items.source} has {items.n_inputs} features but the training items have {train.n_inputs}")
            if items is None or items.classes is not None:
                continue
            missing = f"data.{split}: {items.source} has no {data.label_column!r} column"
            if split == "train" and config.objective in ("classes", "starspace"):
                errors.append(f"{missing}; objective {config.objective!r} trains on the classes")
            elif config.objective == "starspace":
                errors.append(f"{missing}; objective 'starspace' ranks the classes' entities")
            elif items.labels is None and (split != "train" or config.early_stopping.split == "train"):
                errors.append(f"{missing} (nor data.labels_column); retrieval metrics need classes or labels")
            elif split != "train" and config.evaluation.duplicates:
                errors.append(f"{missing}; evaluation.duplicates calls items of one class duplicates")
        if config.early_stopping.split == "vali" and self.splits.get("vali") is None:
            errors.append("early_stopping.split: 'vali' needs validation items; set data.vali, or early_stopping.split=train")
        errors += [f"expected.{split}: the regression gate needs {split} items, but none are configured" for split in config.expected if self.splits.get(split) is None]
        if config.pretrain.epochs and config.objective == "starspace" and current_context().enabled:
            # the loop's DDP wrapper expects a gradient of every model parameter in every step,
            # and reconstruction leaves the entity table without one
            errors.append("pretrain.epochs: StarSpace runs with denoising pre-training train in a single process, not under torchrun")
        if config.evaluation.duplicates and (self.splits.get("vali") is None or self.splits.get("test") is None):
            errors.append("evaluation.duplicates: the threshold is chosen on data.vali and applied to data.test; set both")
        if errors:
            raise ConfigError(errors, source="data")
        try:
            if config.objective == "classes":
                check_triplet_classes(train, "data.train")
            elif config.objective == "pairs":
                self.table = load_pairs(data.pairs, train)
            elif config.objective == "triplets":
                self.table = load_triplets(data.triplets, train)
        except ValueError as error:
            raise ConfigError([str(error)], source="data") from error
        saved_vocabulary = None if state is None else state.get("vocabulary")
        if state is not None and (
            state["n_inputs"] != self.n_inputs
            or list(state["class_names"]) != train.class_names
            or saved_vocabulary != (None if self.vocabulary is None else self.vocabulary.to_dict())
        ):
            raise ConfigError([f"data: the run was trained on {state['n_inputs']} inputs and classes {list(state['class_names'])[:5]}..., the data differs"], source="run")

    def _read(self, split: str, class_names: Optional[List[str]], label_names: Optional[List[str]]) -> ItemSet:
        data = self.config.data
        try:
            return load_items(
                getattr(data, split), id_column=data.id_column, label_column=data.label_column, class_names=class_names,
                text_column=data.text_column, tokens_column=data.tokens_column,
                labels_column=data.labels_column, label_separator=data.label_separator, label_names=label_names,
            )
        except ValueError as error:
            raise ConfigError([f"data.{split}: {error}"], source="data") from error

    def _vocabulary(self) -> Vocabulary:
        """The vocabulary of the training items; every split's inputs become its token ids."""
        options = self.config.data.vocabulary
        try:
            vocabulary = Vocabulary.build(self.splits["train"], min_count=options.min_count, max_size=options.max_size, max_length=options.max_length)
        except ValueError as error:
            raise ConfigError([f"data.vocabulary: {error}"], source="data") from error
        self.splits = {split: None if items is None else vocabulary.encode(items) for split, items in self.splits.items()}
        return vocabulary

    def write_setup(self, folder: Any) -> None:
        if self.vocabulary is not None:
            from ltrkit.training import _io
            from ltrkit.training.run_folder import output_errors

            with output_errors(folder.path / VOCABULARY_FILE):
                _io.write_json(folder.path / VOCABULARY_FILE, self.vocabulary.to_dict())

    # ------------------------------------------------------------------ model
    def build(self, device: torch.device) -> None:
        import ltrkit.losses

        config, train = self.config, self.splits["train"]
        self.device = device
        self.model = _build_model(config, self.n_inputs, len(train.class_names)).to(device)
        self.loss_fn = ltrkit.losses.get(config.loss.name, **config.loss.args).to(device)
        dim = int({**encoder_hyperparameters(config.encoder.name), **config.encoder.args}["dim"])
        self.decoder = torch.nn.Linear(dim, self.n_inputs).to(device) if config.pretrain.epochs else None
        # the loop's DDP wrapper holds the model only: the decoder gets its own, so that its
        # gradients are averaged too (forwarded in pre-training steps only, it expects none after)
        self.step_decoder = None if self.decoder is None else wrap_model(current_context(), self.decoder, device)

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The model's parameters, and the pre-training decoder's (after pre-training it gets no gradient)."""
        decoder = () if self.decoder is None else self.decoder.parameters()
        return itertools.chain(self.model.parameters(), decoder)

    def _rows(self) -> int:
        objective = self.config.objective
        return len(self.splits["train"]) if objective in ("classes", "starspace") else int(next(iter(self.table.values())).shape[0])

    def _epoch_batches(self) -> int:
        """Batches of an objective's epoch, over all ranks."""
        if self.config.objective == "classes":
            return max(self._rows() // (self.config.sampler.p * self.config.sampler.k), 1)
        return math.ceil(self._rows() / self.config.training.batch_size)

    def steps_per_epoch(self) -> int:
        """One rank's steps per epoch: ``ceil(batches / W)`` (:func:`shard_batches`)."""
        return math.ceil(self._epoch_batches() / current_context().world_size)

    def train_batches(self, epoch: int) -> List[Any]:
        """This rank's share (:func:`shard_batches`) of the epoch's batches."""
        self.model.train()
        if self.decoder is not None:
            # a frozen decoder gets no gradient after pre-training, not even the zero one the loop
            # gives every parameter when a rank's loss has no graph: ranks keep the same decoder
            self.decoder.requires_grad_(epoch <= self.config.pretrain.epochs)
        context = current_context()
        return shard_batches(self._all_batches(epoch), context.rank, context.world_size)

    def _all_batches(self, epoch: int) -> List[Any]:
        """The whole epoch's batches, a function of ``(seed, epoch)``."""
        config = self.config
        if epoch <= config.pretrain.epochs:
            return self._pretrain_batches(epoch)
        if config.objective == "classes":
            return pk_batches(self.splits["train"].classes, config.sampler.p, config.sampler.k, seed=config.seed, epoch=epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = torch.from_numpy(rng.permutation(self._rows()))
        batches = list(torch.split(order, config.training.batch_size))
        if config.objective != "starspace":
            return batches
        # a negative class is uniform over the classes other than the item's own
        classes = self.splits["train"].classes
        n_classes = len(self.splits["train"].class_names)
        out = []
        for rows in batches:
            draw = torch.from_numpy(rng.integers(0, n_classes - 1, size=(rows.shape[0], config.training.starspace_negatives)))
            own = classes[rows].unsqueeze(1)
            out.append((rows, draw + (draw >= own).long()))
        return out

    def _pretrain_batches(self, epoch: int) -> List[_Corrupted]:
        """An epoch of pre-training: every training item once, in as many batches as the
        objective's epoch has (so the schedule's step count holds), bags corrupted by ``(seed, epoch)``."""
        options, train = self.config.pretrain, self.splits["train"]
        rng = np.random.default_rng([self.config.seed, epoch, 1])
        order = torch.from_numpy(rng.permutation(len(train)))
        batches = []
        for rows in torch.tensor_split(order, min(self._epoch_batches(), len(train))):
            clean = train.inputs[rows]
            draw = torch.from_numpy(rng.random((2, *clean.shape)))
            dropped = draw[0] < options.word_dropout
            replaced = (draw[1] < options.word_replace) & ~dropped & (clean > 0)
            # replacements are real words: ids 2.. (0 is padding, 1 unknown)
            words = torch.from_numpy(rng.integers(2, self.n_inputs, size=clean.shape))
            corrupted = torch.where(dropped, torch.zeros_like(clean), torch.where(replaced, words, clean))
            batches.append(_Corrupted(rows, corrupted))
        return batches

    def _reconstruction_step(self, batch: _Corrupted, device: torch.device) -> StepOutput:
        """Softmax cross-entropy of the decoded corrupted bag against the clean bag's token frequencies."""
        clean = self.splits["train"].inputs[batch.rows].to(device)
        counts = torch.zeros(clean.shape[0], self.n_inputs, device=device).scatter_add_(1, clean, torch.ones_like(clean, dtype=torch.float32))
        counts[:, 0] = 0.0  # padding is no token
        lengths = counts.sum(1)
        kept = lengths > 0
        logits = self.step_decoder(self.model(batch.corrupted.to(device)).float())
        losses = torch.nn.functional.cross_entropy(logits[kept], counts[kept] / lengths[kept, None], reduction="none")
        weight = int(kept.sum())
        return StepOutput(loss=losses.sum() / max(weight, 1), weight=weight, items=int(clean.shape[0]))

    def training_step(self, batch: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> StepOutput:
        config, train = self.config, self.splits["train"]
        x = train.inputs
        objective, loss_fn = config.objective, self.loss_fn
        if isinstance(batch, _Filler):
            step = self.training_step(batch.batch, device, amp_dtype)
            return StepOutput(loss=step.loss * 0.0, weight=0.0, items=0)
        if isinstance(batch, _Corrupted):
            return self._reconstruction_step(batch, device)
        if objective == "classes":
            embeddings = self.model(x[batch].to(device))
            loss = loss_fn(embeddings.float(), train.classes[batch].to(device))
            return StepOutput(loss=loss, weight=len(batch), items=len(batch))
        if objective == "starspace":
            rows, negatives = batch
            items = self.model(x[rows].to(device)).float()
            # in a step the model is the loop's DDP wrapper: the table is the wrapped model's
            entities = getattr(self.model, "module", self.model).entity_vectors().float()
            positive = (items * entities[train.classes[rows].to(device)]).sum(-1, keepdim=True)
            negative = (items.unsqueeze(1) * entities[negatives.to(device)]).sum(-1)
            loss = loss_fn(positive.expand_as(negative), negative, torch.ones_like(negative))
            return StepOutput(loss=loss, weight=len(rows), items=len(rows))
        if objective == "pairs":
            first = self.model(x[self.table["a"][batch]].to(device)).float()
            second = self.model(x[self.table["b"][batch]].to(device)).float()
            target = self.table["target"][batch].to(device)
            # cosine_embedding takes torch's +1/-1 targets, contrastive 1/0
            loss = loss_fn(first, second, 2.0 * target - 1.0 if config.loss.name == "cosine_embedding" else target)
            return StepOutput(loss=loss, weight=len(batch), items=2 * len(batch))
        anchor, positive, negative = (self.model(x[self.table[name][batch]].to(device)).float() for name in ("anchor", "positive", "negative"))
        if config.loss.name == "margin_ranking":
            closer, farther = _paired_similarity(anchor, positive, config.evaluation.similarity), _paired_similarity(anchor, negative, config.evaluation.similarity)
            loss = loss_fn(closer, farther, torch.ones_like(closer))
        else:
            loss = loss_fn(anchor, positive, negative)
        return StepOutput(loss=loss, weight=len(batch), items=3 * len(batch))

    # ------------------------------------------------------------------ evaluation
    def _retrieval(self, vectors: torch.Tensor, items: ItemSet, entities: Optional[torch.nn.Module], query_rows: Optional[torch.Tensor] = None) -> Evaluation:
        """Retrieval metrics of ``items`` as ``vectors`` among themselves (relevant: a shared label
        when the items have labels, else the same class) or, given an entity model (StarSpace),
        each item ranking every class's entity vector; the sums and counts of the queries
        ``query_rows`` only, when given (the index stays every item)."""
        options = {"similarity_kind": self.config.evaluation.similarity, "empty": self.config.evaluation.empty, "query_rows": query_rows}
        if entities is not None:
            index = entities.entity_vectors().detach().float().cpu()
            return retrieval_metrics(vectors, items.classes, self.metric_names, index=index, index_classes=torch.arange(index.shape[0]), **options)
        relevance = items.labels if items.labels is not None else items.classes
        return retrieval_metrics(vectors, relevance, self.metric_names, **options)

    def _entities(self, model: torch.nn.Module) -> Optional[torch.nn.Module]:
        return model if self.config.objective == "starspace" else None

    def evaluate(self, split: str, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Optional[Evaluation]:
        """The retrieval metrics of ``split``; under torchrun the sums and counts of this rank's
        queries, items ``rank, rank + W, ...`` (every item embedded: the index is the whole split)."""
        items = self.splits.get(split)
        if items is None:
            return None
        context = current_context()
        queries = torch.arange(context.rank, len(items), context.world_size) if context.enabled else None
        return self._retrieval(self._encoder_of(self.model)(items), items, self._entities(self.model), queries)

    def final_metrics(self, folder: Any, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Dict[str, Dict[str, float]]:
        test = self.splits.get("test")
        if test is None:
            return {}
        embed = self._encoder_of(self.model)
        if self.config.output.plots:
            _write_projection(folder, embed(test), test)
        return {"test": self._test_metrics(embed, self._entities(self.model))}

    def _encoder_of(self, model: torch.nn.Module) -> Callable[[ItemSet], torch.Tensor]:
        return lambda items: encode(model, items.inputs, batch_size=self.config.training.eval_batch_size, device=self.device)

    def _test_metrics(self, embed: Callable[[ItemSet], torch.Tensor], entities: Optional[torch.nn.Module] = None) -> Dict[str, float]:
        """Retrieval metrics of the test items embedded by ``embed`` and, with ``evaluation.duplicates``,
        duplicate detection at the threshold of the best validation F1."""
        test, options = self.splits["test"], self.config.evaluation
        vectors = embed(test)
        metrics = self._retrieval(vectors, test, entities).means
        if options.duplicates:
            from ltrkit.embeddings.news import best_threshold, duplicate_scores

            threshold = best_threshold(embed(self.splits["vali"]), self.splits["vali"].classes, similarity_kind=options.similarity)
            metrics.update(duplicate_scores(vectors, test.classes, threshold, similarity_kind=options.similarity), dup_threshold=threshold)
        return metrics

    def baselines(self) -> Dict[str, Any]:
        """Raw inputs (text: TF-IDF cosine; ``starspace`` and token-id items: none) and the untrained
        encoder, on the test items."""
        test = self.splits.get("test")
        if not self.config.evaluation.baselines or test is None:
            return {}
        baselines: Dict[str, Any] = {}
        if self.config.objective != "starspace" and not test.is_text:
            baselines["raw_inputs"] = {"label": "raw inputs", "metrics": {"test": self._test_metrics(_raw_inputs)}}
        elif self.config.objective != "starspace" and test.texts is not None:
            from ltrkit.embeddings.news import tfidf_vectors

            train_texts = self.splits["train"].texts
            baselines["tfidf"] = {"label": "TF-IDF cosine", "metrics": {"test": self._test_metrics(lambda items: tfidf_vectors(train_texts, items.texts))}}
        # the loop seeds then builds: the same seed gives the initial weights again
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            untrained = _build_model(self.config, self.n_inputs, len(self.splits["train"].class_names)).to(self.device)
        baselines["untrained"] = {"label": "untrained", "metrics": {"test": self._test_metrics(self._encoder_of(untrained), self._entities(untrained))}}
        return baselines

    # ------------------------------------------------------------------ checkpoint and report
    def state_dict(self) -> Dict[str, Any]:
        return {
            "loss": self.loss_fn.state_dict(),
            "n_inputs": self.n_inputs,
            "class_names": list(self.splits["train"].class_names),
            "vocabulary": None if self.vocabulary is None else self.vocabulary.to_dict(),
            "decoder": None if self.decoder is None else self.decoder.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss_fn.load_state_dict(state["loss"])
        if self.decoder is not None:
            self.decoder.load_state_dict(state["decoder"])

    def start_message(self, device: torch.device, folder: Any) -> str:
        train = self.splits["train"]
        inputs = f"{train.n_inputs} features" if self.vocabulary is None else f"a vocabulary of {len(self.vocabulary)}"
        pretrain = f", {self.config.pretrain.epochs} epoch(s) of denoising pre-training first" if self.config.pretrain.epochs else ""
        return (
            f"training a {self.config.encoder.name} encoder with {self.config.loss.name} ({self.config.objective}{pretrain}) on {len(train)} items "
            f"({inputs}, {len(train.class_names)} classes) on {device}; run folder {folder.path}"
        )

    def report_identity(self) -> Dict[str, Any]:
        return {"model": self.config.encoder.name, "loss": self.config.loss.name, "objective": self.config.objective}

    def report_context(self) -> Dict[str, Any]:
        inputs = {"features": self.n_inputs} if self.vocabulary is None else {}
        data = {
            split: {"source": items.source, "items": len(items), **inputs, "classes": len(items.class_names), **_label_count(items)}
            for split, items in self.splits.items()
            if items is not None
        }
        if self.vocabulary is not None:
            data["vocabulary"] = {"size": len(self.vocabulary), "file": VOCABULARY_FILE}
        return {"data": data, "conventions": {"similarity": self.config.evaluation.similarity, "empty": self.config.evaluation.empty, "ties": "input_order"}}


def _label_count(items: ItemSet) -> Dict[str, int]:
    """``{"labels": L}`` of multi-label items (their vocabulary's size), else ``{}``."""
    return {} if items.labels is None else {"labels": len(items.label_names)}


def _raw_inputs(items: ItemSet) -> torch.Tensor:
    """The baseline "embedding" of feature items: the features themselves."""
    return items.inputs


def _build_model(config: EmbedConfig, n_inputs: int, n_classes: int) -> EmbeddingModel:
    args = {**encoder_hyperparameters(config.encoder.name), **config.encoder.args}
    encoder = build_encoder(config.encoder.name, n_inputs, **config.encoder.args)
    entities = n_classes if config.objective == "starspace" else None
    return EmbeddingModel(encoder, normalize=config.normalize, n_entities=entities, dim=int(args["dim"]))


def _paired_similarity(first: torch.Tensor, second: torch.Tensor, kind: str) -> torch.Tensor:
    """Row-wise similarity ``[B]`` of the same kind :func:`ltrkit.embeddings.retrieval.similarity` ranks by."""
    if kind == "cosine":
        return torch.nn.functional.cosine_similarity(first, second, dim=-1)
    if kind == "dot":
        return (first * second).sum(-1)
    return -torch.linalg.vector_norm(first - second, dim=-1)


def _write_projection(folder: Any, embeddings: torch.Tensor, items: ItemSet) -> None:
    """``projection.png``: the first two principal components (scikit-learn's PCA), one colour per class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    from ltrkit.training import _io
    from ltrkit.training.run_folder import output_errors

    points = PCA(n_components=2, random_state=0).fit_transform(embeddings.numpy())
    figure = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    classes = items.classes.numpy() if items.classes is not None else np.zeros(len(items), dtype=np.int64)
    scatter = axes.scatter(points[:, 0], points[:, 1], c=classes, cmap="tab10", s=8)
    if items.classes is not None and len(items.class_names) <= 20:
        handles, _ = scatter.legend_elements()
        axes.legend(handles, items.class_names[: len(handles)], fontsize="small", title="class")
    axes.set(title="test embeddings, PCA", xlabel="PC 1", ylabel="PC 2")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with output_errors(folder.path / "projection.png"):
        _io.write_bytes(folder.path / "projection.png", buffer.getvalue())


class Embedder:
    """A trained embedding run, loaded to encode items (see :meth:`load`).

    Attributes:
        model: the :class:`EmbeddingModel` in eval mode.
        config: the run's :class:`EmbedConfig`.
        n_inputs: the feature count it was trained on (text items: the vocabulary size).
        vocabulary: the run's :class:`~ltrkit.embeddings.data.Vocabulary` (text items), else ``None``.
    """

    def __init__(self, model: EmbeddingModel, config: EmbedConfig, device: torch.device, n_inputs: int, vocabulary: Optional[Vocabulary] = None) -> None:
        self.model, self.config, self.device, self.n_inputs, self.vocabulary = model, config, device, n_inputs, vocabulary

    @classmethod
    def load(cls, run_dir: Union[str, Path], checkpoint: str = "best", *, device: Union[str, torch.device] = "cpu") -> "Embedder":
        """The encoder of ``run_dir/checkpoints/<checkpoint>.pt``.

        Raises:
            ConfigError: not a run folder of the embedding job, or a missing/unreadable checkpoint.
        """
        from ltrkit.training.checkpoint import load_checkpoint, state_error_summary
        from ltrkit.training.run_folder import check_run_folder

        folder = check_run_folder(run_dir)
        path = folder.checkpoint_path(checkpoint)
        try:
            state = load_checkpoint(path, required=("config", "model", "n_inputs", "class_names"))
            config = EmbedConfig.model_validate(state["config"])
            model = _build_model(config, int(state["n_inputs"]), len(state["class_names"]))
            model.load_state_dict(state["model"])
            vocabulary = None if state.get("vocabulary") is None else Vocabulary.from_dict(state["vocabulary"])
        except FileNotFoundError as error:
            raise ConfigError([f"{error} (did any epoch finish?)"], source="--run") from error
        except ValueError as error:
            raise ConfigError([f"{' '.join(str(error).split())}; is it a run of ltrkit embed?"], source="--run") from error
        except (RuntimeError, KeyError, TypeError) as error:
            raise ConfigError([f"{str(path)!r} does not match its config: {state_error_summary(error)}"], source="--run") from error
        device = torch.device(device)
        return cls(model.to(device).eval(), config, device, int(state["n_inputs"]), vocabulary)

    def read_items(self, path: Union[str, Path]) -> ItemSet:
        """Items of ``path`` read as the run's training items were (columns, the run's vocabulary);
        the label and labels columns are optional. A run of the built-in news example reads a ``text`` column.

        Raises:
            ValueError: a bad items file (see :func:`~ltrkit.embeddings.data.load_items`).
        """
        data = self.config.data
        text_column = data.text_column
        if self.vocabulary is not None and text_column is None and data.tokens_column is None:
            text_column = "text"
        return load_items(
            path, id_column=data.id_column, label_column=data.label_column,
            text_column=text_column, tokens_column=data.tokens_column, vocabulary=self.vocabulary,
            labels_column=data.labels_column, label_separator=data.label_separator, labels_required=False,
        )

    def encode(self, items: ItemSet) -> torch.Tensor:
        """``[N, dim]`` embeddings of ``items`` (feature items: the run's feature count is checked;
        text items are encoded with the run's vocabulary).

        Raises:
            ValueError: a feature count other than the run's, or feature items for a text run.
        """
        if self.vocabulary is not None:
            if not items.is_text:
                raise ValueError(f"{items.source} holds feature rows but the run was trained on text items")
            items = self.vocabulary.encode(items)
        elif items.n_inputs != self.n_inputs:
            raise ValueError(f"{items.source} has {items.n_inputs} features but the run was trained on {self.n_inputs}")
        return encode(self.model, items.inputs, batch_size=self.config.training.eval_batch_size, device=self.device)
