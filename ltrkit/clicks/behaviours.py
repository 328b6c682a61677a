"""Composable click behaviours (allRank's click models), vectorised over sessions.

A behaviour maps the shown lists of many sessions to clicks:
``simulate(impressions, rng) -> (clicks [S, K] bool, propensities [S, K] or None)``, where
``impressions`` holds the graded relevance of the documents in shown order, the mask of shown
positions and (for the behaviours that compare documents) their feature vectors. ``propensities``
are the true examination probabilities when the behaviour defines them (the probabilistic models
and mixtures of them), else None.

Positions are 1-based in parameters (``FixedClicks([1, 3])`` clicks ranks 1 and 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ltrkit._checks import check_int, check_non_negative
from ltrkit.clicks.mappings import AttractionMapping
from ltrkit.clicks.models import ClickModel

__all__ = [
    "Impressions",
    "ClickBehaviour",
    "ModelClicks",
    "RandomClicks",
    "FixedClicks",
    "OnlyRelevant",
    "ThresholdCascade",
    "MaxClicks",
    "Mixture",
    "AllOf",
    "AnyOf",
    "EverythingButDuplicates",
    "DiverseClicks",
]

Result = Tuple[np.ndarray, Optional[np.ndarray]]


@dataclass
class Impressions:
    """The shown lists of ``S`` sessions.

    Attributes:
        relevance: ``[S, K]`` graded relevance of the document at each rank (0 at padding).
        mask: ``[S, K]`` bool, True = shown (a prefix of each row).
        features: ``[S, K, F]`` feature vectors, needed by the behaviours that compare documents.
    """

    relevance: np.ndarray
    mask: np.ndarray
    features: Optional[np.ndarray] = None

    def subset(self, rows: np.ndarray) -> "Impressions":
        return Impressions(self.relevance[rows], self.mask[rows], None if self.features is None else self.features[rows])

    def distances(self) -> np.ndarray:
        """``[S, K, K]`` Euclidean distances between the shown documents' features (NaN if a side is padding)."""
        if self.features is None:
            raise ValueError("this click behaviour compares documents and needs their features")
        f = self.features.astype(np.float64)
        squared = (f * f).sum(axis=-1)
        gram = np.einsum("skf,sjf->skj", f, f)
        d = np.sqrt(np.maximum(squared[:, :, None] + squared[:, None, :] - 2.0 * gram, 0.0))
        pair = self.mask[:, :, None] & self.mask[:, None, :]
        return np.where(pair, d, np.nan)


class ClickBehaviour:
    """Base class. ``needs_features``: whether :class:`Impressions` must carry features."""

    needs_features: bool = False

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        raise NotImplementedError

    def with_max_grade(self, max_grade: float) -> "ClickBehaviour":
        """This behaviour with graded mappings' ``max_grade`` set where it is None."""
        return self


class ModelClicks(ClickBehaviour):
    """A probabilistic click model (:mod:`ltrkit.clicks.models`) with relevance-to-probability mappings.

    Args:
        model: the click model (its rank parameters are used).
        attraction: relevance -> attraction mapping.
        satisfaction: relevance -> satisfaction mapping (DBN/SDBN; None = ``attraction``).
    """

    def __init__(self, model: ClickModel, attraction: AttractionMapping, satisfaction: Optional[AttractionMapping] = None) -> None:
        self.model = model
        self.attraction = attraction
        self.satisfaction = satisfaction

    def with_max_grade(self, max_grade: float) -> "ModelClicks":
        satisfaction = None if self.satisfaction is None else self.satisfaction.with_max_grade(max_grade)
        return ModelClicks(self.model, self.attraction.with_max_grade(max_grade), satisfaction)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        mask = impressions.mask
        attraction = np.where(mask, self.attraction(impressions.relevance), 0.0)
        satisfaction = None
        if self.model.uses_satisfaction and self.satisfaction is not None:
            satisfaction = np.where(mask, self.satisfaction(impressions.relevance), 0.0)
        clicks = self.model.simulate(attraction, mask, satisfaction=satisfaction, seed=rng)
        return clicks, self.model.examination(attraction, mask, satisfaction=satisfaction)


