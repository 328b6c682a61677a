"""Metric names, conventions, and evaluation of padded batches, datasets and TREC runs.

* :func:`parse_metric` turns ``"ndcg@10"``-style names into :class:`MetricSpec`.
* :func:`compute_metrics` computes several metrics on one padded batch, sorting it once (the
  trainer's validation step calls it).
* :func:`evaluate_dataset` scores a whole :class:`~ltrkit.data.dataset.RankingDataset` in
  length-sorted chunks, so MSLR-sized data (3.7M documents, lists of 1,250) fits in memory.
* :func:`evaluate_run` evaluates a TREC run against qrels the way trec_eval does.

Conventions are explicit and recorded in every :class:`EvaluationResult`. Two presets:

=========  ========  =====  ===========  =========  ===============  =============================
preset     gain      empty  ties         threshold  score_precision  matches
=========  ========  =====  ===========  =========  ===============  =============================
ltrkit     exp2      zero   input_order  1          exact            LTR practice (LightGBM gain)
trec       linear    zero   docid_desc   1          float32          trec_eval / pytrec_eval
=========  ========  =====  ===========  =========  ===============  =============================

``score_precision="float32"`` compares scores after rounding them to float32, because trec_eval
stores run scores as C ``float``: two float64 scores that round to the same float32 are tied
there (and ordered by document id). ``"exact"`` compares the scores as given.

``ties="docid_desc"`` is trec_eval's rule: documents with equal scores are ranked by document id
in descending byte order (``strcmp``). Datasets without document ids use ``"<qid>_<position>"``
(0-based position of the document in its query), the ids :func:`ltrkit.metrics.trec.write_trec_run`
writes, so evaluating a written run with trec_eval gives the same numbers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ltrkit.data.dataset import RankingDataset
from ltrkit.metrics import functional as F
from ltrkit.metrics.ranking import check_gain

__all__ = [
    "DEFAULT_METRICS",
    "EvaluationResult",
    "KNOWN_METRICS",
    "MetricSpec",
    "PRESETS",
    "compute_metrics",
    "evaluate_dataset",
    "evaluate_run",
    "parse_metric",
    "resolve_conventions",
]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@1", "ndcg@5", "ndcg@10", "ndcg", "map", "mrr", "err@10", "p@10", "recall@10")

#: Metric families by canonical name; aliases map onto them.
_ALIASES = {
    "ndcg": "ndcg",
    "dcg": "dcg",
    "map": "map",
    "ap": "map",
    "mrr": "mrr",
    "rr": "mrr",
    "recip_rank": "mrr",
    "err": "err",
    "p": "p",
    "precision": "p",
    "recall": "recall",
    "r": "recall",
}
#: trec_eval spellings with a required cutoff, e.g. ``ndcg_cut_10``, ``P_5``.
_TREC_NAMES = {"ndcg_cut": "ndcg", "map_cut": "map", "p": "p", "recall": "recall"}

KNOWN_METRICS: tuple[str, ...] = (
    "ndcg", "ndcg@k", "dcg", "dcg@k", "map", "map@k", "ap", "ap@k", "mrr", "mrr@k", "rr", "rr@k",
    "err", "err@k", "p", "p@k", "precision", "precision@k", "recall", "recall@k", "r@k",
    "ndcg_cut_k", "map_cut_k", "P_k", "recall_k", "recip_rank",
)

TIE_RULES_EVAL: tuple[str, ...] = F.TIE_RULES + ("docid_desc",)
MISSING_RULES: tuple[str, ...] = ("ignore", "zero")

PRESETS: dict[str, dict[str, Any]] = {
    "ltrkit": {"gain": "exp2", "empty": "zero", "ties": "input_order", "relevance_threshold": 1.0, "score_precision": "exact"},
    "trec": {"gain": "linear", "empty": "zero", "ties": "docid_desc", "relevance_threshold": 1.0, "score_precision": "float32"},
}
SCORE_PRECISIONS: tuple[str, ...] = ("exact", "float32")

_CHUNK_QUERIES = 1024


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: family (``ndcg``, ``dcg``, ``map``, ``mrr``, ``err``, ``p``,
    ``recall``) and cutoff ``k`` (``None`` = whole list). ``name`` is the canonical spelling
    used as the key of every result (``"ndcg@10"``, ``"map"``, ``"p@5"``)."""

    family: str
    k: Optional[int] = None

    @property
    def name(self) -> str:
        return self.family if self.k is None else f"{self.family}@{self.k}"


