"""Faults of a training run found early and reported as one clear error: bad labels, bad run
names, unwritable or full output folders, unreadable checkpoints (resume and predict), devices;
and the run's train.log."""

from __future__ import annotations

import errno
import json
import re
import tempfile

import numpy as np
import pytest
import torch

import ltrkit.training.trainer as trainer
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import write_letor
from ltrkit.data.synthetic import generate_splits
from ltrkit.training import ConfigError, Ranker, resume, train
from ltrkit.training.checkpoint import load_checkpoint, save_checkpoint
from ltrkit.training.run_folder import OutputError
from ltrkit.training.trainer import resolve_device


def _splits(seed: int = 2) -> dict:
    return generate_splits(train_queries=20, vali_queries=5, test_queries=5, n_features=9, mean_list_length=8.0, seed=seed)


def _with_label(dataset: RankingDataset, row: int, value: float) -> RankingDataset:
    labels = dataset.labels.copy()
    labels[row] = value
    return RankingDataset(dataset.features, labels, dataset.query_offsets, dataset.qids, source=dataset.source)


def _qid_of(dataset: RankingDataset, row: int) -> str:
    # straight from the offsets: the query whose range holds the row
    for query in range(dataset.n_queries):
        if dataset.query_offsets[query] <= row < dataset.query_offsets[query + 1]:
            return str(dataset.qids[query])
    raise AssertionError(row)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("split", "value", "rule"),
    [
        ("train", -1.0, "labels are graded relevance and must be >= 0"),
        ("vali", -0.5, "labels are graded relevance and must be >= 0"),
        ("test", 1e30, r"labels are out of range: 2\*\*label overflows float32 in the exp2 gain of ndcg@1, .*loss lambdarank"),
    ],
)
def test_bad_labels_in_a_file_are_named_with_file_row_and_qid(tmp_path, make_tiny, split, value, rule):
    splits = _splits()
    row = 7
    splits[split] = _with_label(splits[split], row, value)
    paths = {}
    for name, dataset in splits.items():
        paths[name] = str(tmp_path / f"{name}.txt")
        write_letor(dataset, paths[name])
    qid = _qid_of(splits[split], row)
    match = rf"data\.{split}: .*{split}\.txt: row {row + 1} \(qid {qid}\) has label {re.escape(f'{value:g}')}; {rule}"
    with pytest.raises(ConfigError, match=match):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}))
    assert not (tmp_path / "runs" / "tiny").exists()


def test_non_finite_labels_of_in_memory_data(tmp_path, make_tiny):
    splits = _splits()
    splits["train"] = _with_label(_with_label(splits["train"], 3, float("nan")), 5, float("inf"))
    with pytest.raises(ConfigError, match=r"datasets\['train'\]: .* row 4 \(qid \d+\) has label nan \(and 1 more row\(s\)\); labels must be finite"):
        train(make_tiny(tmp_path / "runs"), datasets=splits)


def test_the_exp2_limit_follows_the_gain_in_use(tmp_path, make_tiny):
    splits = _splits()
    longest = int(splits["test"].list_lengths.max())
    big = np.float32(128.0 - np.log2(longest) + 0.01)
    # the gains of the longest list, summed in float32 as the metrics do, overflow at this label
    gains = torch.pow(2.0, torch.full((longest,), float(big))) - 1.0
    assert not torch.isfinite(gains.sum()) and bool(torch.isfinite(gains).all())
    splits["test"] = _with_label(splits["test"], int(splits["test"].query_offsets[np.argmax(splits["test"].list_lengths)]), big)
    with pytest.raises(ConfigError, match=r"labels are out of range: 2\*\*label overflows float32 .*; labels must be below"):
        train(make_tiny(tmp_path / "runs"), datasets=splits)
    # linear gains everywhere (NDCG and MAP, a linear-gain loss): the same labels are accepted
    config = make_tiny(
        tmp_path / "runs",
        evaluation={"metrics": ["ndcg@10", "map"], "gain": "linear", "baselines": False},
        loss={"name": "lambdarank", "args": {"gain": "linear"}},
    )
    assert train(config, datasets=splits, training={"epochs": 1}).best_epoch == 1


