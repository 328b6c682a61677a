"""MSLR-shaped synthetic learning-to-rank data with a known relevance function.

This is ltrkit's built-in default data: ``ltrkit train`` with no arguments trains on it, so the
project works on a fresh machine with no download. The generator imitates the shape of
MSLR-WEB30K (Qin & Liu, "Introducing LETOR 4.0 Datasets", arXiv:1306.2597; the MSLR-WEB
release notes):

* heavy-tailed list lengths: lognormal with the requested mean, clipped to
  ``[1, max_list_length]``;
* labels 0-4 with MSLR's skew (about 51% 0, 33% 1, 13% 2, 2% 3, 1% 4), queries differing in
  how many relevant documents they hold (some hold none);
* features of mixed kinds and scales: counts, heavy-tailed scores, binary flags, fractions in
  ``[0, 1]``, large-scale popularity scores, query-level features (constant within a query),
  noisy correlated copies of the informative features, noise-only and constant columns.

Relevance is a known nonlinear function of the first eight features (:func:`relevance`):

.. math::

    r(x) = 0.8 \\log(1 + x_0) + 0.6 \\log(1 + x_1)\\,x_2 + 0.9\\,[x_3 > 0.65]
           + 0.5 \\tanh(\\log_{10}(1 + x_4) - 2) - 0.06 (x_5 - 10)^2
           + 0.35 \\sqrt{x_6}\\,[x_7 > 0.05]

A document's label is ``r(x) + d_q + noise * eps`` cut at fixed thresholds (the quantiles of
:data:`LABEL_PROPORTIONS` of that quantity's distribution, the same for every split), where
``d_q ~ N(0, 0.6)`` is a per-query offset (so absolute relevance is not comparable across
queries; only within-query differences of ``r`` decide a ranking) and ``eps ~ N(0, 1)``.
Ranking by :func:`relevance` is therefore the best a scorer can do up to the noise, and it
scores clearly higher than any single feature, which scores clearly higher than random.

The column layout depends only on ``n_features`` (never on ``seed``), so splits generated with
different seeds share their feature semantics. The last column is never one that can be all
zero (a constant, binary, count or query-level column): sparse text formats omit zeros, so a
trailing all-zero column would vanish when the data is written and read back, and the file would
seem to have one feature less than it was generated with.

:func:`write_splits` writes the splits as LETOR or libsvm files, all or none.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Mapping

import numpy as np

from ltrkit._checks import check_int
from ltrkit.data.dataset import RankingDataset

__all__ = ["DEFAULT_SPLITS", "MIN_FEATURES", "LABEL_PROPORTIONS", "generate", "generate_splits", "relevance", "write_splits"]

#: Split sizes used by ``ltrkit train`` with no data arguments: about 10 MLP epochs in well
#: under 90 s on two CPU cores.
DEFAULT_SPLITS: dict = {
    "train_queries": 1500,
    "vali_queries": 300,
    "test_queries": 300,
    "n_features": 136,
    "mean_list_length": 50.0,
    "seed": 0,
}

#: The informative columns 0..7 must exist.
MIN_FEATURES = 8

#: Target share of labels 0, 1, 2, 3, 4 (MSLR-WEB30K's label distribution, rounded).
LABEL_PROPORTIONS = (0.514, 0.325, 0.134, 0.019, 0.008)

_N_LATENT = 8
_LOGNORMAL_SIGMA = 0.8
_QUERY_OFFSET_SD = 0.6
_CHUNK_ROWS = 1 << 15
_LAYOUT_SEED = 20100613  # fixed: the column layout must not depend on the data seed

# column kinds
_COUNT, _HEAVY, _BINARY, _UNIT, _POPULARITY, _LINEAR, _QUERY_LEVEL, _CONSTANT = range(8)
# kinds that take the value 0 (a count floors to 0, a flag is 0 below its threshold)
_MAY_BE_ALL_ZERO = (_COUNT, _BINARY, _QUERY_LEVEL, _CONSTANT)


def relevance(features: np.ndarray) -> np.ndarray:
    """The generator's true relevance function of a document's features.

    .. math::

        r(x) = 0.8 \\log(1 + x_0) + 0.6 \\log(1 + x_1)\\,x_2 + 0.9\\,[x_3 > 0.65]
               + 0.5 \\tanh(\\log_{10}(1 + x_4) - 2) - 0.06 (x_5 - 10)^2
               + 0.35 \\sqrt{x_6}\\,[x_7 > 0.05]

    Args:
        features: ``[n_docs, n_features]`` with ``n_features >= 8``, as written by
            :func:`generate` (only columns 0..7 are read).

    Returns:
        ``[n_docs]`` float64 relevance (higher = more relevant); label noise and per-query
        offsets are not included.

    Raises:
        ValueError: if ``features`` is not 2-D with at least 8 columns.

    Example:
        >>> data = generate(5, n_features=16, seed=1)
        >>> relevance(data.features).shape == (data.n_docs,)
        True
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] < MIN_FEATURES:
        raise ValueError(
            f"features must be 2-D with at least {MIN_FEATURES} columns, got shape {features.shape}"
        )
    x = features[:, :MIN_FEATURES].astype(np.float64)
    return (
        0.8 * np.log1p(x[:, 0])
        + 0.6 * np.log1p(x[:, 1]) * x[:, 2]
        + 0.9 * (x[:, 3] > 0.65)
        + 0.5 * np.tanh(np.log10(1.0 + x[:, 4]) - 2.0)
        - 0.06 * (x[:, 5] - 10.0) ** 2
        + 0.35 * np.sqrt(x[:, 6]) * (x[:, 7] > 0.05)
    )


