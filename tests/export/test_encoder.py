"""Encoder export: ONNX (opset 18, dynamo) and TorchScript files of ``ltrkit embed`` runs give the
run's vectors (normalisation included) to 1e-5 for any batch size (and token count), carry their
metadata (the vocabulary of a text encoder), and ``ltrkit export`` dispatches on the run kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.embeddings.job import Embedder, train_embeddings
from ltrkit.export.encoder import export_encoder_run, is_encoder_run
from ltrkit.export.exporter import METADATA_KEY, OPSET, TORCHSCRIPT_EXTRA_FILE

QUIET = {"tensorboard": False, "plots": False}


def _text_run(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    paths = {}
    for split, n in (("train", 24), ("vali", 8)):
        lines = ["id,label,text"]
        for row in range(n):
            label = row % 4
            text = " ".join(rng.choice(words[label * 6 : label * 6 + 10], size=int(rng.integers(3, 9))))
            lines.append(f"{split}{row},c{label},{text}")
        paths[split] = tmp_path / f"{split}.csv"
        paths[split].write_text("\n".join(lines) + "\n")
    config = {
        "data": {"train": str(paths["train"]), "vali": str(paths["vali"]), "text_column": "text"},
        "encoder": {"name": "bag_of_words", "args": {"token_dim": 8, "dim": 6}},
        "pretrain": {"epochs": 1},
        "sampler": {"p": 4, "k": 2},
        "training": {"epochs": 2},
        "num_threads": 1,
        "output": {"dir": str(tmp_path / "runs"), "name": "text", **QUIET},
    }
    return train_embeddings(config).run_dir


def _cnn_run(tmp_path: Path) -> Path:
    """A CNN on 4x4 one-channel "images" of three classes."""
    rng = np.random.default_rng(1)
    path = tmp_path / "images.csv"
    lines = ["id,label," + ",".join(f"p{j}" for j in range(16))]
    for row in range(30):
        lines.append(f"i{row},c{row % 3}," + ",".join(f"{v:.4f}" for v in rng.random(16) + row % 3))
    path.write_text("\n".join(lines) + "\n")
    config = {
        "data": {"train": str(path)},
        "encoder": {"name": "cnn", "args": {"image_shape": [1, 4, 4], "channels": [4, 8], "dim": 5}},
        "sampler": {"p": 3, "k": 4},
        "training": {"epochs": 1},
        "early_stopping": {"split": "train"},
        "num_threads": 1,
        "output": {"dir": str(tmp_path / "runs"), "name": "cnn", **QUIET},
    }
    return train_embeddings(config).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder-runs")
    return {"text": _text_run(folder), "cnn": _cnn_run(folder)}


def _random_inputs(embedder: Embedder, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if embedder.vocabulary is None:
        return torch.rand(batch, embedder.n_inputs, generator=generator)
    ids = torch.randint(0, embedder.n_inputs, (batch, 3 + seed), generator=generator)
    ids[0] = 0  # an item without any token
    ids[:, -1] = 0
    return ids


def _expected(embedder: Embedder, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        expected = embedder.model(inputs).numpy()
    # normalised (an item without tokens embeds to the zero vector, as in the run)
    norms = np.linalg.norm(expected, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    return expected


def test_torchscript_equals_the_run_for_any_batch_size(runs, tmp_path):
    for kind, run in runs.items():
        embedder = Embedder.load(run)
        export_encoder_run(run, tmp_path / f"{kind}.pt")
        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        scripted = torch.jit.load(str(tmp_path / f"{kind}.pt"), _extra_files=extra)
        for seed, batch in enumerate((1, 2, 17)):
            inputs = _random_inputs(embedder, batch, seed)
            np.testing.assert_allclose(scripted(inputs).detach().numpy(), _expected(embedder, inputs), atol=1e-5)
        metadata = json.loads(extra[TORCHSCRIPT_EXTRA_FILE])
        assert metadata["format"] == "torchscript" and metadata["opset"] is None and metadata["kind"] == "encoder"
        assert metadata["input_kind"] == ("tokens" if kind == "text" else "features")
    assert metadata["n_inputs"] == 16 and metadata["vocabulary"] is None and metadata["encoder"]["args"]["image_shape"] == [1, 4, 4]


def test_onnx_equals_the_run_for_any_batch_and_token_count(runs, tmp_path):
    run = runs["text"]
    embedder = Embedder.load(run)
    onnx_metadata = export_encoder_run(run, tmp_path / "encoder.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    for seed, batch in enumerate((1, 2, 17)):
        inputs = _random_inputs(embedder, batch, seed)
        np.testing.assert_allclose(session.run(None, {"inputs": inputs.numpy()})[0], _expected(embedder, inputs), atol=1e-5)
    proto = onnx.load(str(tmp_path / "encoder.onnx"))
    assert max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")) == OPSET
    metadata = json.loads(next(entry.value for entry in proto.metadata_props if entry.key == METADATA_KEY))
    assert metadata == json.loads(json.dumps(onnx_metadata)) and metadata["kind"] == "encoder" and metadata["normalize"]
    assert metadata["input_kind"] == "tokens" and metadata["vocabulary"]["words"] == embedder.vocabulary.words
    assert metadata["vocabulary"] == json.loads((run / "vocabulary.json").read_text())


def test_the_export_command_dispatches_on_the_run_kind(runs, tmp_path):
    assert is_encoder_run(runs["text"]) and not is_encoder_run(tmp_path)
    result = CliRunner().invoke(app, ["export", "--run", str(runs["text"]), "--out", str(tmp_path / "text.pt")])
    assert result.exit_code == 0, result.output
    assert "(torchscript): bag_of_words encoder, token ids of a vocabulary of" in result.output and "-> 6-d vectors, L2-normalised" in result.output
    assert (tmp_path / "text.pt").is_file()
    bad = CliRunner().invoke(app, ["export", "--run", str(runs["cnn"]), "--out", str(tmp_path / "model.bin")])
    assert bad.exit_code == 2 and "cannot tell the format from the suffix" in bad.output and not (tmp_path / "model.bin").exists()