def parse_metric(name: str) -> MetricSpec:
    """Parse a metric name such as ``"ndcg@10"``, ``"map"``, ``"P@5"`` or ``"ndcg_cut_10"``.

    Names are case-insensitive; aliases: ``ap`` = ``map``, ``rr``/``recip_rank`` = ``mrr``,
    ``precision`` = ``p``, ``r`` = ``recall``; trec_eval spellings ``ndcg_cut_k``, ``map_cut_k``,
    ``P_k`` and ``recall_k`` are accepted.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or a cutoff that is
            not a positive integer.

    Example:
        >>> parse_metric("NDCG@10")
        MetricSpec(family='ndcg', k=10)
        >>> parse_metric("P_5").name
        'p@5'
    """
    if not isinstance(name, str):
        raise ValueError(f"metric name must be a string, got {name!r}")
    text = name.strip().lower()
    trec = re.fullmatch(r"(ndcg_cut|map_cut|p|recall)_(\d+)", text)
    if trec:
        base, cutoff = _TREC_NAMES[trec.group(1)], trec.group(2)
    else:
        base, _, cutoff = text.partition("@")
        if base not in _ALIASES:
            raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(KNOWN_METRICS)}")
        base = _ALIASES[base]
        if "@" not in text:
            return MetricSpec(base, None)
    if not re.fullmatch(r"\d+", cutoff) or int(cutoff) < 1:
        raise ValueError(f"metric {name!r}: the cutoff after '@' must be a positive integer, got {cutoff!r}")
    return MetricSpec(base, int(cutoff))


