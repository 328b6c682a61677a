"""Export a trained ranker to ONNX or TorchScript, normaliser folded in, metadata inside the file.

The exported model takes ``features [B, L, F]`` float32 (raw, as read from the data file) and
``mask [B, L]`` bool (True = a real document, padding at the end of each row) and returns
``scores [B, L]`` float32 (0 at padded positions). ``B`` and ``L`` are dynamic, for the
context-aware models too (self-attention, DASALC, a ``rank_mean`` ensemble): a list is scored
as a whole, like in training. Every model of :data:`ltrkit.export._graph.EXPORTABLE_MODELS`
exports, ensembles of them included.

* ONNX: ``torch.onnx.export(dynamo=True)`` (``torch.export`` with symbolic batch and list
  dimensions, then onnxscript), opset :data:`OPSET`; metadata in ``metadata_props[METADATA_KEY]``.
  The TorchScript-based exporter is not used: it records ``nn.MultiheadAttention``'s reshapes
  with the example's batch size, so the attention ranker would only accept that size.
* TorchScript: ``torch.jit.script`` (tracing would freeze the same shapes); metadata in the
  extra file :data:`TORCHSCRIPT_EXTRA_FILE`.

Metadata (a JSON object): ``format``, ``opset``, ``ltrkit_version``, ``n_features``,
``index_base`` (feature indices of the run's files), ``normalizer`` (its state), ``model``
(``name``, ``config``, ``context_aware``; an ensemble's ``config`` holds its ``combine`` and its
``members``, each ``name`` and ``config``), ``config_sha256`` (of the resolved training config), ``run_name``,
``checkpoint``, ``metrics`` (of the run's report, when it has one) and ``inputs``/``outputs``.

    >>> export_run("runs/my-run", "model.onnx")                        # doctest: +SKIP
    >>> load_exported("model.onnx").predict_features(x, query_offsets)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

__all__ = [
    "FORMATS",
    "METADATA_KEY",
    "OPSET",
    "TORCHSCRIPT_EXTRA_FILE",
    "config_sha256",
    "export_ranker",
    "export_run",
    "format_for",
    "read_report",
]

OPSET = 18
FORMATS = ("onnx", "torchscript")
METADATA_KEY = "ltrkit"
TORCHSCRIPT_EXTRA_FILE = "ltrkit.json"
METADATA_VERSION = 1
_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
# example shapes for tracing: distinct and above 1, so torch.export keeps both dimensions symbolic
_EXAMPLE_BATCH, _EXAMPLE_LENGTH = 2, 3

PathLike = Union[str, "os.PathLike[str]"]


def format_for(path: PathLike, fmt: Optional[str] = None) -> str:
    """The export format: ``fmt`` if given, else from the suffix (``.onnx``; ``.pt``/``.ts``/``.torchscript``).

    Raises:
        ValueError: an unknown ``fmt``, or no ``fmt`` and a suffix that names no format.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"{str(path)!r}: cannot tell the format from the suffix {suffix or '(none)'!r}; give one of {list(FORMATS)}")
    return _SUFFIXES[suffix]


def config_sha256(config: Any) -> str:
    """SHA-256 of a :class:`~ltrkit.training.config.TrainConfig` as canonical JSON (sorted keys)."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _metadata(ranker: Any, fmt: str, *, run_name: Optional[str], checkpoint: Optional[str], report: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    from ltrkit import __version__

    model = ranker.model
    return {
        "metadata_version": METADATA_VERSION,
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "ltrkit_version": __version__,
        "n_features": ranker.n_features,
        "index_base": ranker.config.data.index_base,
        "normalizer": ranker.normalizer.state_dict(),
        "model": {"name": model.name, "config": dict(model.config), "context_aware": bool(model.context_aware)},
        "config_sha256": config_sha256(ranker.config),
        "run_name": run_name,
        "checkpoint": checkpoint,
        "best_epoch": None if report is None else report.get("best_epoch"),
        "metrics": None if report is None else report.get("metrics"),
        "inputs": {"features": "[B, L, F] float32, raw", "mask": "[B, L] bool, True = real document, padding last"},
        "outputs": {"scores": "[B, L] float32, 0 at padding"},
    }


def export_ranker(
    ranker: Any,
    out: PathLike,
    *,
    fmt: Optional[str] = None,
    run_name: Optional[str] = None,
    checkpoint: Optional[str] = None,
    report: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Write ``ranker`` (a :class:`~ltrkit.training.predict.Ranker`) to ``out``; returns the metadata.

    The file is written to a temporary name beside ``out`` and renamed, so ``out`` is never
    half-written.

    Args:
        ranker: the trained model, its fitted normaliser and its config.
        out: the file to write.
        fmt: ``"onnx"`` or ``"torchscript"``; default from the suffix of ``out``.
        run_name, checkpoint, report: recorded in the metadata (``report`` is the run's
            ``report.json``, whose metrics travel with the model).

    Raises:
        ValueError: a bad format or a model that cannot be exported.
        ltrkit._optional.MissingExtraError: ONNX export without onnx/onnxscript installed.
    """
    from ltrkit.export._graph import InferenceGraph

    fmt = format_for(out, fmt)
    metadata = _metadata(ranker, fmt, run_name=run_name, checkpoint=checkpoint, report=report)
    graph = InferenceGraph(ranker.model, ranker.normalizer)
    write_model(out, fmt, metadata, scripted=graph.scripted, onnx=lambda: _ranker_onnx(graph))
    return metadata


