"""Slow, loop-based IR metrics written straight from their definitions (test references only).

A list is given as Python lists: ``scores``, ``labels`` and ``retrieved`` flags of its real
documents. Ranking sorts the retrieved documents with a key per tie rule; ``"average"`` is the
mean over every order of each tied group (by enumeration).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence


def ranked_labels(scores: Sequence[float], labels: Sequence[float], retrieved: Sequence[bool], ties: str) -> list[float]:
    """Labels of the retrieved documents in rank order under a deterministic tie rule."""
    items = [(s, y, i) for i, (s, y, r) in enumerate(zip(scores, labels, retrieved)) if r]
    if ties == "input_order":
        key: Callable = lambda t: (-t[0], t[2])
    elif ties == "pessimistic":
        key = lambda t: (-t[0], t[1], t[2])
    elif ties == "optimistic":
        key = lambda t: (-t[0], -t[1], t[2])
    else:
        raise ValueError(ties)
    return [y for _, y, _ in sorted(items, key=key)]


def all_tie_orders(scores: Sequence[float], labels: Sequence[float], retrieved: Sequence[bool]) -> list[list[float]]:
    """Every ranking obtained by permuting the documents within each group of equal scores."""
    items = sorted([(s, y) for s, y, r in zip(scores, labels, retrieved) if r], key=lambda t: -t[0])
    groups = [list(g) for _, g in itertools.groupby(items, key=lambda t: t[0])]
    orders = []
    for combo in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        orders.append([y for group in combo for _, y in group])
    return orders


def gain(label: float, kind: str) -> float:
    return 2.0**label - 1.0 if kind == "exp2" else label


def dcg(ranked: Sequence[float], k: Optional[int], kind: str) -> float:
    total = 0.0
    for position, label in enumerate(ranked, start=1):
        if k is not None and position > k:
            break
        total += gain(label, kind) / math.log2(position + 1)
    return total


def ndcg(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], kind: str) -> Optional[float]:
    """None when no document has a positive label."""
    ideal = dcg(sorted(all_labels, reverse=True), k, kind)
    if not any(y > 0 for y in all_labels):
        return None
    return dcg(ranked, k, kind) / ideal


def reciprocal_rank(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], t: float) -> Optional[float]:
    if not any(y >= t for y in all_labels):
        return None
    for position, label in enumerate(ranked, start=1):
        if k is not None and position > k:
            break
        if label >= t:
            return 1.0 / position
    return 0.0


def average_precision(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], t: float) -> Optional[float]:
    n_relevant = sum(1 for y in all_labels if y >= t)
    if n_relevant == 0:
        return None
    hits, total = 0, 0.0
    for position, label in enumerate(ranked, start=1):
        if k is not None and position > k:
            break
        if label >= t:
            hits += 1
            total += hits / position
    return total / n_relevant


def err(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], max_grade: float) -> Optional[float]:
    if not any(y > 0 for y in all_labels):
        return None
    total, not_stopped = 0.0, 1.0
    for position, label in enumerate(ranked, start=1):
        if k is not None and position > k:
            break
        stop = (2.0**label - 1.0) / 2.0**max_grade
        total += not_stopped * stop / position
        not_stopped *= 1.0 - stop
    return total


def precision(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], t: float) -> Optional[float]:
    if not any(y >= t for y in all_labels):
        return None
    top = ranked if k is None else ranked[:k]
    denominator = len(ranked) if k is None else k
    return sum(1 for y in top if y >= t) / denominator if denominator else 0.0


def recall(ranked: Sequence[float], all_labels: Sequence[float], k: Optional[int], t: float) -> Optional[float]:
    n_relevant = sum(1 for y in all_labels if y >= t)
    if n_relevant == 0:
        return None
    top = ranked if k is None else ranked[:k]
    return sum(1 for y in top if y >= t) / n_relevant