# --------------------------------------------------------------------------- run names


@pytest.mark.parametrize("name", ["my run", "a\nb", "tab\there", "a/b", "..", ".hidden", "-x", "semi;colon", "x" * 256])
def test_bad_run_names_fail_before_anything_is_read(tmp_path, make_tiny, name):
    with pytest.raises(ConfigError, match=r"output\.name: (must be a plain folder name|is 256 bytes)"):
        train(make_tiny(tmp_path / "runs", output={"dir": str(tmp_path / "runs"), "name": name}))
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- outputs


def test_read_only_output_dir_fails_before_the_data_is_read(tmp_path, make_tiny, monkeypatch):
    read = []
    monkeypatch.setattr(trainer, "prepare_data", lambda *args, **kwargs: read.append(1))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=r"^read-only file system writing .*runs$") as info:
        train(make_tiny(tmp_path / "runs"))
    assert info.value.errno == errno.EROFS and read == []


def test_torch_save_on_a_full_disk(tmp_path, make_tiny, monkeypatch):
    def full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OutputError, match=r"^no space left on device writing .*tiny/checkpoints/best\.pt$") as info:
        train(make_tiny(tmp_path / "runs"))
    assert info.value.errno == errno.ENOSPC
    run = tmp_path / "runs" / "tiny"
    assert not (run / "report.json").exists() and not (run / "checkpoints" / "best.pt").exists()
    assert not list(run.rglob("*.tmp"))


def test_full_disk_at_the_report_leaves_no_report_json(tmp_path, make_tiny, monkeypatch):
    import os

    real_replace = os.replace

    def replace(source, target):
        if str(target).endswith("report.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match=r"no space left on device writing .*report\.json"):
        train(make_tiny(tmp_path / "runs"), training={"epochs": 1})
    run = tmp_path / "runs" / "tiny"
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "report.json").exists()
    assert not list(run.rglob("*.tmp"))


def test_an_unrelated_runtime_error_is_not_disguised(tmp_path, make_tiny, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("some bug")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="^some bug$"):
        train(make_tiny(tmp_path / "runs"), training={"epochs": 1})


# --------------------------------------------------------------------------- checkpoints


class _Foreign:
    """An object weights_only refuses to unpickle."""


def _damage(kind: str, path) -> None:
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "refused":
        state = load_checkpoint(path)
        state["extra"] = _Foreign()
        torch.save(state, path)
    elif kind == "incomplete":
        state = load_checkpoint(path)
        del state["optimizer"]
        torch.save(state, path)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("garbage", "is corrupt or truncated, not a readable checkpoint"),
        ("truncated", "is corrupt or truncated, not a readable checkpoint"),
        ("refused", r"was refused by torch\.load\(weights_only=True\): it holds an object of .*_Foreign"),
        ("incomplete", r"is an incomplete ltrkit checkpoint: it lacks \['optimizer'\]"),
    ],
)
def test_resume_from_a_damaged_last_checkpoint(tmp_path, make_tiny, kind, match):
    run = train(make_tiny(tmp_path / "runs"), training={"epochs": 1}).run_dir
    _damage(kind, run / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError, match=rf"last\.pt' {match}.*cannot resume from it") as info:
        resume(run, training__epochs=2)
    assert info.value.source == "--resume"


