r"""Unbiased learning to rank from clicks: inverse-propensity-scored (IPS) losses, the dual
learning algorithm (DLA), Joachims' click preferences and IPS-weighted offline evaluation.

Under position-based examination a click is ``c_i = E_i R_i`` with ``P(E_i) = p_i``, so
``E[c_i / p_i] = P(R_i = 1)``: a loss or metric that is *linear* in the labels, fed
``c_i / p_i`` instead of the relevance, is in expectation the same loss fed the relevance
probabilities (Joachims, Swaminathan, Schnabel. "Unbiased Learning-to-Rank with Biased
Feedback". WSDM 2017). Each IPS function here is such a linear loss or metric; its
full-information counterpart is the same function with ``clicks / propensities`` replaced by
the relevance probabilities, and the tests check the unbiasedness of the gradient by
Monte-Carlo.

Losses follow :mod:`ltrkit.losses`: ``loss(scores, clicks, mask, *, propensities, clip,
reduction, ...)`` on padded ``[..., L]`` batches (True = a real document), per-list values
reduced over lists with at least one real document. ``clip`` floors the propensities (Joachims
et al.'s clipped IPS; bias for variance): when it changes any propensity a
:class:`PropensityClippingWarning` says how many.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np
import torch

from ltrkit._checks import check_choice, check_finite, check_k, check_positive, check_ranking_inputs, check_reduction
from ltrkit.clicks.sessions import ClickSessions
from ltrkit.losses._common import compute_mask, masked_log_softmax, reduce_lists
from ltrkit.losses.listwise import softmax_loss
from ltrkit.losses.pairwise import ranknet_pair_loss
from ltrkit.metrics.ranking import dcg_of_sorted, rank_discounts, sort_order, sorted_labels_and_mask

__all__ = [
    "PropensityClippingWarning",
    "ips_weights",
    "ips_softmax_loss",
    "ips_ranknet_loss",
    "ips_lambda_loss",
    "dla_loss",
    "dla_propensities",
    "PAIR_RULES",
    "click_preference_pairs",
    "PAIR_COSTS",
    "preference_pair_loss",
    "ips_dcg",
    "ips_clicks_at_k",
]

PAIR_RULES = ("skip_above", "skip_next")
PAIR_COSTS = ("ranknet", "hinge")


class PropensityClippingWarning(UserWarning):
    """Some propensities were raised to the clipping floor (the IPS estimate is then biased)."""


def ips_weights(propensities: torch.Tensor, mask: torch.Tensor, *, clip: Optional[float] = None) -> torch.Tensor:
    """``1 / max(p, clip)`` at real positions, 0 at padding.

    Raises:
        ValueError: a shape mismatch, or a propensity that is not finite and in ``(0, 1]`` at a
            real position, or ``clip`` not in ``(0, 1]``.
    """
    if not isinstance(propensities, torch.Tensor) or propensities.shape != mask.shape:
        got = tuple(propensities.shape) if isinstance(propensities, torch.Tensor) else type(propensities).__name__
        raise ValueError(f"propensities must be a tensor of shape {tuple(mask.shape)}, got {got}")
    p = propensities.to(torch.float64 if not propensities.is_floating_point() else propensities.dtype)
    real = p[mask]
    if not bool(torch.isfinite(real).all()) or bool((real <= 0).any()) or bool((real > 1).any()):
        raise ValueError("propensities must be finite and in (0, 1] at real (mask=True) positions")
    if clip is not None:
        clip = check_positive("clip", clip)
        if clip > 1:
            raise ValueError(f"clip must be in (0, 1], got {clip!r}")
        clipped = int(((p < clip) & mask).sum())
        if clipped:
            warnings.warn(f"{clipped} propensities below clip={clip} were raised to it", PropensityClippingWarning, stacklevel=3)
        p = p.clamp(min=clip)
    return torch.where(mask, 1.0 / p.masked_fill(~mask, 1.0), torch.zeros_like(p))


def _ips_inputs(
    scores: torch.Tensor, clicks: torch.Tensor, mask: Optional[torch.Tensor], propensities: torch.Tensor, clip: Optional[float]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, ips_labels = clicks / p, mask)``, validated."""
    scores, clicks, mask = check_ranking_inputs(scores, clicks, mask)
    if bool((clicks[mask] < 0).any()):
        raise ValueError("clicks must be >= 0 (click indicators or counts)")
    return scores, clicks * ips_weights(propensities, mask, clip=clip).to(scores.dtype), mask


