"""Click-log simulation: rank each query with a logging policy, sample sessions, apply a click
behaviour, stream the impressions in chunks.

The logging policy ranks each query's documents by descending score (ties keep the data's row
order) and shows the top ``K``. Each session draws a query uniformly among the queries with at
least one document; a randomised ``intervention`` may then permute the shown list, for
propensity estimation:

* ``none``: the logging ranking;
* ``topk_shuffle``: a uniformly random permutation of the shown documents (RandTop-K,
  Joachims et al. 2017);
* ``randpair``: the documents at rank 1 and at a rank ``k`` drawn uniformly from ``1..n`` swap
  (``k = 1``: no swap), the swap intervention of Joachims et al. 2017;
* ``randn``: the documents at two ranks drawn uniformly and independently from ``1..n`` swap
  (intervention harvesting over every pair of ranks; Agarwal et al. 2019).

``n`` is the number of documents shown in the session. True propensities (the behaviour's
marginal examination probabilities) are floored at ``1e-6``: a rank the model can never reach
(below a click certain to end the session) is logged with that floor and is never clicked.
Every chunk records each impression's rank
under the logging policy (``logging_ranks``), which the randomisation estimator of
:mod:`ltrkit.clicks.propensity` compares with the shown rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np

from ltrkit._checks import check_choice, check_int
from ltrkit.clicks.behaviours import ClickBehaviour, Impressions
from ltrkit.clicks.mappings import SeedLike, as_generator
from ltrkit.clicks.models import PROB_EPS
from ltrkit.clicks.sessions import ClickSessions
from ltrkit.data.dataset import RankingDataset

__all__ = [
    "INTERVENTIONS", "LABELS", "SessionChunk", "SimulationResult", "logging_ranking", "intervene", "simulate_sessions",
    "simulate_log", "write_simulation",
]

INTERVENTIONS = ("none", "topk_shuffle", "randpair", "randn")


@dataclass
class SessionChunk:
    """Consecutive simulated sessions: ``sessions`` plus the ids and logging scores of their impressions.

    Attributes:
        first_session: id of the chunk's first session (ids are consecutive from 0 over a run).
        sessions: docs (data rows), clicks, mask, queries (query index), propensities (when the
            behaviour defines them) and logging ranks, all ``[C, K]`` / ``[C]``.
        scores: ``[C, K]`` logging-policy scores of the shown documents (0 at padding).
    """

    first_session: int
    sessions: ClickSessions
    scores: np.ndarray


def logging_ranking(dataset: RankingDataset, scores: np.ndarray, top_k: int) -> np.ndarray:
    """``[Q, K]`` data rows of each query's top ``K`` by descending score (ties: row order), ``-1`` padding."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (dataset.n_docs,):
        raise ValueError(f"{scores.shape[0] if scores.ndim == 1 else scores.shape} scores for {dataset.n_docs} documents; give one per row")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    check_int("top_k", top_k)
    query = np.repeat(np.arange(dataset.n_queries), dataset.list_lengths)
    rows = np.arange(dataset.n_docs)
    order = np.lexsort((rows, -scores, query))
    rank = rows - dataset.query_offsets[query]  # rank within the query, since order keeps queries contiguous
    shown = np.full((dataset.n_queries, top_k), -1, dtype=np.int64)
    keep = rank < top_k
    shown[query[keep], rank[keep]] = order[keep]
    return shown


def intervene(n_shown: np.ndarray, top_k: int, intervention: str, rng: np.random.Generator) -> np.ndarray:
    """``[S, K]`` permutation of each session's ranks: shown rank ``r`` holds logging rank ``perm[:, r]``.

    Only the first ``n_shown`` ranks of a session move; padding stays in place.
    """
    check_choice("intervention", intervention, INTERVENTIONS)
    s = n_shown.shape[0]
    perm = np.broadcast_to(np.arange(top_k), (s, top_k)).copy()
    if intervention == "none":
        return perm
    shown = perm < n_shown[:, None]
    if intervention == "topk_shuffle":
        keys = np.where(shown, rng.random((s, top_k)), np.inf)
        return np.argsort(keys, axis=1, kind="stable")
    rows = np.arange(s)
    if intervention == "randpair":
        first = np.zeros(s, dtype=np.int64)
    else:
        first = np.floor(rng.random(s) * n_shown).astype(np.int64)
    second = np.floor(rng.random(s) * n_shown).astype(np.int64)
    perm[rows, first], perm[rows, second] = second, first
    return perm