class RandomClicks(ClickBehaviour):
    """``n_clicks`` shown positions drawn uniformly without replacement (all of them on shorter lists)."""

    def __init__(self, n_clicks: int) -> None:
        self.n_clicks = check_int("n_clicks", n_clicks)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        mask = impressions.mask
        keys = np.where(mask, rng.random(mask.shape), np.inf)
        order = np.argsort(np.argsort(keys, axis=1), axis=1)
        return mask & (order < self.n_clicks), None


class FixedClicks(ClickBehaviour):
    """Clicks at the given 1-based ``positions`` (those that are shown)."""

    def __init__(self, positions: Sequence[int]) -> None:
        if len(positions) == 0:
            raise ValueError("positions must list at least one 1-based position")
        self.positions = [check_int("positions", p) for p in positions]

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        mask = impressions.mask
        chosen = np.isin(np.arange(1, mask.shape[1] + 1), self.positions)
        return mask & chosen[None, :], None


class OnlyRelevant(ClickBehaviour):
    """Clicks every shown document with relevance ``>= threshold``."""

    def __init__(self, threshold: float = 1.0) -> None:
        self.threshold = float(threshold)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        return impressions.mask & (impressions.relevance >= self.threshold), None


class ThresholdCascade(ClickBehaviour):
    r"""allRank's cascade: rank ``r`` is observed with probability ``(1/r)^eta``, independently;
    the user clicks the first observed document with relevance ``>= threshold`` and stops.

    The true propensity of rank ``r`` is not defined (it depends on the documents above), so
    none is reported.
    """

    def __init__(self, eta: float = 1.0, threshold: float = 1.0) -> None:
        self.eta = check_non_negative("eta", eta)
        self.threshold = float(threshold)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        mask = impressions.mask
        observe = (1.0 / np.arange(1, mask.shape[1] + 1)) ** self.eta
        candidates = mask & (rng.random(mask.shape) < observe) & (impressions.relevance >= self.threshold)
        return candidates & (np.cumsum(candidates, axis=1) == 1), None


class MaxClicks(ClickBehaviour):
    """The clicks of ``inner`` with at most ``max_clicks`` per session: the highest-ranked ones are kept."""

    def __init__(self, inner: ClickBehaviour, max_clicks: int) -> None:
        self.inner = inner
        self.max_clicks = check_int("max_clicks", max_clicks)
        self.needs_features = inner.needs_features

    def with_max_grade(self, max_grade: float) -> "MaxClicks":
        return MaxClicks(self.inner.with_max_grade(max_grade), self.max_clicks)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        clicks, _ = self.inner.simulate(impressions, rng)
        return clicks & (np.cumsum(clicks, axis=1) <= self.max_clicks), None


class Mixture(ClickBehaviour):
    """Each session follows one of ``behaviours``, drawn with ``probabilities``.

    The propensities are the chosen behaviour's, when every behaviour reports them.
    """

    def __init__(self, behaviours: Sequence[ClickBehaviour], probabilities: Sequence[float]) -> None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if len(behaviours) == 0 or probabilities.shape != (len(behaviours),):
            raise ValueError(f"give one probability per behaviour, got {len(behaviours)} behaviours and {probabilities.tolist()}")
        if not np.isfinite(probabilities).all() or (probabilities < 0).any() or not np.isclose(probabilities.sum(), 1.0):
            raise ValueError(f"probabilities must be >= 0 and sum to 1, got {probabilities.tolist()}")
        self.behaviours = list(behaviours)
        self.probabilities = probabilities
        self.needs_features = any(b.needs_features for b in self.behaviours)

    def with_max_grade(self, max_grade: float) -> "Mixture":
        return Mixture([b.with_max_grade(max_grade) for b in self.behaviours], self.probabilities)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        mask = impressions.mask
        choice = rng.choice(len(self.behaviours), size=mask.shape[0], p=self.probabilities)
        clicks = np.zeros(mask.shape, dtype=bool)
        propensities: Optional[np.ndarray] = np.zeros(mask.shape)
        for index, behaviour in enumerate(self.behaviours):
            rows = np.flatnonzero(choice == index)
            if rows.size == 0:
                continue
            part, part_propensities = behaviour.simulate(impressions.subset(rows), rng)
            clicks[rows] = part
            if part_propensities is None:
                propensities = None
            elif propensities is not None:
                propensities[rows] = part_propensities
        return clicks, propensities


