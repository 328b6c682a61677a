"""``ltrkit export``: a run's model as ONNX or TorchScript, with its normaliser and metadata inside.

A run of ``ltrkit train`` exports a ranker (features, mask -> scores); a run of ``ltrkit embed``
its encoder (inputs -> vectors, normalisation included; a text encoder takes token ids and
carries its vocabulary in the metadata).

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
    run: Path = typer.Option(..., "--run", help="run folder written by ltrkit train or ltrkit embed"),
    out: Path = typer.Option(..., "--out", help="file to write, e.g. model.onnx or model.pt"),
    fmt: Optional[str] = typer.Option(None, "--format", help="onnx or torchscript (default: from the --out suffix: .onnx; .pt/.ts)"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
) -> None:
    """Export a trained model with dynamic batch and list length (features, mask -> scores), or an
    embedding run's encoder with a dynamic batch (and token count) (inputs -> vectors)."""
    from ltrkit._optional import MissingExtraError
    from ltrkit.cli.train_cmd import _config_error_line
    from ltrkit.export.encoder import export_encoder_run, is_encoder_run
    from ltrkit.export.exporter import export_run

    encoder = is_encoder_run(run)
    try:
        metadata = (export_encoder_run if encoder else export_run)(run, out, fmt=fmt, checkpoint=checkpoint)
    except (MissingExtraError, ValueError, OSError) as error:
        fail(_config_error_line(error))
    opset = f", opset {metadata['opset']}" if metadata["opset"] is not None else ""
    if encoder:
        inputs = f"token ids of a vocabulary of {metadata['n_inputs']}" if metadata["vocabulary"] else f"{metadata['n_inputs']} features"
        normalised = ", L2-normalised" if metadata["normalize"] else ""
        typer.echo(f"wrote {out} ({metadata['format']}{opset}): {metadata['encoder']['name']} encoder, {inputs} -> {metadata['dim']}-d vectors{normalised}", err=True)
        return
    typer.echo(
        f"wrote {out} ({metadata['format']}{opset}): {metadata['model']['name']} model, "
        f"{metadata['n_features']} features, {metadata['normalizer']['method']} normaliser folded in",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export_command)