def ips_softmax_loss(
    scores: torch.Tensor,
    clicks: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    propensities: torch.Tensor,
    clip: Optional[float] = None,
    reduction: str = "mean",
    temperature: float = 1.0,
) -> torch.Tensor:
    r"""IPS softmax cross-entropy: :func:`ltrkit.losses.listwise.softmax_loss` with weights ``1 / p``.

    .. math::
        \ell = -\sum_i \frac{c_i}{p_i} \log \frac{\exp(s_i / T)}{\sum_j \exp(s_j / T)}

    (Ai et al. "Unbiased Learning to Rank with Unbiased Propensity Estimation", SIGIR 2018).

    Args:
        scores: ``[..., L]`` scores.
        clicks: ``[..., L]`` clicks (0/1, or counts).
        mask: ``[..., L]`` bool, True = real; None = all real.
        propensities: ``[..., L]`` examination probabilities in ``(0, 1]`` at real positions.
        clip: optional floor of the propensities.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        temperature: ``T > 0``.

    Example:
        >>> import torch
        >>> loss = ips_softmax_loss(torch.zeros(1, 2), torch.tensor([[0., 1.]]), propensities=torch.tensor([[1., .5]]))
        >>> round(float(loss), 4)
        1.3863
    """
    check_reduction(reduction)
    scores, labels, mask = _ips_inputs(scores, clicks, mask, propensities, clip)
    return softmax_loss(scores, labels, mask, reduction=reduction, temperature=temperature)


def _pairwise_ips(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, pair_weights: Optional[torch.Tensor], sigma: float, reduction: str
) -> torch.Tensor:
    """``sum_i w_i sum_{j != i} pair_weights_ij RankNet(s_i > s_j)`` per list, reduced."""
    s = scores.masked_fill(~mask, 0.0)
    diffs = s[..., :, None] - s[..., None, :]
    length = s.shape[-1]
    pairs = mask[..., :, None] & mask[..., None, :] & ~torch.eye(length, dtype=torch.bool, device=s.device)
    weights = labels[..., :, None] * pairs
    if pair_weights is not None:
        weights = weights * pair_weights
    cost = ranknet_pair_loss(diffs, torch.ones_like(diffs), weights=weights, sigma=sigma, reduction="none")
    valid, _ = compute_mask(mask)
    return reduce_lists(cost.sum(dim=(-1, -2)), valid, reduction)


