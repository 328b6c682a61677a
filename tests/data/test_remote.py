"""fsspec URLs as data paths, on fsspec's in-memory file system (no network)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")

from ltrkit.data.cache import load_dataset  # noqa: E402
from ltrkit.data.remote import fetch, is_url  # noqa: E402
from ltrkit.data.synthetic import generate, write_splits  # noqa: E402


@pytest.fixture
def bucket():
    name = f"/bucket-{uuid.uuid4().hex}"
    memory = fsspec.filesystem("memory")
    yield memory, name
    memory.rm(name, recursive=True)


def put(memory, path, local):
    memory.pipe(path, local.read_bytes())


def test_a_url_reads_like_its_local_file_and_is_cached_once(tmp_path, bucket):
    memory, name = bucket
    local = write_splits({"train": generate(20, n_features=8, seed=1)}, tmp_path / "files")["train"]
    put(memory, f"{name}/train.txt", local)
    url = f"memory://{name}/train.txt"
    remote = load_dataset(url, cache_dir=tmp_path / "cache")
    expected = load_dataset(local, cache=False)
    np.testing.assert_array_equal(remote.features, expected.features)
    np.testing.assert_array_equal(remote.labels, expected.labels)
    assert list(remote.qids) == list(expected.qids)
    # the second read maps the binary cache of the fetched copy
    again = load_dataset(url, cache_dir=tmp_path / "cache")
    assert isinstance(again.features, np.memmap)
    assert fetch(url, tmp_path / "cache") == fetch(url, tmp_path / "cache")


def test_a_new_version_of_the_remote_file_is_fetched_again(tmp_path, bucket):
    memory, name = bucket
    files = write_splits({"train": generate(10, n_features=8, seed=1), "vali": generate(12, n_features=8, seed=2)}, tmp_path / "files")
    url = f"memory://{name}/data.txt"
    put(memory, f"{name}/data.txt", files["train"])
    first = load_dataset(url, cache_dir=tmp_path / "cache")
    put(memory, f"{name}/data.txt", files["vali"])
    second = load_dataset(url, cache_dir=tmp_path / "cache")
    assert (first.n_queries, second.n_queries) == (10, 12)


def test_bad_urls(tmp_path, bucket):
    memory, name = bucket
    with pytest.raises(FileNotFoundError, match=rf"memory://{name}/missing.txt: no such file"):
        load_dataset(f"memory://{name}/missing.txt", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="nosuch://x/y.txt: Protocol not known: nosuch"):
        load_dataset("nosuch://x/y.txt", cache_dir=tmp_path)
    memory.pipe(f"{name}/folder/a.txt", b"0 qid:1 1:1\n")
    with pytest.raises(ValueError, match="is a folder"):
        fetch(f"memory://{name}/folder", tmp_path)
    assert is_url("s3://b/k") and not is_url("runs/x") and not is_url(tmp_path)


def test_a_training_config_may_name_urls(tmp_path, bucket):
    from ltrkit.training.config import load_config
    from ltrkit.training.data_setup import prepare_data
    from tests.training.conftest import tiny_config

    memory, name = bucket
    local = write_splits({"train": generate(20, n_features=8, seed=1)}, tmp_path / "files")["train"]
    put(memory, f"{name}/train.txt", local)
    data = {"train": f"memory://{name}/train.txt", "vali_fraction": 0.2, "cache_dir": str(tmp_path / "cache")}
    prepared = prepare_data(load_config(tiny_config(tmp_path / "runs", data=data)))
    assert prepared.train.n_queries + prepared.vali.n_queries == 20