def _parse_all(metrics: Sequence[str] | str) -> list[MetricSpec]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    specs = [parse_metric(m) for m in metrics]
    if not specs:
        raise ValueError("metrics must name at least one metric, got none")
    unique: dict[str, MetricSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    return list(unique.values())


def resolve_conventions(
    preset: Optional[str] = None,
    *,
    gain: Optional[str] = None,
    empty: Optional[str] = None,
    ties: Optional[str] = None,
    relevance_threshold: Optional[float] = None,
    max_grade: Optional[float] = None,
    score_precision: Optional[str] = None,
) -> dict[str, Any]:
    """Conventions from a preset (``"ltrkit"`` default, or ``"trec"``) with explicit overrides.

    Returns a dict with keys ``preset``, ``gain``, ``empty``, ``ties``, ``relevance_threshold``,
    ``max_grade`` (``None`` = the largest label of the data evaluated) and ``score_precision``
    (``"exact"`` or ``"float32"``), every value validated.

    Raises:
        ValueError: for an unknown preset or option value.

    Example:
        >>> resolve_conventions("trec", empty="skip")["ties"]
        'docid_desc'
    """
    preset = "ltrkit" if preset is None else preset
    if preset not in PRESETS:
        raise ValueError(f"conventions preset must be one of {list(PRESETS)}, got {preset!r}")
    base = PRESETS[preset]
    conv: dict[str, Any] = {
        "preset": preset,
        "gain": check_gain(base["gain"] if gain is None else gain),
        "empty": F.check_empty(base["empty"] if empty is None else empty),
        "ties": F.check_ties(base["ties"] if ties is None else ties, allowed=TIE_RULES_EVAL),
        "relevance_threshold": F.check_relevance_threshold(
            base["relevance_threshold"] if relevance_threshold is None else relevance_threshold
        ),
        "max_grade": None,
        "score_precision": base["score_precision"] if score_precision is None else score_precision,
    }
    if conv["score_precision"] not in SCORE_PRECISIONS:
        raise ValueError(f"score_precision must be one of {list(SCORE_PRECISIONS)}, got {conv['score_precision']!r}")
    if max_grade is not None:
        if isinstance(max_grade, bool) or not isinstance(max_grade, (int, float)) or not math.isfinite(max_grade) or max_grade < 0:
            raise ValueError(f"max_grade must be a finite number >= 0 or None, got {max_grade!r}")
        conv["max_grade"] = float(max_grade)
    return conv


def _metrics_of_ranking(
    ranking: F.Ranking, specs: Sequence[MetricSpec], conv: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    gain, empty, threshold = conv["gain"], conv["empty"], conv["relevance_threshold"]
    out: dict[str, torch.Tensor] = {}
    for spec in specs:
        k = spec.k
        if spec.family == "ndcg":
            values = F.ndcg_from_ranking(ranking, k=k, gain=gain, empty=empty)
        elif spec.family == "dcg":
            values = F.dcg_from_ranking(ranking, k=k, gain=gain, empty=empty)
        elif spec.family == "map":
            values = F.ap_from_ranking(ranking, k=k, threshold=threshold, empty=empty)
        elif spec.family == "mrr":
            values = F.rr_from_ranking(ranking, k=k, threshold=threshold, empty=empty)
        elif spec.family == "err":
            values = F.err_from_ranking(ranking, k=k, max_grade=conv["max_grade"], empty=empty)
        elif spec.family == "p":
            values = F.precision_from_ranking(ranking, k=k, threshold=threshold, empty=empty)
        else:
            values = F.recall_from_ranking(ranking, k=k, threshold=threshold, empty=empty)
        out[spec.name] = ranking.restore(values)
    return out


def _check_tensor_ties(ties: str, specs: Sequence[MetricSpec]) -> None:
    if ties == "docid_desc":
        raise ValueError(
            "ties='docid_desc' needs document ids, which tensors do not carry; order each list by "
            "document id (descending) and use ties='input_order', or use evaluate_dataset/evaluate_run"
        )
    if ties == "average":
        unsupported = [s.name for s in specs if s.family in ("map", "mrr", "err")]
        if unsupported:
            raise ValueError(
                f"ties='average' is not supported by {unsupported} (not linear in document "
                f"positions); it works with ndcg, dcg, p and recall"
            )


def compute_metrics(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    *,
    gain: str = "exp2",
    empty: str = "zero",
    ties: str = "input_order",
    relevance_threshold: float = 1.0,
    max_grade: Optional[float] = None,
    retrieved: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Several metrics of one padded batch, sorting it once.

    Args:
        scores: ``[..., L]`` floating point.
        labels: ``[..., L]`` graded relevance ``>= 0``.
        mask: ``[..., L]`` bool (True = real document) or ``None``.
        metrics: names understood by :func:`parse_metric` (a list or a comma-separated string).
        gain, empty, ties, relevance_threshold: see :mod:`ltrkit.metrics.functional`.
        max_grade: ERR's top grade; ``None`` = the largest label in this batch, so pass the
            label scale's top grade when evaluating in several batches.
        retrieved: optional ``[..., L]`` bool of ranked documents (see
            :mod:`ltrkit.metrics.functional`).

    Returns:
        ``{canonical name: [...] float64 per-list values}`` in the order given (duplicates
        dropped).

    Raises:
        ValueError: for unknown metric names or option values, invalid inputs, or
            ``ties="average"`` with ``map``/``mrr``/``err``.

    Example:
        >>> import torch
        >>> out = compute_metrics(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]),
        ...                       metrics="ndcg@2,mrr")
        >>> {name: round(v.item(), 4) for name, v in out.items()}
        {'ndcg@2': 0.5788, 'mrr': 0.5}
    """
    specs = _parse_all(metrics)
    conv = resolve_conventions(None, gain=gain, empty=empty, ties=ties, relevance_threshold=relevance_threshold, max_grade=max_grade)
    _check_tensor_ties(conv["ties"], specs)
    ranking = F.rank_batch(scores, labels, mask, ties=conv["ties"], retrieved=retrieved)
    return _metrics_of_ranking(ranking, specs, conv)


def _nan_to_none(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a dataset or run.

    Attributes:
        mean: ``{metric: mean over queries}``; queries whose value is NaN (``empty="skip"``)
            are left out of the mean, and a metric with no query left has mean NaN.
        per_query: ``{qid: {metric: value}}`` in the order the queries were evaluated.
        conventions: the conventions used (gain, empty, ties, relevance_threshold, max_grade
            as resolved, and for runs ``missing``).
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    conventions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"conventions", "mean", "per_query"}`` with NaN written as ``None`` (JSON null)."""
        return {
            "conventions": dict(self.conventions),
            "mean": {name: _nan_to_none(v) for name, v in self.mean.items()},
            "per_query": {
                qid: {name: _nan_to_none(v) for name, v in values.items()} for qid, values in self.per_query.items()
            },
        }


def _docid_desc_permutation(doc_ids: Optional[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """Row permutation putting each query's documents in descending document-id order.

    ``doc_ids=None`` stands for the positional ids ``"<qid>_<position>"``: within a query they
    share the prefix, so their order is that of the positions' decimal strings, found without
    building a string per document.
    """
    query_of_row = np.repeat(np.arange(lengths.shape[0]), lengths)
    if doc_ids is None:
        positions = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        width = int(lengths.max(initial=0))
        text_rank = np.empty(width, dtype=np.int64)
        text_rank[np.argsort(np.arange(width).astype(str), kind="stable")] = np.arange(width)
        codes = text_rank[positions]
    else:
        # np.unique orders str by code point, which equals strcmp's UTF-8 byte order
        codes = np.unique(np.asarray(doc_ids).astype(str), return_inverse=True)[1].reshape(-1)
    return np.lexsort((-codes.astype(np.int64), query_of_row))


def positional_doc_ids(qids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``"<qid>_<position>"`` ids (position 0-based within the query) for data without ids."""
    positions = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    query_ids = np.repeat(np.asarray(qids).astype(str), lengths)
    return np.char.add(np.char.add(query_ids, "_"), positions.astype(str))


def _evaluate_flat(
    scores: np.ndarray,
    labels: np.ndarray,
    offsets: np.ndarray,
    qids: Sequence[str],
    doc_ids: Optional[np.ndarray],
    retrieved: Optional[np.ndarray],
    specs: Sequence[MetricSpec],
    conv: dict[str, Any],
    batch_size: int,
) -> EvaluationResult:
    """Evaluate CSR-laid-out queries in chunks of similar length (shared by datasets and runs)."""
    lengths = np.diff(offsets)
    if conv["score_precision"] == "float32":
        scores = scores.astype(np.float32)
    tensor_conv = dict(conv)
    if conv["ties"] == "docid_desc":
        perm = _docid_desc_permutation(doc_ids, lengths)
        scores, labels = scores[perm], labels[perm]
        retrieved = None if retrieved is None else retrieved[perm]
        tensor_conv["ties"] = "input_order"
    _check_tensor_ties(tensor_conv["ties"], specs)
    # resolved whatever the metrics, so the recorded conventions do not depend on whether ERR was asked for
    if conv["max_grade"] is None:
        tensor_conv["max_grade"] = float(labels.max()) if labels.size else 0.0
        conv = {**conv, "max_grade": tensor_conv["max_grade"]}

    n_queries = lengths.shape[0]
    values = np.full((n_queries, len(specs)), np.nan)
    by_length = np.argsort(lengths, kind="stable")
    for start in range(0, n_queries, batch_size):
        chunk = by_length[start : start + batch_size]
        chunk_lengths = lengths[chunk]
        width = int(chunk_lengths.max(initial=0))
        mask = np.arange(width)[None, :] < chunk_lengths[:, None]
        local = np.concatenate([[0], np.cumsum(chunk_lengths)])
        rows = np.repeat(offsets[:-1][chunk] - local[:-1], chunk_lengths) + np.arange(local[-1])

        def padded(flat: np.ndarray, fill: Any) -> torch.Tensor:
            out = np.full((chunk.shape[0], width), fill, dtype=flat.dtype)
            out[mask] = flat[rows]
            return torch.from_numpy(out)

        ranking = F.rank_batch(
            padded(scores, 0.0),
            padded(labels, 0.0),
            torch.from_numpy(mask),
            ties=tensor_conv["ties"],
            retrieved=None if retrieved is None else padded(retrieved, False),
        )
        result = _metrics_of_ranking(ranking, specs, tensor_conv)
        values[chunk] = torch.stack([result[s.name] for s in specs], dim=-1).numpy()

    names = [s.name for s in specs]
    with np.errstate(invalid="ignore"):
        counted = (~np.isnan(values)).sum(axis=0)
        sums = np.nansum(values, axis=0)
    mean = {name: (float(sums[j] / counted[j]) if counted[j] else math.nan) for j, name in enumerate(names)}
    per_query = {str(qid): dict(zip(names, map(float, row))) for qid, row in zip(qids, values)}
    return EvaluationResult(mean=mean, per_query=per_query, conventions=conv)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def document_scores(dataset: RankingDataset, scores: np.ndarray | torch.Tensor | Sequence[float]) -> np.ndarray:
    """``scores`` as ``[n_docs]`` float64, checked to hold one non-NaN score per row of ``dataset``.

    Raises:
        ValueError: wrong length (a ``[n_docs, 1]`` column is accepted), or a NaN (its row and qid named).
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.shape != (dataset.n_docs,):
        raise ValueError(
            f"scores has shape {scores.shape} but {dataset.source} has {dataset.n_docs} documents; "
            f"give one score per document, in the dataset's row order"
        )
    bad = np.flatnonzero(np.isnan(scores))
    if bad.size:
        row = int(bad[0])
        query = int(np.searchsorted(dataset.query_offsets, row, side="right") - 1)
        raise ValueError(f"scores must not be NaN: row {row} (qid {dataset.qids[query]}) and {bad.size - 1} more")
    return scores


def evaluate_dataset(
    dataset: RankingDataset,
    scores: np.ndarray | torch.Tensor | Sequence[float],
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    *,
    conventions: Optional[str] = None,
    gain: Optional[str] = None,
    empty: Optional[str] = None,
    ties: Optional[str] = None,
    relevance_threshold: Optional[float] = None,
    max_grade: Optional[float] = None,
    score_precision: Optional[str] = None,
    batch_size: int = _CHUNK_QUERIES,
) -> EvaluationResult:
    """Evaluate one score per document of ``dataset``, query by query.

    Queries are sorted by length and processed ``batch_size`` at a time, each chunk padded to its
    own longest list, so memory is ``O(batch_size * L)`` whatever the dataset's size.

    Args:
        dataset: the queries, labels and (optional) document ids.
        scores: ``[n_docs]`` scores in the dataset's row order (numpy, torch or a sequence).
        metrics: names understood by :func:`parse_metric`, or a comma-separated string.
        conventions: preset, ``"ltrkit"`` (default) or ``"trec"``; the options below override it.
        gain: ``"exp2"`` or ``"linear"``.
        empty: ``"zero"``, ``"one"`` or ``"skip"``.
        ties: ``"input_order"``, ``"pessimistic"``, ``"optimistic"``, ``"average"`` or
            ``"docid_desc"`` (trec_eval).
        relevance_threshold: binary relevance is ``label >= relevance_threshold``.
        max_grade: ERR's top grade; ``None`` = the dataset's largest label.
        score_precision: ``"exact"`` or ``"float32"`` (round scores to float32 first, as
            trec_eval does).
        batch_size: queries per chunk.

    Returns:
        :class:`EvaluationResult` with every query of the dataset.

    Raises:
        ValueError: on a score count that differs from the dataset's documents, NaN scores
            (naming the row and qid), duplicate qids, negative labels, unknown metrics or options.

    Example:
        >>> import numpy as np
        >>> from ltrkit.data.dataset import RankingDataset
        >>> data = RankingDataset(features=np.zeros((4, 1), np.float32),
        ...     labels=np.array([1, 0, 0, 2], np.float32), query_offsets=np.array([0, 2, 4]),
        ...     qids=np.array(["a", "b"]))
        >>> evaluate_dataset(data, np.array([0.3, 0.1, 0.9, 0.2]), ["mrr"]).per_query
        {'a': {'mrr': 1.0}, 'b': {'mrr': 0.5}}
    """
    specs = _parse_all(metrics)
    conv = resolve_conventions(
        conventions, gain=gain, empty=empty, ties=ties, relevance_threshold=relevance_threshold,
        max_grade=max_grade, score_precision=score_precision,
    )
    batch_size = _check_batch_size(batch_size)
    scores = document_scores(dataset, scores)
    qids = [str(q) for q in dataset.qids]
    if len(set(qids)) != len(qids):
        dup = next(q for q, count in Counter(qids).items() if count > 1)
        raise ValueError(f"{dataset.source}: qid {dup!r} names more than one query; per-query results need unique qids")
    labels = np.asarray(dataset.labels, dtype=np.float64)
    return _evaluate_flat(
        scores, labels, np.asarray(dataset.query_offsets, dtype=np.int64), qids,
        dataset.doc_ids, None, specs, conv, batch_size,
    )


def evaluate_run(
    qrels: Mapping[str, Mapping[str, float]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    *,
    conventions: Optional[str] = None,
    gain: Optional[str] = None,
    empty: Optional[str] = None,
    ties: Optional[str] = None,
    relevance_threshold: Optional[float] = None,
    max_grade: Optional[float] = None,
    score_precision: Optional[str] = None,
    missing: str = "ignore",
    batch_size: int = _CHUNK_QUERIES,
) -> EvaluationResult:
    """Evaluate a run (``{qid: {docid: score}}``) against qrels (``{qid: {docid: label}}``).

    As trec_eval: run documents absent from the qrels are non-relevant; relevant documents
    absent from the run count for ``R`` (recall, AP) and the ideal DCG; negative judgements are
    non-relevant (label 0); queries of the run without qrels are ignored; queries of the qrels
    without a run (no document, or an empty dict) are ignored (``missing="ignore"``, trec_eval's default) or scored as an empty
    ranking, i.e. 0 (``missing="zero"``, trec_eval's ``-c``). The rank column of a run file plays
    no part: documents are ranked by score, ties by the ``ties`` rule.

    Args:
        qrels: judgements, e.g. from :func:`ltrkit.metrics.trec.read_qrels`.
        run: scores, e.g. from :func:`ltrkit.metrics.trec.read_run`.
        metrics, conventions, gain, empty, ties, relevance_threshold, max_grade,
            score_precision, batch_size: as :func:`evaluate_dataset`; use ``conventions="trec"`` to reproduce trec_eval.
        missing: ``"ignore"`` or ``"zero"``.

    Returns:
        :class:`EvaluationResult` over the evaluated queries (run order, then missing ones).

    Raises:
        ValueError: for unknown metrics or options, or NaN scores.

    Example:
        >>> qrels = {"q1": {"d1": 1, "d2": 0, "d9": 2}}
        >>> run = {"q1": {"d1": 0.5, "d2": 0.5}}
        >>> evaluate_run(qrels, run, ["recall", "mrr"], conventions="trec").mean
        {'recall': 0.5, 'mrr': 0.5}
    """
    specs = _parse_all(metrics)
    conv = resolve_conventions(
        conventions, gain=gain, empty=empty, ties=ties, relevance_threshold=relevance_threshold,
        max_grade=max_grade, score_precision=score_precision,
    )
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {list(MISSING_RULES)}, got {missing!r}")
    conv["missing"] = missing
    batch_size = _check_batch_size(batch_size)
    # as in files, a query is in the qrels/run only if it has at least one line there
    qids = [q for q in run if run[q] and qrels.get(q)]
    if missing == "zero":
        qids += [q for q in qrels if qrels[q] and not run.get(q)]
    scores: list[float] = []
    labels: list[float] = []
    retrieved: list[bool] = []
    doc_ids: list[str] = []
    lengths: list[int] = []
    for qid in qids:
        judged = qrels[qid]
        ranked = run.get(qid, {})
        for doc, score in ranked.items():
            scores.append(score)
            labels.append(max(float(judged.get(doc, 0)), 0.0))
            retrieved.append(True)
            doc_ids.append(doc)
        unretrieved = [(doc, float(rel)) for doc, rel in judged.items() if rel > 0 and doc not in ranked]
        for doc, rel in unretrieved:
            scores.append(0.0)
            labels.append(rel)
            retrieved.append(False)
            doc_ids.append(doc)
        lengths.append(len(ranked) + len(unretrieved))
    score_array = np.asarray(scores, dtype=np.float64)
    retrieved_array = np.asarray(retrieved, dtype=bool)
    if np.isnan(score_array[retrieved_array]).any():
        raise ValueError("run scores must not be NaN")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _evaluate_flat(
        score_array, np.asarray(labels, dtype=np.float64), offsets, qids,
        np.asarray(doc_ids, dtype=str) if doc_ids else np.zeros(0, dtype=str),
        retrieved_array, specs, conv, batch_size,
    )