def test_resume_from_a_checkpoint_of_other_shapes(tmp_path, make_tiny):
    run = train(make_tiny(tmp_path / "runs"), training={"epochs": 1}).run_dir
    path = run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["model"] = {key: torch.zeros(3, 3) for key in state["model"]}
    save_checkpoint(path, {key: value for key, value in state.items() if key != "format"})
    with pytest.raises(ConfigError, match=r"last\.pt' does not match the run's model and optimiser: .*size mismatch"):
        resume(run, training__epochs=2)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda state: state["config"]["model"].update(name="nope"), r"best\.pt' names model 'nope' .* cannot be built: .*unknown model"),
        (lambda state: state["config"]["model"]["args"].update(bogus=1), r"best\.pt' names model 'mlp' .* cannot be built"),
        (lambda state: state.update(model={key: torch.zeros(2, 2) for key in state["model"]}), r"best\.pt' does not fit its model 'mlp'"),
        (lambda state: state["config"].update(seed="x"), r"best\.pt' holds an invalid config"),
        (lambda state: state.pop("n_features"), r"best\.pt' is an incomplete ltrkit checkpoint: it lacks \['n_features'\]"),
    ],
)
def test_predict_from_a_checkpoint_that_does_not_fit_its_config(tmp_path, make_tiny, change, match):
    run = train(make_tiny(tmp_path / "runs"), training={"epochs": 1}).run_dir
    path = run / "checkpoints" / "best.pt"
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, {key: value for key, value in state.items() if key != "format"})
    with pytest.raises(ConfigError, match=match):
        Ranker.load(run)


# --------------------------------------------------------------------------- devices and the log


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "CPU", ""])
def test_bad_device_names(name):
    with pytest.raises(ConfigError, match=r"device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_predict_on_a_missing_gpu(tmp_path, make_tiny):
    run = train(make_tiny(tmp_path / "runs"), training={"epochs": 1}).run_dir
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        Ranker.load(run, device="cuda")
    assert Ranker.load(run, device="auto").device == torch.device("cpu")


def test_train_log_has_the_messages_and_one_line_per_epoch(tmp_path, make_tiny):
    result = train(make_tiny(tmp_path / "runs"), training={"epochs": 2})
    lines = (result.run_dir / "train.log").read_text().splitlines()
    assert lines[0].startswith("training mlp with lambdarank on ") and str(result.run_dir) in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1", "epoch 2"]
    history = json.loads((result.run_dir / "history.json").read_text())
    assert f"loss {history[1]['train_loss']:.4f}" in epochs[1] and f"vali ndcg@10 {history[1]['vali_ndcg@10']:.4f}" in epochs[1]
    assert lines[-1].startswith(f"finished: best epoch {result.best_epoch} of 2")

    resume(result.run_dir, training__epochs=3)
    lines = (result.run_dir / "train.log").read_text().splitlines()
    assert any(line.startswith("resuming ") and "after epoch 2" in line for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1", "epoch 2", "epoch 3"]


def test_resume_may_change_the_device_but_not_the_model(tmp_path, make_tiny):
    run = train(make_tiny(tmp_path / "runs"), training={"epochs": 1}).run_dir
    with pytest.raises(ConfigError, match=r"model\.args: cannot change when resuming"):
        resume(run, model__args={"hidden_sizes": [4], "dropout": 0.2})
    assert resume(run, training__epochs=2, device="cpu").report["device"] == "cpu"
    assert json.loads((run / "config.resolved.json").read_text())["device"] == "cpu"


def test_missing_feature_values_follow_data_missing(tmp_path, make_tiny):
    splits = _splits()
    paths = {}
    for name, dataset in splits.items():
        paths[name] = tmp_path / f"{name}.txt"
        write_letor(dataset, paths[name])
    lines = paths["train"].read_text().splitlines()
    label, qid, *features = lines[2].split()
    lines[2] = " ".join([label, qid, "1:NaN", *features[1:]])
    paths["train"].write_text("\n".join(lines) + "\n")
    data = {name: str(path) for name, path in paths.items()}
    with pytest.raises(ConfigError, match=r"data\.train: .*train\.txt.* line 3"):
        train(make_tiny(tmp_path / "runs", data={**data, "cache": False}))
    result = train(make_tiny(tmp_path / "runs", data={**data, "cache": False, "missing": "zero"}), training={"epochs": 1})
    assert result.config.data.missing == "zero" and result.best_epoch == 1
