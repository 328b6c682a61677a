"""Tests of the binary cache: hits are memory maps equal to the parse, stale caches are rebuilt."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from ltrkit.data import cache as cache_module
from ltrkit.data.cache import CacheError, cache_folder_for, load_cache, load_dataset, save_cache
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import LetorFormatError, read_letor

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MQ_TRAIN = DATA / "mq2008" / "Fold1" / "train.txt"
LGB = DATA / "lightgbm-rank"


def assert_equal_datasets(a: RankingDataset, b: RankingDataset) -> None:
    np.testing.assert_array_equal(np.asarray(a.features).view(np.uint32), np.asarray(b.features).view(np.uint32))
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    np.testing.assert_array_equal(np.asarray(a.query_offsets), np.asarray(b.query_offsets))
    assert np.asarray(a.qids).tolist() == np.asarray(b.qids).tolist()
    if a.doc_ids is None or b.doc_ids is None:
        assert a.doc_ids is None and b.doc_ids is None
    else:
        assert np.asarray(a.doc_ids).tolist() == np.asarray(b.doc_ids).tolist()


@pytest.fixture
def mq_copy(tmp_path: Path) -> Path:
    path = tmp_path / "train.txt"
    shutil.copy(MQ_TRAIN, path)
    return path


def spy_parses(monkeypatch) -> list:
    calls = []
    real = cache_module._read_letor

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "_read_letor", counting)
    return calls


def test_cache_hit_is_memory_mapped_and_equal_to_the_parse(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    first = load_dataset(mq_copy)
    folder = mq_copy.with_name("train.txt.ltrcache")
    assert folder.is_dir() and len(parses) == 1
    second = load_dataset(mq_copy)
    assert len(parses) == 1
    for name in ("features", "labels", "query_offsets", "qids", "doc_ids"):
        assert isinstance(getattr(second, name), np.memmap), name
        assert not getattr(second, name).flags.writeable
    assert_equal_datasets(second, first)
    assert_equal_datasets(second, read_letor(MQ_TRAIN))
    assert second.source == str(mq_copy)
    # A cache folder given directly loads too.
    assert_equal_datasets(load_dataset(folder), first)


def test_cache_false_neither_reads_nor_writes(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    load_dataset(mq_copy, cache=False)
    assert not mq_copy.with_name("train.txt.ltrcache").exists()
    load_dataset(mq_copy)
    assert len(parses) == 2
    assert not isinstance(load_dataset(mq_copy, cache=False).features, np.memmap)
    assert len(parses) == 3


def test_changed_source_invalidates_the_cache(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    before = load_dataset(mq_copy)
    with open(mq_copy, "a") as f:
        f.write("2 qid:99999 1:0.5\n")
    after = load_dataset(mq_copy)
    assert len(parses) == 2 and after.n_docs == before.n_docs + 1 and after.qids[-1] == "99999"
    assert_equal_datasets(load_dataset(mq_copy), after)
    assert len(parses) == 2


def test_same_size_edit_with_restored_mtime_is_caught_by_the_hash(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    load_dataset(mq_copy)
    stat = mq_copy.stat()
    data = bytearray(mq_copy.read_bytes())
    data[0:1] = b"2"  # first label 0 -> 2, same size
    mq_copy.write_bytes(bytes(data))
    os.utime(mq_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_dataset(mq_copy).labels[0] == 2
    assert len(parses) == 2


def test_touched_source_is_reparsed(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    load_dataset(mq_copy)
    stat = mq_copy.stat()
    os.utime(mq_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset(mq_copy)
    assert len(parses) == 2


def test_other_read_options_reparse(mq_copy, monkeypatch):
    parses = spy_parses(monkeypatch)
    assert load_dataset(mq_copy).n_features == 46
    wide = load_dataset(mq_copy, n_features=50)
    assert wide.n_features == 50 and len(parses) == 2
    assert load_dataset(mq_copy, n_features=50, n_threads=1).n_features == 50
    assert len(parses) == 2  # n_threads does not change the result
    assert load_dataset(mq_copy).n_features == 46 and len(parses) == 3


def test_group_file_change_invalidates_the_cache(tmp_path, monkeypatch):
    parses = spy_parses(monkeypatch)
    data = tmp_path / "rank.train"
    shutil.copy(LGB / "rank.train", data)
    shutil.copy(LGB / "rank.train.query", tmp_path / "rank.train.query")
    first = load_dataset(data)
    sizes = (tmp_path / "rank.train.query").read_text().split()
    merged = [str(int(sizes[0]) + int(sizes[1]))] + sizes[2:]
    (tmp_path / "rank.train.query").write_text("\n".join(merged) + "\n")
    second = load_dataset(data)
    assert len(parses) == 2 and second.n_queries == first.n_queries - 1


def test_no_cache_after_a_parse_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 qid:1 1:0.5\n1 qid:1 1:oops\n")
    with pytest.raises(LetorFormatError, match=r"bad\.txt, line 2"):
        load_dataset(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


@pytest.mark.parametrize(
    "damage, damaged",
    [
        (lambda folder: (folder / "features.npy").unlink(), True),
        (lambda folder: (folder / "features.npy").write_bytes(b""), True),
        (lambda folder: (folder / "manifest.json").write_text("{not json"), True),
        (lambda folder: (folder / "labels.npy").write_bytes(b"garbage"), True),
        (lambda folder: np.save(folder / "labels.npy", np.zeros(3, dtype=np.float32)), True),
        (
            lambda folder: (folder / "manifest.json").write_text(
                json.dumps({**json.loads((folder / "manifest.json").read_text()), "format_version": 999})
            ),
            False,
        ),
    ],
    ids=["missing-array", "empty-array", "bad-manifest", "corrupt-array", "wrong-shape", "other-version"],
)
def test_damaged_cache_is_rebuilt(mq_copy, monkeypatch, damage, damaged):
    parses = spy_parses(monkeypatch)
    expected = load_dataset(mq_copy)
    folder = cache_folder_for(mq_copy)
    damage(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_equal_datasets(load_dataset(mq_copy), expected)
    # Damage is reported; a cache of another format version is only stale.
    assert [str(w.message).startswith("damaged cache, rebuilding it from") for w in caught] == ([True] if damaged else [])
    assert len(parses) == 2
    assert isinstance(load_dataset(mq_copy).features, np.memmap) and len(parses) == 2


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / "manifest.json").unlink(), r"not a cache folder \(no manifest\.json\)"),
        (lambda folder: (folder / "qids.npy").unlink(), r"qids\.npy: cannot load"),
        (
            lambda folder: (folder / "manifest.json").write_text(json.dumps({"format_version": 0})),
            rf"cache format version 0, this ltrkit reads version {cache_module.FORMAT_VERSION}",
        ),
        # Half as many float64 labels: the same file size, so only the header check sees it.
        (lambda folder: np.save(folder / "labels.npy", np.zeros(384, dtype=np.float64)), r"labels\.npy: shape \(384,\) dtype <f8"),
        (lambda folder: (folder / "features.npy").write_bytes(b""), r"features\.npy: 0 bytes, manifest\.json says \d+"),
    ],
)
def test_load_cache_errors(tmp_path, damage, message):
    ds = read_letor(LGB / "test.txt")
    folder = tmp_path / "c"
    save_cache(ds, folder)
    damage(folder)
    with pytest.raises(CacheError, match=message):
        load_cache(folder)


def test_save_and_load_cache_round_trip_without_and_with_doc_ids(tmp_path):
    for source in (LGB / "test.txt", MQ_TRAIN):
        ds = read_letor(source)
        folder = tmp_path / source.name
        save_cache(ds, folder, manifest_extra={"note": "x"})
        assert json.loads((folder / "manifest.json").read_text())["note"] == "x"
        for mmap in (True, False):
            back = load_cache(folder, mmap=mmap)
            assert isinstance(back.features, np.memmap) == mmap
            assert_equal_datasets(back, ds)
        # Saving again replaces the folder atomically and leaves no temporary folders.
        save_cache(ds, folder)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_cache_dir_keeps_same_named_files_apart(tmp_path):
    a, b = tmp_path / "a" / "train.txt", tmp_path / "b" / "train.txt"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copy(LGB / "train.txt", a)
    shutil.copy(LGB / "test.txt", b)
    caches = tmp_path / "caches"
    assert cache_folder_for(a, caches) != cache_folder_for(b, caches)
    assert cache_folder_for(a, caches).parent == caches
    da, db = load_dataset(a, cache_dir=caches), load_dataset(b, cache_dir=caches)
    assert len(list(caches.iterdir())) == 2
    assert_equal_datasets(load_dataset(a, cache_dir=caches), da)
    assert_equal_datasets(load_dataset(b, cache_dir=caches), db)
    assert not (a.parent / "train.txt.ltrcache").exists()


def test_unwritable_cache_location_warns_and_returns_the_parse(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module, "save_cache", refuse)
    path = tmp_path / "t.txt"
    shutil.copy(LGB / "test.txt", path)
    with pytest.warns(RuntimeWarning, match=r"could not write the cache .*t\.txt\.ltrcache.*cache_dir="):
        ds = load_dataset(path)
    assert ds.n_docs == 768 and not (tmp_path / "t.txt.ltrcache").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    path = tmp_path / "t.txt"
    shutil.copy(LGB / "test.txt", path)
    tmp_path.chmod(0o555)
    try:
        with pytest.warns(RuntimeWarning, match="could not write the cache"):
            load_dataset(path)
    finally:
        tmp_path.chmod(0o755)


def test_unknown_read_option(tmp_path):
    with pytest.raises(TypeError, match=r"unknown read option\(s\) \['indexbase'\]; allowed: \['index_base'"):
        load_dataset(tmp_path / "x.txt", indexbase=1)
