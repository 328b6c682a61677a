"""``ltrkit export``: a run's model as ONNX or TorchScript, with its normaliser and metadata inside.

Exit codes: 0 written; 2 bad input (not a run folder, no such checkpoint, unknown format, a
missing optional dependency), one line on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ltrkit.cli._errors import fail

__all__ = ["register"]


def export_command(
    run: Path = typer.Option(..., "--run", help="run folder written by ltrkit train"),
    out: Path = typer.Option(..., "--out", help="file to write, e.g. model.onnx or model.pt"),
    fmt: Optional[str] = typer.Option(None, "--format", help="onnx or torchscript (default: from the --out suffix: .onnx; .pt/.ts)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
) -> None:
    """Export a trained model with dynamic batch and list length (features, mask -> scores)."""
    from ltrkit._optional import MissingExtraError
    from ltrkit.cli.train_cmd import _config_error_line
    from ltrkit.export.exporter import export_run

    try:
        metadata = export_run(run, out, fmt=fmt, checkpoint=checkpoint)
    except (MissingExtraError, ValueError, OSError) as error:
        fail(_config_error_line(error))
    opset = f", opset {metadata['opset']}" if metadata["opset"] is not None else ""
    typer.echo(
        f"wrote {out} ({metadata['format']}{opset}): {metadata['model']['name']} model, "
        f"{metadata['n_features']} features, {metadata['normalizer']['method']} normaliser folded in",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export_command)