def _column_layout(n_features: int) -> dict[str, np.ndarray]:
    """Per-column recipe: kind, latent source (-1 = none), loading, noise sd, scale."""
    kind = np.empty(n_features, dtype=np.int64)
    source = np.full(n_features, -1, dtype=np.int64)
    loading = np.zeros(n_features)
    noise_sd = np.ones(n_features)
    scale = np.ones(n_features)
    # informative columns: each a deterministic transform of its own latent factor
    kind[:8] = [_COUNT, _HEAVY, _BINARY, _UNIT, _POPULARITY, _LINEAR, _COUNT, _LINEAR]
    source[:8] = np.arange(8)
    loading[:8] = 1.0
    noise_sd[:8] = 0.0
    scale[:8] = [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 0.01]
    rng = np.random.default_rng(_LAYOUT_SEED)
    for column in range(8, n_features):
        draw = rng.random()
        if draw < 0.55:  # noisy correlated copy of an informative feature (MSLR's many variants)
            kind[column] = rng.choice([_COUNT, _HEAVY, _BINARY, _UNIT, _POPULARITY, _LINEAR])
            source[column] = rng.integers(_N_LATENT)
            loading[column] = rng.uniform(0.4, 1.0)
            noise_sd[column] = rng.uniform(0.3, 1.2)
        elif draw < 0.80:  # noise only, any kind
            kind[column] = rng.choice([_COUNT, _HEAVY, _BINARY, _UNIT, _POPULARITY, _LINEAR])
        elif draw < 0.93:  # query-level (e.g. query length, query click count)
            kind[column] = _QUERY_LEVEL
        else:  # all zero (MSLR has several all-zero columns)
            kind[column] = _CONSTANT
        scale[column] = 10.0 ** rng.uniform(-2, 3) if kind[column] == _LINEAR else 1.0
    last = n_features - 1
    if last >= MIN_FEATURES and kind[last] in _MAY_BE_ALL_ZERO:
        # a sparse file must still show the full width: the last column takes a kind whose values
        # are never 0 (a sigmoid, in (0, 1)); it keeps its latent source, if any, and the draws
        # of every other column are unchanged
        kind[last] = _UNIT
    return {"kind": kind, "source": source, "loading": loading, "noise_sd": noise_sd, "scale": scale}


