"""The CLI error printer: one bounded line whatever the message holds."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from ltrkit.cli._errors import MAX_LINE, MAX_MESSAGE, MAX_QUOTED, fail, one_line
from ltrkit.cli.main import app

#: the longest a cut adds: "...[12,345,678 characters]..."
SLACK = 40


def left_out(text: str) -> int:
    return sum(int(n.replace(",", "")) for n in re.findall(r"\.\.\.\[([\d,]+) characters\]\.\.\.", text))


@pytest.mark.parametrize(
    "message, expected",
    [
        ("plain", "plain"),
        ("file.txt, line 3: bad\n    1 qid:1  2:x\n", "file.txt, line 3: bad | 1 qid:1 2:x"),
        ("a\n\n\tb  c\r\nd", "a | b c | d"),
        (ValueError("as 'an' exception"), "as 'an' exception"),
    ],
)
def test_short_messages_are_joined_not_cut(message, expected):
    assert one_line(message) == expected


def test_a_huge_quoted_token_keeps_its_head_and_tail():
    token = "x" * 7 + "y" * 10_000_000 + "z" * 7
    message = f"f.txt, line 2: value of feature token {token!r} is not a number; pass --missing zero"
    line = one_line(message)
    assert "\n" not in line and len(line) <= MAX_QUOTED + SLACK + 100
    assert line.startswith("f.txt, line 2: value of feature token 'xxxxxxx")
    assert "zzzzzzz' is not a number; pass --missing zero" in line
    assert left_out(line) == len(repr(token)) - MAX_QUOTED


def test_each_line_and_the_whole_message_are_bounded():
    long_line = "start " + "word " * 2_000 + "end"
    line = one_line(long_line)
    assert len(line) <= MAX_LINE + SLACK and line.startswith("start word") and line.endswith("word end")
    assert left_out(line) == len(long_line) - MAX_LINE
    many = "\n".join(f"line {i} " + "w" * (MAX_LINE - 10) for i in range(50)) + "\npass --overwrite"
    line = one_line(many)
    assert len(line) <= MAX_MESSAGE + SLACK and line.startswith("line 0 ") and line.endswith("w | pass --overwrite")


def test_several_quoted_pieces_are_cut_one_by_one():
    first, second = "a" * 5_000, "b" * 300
    line = one_line(f"{first!r} and {second!r} and 'short'")
    assert line.count("...[") == 2 and line.endswith(" and 'short'")


def test_fail_prints_one_line_on_stderr_and_exits_2():
    probe = typer.Typer()

    @probe.command()
    def command() -> None:
        fail("first\nsecond " + "'" + "q" * 1_000_000 + "'")

    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: first | second 'qqq") and len(lines[0]) < MAX_MESSAGE + SLACK


def test_a_10_mb_token_in_a_data_file_prints_a_short_line(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("1 qid:1 1:0.5\n0 qid:1 2:x" + "y" * 10_000_000 + "\n")
    result = CliRunner().invoke(app, ["data", "stats", str(path), "--no-cache"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and len(lines[0]) < MAX_MESSAGE + SLACK
    assert lines[0].startswith(f"error: {path}, line 2: ")
