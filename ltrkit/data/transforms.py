"""Feature normalisation fitted on training data and applied to validation/test data.

Methods (per feature column ``j``):

* ``"zscore"``: :math:`(x - \\mu_j) / \\sigma_j` with the population standard deviation.
* ``"minmax"``: :math:`(x - \\min_j) / (\\max_j - \\min_j)`, so training data lands in ``[0, 1]``.
* ``"log1p"``: :math:`y = \\mathrm{sign}(x) \\log(1 + |x|)` then z-score of ``y`` (statistics
  of ``y`` fitted on the training data). Suits MSLR's heavy-tailed counts and scores, where a
  plain z-score leaves a few huge values dominating.
* ``"quantile"``: the empirical CDF of each training column, :math:`F_j(x) \\in [0, 1]`,
  piecewise linear between ``n_quantiles`` (1,000) quantiles of the training values (as
  scikit-learn's ``QuantileTransformer``; values outside the training range map to 0 or 1).
* ``"rank_gauss"``: :math:`\\Phi^{-1}(F_j(x))`, the quantile level mapped to a standard normal
  (levels clipped to :math:`[10^{-7}, 1 - 10^{-7}]`, so outputs lie in about
  :math:`[-5.2, 5.2]`; scikit-learn's ``output_distribution="normal"``). Monotone and insensitive
  to a feature's scale or outliers; the Gaussian shape suits batch-normalised networks.
* ``"query_zscore"`` / ``"query_minmax"``: the same within each query (LETOR's "QueryLevelNorm"),
  using only that query's documents; nothing is learned from the training data but the
  feature count.
* ``"none"``: identity (still checks the feature count).

The quantile methods fit on at most 200,000 evenly spaced training rows (a deterministic
subsample, as scikit-learn subsamples). The map is piecewise linear through the distinct
quantile values, each placed at the middle level of its run of equal quantiles (a feature with
many equal values, such as a binary one, has such runs): a binary feature that is 0 for 70% of
the documents maps to levels 0.35 and 0.85 (mid-ranks) and a constant feature to 0.5
(``quantile``) or 0 (``rank_gauss``). Where quantiles are distinct this is scikit-learn's map;
scikit-learn instead pins the lowest and highest training values to exactly 0 and 1, and
interpolates from a run's last level to the next run's first.

A column with zero spread (``min == max`` in the fitted data, or within a query for the
per-query methods) gets shift = its value and scale 1, so it maps to exactly 0 instead of
dividing by zero. Statistics are accumulated
in float64 over chunks of rows (Chan et al.'s pairwise update of mean and squared deviations),
so a memory-mapped MSLR-WEB30K matrix (3.7M x 136) is never copied whole; outputs are float32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ltrkit._atomic import atomic_path
from ltrkit.data.dataset import RankingDataset

__all__ = ["METHODS", "Normalizer", "normal_quantile"]

METHODS = ("zscore", "minmax", "log1p", "quantile", "rank_gauss", "query_zscore", "query_minmax", "none")
_PER_QUERY = ("query_zscore", "query_minmax")
_QUANTILE_METHODS = ("quantile", "rank_gauss")
N_QUANTILES = 1000
QUANTILE_SUBSAMPLE = 200_000
_GAUSS_CLIP = 1e-7

# Acklam's rational approximation of the normal quantile function (relative error < 1.2e-9)
_ACKLAM_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_ACKLAM_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01, 1.0)
_ACKLAM_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00, 1.0)
_ACKLAM_TAIL = 0.02425


def normal_quantile(p: np.ndarray) -> np.ndarray:
    """:math:`\\Phi^{-1}(p)` elementwise for ``p`` in ``(0, 1)`` (float64, absolute error < 1e-8 for p in [1e-7, 1 - 1e-7]).

    Acklam's rational approximation; numpy has no ``ndtri`` and the data layer does not import
    scipy or torch.
    """
    p = np.asarray(p, dtype=np.float64)
    out = p - 0.5
    central = np.abs(out) <= 0.5 - _ACKLAM_TAIL
    q = out[central]
    r = q * q
    out[central] = q * _horner(_ACKLAM_A, r) / _horner(_ACKLAM_B, r)
    lower = ~central & (p < 0.5)
    upper = ~central & ~lower
    for side, sign in ((lower, 1.0), (upper, -1.0)):
        tail = p[side] if sign > 0 else 1.0 - p[side]
        t = np.sqrt(-2.0 * np.log(tail))
        out[side] = sign * _horner(_ACKLAM_C, t) / _horner(_ACKLAM_D, t)
    return out


def _horner(coefficients: tuple, x: np.ndarray) -> np.ndarray:
    """``sum(c[k] * x**(n-1-k))`` with in-place updates (``np.polyval`` allocates on every step)."""
    y = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        y *= x
        y += c
    return y
_CHUNK_ROWS = 1 << 16
_STATE_VERSION = 1


def _signed_log1p_inplace(x: np.ndarray) -> None:
    """``x <- sign(x) * log(1 + |x|)`` on a float64 array, without temporaries."""
    negative = np.signbit(x)
    np.abs(x, out=x)
    np.log1p(x, out=x)
    np.negative(x, out=x, where=negative)


class Normalizer:
    """Per-feature normalisation with a JSON-serialisable state.

    Args:
        method: one of :data:`METHODS`.

    Raises:
        ValueError: on an unknown method.

    Example:
        >>> import numpy as np
        >>> norm = Normalizer("minmax")
        >>> _ = norm.fit_features(np.array([[0.0, 5.0], [2.0, 5.0]], dtype=np.float32))
        >>> norm.transform_features(np.array([[1.0, 5.0]], dtype=np.float32)).tolist()
        [[0.5, 0.0]]
    """

    def __init__(self, method: str = "zscore") -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        self.method = method
        self.n_features: Optional[int] = None
        self.shift: Optional[np.ndarray] = None
        self.scale: Optional[np.ndarray] = None
        self.quantiles: Optional[np.ndarray] = None

    @property
    def is_fitted(self) -> bool:
        return self.n_features is not None

    def __repr__(self) -> str:
        return f"Normalizer(method={self.method!r}, n_features={self.n_features})"

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: RankingDataset) -> "Normalizer":
        """Fit the statistics on ``dataset.features`` (streamed in chunks); returns ``self``.

        Raises:
            ValueError: if the features hold NaN or inf, or the dataset has no documents for a
                method that needs statistics.
        """
        if not isinstance(dataset, RankingDataset):
            raise ValueError(f"dataset must be a RankingDataset, got {type(dataset).__name__}")
        return self.fit_features(dataset.features, source=dataset.source)

    def fit_features(self, features: np.ndarray, *, source: str = "<array>") -> "Normalizer":
        """Fit on a ``[n_docs, n_features]`` array (see :meth:`fit`)."""
        features = _check_matrix(features, "features")
        n_docs, n_features = features.shape
        self.n_features = n_features
        if self.method in _PER_QUERY or self.method == "none":
            self.shift = self.scale = None
            return self
        if n_docs == 0:
            raise ValueError(f"{source}: cannot fit a {self.method!r} normalizer on 0 documents")
        if self.method in _QUANTILE_METHODS:
            self._fit_quantiles(features, source)
            return self
        count = 0
        mean = np.zeros(n_features)
        squares = np.zeros(n_features)
        low = np.full(n_features, np.inf)
        high = np.full(n_features, -np.inf)
        for start in range(0, n_docs, _CHUNK_ROWS):
            chunk = np.array(features[start : start + _CHUNK_ROWS], dtype=np.float64)
            if self.method == "log1p":
                _signed_log1p_inplace(chunk)
            chunk_low, chunk_high = chunk.min(axis=0), chunk.max(axis=0)
            # min/max propagate NaN and expose inf, so this check costs no extra pass
            if not (np.isfinite(chunk_low).all() and np.isfinite(chunk_high).all()):
                _check_finite(np.asarray(features[start : start + _CHUNK_ROWS]), source, start)
            np.minimum(low, chunk_low, out=low)
            np.maximum(high, chunk_high, out=high)
            rows = chunk.shape[0]
            chunk_mean = chunk.mean(axis=0)
            chunk -= chunk_mean
            np.square(chunk, out=chunk)
            chunk_squares = chunk.sum(axis=0)
            total = count + rows
            delta = chunk_mean - mean
            mean += delta * (rows / total)
            squares += chunk_squares + delta**2 * (count * rows / total)
            count = total
        # constancy is decided exactly (min == max): a rounded mean/variance of a constant
        # column can be 1 ulp off, which would turn 0/0 into noise
        constant = high == low
        if self.method == "minmax":
            shift, spread = low, high - low
        else:
            shift, spread = np.where(constant, low, mean), np.sqrt(squares / count)
        self.shift = shift
        self.scale = np.where(constant | ~(spread > 0), 1.0, spread)
        return self

    def _fit_quantiles(self, features: np.ndarray, source: str) -> None:
        n_docs = features.shape[0]
        for start in range(0, n_docs, _CHUNK_ROWS):
            # a float64 sum is finite iff every value is (float32 sums cannot overflow float64)
            chunk = np.asarray(features[start : start + _CHUNK_ROWS])
            if not np.isfinite(chunk.sum(dtype=np.float64)):
                _check_finite(chunk, source, start)
        rows = features if n_docs <= QUANTILE_SUBSAMPLE else features[np.linspace(0, n_docs - 1, QUANTILE_SUBSAMPLE).astype(np.int64)]
        sample = np.asarray(rows, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, min(N_QUANTILES, sample.shape[0]))
        self.quantiles = np.quantile(sample, levels, axis=0)
        self.shift = self.scale = None

    def _quantile_curves(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per feature: its distinct fitted quantiles and the middle level of each one's run."""
        levels = np.linspace(0.0, 1.0, self.quantiles.shape[0])
        curves = []
        for knots in self.quantiles.T:
            distinct, first, counts = np.unique(knots, return_index=True, return_counts=True)
            curves.append((distinct, 0.5 * (levels[first] + levels[first + counts - 1])))
        return curves

    def _transform_quantiles(self, chunk: np.ndarray, curves: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for j, (knots, levels) in enumerate(curves):
            chunk[:, j] = np.interp(chunk[:, j], knots, levels)
        if self.method == "rank_gauss":
            np.clip(chunk, _GAUSS_CLIP, 1.0 - _GAUSS_CLIP, out=chunk)
            chunk[:] = normal_quantile(chunk)

    # --------------------------------------------------------------- transform
    def transform(self, dataset: RankingDataset) -> RankingDataset:
        """A new dataset with normalised float32 features (labels, offsets, ids shared).

        Raises:
            ValueError: if not fitted, or the feature count differs from the fitted one.
        """
        if not isinstance(dataset, RankingDataset):
            raise ValueError(f"dataset must be a RankingDataset, got {type(dataset).__name__}")
        features = self.transform_features(dataset.features, query_offsets=dataset.query_offsets, source=dataset.source)
        return RankingDataset(
            features=features,
            labels=dataset.labels,
            query_offsets=dataset.query_offsets,
            qids=dataset.qids,
            doc_ids=dataset.doc_ids,
            source=dataset.source,
        )

    def transform_features(
        self,
        x: np.ndarray,
        *,
        query_offsets: Optional[np.ndarray] = None,
        source: str = "<array>",
    ) -> np.ndarray:
        """Normalise a ``[n_docs, n_features]`` array into a new float32 array (chunked).

        Args:
            x: features; any float or int dtype, may be memory-mapped.
            query_offsets: ``[Q + 1]`` query boundaries, required by the per-query methods.
            source: named in error messages.

        Raises:
            ValueError: if not fitted, on a feature-count mismatch, on missing
                ``query_offsets`` for a per-query method, or on NaN/inf in ``x``.
        """
        if not self.is_fitted:
            raise ValueError(f"this {self!r} is not fitted; call fit() on the training data first")
        x = _check_matrix(x, "x")
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"{source}: has {x.shape[1]} features but the normalizer was fitted on {self.n_features}"
            )
        if self.method in _PER_QUERY:
            if query_offsets is None:
                raise ValueError(f"method {self.method!r} normalises within queries: pass query_offsets")
            return self._transform_per_query(x, np.asarray(query_offsets, dtype=np.int64), source)
        out = np.empty(x.shape, dtype=np.float32)
        curves = self._quantile_curves() if self.method in _QUANTILE_METHODS else []
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            chunk = np.array(x[start : start + _CHUNK_ROWS], dtype=np.float64)
            # a float64 sum of float32/int values cannot overflow, so it is finite iff every
            # value is: one cheap pass instead of an elementwise isfinite mask
            if not np.isfinite(chunk.sum()):
                _check_finite(chunk, source, start)
            if self.method == "log1p":
                _signed_log1p_inplace(chunk)
            if self.method in _QUANTILE_METHODS:
                self._transform_quantiles(chunk, curves)
            elif self.method != "none":
                chunk -= self.shift
                chunk /= self.scale
            out[start : start + chunk.shape[0]] = chunk
        return out

    def _transform_per_query(self, x: np.ndarray, offsets: np.ndarray, source: str) -> np.ndarray:
        if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != x.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"{source}: query_offsets must be non-decreasing from 0 to n_docs={x.shape[0]}"
            )
        out = np.empty(x.shape, dtype=np.float32)
        n_queries = offsets.shape[0] - 1
        # whole queries per chunk, so per-query statistics never straddle a chunk
        query = 0
        while query < n_queries:
            last = int(np.searchsorted(offsets, offsets[query] + _CHUNK_ROWS, side="right")) - 1
            last = min(max(last, query + 1), n_queries)
            start, stop = int(offsets[query]), int(offsets[last])
            if stop > start:
                chunk = np.asarray(x[start:stop], dtype=np.float64)
                _check_finite(chunk, source, start)
                local = offsets[query : last + 1] - start
                lengths = np.diff(local)
                nonempty = lengths > 0
                starts = local[:-1][nonempty]
                counts = lengths[nonempty][:, None]
                sizes = lengths[nonempty]
                low = np.minimum.reduceat(chunk, starts, axis=0)
                constant = np.maximum.reduceat(chunk, starts, axis=0) == low
                if self.method == "query_zscore":
                    shift = np.where(constant, low, np.add.reduceat(chunk, starts, axis=0) / counts)
                    centred = chunk - np.repeat(shift, sizes, axis=0)
                    spread = np.sqrt(np.add.reduceat(centred**2, starts, axis=0) / counts)
                else:
                    centred = chunk - np.repeat(low, sizes, axis=0)
                    spread = np.maximum.reduceat(chunk, starts, axis=0) - low
                scale = np.where(constant | ~(spread > 0), 1.0, spread)
                out[start:stop] = centred / np.repeat(scale, sizes, axis=0)
            query = last
        return out

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """JSON-serialisable state: method, feature count and the fitted statistics."""
        return {
            "version": _STATE_VERSION,
            "method": self.method,
            "n_features": self.n_features,
            "shift": None if self.shift is None else [float(v) for v in self.shift],
            "scale": None if self.scale is None else [float(v) for v in self.scale],
            "quantiles": None if self.quantiles is None else self.quantiles.tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        """Rebuild a normalizer from :meth:`state_dict` output.

        Raises:
            ValueError: on a missing/unknown field or statistics of the wrong length.
        """
        if not isinstance(state, dict):
            raise ValueError(f"normalizer state must be a dict, got {type(state).__name__}")
        missing = sorted({"method", "n_features", "shift", "scale"} - set(state))
        if missing:
            raise ValueError(f"normalizer state lacks fields {missing}")
        if state.get("version", _STATE_VERSION) != _STATE_VERSION:
            raise ValueError(f"normalizer state version {state['version']!r} is not supported (expected {_STATE_VERSION})")
        normalizer = cls(state["method"])
        n_features = state["n_features"]
        if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 0):
            raise ValueError(f"normalizer state field n_features must be an int >= 0 or null, got {n_features!r}")
        normalizer.n_features = n_features
        for name in ("shift", "scale"):
            values = state[name]
            if values is None:
                continue
            array = np.asarray(values, dtype=np.float64)
            if array.shape != (n_features,):
                raise ValueError(
                    f"normalizer state field {name} has {array.size} values for n_features={n_features}"
                )
            setattr(normalizer, name, array)
        quantiles = state.get("quantiles")
        if quantiles is not None:
            array = np.asarray(quantiles, dtype=np.float64)
            if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != n_features or not np.isfinite(array).all():
                raise ValueError(f"normalizer state field quantiles must be a finite [n_quantiles, {n_features}] table")
            if np.any(np.diff(array, axis=0) < 0):
                raise ValueError("normalizer state field quantiles must be non-decreasing down each column")
            normalizer.quantiles = array
        if n_features is not None:
            if normalizer.method in _QUANTILE_METHODS:
                if normalizer.quantiles is None:
                    raise ValueError(f"normalizer state for method {normalizer.method!r} needs quantiles")
            elif normalizer.method not in _PER_QUERY and normalizer.method != "none":
                if normalizer.shift is None or normalizer.scale is None:
                    raise ValueError(f"normalizer state for method {normalizer.method!r} needs shift and scale")
        return normalizer

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write :meth:`state_dict` as JSON to ``path`` (temp file + rename, so never half-written)."""
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.state_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Normalizer":
        """Read a normalizer written by :meth:`save`.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not valid JSON or not a normalizer state.
        """
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a normalizer JSON file ({error})") from None
        try:
            return cls.from_state_dict(state)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def _check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_docs, n_features], got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")
    return x


def _check_finite(chunk: np.ndarray, source: str, first_row: int) -> None:
    finite = np.isfinite(chunk)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ValueError(
            f"{source}: feature {int(column)} of document row {first_row + int(row)} is "
            f"{chunk[row, column]}; features must be finite"
        )
