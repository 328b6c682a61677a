"""``ltrkit`` start-up and help: no heavy imports where none is needed, ``--version``, clean help
texts, usage errors on one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import ltrkit
from ltrkit.cli.main import app

runner = CliRunner()

_PROBE = """
import json, sys
from typer.testing import CliRunner
from ltrkit.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = ("torch", "matplotlib", "tensorboard", "numba")
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def probe(*args: object) -> dict:
    """Run ``ltrkit ARGS`` in a fresh interpreter; its exit code, output and heavy modules loaded."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cached_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("startup")
    path = folder / "train.txt"
    path.write_text("".join(f"{q % 3} qid:{q // 4} 1:{q / 10} 3:{q % 5}\n" for q in range(40)))
    assert runner.invoke(app, ["data", "stats", str(path), "--json"]).exit_code == 0, "builds the cache"
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["evaluate", "--help"],
        ["data", "stats", "{file}", "--json"],
        ["data", "stats", "{file}"],
        ["data", "convert", "{file}", "{tmp}/out.ltrcache"],
    ],
)
def test_commands_that_need_no_torch_do_not_import_it(args, cached_file, tmp_path):
    result = probe(*(arg.format(file=cached_file, tmp=tmp_path) for arg in args))
    assert result["exit_code"] == 0, result["output"]
    # a cache hit needs neither torch nor the parser's numba kernels
    assert result["loaded"] == [], result["loaded"]


@pytest.mark.parametrize(
    "args",
    [
        ["data", "generate", "--out", "{tmp}", "--train-queries", "2", "--vali-queries", "1", "--test-queries", "1", "--features", "8"],
        ["data", "convert", "{file}", "{tmp}/out.libsvm"],
    ],
)
def test_text_writers_do_not_import_torch(args, cached_file, tmp_path):
    result = probe(*(arg.format(file=cached_file, tmp=tmp_path) for arg in args))
    assert result["exit_code"] == 0, result["output"]
    # the text writers live beside the numba parser, so numba may come; torch must not
    assert set(result["loaded"]) <= {"numba"}, result["loaded"]


def test_the_probe_sees_torch_when_a_command_imports_it(cached_file, tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("0.5\n" * 40)
    result = probe("evaluate", "--data", cached_file, "--scores", scores, "--metrics", "ndcg")
    assert result["exit_code"] == 0, result["output"]
    assert "torch" in result["loaded"]


def test_version_from_the_installed_metadata():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"ltrkit {metadata.version('ltrkit')}\n"


def test_version_falls_back_to_the_package_attribute(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setattr(ltrkit, "__version__", "9.8.7")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == "ltrkit 9.8.7\n"


def _all_command_paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _all_command_paths(sub, (*path, name))


COMMANDS = list(_all_command_paths(typer.main.get_command(app)))
#: module-level constants of the package (DEFAULT_SPLITS, DEFAULT_METRICS, ...): names that mean
#: nothing to a user reading --help
CONSTANTS = {
    name
    for source in Path(ltrkit.__file__).parent.rglob("*.py")
    for name in re.findall(r"^_?([A-Z][A-Z0-9]*_[A-Z0-9_]+)\s*(?::[^=]*)?=", source.read_text(), re.MULTILINE)
}


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "ltrkit" for p in COMMANDS])
def test_help_shows_no_type_of_flags_and_no_internal_names(path):
    assert {"DEFAULT_SPLITS", "DEFAULT_METRICS"} <= CONSTANTS
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    shown = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", result.stdout))
    assert not shown & CONSTANTS, shown & CONSTANTS


def test_help_defaults_are_the_library_defaults():
    from ltrkit.data.synthetic import DEFAULT_SPLITS
    from ltrkit.metrics import DEFAULT_METRICS

    evaluate_help = "".join(runner.invoke(app, ["evaluate", "--help"]).stdout.split())
    assert f"(default:{','.join(DEFAULT_METRICS)})" in evaluate_help
    generate_help = " ".join(runner.invoke(app, ["data", "generate", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for option, key in (("--train-queries", "train_queries"), ("--vali-queries", "vali_queries"),
                        ("--test-queries", "test_queries"), ("--features", "n_features"), ("--mean-list-length", "mean_list_length")):
        assert re.search(rf"{option} \S+ [^[]*\(default {DEFAULT_SPLITS[key]:,g}\)", generate_help), option


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], r"^error: No such command 'nope'\. \(see 'ltrkit --help'\)$"),
        (["--bogus"], r"^error: No such option: --bogus \(see 'ltrkit --help'\)$"),
        (["data", "stats", "f.txt", "--min-docs", "many"], r"^error: Invalid value for '--min-docs': .*\(see 'ltrkit data stats --help'\)$"),
        (["data", "stats"], r"^error: Missing argument 'FILE'\. \(see 'ltrkit data stats --help'\)$"),
        (["evaluate", "--metrics"], r"^error: Option '--metrics' requires an argument\. \(see 'ltrkit.* --help'\)$"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr


def test_a_group_without_a_command_still_shows_its_help():
    result = runner.invoke(app, ["data"])
    assert "Usage: ltrkit data" in result.output and "stats" in result.output
