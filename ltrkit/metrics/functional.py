"""Per-query IR metrics on padded batches: DCG, NDCG, RR, AP, ERR, precision and recall.

Every function takes ``scores [..., L]``, ``labels [..., L]`` and an optional boolean ``mask``
(True = a real document) and returns one float64 value per list, shape ``[...]``. Each batch is
sorted once and reduced with tensor operations; there is no Python loop over queries. Averaging
over queries is a separate, explicit step (see :mod:`ltrkit.metrics.evaluation`).

Conventions (all explicit keyword options):

* **Ranking.** Higher score = better rank; ranks are 1-based; padded positions never take a rank.
  NaN scores at real positions raise; ``-inf``/``inf`` scores are ordinary values.
* **Ties** (``ties=``) in scores, by name:

  - ``"input_order"`` (default): stable, tied documents keep their order in the input;
  - ``"pessimistic"``: tied documents in ascending label order (worst case);
  - ``"optimistic"``: tied documents in descending label order (best case);
  - ``"average"``: the expected value over uniformly random orders of each tied group
    (McSherry & Najork, "Computing information retrieval performance measures efficiently in
    the presence of tied scores", ECIR 2008). Exact for the metrics that are linear in the
    positions of documents: DCG, NDCG, precision and recall. RR, AP and ERR are not linear in
    positions, so they raise ``ValueError`` with ``ties="average"``.

  trec_eval's rule (equal scores ordered by document id, descending) needs document ids, which
  tensors do not carry: :mod:`ltrkit.metrics.evaluation` implements it as ``ties="docid_desc"``
  by reordering each query's documents by id before calling these functions with
  ``"input_order"``.
* **Gain** (``gain=``, DCG/NDCG): ``"exp2"`` = ``2^rel - 1`` (default, Burges et al. 2005) or
  ``"linear"`` = ``rel`` (Järvelin & Kekäläinen 2002; trec_eval).
* **Relevant** for the binary metrics (RR, AP, precision, recall): ``label >=
  relevance_threshold`` (default 1, as trec_eval's ``relevance_level``).
* **Queries with no relevant document** (``empty=``): for DCG, NDCG and ERR a list with no
  positive label; for the binary metrics a list with no label ``>= relevance_threshold``. Such a
  list gets ``0.0`` (``"zero"``, default; trec_eval, sklearn, rax), ``1.0`` (``"one"``; LightGBM,
  allRank) or ``NaN`` (``"skip"``; dropped from means by the evaluation layer). Lists whose
  documents are all padding are treated the same way.
* **Cutoff** ``k``: ``None`` = the whole list. ``k`` larger than the list is allowed: DCG, NDCG,
  RR, AP, ERR and recall then equal their values without cutoff; precision@k always divides by
  ``k`` (trec_eval's ``P_k``), so a 3-document list with 3 relevant documents has P@10 = 0.3.
  Precision without cutoff divides by the number of ranked documents.
* **AP denominator**: the number of relevant documents of the list, ``R``, including those that
  are not ranked (``retrieved``) and, with a cutoff, those ranked below ``k`` (trec_eval's
  ``map`` and ``map_cut_k``; ranx's ``map@k``), not ``min(k, R)``.
* **Judged but not retrieved documents** (``retrieved=``, optional ``[..., L]`` bool): documents
  with ``mask`` True and ``retrieved`` False count towards the ideal DCG, ``R`` (recall, AP) and
  whether a query has relevant documents, but never take a rank. This is how trec_eval treats
  relevant documents that are missing from a run.
* **Labels** must be finite and ``>= 0`` at real positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ltrkit._checks import check_choice, check_k, check_ranking_inputs
from ltrkit.metrics.ranking import check_gain, gain_values, rank_discounts

TIE_RULES = ("input_order", "pessimistic", "optimistic", "average")
EMPTY_RULES = ("zero", "one", "skip")

__all__ = [
    "EMPTY_RULES",
    "TIE_RULES",
    "average_precision",
    "dcg",
    "err",
    "ndcg",
    "precision",
    "recall",
    "reciprocal_rank",
]


def check_ties(ties: str, *, allowed: tuple[str, ...] = TIE_RULES) -> str:
    """Return ``ties`` if it is in ``allowed``, else raise ``ValueError``."""
    return check_choice("ties", ties, allowed)


def check_empty(empty: str) -> str:
    """Return ``empty`` if it is one of ``"zero"``, ``"one"``, ``"skip"``, else raise."""
    return check_choice("empty", empty, EMPTY_RULES)


def check_relevance_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float if it is finite and > 0, else raise ``ValueError``.

    It must be positive so that padding and label-0 documents are never relevant.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"relevance_threshold must be a number > 0, got {threshold!r}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"relevance_threshold must be finite and > 0, got {threshold!r}")
    return float(threshold)


@dataclass(frozen=True)
class Ranking:
    """A batch ranked once, shared by every metric computed on it (internal).

    Attributes:
        labels: ``[N, L]`` float64 labels in rank order (rank 1 first).
        ranked: ``[N, L]`` bool, True where the rank position holds a retrieved real document.
            Retrieved documents occupy the leading positions of each row.
        all_labels: ``[N, L]`` float64 labels of every real document (retrieved or not), in
            input order, 0 at padding: the ideal ranking and ``R`` come from these.
        all_mask: ``[N, L]`` bool real documents in input order.
        tie_group: ``[N, L]`` int64 id of each rank position's tie group (``ties="average"``
            only, else ``None``).
        batch_shape: leading shape of the caller's input, restored on the outputs.
        ties: the tie rule used.
    """

    labels: torch.Tensor
    ranked: torch.Tensor
    all_labels: torch.Tensor
    all_mask: torch.Tensor
    tie_group: Optional[torch.Tensor]
    batch_shape: torch.Size
    ties: str

    @property
    def length(self) -> int:
        return int(self.labels.shape[-1])

    def positions(self) -> torch.Tensor:
        """``[L]`` float64 1-based rank positions."""
        return torch.arange(1, self.length + 1, dtype=torch.float64, device=self.labels.device)

    def restore(self, values: torch.Tensor) -> torch.Tensor:
        """Reshape ``[N]`` per-list values to the caller's batch shape."""
        return values.reshape(self.batch_shape)


