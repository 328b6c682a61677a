r"""Probabilistic click models: simulate clicks vectorised over sessions, fit them to a log.

Models (Chuklin, Markov, de Rijke, "Click Models for Web Search", 2015; notation: ``alpha`` the
attractiveness of a (query, document) pair, ``E_r`` / ``C_r`` examination / click at rank ``r``):

* :class:`PBM` position-based: ``P(C_r) = gamma_r alpha``; fitted by EM over (document, rank).
* :class:`UBM` user browsing: ``P(E_r | C_<r) = gamma_{r, r'}`` with ``r'`` the rank of the
  previous click (0 = none); fitted by EM over (document, rank, previous-click rank).
* The cascade family, where the user scans down and stops: ``P(E_1) = 1`` and
  ``P(E_{r+1} | E_r, C_r) = C_r ? c^{click}_r : c^{skip}``:

  - :class:`CascadeModel` (CM): stops after the first click (``c^{click} = 0``, ``c^{skip} = 1``);
  - :class:`DCM` dependent click model: ``c^{click}_r = lambda_r``, ``c^{skip} = 1``;
  - :class:`DBN` dynamic Bayesian network: satisfied with probability ``sigma`` after a click;
    ``c^{click} = gamma (1 - sigma)``, ``c^{skip} = gamma``; fitted by EM (Chapelle & Zhang 2009);
  - :class:`SDBN` simplified DBN: ``gamma = 1``.

  CM, DCM and SDBN are fitted by their closed-form counts (DCM with Guo et al.'s estimator that
  takes the last click as the end of examination).

Arrays are ``[S, K]`` (sessions x ranks shown, rank ``r`` at index ``r - 1``) with a ``mask`` of
shown documents (a prefix of each row). Simulation draws from a ``numpy.random.Generator`` (a seed
or a generator; never the global state) with one vectorised step per rank, no loop per session.

Evaluation follows Chuklin et al. section 4: the log-likelihood is the mean over sessions of
``log P(C_1..C_K)`` (natural log, from the conditional click probabilities
``P(C_r = 1 | C_<r)``); the perplexity at rank ``r`` is
``2^{-(1/|S|) sum_s log2 P(C_r = c_{s,r})}`` with the *marginal* click probability
``P(C_r = 1)``, and the reported perplexity is its mean over ranks. Probabilities are clipped to
``[1e-6, 1 - 1e-6]`` for both, so a click the model cannot produce (a second click under CM)
costs a finite amount. Documents not seen when fitting get the mean fitted attractiveness
(and satisfaction).
"""

from __future__ import annotations

from typing import ClassVar, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np

from ltrkit._checks import check_int, check_positive
from ltrkit.clicks.mappings import Propensities, SeedLike, as_generator
from ltrkit.clicks.sessions import ClickSessions

__all__ = ["ClickModel", "PBM", "UBM", "CascadeModel", "DCM", "DBN", "SDBN", "MODELS", "get_model", "PROB_EPS"]

PROB_EPS = 1e-6