def ips_ranknet_loss(
    scores: torch.Tensor,
    clicks: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    propensities: torch.Tensor,
    clip: Optional[float] = None,
    reduction: str = "mean",
    sigma: float = 1.0,
) -> torch.Tensor:
    r"""IPS pairwise RankNet: each clicked document should outscore every other shown one.

    .. math::
        \ell = \sum_i \frac{c_i}{p_i} \sum_{j \ne i} \log\big(1 + e^{-\sigma (s_i - s_j)}\big)

    over real documents: the counterfactual pairwise loss of Joachims et al. 2017 (their
    propensity-weighted SVM-rank, with RankNet's logistic cost; computed by
    :func:`ltrkit.losses.pairwise.ranknet_pair_loss` with the IPS weights). Memory ``O(B L^2)``.

    Args:
        scores, clicks, mask, propensities, clip, reduction: as :func:`ips_softmax_loss`.
        sigma: positive steepness of the sigmoid.

    Example:
        >>> import torch
        >>> loss = ips_ranknet_loss(torch.zeros(1, 2), torch.tensor([[1., 0.]]), propensities=torch.tensor([[.5, 1.]]))
        >>> round(float(loss), 4)  # 2 * log 2
        1.3863
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    scores, labels, mask = _ips_inputs(scores, clicks, mask, propensities, clip)
    return _pairwise_ips(scores, labels, mask, None, sigma, reduction)


def ips_lambda_loss(
    scores: torch.Tensor,
    clicks: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    propensities: torch.Tensor,
    clip: Optional[float] = None,
    reduction: str = "mean",
    sigma: float = 1.0,
    k: Optional[int] = None,
) -> torch.Tensor:
    r"""IPS lambda loss: :func:`ips_ranknet_loss` with each pair weighted by its DCG swap change.

    .. math::
        \ell = \sum_i \frac{c_i}{p_i} \sum_{j \ne i} |D_{r_i} - D_{r_j}|
               \log\big(1 + e^{-\sigma (s_i - s_j)}\big), \quad D_r = \frac{1}{\log_2(1 + r)} [r \le k]

    with ``r_i`` the rank of ``i`` under the current scores (ties: input order; not
    differentiated). The change of DCG when a relevant ``i`` swaps with ``j`` is
    ``|D_{r_i} - D_{r_j}|`` for binary gains, the LambdaRank weight of the counterfactual
    DCG (Agarwal et al. "A General Framework for Counterfactual Learning-to-Rank", SIGIR 2019).

    Args:
        scores, clicks, mask, propensities, clip, reduction: as :func:`ips_softmax_loss`.
        sigma: positive steepness of the sigmoid.
        k: DCG truncation (positive int) or None.
    """
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    check_k(k)
    scores, labels, mask = _ips_inputs(scores, clicks, mask, propensities, clip)
    order = sort_order(scores.detach(), mask)
    length = scores.shape[-1]
    discounts = rank_discounts(length, dtype=scores.dtype, device=scores.device)
    if k is not None:
        discounts[k:] = 0.0
    per_document = torch.zeros_like(scores).scatter(-1, order, discounts.expand_as(scores).contiguous())
    swap = (per_document[..., :, None] - per_document[..., None, :]).abs()
    return _pairwise_ips(scores, labels, mask, swap, sigma, reduction)


def dla_propensities(propensity_logits: torch.Tensor) -> torch.Tensor:
    """Relative propensities ``softmax(t)_k / softmax(t)_1`` ``[..., K]`` of DLA's propensity model."""
    return torch.exp(propensity_logits - propensity_logits[..., :1])


