"""Slow references written from the click-model definitions (Chuklin et al. 2015): the probability
of one session's click vector by explicit recursion over the hidden examination state."""

from __future__ import annotations

import itertools

import numpy as np


def session_probability(model: str, clicks, attraction, *, satisfaction=None, gamma=None, propensities=None,
                        continuation=None, ubm_gamma=None) -> float:
    """``P(C = clicks)`` for one session of ``len(clicks)`` ranks."""
    k = len(clicks)
    if model == "pbm":
        p = 1.0
        for r in range(k):
            q = propensities[r] * attraction[r]
            p *= q if clicks[r] else 1 - q
        return p
    if model == "ubm":
        p, previous = 1.0, 0
        for r in range(k):
            q = ubm_gamma[r][previous] * attraction[r]
            p *= q if clicks[r] else 1 - q
            if clicks[r]:
                previous = r + 1
        return p

    def from_rank(r: int, examined: bool) -> float:
        if r == k:
            return 1.0
        if not examined:
            return 0.0 if any(clicks[r:]) else 1.0
        a = attraction[r]
        if clicks[r]:
            if model == "cm":
                go_on = 0.0
            elif model == "dcm":
                go_on = continuation[r]
            elif model == "sdbn":
                go_on = 1.0 - satisfaction[r]
            else:  # dbn: satisfied -> stop; else continue with gamma
                go_on = (1.0 - satisfaction[r]) * gamma
            return a * (go_on * from_rank(r + 1, True) + (1 - go_on) * from_rank(r + 1, False))
        go_on = gamma if model == "dbn" else 1.0
        return (1 - a) * (go_on * from_rank(r + 1, True) + (1 - go_on) * from_rank(r + 1, False))

    return from_rank(0, True)


def marginal_click_probabilities(model: str, k: int, attraction, **params) -> np.ndarray:
    """``P(C_r = 1)`` by summing the probability of every click vector with a click at ``r``."""
    out = np.zeros(k)
    for pattern in itertools.product([False, True], repeat=k):
        p = session_probability(model, list(pattern), attraction, **params)
        out += p * np.array(pattern)
    return out
