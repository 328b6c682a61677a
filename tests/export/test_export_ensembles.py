"""Export of DASALC and of ensembles (mean, rank_mean): ONNX/TorchScript scores equal PyTorch's,
dynamic shapes, padding ignored, metadata naming the members, CLI predict and the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from export_support import N_FEATURES, raw_lists
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import ltrkit
from ltrkit.cli.main import app
from ltrkit.data.transforms import Normalizer
from ltrkit.export import ExportedRanker, export_run, load_exported
from ltrkit.export._graph import InferenceGraph
from ltrkit.models import build_model
from ltrkit.models._layers import RankingModel
from ltrkit.models.ensemble import EnsembleRanker
from ltrkit.serve.app import create_app
from ltrkit.training import Ranker

DASALC = {"hidden_sizes": [16, 8], "dropout": 0.1, "input_noise": 0.2, "d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}
MLP = {"hidden_sizes": [16], "norm": "batch", "input_norm": "affine", "dropout": 0.1}
# run name -> (model, model args, normaliser, ensemble members, combine)
RUNS = {
    "mean": ("mlp", MLP, "zscore", 2, "mean"),
    "rank_mean": ("dasalc", DASALC, "log1p", 2, "rank_mean"),
}
# ONNX export costs seconds per model: DASALC is covered as the members of the rank_mean ensemble
# here, on its own by test_graph_equals_the_model_eager_and_scripted
EXPORTS = [("mean", "onnx"), ("mean", "torchscript"), ("rank_mean", "onnx"), ("rank_mean", "torchscript")]
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def _train(out: Path, name: str) -> Path:
    model, args, normalization, members, combine = RUNS[name]
    config = {
        "data": {"synthetic": {"train_queries": 30, "vali_queries": 8, "test_queries": 8, "n_features": N_FEATURES, "mean_list_length": 10.0, "max_list_length": 25, "seed": 3}},
        "normalization": normalization,
        "model": {"name": model, "args": args},
        "loss": {"name": "softmax", "args": {}},
        "training": {"epochs": 1, "batch_size": 8, "ensemble": members, "ensemble_combine": combine},
        "early_stopping": {"metric": "ndcg@10", "patience": None},
        "evaluation": {"baselines": False},
        "num_threads": 1,
        "output": {"dir": str(out), "name": name, "tensorboard": False, "plots": False},
    }
    return Path(ltrkit.train(config).run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return {name: _train(out, name) for name in RUNS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    paths = {}
    for name, fmt in EXPORTS:
        paths[name, fmt] = out / f"{name}{SUFFIXES[fmt]}"
        export_run(runs[name], paths[name, fmt])
    return paths


def _padded(features: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists as one ``[B, L_max, F]`` batch, NaN at the padding (never to be read)."""
    lengths = np.diff(offsets)
    batch = np.full((len(lengths), lengths.max(), features.shape[1]), np.nan, dtype=np.float32)
    mask = np.zeros(batch.shape[:2], dtype=bool)
    for row, (start, length) in enumerate(zip(offsets[:-1], lengths)):
        batch[row, :length] = features[start : start + length]
        mask[row, :length] = True
    return batch, mask


@pytest.mark.parametrize(("name", "fmt"), EXPORTS)
def test_exported_scores_equal_pytorch(runs, exported, name, fmt):
    features, offsets = raw_lists()  # lists of 1, 2, 7, 33 and 1,000 documents
    reference = Ranker.load(runs[name]).predict_features(features, offsets)
    ranker = load_exported(exported[name, fmt])
    np.testing.assert_allclose(ranker.predict_features(features, offsets), reference, rtol=1e-5, atol=1e-5)
    # all lists in one batch, then the first three alone: B and L are dynamic, padding is never read
    batch, mask = _padded(features, offsets)
    scores = ranker.score_padded(batch, mask)
    assert np.all(scores[~mask] == 0)
    np.testing.assert_allclose(scores[mask], reference, rtol=1e-5, atol=1e-5)
    head = ranker.score_padded(batch[:3, :7], mask[:3, :7])
    np.testing.assert_allclose(head, scores[:3, :7], rtol=1e-5, atol=1e-5)
    # a row with no real document scores 0
    empty = ranker.score_padded(np.concatenate([batch, batch[:1]]), np.concatenate([mask, np.zeros_like(mask[:1])]))
    assert np.all(empty[-1] == 0)


def test_rank_mean_scores_are_mean_ranks_within_each_list(runs, exported):
    features, offsets = raw_lists(seed=1)
    scores = load_exported(exported["rank_mean", "onnx"]).predict_features(features, offsets)
    for start, stop in zip(offsets[:-1], offsets[1:]):
        # mean 0-based ranks of n documents always average (n - 1) / 2
        assert scores[start:stop].mean() == pytest.approx(-(stop - start - 1) / 2, abs=1e-4)


def test_metadata_names_the_members_and_the_combination(runs, exported):
    for name in ("mean", "rank_mean"):
        model, args, _, members, combine = RUNS[name]
        metadata = load_exported(exported[name, "torchscript"]).metadata
        assert metadata["model"]["name"] == "ensemble"
        assert metadata["model"]["config"]["combine"] == combine
        assert [member["name"] for member in metadata["model"]["config"]["members"]] == [model] * members
        assert metadata["model"]["config"]["members"][0]["config"] == Ranker.load(runs[name]).model.members[0].config
        # a rank is a function of the whole list
        assert metadata["model"]["context_aware"] is (combine == "rank_mean" or model == "dasalc")