def _apply_kind(kind: int, a: np.ndarray, scale: float) -> np.ndarray:
    """Map a standard-normal-ish column ``a`` to the feature's scale and distribution."""
    if kind == _COUNT:
        return np.floor(np.exp(1.0 + 0.8 * a))
    if kind == _HEAVY:
        return np.exp(0.9 * a + 1.5) * 3.0
    if kind == _BINARY:
        return (a > 0.3).astype(np.float32)
    if kind == _UNIT:
        return 1.0 / (1.0 + np.exp(-1.5 * a))
    if kind == _POPULARITY:
        return np.exp(1.6 * a + 4.5)
    if kind == _LINEAR:
        return scale * (a + 5.0)
    return np.zeros_like(a)  # _CONSTANT


@functools.lru_cache(maxsize=16)
def _cut_points(noise: float) -> np.ndarray:
    """Label cut points: quantiles of ``r(x) + d_q + noise * eps`` at :data:`LABEL_PROPORTIONS`.

    Estimated once per ``noise`` on a fixed reference sample (2^18 documents in groups of 64
    sharing query draws, fixed seed), so every split and every call labels documents by the
    same thresholds: labels mean the same thing in train and test.
    """
    rng = np.random.default_rng(_LAYOUT_SEED + 1)
    n_groups, group = 1 << 12, 64
    group_of_doc = np.repeat(np.arange(n_groups), group)
    latent = rng.standard_normal((n_groups * group, _N_LATENT)) + rng.normal(0.0, 0.5, size=(n_groups, _N_LATENT))[group_of_doc]
    layout = _column_layout(MIN_FEATURES)
    informative = np.column_stack([
        _apply_kind(int(layout["kind"][j]), latent[:, j].astype(np.float32), float(layout["scale"][j])) for j in range(MIN_FEATURES)
    ]).astype(np.float32)
    sample = relevance(informative) + rng.normal(0.0, _QUERY_OFFSET_SD, size=n_groups)[group_of_doc]
    sample += noise * rng.standard_normal(sample.shape[0])
    return np.quantile(sample, np.cumsum(LABEL_PROPORTIONS)[:-1])


def _list_lengths(rng: np.random.Generator, n_queries: int, mean_list_length: float, max_list_length: int) -> np.ndarray:
    mu = np.log(mean_list_length) - 0.5 * _LOGNORMAL_SIGMA**2
    lengths = np.rint(rng.lognormal(mu, _LOGNORMAL_SIGMA, size=n_queries))
    return np.clip(lengths, 1, max_list_length).astype(np.int64)


