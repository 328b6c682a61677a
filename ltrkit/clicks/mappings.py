"""Examination propensities per rank and relevance-to-attraction mappings for click simulation.

Ranks are 1-based in formulas and 0-based in arrays: ``propensities[0]`` is rank 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from ltrkit._checks import check_choice, check_int, check_non_negative

__all__ = ["MAPPINGS", "Propensities", "AttractionMapping", "as_generator"]

MAPPINGS = ("graded", "binary")

SeedLike = Union[None, int, np.random.Generator]


def as_generator(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed or a generator (never the global RNG state)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        check_int("seed", seed, minimum=0)
    return np.random.default_rng(seed)


def _check_probability(name: str, value: object) -> float:
    value = check_non_negative(name, value)
    if value > 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


class Propensities:
    r"""Examination probability of each rank: ``(1 / r)^eta`` or a given list.

    .. math::
        p_r = (1 / r)^{\eta}, \quad r = 1, 2, \dots

    Args:
        eta: the exponent (``>= 0``; 0 = every rank examined), used when ``values`` is None.
        values: explicit ``[p_1, p_2, ...]`` in ``(0, 1]``; ranks beyond the list are an error.

    Example:
        >>> Propensities(eta=1.0)(3).tolist()
        [1.0, 0.5, 0.3333333333333333]
    """

    def __init__(self, eta: float = 1.0, values: Optional[Sequence[float]] = None) -> None:
        self.eta = check_non_negative("eta", eta)
        if values is not None:
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all() or (array <= 0).any() or (array > 1).any():
                raise ValueError(f"propensities must be a non-empty list of numbers in (0, 1], got {list(values)!r}")
            values = array
        self.values = values

    def __call__(self, k: int) -> np.ndarray:
        """``[k]`` float64 propensities of ranks ``1..k``."""
        check_int("k", k)
        if self.values is not None:
            if k > self.values.size:
                raise ValueError(f"{self.values.size} propensities given but {k} ranks are shown; give one per rank")
            return self.values[:k].copy()
        return (1.0 / np.arange(1, k + 1, dtype=np.float64)) ** self.eta

    def to_dict(self) -> dict:
        return {"values": self.values.tolist()} if self.values is not None else {"eta": self.eta}


@dataclass(frozen=True)
class AttractionMapping:
    r"""Probability that an examined document is clicked, from its graded relevance ``y``.

    .. math::
        \text{graded:}\quad \alpha(y) = \epsilon_- + (\epsilon_+ - \epsilon_-)\,
            \frac{2^{y} - 1}{2^{y_{\max}} - 1}
        \qquad
        \text{binary:}\quad \alpha(y) = \epsilon_+ \text{ if } y \ge t \text{ else } \epsilon_-

    ``epsilon_minus`` is the click noise on non-relevant documents and ``epsilon_plus`` the
    click probability of a (fully) relevant one (Joachims et al. 2017 use ``epsilon_minus = 0.1``,
    ``epsilon_plus = 1``, the defaults here). Graded labels are clipped to ``[0, y_max]``.

    Args:
        kind: ``"graded"`` or ``"binary"``.
        max_grade: ``y_max`` of the graded form (``> 0``); None = the largest label of the data
            (set with :meth:`with_max_grade` before simulating).
        threshold: ``t`` of the binary form.
        epsilon_minus: attraction of a non-relevant document, in ``[0, 1]``.
        epsilon_plus: attraction of a relevant (top-grade) document, in ``[epsilon_minus, 1]``.

    Example:
        >>> AttractionMapping("graded", max_grade=2, epsilon_minus=0.0)(np.array([0.0, 1.0, 2.0])).tolist()
        [0.0, 0.3333333333333333, 1.0]
        >>> AttractionMapping("binary", threshold=1)(np.array([0.0, 2.0])).tolist()
        [0.1, 1.0]
    """

    kind: str = "graded"
    max_grade: Optional[float] = None
    threshold: float = 1.0
    epsilon_minus: float = 0.1
    epsilon_plus: float = 1.0

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, MAPPINGS)
        if self.max_grade is not None and check_non_negative("max_grade", self.max_grade) == 0:
            raise ValueError("max_grade must be > 0")
        minus = _check_probability("epsilon_minus", self.epsilon_minus)
        plus = _check_probability("epsilon_plus", self.epsilon_plus)
        if minus > plus:
            raise ValueError(f"epsilon_minus ({minus}) must not exceed epsilon_plus ({plus})")

    def with_max_grade(self, max_grade: float) -> "AttractionMapping":
        """This mapping with ``max_grade`` set (the data's largest label) when it is None (graded form only)."""
        if self.kind != "graded" or self.max_grade is not None:
            return self
        return AttractionMapping(self.kind, max_grade if max_grade > 0 else 1.0, self.threshold, self.epsilon_minus, self.epsilon_plus)

    def __call__(self, relevance: np.ndarray) -> np.ndarray:
        """Attraction probabilities, float64, the shape of ``relevance``."""
        relevance = np.asarray(relevance, dtype=np.float64)
        if self.kind == "binary":
            return np.where(relevance >= self.threshold, self.epsilon_plus, self.epsilon_minus)
        if self.max_grade is None:
            raise ValueError("graded mapping without max_grade: call with_max_grade(the data's largest label) first")
        grade = np.clip(relevance, 0.0, self.max_grade)
        share = np.expm1(grade * np.log(2.0)) / np.expm1(self.max_grade * np.log(2.0))
        return self.epsilon_minus + (self.epsilon_plus - self.epsilon_minus) * share