def simulate_sessions(
    dataset: RankingDataset,
    scores: np.ndarray,
    behaviour: ClickBehaviour,
    *,
    sessions: int,
    top_k: int = 10,
    seed: SeedLike = 0,
    intervention: str = "none",
    chunk_size: int = 1 << 16,
) -> Iterator[SessionChunk]:
    """Simulate ``sessions`` sessions in chunks of ``chunk_size`` (vectorised within a chunk).

    Args:
        dataset: the documents, their labels (the true relevance) and features.
        scores: ``[n_docs]`` logging-policy scores in the data's row order.
        behaviour: the click behaviour (graded mappings get ``max_grade`` = the largest label).
        sessions: number of sessions.
        top_k: documents shown per session (fewer when a query has fewer).
        seed: an int seed or a ``numpy.random.Generator``; the same seed gives the same log.
        intervention: one of :data:`INTERVENTIONS`.
        chunk_size: sessions per chunk (behaviours that compare documents use chunks of at most
            4,096 sessions, since they hold ``[C, K, F]`` features).

    Yields:
        :class:`SessionChunk` in session order.

    Raises:
        ValueError: bad arguments, or a dataset without any document.
    """
    check_int("sessions", sessions)
    check_int("chunk_size", chunk_size)
    check_choice("intervention", intervention, INTERVENTIONS)
    shown = logging_ranking(dataset, scores, top_k)
    lengths = (shown >= 0).sum(axis=1)
    candidates = np.flatnonzero(lengths > 0)
    if candidates.size == 0:
        raise ValueError(f"{dataset.source}: no query has a document to show")
    rng = as_generator(seed)
    labels = np.asarray(dataset.labels, dtype=np.float64)
    behaviour = behaviour.with_max_grade(float(labels.max(initial=0.0)))
    scores = np.asarray(scores, dtype=np.float64)
    if behaviour.needs_features:
        chunk_size = min(chunk_size, 4096)
    for start in range(0, sessions, chunk_size):
        count = min(chunk_size, sessions - start)
        queries = candidates[rng.integers(candidates.size, size=count)]
        n_shown = lengths[queries]
        perm = intervene(n_shown, top_k, intervention, rng)
        docs = np.take_along_axis(shown[queries], perm, axis=1)
        mask = docs >= 0
        safe = np.where(mask, docs, 0)
        relevance = np.where(mask, labels[safe], 0.0)
        features = np.where(mask[:, :, None], dataset.features[safe], 0.0) if behaviour.needs_features else None
        clicks, propensities = behaviour.simulate(Impressions(relevance, mask, features), rng)
        if propensities is not None:
            # a rank the model can never reach (below a certain click under CM) has propensity 0:
            # floored so that every logged propensity is usable as an IPS weight
            propensities = np.where(mask, np.maximum(propensities, PROB_EPS), 0.0)
        chunk = ClickSessions(docs, clicks & mask, mask, queries, propensities, np.where(mask, perm + 1, 0))
        yield SessionChunk(start, chunk, np.where(mask, scores[safe], 0.0))


def simulate_log(
    dataset: RankingDataset,
    scores: np.ndarray,
    behaviour: ClickBehaviour,
    **options: object,
) -> Tuple[ClickSessions, np.ndarray]:
    """All sessions of :func:`simulate_sessions` in memory: ``(sessions, logging scores [S, K])``."""
    chunks = list(simulate_sessions(dataset, scores, behaviour, **options))  # type: ignore[arg-type]
    parts = [c.sessions for c in chunks]
    propensities: Optional[np.ndarray] = None
    if all(p.propensities is not None for p in parts):
        propensities = np.concatenate([p.propensities for p in parts])
    merged = ClickSessions(
        np.concatenate([p.docs for p in parts]), np.concatenate([p.clicks for p in parts]),
        np.concatenate([p.mask for p in parts]), np.concatenate([p.queries for p in parts]),
        propensities, np.concatenate([p.logging_ranks for p in parts]),
    )
    return merged, np.concatenate([c.scores for c in chunks])


LABELS = ("ctr", "clicks")


@dataclass
class SimulationResult:
    """What :func:`write_simulation` wrote: paths and counts."""

    log: Path
    train: Path
    positions: Path
    metadata: Path
    impressions: int
    clicks: int
    has_propensities: bool


