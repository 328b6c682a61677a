"""Score with an exported model (ONNX Runtime or TorchScript) or a run folder (PyTorch), one API.

    >>> ranker = load_exported("model.onnx")                        # doctest: +SKIP
    >>> scores = ranker.predict_features(x, query_offsets)          # doctest: +SKIP
    >>> scores = ranker.predict("Fold1/test.txt")                   # doctest: +SKIP

Scores follow the input's row order, one per document, higher = ranked higher; features are
raw (the exported model normalises them). The backend follows from what is loaded: ``.onnx``
runs on ONNX Runtime, a TorchScript file on ``torch.jit``, a run folder on PyTorch (the same
graph, eager).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from ltrkit.data.dataset import RankingDataset, unlabelled_dataset

__all__ = ["BACKENDS", "ExportedRanker", "load_exported"]

BACKENDS = ("onnxruntime", "torchscript", "pytorch")
_ZIP_MAGIC = b"PK\x03\x04"

PathLike = Union[str, "os.PathLike[str]"]
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ExportedRanker:
    """A scorer ``(features [B, L, F] raw, mask [B, L]) -> scores [B, L]`` plus its metadata.

    Build it with :func:`load_exported` (a file) or :meth:`from_run` (a run folder).

    Attributes:
        backend: one of :data:`BACKENDS`.
        metadata: the export metadata (see :mod:`ltrkit.export.exporter`).
        source: the file or run folder it came from.
    """

    def __init__(self, score_padded: ScoreFn, metadata: Dict[str, Any], *, backend: str, source: str) -> None:
        self._score_padded = score_padded
        self.metadata = metadata
        self.backend = backend
        self.source = source

    def __repr__(self) -> str:
        return f"ExportedRanker(source={self.source!r}, backend={self.backend!r}, model={self.model_name!r}, n_features={self.n_features})"

    @property
    def n_features(self) -> int:
        """Number of raw features the model takes."""
        return int(self.metadata["n_features"])

    @property
    def model_name(self) -> str:
        """The registry name of the model (``linear``, ``mlp``, ``attention``, ``dasalc``, ``ensemble``)."""
        return str(self.metadata["model"]["name"])

    @property
    def index_base(self) -> int:
        """Feature index base of the run's files: its ``data.index_base``, 1 (LETOR's) for ``auto``."""
        base = self.metadata.get("index_base", "auto")
        return 1 if base == "auto" else int(base)

    @classmethod
    def from_run(cls, run_dir: PathLike, checkpoint: str = "best") -> "ExportedRanker":
        """The PyTorch backend: the export graph of a run folder's checkpoint, run eagerly.

        Raises:
            ltrkit.training.config.ConfigError: not a run folder, or no such checkpoint.
            ValueError: a model that cannot be exported, or a bad ``report.json``.
        """
        import torch

        from ltrkit.export._graph import InferenceGraph
        from ltrkit.export.exporter import _metadata, read_report
        from ltrkit.training.predict import Ranker

        ranker = Ranker.load(run_dir, checkpoint)
        metadata = _metadata(ranker, "pytorch", run_name=Path(run_dir).resolve().name, checkpoint=checkpoint, report=read_report(run_dir))
        graph = InferenceGraph(ranker.model, ranker.normalizer)

        def score(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return graph(torch.from_numpy(features), torch.from_numpy(mask)).numpy()

        return cls(score, metadata, backend="pytorch", source=str(run_dir))

    def score_padded(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scores ``[B, L]`` float32 of a padded batch (0 at padding).

        Args:
            features: ``[B, L, F]`` raw features; converted to float32.
            mask: ``[B, L]`` bool, True = a real document; padding at the end of each row.

        Raises:
            ValueError: wrong shapes or feature count.
        """
        features = np.ascontiguousarray(features, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=bool)
        if features.ndim != 3 or features.shape[2] != self.n_features:
            raise ValueError(f"features must be [B, L, {self.n_features}], got shape {features.shape}")
        if mask.shape != features.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match features shape {features.shape}[:2]")
        return np.asarray(self._score_padded(features, mask), dtype=np.float32)

    def read(self, path: PathLike, *, query_file: Optional[PathLike] = None, **options: Any) -> RankingDataset:
        """Read a LETOR/libsvm file with the run's index base and the model's feature count.

        Args:
            path: data file or cache folder.
            query_file: group file of a libsvm file.
            **options: other :func:`ltrkit.data.cache.load_dataset` options (``index_base``,
                ``regroup``, ``cache``, ``cache_dir``, ``missing``) replacing the defaults: the
                run's index base, no regrouping, the cache beside the file, missing values refused.

        Raises:
            FileNotFoundError: no such file.
            ValueError: a malformed file, or a feature index beyond the model's features.
        """
        from ltrkit.data.cache import load_dataset

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"data file not found: {str(path)!r}")
        options = {"index_base": self.metadata.get("index_base", "auto"), **options}
        return load_dataset(path, n_features=self.n_features, query_file=query_file, **options)

    def predict(self, data: Union[RankingDataset, PathLike], *, query_file: Optional[PathLike] = None) -> np.ndarray:
        """Scores ``[n_docs]`` (float32) of a dataset or a file (see :meth:`read`), in its row order.

        Raises:
            ValueError: a feature count different from the model's, NaN/inf features, a bad file.
            FileNotFoundError: no such file.
        """
        import torch

        from ltrkit.data.batching import BatchLoader, scores_to_rows
        from ltrkit.training.scoring import EVAL_MAX_DOCS_PER_BATCH

        dataset = data if isinstance(data, RankingDataset) else self.read(data, query_file=query_file)
        if dataset.n_features != self.n_features:
            raise ValueError(f"{dataset.source}: has {dataset.n_features} features but the model takes {self.n_features}")
        _check_finite(dataset.features, dataset.source)
        out = np.zeros(dataset.n_docs, dtype=np.float32)
        loader = BatchLoader(dataset, batch_size=256, bucket_by_length=True, max_docs_per_batch=EVAL_MAX_DOCS_PER_BATCH)
        for batch in loader:
            scores = self.score_padded(batch.features.numpy(), batch.mask.numpy())
            scores_to_rows(batch, torch.from_numpy(scores), out)
        return out

    def predict_features(self, features: np.ndarray, query_offsets: np.ndarray) -> np.ndarray:
        """Scores ``[n_docs]`` of raw features ``[n_docs, F]`` grouped by ``query_offsets``.

        Args:
            features: ``[n_docs, n_features]`` raw (un-normalised) features.
            query_offsets: ``[Q + 1]`` int boundaries: query ``q`` is rows
                ``query_offsets[q]:query_offsets[q + 1]``.

        Raises:
            ValueError: bad shapes or offsets, a feature count different from the model's, NaN/inf.
        """
        return self.predict(unlabelled_dataset(features, query_offsets))


