"""IR metrics: per-query functions on padded batches, dataset/run evaluation, TREC files, and
multi-label ranking metrics (:mod:`ltrkit.metrics.multilabel`).

See :mod:`ltrkit.metrics.functional` for the conventions (gain, ties, empty queries, cutoffs).
"""

from ltrkit.metrics.evaluation import (
    DEFAULT_METRICS,
    KNOWN_METRICS,
    PRESETS,
    EvaluationResult,
    MetricSpec,
    compute_metrics,
    evaluate_dataset,
    evaluate_run,
    parse_metric,
    resolve_conventions,
)
from ltrkit.metrics.functional import (
    EMPTY_RULES,
    TIE_RULES,
    average_precision,
    dcg,
    err,
    ndcg,
    precision,
    recall,
    reciprocal_rank,
)
from ltrkit.metrics.multilabel import coverage_error, label_ranking_average_precision, label_ranking_loss
from ltrkit.metrics.trec import read_qrels, read_run, write_qrels, write_trec_run

__all__ = [
    "DEFAULT_METRICS",
    "EMPTY_RULES",
    "KNOWN_METRICS",
    "PRESETS",
    "TIE_RULES",
    "EvaluationResult",
    "MetricSpec",
    "average_precision",
    "compute_metrics",
    "coverage_error",
    "dcg",
    "err",
    "evaluate_dataset",
    "evaluate_run",
    "label_ranking_average_precision",
    "label_ranking_loss",
    "ndcg",
    "parse_metric",
    "precision",
    "read_qrels",
    "read_run",
    "recall",
    "reciprocal_rank",
    "resolve_conventions",
    "write_qrels",
    "write_trec_run",
]