class _Combination(ClickBehaviour):
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def __init__(self, behaviours: Sequence[ClickBehaviour]) -> None:
        if len(behaviours) < 2:
            raise ValueError(f"combine at least two behaviours, got {len(behaviours)}")
        self.behaviours = list(behaviours)
        self.needs_features = any(b.needs_features for b in self.behaviours)

    def with_max_grade(self, max_grade: float) -> "_Combination":
        return type(self)([b.with_max_grade(max_grade) for b in self.behaviours])

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        results: List[np.ndarray] = [b.simulate(impressions, rng)[0] for b in self.behaviours]
        clicks = results[0]
        for other in results[1:]:
            clicks = type(self).combine(clicks, other)
        return clicks, None


class AllOf(_Combination):
    """A click where every behaviour clicks (logical and)."""

    combine = staticmethod(np.logical_and)


class AnyOf(_Combination):
    """A click where any behaviour clicks (logical or)."""

    combine = staticmethod(np.logical_or)


class EverythingButDuplicates(ClickBehaviour):
    """Clicks every shown document except duplicates: a document within Euclidean ``distance``
    (default 0: identical features) of a document shown above it."""

    needs_features = True

    def __init__(self, distance: float = 0.0) -> None:
        self.distance = check_non_negative("distance", distance)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        d = impressions.distances()
        k = d.shape[1]
        above = np.tril(np.ones((k, k), dtype=bool), k=-1)
        duplicate = ((d <= self.distance) & above).any(axis=2)
        return impressions.mask & ~duplicate, None


class DiverseClicks(ClickBehaviour):
    """Seq2Slate's diverse clicks: the clicks of ``inner``, top down, except a document closer
    (Euclidean, features) than the ``percentile``-th percentile of its list's pairwise distances
    to a document already clicked (Bello et al. 2018; allRank's ``DiverseClicksModel``).

    The percentile is over the distinct pairs of shown documents (linear interpolation).
    """

    needs_features = True

    def __init__(self, inner: ClickBehaviour, percentile: float) -> None:
        percentile = check_non_negative("percentile", percentile)
        if percentile > 100:
            raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
        self.inner = inner
        self.percentile = percentile

    def with_max_grade(self, max_grade: float) -> "DiverseClicks":
        return DiverseClicks(self.inner.with_max_grade(max_grade), self.percentile)

    def simulate(self, impressions: Impressions, rng: np.random.Generator) -> Result:
        proposed, _ = self.inner.simulate(impressions, rng)
        d = impressions.distances()
        s, k = proposed.shape
        upper = np.triu(np.ones((k, k), dtype=bool), k=1)
        pairs = np.where(upper, d, np.nan).reshape(s, k * k)
        has_pairs = ~np.isnan(pairs).all(axis=1)
        threshold = np.full(s, -np.inf)
        if has_pairs.any():
            threshold[has_pairs] = np.nanpercentile(pairs[has_pairs], self.percentile, axis=1)
        clicks = np.zeros((s, k), dtype=bool)
        for r in range(k):
            too_close = (clicks[:, :r] & (d[:, r, :r] < threshold[:, None])).any(axis=1)
            clicks[:, r] = proposed[:, r] & ~too_close
        return clicks, None