def generate(
    n_queries: int = 1000,
    *,
    n_features: int = 136,
    seed: int = 0,
    mean_list_length: float = 60.0,
    max_list_length: int = 1250,
    noise: float = 0.8,
    qid_prefix: str = "",
    first_qid: int = 1,
) -> RankingDataset:
    """Generate an MSLR-shaped dataset whose labels follow :func:`relevance` plus noise.

    Lengths are ``round(lognormal)`` with mean ``mean_list_length`` (sigma 0.8) clipped to
    ``[1, max_list_length]`` (clipping lowers the realised mean slightly for large means). Labels
    are ``r(x) + d_q + noise * eps`` cut at fixed thresholds: the quantiles of
    :data:`LABEL_PROPORTIONS` of that quantity's distribution (estimated once per ``noise`` on a
    fixed reference sample), so labels mean the same in every call and split and their shares
    match MSLR's up to sampling noise; ``d_q`` is a per-query offset (sd 0.6), so queries differ
    in their number of relevant documents.
    Features are float32, written in chunks of rows so memory stays at the output size.

    Args:
        n_queries: number of queries (>= 1).
        n_features: number of feature columns (>= 8; columns 0..7 are the informative ones).
        seed: the output is a pure function of all the arguments.
        mean_list_length: target mean number of documents per query (> 0).
        max_list_length: longest list (>= 1); MSLR-WEB30K's longest has 1,251 documents.
        noise: standard deviation of the label noise (>= 0; the relevance function's own
            within-query standard deviation is about 1).
        qid_prefix: prepended to each qid.
        first_qid: qids are ``qid_prefix + str(first_qid + i)`` for query ``i``.

    Returns:
        A :class:`RankingDataset` with ``source`` describing the call; ``doc_ids`` are ``None``.

    Raises:
        ValueError: on a count below its minimum, a negative ``seed``, a non-positive
            ``mean_list_length`` or a negative ``noise``.

    Example:
        >>> data = generate(20, n_features=16, seed=3)
        >>> data.n_queries, data.n_features, sorted(set(data.labels.tolist())) <= [0, 1, 2, 3, 4]
        (20, 16, True)
    """
    n_queries = check_int("n_queries", n_queries)
    n_features = check_int("n_features", n_features, MIN_FEATURES)
    max_list_length = check_int("max_list_length", max_list_length)
    if not np.isfinite(mean_list_length) or mean_list_length <= 0:
        raise ValueError(f"mean_list_length must be a positive number, got {mean_list_length!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    seed = check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    lengths = _list_lengths(rng, n_queries, float(mean_list_length), max_list_length)
    offsets = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_docs = int(offsets[-1])
    query_of_doc = np.repeat(np.arange(n_queries), lengths)

    layout = _column_layout(n_features)
    kinds = layout["kind"]
    # per-query draws: a shift of every latent factor (documents of one query resemble each
    # other, as in real data), the query-level feature values and the label offset d_q
    query_latent_shift = rng.normal(0.0, 0.5, size=(n_queries, _N_LATENT)).astype(np.float32)
    query_level_values = np.floor(np.exp(rng.normal(1.0, 0.5, size=(n_queries, n_features))))
    query_label_offset = rng.normal(0.0, _QUERY_OFFSET_SD, size=n_queries)

    features = np.empty((n_docs, n_features), dtype=np.float32)
    latent_columns = layout["source"] >= 0
    noise_sd = layout["noise_sd"].astype(np.float32)
    sources = layout["source"][latent_columns]
    loadings = layout["loading"][latent_columns].astype(np.float32)
    for start in range(0, n_docs, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n_docs)
        chunk_queries = query_of_doc[start:stop]
        latent = rng.standard_normal((stop - start, _N_LATENT), dtype=np.float32)
        latent += query_latent_shift[chunk_queries]
        # column-major so each column below is a contiguous vector
        a = rng.standard_normal((n_features, stop - start), dtype=np.float32)
        a *= noise_sd[:, None]
        a[latent_columns] += (latent[:, sources] * loadings).T
        for column in range(n_features):
            if kinds[column] == _QUERY_LEVEL:
                features[start:stop, column] = query_level_values[chunk_queries, column]
            else:
                features[start:stop, column] = _apply_kind(int(kinds[column]), a[column], float(layout["scale"][column]))

    latent_relevance = relevance(features) + query_label_offset[query_of_doc]
    latent_relevance += noise * rng.standard_normal(n_docs)
    labels = np.searchsorted(_cut_points(float(noise)), latent_relevance, side="right").astype(np.float32)

    qids = np.array([f"{qid_prefix}{first_qid + i}" for i in range(n_queries)])
    return RankingDataset(
        features=features,
        labels=labels,
        query_offsets=offsets,
        qids=qids,
        doc_ids=None,
        source=f"synthetic(n_queries={n_queries}, n_features={n_features}, seed={seed})",
    )


def generate_splits(
    *,
    train_queries: int,
    vali_queries: int,
    test_queries: int,
    n_features: int = 136,
    seed: int = 0,
    **kwargs: object,
) -> dict[str, RankingDataset]:
    """Generate query-disjoint train/vali/test splits from one relevance function.

    Each split is :func:`generate` with its own seed stream (derived from ``seed``) and its own
    qid range (train ``1..``, vali and test following on), so qids are disjoint and the splits
    are independent samples of the same distribution, labelled by the same thresholds.

    Args:
        train_queries: queries in ``"train"`` (>= 1); likewise ``vali_queries``, ``test_queries``.
        n_features: feature columns (>= 8).
        seed: the three splits are a pure function of ``seed`` and the sizes.
        **kwargs: passed to :func:`generate` (``mean_list_length``, ``max_list_length``,
            ``noise``, ``qid_prefix``).

    Returns:
        ``{"train": ..., "vali": ..., "test": ...}``.

    Raises:
        ValueError: as :func:`generate`, or if ``kwargs`` holds ``first_qid`` or ``n_queries``
            (set per split here).

    Example:
        >>> splits = generate_splits(train_queries=8, vali_queries=2, test_queries=2, n_features=10)
        >>> [splits[name].n_queries for name in ("train", "vali", "test")]
        [8, 2, 2]
    """
    seed = check_int("seed", seed, 0)
    reserved = sorted({"first_qid", "n_queries"} & set(kwargs))
    if reserved:
        raise ValueError(f"generate_splits sets {reserved} per split; do not pass them")
    sizes = {
        name: check_int(f"{name}_queries", size)
        for name, size in (("train", train_queries), ("vali", vali_queries), ("test", test_queries))
    }
    split_seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    splits: dict[str, RankingDataset] = {}
    first_qid = 1
    for (name, size), split_seed in zip(sizes.items(), split_seeds):
        dataset = generate(
            size,
            n_features=n_features,
            seed=int(split_seed.generate_state(1)[0]),
            first_qid=first_qid,
            **kwargs,  # type: ignore[arg-type]
        )
        dataset.source = f"synthetic {name} split (seed={seed})"
        splits[name] = dataset
        first_qid += size
    return splits


_SPLIT_FORMATS = ("letor", "libsvm")


def write_splits(splits: Mapping[str, RankingDataset], folder: str | os.PathLike, *, fmt: str = "letor") -> Dict[str, Path]:
    """Write each split as ``folder/<name>.txt`` (plus ``<name>.txt.query`` for libsvm), all or none.

    Every file is first written into a temporary folder inside ``folder`` and only then renamed
    into place. Writing is the step that can fail (a full disk, a quota); renames within one
    folder need no space, so a failure leaves ``folder`` as it was: never a ``train.txt``
    without its ``vali.txt`` and ``test.txt``. Existing files of the same names are replaced.
    ``folder`` is created if missing, and removed again when the write fails.

    Args:
        splits: ``{"train": ..., "vali": ..., "test": ...}`` as :func:`generate_splits` returns.
        folder: the output folder.
        fmt: ``"letor"`` (:func:`ltrkit.data.letor.write_letor`) or ``"libsvm"``
            (:func:`ltrkit.data.letor.write_libsvm`, with a group file per split).

    Returns:
        ``{name: path}`` of the data files written.

    Raises:
        ValueError: an unknown ``fmt``, or data the writer refuses.
        OSError: ``folder`` cannot be created or written; nothing was put in place.

    Example:
        >>> import tempfile
        >>> splits = generate_splits(train_queries=3, vali_queries=2, test_queries=2, n_features=9)
        >>> sorted(path.name for path in write_splits(splits, tempfile.mkdtemp()).values())
        ['test.txt', 'train.txt', 'vali.txt']
    """
    from ltrkit.data.letor import write_letor, write_libsvm

    if fmt not in _SPLIT_FORMATS:
        raise ValueError(f"fmt must be one of {list(_SPLIT_FORMATS)}, got {fmt!r}")
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".splits-", suffix=".tmp"))
    try:
        for name, dataset in splits.items():
            (write_letor if fmt == "letor" else write_libsvm)(dataset, staging / f"{name}.txt")
        for written in sorted(staging.iterdir()):
            os.replace(written, folder / written.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    staging.rmdir()
    return {name: folder / f"{name}.txt" for name in splits}
