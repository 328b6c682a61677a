"""CLI commands (filled in by the owning layer)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
