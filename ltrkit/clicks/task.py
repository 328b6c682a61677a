r"""Training on clicks: the list-ranking task of the shared loop fed a click log instead of labels.

A config with ``data.train_clicks`` (:class:`~ltrkit.training.config.ClickTrainingConfig`)
trains on the click log ``data.train_clicks.log`` whose ``doc`` column indexes the rows of
``data.train`` (the documents and their features, read with the options the log was simulated
with). :class:`ClickTask` is a :class:`~ltrkit.training.trainer.RankingTask` with other batches
and another loss; everything else is the ranking run's: the loop, the run folder, checkpoints
and exact resume, validation and test on their true labels, the report, and a checkpoint that
``ltrkit predict``, :class:`~ltrkit.training.predict.Ranker` and ``ltrkit export`` load like any
ranking run's.

Batches: the log's sessions, aggregated. Sessions that showed the same documents at the same
positions (with the same propensities) form one list whose clicks are the sessions' mean clicks
and whose weight is their count; lists without a click are left out (their loss and gradient are
0). Every loss here is linear in the clicks, so the loss of a batch,

.. math::
    \ell = \frac{\sum_g n_g\, \ell_{\mathrm{IPS}}(s_g, \bar c_g, p_g)}{\sum_g n_g}

over its lists ``g`` of ``n_g`` sessions, is exactly the mean per-session loss of the sessions
they stand for. ``training.batch_size`` counts lists.

The loss is the inverse-propensity-scored form of ``loss`` (:data:`IPS_FORMS`: softmax and
listnet -> :func:`~ltrkit.clicks.unbiased.ips_softmax_loss`, ranknet -> ``ips_ranknet_loss``,
lambdarank -> ``ips_lambda_loss``); a loss without one is a config error. The propensities
(``data.train_clicks.propensities``):

* ``none``: 1 everywhere (the naive ranker: clicks as labels);
* ``logged``: the log's ``propensity`` column (the simulator's true examination probability);
* ``randomization``: :func:`~ltrkit.clicks.propensity.estimate_by_randomization` on the log or on
  ``propensity_log`` (a log with interventions), one per rank;
* ``regression_em``: :func:`~ltrkit.clicks.propensity.estimate_by_regression_em` on the log and
  ``data.train``'s features (normalised), one per rank;
* ``dla``: learned with the ranker by the dual learning algorithm
  (:func:`~ltrkit.clicks.unbiased.dla_loss`, loss softmax or listnet): one logit per rank in the
  loss module, trained by the run's optimiser and kept in the checkpoint's ``loss`` entry.

With ``data.train_clicks.pairs`` (``skip_above`` or ``skip_next``) the run learns from Joachims'
(2002) click preferences instead (:func:`~ltrkit.clicks.unbiased.click_preference_pairs`, no
propensities): a list's targets are ``W_ij``, the mean number of times per session that its
document ``i`` was preferred to ``j``, and the loss (:data:`PAIR_FORMS`: ranknet -> the logistic
cost, pairwise_hinge -> RankSVM's hinge) is
:func:`~ltrkit.clicks.unbiased.preference_pair_loss`; lists without a pair are left out. The
batch loss is again the mean per-session pair loss of the sessions the lists stand for.

Estimated propensities are relative (``p_k / p_1``) and divided by their largest value, so they
lie in ``(0, 1]`` (IPS is unchanged by a common factor). ``clip`` floors every propensity; how
many impressions it raised is logged when the run starts and written to the report's warnings.
The report's ``clicks`` entry gives the log's size, the lists, the method, the propensities per
rank (estimated, or DLA's of the best epoch) and the clipping.

Under ``torchrun`` (:mod:`ltrkit.training.distributed`) every rank reads the log and aggregates
it into the same lists; rank 0 alone estimates the ``randomization`` / ``regression_em``
propensities and broadcasts them (or its error), so every rank weighs its lists by the very same
floats whatever its BLAS, thread count or CPU (a float-identical estimate on every machine of a
multi-node job is not something numpy promises). Each epoch's batches of ``training.batch_size``
lists, drawn from ``(seed, epoch)`` as in one process, are dealt to the ranks by document count
(:func:`click_batches`, :func:`~ltrkit.data.batching.shard_batches`): the same number of batches
on every rank, every list once per epoch. The ranker is wrapped in ``DistributedDataParallel``;
DLA's logits, which live in the loss, get the mean of the ranks' gradients in backward (on a
process group of their own), so they stay identical on every rank and rank 0's checkpoint holds
every rank's. Validation is the ranking run's sharded, exactly reduced evaluation; rank 0 writes
the run folder, and ``--resume`` under torchrun is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ltrkit.clicks.sessions import ClickSessions
from ltrkit.clicks.unbiased import (
    click_preference_pairs,
    dla_loss,
    dla_propensities,
    ips_lambda_loss,
    ips_ranknet_loss,
    ips_softmax_loss,
    preference_pair_loss,
)
from ltrkit.data.batching import shard_batches
from ltrkit.data.dataset import RankingDataset
from ltrkit.training.config import ConfigError, TrainConfig, apply_overrides, load_config, raw_config
from ltrkit.training.distributed import (
    DistributedContext,
    EnsembleMembers,
    broadcast_object,
    collective_errors,
    current_context,
)
from ltrkit.training.run_folder import RunFolder
from ltrkit.training.scoring import autocast_context
from ltrkit.training.task import StepOutput
from ltrkit.training.trainer import (
    EpochCallback,
    RankingTask,
    TrainResult,
    build_ranking_model,
    merge_overrides,
    resume_task,
    resumed_config,
    run_task,
)

__all__ = [
    "IPS_FORMS",
    "PAIR_FORMS",
    "ClickLists",
    "ClickLoss",
    "ClickTask",
    "aggregate_sessions",
    "click_batches",
    "click_config_problems",
    "load_click_config",
    "resume_on_clicks",
    "train_on_clicks",
]

ConfigSource = Union[None, str, Path, Mapping[str, Any], TrainConfig]

#: list loss -> (its IPS form, the hyperparameters that carry over to it)
IPS_FORMS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "softmax": ("ips_softmax", ("temperature",)),
    "listnet": ("ips_softmax", ("temperature",)),
    "ranknet": ("ips_ranknet", ("sigma",)),
    "lambdarank": ("ips_lambda", ("sigma", "k")),
}

#: pairwise loss -> (its cost in preference_pair_loss, the hyperparameters that carry over to it)
PAIR_FORMS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "ranknet": ("ranknet", ("sigma",)),
    "pairwise_hinge": ("hinge", ("margin",)),
}

_IPS_FUNCTIONS: Dict[str, Callable[..., torch.Tensor]] = {
    "ips_softmax": ips_softmax_loss,
    "ips_ranknet": ips_ranknet_loss,
    "ips_lambda": ips_lambda_loss,
}


# options of the label-trained lists that click lists (the shown top K) do not have
_LIST_OPTIONS = ("max_slate_length", "max_docs_per_batch", "sublist_fraction")


def click_config_problems(raw: Mapping[str, Any]) -> List[str]:
    """What keeps a (raw, possibly invalid) config with ``data.train_clicks`` from training on
    clicks: a loss without an IPS form, hyperparameters the IPS form lacks, DLA with a loss other
    than softmax/listnet, model selection on the training split, options of label-trained lists
    (``training.max_slate_length``, ``max_docs_per_batch``, ``sublist_fraction``). One
    ``"dotted.path: problem"`` per issue; best effort on bad input."""
    data = raw.get("data")
    clicks = data.get("train_clicks") if isinstance(data, Mapping) else None
    if not isinstance(clicks, Mapping):
        return []
    loss = raw.get("loss") if isinstance(raw.get("loss"), Mapping) else {}
    name = loss.get("name", TrainConfig().loss.name)
    args = loss.get("args", {}) if "name" in loss else {}
    problems = []
    if clicks.get("pairs") is not None:
        if isinstance(name, str) and name not in PAIR_FORMS:
            problems.append(
                f"loss.name: data.train_clicks.pairs trains a pairwise loss on click preferences; choose from {sorted(PAIR_FORMS)}, not {name!r}"
            )
        elif isinstance(name, str):
            allowed = PAIR_FORMS[name][1]
            extra = sorted(set(args) - set(allowed)) if isinstance(args, Mapping) else []
            if extra:
                problems.append(f"loss.args: {extra} of {name!r} do not apply to click preference pairs, which take {list(allowed)}")
    elif isinstance(name, str) and name not in IPS_FORMS:
        problems.append(f"loss.name: {name!r} has no inverse-propensity-scored form to train on clicks; choose from {sorted(IPS_FORMS)}")
    elif isinstance(name, str):
        form, allowed = IPS_FORMS[name]
        extra = sorted(set(args) - set(allowed)) if isinstance(args, Mapping) else []
        if extra:
            problems.append(f"loss.args: {extra} of {name!r} have no counterpart in its IPS form {form}, which takes {list(allowed)}")
        if clicks.get("propensities") == "dla" and form != "ips_softmax":
            problems.append(f"data.train_clicks.propensities: dla trains the ranker with the IPS softmax loss; set loss.name to softmax or listnet, not {name!r}")
    stopping = raw.get("early_stopping") if isinstance(raw.get("early_stopping"), Mapping) else {}
    if stopping.get("split") == "train":
        problems.append("early_stopping.split: 'train' would select epochs by the labels of data.train, which a click run does not learn from; use vali")
    training = raw.get("training") if isinstance(raw.get("training"), Mapping) else {}
    for key in _LIST_OPTIONS:
        if training.get(key) is not None:
            problems.append(f"training.{key}: does not apply to training on clicks (a list is what a session showed)")
    return problems


def load_click_config(source: ConfigSource = None, overrides: Union[Sequence[str], Mapping[str, Any]] = ()) -> TrainConfig:
    """:func:`~ltrkit.training.config.load_config` plus :func:`click_config_problems`, every
    problem reported at once under the source's name.

    Raises:
        ConfigError: a bad config, or one that cannot train on clicks.
    """
    raw, label = raw_config(source, TrainConfig)
    raw = apply_overrides(raw, overrides)
    errors: List[str] = []
    config: Optional[TrainConfig] = None
    try:
        config = load_config(raw)
    except ConfigError as error:
        errors.extend(error.errors)
    errors.extend(click_config_problems(raw))
    if config is not None and config.data.train_clicks is None:
        errors.append("data.train_clicks: not set; a click run needs the click log to train on (ltrkit.train trains on labels)")
    if errors:
        raise ConfigError(errors, source=label)
    assert config is not None  # no errors means validation succeeded
    return config


@dataclass
class ClickLists:
    """A click log aggregated into weighted lists (see the module docstring), all ``[G, K]`` / ``[G]``.

    Attributes:
        docs: data rows in shown order, ``-1`` at padding.
        clicks: mean clicks of the list's sessions (float64), 0 at padding.
        propensities: the propensity of each shown position (float64), 1 at padding.
        counts: sessions per list (float64).
        pairs: ``[G, K, K]`` mean preference pairs per session, ``[g, i, j]`` for position ``i``
            over ``j`` (float64), when aggregated with a pair rule; else None.
    """

    docs: np.ndarray
    clicks: np.ndarray
    propensities: np.ndarray
    counts: np.ndarray
    pairs: Optional[np.ndarray] = None

    @property
    def n_lists(self) -> int:
        return int(self.docs.shape[0])


def aggregate_sessions(sessions: ClickSessions, propensities: np.ndarray, *, pair_rule: Optional[str] = None) -> ClickLists:
    """Sessions with the same shown documents and propensities as one list of mean clicks, weighted
    by their count; lists without a click (with ``pair_rule``: without a preference pair) are dropped.

    Args:
        sessions: the log.
        propensities: ``[S, K]`` propensities of the shown positions (any value at padding).
        pair_rule: also count the lists' :func:`~ltrkit.clicks.unbiased.click_preference_pairs`
            of this rule (``skip_above``, ``skip_next``) into ``pairs``.
    """
    mask = sessions.mask
    n, k = mask.shape
    p = np.where(mask, np.asarray(propensities, dtype=np.float64), 1.0)
    keys = np.concatenate([np.where(mask, sessions.docs, -1), p.view(np.int64)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = unique.shape[0]
    counts = np.bincount(inverse, minlength=groups).astype(np.float64)
    cells = (inverse[:, None] * k + np.arange(k)[None, :]).reshape(-1)
    click_sums = np.bincount(cells, sessions.clicks.reshape(-1).astype(np.float64), minlength=groups * k).reshape(groups, k)
    pairs = None
    if pair_rule is None:
        keep = click_sums.sum(axis=1) > 0
    else:
        session, preferred, other = click_preference_pairs(sessions.clicks, mask, rule=pair_rule)
        pair_cells = (inverse[session] * k + preferred) * k + other
        pairs = np.bincount(pair_cells, minlength=groups * k * k).astype(np.float64).reshape(groups, k, k)
        keep = pairs.sum(axis=(1, 2)) > 0
        pairs = pairs[keep] / counts[keep, None, None]
    return ClickLists(
        docs=unique[keep, :k],
        clicks=click_sums[keep] / counts[keep, None],
        propensities=unique[keep, k:].copy().view(np.float64),
        counts=counts[keep],
        pairs=pairs,
    )


def click_batches(
    docs_per_list: np.ndarray, batch_size: int, *, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0
) -> List[np.ndarray]:
    """The click lists (positions in :class:`ClickLists`) of each batch of ``epoch`` that process
    ``rank`` of ``num_replicas`` trains on.

    The epoch's plan is one permutation of all lists drawn from ``default_rng([seed mod 2^32,
    epoch])``, cut into batches of ``batch_size`` lists; with ``num_replicas > 1`` the batches
    are dealt by :func:`~ltrkit.data.batching.shard_batches` (the list-ranking job's sharding):
    the batch count is evened out to a multiple of ``num_replicas`` (the largest batch split in
    two), every rank gets as many batches, and the batches go to the ranks by document count, so
    the ranks' documents differ by at most the largest batch's. Every list is in exactly one
    batch of one rank per epoch; one process gets the plan's batches in plan order.

    Args:
        docs_per_list: ``[G]`` shown documents of each list.
        batch_size: lists per batch of the plan.
        seed, epoch: what the plan is drawn from.
        num_replicas, rank: the processes of the job and this one.

    Raises:
        ValueError: fewer lists than ``num_replicas``, a bad ``num_replicas``/``rank``.

    Example:
        >>> shards = [click_batches(np.full(10, 3), 4, seed=0, epoch=1, num_replicas=2, rank=r) for r in (0, 1)]
        >>> [len(batches) for batches in shards], sorted(np.concatenate(shards[0] + shards[1]).tolist()) == list(range(10))
        ([2, 2], True)
    """
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
    docs_per_list = np.asarray(docs_per_list, dtype=np.int64)
    order = np.random.default_rng([seed % 2**32, epoch]).permutation(docs_per_list.shape[0])
    bounds = np.append(np.arange(0, order.shape[0], batch_size), order.shape[0]).astype(np.int64)
    bounds, shard = shard_batches(bounds, docs_per_list[order], num_replicas)
    return [order[bounds[number]:bounds[number + 1]] for number in np.flatnonzero(shard == rank).tolist()]


def _from_rank_zero(context: DistributedContext, compute: Callable[[], Any], what: str) -> Any:
    """``compute()`` run on rank 0 only, its value (or its :class:`ConfigError`, raised) on every rank."""
    if not context.enabled:
        return compute()
    outcome: Any = None
    if context.is_main:
        try:
            outcome = ("value", compute())
        except ConfigError as error:
            outcome = ("error", (error.errors, error.source))
    kind, payload = broadcast_object(context, outcome, what=f"broadcast of {what}")
    if kind == "error":
        raise ConfigError(payload[0], source=payload[1])
    return payload


def _mean_gradient_over_ranks(context: DistributedContext, parameter: torch.nn.Parameter) -> None:
    """Under torchrun, make backward give ``parameter`` the mean of the ranks' gradients (what DDP
    gives the model's), so an optimiser that starts from the same value and state keeps it equal
    on every rank. The all-reduce runs on a process group of its own: issued from backward
    beside DDP's bucket all-reduces, it never has to match their order on the default group."""
    if not context.enabled:
        return
    from datetime import timedelta

    import torch.distributed as dist

    with collective_errors(context, "setting up the process group of DLA's propensity logits"):
        group = dist.new_group(backend=context.backend, timeout=timedelta(seconds=context.timeout_s))

    def averaged(gradient: torch.Tensor) -> torch.Tensor:
        total = gradient.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total / context.world_size

    parameter.register_hook(averaged)


class ClickLoss(torch.nn.Module):
    """The loss of a click batch: the session-weighted mean of an IPS loss (or of DLA's, or of a
    preference pair loss) per list.

    ``forward(scores, targets, mask, propensities, counts)`` with ``[B, K]`` scores in shown
    order, targets (mean clicks; for the pair forms ``[B, K, K]`` mean preference pairs), mask
    and propensities, and ``[B]`` session counts, returns
    ``sum_g counts_g * loss_g / sum_g counts_g`` (float32 scalar), ``loss_g`` the per-list value of
    the IPS function (``reduction="none"``; the pair forms
    :func:`~ltrkit.clicks.unbiased.preference_pair_loss` ignore the propensities). For DLA the propensities are ignored: the module learns
    one logit per rank, ``logits = lr_multiplier * raw_logits`` with the parameter
    ``raw_logits [K]`` (zeros at the start: equal propensities), so that under Adam/AdamW, whose
    steps are about ``lr`` per parameter whatever the gradient's scale, the logits move
    ``lr_multiplier`` times faster than the ranker's weights (K logits need larger steps than a
    network's many weights); :meth:`propensities` reads the relative propensities out.

    Args:
        form: ``"ips_softmax"``, ``"ips_ranknet"``, ``"ips_lambda"``, ``"dla"``, ``"pairs_ranknet"``
            or ``"pairs_hinge"``.
        args: hyperparameters of the IPS or pair function (``temperature``, ``sigma``, ``k``, ``margin``).
        top_k: positions of a list (DLA's number of logits).
        max_weight: DLA's cap on its inverse weights.
        lr_multiplier: DLA's logit scale (see above).
    """

    def __init__(
        self, form: str, args: Mapping[str, Any], *, top_k: int, max_weight: Optional[float] = None, lr_multiplier: float = 1.0
    ) -> None:
        super().__init__()
        forms = sorted(_IPS_FUNCTIONS) + ["dla"] + [f"pairs_{cost}" for cost, _ in PAIR_FORMS.values()]
        if form not in forms:
            raise ValueError(f"form must be one of {forms}, got {form!r}")
        self.form = form
        self.args = dict(args)
        self.max_weight = max_weight
        self.lr_multiplier = lr_multiplier
        if form == "dla":
            self.raw_logits = torch.nn.Parameter(torch.zeros(top_k))

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, propensities: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        if self.form == "dla":
            logits = self.lr_multiplier * self.raw_logits
            per_list = dla_loss(scores, targets, mask, propensity_logits=logits, max_weight=self.max_weight, reduction="none")
        elif self.form.startswith("pairs_"):
            per_list = preference_pair_loss(scores, targets, mask, cost=self.form[len("pairs_"):], reduction="none", **self.args)
        else:
            per_list = _IPS_FUNCTIONS[self.form](scores, targets, mask, propensities=propensities, reduction="none", **self.args)
        return (per_list * counts).sum() / counts.sum()

    def propensities(self) -> np.ndarray:
        """DLA's relative propensities ``[K]`` (rank 1 = 1)."""
        return dla_propensities(self.lr_multiplier * self.raw_logits.detach().cpu()).numpy().astype(np.float64)


class ClickTask(RankingTask):
    """List ranking trained on a click log (``data.train_clicks``); see the module docstring.

    Besides a ranking run's entries a checkpoint holds ``clicks``: the size of the aggregated log
    (sessions, impressions, clicks, lists), checked on resume so that a log changed since the run
    started is refused.

    Args:
        config: a validated config with ``data.train_clicks`` (:func:`load_click_config`).
        datasets: in-memory ``{"train", "vali"?, "test"?}`` splits used instead of the config's
            files; the log's rows index ``datasets["train"]``.

    Raises:
        ConfigError: the config cannot train on clicks (:func:`click_config_problems`).
    """

    checkpoint_keys = RankingTask.checkpoint_keys + ("clicks",)

    def __init__(self, config: TrainConfig, *, datasets: Optional[Mapping[str, RankingDataset]] = None) -> None:
        problems = click_config_problems(config.to_dict())
        if config.data.train_clicks is None:
            problems.append("data.train_clicks: not set; a click run needs the click log to train on")
        if problems:
            raise ConfigError(problems)
        super().__init__(config, datasets=datasets)
        self.clicks = config.data.train_clicks
        if self.clicks.pairs is not None:
            self.form = "pairs_" + PAIR_FORMS[config.loss.name][0]
        else:
            self.form = "dla" if self.clicks.propensities == "dla" else IPS_FORMS[config.loss.name][0]
        self.lists: Optional[ClickLists] = None
        self._docs_per_list: Optional[np.ndarray] = None
        self.top_k = 0
        self._summary: Dict[str, Any] = {}
        self._click_warnings: List[str] = []

    # ------------------------------------------------------------------ data
    def prepare(self, state: Optional[Mapping[str, Any]]) -> None:
        from ltrkit.training.data_setup import prepare_data

        # the log indexes data.train's rows as read: no query may be filtered out (its labels are not used)
        data_section = self.config.data.model_copy(update={"drop_train_queries_without_relevant": False, "min_docs_per_query": 1})
        unfiltered = self.config.model_copy(update={"data": data_section})
        self.data = prepare_data(unfiltered, datasets=self.datasets, normalizer_state=None if state is None else state["normalizer"])
        if state is not None and self.data.train.n_features != state["n_features"]:
            raise ConfigError(
                [f"data: the run was trained on {state['n_features']} features, the data now has {self.data.train.n_features}"], source="run"
            )
        sessions = self._read_log(self.clicks.log, "log")
        propensities = self._propensities(sessions)
        self.lists = aggregate_sessions(sessions, propensities, pair_rule=self.clicks.pairs)
        self.top_k = sessions.top_k
        if self.lists.n_lists == 0:
            nothing = "no click" if self.clicks.pairs is None else f"no {self.clicks.pairs} preference pair"
            raise ConfigError([f"data.train_clicks.log: {self.clicks.log} has {nothing}; there is nothing to learn from"], source="data")
        processes = current_context().world_size
        if self.lists.n_lists < processes:
            raise ConfigError(
                [f"data.train_clicks.log: {self.clicks.log} gives {self.lists.n_lists} click lists, fewer than the {processes} "
                 f"processes of the job; start at most {self.lists.n_lists}"],
                source="data",
            )
        self._docs_per_list = (self.lists.docs >= 0).sum(axis=1)
        self._summary.update(
            log=str(self.clicks.log),
            sessions=sessions.n_sessions,
            impressions=int(sessions.mask.sum()),
            clicks=int(sessions.clicks.sum()),
            lists=self.lists.n_lists,
            top_k=self.top_k,
        )
        if self.lists.pairs is not None:
            self._summary["pairs"] = self.clicks.pairs
            self._summary["preference_pairs"] = int(round(float((self.lists.pairs.sum(axis=(1, 2)) * self.lists.counts).sum())))
        if state is not None:
            saved = dict(state["clicks"])
            now = {key: self._summary[key] for key in saved}
            if saved != now:
                raise ConfigError([f"data.train_clicks.log: the log changed since the run started (then {saved}, now {now})"], source="--resume")
        self._resolve_click_sizes()

    def _read_log(self, path: str, field: str) -> ClickSessions:
        from ltrkit._optional import MissingExtraError, require
        from ltrkit.clicks.log import read_click_log

        try:
            require("training on clicks", "clicks", "pyarrow")
            sessions, _ = read_click_log(path, self.data.train)
        except FileNotFoundError:
            raise ConfigError([f"data.train_clicks.{field}: file not found: {path!r} (relative paths are read from {str(Path.cwd())!r})"], source="data") from None
        except (MissingExtraError, ValueError, OSError) as error:
            raise ConfigError([f"data.train_clicks.{field}: {error}"], source="data") from None
        return sessions

    def _propensities(self, sessions: ClickSessions) -> np.ndarray:
        """``[S, K]`` propensities of the shown positions, clipped (1 for ``none`` and ``dla``)."""
        method, clicks = self.clicks.propensities, self.clicks
        self._summary["propensities"] = method
        if method in ("none", "dla"):
            return np.ones(sessions.docs.shape)
        if method == "logged":
            if sessions.propensities is None:
                raise ConfigError(
                    [f"data.train_clicks.propensities: 'logged' needs a propensity column: {clicks.log}: row 1, column 'propensity': missing"],
                    source="data",
                )
            return self._clip(sessions.propensities, sessions.mask)
        # rank 0 estimates, every rank gets its floats (see the module docstring)
        per_rank, details = _from_rank_zero(current_context(), lambda: self._estimate(sessions), "the estimated propensities")
        self._summary.update(details)
        return self._clip(np.broadcast_to(per_rank, sessions.docs.shape), sessions.mask)

    def _estimate(self, sessions: ClickSessions) -> Tuple[np.ndarray, Dict[str, Any]]:
        """``([K] relative propensities in (0, 1], summary entries)`` by ``randomization`` or ``regression_em``."""
        from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em

        method, clicks, k = self.clicks.propensities, self.clicks, sessions.top_k
        details: Dict[str, Any] = {}
        if method == "randomization":
            field = "log" if clicks.propensity_log is None else "propensity_log"
            source = sessions if clicks.propensity_log is None else self._read_log(clicks.propensity_log, field)
            try:
                per_rank = estimate_by_randomization(source)
            except ValueError as error:
                raise ConfigError([f"data.train_clicks.{field}: {getattr(clicks, field)}: {error}"], source="data") from None
            if per_rank.size < k:
                raise ConfigError(
                    [f"data.train_clicks.propensity_log: {clicks.propensity_log} shows {per_rank.size} ranks, the training log {k}"], source="data"
                )
            per_rank = per_rank[:k]
        else:
            features = np.asarray(self.data.train.features[np.arange(self.data.train.n_docs)], dtype=np.float64)
            per_rank, estimate = estimate_by_regression_em(sessions, features, max_iterations=clicks.em_max_iterations)
            details["em_iterations"] = estimate["iterations"]
        top = float(per_rank.max())
        if not top > 0:
            raise ConfigError([f"data.train_clicks.propensities: the {method} estimate is not positive at any rank ({per_rank.tolist()})"], source="data")
        per_rank = per_rank / top
        if clicks.clip is None and (per_rank <= 0).any():
            rank = int(np.argmax(per_rank <= 0)) + 1
            raise ConfigError(
                [f"data.train_clicks.clip: the {method} estimate of the propensity at rank {rank} is {per_rank[rank - 1]:g}; set clip (e.g. 0.01) to floor it"],
                source="data",
            )
        details["estimated_propensities"] = per_rank.tolist()
        return per_rank, details

    def _clip(self, propensities: np.ndarray, mask: np.ndarray) -> np.ndarray:
        clip = self.clicks.clip
        if clip is None:
            return np.asarray(propensities, dtype=np.float64)
        clipped = int(((propensities < clip) & mask).sum())
        self._summary["clipped_impressions"] = clipped
        if clipped:
            self._click_warnings.append(
                f"{clipped} of {int(mask.sum())} impressions had a propensity below data.train_clicks.clip={clip:g} and were raised to it "
                f"(the IPS estimate is biased towards the shown order there)"
            )
        return np.maximum(propensities, clip)

    def _resolve_click_sizes(self) -> None:
        """``training.batch_size`` (lists), ``epochs`` and ``patience`` left to the data, as in
        :meth:`RankingTask.prepare`, counted in lists."""
        from ltrkit.training.autosize import auto_batch_size, auto_epochs, auto_patience

        training, stopping = self.config.training, self.config.early_stopping
        if training.batch_size is None:
            training.batch_size = auto_batch_size(self.lists.n_lists)
        if training.epochs is None:
            training.epochs = auto_epochs(self.steps_per_epoch(), training.step_budget)
        if stopping.patience == "auto":
            stopping.patience = auto_patience(training.epochs)

    # ------------------------------------------------------------------ model and batches
    def build(self, device: torch.device) -> None:
        self.model = build_ranking_model(self.config, self.data.train.n_features).to(device)
        forms = PAIR_FORMS if self.clicks.pairs is not None else IPS_FORMS
        args = {key: value for key, value in self.config.loss.args.items() if key in forms[self.config.loss.name][1]}
        self.loss_fn = ClickLoss(
            self.form, args, top_k=self.top_k, max_weight=self.clicks.dla_max_weight, lr_multiplier=self.clicks.dla_lr_multiplier
        ).to(device)
        if self.form == "dla":
            # DDP averages the ranker's gradients; the logits (zeros on every rank) need the same
            _mean_gradient_over_ranks(current_context(), self.loss_fn.raw_logits)

    def steps_per_epoch(self) -> int:
        # the same for every epoch: the evened-out batch count depends on the list count and batch size alone
        return len(self._batches(1))

    def train_batches(self, epoch: int) -> List[np.ndarray]:
        """This rank's batches of ``epoch`` (:func:`click_batches`: lists in an order drawn from
        ``(seed, epoch)``, ``training.batch_size`` at a time, dealt to the ranks under torchrun)."""
        self.model.train()
        self.loss_fn.train()
        return self._batches(epoch)

    def _batches(self, epoch: int) -> List[np.ndarray]:
        context = current_context()
        return click_batches(
            self._docs_per_list, self.config.training.batch_size, seed=self.config.seed, epoch=epoch,
            num_replicas=context.world_size, rank=context.rank,
        )

    def training_step(self, batch: np.ndarray, device: torch.device, amp_dtype: Optional[torch.dtype]) -> StepOutput:
        from ltrkit.models.ensemble import EnsembleRanker

        lists = self.lists
        docs = lists.docs[batch]
        shown = docs >= 0
        features = np.asarray(self.data.train.features[np.where(shown, docs, 0)], dtype=np.float32) * shown[..., None]
        mask = torch.from_numpy(shown).to(device)
        targets = torch.from_numpy(lists.clicks[batch] if lists.pairs is None else lists.pairs[batch]).to(device, torch.float32)
        propensities = torch.from_numpy(lists.propensities[batch]).to(device, torch.float32)
        counts = torch.from_numpy(lists.counts[batch]).to(device, torch.float32)
        # as in RankingTask: one forward returns every member's scores [K, B, L] (under torchrun
        # the model is DDP over that same view)
        scorer = EnsembleMembers(self.model) if isinstance(self.model, EnsembleRanker) else self.model
        with autocast_context(device, amp_dtype):
            output = scorer(torch.from_numpy(features).to(device), mask)
        scores = output.unbind(0) if output.dim() == 3 else [output]
        losses = [self.loss_fn(member_scores.float(), targets, mask, propensities, counts) for member_scores in scores]
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        return StepOutput(loss=loss, weight=float(lists.counts[batch].sum()), items=int(shown.sum()))

    # ------------------------------------------------------------------ checkpoint and report
    def state_dict(self) -> Dict[str, Any]:
        keys = ("sessions", "impressions", "clicks", "lists")
        return {**super().state_dict(), "clicks": {key: self._summary[key] for key in keys}}

    def start_message(self, device: torch.device, folder: RunFolder) -> str:
        train_data = self.data.train
        summary = self._summary
        source = f"{self.clicks.propensities} propensities" if self.clicks.pairs is None else f"{summary['preference_pairs']} {self.clicks.pairs} pairs"
        return (
            f"training {self.config.model.name} with {self.form} ({source}) on {summary['clicks']} clicks "
            f"of {summary['sessions']} sessions ({summary['lists']} lists over {train_data.n_queries} queries, "
            f"{train_data.n_features} features) on {device}; run folder {folder.path}"
            + "".join(f"; warning: {warning}" for warning in self._click_warnings)
        )

    def final_metrics(self, folder: RunFolder, device: torch.device, amp_dtype: Optional[torch.dtype]) -> Dict[str, Dict[str, float]]:
        if self.form == "dla":
            from ltrkit.training.checkpoint import load_checkpoint

            best = load_checkpoint(folder.checkpoint_path("best"), map_location="cpu")
            learned = ClickLoss("dla", {}, top_k=self.top_k, lr_multiplier=self.clicks.dla_lr_multiplier)
            learned.load_state_dict(best["loss"])
            self._summary["learned_propensities"] = learned.propensities().tolist()
        return super().final_metrics(folder, device, amp_dtype)

    def baselines(self) -> Dict[str, Any]:
        baselines = super().baselines()
        if "lightgbm" in baselines:
            baselines["lightgbm"]["label"] += " on data.train's true labels (full information)"
        return baselines

    def report_identity(self) -> Dict[str, Any]:
        return {**super().report_identity(), "click_loss": self.form}

    def report_context(self) -> Dict[str, Any]:
        context = super().report_context()
        context["warnings"] = self._click_warnings + context["warnings"]
        context["clicks"] = dict(self._summary)
        return context


def train_on_clicks(
    config: ConfigSource = None,
    *,
    set: Sequence[str] = (),
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Optional[EpochCallback] = None,
    **overrides: Any,
) -> TrainResult:
    """Train a ranker on the click log of ``config``'s ``data.train_clicks`` and write its run folder.

    The arguments, the result and the errors are those of :func:`ltrkit.training.train` (which
    trains on labels); ``ltrkit train CONFIG`` calls this when the config sets
    ``data.train_clicks``, in one process or in each process of a torchrun job (see the module
    docstring).

    Example:
        >>> result = train_on_clicks("configs/clicks.json", training={"epochs": 5})  # doctest: +SKIP
        >>> result.metrics["test"]["ndcg@10"]  # doctest: +SKIP
    """
    resolved = load_click_config(config, merge_overrides(set, overrides))
    return run_task(ClickTask(resolved, datasets=datasets), overwrite=overwrite, quiet=quiet, on_epoch_end=on_epoch_end)


def resume_on_clicks(
    run_dir: Union[str, Path],
    *,
    set: Sequence[str] = (),
    datasets: Optional[Mapping[str, RankingDataset]] = None,
    quiet: bool = True,
    on_epoch_end: Optional[EpochCallback] = None,
    **overrides: Any,
) -> TrainResult:
    """Continue a click run from ``run_dir/checkpoints/last.pt``, as :func:`ltrkit.training.resume`
    does a ranking run (the same log is read again; a changed log is refused)."""
    folder, resolved = resumed_config(run_dir, load_click_config, merge_overrides(set, overrides))
    return resume_task(ClickTask(resolved, datasets=datasets), folder, quiet=quiet, on_epoch_end=on_epoch_end)