def rank_batch(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> Ranking:
    """Validate a batch and sort it once (internal; the metric functions call it).

    Raises:
        ValueError: on bad shapes/dtypes (see :func:`ltrkit._checks.check_ranking_inputs`),
            NaN scores or negative labels at real positions, an unknown ``ties``, or a
            ``retrieved`` that is not a boolean tensor of the same shape.
    """
    check_ties(ties)
    scores, labels, mask = check_ranking_inputs(scores, labels, mask)
    if retrieved is None:
        retrieved = mask
    else:
        if not isinstance(retrieved, torch.Tensor) or retrieved.dtype != torch.bool:
            raise ValueError(f"retrieved must be a torch.Tensor of dtype torch.bool, got {getattr(retrieved, 'dtype', type(retrieved).__name__)}")
        if retrieved.shape != scores.shape:
            raise ValueError(f"retrieved shape {tuple(retrieved.shape)} does not match scores shape {tuple(scores.shape)}")
        retrieved = retrieved & mask
    if bool((labels < 0).any()):
        raise ValueError(f"labels must be >= 0 at real (mask=True) positions, got minimum {labels.min().item()!r}")
    if bool((torch.isnan(scores) & retrieved).any()):
        raise ValueError("scores must not be NaN at real (mask=True) positions")

    batch_shape = scores.shape[:-1]
    flat = (math.prod(batch_shape), scores.shape[-1])
    scores = scores.reshape(flat)
    labels = labels.reshape(flat).to(torch.float64)
    mask = mask.reshape(flat)
    retrieved = retrieved.reshape(flat)

    # Unranked positions get -inf so one descending sort puts them after every finite score.
    keyed = scores.masked_fill(~retrieved, -math.inf)
    real_neginf = torch.isneginf(scores) & retrieved
    order = _descending_order(keyed, labels, retrieved, real_neginf, ties)
    if bool(real_neginf.any()):
        # A real -inf score ties with the unranked positions; a stable sort on "is unranked"
        # moves every retrieved document in front without disturbing their order.
        unranked = (~torch.gather(retrieved, -1, order)).to(torch.uint8)
        order = torch.gather(order, -1, torch.sort(unranked, dim=-1, stable=True).indices)

    ranked = torch.gather(retrieved, -1, order)
    tie_group = None
    if ties == "average":
        sorted_scores = torch.gather(scores, -1, order)
        starts = torch.ones_like(ranked)
        starts[:, 1:] = (sorted_scores[:, 1:] != sorted_scores[:, :-1]) | (ranked[:, 1:] != ranked[:, :-1])
        tie_group = torch.cumsum(starts.to(torch.int64), dim=-1) - 1
    return Ranking(
        labels=torch.gather(labels, -1, order),
        ranked=ranked,
        all_labels=labels,
        all_mask=mask,
        tie_group=tie_group,
        batch_shape=batch_shape,
        ties=ties,
    )


def _stable_descending_order(keyed: torch.Tensor, labels: torch.Tensor, ties: str) -> torch.Tensor:
    """Descending order of ``keyed [N, L]``; equal keys by input order, or by label for
    ``"pessimistic"`` (ascending) / ``"optimistic"`` (descending)."""
    if ties in ("pessimistic", "optimistic"):
        # Lexicographic (score desc, label asc/desc) by two stable sorts, least significant first.
        by_label = torch.sort(labels, dim=-1, descending=ties == "optimistic", stable=True).indices
        within = torch.sort(torch.gather(keyed, -1, by_label), dim=-1, descending=True, stable=True).indices
        return torch.gather(by_label, -1, within)
    return torch.sort(keyed, dim=-1, descending=True, stable=True).indices


def _descending_order(
    keyed: torch.Tensor, labels: torch.Tensor, retrieved: torch.Tensor, real_neginf: torch.Tensor, ties: str
) -> torch.Tensor:
    """Rank order of ``keyed [N, L]`` (unranked positions hold -inf) under the tie rule.

    On CPU, numpy's vectorised quicksort is about ten times faster than torch's sort, but it
    leaves equal keys in no particular order; rows where two ranked documents tie (or a real
    document scores -inf, tying with the unranked positions) are re-sorted with the stable rule.
    Rows without ties have one descending order whatever the rule.
    """
    if keyed.device.type != "cpu" or keyed.dtype not in (torch.float32, torch.float64) or keyed.numel() == 0:
        return _stable_descending_order(keyed, labels, ties)
    order = torch.from_numpy(np.argsort(-keyed.detach().numpy(), axis=-1))
    sorted_values = torch.gather(keyed, -1, order)
    sorted_ranked = torch.gather(retrieved, -1, order)
    ties_found = (sorted_values[:, 1:] == sorted_values[:, :-1]) & sorted_ranked[:, 1:] & sorted_ranked[:, :-1]
    redo = torch.nonzero(ties_found.any(dim=-1) | real_neginf.any(dim=-1)).reshape(-1)
    if redo.numel():
        order[redo] = _stable_descending_order(keyed[redo], labels[redo], ties)
    return order


def _average_within_ties(weights: torch.Tensor, ranking: Ranking) -> torch.Tensor:
    """``[N, L]`` per-position weights replaced by their mean over each tie group."""
    group = ranking.tie_group
    weights = weights.expand(group.shape).contiguous()
    sums = torch.zeros_like(weights).scatter_add_(-1, group, weights)
    counts = torch.zeros_like(weights).scatter_add_(-1, group, torch.ones_like(weights))
    return torch.gather(sums / counts.clamp_min(1.0), -1, group)


def _position_weights(base: torch.Tensor, k: Optional[int], ranking: Ranking) -> torch.Tensor:
    """``[N or 1, L]`` weights ``base[r] * [r <= k]``, averaged over ties if asked."""
    if k is not None and k < ranking.length:
        base = base.clone()
        base[k:] = 0.0
    base = base.unsqueeze(0)
    if ranking.ties == "average":
        return _average_within_ties(base, ranking)
    return base


def _apply_empty(values: torch.Tensor, has_relevant: torch.Tensor, empty: str) -> torch.Tensor:
    """Replace the values of lists without relevant documents by the ``empty`` rule's value."""
    fill = {"zero": 0.0, "one": 1.0, "skip": math.nan}[empty]
    return torch.where(has_relevant, values, torch.full_like(values, fill))


def _binary_relevance(ranking: Ranking, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(relevant [N, L] float64 in rank order, n_relevant [N] float64 over all real docs)``."""
    relevant = ((ranking.labels >= threshold) & ranking.ranked).to(torch.float64)
    n_relevant = ((ranking.all_labels >= threshold) & ranking.all_mask).sum(dim=-1).to(torch.float64)
    return relevant, n_relevant


def _not_averaged(ranking: Ranking, metric: str) -> None:
    if ranking.ties == "average":
        raise ValueError(
            f"ties='average' is not supported by {metric} (not linear in document positions); "
            f"use it with dcg, ndcg, precision or recall, or choose one of "
            f"{[t for t in TIE_RULES if t != 'average']}"
        )


def dcg_from_ranking(ranking: Ranking, *, k: Optional[int], gain: str, empty: Optional[str] = None) -> torch.Tensor:
    """DCG@k ``[N]`` of a ranked batch (internal); ``empty`` given = apply that rule."""
    if empty is not None:
        return _apply_empty(dcg_from_ranking(ranking, k=k, gain=gain), _has_graded(ranking), empty)
    discounts = rank_discounts(ranking.length, dtype=torch.float64, device=ranking.labels.device)
    if ranking.ties != "average" and k is not None and k < ranking.length:
        gains = gain_values(ranking.labels[:, :k], gain) * ranking.ranked[:, :k]
        return (gains * discounts[:k]).sum(dim=-1)
    weights = _position_weights(discounts, k, ranking)
    return (gain_values(ranking.labels, gain) * ranking.ranked * weights).sum(dim=-1)


def _largest(values: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` largest entries of each row of ``values [N, L]``, descending."""
    if values.device.type != "cpu" or count == 0:
        return torch.topk(values, count, dim=-1, sorted=True).values
    # numpy's partition + vectorised sort beat torch.topk/sort several times on CPU
    negated = -values.numpy()
    if count < negated.shape[-1]:
        negated = np.partition(negated, count - 1, axis=-1)[:, :count]
    return torch.from_numpy(-np.sort(negated, axis=-1))


def ideal_dcg_from_ranking(ranking: Ranking, *, k: Optional[int], gain: str) -> torch.Tensor:
    """DCG@k ``[N]`` of the ideal order of every real document, retrieved or not (internal)."""
    cutoff = ranking.length if k is None else min(k, ranking.length)
    # padding labels are 0 and labels are >= 0, so padding never displaces a real gain
    best = _largest(ranking.all_labels, cutoff)
    discounts = rank_discounts(cutoff, dtype=torch.float64, device=best.device)
    return (gain_values(best, gain) * discounts).sum(dim=-1)


def _has_graded(ranking: Ranking) -> torch.Tensor:
    """``[N]`` bool: the list has a real document with a positive label."""
    return ((ranking.all_labels > 0) & ranking.all_mask).any(dim=-1)


def ndcg_from_ranking(ranking: Ranking, *, k: Optional[int], gain: str, empty: str) -> torch.Tensor:
    """NDCG@k ``[N]`` of a ranked batch (internal; see :func:`ndcg`)."""
    ideal = ideal_dcg_from_ranking(ranking, k=k, gain=gain)
    actual = dcg_from_ranking(ranking, k=k, gain=gain)
    values = torch.where(ideal > 0, actual / ideal.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(actual))
    return _apply_empty(values, _has_graded(ranking), empty)


def rr_from_ranking(ranking: Ranking, *, k: Optional[int], threshold: float, empty: str) -> torch.Tensor:
    """RR@k ``[N]`` of a ranked batch (internal; see :func:`reciprocal_rank`)."""
    _not_averaged(ranking, "reciprocal_rank")
    relevant, n_relevant = _binary_relevance(ranking, threshold)
    relevant = relevant[:, :k] if k is not None else relevant
    found = relevant.any(dim=-1) if relevant.shape[-1] else torch.zeros_like(n_relevant, dtype=torch.bool)
    first = torch.argmax(relevant, dim=-1) if relevant.shape[-1] else torch.zeros_like(n_relevant, dtype=torch.int64)
    values = torch.where(found, 1.0 / (first.to(torch.float64) + 1.0), torch.zeros_like(n_relevant))
    return _apply_empty(values, n_relevant > 0, empty)


def ap_from_ranking(ranking: Ranking, *, k: Optional[int], threshold: float, empty: str) -> torch.Tensor:
    """AP@k ``[N]`` of a ranked batch (internal; see :func:`average_precision`)."""
    _not_averaged(ranking, "average_precision")
    relevant, n_relevant = _binary_relevance(ranking, threshold)
    relevant = relevant[:, :k] if k is not None else relevant
    positions = ranking.positions()[: relevant.shape[-1]]
    precision_at = torch.cumsum(relevant, dim=-1) / positions
    values = (precision_at * relevant).sum(dim=-1) / n_relevant.clamp_min(1.0)
    return _apply_empty(values, n_relevant > 0, empty)


def err_from_ranking(ranking: Ranking, *, k: Optional[int], max_grade: Optional[float], empty: str) -> torch.Tensor:
    """ERR@k ``[N]`` of a ranked batch (internal; see :func:`err`)."""
    _not_averaged(ranking, "err")
    top = ranking.all_labels.max() if ranking.all_labels.numel() else torch.zeros((), dtype=torch.float64)
    if max_grade is None:
        max_grade_t = top
    else:
        if isinstance(max_grade, bool) or not isinstance(max_grade, (int, float)) or not math.isfinite(max_grade) or max_grade < 0:
            raise ValueError(f"max_grade must be a finite number >= 0 or None, got {max_grade!r}")
        if float(top) > max_grade:
            raise ValueError(f"labels must be <= max_grade={max_grade!r} for err, got a label {float(top)!r}")
        max_grade_t = torch.tensor(float(max_grade), dtype=torch.float64, device=top.device)
    labels = ranking.labels[:, :k] if k is not None else ranking.labels
    ranked = ranking.ranked[:, :k] if k is not None else ranking.ranked
    stop = (torch.pow(2.0, labels) - 1.0) / torch.pow(2.0, max_grade_t) * ranked
    # probability that the user reaches rank r: product of (1 - R_i) over the ranks above r
    reach = torch.cumprod(1.0 - stop, dim=-1)
    reach = torch.cat([torch.ones_like(reach[:, :1]), reach[:, :-1]], dim=-1)
    positions = ranking.positions()[: labels.shape[-1]]
    values = (stop * reach / positions).sum(dim=-1)
    return _apply_empty(values, _has_graded(ranking), empty)


def precision_from_ranking(ranking: Ranking, *, k: Optional[int], threshold: float, empty: str) -> torch.Tensor:
    """P@k ``[N]`` of a ranked batch (internal; see :func:`precision`)."""
    relevant, n_relevant = _binary_relevance(ranking, threshold)
    if k is None:
        n_ranked = ranking.ranked.sum(dim=-1).to(torch.float64)
        values = relevant.sum(dim=-1) / n_ranked.clamp_min(1.0)
    else:
        ones = torch.ones(ranking.length, dtype=torch.float64, device=relevant.device)
        values = (relevant * _position_weights(ones, k, ranking)).sum(dim=-1) / k
    return _apply_empty(values, n_relevant > 0, empty)


def recall_from_ranking(ranking: Ranking, *, k: Optional[int], threshold: float, empty: str) -> torch.Tensor:
    """Recall@k ``[N]`` of a ranked batch (internal; see :func:`recall`)."""
    relevant, n_relevant = _binary_relevance(ranking, threshold)
    ones = torch.ones(ranking.length, dtype=torch.float64, device=relevant.device)
    hits = (relevant * _position_weights(ones, k, ranking)).sum(dim=-1)
    return _apply_empty(hits / n_relevant.clamp_min(1.0), n_relevant > 0, empty)


def dcg(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    gain: str = "exp2",
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Discounted cumulative gain at ``k`` of each list.

    .. math:: \mathrm{DCG@k} = \sum_{r=1}^{\min(k, n)} \frac{g(\mathit{rel}_r)}{\log_2(r + 1)}

    with ``g(rel) = 2^rel - 1`` (``gain="exp2"``) or ``rel`` (``"linear"``). Järvelin &
    Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002; exp2 gain from
    Burges et al., "Learning to rank using gradient descent", ICML 2005.

    Args:
        scores: ``[..., L]`` floating point; higher = ranked higher.
        labels: ``[..., L]`` graded relevance ``>= 0``.
        mask: ``[..., L]`` bool, True = real document; ``None`` = all real.
        k: cutoff, positive int or ``None`` (whole list); ``k > L`` equals no cutoff.
        gain: ``"exp2"`` or ``"linear"``.
        empty: value for lists without a positive label: ``"zero"`` (their DCG), ``"one"``,
            ``"skip"`` (NaN).
        ties: ``"input_order"``, ``"pessimistic"``, ``"optimistic"`` or ``"average"``.
        retrieved: optional ``[..., L]`` bool; real documents with False never take a rank.

    Returns:
        ``[...]`` float64 DCG per list.

    Raises:
        ValueError: on bad shapes, NaN scores or negative labels at real positions, or an
            unknown option value.

    Example:
        >>> import torch
        >>> dcg(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]), gain="linear")
        tensor([2.3928], dtype=torch.float64)
    """
    k = check_k(k)
    check_gain(gain)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(dcg_from_ranking(ranking, k=k, gain=gain, empty=empty))


def ndcg(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    gain: str = "exp2",
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Normalised DCG at ``k`` of each list.

    .. math:: \mathrm{NDCG@k} = \mathrm{DCG@k} / \mathrm{IDCG@k}

    where IDCG@k is the DCG@k of the list's documents (retrieved or not) sorted by label. A list
    with no positive label (IDCG = 0) gets the ``empty`` value. ``k > L`` equals full NDCG.
    Järvelin & Kekäläinen, TOIS 2002.

    Args:
        scores: ``[..., L]`` floating point; higher = ranked higher.
        labels: ``[..., L]`` graded relevance ``>= 0``.
        mask: ``[..., L]`` bool, True = real document; ``None`` = all real.
        k: cutoff, positive int or ``None`` (whole list).
        gain: ``"exp2"`` (``2^rel - 1``, default) or ``"linear"`` (trec_eval).
        empty: ``"zero"`` (default; trec_eval/sklearn), ``"one"`` (LightGBM) or ``"skip"`` (NaN).
        ties: ``"input_order"``, ``"pessimistic"``, ``"optimistic"`` or ``"average"``
            (McSherry & Najork 2008; sklearn's ``ndcg_score`` default).
        retrieved: optional ``[..., L]`` bool; real documents with False count only for IDCG.

    Returns:
        ``[...]`` float64 NDCG per list, in ``[0, 1]`` (NaN for skipped lists).

    Raises:
        ValueError: on bad shapes, NaN scores or negative labels at real positions, or an
            unknown option value.

    Example:
        >>> import torch
        >>> s = torch.tensor([[0.1, 0.9, 0.5], [1.0, 2.0, 0.0]])
        >>> y = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
        >>> ndcg(s, y, k=2, empty="skip")
        tensor([0.5788,    nan], dtype=torch.float64)
    """
    k = check_k(k)
    check_gain(gain)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(ndcg_from_ranking(ranking, k=k, gain=gain, empty=empty))


def reciprocal_rank(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    relevance_threshold: float = 1.0,
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Reciprocal rank of the first relevant document within the top ``k`` (MRR is its mean).

    .. math:: \mathrm{RR@k} = 1 / \min\{r \le k : \mathit{rel}_r \ge t\}, \text{ or } 0 \text{ if none}

    Voorhees, "The TREC-8 question answering track report", 1999. A list with relevant documents
    none of which is in the top ``k`` gets 0; a list with no relevant document at all gets the
    ``empty`` value. trec_eval's ``recip_rank`` has no cutoff (``k=None``).

    Args:
        scores, labels, mask: as in :func:`ndcg`.
        k: cutoff, positive int or ``None``.
        relevance_threshold: a document is relevant when ``label >= relevance_threshold`` (> 0).
        empty: ``"zero"``, ``"one"`` or ``"skip"``.
        ties: ``"input_order"``, ``"pessimistic"`` or ``"optimistic"`` (not ``"average"``).
        retrieved: optional ``[..., L]`` bool; real documents with False never take a rank.

    Returns:
        ``[...]`` float64.

    Raises:
        ValueError: as :func:`ndcg`, and for ``ties="average"``.

    Example:
        >>> import torch
        >>> reciprocal_rank(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]))
        tensor([0.5000], dtype=torch.float64)
    """
    k = check_k(k)
    threshold = check_relevance_threshold(relevance_threshold)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(rr_from_ranking(ranking, k=k, threshold=threshold, empty=empty))


def average_precision(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    relevance_threshold: float = 1.0,
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Average precision at ``k`` (MAP is its mean over queries).

    .. math:: \mathrm{AP@k} = \frac{1}{R} \sum_{r=1}^{\min(k, n)} \mathrm{P@r} \cdot [\mathit{rel}_r \ge t]

    ``R`` is the number of relevant documents of the list (retrieved or not), not ``min(k, R)``:
    the convention of trec_eval (``map``, ``map_cut_k``) and ranx (``map@k``).

    Args:
        scores, labels, mask: as in :func:`ndcg`.
        k: cutoff, positive int or ``None``.
        relevance_threshold: a document is relevant when ``label >= relevance_threshold`` (> 0).
        empty: ``"zero"``, ``"one"`` or ``"skip"`` for lists with ``R = 0``.
        ties: ``"input_order"``, ``"pessimistic"`` or ``"optimistic"`` (not ``"average"``).
        retrieved: optional ``[..., L]`` bool; real documents with False count only for ``R``.

    Returns:
        ``[...]`` float64.

    Raises:
        ValueError: as :func:`ndcg`, and for ``ties="average"``.

    Example:
        >>> import torch
        >>> average_precision(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]))
        tensor([0.5833], dtype=torch.float64)
    """
    k = check_k(k)
    threshold = check_relevance_threshold(relevance_threshold)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(ap_from_ranking(ranking, k=k, threshold=threshold, empty=empty))


