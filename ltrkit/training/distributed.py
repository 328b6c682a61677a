"""Multi-process training on ``torch.distributed``: the process group, exact sharded metrics, and
failures that end the job instead of hanging it.

ltrkit runs on PyTorch's own engine: ``torchrun`` starts the processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed`
reads them and joins the process group (``gloo`` on CPU, ``nccl`` on CUDA). Without them (or with
``WORLD_SIZE=1``) everything here is the single-process identity, so one code path serves both.

Training data is sharded by :class:`ltrkit.data.batching.BatchLoader` (``num_replicas``/``rank``:
the same number of batches on every rank, dealt by document count). Evaluation shards whole
queries (:func:`evaluation_shard`); each rank computes the per-query metric values of its own
queries and :func:`sharded_metric_means` all-reduces, in float64, each metric's *sum* of
per-query values and its *count* of counted queries, then divides: the mean over all queries,
never a mean of per-rank means (which would weigh a query by its shard's size). The result
equals single-process evaluation up to float64 summation order (~1e-16 relative). Conventions
that look at the whole dataset are resolved on the whole dataset first (ERR's top grade is the
largest label of the dataset, not of a shard).

The training loop (:mod:`ltrkit.training.trainer`) uses the rest: :func:`join_job` (the
context, the device of this rank), :func:`follow_run_folder` (rank 0 writes the run folder,
checkpoints, TensorBoard and the report; the other ranks get a :class:`MutedRunFolder` at the
same path), :func:`wrap_model` (``DistributedDataParallel``; an ensemble through :class:`EnsembleMembers`), :func:`loss_for_step` (every rank
steps together), :func:`seed_epoch` (each rank's RNG is a function of ``(seed, epoch, rank)``,
so a resumed run draws the same dropout masks on every rank without per-rank RNG state),
:func:`sum_over_ranks` and :func:`reduce_evaluation` (exact epoch statistics and metrics), and
:func:`broadcast_object` (rank 0's early-stopping decision).

Failures: every collective runs under the process group's timeout (``timeout_s``). A peer that
died makes the collective fail as soon as its connection closes, a peer that hangs makes it fail
when the timeout expires; either way the surviving ranks raise :class:`DistributedError` with a
message naming the rank, the step and the timeout, and ``torchrun`` then stops the whole job.
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ltrkit.data.batching import shard_queries
from ltrkit.data.dataset import RankingDataset
from ltrkit.training.run_folder import RunFolder
from ltrkit.training.task import Evaluation

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedContext",
    "DistributedError",
    "EnsembleMembers",
    "MutedRunFolder",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "collective_errors",
    "current_context",
    "evaluation_shard",
    "follow_run_folder",
    "init_distributed",
    "join_job",
    "loss_for_step",
    "reduce_evaluation",
    "seed_epoch",
    "shard_metric_sums",
    "sharded_metric_means",
    "shutdown",
    "sum_over_ranks",
    "wrap_model",
]

#: Seconds a collective may wait for the other ranks before the job fails. Long enough for
#: rank 0 to write a checkpoint and a run folder while the others wait, short enough that a
#: hung node is noticed within minutes.
DEFAULT_TIMEOUT_S = 600.0

T = TypeVar("T")


class DistributedError(RuntimeError):
    """A collective failed: another process of the job died, or did not answer in time."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes (1 = not distributed).
        local_rank: rank on this machine (selects the GPU).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` when not distributed.
        timeout_s: how long a collective waits for the other ranks.
        owns_group: whether :func:`init_distributed` created the process group (then
            :func:`shutdown` destroys it; a group the caller set up is left to the caller).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part (collectives are needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder, checkpoints and reports."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``device`` for this process: a CUDA device becomes ``cuda:<local_rank>`` under torchrun."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


# the context of the process group this process joined (the group itself is torch's global state)
_current = DistributedContext()


def current_context() -> DistributedContext:
    """The context :func:`init_distributed` returned last (single-process before, and after :func:`shutdown`)."""
    return _current


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def init_distributed(device_type: str = "cpu", *, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    ``WORLD_SIZE`` unset or 1 gives the single-process context and touches nothing. Otherwise the
    backend is ``nccl`` for ``device_type="cuda"`` and ``gloo`` for the CPU, the rendezvous is
    ``env://`` (``MASTER_ADDR``/``MASTER_PORT``, set by torchrun, also in multi-node ``c10d``
    rendezvous), and ``timeout_s`` bounds every collective. A group that is already initialised
    (the caller set it up) is reused.

    Args:
        device_type: ``"cpu"`` or ``"cuda"``.
        timeout_s: positive seconds a collective (and joining) may wait for the other ranks.

    Returns:
        The :class:`DistributedContext`.

    Raises:
        DistributedError: a malformed environment, or the other processes did not join in time.
        ValueError: a non-positive ``timeout_s`` or an unknown ``device_type``.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0 or not math.isfinite(timeout_s):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(f"RANK={rank} and WORLD_SIZE={world_size} do not describe a process of the job")
    if world_size == 1:
        return DistributedContext(timeout_s=float(timeout_s))
    backend = "nccl" if device_type == "cuda" else "gloo"
    context = DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, timeout_s=float(timeout_s), owns_group=not dist.is_initialized()
    )
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if context.owns_group:
        _collective(
            context,
            "joining the process group",
            lambda: dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=float(timeout_s))),
        )
    global _current
    _current = context
    return context


def shutdown(context: DistributedContext) -> None:
    """Leave the process group :func:`init_distributed` created (a no-op when not distributed,
    already left, or the group is the caller's)."""
    global _current
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()
    _current = DistributedContext()


def _collective(context: DistributedContext, what: str, call: Callable[[], T]) -> T:
    """Run one collective; turn a backend failure into a one-line :class:`DistributedError`."""
    try:
        return call()
    except RuntimeError as error:  # DistBackendError, DistStoreError and gloo's errors derive from it
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"rank {context.rank} of {context.world_size}: {what} failed: another process of the job died or did not "
            f"answer within {context.timeout_s:g} s ({detail})"
        ) from error


# gloo does not always name itself: a peer that stops answering ends a collective with
# "Application timeout caused pair closure", raised as a bare RuntimeError
_BACKEND_TAGS = ("gloo", "NCCL", "c10d", "pair closure", "closed by peer", "reset by peer")
_BACKEND_PACKAGE = os.path.join("torch", "distributed", "")
# DDP's buffer broadcast in forward calls the backend from torch/nn/parallel, not torch/distributed
_BACKEND_CALLERS = ("_distributed_broadcast_coalesced",)


def _backend_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from the communication backend (gloo, NCCL, the c10d store): a
    ``DistError``, a message that names the backend, or an error raised where torch calls the
    backend (``torch.distributed``, DDP's buffer broadcast), whatever its message says. DDP's
    usage errors (e.g. a reduction not finished) are not among them."""
    if isinstance(error, dist.DistError) or any(tag in str(error) for tag in _BACKEND_TAGS):
        return True
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and (_BACKEND_PACKAGE in frames[-1].filename or frames[-1].name in _BACKEND_CALLERS)


@contextlib.contextmanager
def collective_errors(context: DistributedContext, what: str) -> Iterator[None]:
    """Turn a backend failure inside the block into :class:`DistributedError` (as :func:`_collective`
    does), for code whose collectives PyTorch runs itself: DDP's gradient all-reduce in backward
    and its buffer broadcast in forward. Other errors pass unchanged."""
    try:
        yield
    except RuntimeError as error:
        if not (context.enabled and _backend_failure(error)) or isinstance(error, DistributedError):
            raise
        _collective(context, what, lambda failure=error: _reraise(failure))


def _reraise(error: BaseException) -> None:
    raise error


def all_reduce_sum(context: DistributedContext, values: torch.Tensor, *, what: str = "all_reduce") -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (a new tensor; ``values`` is untouched).

    On ``nccl`` the reduction runs on this rank's GPU and the result comes back to ``values``'
    device. Not distributed: a copy of ``values``.
    """
    total = values.detach().clone()
    if not context.enabled:
        return total
    device = torch.device("cuda", context.local_rank) if context.backend == "nccl" else torch.device("cpu")
    work = total.to(device)
    _collective(context, what, lambda: dist.all_reduce(work, op=dist.ReduceOp.SUM))
    return work.to(values.device)


def broadcast_object(context: DistributedContext, value: Any, *, source: int = 0, what: str = "broadcast") -> Any:
    """Rank ``source``'s ``value`` on every rank (picklable values; e.g. an early-stopping decision)."""
    if not context.enabled:
        return value
    box: List[Any] = [value if context.rank == source else None]
    _collective(context, what, lambda: dist.broadcast_object_list(box, src=source))
    return box[0]


def barrier(context: DistributedContext, *, what: str = "barrier") -> None:
    """Wait for every rank. On gloo a monitored barrier, whose error names the ranks that did not arrive."""
    if not context.enabled:
        return
    if context.backend == "gloo":
        timeout = timedelta(seconds=context.timeout_s)
        _collective(context, what, lambda: dist.monitored_barrier(timeout=timeout, wait_all_ranks=True))
    else:
        _collective(context, what, dist.barrier)


def evaluation_shard(context: DistributedContext, dataset: RankingDataset) -> np.ndarray:
    """Dataset positions of the queries this rank evaluates (all of them when not distributed).

    Queries are dealt by length (:func:`ltrkit.data.batching.shard_queries`), so every rank
    scores about the same number of documents; the shards are disjoint and cover the dataset.

    Example:
        >>> from ltrkit.data.synthetic import generate
        >>> data = generate(6, n_features=8)
        >>> shards = [evaluation_shard(DistributedContext(rank=r, world_size=2), data) for r in (0, 1)]
        >>> sorted(np.concatenate(shards).tolist())
        [0, 1, 2, 3, 4, 5]
    """
    if not context.enabled:
        return np.arange(dataset.n_queries)
    return np.flatnonzero(shard_queries(dataset.list_lengths, context.world_size) == context.rank)


def shard_metric_sums(
    dataset: RankingDataset,
    scores: np.ndarray,
    queries: np.ndarray,
    metrics: Sequence[str],
    conventions: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-metric sum of the per-query values of ``queries``, and how many queries count.

    Args:
        dataset: the whole split (labels, offsets, ids).
        scores: ``[n_docs]`` scores in row order; only the rows of ``queries`` are read.
        queries: dataset positions of the queries to evaluate.
        metrics: metric names (:func:`ltrkit.metrics.parse_metric`).
        conventions: keyword arguments of :func:`ltrkit.metrics.evaluate_dataset` (a preset
            and overrides, as :func:`ltrkit.training.scoring.metric_conventions` gives them).

    Returns:
        ``(sums [M], counts [M])`` float64: queries whose value is NaN (``empty="skip"``) are
        in neither, exactly as :func:`~ltrkit.metrics.evaluate_dataset` leaves them out of its mean.
    """
    from ltrkit.metrics import evaluate_dataset
    from ltrkit.training.scoring import canonical_metric, resolved_conventions

    names = [canonical_metric(name) for name in metrics]
    options = dict(conventions)
    if resolved_conventions(options)["max_grade"] is None:
        # ERR's top grade is a property of the whole label scale, never of one shard
        options["max_grade"] = float(np.max(dataset.labels)) if dataset.n_docs else 0.0
    queries = np.asarray(queries, dtype=np.int64)
    lengths = dataset.list_lengths[queries]
    offsets = np.zeros(queries.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rows = np.repeat(dataset.query_offsets[queries] - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
    # labels and ids only: the metrics never read features
    part = RankingDataset(
        features=np.zeros((rows.shape[0], 0), dtype=np.float32),
        labels=np.asarray(dataset.labels)[rows],
        query_offsets=offsets,
        qids=np.asarray(dataset.qids)[queries],
        doc_ids=None if dataset.doc_ids is None else np.asarray(dataset.doc_ids)[rows],
        source=dataset.source,
    )
    result = evaluate_dataset(part, np.asarray(scores)[rows], names, **options)
    values = np.array([[per_query[name] for name in names] for per_query in result.per_query.values()], dtype=np.float64)
    values = values.reshape(-1, len(names))
    counted = ~np.isnan(values)
    return np.where(counted, values, 0.0).sum(axis=0), counted.sum(axis=0).astype(np.float64)


def sharded_metric_means(
    context: DistributedContext,
    dataset: RankingDataset,
    scores: np.ndarray,
    metrics: Sequence[str],
    conventions: Mapping[str, Any],
) -> Dict[str, float]:
    """Mean of each metric over all queries of ``dataset``, each rank evaluating its own shard.

    .. math::
        \\bar m = \\frac{\\sum_{r} \\sum_{q \\in Q_r} m(q)}{\\sum_r |\\{q \\in Q_r : m(q) \\ne \\mathrm{NaN}\\}|}

    with ``Q_r = evaluation_shard(context, dataset)`` on rank ``r``; sums and counts are
    all-reduced in float64. Every rank gets the same result (the keys are ``metrics`` as given).
    A metric with no counted query has mean NaN, as in :func:`ltrkit.metrics.evaluate_dataset`.

    Args:
        context: this process's place in the job.
        dataset: the whole split (each rank holds it, usually memory-mapped).
        scores: ``[n_docs]`` scores; only this rank's shard's rows need to be filled.
        metrics: metric names.
        conventions: see :func:`shard_metric_sums`.

    Raises:
        DistributedError: another rank died or did not answer in time.
    """
    sums, counts = shard_metric_sums(dataset, scores, evaluation_shard(context, dataset), metrics, conventions)
    totals = all_reduce_sum(context, torch.from_numpy(np.stack([sums, counts])), what="all_reduce of the metric sums").numpy()
    return {name: float(totals[0, j] / totals[1, j]) if totals[1, j] else math.nan for j, name in enumerate(metrics)}


# ----------------------------------------------------------------------------------------------
# the training loop's side


def join_job(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the torchrun job (if any) for ``device``; returns the context and this rank's device.

    The collective timeout is ``LTRKIT_DIST_TIMEOUT_S`` seconds when set (default
    :data:`DEFAULT_TIMEOUT_S`).

    Raises:
        DistributedError: see :func:`init_distributed`, or a malformed ``LTRKIT_DIST_TIMEOUT_S``.
    """
    text = os.environ.get("LTRKIT_DIST_TIMEOUT_S", "").strip()
    try:
        timeout_s = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        timeout_s = math.nan
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise DistributedError(f"LTRKIT_DIST_TIMEOUT_S must be a positive number of seconds, got {text!r}")
    context = init_distributed(device.type, timeout_s=timeout_s)
    return context, context.device(device)


class MutedRunFolder(RunFolder):
    """The run folder as seen by ranks other than 0: the same paths, every write a no-op.

    Rank 0 alone writes the config, checkpoints, history, TensorBoard events, curves,
    predictions, ``train.log`` and the report, so the folder is written once, as by one process.
    """

    def write_config(self, config: Mapping[str, Any]) -> None:
        return None

    def write_normalizer(self, normalizer: Any) -> None:
        return None

    def write_checkpoint(self, which: str, state: Dict[str, Any]) -> None:
        return None

    def write_text(self, relative: str, text: str) -> None:
        return None

    def log(self, line: str) -> None:
        return None

    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        return None

    def log_scalars(self, epoch: int, record: Mapping[str, Any]) -> None:
        return None

    def write_curves(self, history: Sequence[Mapping[str, Any]], metric_names: Sequence[str]) -> None:
        return None

    def write_report(self, report: Mapping[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def follow_run_folder(context: DistributedContext, folder: Optional[RunFolder]) -> RunFolder:
    """Rank 0's ``folder`` on rank 0; a :class:`MutedRunFolder` at rank 0's path elsewhere.

    ``folder`` is only read on rank 0 (the others pass ``None``); its path is broadcast, so a run
    named by a timestamp gets one name, not one per rank.
    """
    if not context.enabled:
        return folder
    path = broadcast_object(context, str(folder.path) if context.is_main else None, what="broadcast of the run folder")
    return folder if context.is_main else MutedRunFolder(path)


class EnsembleMembers(torch.nn.Module):
    """Every member's scores of an ensemble in one forward: ``forward(features [B, L, F], mask)
    -> [K, B, L]`` (member ``k``'s scores at ``[k]``), the members' parameters as its own.

    An ensemble's members learn side by side, each from its own loss; ``DistributedDataParallel``
    reduces the gradients of one forward per step, so under torchrun the ensemble trains through
    this view (:func:`wrap_model`), and in one process the same view gives the same scores.
    """

    def __init__(self, ensemble: torch.nn.Module) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(features, mask) for member in self.ensemble.members])


def wrap_model(context: DistributedContext, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks in
    backward), or ``model`` itself when not distributed. An ensemble
    (:class:`~ltrkit.models.ensemble.EnsembleRanker`) is wrapped as its :class:`EnsembleMembers`,
    whose forward returns every member's scores ``[K, B, L]``.
    """
    if not context.enabled:
        return model
    from ltrkit.models.ensemble import EnsembleRanker

    module = EnsembleMembers(model) if isinstance(model, EnsembleRanker) else model
    device_ids = [device.index] if device.type == "cuda" else None
    # the constructor compares the parameters' shapes across ranks: a collective
    return _collective(context, "setting up DistributedDataParallel", lambda: torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids))


def broadcast_buffers(context: DistributedContext, model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP broadcasts them at each training forward, but the last step of an epoch updates each
    rank's copy from its own batch; evaluating after it with rank 0's buffers everywhere makes the
    sharded validation metric that of the checkpointed (rank 0) model.
    """
    if not context.enabled:
        return
    for buffer in model.buffers():
        _collective(context, "broadcast of the model buffers", lambda tensor=buffer: dist.broadcast(tensor, src=0))


def loss_for_step(context: DistributedContext, loss: torch.Tensor, parameters: Sequence[torch.nn.Parameter]) -> Optional[torch.Tensor]:
    """The loss to back-propagate this step, or ``None`` to skip the optimiser step.

    One process skips a batch whose loss has no graph (nothing to learn from it). Under DDP the
    ranks decide together: none steps when no rank's loss has a graph; otherwise every rank
    steps, a rank without a graph back-propagating ``0 * sum(parameters)`` so that its zero
    gradient joins DDP's average (a rank that skipped backward would leave the others waiting).
    """
    if not context.enabled:
        return loss if loss.requires_grad else None
    learning = all_reduce_sum(context, torch.tensor([float(loss.requires_grad)]), what="all_reduce of the step flags")
    if float(learning[0]) == 0.0:
        return None
    if loss.requires_grad:
        return loss
    return loss + 0.0 * sum(parameter.sum() for parameter in parameters)


def seed_epoch(context: DistributedContext, seed: int, epoch: int) -> None:
    """Under torchrun, seed torch's RNG from ``(seed, epoch, rank)`` at the start of an epoch.

    Each rank then draws its own dropout masks, and a run resumed at any epoch draws exactly
    what the uninterrupted run drew, on every rank, from the checkpoint of rank 0 alone. A single
    process keeps its RNG untouched (its checkpoint holds the RNG state).
    """
    if context.enabled:
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, context.rank]).generate_state(1, dtype=np.uint64)[0] % 2**63))


def sum_over_ranks(context: DistributedContext, *values: float) -> tuple[float, ...]:
    """Each value summed over the ranks, in float64 (the values themselves when not distributed)."""
    if not context.enabled:
        return values
    totals = all_reduce_sum(context, torch.tensor(values, dtype=torch.float64), what="all_reduce of the epoch statistics")
    return tuple(float(value) for value in totals)


def reduce_evaluation(context: DistributedContext, evaluation: Optional[Evaluation]) -> Optional[Evaluation]:
    """The evaluation of the whole split from each rank's shard: sums and counts all-reduced in float64."""
    if evaluation is None or not context.enabled:
        return evaluation
    names = list(evaluation.sums)
    local = torch.tensor([[evaluation.sums[name] for name in names], [evaluation.counts[name] for name in names]], dtype=torch.float64)
    totals = all_reduce_sum(context, local, what="all_reduce of the validation metrics").numpy()
    return Evaluation(
        sums={name: float(totals[0, j]) for j, name in enumerate(names)},
        counts={name: float(totals[1, j]) for j, name in enumerate(names)},
    )
