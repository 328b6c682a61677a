"""How every ``ltrkit`` command reports bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

USAGE_ERROR = 2


def one_line(message: object) -> str:
    """``message`` on one line; text on later lines (e.g. a quoted input line) follows after `` | ``."""
    lines = [" ".join(line.split()) for line in str(message).splitlines()]
    return " | ".join(line for line in lines if line)


def fail(message: object, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)
