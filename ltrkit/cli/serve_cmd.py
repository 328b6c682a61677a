"""``ltrkit serve``: the HTTP re-ranking service over a run folder or an exported model.

Exit codes: 0 stopped by SIGINT/SIGTERM after finishing in-flight requests; 2 bad input (no or
both of --run/--model, a bad run folder or model file, bad limits, a missing optional
dependency), one line on stderr.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ltrkit.cli._errors import fail

__all__ = ["register"]


def _exit_zero(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve_command(
    run: Optional[Path] = typer.Option(None, "--run", help="run folder written by ltrkit train (PyTorch backend)"),
    model: Optional[Path] = typer.Option(None, "--model", help="file written by ltrkit export (.onnx: ONNX Runtime; TorchScript: torch.jit)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="with --run: best or last"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on (0: any free port)"),
    max_docs_per_list: int = typer.Option(1000, "--max-docs-per-list", help="most documents in one list"),
    max_lists: int = typer.Option(64, "--max-lists", help="most lists in one request"),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", help="largest request body in bytes"),
    index_base: Optional[int] = typer.Option(None, "--index-base", help="first index of sparse {index: value} documents: 0 or 1 (default: the run's; 1 for auto)"),
    threads: int = typer.Option(1, "--threads", help="threads per scoring call (requests run concurrently on separate threads)"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical, error, warning, info, debug"),
) -> None:
    """Serve POST /rank, GET /health, /ready, /metadata and the OpenAPI docs at /docs."""
    from ltrkit._optional import MissingExtraError, require
    from ltrkit.cli.train_cmd import _config_error_line

    try:
        require("the HTTP service", "serve", "fastapi", "uvicorn")
        from ltrkit.serve.app import Limits
        from ltrkit.serve.server import load_ranker, serve

        if threads >= 1 and "torch" not in sys.modules:
            # OpenMP takes its thread count when torch loads; torch.set_num_threads afterwards
            # left the PyTorch backend at ~30 ms per 100-document list on 2 busy cores (0.6 ms
            # with this set first)
            os.environ["OMP_NUM_THREADS"] = str(threads)
        limits = Limits(max_docs_per_list=max_docs_per_list, max_lists=max_lists, max_body_bytes=max_body_bytes)
        if index_base not in (None, 0, 1):
            fail(f"--index-base must be 0 or 1, got {index_base}")
        ranker = load_ranker(run=run, model=model, checkpoint=checkpoint, threads=threads)
    except (MissingExtraError, ValueError, OSError) as error:
        fail(_config_error_line(error))
    # uvicorn turns SIGTERM into a graceful shutdown and re-raises it once stopped: this
    # handler makes that a clean exit 0
    signal.signal(signal.SIGTERM, _exit_zero)
    serve(ranker, host=host, port=port, limits=limits, index_base=index_base, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve_command)