def write_simulation(
    out_dir: Union[str, Path],
    dataset: RankingDataset,
    scores: np.ndarray,
    behaviour: ClickBehaviour,
    *,
    sessions: int,
    top_k: int = 10,
    seed: int = 0,
    intervention: str = "none",
    file_format: str = "parquet",
    label: str = "ctr",
    metadata: Optional[Dict[str, Any]] = None,
    chunk_size: int = 1 << 16,
) -> SimulationResult:
    """Simulate a click log and write it with the aggregated training set into ``out_dir``.

    Files (each written to a temporary file and renamed, so none is ever half-written):

    * ``clicks.parquet`` / ``clicks.csv``: the log (:mod:`ltrkit.clicks.log`), streamed in chunks;
    * ``train.txt``: LETOR lines of every (query, document) shown at least once, with the
      document's features and its click-through rate (``label="ctr"``) or click count
      (``"clicks"``) as label; ``ltrkit train`` reads it;
    * ``train.positions.csv``: one line per ``train.txt`` row, for IPS: ``qid, doc`` (its row in
      the source data), ``impressions, clicks, mean_position`` and, when the behaviour defines
      propensities, ``ips_ctr = sum(clicked / propensity) / impressions``;
    * ``simulation.json``: the options, counts and ``metadata``.

    Raises:
        ValueError: bad options or scores.
    """
    from ltrkit.clicks.log import ClickLogWriter
    from ltrkit.training._io import write_json

    check_choice("label", label, LABELS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = simulate_sessions(dataset, scores, behaviour, sessions=sessions, top_k=top_k, seed=seed,
                               intervention=intervention, chunk_size=chunk_size)
    first = next(chunks)
    has_propensities = first.sessions.propensities is not None
    n = dataset.n_docs
    impressions, clicks, position_sum, ips_sum = (np.zeros(n) for _ in range(4))
    log_path = out / f"clicks.{file_format}"
    with ClickLogWriter(log_path, dataset, file_format=file_format, propensities=has_propensities) as writer:
        for chunk in _chain(first, chunks):
            part = chunk.sessions
            m = part.mask
            docs = part.docs[m]
            writer.write(chunk.first_session, part, chunk.scores)
            impressions += np.bincount(docs, minlength=n)
            clicks += np.bincount(docs, part.clicks[m], minlength=n)
            position_sum += np.bincount(docs, np.broadcast_to(np.arange(1, m.shape[1] + 1), m.shape)[m], minlength=n)
            if has_propensities:
                ips_sum += np.bincount(docs, part.clicks[m] / part.propensities[m], minlength=n)
        # inside the log's block: if the training set cannot be written, the log is not kept either
        train_path, positions_path = _write_training_set(
            out, dataset, label, impressions, clicks, position_sum, ips_sum if has_propensities else None)
    meta_path = out / "simulation.json"
    write_json(meta_path, {
        "sessions": sessions, "top_k": top_k, "seed": seed, "intervention": intervention, "label": label,
        "impressions": int(impressions.sum()), "clicks": int(clicks.sum()), "propensities": has_propensities,
        "files": {"log": log_path.name, "train": train_path.name, "positions": positions_path.name},
        **(metadata or {}),
    })
    return SimulationResult(log_path, train_path, positions_path, meta_path, int(impressions.sum()), int(clicks.sum()), has_propensities)


def _write_training_set(
    out: Path, dataset: RankingDataset, label: str, impressions: np.ndarray, clicks: np.ndarray,
    position_sum: np.ndarray, ips_sum: Optional[np.ndarray],
) -> Tuple[Path, Path]:
    """``train.txt`` and ``train.positions.csv`` from per-row counts (see :func:`write_simulation`)."""
    from ltrkit.data.letor import write_letor
    from ltrkit.training._io import write_text

    rows = np.flatnonzero(impressions > 0)
    query = np.repeat(np.arange(dataset.n_queries), dataset.list_lengths)[rows]
    kept_queries, counts = np.unique(query, return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ctr = clicks[rows] / impressions[rows]
    train = RankingDataset(
        features=np.ascontiguousarray(dataset.features[rows]),
        labels=(ctr if label == "ctr" else clicks[rows]).astype(np.float32),
        query_offsets=offsets,
        qids=np.asarray(dataset.qids)[kept_queries],
        doc_ids=None if dataset.doc_ids is None else np.asarray(dataset.doc_ids)[rows],
        source=f"clicks simulated on {dataset.source}",
    )
    train_path, positions_path = out / "train.txt", out / "train.positions.csv"
    write_letor(train, train_path)
    qids = np.asarray(dataset.qids).astype(str)[query]
    header = "qid,doc,impressions,clicks,mean_position" + (",ips_ctr" if ips_sum is not None else "")
    lines = [header]
    mean_position = (position_sum[rows] / impressions[rows]).tolist()
    ips = (ips_sum[rows] / impressions[rows]).tolist() if ips_sum is not None else []
    for i, row in enumerate(rows.tolist()):
        line = f"{qids[i]},{row},{int(impressions[row])},{int(clicks[row])},{mean_position[i]!r}"
        lines.append(line + (f",{ips[i]!r}" if ips_sum is not None else ""))
    write_text(positions_path, "\n".join(lines) + "\n")
    return train_path, positions_path


def _chain(first: SessionChunk, rest: Iterator[SessionChunk]) -> Iterator[SessionChunk]:
    yield first
    yield from rest
