"""Load what to serve and run the service under uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from ltrkit._optional import require
from ltrkit.export.loaded import ExportedRanker

if TYPE_CHECKING:
    from ltrkit.serve.app import Limits

__all__ = ["load_ranker", "serve"]

PathLike = Union[str, "os.PathLike[str]"]
# seconds in-flight requests get to finish after SIGTERM before connections are closed
GRACEFUL_SHUTDOWN_S = 10


def load_ranker(*, run: Optional[PathLike] = None, model: Optional[PathLike] = None, checkpoint: str = "best", threads: Optional[int] = None) -> ExportedRanker:
    """The scorer to serve: a run folder (PyTorch backend) or an exported file (ONNX Runtime / TorchScript).

    Args:
        run, model: the run folder or the exported file (exactly one).
        checkpoint: with ``run``: ``best`` or ``last``.
        threads: threads per scoring call (torch: ``torch.set_num_threads``, process-wide; ONNX
            Runtime: intra-op threads). The service runs concurrent requests on separate
            threads, so 1 keeps them from competing for the same cores; None keeps the defaults.

    Raises:
        ValueError: neither or both of ``run`` and ``model``; a bad file or run folder.
        FileNotFoundError: no such model file.
        ltrkit._optional.MissingExtraError: an ONNX file without onnxruntime.
    """
    from ltrkit.export.loaded import load_exported

    if (run is None) == (model is None):
        raise ValueError("give either --run RUN_DIR or --model FILE")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        import torch

        torch.set_num_threads(threads)
    if run is not None:
        return ExportedRanker.from_run(Path(run), checkpoint)
    return load_exported(Path(model), threads=threads)


def serve(ranker: ExportedRanker, *, host: str = "127.0.0.1", port: int = 8000, limits: Optional["Limits"] = None, index_base: Optional[int] = None, log_level: str = "info") -> None:
    """Serve ``ranker`` on ``host:port`` until SIGINT/SIGTERM (in-flight requests finish first).

    Raises:
        ltrkit._optional.MissingExtraError: fastapi or uvicorn not installed.
    """
    require("the HTTP service", "serve", "fastapi", "uvicorn")
    import uvicorn

    from ltrkit.serve.app import Limits, create_app

    app = create_app(ranker, limits=limits or Limits(), index_base=index_base)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, access_log=False)
    uvicorn.Server(config).run()
