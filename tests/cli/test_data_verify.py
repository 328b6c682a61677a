"""``ltrkit data verify``: OK and exit 0 for an intact cache, the problems and exit 1 for a
damaged one, one error line and exit 2 for bad input."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data.cache import cache_folder_for, load_dataset, verify_cache

CONTENT = "".join(f"{i % 3} qid:{i // 5} 1:{i / 7:.3f} 2:{i % 4} # d{i}\n" for i in range(30))


def invoke(*args: object):
    return CliRunner().invoke(app, ["data", "verify", *map(str, args)])


@pytest.fixture
def cached(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONTENT)
    load_dataset(path)
    return path, cache_folder_for(path)


def test_intact_cache_of_a_file_or_a_folder(cached):
    path, folder = cached
    for target in (path, folder):
        result = invoke(target)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"OK: {folder}\n"


def test_damaged_array_is_reported_with_exit_code_1(cached):
    path, folder = cached
    features = folder / "features.npy"
    raw = bytearray(features.read_bytes())
    raw[-3] ^= 0xFF  # a data byte: the header stays valid, the checksum does not
    features.write_bytes(bytes(raw))
    result = invoke(path)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == verify_cache(folder) != []
    assert "features.npy" in result.stdout and "OK" not in result.stdout


def test_every_problem_is_listed(cached):
    _, folder = cached
    (folder / "labels.npy").unlink()
    offsets = folder / "query_offsets.npy"
    raw = bytearray(offsets.read_bytes())
    raw[-1] ^= 0x01
    offsets.write_bytes(bytes(raw))
    result = invoke(folder)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) >= 2 and any("labels.npy" in line for line in lines) and any("query_offsets.npy" in line for line in lines)


def test_cache_dir(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONTENT)
    caches = tmp_path / "caches"
    load_dataset(path, cache_dir=caches)
    result = invoke(path, "--cache-dir", caches)
    assert result.exit_code == 0 and result.stdout == f"OK: {cache_folder_for(path, caches)}\n"
    assert invoke(path).exit_code == 2, "no cache beside the file"


def test_the_cache_written_by_convert_verifies(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONTENT)
    out = tmp_path / "converted.ltrcache"
    assert CliRunner().invoke(app, ["data", "convert", str(path), str(out), "--no-cache"]).exit_code == 0
    assert invoke(out).exit_code == 0
    np.testing.assert_array_equal(load_dataset(out).labels, load_dataset(path, cache=False).labels)


@pytest.mark.parametrize(
    "target, message",
    [
        ("{tmp}/nothing", r"^error: not found: {tmp}/nothing$"),
        ("{tmp}/plain", r"^error: {tmp}/plain is a folder that is not an ltrkit cache"),
        ("{tmp}/uncached.txt", r"^error: {tmp}/uncached.txt has no cache at {tmp}/uncached.txt.ltrcache"),
    ],
)
def test_bad_input_exits_2(tmp_path, target, message):
    (tmp_path / "plain").mkdir()
    (tmp_path / "uncached.txt").write_text(CONTENT)
    result = invoke(target.format(tmp=tmp_path))
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.search(message.format(tmp=re.escape(str(tmp_path))), lines[0]), result.stderr
    assert not (tmp_path / "uncached.txt.ltrcache").exists(), "verify writes nothing"


def test_a_copied_cache_folder_verifies_on_its_own(cached, tmp_path):
    _, folder = cached
    copy = tmp_path / "elsewhere" / "copy.ltrcache"
    shutil.copytree(folder, copy)
    assert invoke(copy).exit_code == 0