def test_pytorch_backend_from_run_equals_ranker(runs):
    features, offsets = raw_lists(seed=2)
    for run in runs.values():
        ranker = ExportedRanker.from_run(run)
        assert ranker.model_name == "ensemble"
        np.testing.assert_allclose(ranker.predict_features(features, offsets), Ranker.load(run).predict_features(features, offsets), rtol=1e-5, atol=1e-5)


def _dasalc_or_mixed_ensemble(kind: str) -> RankingModel:
    """``"dasalc"`` alone, or an ``"ensemble:<combine>"`` of members of every exportable kind
    (DASALC without its context branch among them)."""
    torch.manual_seed(0)
    if kind == "dasalc":
        return build_model("dasalc", 4, hidden_sizes=[8, 6], d_model=4, n_heads=2, ff_dim=8, input_noise=0.5).eval()
    members = [
        build_model("mlp", 4, hidden_sizes=[8], norm="batch"),
        build_model("dasalc", 4, hidden_sizes=[8], d_model=4, n_heads=2, ff_dim=8, n_layers=0),
        build_model("attention", 4, d_model=8, n_heads=2, n_layers=1, ff_dim=16),
        build_model("linear", 4),
    ]
    return EnsembleRanker(members, combine=kind.split(":")[1]).eval()


@pytest.mark.parametrize("kind", ["dasalc", "ensemble:mean", "ensemble:rank_mean"])
def test_graph_equals_the_model_eager_and_scripted(kind):
    rng = np.random.default_rng(0)
    normalizer = Normalizer("rank_gauss").fit_features(rng.normal(size=(200, 4)))
    model = _dasalc_or_mixed_ensemble(kind)
    features = rng.normal(size=(3, 9, 4)).astype(np.float32)
    mask = np.array([[True] * 9, [True] * 4 + [False] * 5, [True] + [False] * 8])
    normalised = normalizer.transform_features(features.reshape(-1, 4)).reshape(features.shape)
    with torch.no_grad():
        expected = model(torch.from_numpy(normalised).float(), torch.from_numpy(mask))
    graph = InferenceGraph(model, normalizer)
    features[~mask] = np.nan
    for scorer in (graph, graph.scripted()):
        got = scorer(torch.from_numpy(features), torch.from_numpy(mask))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_an_ensemble_with_a_member_that_cannot_be_exported_is_refused():
    class Other(RankingModel):
        name = "other"

        def score_padded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return features.sum(-1) * mask

    model = EnsembleRanker([build_model("linear", 3), Other(3)])
    with pytest.raises(ValueError, match="model 'other' cannot be exported; exportable models: \\['linear', 'mlp', 'attention', 'dasalc', 'ensemble'\\]"):
        InferenceGraph(model, Normalizer("none").fit_features(np.zeros((1, 3))))


def test_cli_exports_an_ensemble_and_predicts_with_it(runs, tmp_path):
    from ltrkit.data.dataset import RankingDataset
    from ltrkit.data.letor import write_letor

    features, offsets = raw_lists(seed=5)
    data = tmp_path / "test.txt"
    write_letor(RankingDataset(features, np.zeros(len(features), dtype=np.float32), offsets, np.arange(len(offsets) - 1).astype(str)), data)
    out = tmp_path / "ensemble.pt"
    result = CliRunner().invoke(app, ["export", "--run", str(runs["rank_mean"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ensemble model" in result.stderr and "log1p normaliser folded in" in result.stderr
    from_run = CliRunner().invoke(app, ["predict", "--run", str(runs["rank_mean"]), "--data", str(data), "--out", "-", "--no-cache"])
    from_model = CliRunner().invoke(app, ["predict", "--model", str(out), "--data", str(data), "--out", "-", "--no-cache"])
    assert from_run.exit_code == 0 and from_model.exit_code == 0, from_model.output
    np.testing.assert_allclose(np.loadtxt(from_model.stdout.splitlines()), np.loadtxt(from_run.stdout.splitlines()), rtol=1e-5, atol=1e-5)


def test_the_service_ranks_with_an_exported_ensemble(runs, exported):
    rng = np.random.default_rng(7)
    lists = [rng.normal(2.0, 3.0, size=(length, N_FEATURES)).astype(np.float32) for length in (1, 5, 12)]
    offsets = np.cumsum([0] + [len(item) for item in lists])
    expected = Ranker.load(runs["rank_mean"]).predict_features(np.concatenate(lists), offsets)
    with TestClient(create_app(load_exported(exported["rank_mean", "onnx"]))) as client:
        response = client.post("/rank", json={"lists": [{"documents": item.tolist()} for item in lists]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["kind"] == "ensemble" and answer["model"]["backend"] == "onnxruntime"
    for result, start, stop in zip(answer["results"], offsets[:-1], offsets[1:]):
        np.testing.assert_allclose(result["scores"], expected[start:stop], rtol=1e-5, atol=1e-5)
