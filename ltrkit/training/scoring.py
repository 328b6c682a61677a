"""Score every document of a dataset with a model, and the two reference rankers of a report."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from ltrkit.data.dataset import RankingDataset

__all__ = [
    "autocast_context",
    "best_single_feature",
    "canonical_metric",
    "evaluate_scores",
    "metric_conventions",
    "random_scores",
    "resolved_conventions",
    "score_dataset",
]

# a cap on B x L of scoring batches: at L = 1,250 the attention model holds [B, heads, L, L]
# scores, so B stays around a dozen lists
EVAL_MAX_DOCS_PER_BATCH = 16384


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset: RankingDataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: Optional[torch.dtype] = None,
    queries: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Scores ``[n_docs]`` (float32, the dataset's row order) of every document, model in eval mode.

    Documents are scored in length-bucketed padded batches (no slate truncation); the model's
    train/eval mode is restored afterwards. Queries with no documents produce no rows. With
    ``queries`` (dataset positions, e.g. a rank's evaluation shard) only their rows are scored;
    the other rows stay 0.
    """
    from ltrkit.data.batching import BatchLoader, scores_to_rows

    device = torch.device(device)
    out = np.zeros(dataset.n_docs, dtype=np.float32)
    loader = BatchLoader(
        dataset, batch_size=batch_size, shuffle=False, bucket_by_length=True, max_docs_per_batch=EVAL_MAX_DOCS_PER_BATCH, queries=queries
    )
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            batch = batch.to(device)
            with autocast_context(device, amp_dtype):
                scores = model(batch.features, batch.mask)
            scores_to_rows(batch, scores.float().cpu(), out)
    finally:
        model.train(was_training)
    return out


def random_scores(dataset: RankingDataset, *, seed: int) -> np.ndarray:
    """Uniform random scores ``[n_docs]`` (float64) from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).random(dataset.n_docs)


def best_single_feature(
    dataset: RankingDataset,
    *,
    metric: str,
    conventions: Mapping[str, Any],
    batch_size: int = 256,
) -> Dict[str, Any]:
    """The feature column (and sign) whose values, used as scores, give the highest mean ``metric``.

    Every column is tried in both directions (``+x`` and ``-x``); ties go to the lower column,
    then to ``+``. Queries are processed in padded batches (all features of a batch at once), so
    memory is bounded by the batch, not the dataset.

    Args:
        dataset: the queries to choose on (normally the validation split).
        metric: the metric to maximise.
        conventions: keyword arguments of ``evaluate_dataset`` (see :func:`metric_conventions`);
            without a ``max_grade``, ERR's top grade is the dataset's largest label.
        batch_size: queries per padded batch.

    Returns:
        ``{"feature": column (0-based), "sign": +1 or -1, "value": mean metric on dataset}``.
    """
    from ltrkit.data.batching import BatchLoader
    from ltrkit.metrics import compute_metrics, parse_metric

    accepted = inspect.signature(compute_metrics).parameters
    conventions = {key: value for key, value in resolved_conventions(conventions).items() if key in accepted and key != "metrics"}
    # compute_metrics has no document ids; trec_eval's docid rule cannot apply to feature scores
    if conventions.get("ties") == "docid_desc":
        conventions["ties"] = "input_order"
    metric = canonical_metric(metric)
    # ERR's top grade is a property of the label scale: take it over the whole dataset, as
    # evaluate_dataset does, never per batch (a batch without the top grade would score higher)
    if conventions.get("max_grade") is None and parse_metric(metric).family == "err":
        conventions["max_grade"] = float(np.max(dataset.labels)) if dataset.n_docs else 0.0
    n_features = dataset.n_features
    totals = torch.zeros(2, n_features, dtype=torch.float64)
    counts = torch.zeros(2, n_features, dtype=torch.float64)
    loader = BatchLoader(dataset, batch_size=batch_size, shuffle=False, bucket_by_length=True, max_docs_per_batch=8192)
    with torch.no_grad():
        for batch in loader:
            features = batch.features.permute(2, 0, 1)  # [F, B, L]: one "query" per (feature, query)
            scores = torch.cat([features, -features], dim=0).reshape(-1, features.shape[-1])
            labels = batch.labels.unsqueeze(0).expand(2 * n_features, -1, -1).reshape(scores.shape)
            mask = batch.mask.unsqueeze(0).expand(2 * n_features, -1, -1).reshape(scores.shape)
            values = compute_metrics(scores, labels, mask, [metric], **conventions)[metric]
            values = values.to(torch.float64).reshape(2, n_features, -1)
            valid = ~torch.isnan(values)  # "skip" conventions mark excluded queries with NaN
            totals += torch.where(valid, values, torch.zeros_like(values)).sum(-1)
            counts += valid.sum(-1)
    means = totals / counts.clamp(min=1)
    flat = int(torch.argmax(means.t().reshape(-1)))  # column-major: lower column first, then + before -
    column, direction = divmod(flat, 2)
    return {"feature": column, "sign": 1 if direction == 0 else -1, "value": float(means[direction, column])}


def metric_conventions(evaluation: Any) -> Dict[str, Any]:
    """Keyword arguments of :func:`ltrkit.metrics.evaluate_dataset` for an EvaluationConfig:
    the preset plus the conventions the config sets explicitly."""
    conventions: Dict[str, Any] = {"conventions": evaluation.preset, "relevance_threshold": evaluation.relevance_threshold}
    for key in ("gain", "empty", "ties"):
        value = getattr(evaluation, key)
        if value is not None:
            conventions[key] = value
    return conventions


def resolved_conventions(conventions: Mapping[str, Any]) -> Dict[str, Any]:
    """Every convention in force (preset expanded), as :func:`ltrkit.metrics.resolve_conventions` gives them."""
    from ltrkit.metrics import resolve_conventions

    options = dict(conventions)
    return resolve_conventions(options.pop("conventions", None), **options)


def canonical_metric(name: str) -> str:
    """The canonical spelling of a metric name (``"NDCG@10"`` -> ``"ndcg@10"``)."""
    from ltrkit.metrics import parse_metric

    return parse_metric(name).name


def evaluate_scores(
    dataset: RankingDataset, scores: np.ndarray, metrics: Sequence[str], conventions: Mapping[str, Any]
) -> Dict[str, float]:
    """Mean of each metric over the dataset's queries (:func:`ltrkit.metrics.evaluate_dataset`)."""
    from ltrkit.metrics import evaluate_dataset

    result = evaluate_dataset(dataset, scores, [canonical_metric(name) for name in metrics], **conventions)
    return {name: float(result.mean[canonical_metric(name)]) for name in metrics}