def err(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    max_grade: Optional[float] = None,
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Expected reciprocal rank at ``k`` (cascade user model).

    .. math::

        \mathrm{ERR@k} = \sum_{r=1}^{\min(k, n)} \frac{1}{r} R_r \prod_{i<r} (1 - R_i),
        \qquad R = \frac{2^{g} - 1}{2^{g_{\max}}}

    Chapelle, Metzler, Zhang & Grinspan, "Expected reciprocal rank for graded relevance",
    CIKM 2009. ``g_max`` is the top grade of the label scale: pass it as ``max_grade`` (gdeval,
    used by ir_measures for ``ERR@k``, fixes it to 4 for 0-4 labels). ``None`` uses the largest
    label of this batch, so pass it explicitly when evaluating in several batches
    (:func:`ltrkit.metrics.evaluation.evaluate_dataset` passes the dataset's largest label).
    ERR is not normalised; lists without a positive label get the ``empty`` value.

    Args:
        scores, labels, mask: as in :func:`ndcg`.
        k: cutoff, positive int or ``None``.
        max_grade: ``g_max >= 0``; every label must be ``<= max_grade``.
        empty: ``"zero"``, ``"one"`` or ``"skip"``.
        ties: ``"input_order"``, ``"pessimistic"`` or ``"optimistic"`` (not ``"average"``).
        retrieved: optional ``[..., L]`` bool; real documents with False never take a rank.

    Returns:
        ``[...]`` float64.

    Raises:
        ValueError: as :func:`ndcg`, for ``ties="average"``, and for a label above ``max_grade``.

    Example:
        >>> import torch
        >>> err(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]), max_grade=4)
        tensor([0.2305], dtype=torch.float64)
    """
    k = check_k(k)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(err_from_ranking(ranking, k=k, max_grade=max_grade, empty=empty))


def precision(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    relevance_threshold: float = 1.0,
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Precision at ``k``: the fraction of the top ``k`` positions holding a relevant document.

    .. math:: \mathrm{P@k} = \frac{1}{k} \sum_{r=1}^{\min(k, n)} [\mathit{rel}_r \ge t]

    Always divides by ``k``, also when the list has fewer than ``k`` documents (trec_eval's
    ``P_k``, ranx's ``precision@k``). ``k=None`` divides by the number of ranked documents.

    Args:
        scores, labels, mask: as in :func:`ndcg`.
        k: cutoff, positive int or ``None``.
        relevance_threshold: a document is relevant when ``label >= relevance_threshold`` (> 0).
        empty: ``"zero"``, ``"one"`` or ``"skip"`` for lists without a relevant document.
        ties: any of :data:`TIE_RULES` (``"average"`` gives the expected precision).
        retrieved: optional ``[..., L]`` bool; real documents with False never take a rank.

    Returns:
        ``[...]`` float64.

    Raises:
        ValueError: as :func:`ndcg`.

    Example:
        >>> import torch
        >>> precision(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]), k=2)
        tensor([0.5000], dtype=torch.float64)
    """
    k = check_k(k)
    threshold = check_relevance_threshold(relevance_threshold)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(precision_from_ranking(ranking, k=k, threshold=threshold, empty=empty))