def dla_loss(
    scores: torch.Tensor,
    clicks: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    propensity_logits: torch.Tensor,
    max_weight: Optional[float] = 10.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Dual learning algorithm (Ai, Bi, Luo, Guo, Croft. "Unbiased Learning to Rank with Unbiased
    Propensity Estimation". SIGIR 2018): the ranker and a propensity model learn from each other.

    With ``s`` the scores of a list in shown order, ``t`` one propensity logit per rank,
    ``q = softmax(s)`` and ``e = softmax(t)`` over the list's real ranks:

    .. math::
        \ell = -\sum_i c_i \frac{e_1}{e_i} \log q_i \;-\; \sum_i c_i \frac{q_1}{q_i} \log e_i

    where each weight is held constant (detached), so the first term (the ranker's IPS softmax
    loss) trains only the ranker and the second (the propensity model's inverse-relevance
    loss) only the logits: one backward pass of the sum updates both. ``e_1 / e_i`` is the
    inverse relative propensity, ``q_1 / q_i`` the inverse relative relevance; both normalise by
    the document shown first. At the joint optimum ``q`` is proportional to relevance and ``e``
    to examination (the paper's Theorem 1). :func:`dla_propensities` reads the propensities out.

    Args:
        scores: ``[..., L]`` ranker scores in shown order (position ``r`` at index ``r - 1``).
        clicks: ``[..., L]`` clicks.
        mask: ``[..., L]`` bool, True = shown; a prefix of each list. None = all shown.
        propensity_logits: ``[L]`` (one per rank) or ``[..., L]``, trainable.
        max_weight: cap on both inverse weights (the paper's clipping), or None. Without a cap
            the two models can run away from each other when the logging policy shows each
            document at one rank (MQ2008 in ``benchmarks/bench_clicks.py``: the propensities
            grow to ``1e11`` and NDCG@10 falls below the naive ranker's; with 10 they land near
            the truth).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-list sum of both terms).

    Example:
        >>> import torch
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> dla_loss(torch.zeros(1, 3), torch.tensor([[1., 0., 0.]]), propensity_logits=logits).backward()
        >>> bool(logits.grad[0] < 0)  # a click at rank 1 raises its examination
        True
    """
    check_reduction(reduction)
    scores, clicks, mask = check_ranking_inputs(scores, clicks, mask)
    if not isinstance(propensity_logits, torch.Tensor) or propensity_logits.shape[-1] != scores.shape[-1]:
        raise ValueError(f"propensity_logits must be a tensor whose last dimension is {scores.shape[-1]} (one logit per rank)")
    if max_weight is not None:
        max_weight = check_positive("max_weight", max_weight)
    valid, cmask = compute_mask(mask)
    log_q = masked_log_softmax(scores.masked_fill(~mask, 0.0), cmask)
    log_e = masked_log_softmax(propensity_logits.expand_as(scores).masked_fill(~mask, 0.0), cmask)
    inverse_propensity = torch.exp(log_e[..., :1] - log_e).detach()
    inverse_relevance = torch.exp(log_q[..., :1] - log_q).detach()
    if max_weight is not None:
        inverse_propensity = inverse_propensity.clamp(max=max_weight)
        inverse_relevance = inverse_relevance.clamp(max=max_weight)
    clicked = clicks * mask
    per_list = -(clicked * (inverse_propensity * log_q + inverse_relevance * log_e)).sum(dim=-1)
    return reduce_lists(per_list, valid, reduction)


def click_preference_pairs(clicks: np.ndarray, mask: np.ndarray, *, rule: str = "skip_above") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joachims' (2002) preferences from clicks: ``(session, preferred, other)`` index arrays ``[P]``.

    * ``skip_above``: a clicked document is preferred to every unclicked one shown above it;
    * ``skip_next``: a clicked document is preferred to the unclicked one right below it.

    Positions are 0-based columns of ``clicks [S, K]``; feed the pairs to a pairwise loss, e.g.
    ``ranknet_pair_loss(s[session, preferred] - s[session, other], torch.ones(P))`` or the hinge.

    Example:
        >>> clicks = np.array([[False, True, False, True]])
        >>> [a.tolist() for a in click_preference_pairs(clicks, np.ones((1, 4), bool))]
        [[0, 0, 0], [1, 3, 3], [0, 0, 2]]
        >>> [a.tolist() for a in click_preference_pairs(clicks, np.ones((1, 4), bool), rule="skip_next")]
        [[0], [1], [2]]
    """
    check_choice("rule", rule, PAIR_RULES)
    clicks = np.asarray(clicks, dtype=bool) & np.asarray(mask, dtype=bool)
    skipped = ~clicks & np.asarray(mask, dtype=bool)
    k = clicks.shape[1]
    if rule == "skip_above":
        relation = np.tril(np.ones((k, k), dtype=bool), k=-1)  # other j above preferred i
    else:
        relation = np.eye(k, k, 1, dtype=bool)  # j = i + 1
    pairs = clicks[:, :, None] & skipped[:, None, :] & relation[None]
    session, preferred, other = np.nonzero(pairs)
    return session, preferred, other


def preference_pair_loss(
    scores: torch.Tensor,
    pair_weights: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    cost: str = "ranknet",
    sigma: float = 1.0,
    margin: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Pairwise loss over weighted preference pairs of each list (e.g. :func:`click_preference_pairs`
    counted per shown list).

    .. math::
        \ell = \sum_{i \ne j} W_{ij}\, C(s_i - s_j), \quad
        C(x) = \log\big(1 + e^{-\sigma x}\big) \ (\text{ranknet}) \ \text{or} \ \max(0,\, m - x) \ (\text{hinge})

    ``W_ij >= 0`` says how strongly ``i`` is preferred to ``j`` (the number of sessions, or their
    mean, in which the pair was observed; the diagonal is ignored); the RankNet cost is
    :func:`ltrkit.losses.pairwise.ranknet_pair_loss` with target 1, the hinge RankSVM's (Joachims
    2002). Pairs touching padding count 0.

    Args:
        scores: ``[..., L]`` scores.
        pair_weights: ``[..., L, L]`` non-negative finite weights, ``[..., i, j]`` for ``i`` over ``j``.
        mask: ``[..., L]`` bool, True = real; None = all real.
        cost: ``"ranknet"`` or ``"hinge"``.
        sigma: positive steepness of the RankNet sigmoid.
        margin: finite hinge margin ``m``.
        reduction: ``"mean"`` (over lists with a real document), ``"sum"`` or ``"none"`` (per list).

    Example:
        >>> import torch
        >>> weights = torch.tensor([[[0., 0.], [2., 0.]]])  # the second document over the first, twice
        >>> round(float(preference_pair_loss(torch.zeros(1, 2), weights)), 4)  # 2 * log 2
        1.3863
        >>> float(preference_pair_loss(torch.tensor([[0., 3.]]), weights, cost="hinge"))
        0.0
    """
    check_reduction(reduction)
    check_choice("cost", cost, PAIR_COSTS)
    sigma = check_positive("sigma", sigma)
    margin = check_finite("margin", margin)
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    scores, _, mask = check_ranking_inputs(scores, torch.zeros_like(scores), mask)
    length = scores.shape[-1]
    if not isinstance(pair_weights, torch.Tensor) or pair_weights.shape != scores.shape + (length,):
        got = tuple(pair_weights.shape) if isinstance(pair_weights, torch.Tensor) else type(pair_weights).__name__
        raise ValueError(f"pair_weights must be a tensor of shape {tuple(scores.shape) + (length,)}, got {got}")
    if not bool(torch.isfinite(pair_weights).all()) or bool((pair_weights < 0).any()):
        raise ValueError("pair_weights must be finite and >= 0")
    s = scores.masked_fill(~mask, 0.0)
    diffs = s[..., :, None] - s[..., None, :]
    pairs = mask[..., :, None] & mask[..., None, :] & ~torch.eye(length, dtype=torch.bool, device=s.device)
    weights = pair_weights.to(diffs.dtype) * pairs
    if cost == "ranknet":
        per_pair = ranknet_pair_loss(diffs, torch.ones_like(diffs), weights=weights, sigma=sigma, reduction="none")
    else:
        per_pair = torch.relu(margin - diffs) * weights
    valid, _ = compute_mask(mask)
    return reduce_lists(per_pair.sum(dim=(-1, -2)), valid, reduction)


def _session_tensors(sessions: ClickSessions, scores: np.ndarray, clip: Optional[float]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if sessions.propensities is None:
        raise ValueError("IPS evaluation needs the log's propensities (a propensity column, or estimated ones)")
    scores = np.asarray(scores, dtype=np.float64)
    docs = np.where(sessions.mask, sessions.docs, 0)
    if scores.ndim != 1 or (docs.size and docs.max() >= scores.shape[0]):
        raise ValueError(f"scores must give one value per document row of the log, got shape {scores.shape}")
    mask = torch.from_numpy(sessions.mask)
    weights = ips_weights(torch.from_numpy(np.where(sessions.mask, sessions.propensities, 1.0)), mask, clip=clip)
    labels = torch.from_numpy(sessions.clicks.astype(np.float64)) * weights
    return torch.from_numpy(scores[docs]), labels, mask


def ips_dcg(sessions: ClickSessions, scores: np.ndarray, *, k: Optional[int] = None, clip: Optional[float] = None) -> float:
    r"""IPS estimate of a new ranker's DCG@k from a click log.

    .. math::
        \widehat{\mathrm{DCG}@k} = \frac{1}{|S|} \sum_s \sum_{i \text{ clicked}} \frac{1}{p_i}\,
            \frac{[\,r'_i \le k\,]}{\log_2(1 + r'_i)}

    with ``r'_i`` the rank of document ``i`` when the new ``scores`` re-rank the documents the
    session showed (ties: shown order). Unbiased for the mean DCG@k with binary gain
    ``P(R_i = 1)`` over the logged sessions (Joachims et al. 2017).

    Args:
        sessions: the log, with ``propensities``.
        scores: ``[n_docs]`` the new ranker's scores, indexed by document row.
        k: cutoff, or None for the whole shown list.
        clip: optional propensity floor.
    """
    check_k(k)
    s, labels, mask = _session_tensors(sessions, scores, clip)
    ordered, ordered_mask = sorted_labels_and_mask(s, labels, mask)
    return float(dcg_of_sorted(ordered, ordered_mask, k=k, gain="linear").mean()) if sessions.n_sessions else 0.0


def ips_clicks_at_k(sessions: ClickSessions, scores: np.ndarray, k: int, *, clip: Optional[float] = None) -> float:
    """IPS estimate of the expected number of relevant documents a new ranker puts in its top ``k``
    (:func:`ips_dcg` without the discount)."""
    check_k(k)
    s, labels, mask = _session_tensors(sessions, scores, clip)
    ordered, ordered_mask = sorted_labels_and_mask(s, labels, mask)
    return float((ordered * ordered_mask)[:, :k].sum(dim=1).mean()) if sessions.n_sessions else 0.0
