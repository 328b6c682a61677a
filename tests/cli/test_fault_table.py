"""Every command under a table of file-system faults: one line on stderr, exit code 2, no
traceback, and nothing half-written or incomplete presented as an output.

The faults are simulated in-process (the tests run as root, where chmod cannot make a folder
read-only): a full disk at the rename or the flush of a write, torch's own short-write error, and
a read-only or forbidden folder for writing (outputs) or reading (inputs). Only paths under the
test's output (or input) folder are affected, so pytest and the interpreter keep working.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import torch
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data.letor import write_letor
from ltrkit.data.synthetic import generate_splits

SYNTHETIC = {"train_queries": 12, "vali_queries": 4, "test_queries": 4, "n_features": 9, "mean_list_length": 6.0, "max_list_length": 12, "seed": 1}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _under(path: object, root: Path) -> bool:
    if isinstance(path, int):
        return False
    return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(root)


def _writes(mode: str) -> bool:
    return any(flag in mode for flag in "wax+")


# --------------------------------------------------------------------------- faults


def _refuse(monkeypatch, root: Path, code: int, *, reading: bool) -> None:
    """Every open (and mkdir) under ``root`` for writing, or for reading, fails with ``code``."""
    real_open, real_os_open, real_mkdir, real_file_io = builtins.open, os.open, os.mkdir, io.FileIO

    def refused(path: object) -> OSError:
        return OSError(code, os.strerror(code), os.fsdecode(path))

    def open_(file, mode="r", *args, **kwargs):
        if _under(file, root) and _writes(mode) != reading:
            raise refused(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if _under(path, root) and bool(flags & _WRITE_FLAGS) != reading:
            raise refused(path)
        return real_os_open(path, flags, *args, **kwargs)

    class FileIO(real_file_io):  # the parser reads through io.FileIO (pread)
        def __init__(self, file, mode="r", *args, **kwargs):
            if _under(file, root) and _writes(mode) != reading:
                raise refused(file)
            super().__init__(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _under(path, root) and not reading:
            raise refused(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(io, "FileIO", FileIO)


def full_at_rename(monkeypatch, root: Path) -> None:
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if _under(target, root):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def full_at_flush(monkeypatch, root: Path) -> None:
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def full_in_torch_save(monkeypatch, root: Path) -> None:
    def save(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", save)


def read_only(monkeypatch, root: Path) -> None:
    _refuse(monkeypatch, root, errno.EROFS, reading=False)


def forbidden(monkeypatch, root: Path) -> None:
    _refuse(monkeypatch, root, errno.EACCES, reading=False)


def unreadable(monkeypatch, root: Path) -> None:
    _refuse(monkeypatch, root, errno.EACCES, reading=True)


WRITE_FAULTS: Dict[str, Callable] = {
    "full at rename": full_at_rename,
    "full at flush": full_at_flush,
    "read-only": read_only,
    "forbidden": forbidden,
}


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Dict[str, Path]:
    """Data files, a scores file, a config and a trained run, made before any fault."""
    folder = tmp_path_factory.mktemp("inputs")
    splits = generate_splits(**SYNTHETIC)
    for name, dataset in splits.items():
        write_letor(dataset, folder / f"{name}.txt")
    (folder / "test.scores").write_text("".join(f"{i % 7}\n" for i in range(splits["test"].n_docs)))
    config = folder / "config.json"
    config.write_text(json.dumps(_tiny_config(folder / "runs")))
    result = CliRunner().invoke(app, ["train", str(config), "--name", "trained", "--quiet"])
    assert result.exit_code == 0, result.output
    return {"folder": folder, "test": folder / "test.txt", "scores": folder / "test.scores", "config": config, "run": folder / "runs" / "trained"}


def _tiny_config(runs: Path) -> dict:
    return {
        "data": {"synthetic": SYNTHETIC},
        "model": {"name": "linear"},
        "loss": {"name": "lambdarank"},
        "training": {"epochs": 1, "batch_size": 8},
        "evaluation": {"baselines": False},
        "num_threads": 1,
        "output": {"dir": str(runs), "tensorboard": False, "plots": False},
    }


# (arguments, outputs that must not exist afterwards, relative to the output folder)
COMMANDS: Dict[str, Callable[[Dict[str, Path], Path], tuple]] = {
    "train": lambda inp, out: (["train", str(inp["config"]), "--set", f"output.dir={out / 'runs'}", "--name", "r", "--quiet"], ["runs/r/report.json"]),
    "predict": lambda inp, out: (["predict", "--run", str(inp["run"]), "--data", str(inp["test"]), "--out", str(out / "s.txt"), "--no-cache"], ["s.txt"]),
    "data convert": lambda inp, out: (["data", "convert", str(inp["test"]), str(out / "t.libsvm")], ["t.libsvm", "t.libsvm.query"]),
    "data convert cache": lambda inp, out: (["data", "convert", str(inp["test"]), str(out / "t.ltrcache")], ["t.ltrcache"]),
    "data generate": lambda inp, out: (["data", "generate", "--out", str(out / "gen"), "--train-queries", "3", "--vali-queries", "2", "--test-queries", "2", "--features", "9"], ["gen/train.txt", "gen/vali.txt", "gen/test.txt"]),
    "config init": lambda inp, out: (["config", "init", str(out / "c.yaml")], ["c.yaml"]),
}

READ_COMMANDS: Dict[str, Callable[[Dict[str, Path]], List[str]]] = {
    "predict": lambda inp: ["predict", "--run", str(inp["run"]), "--data", str(inp["test"]), "--out", "-", "--no-cache"],
    "evaluate": lambda inp: ["evaluate", "--data", str(inp["test"]), "--scores", str(inp["scores"]), "--no-cache"],
    "data stats": lambda inp: ["data", "stats", str(inp["test"]), "--no-cache"],
    "data convert": lambda inp: ["data", "convert", str(inp["test"]), str(inp["folder"] / "never.txt")],
    "config show": lambda inp: ["config", "show", str(inp["config"])],
    "train --resume": lambda inp: ["train", "--resume", str(inp["run"]), "--set", "training.epochs=2"],
}


def _assert_one_line_error(result) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


def _case_id(command: str, fault: str) -> str:
    return f"{command}: {fault}"


WRITE_CASES = [(command, fault) for command in COMMANDS for fault in WRITE_FAULTS] + [("train", "full in torch.save")]


@pytest.mark.parametrize(("command", "fault"), WRITE_CASES, ids=[_case_id(*case) for case in WRITE_CASES])
def test_write_faults(inputs, tmp_path, monkeypatch, command, fault):
    out = tmp_path / "out"
    out.mkdir()
    args, forbidden_outputs = COMMANDS[command](inputs, out)
    (WRITE_FAULTS.get(fault) or full_in_torch_save)(monkeypatch, out.resolve())
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    _assert_one_line_error(result)
    left = [name for name in forbidden_outputs if (out / name).exists()]
    assert left == [], left
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    if fault in ("read-only", "forbidden"):
        # an unwritable output folder is found before any work: nothing at all was created
        assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", list(READ_COMMANDS))
def test_unreadable_inputs(inputs, monkeypatch, command):
    args = READ_COMMANDS[command](inputs)
    root = inputs["folder"].resolve()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    unreadable(monkeypatch, root)
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    _assert_one_line_error(result)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
