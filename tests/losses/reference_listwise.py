"""Slow, loop-based references written straight from the papers' definitions.

Each works on ONE list given as 1-d torch tensors of its real documents only (no padding), with
plain Python loops over documents, ranks and triplets, so autograd through them gives reference
gradients as well as reference values.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch


def gain(label: float, kind: str) -> float:
    return 2.0**label - 1.0 if kind == "exp2" else label


def dcg_of_order(labels: Sequence[float], order: Sequence[int], k: Optional[int], kind: str) -> float:
    total = 0.0
    for rank, doc in enumerate(order[: len(order) if k is None else k], start=1):
        total += gain(float(labels[doc]), kind) / math.log2(rank + 1)
    return total


def ndcg_of_scores(scores: Sequence[float], labels: Sequence[float], k: Optional[int], kind: str) -> float:
    """NDCG@k of the ranking by descending score (distinct scores), 0 if IDCG is 0."""
    n = len(scores)
    by_score = sorted(range(n), key=lambda i: -float(scores[i]))
    ideal = sorted(range(n), key=lambda i: -float(labels[i]))
    best = dcg_of_order(labels, ideal, k, kind)
    return dcg_of_order(labels, by_score, k, kind) / best if best > 0 else 0.0


def listnet(scores: torch.Tensor, labels: torch.Tensor, transform: str, temperature: float) -> torch.Tensor:
    n = len(scores)
    if transform == "softmax":
        denom = sum(math.exp(float(labels[j])) for j in range(n))
        target = [math.exp(float(labels[i])) / denom for i in range(n)]
    else:
        weights = [float(labels[i]) if transform == "sum" else 2.0 ** float(labels[i]) - 1.0 for i in range(n)]
        total = sum(weights)
        target = [w / total if total > 0 else 0.0 for w in weights]
    log_z = torch.logsumexp(torch.stack([scores[j] / temperature for j in range(n)]), dim=0)
    loss = scores.new_zeros(())
    for i in range(n):
        loss = loss - target[i] * (scores[i] / temperature - log_z)
    return loss


def softmax_ce(scores: torch.Tensor, labels: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    n = len(scores)
    log_z = torch.logsumexp(torch.stack([scores[j] for j in range(n)]), dim=0)
    loss = scores.new_zeros(())
    for i in range(n):
        w = 1.0 if weights is None else float(weights[i])
        loss = loss - w * float(labels[i]) * (scores[i] - log_z)
    return loss


def plackett_luce_nll(scores: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """-log P(order | scores) under Plackett-Luce: product over ranks of softmax over the rest."""
    loss = scores.new_zeros(())
    for r in range(len(order)):
        rest = torch.stack([scores[order[t]] for t in range(r, len(order))])
        loss = loss - (scores[order[r]] - torch.logsumexp(rest, dim=0))
    return loss


def approx_ndcg(scores: torch.Tensor, labels: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
    n = len(scores)
    ideal = sorted(range(n), key=lambda i: -float(labels[i]))
    best = dcg_of_order(labels, ideal, None, kind)
    if best == 0:
        return scores.new_zeros(())
    dcg = scores.new_zeros(())
    for i in range(n):
        rank = scores.new_ones(())
        for j in range(n):
            if j != i:
                rank = rank + 1.0 / (1.0 + torch.exp(-alpha * (scores[j] - scores[i])))
        dcg = dcg + gain(float(labels[i]), kind) / torch.log2(1.0 + rank)
    return 1.0 - dcg / best


def neural_sort(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Grover et al.'s P_hat [n, n], row i (rank i+1) over documents, from the explicit A_s."""
    n = len(scores)
    rows = []
    for i in range(1, n + 1):
        logits = []
        for j in range(n):
            spread = sum(torch.abs(scores[j] - scores[k]) for k in range(n))
            logits.append(((n + 1 - 2 * i) * scores[j] - spread) / tau)
        rows.append(torch.softmax(torch.stack(logits), dim=0))
    return torch.stack(rows)


def sinkhorn(p: torch.Tensor, iterations: int) -> torch.Tensor:
    """Alternate column and row normalisation in probability space (no early stop)."""
    for _ in range(iterations):
        p = p / p.sum(dim=0, keepdim=True)
        p = p / p.sum(dim=1, keepdim=True)
    return p


