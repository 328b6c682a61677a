"""How every ``ltrkit`` command reports bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import re
from typing import NoReturn

import typer

USAGE_ERROR = 2

#: A quoted piece longer than this keeps its head and tail (a 10 MB token must not print whole).
MAX_QUOTED = 100
#: Each line of the message (the problem, the quoted input line) is cut to about this length.
MAX_LINE = 300
#: The whole printed message is cut to about this length.
MAX_MESSAGE = 600

_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


def _cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and its last quarter and
    saying how many characters were left out (a message's start says what and where, its end
    often what to do: "...; pass --overwrite to replace them")."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    head = limit - tail
    return f"{text[:head]}...[{len(text) - limit:,} characters]...{text[-tail:]}"


def one_line(message: object) -> str:
    """``message`` as one bounded line.

    Whitespace runs become one space and text on later lines (e.g. a quoted input line) follows
    after `` | ``. A quoted piece (``'...'`` or ``"..."``) is cut to about :data:`MAX_QUOTED`
    characters, each line to :data:`MAX_LINE` and the result to :data:`MAX_MESSAGE`, each cut
    keeping head and tail and saying how much it left out, so a huge token in the input never
    becomes a huge error line.

    Example:
        >>> one_line("bad token 'x'\\n    1 qid:1   x")
        "bad token 'x' | 1 qid:1 x"
    """
    lines = []
    for line in str(message).splitlines():
        line = _QUOTED.sub(lambda quoted: _cut(quoted.group(0), MAX_QUOTED), " ".join(line.split()))
        lines.append(_cut(line, MAX_LINE))
    return _cut(" | ".join(line for line in lines if line), MAX_MESSAGE)


def fail(message: object, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr (see :func:`one_line`) and exit with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)
