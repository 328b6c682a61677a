"""Synthetic data written as files: the width survives the text round trip, and the splits are
written all or none."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import ltrkit.data.letor as letor
from ltrkit.data.letor import read_letor
from ltrkit.data.synthetic import generate, generate_splits, write_splits


@pytest.mark.parametrize("n_features", range(8, 140))
def test_every_width_survives_a_sparse_text_round_trip(tmp_path, n_features):
    # one document: the last column must be nonzero in every row for the file to show the width
    data = generate(1, n_features=n_features, mean_list_length=1.0, max_list_length=1, seed=n_features)
    path = tmp_path / "one.txt"
    letor.write_letor(data, path)
    assert read_letor(path).n_features == n_features


@pytest.mark.parametrize("fmt", ["letor", "libsvm"])
def test_write_splits_round_trip(tmp_path, fmt):
    splits = generate_splits(train_queries=4, vali_queries=2, test_queries=2, n_features=136, mean_list_length=5.0)
    paths = write_splits(splits, tmp_path / "out", fmt=fmt)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    # the data files and their companions (libsvm group/qid files), no temporary folder left
    assert {f"{name}.txt" for name in splits} <= names
    assert all(any(n.startswith(f"{name}.txt") for name in splits) for n in names), names
    for name, dataset in splits.items():
        back = read_letor(paths[name])
        assert back.n_features == 136
        np.testing.assert_array_equal(back.features, dataset.features)
        np.testing.assert_array_equal(back.labels, dataset.labels)


def _fail_on(call: int, real):
    calls = []

    def write(dataset, path, **kwargs):
        calls.append(path)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(dataset, path, **kwargs)

    return write


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    splits = generate_splits(train_queries=3, vali_queries=2, test_queries=2, n_features=9)
    monkeypatch.setattr(letor, "write_letor", _fail_on(2, letor.write_letor))
    with pytest.raises(OSError, match="No space left"):
        write_splits(splits, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_failed_write_keeps_the_old_files(tmp_path, monkeypatch):
    old = tmp_path / "data"
    old.mkdir()
    (old / "train.txt").write_text("old train\n")
    (old / "notes.md").write_text("mine\n")
    splits = generate_splits(train_queries=3, vali_queries=2, test_queries=2, n_features=9)
    monkeypatch.setattr(letor, "write_letor", _fail_on(3, letor.write_letor))
    with pytest.raises(OSError):
        write_splits(splits, old)
    assert sorted(p.name for p in old.iterdir()) == ["notes.md", "train.txt"]
    assert (old / "train.txt").read_text() == "old train\n"


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="fmt must be one of"):
        write_splits({}, tmp_path, fmt="csv")
