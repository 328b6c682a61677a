"""Examination-propensity estimation from a click log, with or without interventions.

Both estimators assume position-based examination (``P(C) = p_rank * relevance``) and return
*relative* propensities ``p_k / p_1`` (IPS needs no more: a common factor rescales every weight).

* :func:`estimate_by_randomization`: from randomised interventions (``topk_shuffle``,
  ``randpair``, ``randn`` in :mod:`ltrkit.clicks.simulate`). A document ranked ``i`` by the
  logging policy has the same relevance wherever it is shown, so its click-through rate at
  shown rank ``k`` is ``p_k r_i``. With ``n_{lik}``/``c_{lik}`` the impressions/clicks of logging
  rank ``i`` shown at rank ``k`` in sessions showing ``l`` documents and
  ``w_{lik} = min(n_{lik}, n_{li1})``:

  .. math::
      \\hat p_k / \\hat p_1 = \\frac{\\sum_{l,i} w_{lik}\\, c_{lik} / n_{lik}}{\\sum_{l,i} w_{lik}\\, c_{li1} / n_{li1}}

  (strata by list length ``l``: lists of different lengths mix different queries, so their
  click-through rates are not comparable) over the logging ranks seen at both ``k`` and 1: all
  of them under RandTop-K (Joachims et al. 2017), ranks 1 and ``k`` under RandPair's swaps,
  every pair under RandN (intervention harvesting, Agarwal et al. 2019).
* :func:`estimate_by_regression_em`: without interventions, by regression EM (Wang, Golbandi,
  Bendersky, Metzler, Najork. "Position Bias Estimation for Unbiased Learning to Rank in Personal
  Search". WSDM 2018): EM on the PBM where the relevance of a document is a regression on its
  features (here logistic regression, fitted by Newton steps on the E-step's soft labels; the
  paper uses GBDT), so documents with similar features shown at different ranks identify the
  propensities even when each document is always shown at the same rank.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ltrkit._checks import check_int, check_non_negative
from ltrkit.clicks.models import PROB_EPS, _aggregate
from ltrkit.clicks.sessions import ClickSessions

__all__ = ["METHODS", "estimate_by_randomization", "estimate_by_regression_em"]

METHODS = ("randomization", "regression_em")


def estimate_by_randomization(sessions: ClickSessions) -> np.ndarray:
    """Relative propensities ``[K]`` (rank 1 = 1) from randomised interventions; see the module docstring.

    Raises:
        ValueError: the log has no logging ranks, or a shown rank is never linked to rank 1 by
            a randomised impression (a log without interventions), or rank 1 has no click.
    """
    if sessions.logging_ranks is None:
        raise ValueError("the log has no logging_rank column: the randomisation estimator compares shown and logging ranks")
    m, k = sessions.mask, sessions.top_k
    logged = sessions.logging_ranks[m] - 1
    if (logged < 0).any() or (logged >= k).any():
        raise ValueError(f"logging ranks must be in 1..{k}")
    shown = np.broadcast_to(np.arange(k), m.shape)[m]
    # strata by list length: a shorter list shuffles among fewer documents, so cells of one length only are comparable
    length = np.broadcast_to(m.sum(axis=1)[:, None], m.shape)[m] - 1
    cell = (length * k + logged) * k + shown
    n = np.bincount(cell, minlength=k ** 3).reshape(k * k, k).astype(np.float64)
    c = np.bincount(cell, sessions.clicks[m], minlength=k ** 3).reshape(k * k, k)
    ctr = np.where(n > 0, c / np.maximum(n, 1), 0.0)
    out = np.ones(k)
    for rank in range(1, k):
        linked = (n[:, rank] > 0) & (n[:, 0] > 0)
        if not linked.any():
            raise ValueError(f"no randomised impressions link rank {rank + 1} to rank 1; "
                             f"simulate with an intervention (topk_shuffle, randpair, randn)")
        w = np.minimum(n[linked, rank], n[linked, 0])
        top = (w * ctr[linked, 0]).sum()
        if top <= 0:
            raise ValueError(f"no clicks at rank 1 among the impressions linked to rank {rank + 1}")
        out[rank] = (w * ctr[linked, rank]).sum() / top
    return out


def _logistic_newton(x: np.ndarray, target: np.ndarray, weight: np.ndarray, w: np.ndarray, l2: float, steps: int) -> np.ndarray:
    """Newton steps on the weighted cross-entropy with soft targets, ``+ l2/2 |w|^2``."""
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (weight * (p - target)) + l2 * w
        hessian = (x * (weight * p * (1.0 - p))[:, None]).T @ x + l2 * np.eye(w.size)
        w = w - np.linalg.solve(hessian, gradient)
    return w


def estimate_by_regression_em(
    sessions: ClickSessions,
    features: np.ndarray,
    *,
    max_iterations: int = 100,
    tol: float = 1e-5,
    l2: float = 1e-3,
) -> Tuple[np.ndarray, Dict[str, object]]:
    """Relative propensities ``[K]`` by regression EM, and details of the fit.

    Args:
        sessions: the log; ``docs`` are rows of ``features``.
        features: ``[n_docs, F]`` document features (standardised here; a constant column is
            added for the intercept).
        max_iterations: EM iterations at most.
        tol: stop when no propensity moves by more than this.
        l2: ridge penalty of the logistic regression.

    Returns:
        ``(relative propensities [K], {"propensities": raw [K], "iterations": n, "weights": [F + 1]})``.

    Raises:
        ValueError: document rows outside ``features``, bad arguments.
    """
    check_int("max_iterations", max_iterations)
    l2 = check_non_negative("l2", l2)
    features = np.asarray(features, dtype=np.float64)
    m, k = sessions.mask, sessions.top_k
    docs = sessions.docs[m]
    if features.ndim != 2 or (docs.size and docs.max() >= features.shape[0]):
        raise ValueError(f"features must be [n_docs, F] covering every document row of the log, got shape {features.shape}")
    keys, item = np.unique(docs, return_inverse=True)
    x = features[keys]
    scale = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    ranks = np.broadcast_to(np.arange(k), m.shape)[m]
    item, rank, shown, clicked = _aggregate(item, ranks, sessions.clicks[m], k)
    skipped = shown - clicked
    per_doc = np.bincount(item, shown, minlength=keys.size)
    per_rank = np.bincount(rank, shown, minlength=k)
    gamma, w = np.full(k, 0.5), np.zeros(x.shape[1])
    relevance = np.full(keys.size, 0.5)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        r, g = relevance[item], gamma[rank]
        rest = np.maximum(1.0 - r * g, PROB_EPS)
        post_e = clicked + skipped * g * (1.0 - r) / rest
        post_r = clicked + skipped * r * (1.0 - g) / rest
        new_gamma = np.bincount(rank, post_e, minlength=k) / np.maximum(per_rank, 1.0)
        target = np.bincount(item, post_r, minlength=keys.size) / per_doc
        w = _logistic_newton(x, target, per_doc, w, l2, steps=2)
        relevance = 1.0 / (1.0 + np.exp(-(x @ w)))
        change = float(np.abs(new_gamma - gamma).max())
        gamma = new_gamma
        if change < tol:
            break
    return gamma / gamma[0], {"propensities": gamma.tolist(), "iterations": iterations, "weights": w.tolist()}