def _check_finite(features: np.ndarray, source: str) -> None:
    # a float64 sum of float32 values cannot overflow, so it is finite iff every value is
    if np.isfinite(features.sum(dtype=np.float64)):
        return
    row, column = np.argwhere(~np.isfinite(features))[0]
    raise ValueError(f"{source}: feature {int(column)} of document row {int(row)} is {features[row, column]}; features must be finite")


def load_exported(path: PathLike, *, threads: Optional[int] = None) -> ExportedRanker:
    """Load a file written by :func:`ltrkit.export.export_run` (ONNX or TorchScript, told apart by content).

    Args:
        path: the file.
        threads: ONNX Runtime's intra-op threads per call (default: its own, one per core); the
            torch backends follow ``torch.set_num_threads``, which is process-wide.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ONNX/TorchScript file, or one without ltrkit metadata.
        ltrkit._optional.MissingExtraError: an ONNX file without onnxruntime installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {str(path)!r}")
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == _ZIP_MAGIC
    return _load_torchscript(path) if is_zip else _load_onnx(path, threads)


def _load_torchscript(path: Path) -> ExportedRanker:
    import torch

    from ltrkit.export.exporter import TORCHSCRIPT_EXTRA_FILE

    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        raise ValueError(f"{path}: not a TorchScript model ({str(error).splitlines()[0]})") from None
    metadata = _parse_metadata(path, extra[TORCHSCRIPT_EXTRA_FILE])
    module.eval()

    def score(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(features), torch.from_numpy(mask)).numpy()

    return ExportedRanker(score, metadata, backend="torchscript", source=str(path))


def _load_onnx(path: Path, threads: Optional[int]) -> ExportedRanker:
    from ltrkit._optional import require
    from ltrkit.export.exporter import METADATA_KEY

    (ort,) = require("scoring an ONNX model", "onnx", "onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise ValueError(f"{path}: not an ONNX or TorchScript model ({str(error).splitlines()[0]})") from None
    metadata = _parse_metadata(path, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, ""))

    def score(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(["scores"], {"features": features, "mask": mask})[0]

    return ExportedRanker(score, metadata, backend="onnxruntime", source=str(path))


def _parse_metadata(path: Path, text: Union[str, bytes]) -> Dict[str, Any]:
    from ltrkit.export.exporter import METADATA_VERSION

    if not text:
        raise ValueError(f"{path}: has no ltrkit metadata; export models with `ltrkit export`")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: ltrkit metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("metadata_version") != METADATA_VERSION:
        raise ValueError(f"{path}: ltrkit metadata version must be {METADATA_VERSION}, got {metadata.get('metadata_version') if isinstance(metadata, dict) else metadata!r}")
    n_features = metadata.get("n_features")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"{path}: ltrkit metadata field n_features must be a positive int, got {n_features!r}")
    return metadata
