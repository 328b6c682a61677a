"""ONNX and TorchScript export: scores equal the PyTorch ranker's, dynamic shapes, metadata, errors."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_support import MODELS, N_FEATURES, raw_lists, train_run
from typer.testing import CliRunner

import ltrkit
from ltrkit.cli.main import app
from ltrkit.data.transforms import METHODS, Normalizer
from ltrkit.export import ExportedRanker, export_ranker, export_run, load_exported
from ltrkit.export._graph import InferenceGraph
from ltrkit.export.exporter import METADATA_KEY, OPSET, TORCHSCRIPT_EXTRA_FILE
from ltrkit.models import build_model
from ltrkit.training import Ranker, TrainConfig

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{model: run folder}``: one tiny run of each exportable model (about a second each)."""
    out = tmp_path_factory.mktemp("runs")
    return {model: train_run(out, model) for model in MODELS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """``{(model, format): path}`` for every trained model in both formats."""
    out = tmp_path_factory.mktemp("exported")
    paths = {}
    for model, run in runs.items():
        for fmt, name in FORMATS.items():
            paths[model, fmt] = out / f"{model}-{name}"
            export_run(run, paths[model, fmt])
    return paths


def _padded(features: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lists as one ``[B, L_max, F]`` batch, padding at the end of each row filled with garbage."""
    lengths = np.diff(offsets)
    batch = np.full((len(lengths), lengths.max(), features.shape[1]), 1e30, dtype=np.float32)
    mask = np.zeros(batch.shape[:2], dtype=bool)
    for row, (start, length) in enumerate(zip(offsets[:-1], lengths)):
        batch[row, :length] = features[start : start + length]
        mask[row, :length] = True
    return batch, mask


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("model", list(MODELS))
def test_exported_scores_equal_pytorch_on_1_to_1000_documents(runs, exported, model, fmt):
    features, offsets = raw_lists()
    reference = Ranker.load(runs[model]).predict_features(features, offsets)
    ranker = load_exported(exported[model, fmt])
    assert ranker.backend == {"onnx": "onnxruntime", "torchscript": "torchscript"}[fmt]
    np.testing.assert_allclose(ranker.predict_features(features, offsets), reference, rtol=1e-5, atol=1e-5)
    # every list of the padded batch at once: dynamic B and L, padding never read
    batch, mask = _padded(features, offsets)
    scores = ranker.score_padded(batch, mask)
    assert scores.shape == mask.shape and np.all(scores[~mask] == 0)
    np.testing.assert_allclose(scores[mask], reference, rtol=1e-5, atol=1e-5)
    # a row with no real document scores 0 (no NaN from attention over nothing)
    empty = ranker.score_padded(np.concatenate([batch, batch[:1]]), np.concatenate([mask, np.zeros_like(mask[:1])]))
    assert np.all(empty[-1] == 0)
    np.testing.assert_allclose(empty[:-1], scores, rtol=1e-6, atol=1e-6)
    # the attention ranker scores a list as a whole: a shorter list changes the scores
    if model == "attention":
        whole = ranker.score_padded(batch[-1:], mask[-1:])[0, :10]
        assert not np.allclose(ranker.score_padded(batch[-1:, :10], mask[-1:, :10])[0], whole, atol=1e-4)


def test_pytorch_backend_from_run_equals_ranker(runs):
    features, offsets = raw_lists(seed=1)
    for model, run in runs.items():
        ranker = ExportedRanker.from_run(run)
        assert ranker.backend == "pytorch" and ranker.model_name == model
        np.testing.assert_allclose(ranker.predict_features(features, offsets), Ranker.load(run).predict_features(features, offsets), rtol=1e-5, atol=1e-5)


def test_onnx_file_has_dynamic_axes_opset_and_metadata(runs, exported):
    run = runs["attention"]
    proto = onnx.load(str(exported["attention", "onnx"]))
    onnx.checker.check_model(proto)
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in [*proto.graph.input, *proto.graph.output]}
    batch, docs = dims["features"][:2]
    assert isinstance(batch, str) and isinstance(docs, str) and batch != docs
    assert dims == {"features": [batch, docs, N_FEATURES], "mask": [batch, docs], "scores": [batch, docs]}
    assert [entry.version for entry in proto.opset_import if entry.domain == ""] == [OPSET]
    metadata = json.loads({entry.key: entry.value for entry in proto.metadata_props}[METADATA_KEY])
    _check_metadata(metadata, run, "onnx")
    assert metadata["opset"] == OPSET


def test_torchscript_file_carries_metadata(runs, exported):
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    torch.jit.load(str(exported["mlp", "torchscript"]), _extra_files=extra)
    _check_metadata(json.loads(extra[TORCHSCRIPT_EXTRA_FILE]), runs["mlp"], "torchscript")


def _check_metadata(metadata: dict, run: Path, fmt: str) -> None:
    resolved = json.loads((run / "config.resolved.json").read_text())
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode()
    assert metadata["config_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert metadata["normalizer"] == json.loads((run / "normalizer.json").read_text())
    assert metadata["n_features"] == N_FEATURES and metadata["format"] == fmt
    assert metadata["ltrkit_version"] == ltrkit.__version__
    assert metadata["model"]["name"] == resolved["model"]["name"]
    assert metadata["metrics"] == json.loads((run / "report.json").read_text())["metrics"]


def _reference_normalised(normalizer: Normalizer, features: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return normalizer.transform_features(features, query_offsets=offsets).astype(np.float64)


@pytest.mark.parametrize("method", METHODS)
def test_graph_folds_every_normaliser(method):
    rng = np.random.default_rng(4)
    # heavy-tailed, shifted columns, one constant column: the cases each method special-cases
    train = (rng.standard_cauchy((300, 6)) * 5 + 100).astype(np.float32)
    train[:, 3] = 7.0
    normalizer = Normalizer(method).fit_features(train)
    features, offsets = train[:40], np.array([0, 1, 3, 20, 40])
    features[1:3, 2] = 5.0  # a column constant within one query
    graph = InferenceGraph(build_model("linear", 6), normalizer)
    batch, mask = _padded(features, offsets)
    expected = _reference_normalised(normalizer, features, offsets)
    for fn in (graph.normalise, graph.scripted().normalise):
        got = fn(torch.from_numpy(batch), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(got[mask], expected, rtol=1e-6, atol=1e-6)
        assert np.all(got[~mask] == 0)


@pytest.mark.parametrize("method", ["log1p", "rank_gauss", "query_minmax"])
def test_onnx_folds_logarithmic_quantile_and_per_query_normalisers(tmp_path, method):
    features, offsets = raw_lists(seed=2)
    normalizer = Normalizer(method).fit_features(features)
    torch.manual_seed(0)
    ranker = Ranker(build_model("mlp", N_FEATURES, hidden_sizes=[8]), normalizer, TrainConfig())
    export_ranker(ranker, tmp_path / "m.onnx")
    np.testing.assert_allclose(
        load_exported(tmp_path / "m.onnx").predict_features(features, offsets), ranker.predict_features(features, offsets), rtol=1e-5, atol=1e-5
    )


def test_unknown_model_kind_is_refused():
    class Other(torch.nn.Module):
        name, n_features = "other", 3

    with pytest.raises(ValueError, match="model 'other' cannot be exported; exportable models: \\['linear', 'mlp', 'attention', 'dasalc', 'ensemble'\\]"):
        InferenceGraph(Other(), Normalizer("none").fit_features(np.zeros((1, 3))))


def test_load_exported_errors(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_exported(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(ValueError, match="junk.onnx: not an ONNX or TorchScript model"):
        load_exported(tmp_path / "junk.onnx")
    proto = onnx.load(str(exported["linear", "onnx"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="bare.onnx: has no ltrkit metadata"):
        load_exported(tmp_path / "bare.onnx")
    ranker = load_exported(exported["linear", "onnx"])
    features, offsets = raw_lists()
    with pytest.raises(ValueError, match="features has|takes 10"):
        ranker.predict_features(features[:, :9], offsets)
    features = features.copy()
    features[4, 2] = np.nan
    with pytest.raises(ValueError, match="feature 2 of document row 4 is nan"):
        ranker.predict_features(features, offsets)


def test_predict_reads_a_file_with_the_run_options(runs, exported, tmp_path):
    from ltrkit.data.letor import write_letor

    features, offsets = raw_lists()
    reference = Ranker.load(runs["mlp"])
    data = ltrkit.RankingDataset(features=features, labels=np.zeros(len(features), np.float32), query_offsets=offsets, qids=np.arange(len(offsets) - 1).astype(str))
    write_letor(data, tmp_path / "data.txt")
    scores = load_exported(exported["mlp", "onnx"]).predict(tmp_path / "data.txt")
    np.testing.assert_allclose(scores, reference.predict(tmp_path / "data.txt"), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------- CLI


def test_cli_export_writes_a_loadable_file(runs, tmp_path):
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(app, ["export", "--run", str(runs["linear"]), "--out", str(out), "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.stderr and "zscore normaliser folded in" in result.stderr
    assert load_exported(out).metadata["checkpoint"] == "last"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--format", "tflite"], "format must be one of \\['onnx', 'torchscript'\\], got 'tflite'"),
        (["--out", "model.bin"], "cannot tell the format from the suffix '.bin'"),
        (["--checkpoint", "middle"], "checkpoint must be 'best' or 'last', got 'middle'"),
        (["--run", "/no/such/run"], "/no/such/run"),
    ],
)
def test_cli_export_bad_input_exits_2_with_one_line(runs, tmp_path, args, match):
    base = {"--run": str(runs["linear"]), "--out": str(tmp_path / "m.onnx")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = str(tmp_path / value) if flag == "--out" else value
    result = CliRunner().invoke(app, ["export", *[item for pair in base.items() for item in pair]])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert re.search(match, result.stderr), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_export_without_onnx_names_the_extra(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = CliRunner().invoke(app, ["export", "--run", str(runs["linear"]), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: ONNX export needs onnxscript: pip install 'ltrkit[onnx]'"
    assert list(tmp_path.iterdir()) == []


def test_scoring_onnx_without_onnxruntime_names_the_extra(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="scoring an ONNX model needs onnxruntime: pip install 'ltrkit\\[onnx\\]'"):
        load_exported(exported["linear", "onnx"])


@pytest.fixture(scope="module")
def letor_file(tmp_path_factory) -> Path:
    from ltrkit.data.dataset import RankingDataset
    from ltrkit.data.letor import write_letor

    features, offsets = raw_lists(seed=5)
    path = tmp_path_factory.mktemp("data") / "test.txt"
    qids = np.arange(len(offsets) - 1).astype(str)
    write_letor(RankingDataset(features, np.zeros(len(features), dtype=np.float32), offsets, qids), path)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", ["mlp", "attention"])
def test_cli_predict_with_an_exported_model_equals_the_run(runs, exported, letor_file, model, fmt, tmp_path):
    from_run = CliRunner().invoke(app, ["predict", "--run", str(runs[model]), "--data", str(letor_file), "--out", "-", "--no-cache"])
    from_model = CliRunner().invoke(app, ["predict", "--model", str(exported[model, fmt]), "--data", str(letor_file), "--out", "-", "--no-cache"])
    assert from_run.exit_code == 0 and from_model.exit_code == 0, from_model.output
    np.testing.assert_allclose(np.loadtxt(from_model.stdout.splitlines()), np.loadtxt(from_run.stdout.splitlines()), rtol=1e-5, atol=1e-5)
    trec = tmp_path / "model.trec"
    result = CliRunner().invoke(app, ["predict", "--model", str(exported[model, fmt]), "--data", str(letor_file), "--out", str(trec), "--no-cache"])
    assert result.exit_code == 0 and trec.read_text().split("\n", 1)[0].endswith(f"ltrkit-{exported[model, fmt].name}")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--run", "{run}", "--model", "{model}"], "give either --run RUN_DIR or --model FILE"),
        ([], "give either --run RUN_DIR or --model FILE"),
        (["--model", "{model}", "--checkpoint", "last"], "--checkpoint and --device apply to --run only"),
        (["--model", "{model}", "--device", "cpu"], "--checkpoint and --device apply to --run only"),
        (["--model", "{tmp}/missing.onnx"], "model file not found"),
        (["--model", "{data}"], "test.txt: not an ONNX or TorchScript model"),
    ],
)
def test_cli_predict_model_bad_input_exits_2_with_one_line(runs, exported, letor_file, tmp_path, args, match):
    values = {"run": runs["mlp"], "model": exported["mlp", "onnx"], "tmp": tmp_path, "data": letor_file}
    argv = ["predict", *[a.format(**values) for a in args], "--data", str(letor_file), "--out", str(tmp_path / "s.txt")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert re.search(match, result.stderr), result.stderr
    assert not (tmp_path / "s.txt").exists()