def _check_probabilities(name: str, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != mask.shape:
        raise ValueError(f"{name} shape {array.shape} does not match mask shape {mask.shape}")
    shown = array[mask]
    if not np.isfinite(shown).all() or (shown < 0).any() or (shown > 1).any():
        raise ValueError(f"{name} must be probabilities in [0, 1] at shown positions")
    return np.where(mask, array, 0.0)


def _check_batch(attraction: np.ndarray, mask: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    attraction = np.asarray(attraction, dtype=np.float64)
    if attraction.ndim != 2:
        raise ValueError(f"attraction must be [S, K], got shape {attraction.shape}")
    mask = np.ones(attraction.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    return _check_probabilities("attraction", attraction, mask), mask


class _ItemTable:
    """Fitted per-document values: ``keys`` sorted, unseen keys get ``default``."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.keys = keys
        self.values = values
        self.default = float(values.mean()) if values.size else 0.5

    def lookup(self, docs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Values ``[S, K]`` of ``docs`` (0 at padding)."""
        unseen = np.where(mask, self.default, 0.0)
        if self.keys.size == 0:
            return unseen
        where = np.minimum(np.searchsorted(self.keys, docs), self.keys.size - 1)
        return np.where(mask & (self.keys[where] == docs), self.values[where], unseen)

    def to_dict(self) -> Dict[str, float]:
        return {str(int(key)): float(value) for key, value in zip(self.keys, self.values)}


def _flat_items(sessions: ClickSessions) -> Tuple[np.ndarray, np.ndarray]:
    """``(keys, index [S, K])``: the distinct documents and each shown position's index into them (0 at padding)."""
    keys, inverse = np.unique(sessions.docs[sessions.mask], return_inverse=True)
    index = np.zeros(sessions.docs.shape, dtype=np.int64)
    index[sessions.mask] = inverse
    return keys, index


def _ratio(numerator: np.ndarray, denominator: np.ndarray, default: float = 0.5) -> np.ndarray:
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), default)


def _last_click(clicks: np.ndarray) -> np.ndarray:
    """``[S]`` 0-based index of the last click, -1 for a session without clicks."""
    k = clicks.shape[1]
    return np.where(clicks.any(axis=1), k - 1 - np.argmax(clicks[:, ::-1], axis=1), -1)


class ClickModel:
    """Base class: simulation with the model's rank parameters, fitting, evaluation."""

    name: ClassVar[str] = ""
    #: whether the model has a per-document satisfaction probability (DBN, SDBN)
    uses_satisfaction: ClassVar[bool] = False

    attraction_: Optional[_ItemTable] = None
    satisfaction_: Optional[_ItemTable] = None

    # --- simulation -------------------------------------------------------------------------

    def simulate(
        self,
        attraction: np.ndarray,
        mask: Optional[np.ndarray] = None,
        *,
        satisfaction: Optional[np.ndarray] = None,
        seed: SeedLike = None,
    ) -> np.ndarray:
        """Sample clicks ``[S, K]`` bool for sessions with attraction probabilities ``[S, K]``.

        Args:
            attraction: ``[S, K]`` probability that the document at each rank attracts a click.
            mask: ``[S, K]`` bool shown documents (None = all); padding is never clicked.
            satisfaction: ``[S, K]`` satisfaction probabilities (DBN/SDBN; None = ``attraction``).
            seed: an int seed or a ``numpy.random.Generator``.
        """
        attraction, mask = _check_batch(attraction, mask)
        satisfaction = self._satisfaction(attraction, mask, satisfaction)
        return self._simulate(attraction, satisfaction, mask, as_generator(seed)) & mask

    def examination(
        self, attraction: np.ndarray, mask: Optional[np.ndarray] = None, *, satisfaction: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Marginal examination probabilities ``P(E_r = 1)`` ``[S, K]`` (0 at padding): the true
        propensities of the simulated impressions."""
        attraction, mask = _check_batch(attraction, mask)
        satisfaction = self._satisfaction(attraction, mask, satisfaction)
        return np.where(mask, self._examination(attraction, satisfaction, mask), 0.0)

    def _satisfaction(self, attraction: np.ndarray, mask: np.ndarray, satisfaction: Optional[np.ndarray]) -> np.ndarray:
        if not self.uses_satisfaction:
            return attraction
        return attraction if satisfaction is None else _check_probabilities("satisfaction", satisfaction, mask)

    # --- fitting and evaluation ---------------------------------------------------------------

    def fit(self, sessions: ClickSessions, *, max_iterations: int = 100, tol: float = 1e-6) -> "ClickModel":
        """Fit the model's parameters to ``sessions`` (MLE / EM); returns ``self``.

        Args:
            sessions: the training sessions.
            max_iterations: EM iterations at most (ignored by the closed-form models).
            tol: EM stops when no parameter moves by more than this.
        """
        if not isinstance(sessions, ClickSessions):
            raise ValueError(f"sessions must be ClickSessions, got {type(sessions).__name__}")
        if sessions.n_sessions == 0 or not sessions.mask.any():
            raise ValueError("cannot fit a click model to a log without impressions")
        check_int("max_iterations", max_iterations)
        check_positive("tol", tol)
        self._fit(sessions, max_iterations, tol)
        return self

    def set_documents(
        self, keys: Sequence[int], attraction: Sequence[float], satisfaction: Optional[Sequence[float]] = None
    ) -> "ClickModel":
        """Set per-document parameters directly (instead of :meth:`fit`), e.g. a simulator's true
        values to score held-out sessions; returns ``self``."""
        keys = np.asarray(keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if keys.ndim != 1 or (np.diff(keys) == 0).any():
            raise ValueError("keys must be a 1-D list of distinct document keys")
        values = np.asarray(attraction, dtype=np.float64)
        mask = np.ones(keys.shape, dtype=bool)
        self.attraction_ = _ItemTable(keys, _check_probabilities("attraction", values, mask)[order])
        if satisfaction is not None:
            values = np.asarray(satisfaction, dtype=np.float64)
            self.satisfaction_ = _ItemTable(keys, _check_probabilities("satisfaction", values, mask)[order])
        return self

    def _fitted(self, sessions: ClickSessions) -> Tuple[np.ndarray, np.ndarray]:
        if self.attraction_ is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(sessions) first")
        attraction = self.attraction_.lookup(sessions.docs, sessions.mask)
        table = self.satisfaction_ if self.satisfaction_ is not None else self.attraction_
        return attraction, table.lookup(sessions.docs, sessions.mask)

    def conditional_click_probabilities(self, sessions: ClickSessions) -> np.ndarray:
        """``P(C_r = 1 | C_<r)`` ``[S, K]`` under the fitted parameters, given each session's clicks."""
        attraction, satisfaction = self._fitted(sessions)
        return np.where(sessions.mask, self._conditional(attraction, satisfaction, sessions.clicks, sessions.mask), 0.0)

    def click_probabilities(self, sessions: ClickSessions) -> np.ndarray:
        """Marginal ``P(C_r = 1)`` ``[S, K]`` under the fitted parameters (clicks not observed)."""
        attraction, satisfaction = self._fitted(sessions)
        return np.where(sessions.mask, self._marginal(attraction, satisfaction, sessions.mask), 0.0)

    def log_likelihood(self, sessions: ClickSessions) -> float:
        """Mean over sessions of ``log P(C_1, ..., C_K)`` (natural log; higher is better)."""
        q = np.clip(self.conditional_click_probabilities(sessions), PROB_EPS, 1 - PROB_EPS)
        per_position = np.where(sessions.clicks, np.log(q), np.log1p(-q)) * sessions.mask
        return float(per_position.sum() / max(sessions.n_sessions, 1))

    def perplexity(self, sessions: ClickSessions) -> Tuple[float, np.ndarray]:
        """``(mean over ranks, [K] per rank)`` click perplexity (1 is perfect, 2 a coin flip)."""
        q = np.clip(self.click_probabilities(sessions), PROB_EPS, 1 - PROB_EPS)
        bits = np.where(sessions.clicks, np.log2(q), np.log2(1 - q)) * sessions.mask
        shown = sessions.mask.sum(axis=0)
        per_rank = np.exp2(-bits.sum(axis=0) / np.maximum(shown, 1))
        per_rank = per_rank[shown > 0]
        return float(per_rank.mean()) if per_rank.size else float("nan"), per_rank

    def params(self) -> Dict[str, object]:
        """JSON-able parameters: the rank parameters, and per-document ones once fitted."""
        out: Dict[str, object] = {"model": self.name, **self._rank_params()}
        if self.attraction_ is not None:
            out["attractiveness"] = self.attraction_.to_dict()
        if self.satisfaction_ is not None:
            out["satisfaction"] = self.satisfaction_.to_dict()
        return out

    # --- per model ----------------------------------------------------------------------------

    def _simulate(self, attraction: np.ndarray, satisfaction: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _examination(self, attraction: np.ndarray, satisfaction: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _conditional(self, attraction: np.ndarray, satisfaction: np.ndarray, clicks: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _marginal(self, attraction: np.ndarray, satisfaction: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return attraction * self._examination(attraction, satisfaction, mask)

    def _fit(self, sessions: ClickSessions, max_iterations: int, tol: float) -> None:
        raise NotImplementedError

    def _rank_params(self) -> Dict[str, object]:
        return {}


# ---------------------------------------------------------------------------------------------
# PBM and UBM: examination given by the rank (and the previous click)


def _aggregate(items: np.ndarray, cells: np.ndarray, clicks: np.ndarray, n_cells: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(item, cell, impressions, clicks)`` per distinct (item, cell): impressions that share
    both share their E-step posterior, so EM runs over distinct pairs, not over the log."""
    pair, inverse = np.unique(items * n_cells + cells, return_inverse=True)
    return pair // n_cells, pair % n_cells, np.bincount(inverse).astype(np.float64), np.bincount(inverse, clicks)


def _examination_em(
    items: np.ndarray, cells: np.ndarray, clicks: np.ndarray, n_items: int, gamma: np.ndarray,
    max_iterations: int, tol: float,
) -> Tuple[np.ndarray, np.ndarray]:
    r"""EM for ``P(C) = gamma_cell alpha_item`` over flat impressions (Chuklin et al. 4.2).

    E-step for an unclicked impression:
    ``P(E = 1 | C = 0) = gamma (1 - alpha) / (1 - gamma alpha)``,
    ``P(A = 1 | C = 0) = (1 - gamma) alpha / (1 - gamma alpha)``; a click means ``E = A = 1``.
    M-step: each parameter is the mean posterior over its impressions.
    """
    item, cell, shown, clicked = _aggregate(items, cells, clicks, gamma.size)
    skipped = shown - clicked
    alpha = np.full(n_items, 0.5)
    item_counts = np.bincount(item, shown, minlength=n_items)
    cell_counts = np.bincount(cell, shown, minlength=gamma.size)
    for _ in range(max_iterations):
        a, g = alpha[item], gamma[cell]
        rest = np.maximum(1.0 - a * g, PROB_EPS)
        post_e = clicked + skipped * g * (1.0 - a) / rest
        post_a = clicked + skipped * a * (1.0 - g) / rest
        new_gamma = _ratio(np.bincount(cell, post_e, minlength=gamma.size), cell_counts, default=0.0)
        new_alpha = _ratio(np.bincount(item, post_a, minlength=n_items), item_counts)
        change = max(np.abs(new_gamma - gamma).max(), np.abs(new_alpha - alpha).max())
        alpha, gamma = new_alpha, new_gamma
        if change < tol:
            break
    return alpha, gamma


class PBM(ClickModel):
    r"""Position-based model: ``P(C_r = 1) = gamma_r alpha_{q,d}``, examination independent of clicks.

    Args:
        propensities: the ``gamma_r`` used to simulate (a :class:`Propensities`, a list, or None =
            ``(1/r)^1``). Fitting replaces them with the EM estimate (``propensities_``; the
            likelihood depends on ``gamma alpha`` only, so the scale comes from the EM start and
            ``relative_propensities_ = gamma / gamma_1`` is the identified quantity).

    Example:
        >>> clicks = PBM([1.0, 0.5]).simulate(np.ones((4, 2)), seed=0)
        >>> clicks.shape, bool(clicks[:, 0].all())
        ((4, 2), True)
    """

    name = "pbm"

    def __init__(self, propensities: Union[None, Propensities, Sequence[float]] = None) -> None:
        self.propensities = propensities if isinstance(propensities, Propensities) else (
            Propensities(1.0) if propensities is None else Propensities(values=propensities))
        self.propensities_: Optional[np.ndarray] = None

    def _gamma(self, k: int) -> np.ndarray:
        if self.propensities_ is not None:
            if k > self.propensities_.size:
                raise ValueError(f"fitted on {self.propensities_.size} ranks, got {k}")
            return self.propensities_[:k]
        return self.propensities(k)

    def _examination(self, attraction, satisfaction, mask):
        return np.broadcast_to(self._gamma(attraction.shape[1]), attraction.shape).copy()

    def _simulate(self, attraction, satisfaction, mask, rng):
        return rng.random(attraction.shape) < attraction * self._gamma(attraction.shape[1])

    def _conditional(self, attraction, satisfaction, clicks, mask):
        return self._marginal(attraction, satisfaction, mask)

    def _fit(self, sessions, max_iterations, tol):
        keys, index = _flat_items(sessions)
        m = sessions.mask
        ranks = np.broadcast_to(np.arange(sessions.top_k), m.shape)[m]
        alpha, gamma = _examination_em(index[m], ranks, sessions.clicks[m], keys.size, np.full(sessions.top_k, 0.5), max_iterations, tol)
        self.attraction_ = _ItemTable(keys, alpha)
        self.propensities_ = gamma

    @property
    def relative_propensities_(self) -> np.ndarray:
        """Fitted ``gamma_r / gamma_1``."""
        if self.propensities_ is None:
            raise ValueError("PBM is not fitted")
        return self.propensities_ / self.propensities_[0]

    def _rank_params(self):
        if self.propensities_ is None:
            return {"propensities": self.propensities.to_dict()}
        return {"propensities": self.propensities_.tolist(), "relative_propensities": self.relative_propensities_.tolist()}


def _previous_click_ranks(clicks: np.ndarray) -> np.ndarray:
    """``[S, K]`` 1-based rank of the last click above each rank (0 = no click above)."""
    ranks = np.where(clicks, np.arange(1, clicks.shape[1] + 1), 0)
    up_to = np.maximum.accumulate(ranks, axis=1)
    return np.concatenate([np.zeros((clicks.shape[0], 1), dtype=up_to.dtype), up_to[:, :-1]], axis=1)


class UBM(ClickModel):
    r"""User browsing model: ``P(C_r = 1 | C_<r) = gamma_{r, r'} alpha_{q,d}``, ``r'`` = rank of the
    previous click (0 = none).

    Args:
        gamma: ``[K, K]`` simulation table, ``gamma[r - 1, r']`` for ``0 <= r' < r`` (entries with
            ``r' >= r`` are unused); None = ``(1 / (r - r'))^eta``, the examination decaying with
            the distance from the last click (Dupret & Piwowarski 2008).
        eta: the exponent of the default table.

    Example:
        >>> UBM(eta=1.0).gamma_table(3).round(2).tolist()
        [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.33, 0.5, 1.0]]
    """

    name = "ubm"

    def __init__(self, gamma: Optional[Sequence[Sequence[float]]] = None, eta: float = 1.0) -> None:
        self.eta = Propensities(eta).eta
        self.gamma = None
        if gamma is not None:
            table = np.asarray(gamma, dtype=np.float64)
            if table.ndim != 2 or table.shape[0] != table.shape[1] or not np.isfinite(table).all() or (table < 0).any() or (table > 1).any():
                raise ValueError("gamma must be a square [K, K] table of probabilities in [0, 1]")
            self.gamma = table
        self.gamma_: Optional[np.ndarray] = None

    def gamma_table(self, k: int) -> np.ndarray:
        """``[k, k]`` ``gamma[r - 1, r']`` (0 where ``r' >= r``)."""
        table = self.gamma_ if self.gamma_ is not None else self.gamma
        if table is not None:
            if k > table.shape[0]:
                raise ValueError(f"gamma covers {table.shape[0]} ranks, got {k}")
            return np.tril(table[:k, :k])
        r = np.arange(1, k + 1)[:, None]
        previous = np.arange(k)[None, :]
        return np.where(previous < r, (1.0 / np.maximum(r - previous, 1)) ** self.eta, 0.0)

    def _simulate(self, attraction, satisfaction, mask, rng):
        s, k = attraction.shape
        table = self.gamma_table(k)
        clicks = np.zeros((s, k), dtype=bool)
        previous = np.zeros(s, dtype=np.int64)
        draws = rng.random((s, k))
        for r in range(k):
            clicks[:, r] = draws[:, r] < attraction[:, r] * table[r, previous]
            previous = np.where(clicks[:, r] & mask[:, r], r + 1, previous)
        return clicks

    def _conditional(self, attraction, satisfaction, clicks, mask):
        k = attraction.shape[1]
        return attraction * self.gamma_table(k)[np.arange(k), _previous_click_ranks(clicks)]

    def _examination(self, attraction, satisfaction, mask):
        # stay[:, j]: P(last click so far at rank j (0 = none)); summing over it marginalises the history
        s, k = attraction.shape
        table = self.gamma_table(k)
        stay = np.zeros((s, k + 1))
        stay[:, 0] = 1.0
        examined = np.zeros((s, k))
        for r in range(k):
            e = stay[:, : r + 1] * table[r, : r + 1]
            examined[:, r] = e.sum(axis=1)
            click = attraction[:, r] * examined[:, r]
            stay[:, : r + 1] -= attraction[:, r, None] * e
            stay[:, r + 1] = click
        return examined

    def _fit(self, sessions, max_iterations, tol):
        keys, index = _flat_items(sessions)
        m, k = sessions.mask, sessions.top_k
        cells = (np.arange(k)[None, :] * k + _previous_click_ranks(sessions.clicks))[m]
        start = np.where(np.tril(np.ones((k, k))) > 0, 0.5, 0.0).ravel()
        alpha, gamma = _examination_em(index[m], cells, sessions.clicks[m], keys.size, start, max_iterations, tol)
        self.attraction_ = _ItemTable(keys, alpha)
        self.gamma_ = gamma.reshape(k, k)

    def _rank_params(self):
        if self.gamma_ is None:
            return {"gamma": self.gamma.tolist()} if self.gamma is not None else {"eta": self.eta}
        return {"gamma": self.gamma_.tolist()}


# ---------------------------------------------------------------------------------------------
# the cascade family


class _CascadeFamily(ClickModel):
    """``P(E_1) = 1``; after rank ``r`` continue with ``c^{click}_r`` if clicked, ``c^{skip}_r`` if not."""

    def _continuations(self, attraction: np.ndarray, satisfaction: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _simulate(self, attraction, satisfaction, mask, rng):
        after_click, after_skip = self._continuations(attraction, satisfaction)
        s, k = attraction.shape
        clicks = np.zeros((s, k), dtype=bool)
        examined = np.ones(s, dtype=bool)
        attract, stay = rng.random((s, k)), rng.random((s, k))
        for r in range(k):
            clicks[:, r] = examined & (attract[:, r] < attraction[:, r])
            examined &= stay[:, r] < np.where(clicks[:, r], after_click[:, r], after_skip[:, r])
        return clicks

    def _examination(self, attraction, satisfaction, mask):
        after_click, after_skip = self._continuations(attraction, satisfaction)
        step = attraction * after_click + (1.0 - attraction) * after_skip
        return np.concatenate([np.ones((attraction.shape[0], 1)), np.cumprod(step[:, :-1], axis=1)], axis=1)

    def _conditional(self, attraction, satisfaction, clicks, mask):
        # forward filtering of P(E_r = 1 | C_<r)
        after_click, after_skip = self._continuations(attraction, satisfaction)
        s, k = attraction.shape
        out = np.zeros((s, k))
        examined = np.ones(s)
        for r in range(k):
            a = attraction[:, r]
            out[:, r] = examined * a
            skipped = after_skip[:, r] * examined * (1.0 - a) / np.maximum(1.0 - examined * a, PROB_EPS)
            examined = np.where(clicks[:, r], after_click[:, r], skipped)
        return out

    def _fit_counts(self, sessions: ClickSessions, *, until_last: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, index, examined [S, K])``: impressions up to the first (or last) click, all
        without a click, which the closed-form estimators count as examined."""
        keys, index = _flat_items(sessions)
        clicks, m = sessions.clicks, sessions.mask
        k = sessions.top_k
        if until_last:
            stop = _last_click(clicks)
        else:
            stop = np.where(clicks.any(axis=1), np.argmax(clicks, axis=1), -1)
        stop = np.where(stop < 0, k - 1, stop)
        examined = m & (np.arange(k)[None, :] <= stop[:, None])
        return keys, index, examined

    def _alpha_from_counts(self, keys: np.ndarray, index: np.ndarray, examined: np.ndarray, clicks: np.ndarray) -> _ItemTable:
        shown = np.bincount(index[examined], minlength=keys.size)
        clicked = np.bincount(index[examined & clicks], minlength=keys.size)
        return _ItemTable(keys, _ratio(clicked.astype(np.float64), shown))


class CascadeModel(_CascadeFamily):
    r"""Cascade model (Craswell et al. 2008): scan down, click with probability ``alpha``, stop at the first click.

    Fitted in closed form: ``alpha = clicks / impressions at or above the first click`` (all
    impressions of a session without clicks). Clicks below the first one are ignored when fitting
    (the model cannot produce them).

    Example:
        >>> CascadeModel().simulate(np.ones((2, 3)), seed=0).tolist()
        [[True, False, False], [True, False, False]]
    """

    name = "cm"

    def _continuations(self, attraction, satisfaction):
        return np.zeros_like(attraction), np.ones_like(attraction)

    def _fit(self, sessions, max_iterations, tol):
        keys, index, examined = self._fit_counts(sessions, until_last=False)
        self.attraction_ = self._alpha_from_counts(keys, index, examined, sessions.clicks)


class DCM(_CascadeFamily):
    r"""Dependent click model (Guo, Liu, Wang 2009): after a click at rank ``r`` continue with ``lambda_r``.

    Fitted in closed form (Guo et al.): ``alpha = clicks / impressions at or above the last click``
    (all impressions of a session without clicks), ``lambda_r = 1 - (sessions whose last click is
    at r) / (clicks at r)``.

    Args:
        continuation: ``lambda_r`` to simulate: one number for every rank or a list per rank.
    """

    name = "dcm"

    def __init__(self, continuation: Union[float, Sequence[float]] = 0.5) -> None:
        values = np.atleast_1d(np.asarray(continuation, dtype=np.float64))
        if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise ValueError(f"continuation must be a probability or a list of probabilities, got {continuation!r}")
        self.continuation = values
        self.continuation_: Optional[np.ndarray] = None

    def _lambdas(self, k: int) -> np.ndarray:
        values = self.continuation_ if self.continuation_ is not None else self.continuation
        if values.size == 1:
            return np.full(k, values[0])
        if k > values.size:
            raise ValueError(f"{values.size} continuation probabilities for {k} ranks; give one per rank")
        return values[:k]

    def _continuations(self, attraction, satisfaction):
        return np.broadcast_to(self._lambdas(attraction.shape[1]), attraction.shape), np.ones_like(attraction)

    def _fit(self, sessions, max_iterations, tol):
        keys, index, examined = self._fit_counts(sessions, until_last=True)
        self.attraction_ = self._alpha_from_counts(keys, index, examined, sessions.clicks)
        k = sessions.top_k
        last = _last_click(sessions.clicks)
        stops = np.bincount(last[last >= 0], minlength=k).astype(np.float64)
        self.continuation_ = 1.0 - _ratio(stops, sessions.clicks.sum(axis=0), default=1.0)

    def _rank_params(self):
        values = self.continuation_ if self.continuation_ is not None else self.continuation
        return {"continuation": values.tolist()}


class DBN(_CascadeFamily):
    r"""Dynamic Bayesian network (Chapelle & Zhang 2009).

    .. math::
        C_r = E_r A_r,\ P(A_r) = \alpha,\ P(S_r \mid C_r = 1) = \sigma,\
        P(E_{r+1} \mid E_r = 1, S_r = 0) = \gamma,\ E_{r+1} = 0 \text{ if } S_r = 1

    Fitted by EM: every rank down to the last click is examined; below it the posterior of
    examination, of the last clicked document's satisfaction and of the continuation follow from
    one backward pass ``Z_r = P(no click at r..K | E_r = 1) = (1 - alpha_r)(1 - gamma + gamma Z_{r+1})``.

    Args:
        gamma: continuation probability after an unsatisfying rank (simulation; fitted as ``gamma_``).
    """

    name = "dbn"
    uses_satisfaction = True

    def __init__(self, gamma: float = 0.9) -> None:
        gamma = check_positive("gamma", gamma)
        if gamma > 1:
            raise ValueError(f"gamma must be a probability in (0, 1], got {gamma!r}")
        self.gamma = gamma
        self.gamma_: Optional[float] = None

    def _g(self) -> float:
        return self.gamma_ if self.gamma_ is not None else self.gamma

    def _continuations(self, attraction, satisfaction):
        g = self._g()
        return g * (1.0 - satisfaction), np.full_like(attraction, g)

    def _fit(self, sessions, max_iterations, tol):
        keys, index = _flat_items(sessions)
        clicks, m = sessions.clicks, sessions.mask
        s, k = clicks.shape
        rows = np.arange(s)
        shown = m.sum(axis=1)
        last = _last_click(clicks)
        has_click = last >= 0
        after = m & (np.arange(k)[None, :] > last[:, None])  # below the last click (every rank if none)
        last_index = index[rows, np.maximum(last, 0)]
        # the last click has a successor whose examination is unobserved: its satisfaction matters for gamma
        last_has_next = has_click & (last + 1 < shown)
        shown_counts = np.bincount(index[m], minlength=keys.size)
        click_counts = np.bincount(index[clicks], minlength=keys.size)
        has_successor = m & (np.arange(k)[None, :] + 1 < shown[:, None])
        has_predecessor = m & (np.arange(k)[None, :] > 0)
        alpha, sigma, g = np.full(keys.size, 0.5), np.full(keys.size, 0.5), 0.5
        for _ in range(max_iterations):
            a = np.where(m, alpha[index], 0.0)
            z = np.ones((s, k + 1))  # z[:, r] = P(no click at ranks r.. | E_r = 1); 1 past the shown ranks
            for r in range(k - 1, -1, -1):
                z[:, r] = np.where(m[:, r], (1.0 - a[:, r]) * (1.0 - g + g * z[:, r + 1]), 1.0)
            sig_last = sigma[last_index]
            total = np.where(has_click, sig_last + (1.0 - sig_last) * (1.0 - g + g * z[rows, last + 1]), z[:, 0])
            p_satisfied = np.where(has_click, sig_last / np.maximum(total, PROB_EPS), 0.0)
            examined = np.where(m & ~after, 1.0, 0.0)
            reach = np.where(has_click, (1.0 - sig_last) * g, 1.0)  # P(E_{last+1} = 1), unnormalised
            for r in range(k):
                here = after[:, r]
                examined[:, r] = np.where(here, reach * z[:, r] / np.maximum(total, PROB_EPS), examined[:, r])
                reach = np.where(here, reach * (1.0 - a[:, r]) * g, reach)
            # gamma: continuations over opportunities (examined and unsatisfied, with a shown successor)
            continued = (examined * has_predecessor).sum()
            chances = (examined * has_successor).sum() - p_satisfied[last_has_next].sum()
            post_a = np.where(clicks, 1.0, (1.0 - examined) * a)
            new_alpha = _ratio(np.bincount(index[m], post_a[m], minlength=keys.size), shown_counts)
            new_sigma = _ratio(np.bincount(last_index[has_click], p_satisfied[has_click], minlength=keys.size), click_counts)
            new_g = float(continued / chances) if chances > 0 else g
            change = max(np.abs(new_alpha - alpha).max(), np.abs(new_sigma - sigma).max(), abs(new_g - g))
            alpha, sigma, g = new_alpha, new_sigma, new_g
            if change < tol:
                break
        self.attraction_ = _ItemTable(keys, alpha)
        self.satisfaction_ = _ItemTable(keys, sigma)
        self.gamma_ = g

    def _rank_params(self):
        return {"gamma": self._g()}


class SDBN(_CascadeFamily):
    r"""Simplified DBN (Chapelle & Zhang 2009): the DBN with ``gamma = 1``.

    Fitted in closed form: ``alpha = clicks / impressions at or above the last click`` (all
    impressions of a session without clicks), ``sigma = (sessions whose last click is the
    document) / (clicks on the document)``.
    """

    name = "sdbn"
    uses_satisfaction = True

    def _continuations(self, attraction, satisfaction):
        return 1.0 - satisfaction, np.ones_like(attraction)

    def _fit(self, sessions, max_iterations, tol):
        keys, index, examined = self._fit_counts(sessions, until_last=True)
        self.attraction_ = self._alpha_from_counts(keys, index, examined, sessions.clicks)
        last = _last_click(sessions.clicks)
        has_click = last >= 0
        last_index = index[np.arange(sessions.n_sessions), np.maximum(last, 0)][has_click]
        clicks = np.bincount(index[sessions.clicks], minlength=keys.size)
        self.satisfaction_ = _ItemTable(keys, _ratio(np.bincount(last_index, minlength=keys.size).astype(np.float64), clicks))


MODELS: Dict[str, Type[ClickModel]] = {
    "pbm": PBM, "cm": CascadeModel, "cascade": CascadeModel, "dcm": DCM, "ubm": UBM, "dbn": DBN, "sdbn": SDBN,
}


def get_model(name: str, **params: object) -> ClickModel:
    """A click model by name (``pbm``, ``cm``/``cascade``, ``dcm``, ``ubm``, ``dbn``, ``sdbn``)."""
    if name not in MODELS:
        raise KeyError(f"unknown click model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](**params)