def recall(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    k: Optional[int] = None,
    relevance_threshold: float = 1.0,
    empty: str = "zero",
    ties: str = "input_order",
    retrieved: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Recall at ``k``: the fraction of the list's relevant documents ranked in the top ``k``.

    .. math:: \mathrm{R@k} = \frac{1}{R} \sum_{r=1}^{\min(k, n)} [\mathit{rel}_r \ge t]

    ``R`` counts relevant documents that are not retrieved too (trec_eval's ``recall_k``).

    Args:
        scores, labels, mask: as in :func:`ndcg`.
        k: cutoff, positive int or ``None``.
        relevance_threshold: a document is relevant when ``label >= relevance_threshold`` (> 0).
        empty: ``"zero"``, ``"one"`` or ``"skip"`` for lists with ``R = 0``.
        ties: any of :data:`TIE_RULES` (``"average"`` gives the expected recall).
        retrieved: optional ``[..., L]`` bool; real documents with False count only for ``R``.

    Returns:
        ``[...]`` float64.

    Raises:
        ValueError: as :func:`ndcg`.

    Example:
        >>> import torch
        >>> recall(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.0, 3.0]]), k=1)
        tensor([0.], dtype=torch.float64)
    """
    k = check_k(k)
    threshold = check_relevance_threshold(relevance_threshold)
    check_empty(empty)
    ranking = rank_batch(scores, labels, mask, ties=ties, retrieved=retrieved)
    return ranking.restore(recall_from_ranking(ranking, k=k, threshold=threshold, empty=empty))