def write_model(out: PathLike, fmt: str, metadata: Dict[str, Any], *, scripted: Callable[[], Any], onnx: Callable[[], Any]) -> None:
    """Write a model with ``metadata`` (JSON) inside it, atomically: ``scripted()`` (a TorchScript
    module, metadata as the extra file :data:`TORCHSCRIPT_EXTRA_FILE`) or ``onnx()`` (an ONNX
    program, metadata under :data:`METADATA_KEY`), as ``fmt`` says; only the chosen one is built."""
    import torch

    from ltrkit._atomic import atomic_path

    out = Path(out)
    text = json.dumps(metadata, sort_keys=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        module = scripted()
        with atomic_path(out) as temporary:
            torch.jit.save(module, str(temporary), _extra_files={TORCHSCRIPT_EXTRA_FILE: text})
        return
    proto = onnx().model_proto
    proto.producer_name, proto.producer_version = "ltrkit", metadata["ltrkit_version"]
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    import onnx as onnx_package  # present: onnx_program required it

    with atomic_path(out) as temporary:
        onnx_package.save_model(proto, str(temporary))


def onnx_program(graph: Any, example: tuple, *, input_names: list, output_names: list, dynamic_shapes: Dict[str, Any]) -> Any:
    """``torch.onnx.export`` of ``graph`` by the dynamo exporter at :data:`OPSET`, without its noise.

    Raises:
        ltrkit._optional.MissingExtraError: onnx/onnxscript are not installed.
    """
    import torch

    from ltrkit._optional import require

    require("ONNX export", "onnx", "onnx", "onnxscript")
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    # the exporter logs every missing torchvision kernel and warns about its own internals
    # (axis renaming, deprecated pytree helpers): nothing a user can act on
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            return torch.onnx.export(
                graph, example, dynamo=True, input_names=input_names, output_names=output_names,
                dynamic_shapes=dynamic_shapes, opset_version=OPSET, verbose=False,
            )
    finally:
        registration.setLevel(level)


def _ranker_onnx(graph: Any) -> Any:
    import torch

    features = torch.zeros(_EXAMPLE_BATCH, _EXAMPLE_LENGTH, graph.n_features)
    mask = torch.ones(_EXAMPLE_BATCH, _EXAMPLE_LENGTH, dtype=torch.bool)
    batch, docs = torch.export.Dim("batch"), torch.export.Dim("docs")
    return onnx_program(
        graph, (features, mask), input_names=["features", "mask"], output_names=["scores"],
        dynamic_shapes={"features": {0: batch, 1: docs}, "mask": {0: batch, 1: docs}},
    )


def export_run(run_dir: PathLike, out: PathLike, *, fmt: Optional[str] = None, checkpoint: str = "best") -> Dict[str, Any]:
    """Export the ``best`` or ``last`` checkpoint of a run folder (see :func:`export_ranker`).

    Raises:
        ltrkit.training.config.ConfigError: not a run folder, or no such checkpoint.
        ValueError: a bad format or a model that cannot be exported.
        ltrkit._optional.MissingExtraError: ONNX export without onnx/onnxscript installed.
    """
    from ltrkit.training.predict import Ranker

    fmt = format_for(out, fmt)
    ranker = Ranker.load(run_dir, checkpoint)
    return export_ranker(ranker, out, fmt=fmt, run_name=Path(run_dir).resolve().name, checkpoint=checkpoint, report=read_report(run_dir))


def read_report(run_dir: PathLike) -> Optional[Dict[str, Any]]:
    """The run's ``report.json`` as a dict, or None when the run has none (it is written last).

    Raises:
        ValueError: the file is not a JSON object.
    """
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(report).__name__}")
    return report
