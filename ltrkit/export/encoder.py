"""Export a trained encoder (``ltrkit embed`` run) to ONNX or TorchScript: inputs -> vectors.

The exported module maps a batch of items to their embeddings exactly as the run's model does,
the L2 normalisation included:

* feature encoders (``mlp``, ``cnn``): ``inputs [B, F]`` float32 -> ``vectors [B, dim]`` float32;
* the ``bag_of_words`` encoder: ``inputs [B, T]`` int64 token ids of the run's vocabulary,
  ``0`` = padding (anywhere in a row), ``1`` = unknown -> ``vectors [B, dim]``. The vocabulary
  (``words``, ``max_length``) and the tokenisation rule travel in the metadata, so a caller
  turns text into ids as the run did (:func:`ltrkit.embeddings.data.tokenize`, then the ids of
  ``words``, unknown words ``1``, cut to ``max_length``).

``B`` (and ``T``) are dynamic. ONNX goes through ``torch.onnx.export(dynamo=True)`` at opset
:data:`~ltrkit.export.exporter.OPSET`, as for rankers; TorchScript through ``torch.jit.script``.
Metadata (JSON, under the same key / extra file as a ranker's): ``kind`` (``"encoder"``),
``format``, ``opset``, ``ltrkit_version``, ``encoder`` (``name``, ``args``), ``input_kind``
(``features`` or ``tokens``), ``n_inputs``, ``dim``, ``normalize``, ``similarity``,
``vocabulary`` (or ``None``), ``tokenizer``, ``config_sha256``, ``run_name``, ``checkpoint``,
``best_epoch``, ``metrics`` and ``inputs``/``outputs``.

    >>> export_encoder_run("runs/news", "encoder.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from ltrkit.export.exporter import OPSET, PathLike, config_sha256, format_for, onnx_program, read_report, write_model

__all__ = ["EncoderGraph", "export_encoder", "export_encoder_run", "is_encoder_run"]

METADATA_VERSION = 1
TOKENIZER = "lower-cased runs of letters and digits, inner apostrophes kept (regex [^\\W_]+(?:'[^\\W_]+)*); token-id columns as '#<id>'"
# example batch for tracing: distinct sizes above 1, so torch.export keeps both dimensions symbolic
_EXAMPLE_BATCH, _EXAMPLE_TOKENS = 2, 3


class EncoderGraph(nn.Module):
    """The exported computation: the run's encoder, then (``normalize``) L2 normalisation.

    Args:
        encoder: the trained encoder (``inputs -> [B, dim]``), in eval mode.
        normalize: L2-normalise the outputs, as the run's model does.
    """

    def __init__(self, encoder: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = bool(normalize)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        vectors = self.encoder(inputs)
        return nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors


def is_encoder_run(run_dir: PathLike) -> bool:
    """Whether ``run_dir`` holds a run of ``ltrkit embed`` (its resolved config names an encoder)."""
    path = Path(run_dir) / "config.resolved.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "encoder" in config and "objective" in config


def _metadata(embedder: Any, fmt: str, *, run_name: Optional[str], checkpoint: Optional[str], report: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    from ltrkit import __version__
    from ltrkit.embeddings.encoders import encoder_hyperparameters

    config = embedder.config
    args = {**encoder_hyperparameters(config.encoder.name), **config.encoder.args}
    tokens = embedder.vocabulary is not None
    return {
        "metadata_version": METADATA_VERSION,
        "kind": "encoder",
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "ltrkit_version": __version__,
        "encoder": {"name": config.encoder.name, "args": json.loads(json.dumps(args))},
        "input_kind": "tokens" if tokens else "features",
        "n_inputs": embedder.n_inputs,
        "dim": int(args["dim"]),
        "normalize": config.normalize,
        "similarity": config.evaluation.similarity,
        "vocabulary": embedder.vocabulary.to_dict() if tokens else None,
        "tokenizer": TOKENIZER if tokens else None,
        "config_sha256": config_sha256(config),
        "run_name": run_name,
        "checkpoint": checkpoint,
        "best_epoch": None if report is None else report.get("best_epoch"),
        "metrics": None if report is None else report.get("metrics"),
        "inputs": {"inputs": "[B, T] int64 token ids, 0 = padding" if tokens else f"[B, {embedder.n_inputs}] float32 features"},
        "outputs": {"vectors": f"[B, {int(args['dim'])}] float32" + (", L2-normalised" if config.normalize else "")},
    }


def export_encoder(
    embedder: Any,
    out: PathLike,
    *,
    fmt: Optional[str] = None,
    run_name: Optional[str] = None,
    checkpoint: Optional[str] = None,
    report: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Write the encoder of ``embedder`` (an :class:`~ltrkit.embeddings.job.Embedder`) to ``out``;
    returns the metadata. ``out`` is written under a temporary name and renamed (never half-written).

    Raises:
        ValueError: a bad format.
        ltrkit._optional.MissingExtraError: ONNX export without onnx/onnxscript installed.
    """
    fmt = format_for(out, fmt)
    metadata = _metadata(embedder, fmt, run_name=run_name, checkpoint=checkpoint, report=report)
    graph = EncoderGraph(embedder.model.encoder, embedder.config.normalize).cpu().eval()
    write_model(out, fmt, metadata, scripted=lambda: torch.jit.script(graph), onnx=lambda: _encoder_onnx(graph, metadata))
    return metadata


def _encoder_onnx(graph: EncoderGraph, metadata: Dict[str, Any]) -> Any:
    batch = torch.export.Dim("batch")
    if metadata["input_kind"] == "tokens":
        example = torch.ones(_EXAMPLE_BATCH, _EXAMPLE_TOKENS, dtype=torch.int64)
        dynamic = {"inputs": {0: batch, 1: torch.export.Dim("tokens")}}
    else:
        example = torch.zeros(_EXAMPLE_BATCH, metadata["n_inputs"])
        dynamic = {"inputs": {0: batch}}
    return onnx_program(graph, (example,), input_names=["inputs"], output_names=["vectors"], dynamic_shapes=dynamic)


def export_encoder_run(run_dir: PathLike, out: PathLike, *, fmt: Optional[str] = None, checkpoint: str = "best") -> Dict[str, Any]:
    """Export the ``best`` or ``last`` checkpoint of an ``ltrkit embed`` run folder (see :func:`export_encoder`).

    Raises:
        ltrkit.training.config.ConfigError: not a run folder, or no such checkpoint.
        ValueError: a bad format.
        ltrkit._optional.MissingExtraError: ONNX export without onnx/onnxscript installed.
    """
    from ltrkit.embeddings.job import Embedder

    fmt = format_for(out, fmt)
    embedder = Embedder.load(run_dir, checkpoint)
    return export_encoder(embedder, out, fmt=fmt, run_name=Path(run_dir).resolve().name, checkpoint=checkpoint, report=read_report(run_dir))
