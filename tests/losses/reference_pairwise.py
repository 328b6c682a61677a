"""Slow, loop-based references for the pairwise losses, written from the papers' definitions.

Every function takes ONE list (Python lists of floats for scores and labels, already without
padding) and loops over pairs; the tests run them list by list and compare with the vectorised,
chunked implementations. Scores may be a list of 0-d float64 tensors where a reference must be
differentiated by autograd (the weights are then plain floats: detached, as the papers say).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch


def _float(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def ranking(scores: Sequence) -> List[int]:
    """Document indices from rank 1 down: descending score, ties keep input order (stable)."""
    return sorted(range(len(scores)), key=lambda i: -_float(scores[i]))


def gain(label: float, kind: str) -> float:
    return 2.0 ** label - 1.0 if kind == "exp2" else label


def dcg(labels: Sequence[float], order: Sequence[int], k: Optional[int], kind: str) -> float:
    """DCG@k of the ranking ``order``: sum over ranks r <= k of gain / log2(1 + r)."""
    total = 0.0
    for position, doc in enumerate(order, start=1):
        if k is not None and position > k:
            break
        total += gain(labels[doc], kind) / math.log2(1.0 + position)
    return total


def ndcg(labels: Sequence[float], order: Sequence[int], k: Optional[int], kind: str) -> float:
    """NDCG@k; 0 when the ideal DCG@k is not positive."""
    ideal = dcg(labels, sorted(range(len(labels)), key=lambda i: -labels[i]), k, kind)
    return dcg(labels, order, k, kind) / ideal if ideal > 0 else 0.0


def ranknet_cost(s_i, s_j, target: float, sigma: float):
    """Burges 2005: C = -P̄ log P - (1 - P̄) log(1 - P), P = 1 / (1 + exp(-sigma (s_i - s_j)))."""
    if isinstance(s_i, torch.Tensor):
        p = torch.sigmoid(sigma * (s_i - s_j))
        return -target * torch.log(p) - (1.0 - target) * torch.log1p(-p)
    p = 1.0 / (1.0 + math.exp(-sigma * (s_i - s_j)))
    cost = 0.0
    if target > 0:
        cost -= target * math.log(p)
    if target < 1:
        cost -= (1.0 - target) * math.log(1.0 - p)
    return cost


def ranknet_list(scores, labels: Sequence[float], *, sigma: float, include_ties: bool) -> Tuple[object, int]:
    """RankNet cost of one list summed over unordered pairs, and the number of pairs."""
    total, pairs = 0.0, 0
    n = len(scores)
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] == labels[j] and not include_ties:
                continue
            target = 1.0 if labels[i] > labels[j] else (0.0 if labels[i] < labels[j] else 0.5)
            total = total + ranknet_cost(scores[i], scores[j], target, sigma)
            pairs += 1
    return total, pairs


def lambdarank_list(
    scores: Sequence[float], labels: Sequence[float], *, sigma: float, k: Optional[int], kind: str
) -> Tuple[float, List[float], int]:
    """Burges 2010, LambdaRank: value, lambdas and the number of pairs of one list.

    For each pair with ``l_i > l_j``: swap i and j in the current ranking and recompute NDCG@k
    to get ``|dNDCG|``; ``lambda_ij = -sigma / (1 + exp(sigma (s_i - s_j))) * |dNDCG|``;
    ``lambda_i += lambda_ij``, ``lambda_j -= lambda_ij``. The value is ``sum |dNDCG| C_ij``.
    A pair counts when at least one of its documents is in the top k and the list's IDCG@k > 0.
    """
    order = ranking(scores)
    base = ndcg(labels, order, k, kind)
    ideal = dcg(labels, sorted(range(len(labels)), key=lambda i: -labels[i]), k, kind)
    rank_of = {doc: position for position, doc in enumerate(order, start=1)}
    lambdas = [0.0] * len(scores)
    value, pairs = 0.0, 0
    for i in range(len(scores)):
        for j in range(len(scores)):
            if not labels[i] > labels[j]:
                continue
            if ideal > 0 and (k is None or min(rank_of[i], rank_of[j]) <= k):
                pairs += 1
            swapped = list(order)
            a, b = swapped.index(i), swapped.index(j)
            swapped[a], swapped[b] = swapped[b], swapped[a]
            delta = abs(ndcg(labels, swapped, k, kind) - base)
            lam = -sigma / (1.0 + math.exp(sigma * (scores[i] - scores[j]))) * delta
            lambdas[i] += lam
            lambdas[j] -= lam
            value += delta * ranknet_cost(scores[i], scores[j], 1.0, sigma)
    return value, lambdas, pairs


def lambdaloss_list(
    scores: Sequence[torch.Tensor],
    labels: Sequence[float],
    *,
    weighting: str,
    k: Optional[int],
    sigma: float,
    mu: float,
    kind: str,
) -> Tuple[torch.Tensor, int]:
    """Wang et al. 2018, LambdaLoss: ``sum_{(i,j)} w_ij * log2(1 + exp(-sigma (s_i - s_j)))``.

    Ranks ``r`` from the current scores, ``D(r) = log2(1 + r)``, ``G_i = gain / IDCG@k``; the
    weights are floats (detached). NDCG-Loss1 and ARP-Loss1 run over every ordered pair ``i != j``,
    the others over ``l_i > l_j``; with ``k``, a pair needs one document ranked at most ``k``, and
    ``1/D`` is 0 beyond ``k`` in the LambdaRank and NDCG-Loss1 weights.
    """
    n = len(scores)
    order = ranking(scores)
    rank_of = {doc: position for position, doc in enumerate(order, start=1)}
    ideal = dcg(labels, sorted(range(n), key=lambda i: -labels[i]), k, kind)
    ndcg_weighting = weighting in ("ndcg_loss1", "ndcg_loss2", "ndcg_loss2pp", "lambdarank")

    def big_g(i: int) -> float:
        return gain(labels[i], kind) / ideal

    def inv_d(rank: int, truncate: bool) -> float:
        if truncate and k is not None and rank > k:
            return 0.0
        return 1.0 / math.log2(1.0 + rank)

    total = scores[0] * 0.0
    pairs = 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            all_pairs = weighting in ("ndcg_loss1", "arp_loss1")
            if not all_pairs and not labels[i] > labels[j]:
                continue
            if k is not None and min(rank_of[i], rank_of[j]) > k:
                continue
            if ndcg_weighting and ideal <= 0:
                continue
            r_i, r_j = rank_of[i], rank_of[j]
            if weighting == "arp_loss1":
                weight = labels[i]
            elif weighting == "arp_loss2":
                weight = abs(labels[i] - labels[j])
            elif weighting == "ndcg_loss1":
                weight = big_g(i) * inv_d(r_i, True)
            else:
                gap = abs(r_i - r_j)
                loss2 = abs(inv_d(gap, False) - inv_d(gap + 1, False)) * abs(big_g(i) - big_g(j))
                lambdarank = abs(inv_d(r_i, True) - inv_d(r_j, True)) * abs(big_g(i) - big_g(j))
                weight = {"ndcg_loss2": loss2, "lambdarank": lambdarank, "ndcg_loss2pp": mu * loss2 + lambdarank}[weighting]
            pairs += 1
            total = total + weight * torch.log2(1.0 + torch.exp(-sigma * (scores[i] - scores[j])))
    return total, pairs


def hinge_list(scores, labels: Sequence[float], *, margin: float, weight_by_label_diff: bool) -> Tuple[object, int]:
    """RankSVM: sum over pairs with l_i > l_j of w_ij * max(0, margin - (s_i - s_j))."""
    total, pairs = 0.0, 0
    for i in range(len(scores)):
        for j in range(len(scores)):
            if labels[i] > labels[j]:
                weight = labels[i] - labels[j] if weight_by_label_diff else 1.0
                total = total + weight * torch.relu(margin - (scores[i] - scores[j]))
                pairs += 1
    return total, pairs
