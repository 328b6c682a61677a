"""Hardening of the binary cache and the atomic writer: a source replaced during the parse, edits
that keep size and mtime, corrupt array files, unreadable caches, file modes under a umask, and
stale temporaries of killed writers."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ltrkit import _atomic
from ltrkit.data import cache as cache_module
from ltrkit.data.cache import (
    CacheError,
    cache_folder_for,
    load_cache,
    load_dataset,
    save_cache,
    verify_cache,
)
from ltrkit.data.letor import LetorFormatError, read_letor, write_letor
from ltrkit.metrics.trec import write_qrels
from ltrkit.training import _io

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
LGB = DATA / "lightgbm-rank"


def same_data(a, b) -> bool:
    return (
        np.array_equal(np.asarray(a.features).view(np.uint32), np.asarray(b.features).view(np.uint32))
        and np.array_equal(np.asarray(a.labels), np.asarray(b.labels))
        and np.array_equal(np.asarray(a.query_offsets), np.asarray(b.query_offsets))
        and np.asarray(a.qids).tolist() == np.asarray(b.qids).tolist()
    )


def spy_parses(monkeypatch, after_parse=None) -> list:
    """Count the parses of ``load_dataset``; ``after_parse(call_number)`` runs after each."""
    calls = []
    real = cache_module._read_letor

    def parse(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(args[0])
        if after_parse is not None:
            after_parse(len(calls))
        return result

    monkeypatch.setattr(cache_module, "_read_letor", parse)
    return calls


def replace_atomically(path: Path, content: bytes) -> None:
    new = path.with_name(path.name + ".new")
    new.write_bytes(content)
    os.replace(new, path)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "test.txt"
    shutil.copyfile(LGB / "test.txt", path)
    return path


# 1. A source replaced during the parse.


def test_source_replaced_during_the_parse_is_parsed_again(small, monkeypatch):
    old = small.read_bytes()
    new = old + b"3 qid:7777 1:0.25\n"
    replaced = small.with_name("new.txt")
    replaced.write_bytes(new)
    expected = read_letor(replaced)
    parses = spy_parses(monkeypatch, lambda n: replace_atomically(small, new) if n == 1 else None)
    first = load_dataset(small)
    assert len(parses) == 2 and same_data(first, expected)
    second = load_dataset(small)
    assert len(parses) == 2 and isinstance(second.features, np.memmap)
    assert same_data(second, expected)


def test_group_file_replaced_during_the_parse_is_parsed_again(tmp_path, monkeypatch):
    data, group = tmp_path / "rank.test", tmp_path / "rank.test.query"
    shutil.copyfile(LGB / "rank.test", data)
    shutil.copyfile(LGB / "rank.test.query", group)
    sizes = group.read_text().split()
    merged = ("\n".join([str(int(sizes[0]) + int(sizes[1]))] + sizes[2:]) + "\n").encode()
    parses = spy_parses(monkeypatch, lambda n: replace_atomically(group, merged) if n == 1 else None)
    assert load_dataset(data).n_queries == len(sizes) - 1 and len(parses) == 2
    assert load_dataset(data).n_queries == len(sizes) - 1 and len(parses) == 2


def test_qid_file_appearing_or_changing_makes_the_cache_stale(tmp_path, monkeypatch):
    data, group = tmp_path / "rank.test", tmp_path / "rank.test.query"
    shutil.copyfile(LGB / "rank.test", data)
    shutil.copyfile(LGB / "rank.test.query", group)
    n_queries = len(group.read_text().split())
    parses = spy_parses(monkeypatch)
    assert load_dataset(data).qids.tolist() == [str(i) for i in range(n_queries)]
    qid_file = Path(str(data) + ".qid")
    qid_file.write_text("".join(f"q{i}\n" for i in range(n_queries)))
    assert load_dataset(data).qids.tolist() == [f"q{i}" for i in range(n_queries)] and len(parses) == 2
    assert load_dataset(data).qids.tolist()[0] == "q0" and len(parses) == 2, "an unchanged qid file is a cache hit"
    qid_file.write_text("".join(f"r{i}\n" for i in range(n_queries)))
    assert load_dataset(data).qids.tolist()[0] == "r0" and len(parses) == 3
    qid_file.unlink()
    assert load_dataset(data).qids.tolist()[0] == "0" and len(parses) == 4


def test_source_changing_during_every_parse_raises_and_writes_no_cache(small, monkeypatch):
    content = small.read_bytes()
    spy_parses(monkeypatch, lambda n: replace_atomically(small, content + b"1 qid:9 1:0.5\n" * n))
    with pytest.raises(LetorFormatError, match=r"test\.txt: changed while reading, try again"):
        load_dataset(small)
    assert not cache_folder_for(small).exists()


def test_missing_value_option_keys_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "null.txt"
    path.write_text("1 qid:1 1:NULL 2:3\n0 qid:1 1:0.5 2:1\n2 qid:2 1:0.25 2:NaN\n")
    parses = spy_parses(monkeypatch)
    # One cache per file: a repeat is a hit, a switch of option parses again.
    for missing, expected_parses in [("zero", 1), ("zero", 1), ("min", 2), ("min", 2), ("zero", 3)]:
        loaded = load_dataset(path, missing=missing)
        np.testing.assert_array_equal(np.asarray(loaded.features), read_letor(path, missing=missing).features)
        assert len(parses) == expected_parses, missing


# 2. A same-size edit in the middle of a large file with its mtime restored.


def big_file(path: Path) -> Path:
    line = b"0 qid:%d 1:0.5 2:0.25 3:0.125\n"
    lines = [line % (i // 10) for i in range(330_000)]  # about 9.5 MiB, above the whole-file hash limit
    path.write_bytes(b"".join(lines))
    assert path.stat().st_size > cache_module._HASH_WHOLE
    return path


def middle_line_start(data: bytes) -> int:
    return data.rindex(b"\n", 0, len(data) // 2) + 1


def test_same_size_edit_in_the_middle_of_a_large_file_with_restored_mtime(tmp_path, monkeypatch):
    path = big_file(tmp_path / "big.txt")
    parses = spy_parses(monkeypatch)
    load_dataset(path)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    row = data[: middle_line_start(data)].count(b"\n")
    data[middle_line_start(data)] = ord("4")  # label 0 -> 4, same size
    with open(path, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_ino == stat.st_ino and path.stat().st_size == stat.st_size
    assert load_dataset(path).labels[row] == 4 and len(parses) == 2


def test_sampled_hash_covers_the_middle_of_a_large_file(tmp_path):
    # Independently of the inode and times: two files differing only at their middle byte.
    a = big_file(tmp_path / "a.txt")
    data = bytearray(a.read_bytes())
    data[middle_line_start(data)] = ord("4")
    b = tmp_path / "b.txt"
    b.write_bytes(bytes(data))
    assert cache_module._fingerprint(a)["hash"] != cache_module._fingerprint(b)["hash"]


# 3. Checksums, cheap checks on every load, verify.


def test_manifest_records_size_and_blake2b_of_each_array_file(small):
    load_dataset(small)
    folder = cache_folder_for(small)
    arrays = json.loads((folder / "manifest.json").read_text())["arrays"]
    assert sorted(arrays) == ["features", "labels", "qids", "query_offsets"]
    for name, meta in arrays.items():
        content = (folder / f"{name}.npy").read_bytes()
        assert meta["nbytes"] == len(content)
        assert meta["blake2b"] == hashlib.blake2b(content, digest_size=16).hexdigest()
        assert meta["shape"] == list(np.load(folder / f"{name}.npy").shape)
    assert verify_cache(folder) == []


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "features.npy").write_bytes(b""), r"features\.npy: 0 bytes, manifest\.json says \d+"),
        (
            lambda f: (f / "labels.npy").write_bytes((f / "labels.npy").read_bytes()[:-4]),
            r"labels\.npy: \d+ bytes, manifest\.json says \d+",
        ),
        (lambda f: (f / "qids.npy").write_bytes(b"x" * (f / "qids.npy").stat().st_size), r"qids\.npy: cannot load"),
    ],
    ids=["empty", "truncated", "same-size-garbage-header"],
)
def test_cheap_checks_rebuild_a_damaged_cache_with_a_warning(small, monkeypatch, damage, message):
    parses = spy_parses(monkeypatch)
    expected = load_dataset(small)
    folder = cache_folder_for(small)
    damage(folder)
    with pytest.raises(CacheError, match=message):
        load_cache(folder)
    with pytest.warns(RuntimeWarning, match="damaged cache, rebuilding it from .*test\\.txt: .*" + message):
        assert same_data(load_dataset(small), expected)
    assert len(parses) == 2 and verify_cache(folder) == []


def test_corrupt_array_data_is_caught_by_verify(small, monkeypatch):
    parses = spy_parses(monkeypatch)
    expected = load_dataset(small)
    folder = cache_folder_for(small)
    flip_middle_byte(folder / "features.npy")
    assert verify_cache(folder) == [f"{folder}/features.npy: BLAKE2b checksum differs from manifest.json (the file is corrupt)"]
    with pytest.raises(CacheError, match=r"features\.npy: BLAKE2b checksum differs"):
        load_cache(folder, verify=True)
    with pytest.raises(CacheError, match=r"features\.npy: BLAKE2b checksum differs"):
        load_dataset(folder, verify=True)
    # The cheap per-load checks read no array data: the flip goes through without verify.
    assert not same_data(load_dataset(small), expected) and len(parses) == 1
    with pytest.warns(RuntimeWarning, match=r"damaged cache.*features\.npy: BLAKE2b checksum differs"):
        assert same_data(load_dataset(small, verify=True), expected)
    assert len(parses) == 2 and verify_cache(folder) == []
    assert same_data(load_dataset(small, verify=True), expected) and len(parses) == 2


def test_verify_cache_reports_every_problem(small):
    load_dataset(small)
    folder = cache_folder_for(small)
    flip_middle_byte(folder / "features.npy")
    (folder / "qids.npy").unlink()
    problems = verify_cache(folder)
    assert len(problems) == 2
    assert problems[0].startswith(f"{folder}/features.npy: BLAKE2b checksum differs")
    assert problems[1] == f"{folder}/qids.npy: cannot load (file missing)"
    (folder / "manifest.json").write_text("{not json")
    assert len(verify_cache(folder)) == 1 and "unreadable manifest" in verify_cache(folder)[0]


# 4. Modes: 0o666 / 0o777 less the umask, like any other tool.


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_written_files_and_cache_folders_honour_the_umask(tmp_path, small, umask):
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    load_dataset(small, cache_dir=tmp_path / "caches")
    folder = cache_folder_for(small, tmp_path / "caches")
    assert folder.stat().st_mode & 0o777 == folder_mode
    assert (tmp_path / "caches").stat().st_mode & 0o777 == folder_mode
    for entry in folder.iterdir():
        assert entry.stat().st_mode & 0o777 == file_mode, entry.name
    _io.write_json(tmp_path / "run" / "report.json", {"a": 1})
    _io.torch_save(tmp_path / "run" / "last.pt", {"a": 1})
    dataset = read_letor(small)
    write_qrels(tmp_path / "run" / "test.qrels", dataset)
    write_letor(dataset, tmp_path / "run" / "test.txt")
    for name in ("report.json", "last.pt", "test.qrels", "test.txt"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == file_mode, name


# 5. A cache this user cannot read.


def refuse(monkeypatch, blocked: Path) -> None:
    """Make the cache module's ``open`` and ``np.load`` refuse ``blocked`` the way a 0600 file of
    another user would (tests run as root here, where permissions are not enforced)."""
    real_open, real_load = builtins.open, np.load

    def guard(file):
        if Path(file) == blocked:
            raise PermissionError(13, "Permission denied", str(file))

    def fake_open(file, *args, **kwargs):
        guard(file)
        return real_open(file, *args, **kwargs)

    def fake_load(file, *args, **kwargs):
        guard(file)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(cache_module, "open", fake_open, raising=False)
    monkeypatch.setattr(np, "load", fake_load)


@pytest.mark.parametrize("blocked", ["manifest.json", "labels.npy"])
def test_unreadable_cache_falls_back_to_the_parse_with_a_warning(small, monkeypatch, blocked):
    parses = spy_parses(monkeypatch)
    expected = load_dataset(small)
    folder = cache_folder_for(small)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    refuse(monkeypatch, folder / blocked)
    with pytest.warns(RuntimeWarning, match=rf"cannot read the cache .*test\.txt\.ltrcache .*{blocked}.*cache_dir="):
        assert same_data(load_dataset(small), expected)
    assert len(parses) == 2
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # left alone
    with pytest.raises(PermissionError):
        load_cache(folder)
    assert any(blocked in problem and "cannot read" in problem for problem in verify_cache(folder))


# 6. Stale temporaries of killed writers.


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def temporary(folder: Path, target: str, pid: int, *, host: str = _atomic.HOST_TAG, age: float = 0.0,
              is_folder: bool = False) -> Path:
    path = folder / f".{target}.{pid}.{host}.{secrets.token_hex(4)}.tmp"
    if is_folder:
        path.mkdir()
        (path / "features.npy").write_bytes(b"x")
        os.utime(path / "features.npy", (time.time() - age,) * 2)
    else:
        path.write_bytes(b"x")
    os.utime(path, (time.time() - age,) * 2)
    return path


def test_stale_temporaries_are_removed_on_the_next_write(tmp_path, small):
    folder = small.parent
    other_host = "ffffff" if _atomic.HOST_TAG != "ffffff" else "eeeeee"
    dead, old = dead_pid(), _atomic.STALE_AFTER + 60
    stale = [
        temporary(folder, "report.json", dead),  # fresh, but its process is gone
        temporary(folder, "test.txt.ltrcache", dead, is_folder=True),
        temporary(folder, "report.json", os.getpid(), age=old),  # alive (or a reused pid) but too old
        temporary(folder, "report.json", dead, host=other_host, age=old),
    ]
    kept = [
        temporary(folder, "report.json", os.getpid()),  # a live writer
        temporary(folder, "test.txt.ltrcache", os.getpid(), is_folder=True),
        temporary(folder, "report.json", dead, host=other_host),  # fresh, from a pid we cannot check
        folder / ".notes.tmp",  # not an ltrkit temporary name
    ]
    kept[-1].write_text("mine")
    os.utime(kept[-1], (time.time() - old,) * 2)
    _io.write_json(folder / "report.json", {"a": 1})
    assert [p.exists() for p in stale] == [False] * len(stale)
    assert [p.exists() for p in kept] == [True] * len(kept)
    # The cache folder writer cleans too.
    again = temporary(folder, "test.txt.ltrcache", dead, is_folder=True)
    load_dataset(small)
    assert not again.exists() and kept[1].exists()


def test_a_live_writer_of_a_large_folder_is_not_taken_for_stale(tmp_path):
    # The folder's own mtime is old, but the file it is writing moved recently.
    path = temporary(tmp_path, "x.ltrcache", dead_pid(), host="ffffff" if _atomic.HOST_TAG != "ffffff" else "eeeeee",
                     age=_atomic.STALE_AFTER + 60, is_folder=True)
    os.utime(path / "features.npy")
    os.utime(path, (time.time() - _atomic.STALE_AFTER - 60,) * 2)
    _atomic.clean_stale_temporaries(tmp_path)
    assert path.exists()


def test_temporary_names_embed_the_writer_pid(tmp_path):
    seen = []
    with _atomic.atomic_path(tmp_path / "out.txt") as name:
        seen.append(name.name)
    with _atomic.atomic_folder(tmp_path / "out.ltrcache") as name:
        seen.append(name.name)
    pattern = rf"\.out\.(txt|ltrcache)\.{os.getpid()}\.{_atomic.HOST_TAG}\.[0-9a-f]{{8}}\.tmp"
    assert all(re.fullmatch(pattern, n) for n in seen), seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ltrcache", "out.txt"]


def test_atomic_folder_failure_leaves_the_old_folder(tmp_path):
    ds = read_letor(LGB / "test.txt")
    folder = tmp_path / "c"
    save_cache(ds, folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(KeyboardInterrupt):
        with _atomic.atomic_folder(folder) as tmp:
            (tmp / "half").write_bytes(b"x")
            raise KeyboardInterrupt
    assert sorted(p.name for p in folder.iterdir()) == before and verify_cache(folder) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