def neural_ndcg(
    scores: torch.Tensor, labels: torch.Tensor, tau: float, k: Optional[int], kind: str, sinkhorn_iters: int
) -> torch.Tensor:
    n = len(scores)
    ideal = sorted(range(n), key=lambda i: -float(labels[i]))
    best = dcg_of_order(labels, ideal, k, kind)
    if best == 0:
        return scores.new_zeros(())
    p = sinkhorn(neural_sort(scores, tau), sinkhorn_iters)
    dcg = scores.new_zeros(())
    for r in range(n if k is None else min(k, n)):
        relaxed = sum(p[r, j] * gain(float(labels[j]), kind) for j in range(n))
        dcg = dcg + relaxed / math.log2(r + 2)
    return 1.0 - dcg / best


def ordinal_nll(scores: torch.Tensor, labels: torch.Tensor, cutpoints: torch.Tensor) -> torch.Tensor:
    """Mean over documents of -log(P(y > c-1) - P(y > c)) computed directly from the sigmoids."""
    n_classes = len(cutpoints) + 1
    loss = scores.new_zeros(())
    for i in range(len(scores)):
        c = int(labels[i])
        upper = torch.sigmoid(scores[i] - cutpoints[c - 1]) if c > 0 else scores.new_ones(())
        lower = torch.sigmoid(scores[i] - cutpoints[c]) if c < n_classes - 1 else scores.new_zeros(())
        loss = loss - torch.log(upper - lower)
    return loss / len(scores)


def contrastive(e1: torch.Tensor, e2: torch.Tensor, same: bool, margin: float, distance: str) -> torch.Tensor:
    if distance == "euclidean":
        d = torch.sqrt(sum((e1[t] - e2[t]) ** 2 for t in range(len(e1))))
    else:
        dot = sum(e1[t] * e2[t] for t in range(len(e1)))
        d = 1.0 - dot / torch.sqrt((sum(x * x for x in e1) + 1e-12) * (sum(x * x for x in e2) + 1e-12))
    return 0.5 * d**2 if same else 0.5 * torch.clamp(margin - d, min=0.0) ** 2


def pnorm(x: torch.Tensor, y: torch.Tensor, p: float, squared: bool) -> torch.Tensor:
    d = sum(torch.abs(x[t] - y[t]) ** p for t in range(len(x))) ** (1.0 / p)
    return d**2 if squared else d


def _triplets(classes: List[int]):
    n = len(classes)
    for a in range(n):
        for p in range(n):
            if p == a or classes[p] != classes[a]:
                continue
            for q in range(n):
                if classes[q] != classes[a]:
                    yield a, p, q


def batch_all(emb: torch.Tensor, classes: List[int], margin: float, p: float, squared: bool):
    """(sum over all valid triplets, number with positive loss, per-anchor sums)."""
    total = emb.new_zeros(())
    positive = 0
    per_anchor = [emb.new_zeros(()) for _ in classes]
    for a, pp, q in _triplets(classes):
        value = torch.clamp(margin + pnorm(emb[a], emb[pp], p, squared) - pnorm(emb[a], emb[q], p, squared), min=0.0)
        total = total + value
        per_anchor[a] = per_anchor[a] + value
        positive += int(value.item() > 0)
    return total, positive, torch.stack(per_anchor)


def batch_hard(emb: torch.Tensor, classes: List[int], margin: float, p: float, squared: bool):
    """(per-anchor losses, number of anchors with a positive and a negative)."""
    n = len(classes)
    losses, counted = [], 0
    for a in range(n):
        pos = [pnorm(emb[a], emb[j], p, squared) for j in range(n) if j != a and classes[j] == classes[a]]
        neg = [pnorm(emb[a], emb[j], p, squared) for j in range(n) if classes[j] != classes[a]]
        if not pos or not neg:
            losses.append(emb.new_zeros(()))
            continue
        counted += 1
        hardest = max(pos, key=torch.Tensor.item)
        closest = min(neg, key=torch.Tensor.item)
        losses.append(torch.clamp(margin + hardest - closest, min=0.0))
    return torch.stack(losses), counted


def semi_hard(emb: torch.Tensor, classes: List[int], margin: float, p: float, squared: bool):
    """(per-anchor sums over positives, number of counted positive pairs)."""
    n = len(classes)
    per_anchor, counted = [], 0
    for a in range(n):
        total = emb.new_zeros(())
        neg = [pnorm(emb[a], emb[j], p, squared) for j in range(n) if classes[j] != classes[a]]
        for j in range(n):
            if j == a or classes[j] != classes[a] or not neg:
                continue
            counted += 1
            d_ap = pnorm(emb[a], emb[j], p, squared)
            farther = [d for d in neg if d.item() > d_ap.item()]
            chosen = min(farther, key=torch.Tensor.item) if farther else max(neg, key=torch.Tensor.item)
            total = total + torch.clamp(margin + d_ap - chosen, min=0.0)
        per_anchor.append(total)
    return torch.stack(per_anchor), counted
