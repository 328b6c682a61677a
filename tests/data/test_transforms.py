"""Normalizer against direct numpy computations, persistence and error handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ltrkit.data import transforms
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.transforms import METHODS, Normalizer


def make_dataset(n_docs=500, n_features=5, seed=0, lengths=None) -> RankingDataset:
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = rng.integers(1, 30, size=n_docs)
        lengths = lengths[np.cumsum(lengths) <= n_docs]
        lengths = np.append(lengths, n_docs - lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    features = np.column_stack([
        rng.normal(100.0, 30.0, size=offsets[-1]),        # shifted, scaled
        rng.lognormal(2.0, 2.0, size=offsets[-1]),         # heavy tail
        np.full(offsets[-1], 7.0),                         # constant
        rng.integers(0, 2, size=offsets[-1]),              # binary
        -rng.exponential(5.0, size=offsets[-1]),           # negative
    ])[:, :n_features].astype(np.float32)
    labels = rng.integers(0, 3, size=offsets[-1]).astype(np.float32)
    return RankingDataset(features, labels, offsets, np.array([str(i) for i in range(len(lengths))]))


def reference(method: str, fit_x: np.ndarray, x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    fit_x, x = fit_x.astype(np.float64), x.astype(np.float64)
    if method == "none":
        return x
    if method in ("zscore", "log1p"):
        if method == "log1p":
            fit_x, x = np.sign(fit_x) * np.log1p(np.abs(fit_x)), np.sign(x) * np.log1p(np.abs(x))
        constant = fit_x.max(axis=0) == fit_x.min(axis=0)
        std = fit_x.std(axis=0)
        return np.where(constant, x - fit_x.min(axis=0), (x - fit_x.mean(axis=0)) / np.where(constant, 1.0, std))
    if method in ("quantile", "rank_gauss"):
        return quantile_reference(method, fit_x, x)
    if method == "minmax":
        spread = fit_x.max(axis=0) - fit_x.min(axis=0)
        return (x - fit_x.min(axis=0)) / np.where(spread > 0, spread, 1.0)
    out = np.empty_like(x)
    for start, stop in zip(offsets[:-1], offsets[1:]):  # slow per-query loop on purpose
        block = x[start:stop]
        if block.size == 0:
            continue
        constant = block.max(axis=0) == block.min(axis=0)
        if method == "query_zscore":
            shift, spread = block.mean(axis=0), block.std(axis=0)
        else:
            shift, spread = block.min(axis=0), block.max(axis=0) - block.min(axis=0)
        out[start:stop] = np.where(constant, 0.0, (block - shift) / np.where(constant, 1.0, spread))
    return out


def quantile_reference(method: str, fit_x: np.ndarray, x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import QuantileTransformer

    distribution = "uniform" if method == "quantile" else "normal"
    fitted = QuantileTransformer(n_quantiles=min(1000, fit_x.shape[0]), subsample=10**9, output_distribution=distribution)
    return fitted.fit(fit_x).transform(x)


def test_normal_quantile_matches_the_standard_library():
    from statistics import NormalDist

    p = np.concatenate([np.geomspace(1e-7, 0.5, 400), 1 - np.geomspace(1e-7, 0.5, 400), np.linspace(0.01, 0.99, 99)])
    expected = np.array([NormalDist().inv_cdf(v) for v in p])
    np.testing.assert_allclose(transforms.normal_quantile(p), expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_fit_on_train_apply_to_test_matches_numpy(method, monkeypatch):
    # small chunks so chunked accumulation and per-query chunk boundaries are exercised
    monkeypatch.setattr(transforms, "_CHUNK_ROWS", 37)
    train, test = make_dataset(seed=1), make_dataset(n_docs=300, seed=2, lengths=[0, 40, 100, 0, 60, 100])
    normalizer = Normalizer(method).fit(train)
    out = normalizer.transform(test)
    assert out.features.dtype == np.float32 and out.features.shape == test.features.shape
    expected = reference(method, train.features, test.features, test.query_offsets)
    inside = np.ones(test.features.shape, dtype=bool)
    if method in ("quantile", "rank_gauss"):
        # scikit-learn pins the training minimum and maximum to the end levels; ltrkit maps them
        # to the middle of their run of equal quantiles (test_quantile_runs_map_to_mid_ranks)
        inside = (test.features > train.features.min(axis=0)) & (test.features < train.features.max(axis=0))
    np.testing.assert_allclose(out.features[inside], expected.astype(np.float32)[inside], rtol=1e-6, atol=1e-6)
    assert out.labels is test.labels and out.query_offsets is test.query_offsets
    assert out.features is not test.features


def test_zscore_of_training_data_is_standardised_and_constant_maps_to_zero():
    train = make_dataset(n_docs=2000)
    out = Normalizer("zscore").fit(train).transform(train).features.astype(np.float64)
    np.testing.assert_allclose(out[:, [0, 1, 3, 4]].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, [0, 1, 3, 4]].std(axis=0), 1.0, atol=1e-5)
    assert not out[:, 2].any(), "a constant column becomes 0, not NaN"
    minmax = Normalizer("minmax").fit(train).transform(train).features
    assert minmax.min() == 0.0 and minmax.max() == 1.0


def test_float64_accumulation_is_accurate_on_large_offsets():
    rng = np.random.default_rng(0)
    x = (1e6 + rng.normal(size=(100_000, 1))).astype(np.float32)
    normalizer = Normalizer("zscore").fit_features(x)
    exact = x.astype(np.float64)
    assert normalizer.shift[0] == pytest.approx(exact.mean(), rel=1e-12)
    assert normalizer.scale[0] == pytest.approx(exact.std(), rel=1e-9)


@pytest.mark.parametrize("method", ["quantile", "rank_gauss"])
def test_quantile_methods_are_monotone_and_bounded(method):
    train, test = make_dataset(n_docs=3000, seed=3), make_dataset(n_docs=800, seed=4)
    normalizer = Normalizer(method).fit(train)
    out = normalizer.transform(test).features
    for j in range(test.n_features):
        order = np.argsort(test.features[:, j], kind="stable")
        assert np.all(np.diff(out[order, j]) >= 0), f"feature {j} not monotone"
    from statistics import NormalDist

    high = 1.0 if method == "quantile" else NormalDist().inv_cdf(1 - 1e-7)
    low = 0.0 if method == "quantile" else -high
    assert out.min() >= low - 1e-6 and out.max() <= high + 1e-6
    beyond = normalizer.transform_features(np.array([[-1e9] * 5, [1e9] * 5], dtype=np.float32))
    np.testing.assert_allclose(beyond[0, [0, 1, 4]], low, atol=1e-6)
    np.testing.assert_allclose(beyond[1, [0, 1, 4]], high, atol=1e-6)


def test_quantile_runs_map_to_mid_ranks():
    from statistics import NormalDist

    zeros = 700
    x = np.concatenate([np.zeros(zeros), np.ones(1000 - zeros)]).astype(np.float32)[:, None]
    x = np.hstack([x, np.full_like(x, 3.0)])
    uniform = Normalizer("quantile").fit_features(x).transform_features(np.array([[0.0, 3.0], [1.0, 3.0]], dtype=np.float32))
    np.testing.assert_allclose(uniform[:, 0], [0.35, 0.85], atol=2e-3)
    np.testing.assert_allclose(uniform[:, 1], 0.5, atol=1e-6)
    gauss = Normalizer("rank_gauss").fit_features(x).transform_features(np.array([[0.0, 3.0], [1.0, 3.0]], dtype=np.float32))
    np.testing.assert_allclose(gauss[:, 0], [NormalDist().inv_cdf(0.35), NormalDist().inv_cdf(0.85)], atol=0.05)
    np.testing.assert_allclose(gauss[:, 1], 0.0, atol=1e-6)


def test_rank_gauss_of_continuous_training_data_is_standard_normal():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0.0, 3.0, size=(50_000, 1)).astype(np.float32)
    out = Normalizer("rank_gauss").fit_features(x).transform_features(x)[:, 0].astype(np.float64)
    assert abs(out.mean()) < 0.01 and abs(out.std() - 1.0) < 0.02
    assert abs(np.mean(out < 1.0) - 0.8413) < 0.005


def test_quantile_fit_subsamples_large_data(monkeypatch):
    monkeypatch.setattr(transforms, "QUANTILE_SUBSAMPLE", 1000)
    x = np.arange(10_000, dtype=np.float32)[:, None]
    normalizer = Normalizer("quantile").fit_features(x)
    assert normalizer.quantiles.shape == (1000, 1)
    assert normalizer.quantiles[0, 0] == 0.0 and normalizer.quantiles[-1, 0] == 9999.0
    with pytest.raises(ValueError, match="feature 0 of document row 9999 is inf"):
        Normalizer("quantile").fit_features(np.append(x[:-1], [[np.inf]], axis=0))


def test_memmap_input(tmp_path):
    data = make_dataset()
    path = tmp_path / "x.f32"
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=data.features.shape)
    mapped[:] = data.features
    mapped.flush()
    readonly = np.memmap(path, dtype=np.float32, mode="r", shape=data.features.shape)
    mapped_data = RankingDataset(readonly, data.labels, data.query_offsets, data.qids)
    a = Normalizer("log1p").fit(mapped_data).transform(mapped_data).features
    b = Normalizer("log1p").fit(data).transform(data).features
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(method, tmp_path):
    data = make_dataset()
    normalizer = Normalizer(method).fit(data)
    path = tmp_path / "normalizer.json"
    normalizer.save(path)
    assert json.loads(path.read_text())["method"] == method
    assert [p.name for p in tmp_path.iterdir()] == ["normalizer.json"], "no temp file left behind"
    loaded = Normalizer.load(path)
    np.testing.assert_array_equal(loaded.transform(data).features, normalizer.transform(data).features)
    assert Normalizer.from_state_dict(json.loads(json.dumps(normalizer.state_dict()))).state_dict() == normalizer.state_dict()


def test_feature_count_mismatch_and_unfitted():
    normalizer = Normalizer("zscore").fit(make_dataset(n_features=5))
    with pytest.raises(ValueError, match="has 4 features but the normalizer was fitted on 5"):
        normalizer.transform(make_dataset(n_features=4))
    with pytest.raises(ValueError, match="not fitted"):
        Normalizer("minmax").transform_features(np.zeros((2, 2)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Normalizer("robust"), r"method must be one of \['zscore', .*got 'robust'"),
        (lambda: Normalizer().fit_features(np.zeros(3)), r"features must be 2-D \[n_docs, n_features\], got shape \(3,\)"),
        (lambda: Normalizer().fit_features(np.zeros((0, 3))), "cannot fit a 'zscore' normalizer on 0 documents"),
        (lambda: Normalizer().fit_features(np.array([[1.0, np.nan]])), "feature 1 of document row 0 is nan; features must be finite"),
        (lambda: Normalizer("query_zscore").fit_features(np.zeros((2, 2))).transform_features(np.zeros((2, 2))), "pass query_offsets"),
        (lambda: Normalizer().fit("data"), "dataset must be a RankingDataset, got str"),
        (lambda: Normalizer.from_state_dict({"method": "zscore"}), r"lacks fields \['n_features', 'scale', 'shift'\]"),
        (lambda: Normalizer.from_state_dict({"method": "zscore", "n_features": 2, "shift": [0.0], "scale": [1.0, 1.0]}), "field shift has 1 values for n_features=2"),
        (lambda: Normalizer.from_state_dict({"method": "zscore", "n_features": 2, "shift": None, "scale": None}), "needs shift and scale"),
        (lambda: Normalizer.from_state_dict({"method": "rank_gauss", "n_features": 2, "shift": None, "scale": None}), "needs quantiles"),
        (lambda: Normalizer.from_state_dict({"method": "quantile", "n_features": 2, "shift": None, "scale": None, "quantiles": [[0.0], [1.0]]}), r"quantiles must be a finite \[n_quantiles, 2\] table"),
        (lambda: Normalizer.from_state_dict({"method": "quantile", "n_features": 1, "shift": None, "scale": None, "quantiles": [[1.0], [0.0]]}), "must be non-decreasing"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Normalizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a normalizer JSON file"):
        Normalizer.load(bad)
