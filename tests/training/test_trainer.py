"""The trainer end to end on tiny synthetic data: run folder, exact resume, determinism, early
stopping, the regression gate, bad input, and predictions that match an independent re-scoring."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import write_letor
from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset, read_run
from ltrkit.training import ConfigError, Ranker, RegressionGateError, resume, train
from ltrkit.training.checkpoint import load_checkpoint


def _state(path):
    return load_checkpoint(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_folder_contents_and_report(tiny):
    result = train(tiny, output={**tiny["output"], "tensorboard": True, "plots": True})
    run = result.run_dir
    for name in ("config.resolved.json", "normalizer.json", "history.csv", "history.json", "curves.png",
                 "report.json", "report.md", "checkpoints/best.pt", "checkpoints/last.pt",
                 "predictions/test.scores", "predictions/test.trec"):
        assert (run / name).is_file(), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train_loss")] == [1, 2, 3]
    assert "vali_ndcg_at_10" in events.Tags()["scalars"]
    assert not [p for p in run.rglob("*.tmp")]

    history = json.loads((run / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3]
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["train_loss"]) for row in rows] == [record["train_loss"] for record in history]
    assert {"lr", "seconds", "docs_per_s", "vali_ndcg@10", "vali_map", "vali_err@10"} <= set(rows[0])

    report = json.loads((run / "report.json").read_text())
    assert set(report["metrics"]) == {"vali", "test"}
    assert set(report["metrics"]["test"]) == {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "mrr", "map", "err@10"}
    from ltrkit.training.gbdt import lightgbm_available

    assert set(report["baselines"]) == {"random", "single_feature"} | ({"lightgbm"} if lightgbm_available() else set())
    assert report["best_epoch"] == max(history, key=lambda r: r["vali_ndcg@10"])["epoch"]
    assert "| ndcg@10 |" in (run / "report.md").read_text()
    assert json.loads((run / "config.resolved.json").read_text())["training"]["epochs"] == 3
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reported_metrics_match_an_independent_evaluation(tiny):
    """Re-score the test file from the predictions and from a fresh Ranker; recompute metrics."""
    result = train(tiny)
    splits = generate_splits(train_queries=40, vali_queries=12, test_queries=12, n_features=10,
                             mean_list_length=12.0, max_list_length=30, seed=3)
    test = splits["test"]
    written = np.loadtxt(result.run_dir / "predictions" / "test.scores")
    ranker = Ranker.load(result.run_dir)
    rescored = ranker.predict(test)
    np.testing.assert_allclose(written, rescored, rtol=1e-6, atol=1e-7)
    by_hand = evaluate_dataset(test, rescored, ["ndcg@10", "map"])
    assert result.metrics["test"]["ndcg@10"] == pytest.approx(by_hand.mean["ndcg@10"], abs=1e-6)
    assert result.metrics["test"]["map"] == pytest.approx(by_hand.mean["map"], abs=1e-6)
    # the TREC run ranks each query's documents by the same scores
    run = read_run(result.run_dir / "predictions" / "test.trec")
    first_qid = str(test.qids[0])
    rows = test.query_slice(0)
    best_row = rows.start + int(np.argmax(rescored[rows]))
    top_doc = max(run[first_qid].items(), key=lambda item: item[1])[0]
    assert top_doc == f"{first_qid}_{best_row - rows.start}"
    # predict_features on raw arrays equals predict on the dataset
    np.testing.assert_array_equal(ranker.predict_features(test.features, test.query_offsets), rescored)


def test_learning_happens_and_beats_random(tmp_path, make_tiny):
    config = make_tiny(tmp_path / "runs", training={"epochs": 6, "batch_size": 8})
    config["data"]["synthetic"].update(train_queries=120, n_features=12)
    result = train(config)
    random_ndcg = result.baselines["random"]["metrics"]["test"]["ndcg@10"]
    assert result.metrics["test"]["ndcg@10"] > random_ndcg + 0.05
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < losses[0]


# listmle draws random tie-breaks from a generator of its own, which must resume too
@pytest.mark.parametrize("loss", ["lambdarank", "listmle"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, make_tiny, loss):
    base = make_tiny(tmp_path / "runs", training={"epochs": 4, "batch_size": 8, "max_slate_length": 20},
                     loss={"name": loss, "args": {}})
    full = train(base, output={"dir": str(tmp_path / "runs"), "name": "full"})

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(base, output={"dir": str(tmp_path / "runs"), "name": "cut"}, on_epoch_end=stop_after_two)
    cut_dir = tmp_path / "runs" / "cut"
    assert load_checkpoint(cut_dir / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = resume(cut_dir)

    _assert_same_weights(_state(full.run_dir / "checkpoints" / "last.pt"), _state(cut_dir / "checkpoints" / "last.pt"))
    _assert_same_weights(_state(full.run_dir / "checkpoints" / "best.pt"), _state(cut_dir / "checkpoints" / "best.pt"))
    strip = lambda history: [{k: v for k, v in r.items() if k not in ("seconds", "docs_per_s")} for r in history]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.metrics == full.metrics
    full_opt = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["optimizer"]["state"]
    cut_opt = load_checkpoint(cut_dir / "checkpoints" / "last.pt")["optimizer"]["state"]
    for key in full_opt:
        assert torch.equal(full_opt[key]["exp_avg"], cut_opt[key]["exp_avg"])


def test_resume_can_extend_training(tiny):
    first = train(tiny)
    longer = resume(first.run_dir, set=["training.epochs=5"])
    assert [record["epoch"] for record in longer.history] == [1, 2, 3, 4, 5]


def test_same_seed_same_weights_different_seed_different(tmp_path, make_tiny):
    a = train(make_tiny(tmp_path / "runs"), output={"dir": str(tmp_path / "runs"), "name": "a"})
    b = train(make_tiny(tmp_path / "runs"), output={"dir": str(tmp_path / "runs"), "name": "b"})
    c = train(make_tiny(tmp_path / "runs", seed=8), output={"dir": str(tmp_path / "runs"), "name": "c"})
    _assert_same_weights(_state(a.run_dir / "checkpoints" / "last.pt"), _state(b.run_dir / "checkpoints" / "last.pt"))
    state_a, state_c = _state(a.run_dir / "checkpoints" / "last.pt"), _state(c.run_dir / "checkpoints" / "last.pt")
    assert any(not torch.equal(state_a[key], state_c[key]) for key in state_a)


def test_early_stopping_stops_and_keeps_the_best_epoch(tiny):
    # min_delta = 1 makes every epoch after the first "no improvement"
    result = train(tiny, training={"epochs": 10}, early_stopping={"metric": "ndcg@10", "patience": 2, "min_delta": 1.0})
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1
    _assert_same_weights(_state(result.run_dir / "checkpoints" / "best.pt"),
                         {k: v for k, v in result.model.state_dict().items()})
    assert load_checkpoint(result.run_dir / "checkpoints" / "best.pt")["epoch"] == 1


def test_regression_gate(tiny):
    passing = train(tiny, expected={"test": {"ndcg@10": 0.0}})
    assert passing.report["expected_check"][0]["passed"]
    gated = copy.deepcopy(tiny)
    gated["output"]["name"] = "gated"
    with pytest.raises(RegressionGateError, match=r"test ndcg@10 = 0\.\d{4} < expected 1\.0001") as info:
        train(gated, expected={"test": {"NDCG@10": 1.0001}})
    report = json.loads((info.value.result.run_dir / "report.json").read_text())
    assert report["expected_check"][0]["passed"] is False


def test_refuses_to_overwrite_a_run(tiny):
    train(tiny)
    # the Python caller is told the keyword, not the CLI flag
    with pytest.raises(FileExistsError, match="already exists and is not empty; pass overwrite=True") as info:
        train(tiny)
    assert "--overwrite" not in str(info.value)
    assert train(tiny, overwrite=True).run_dir.is_dir()


def test_in_memory_datasets_and_vali_fraction(tmp_path, make_tiny):
    splits = generate_splits(train_queries=30, vali_queries=5, test_queries=8, n_features=9, mean_list_length=10.0, seed=1)
    result = train(make_tiny(tmp_path / "runs"), datasets={"train": splits["train"], "test": splits["test"]},
                   data={"vali_fraction": 0.25}, training={"epochs": 1})
    summary = result.report["data"]
    assert summary["vali"]["queries"] == 8 and summary["train"]["queries"] == 22
    assert summary["test"]["queries"] == 8


# --------------------------------------------------------------------------- bad input


def _write_split_files(folder, n_features_test=None):
    splits = generate_splits(train_queries=20, vali_queries=5, test_queries=5, n_features=9, mean_list_length=8.0, seed=2)
    folder.mkdir(parents=True, exist_ok=True)
    for name, dataset in splits.items():
        if name == "test" and n_features_test is not None:
            dataset = RankingDataset(dataset.features[:, :n_features_test].copy(), dataset.labels, dataset.query_offsets, dataset.qids)
        write_letor(dataset, folder / f"{name}.txt")
    return {name: str(folder / f"{name}.txt") for name in splits}


def test_trains_from_letor_files(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data")
    result = train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}), training={"epochs": 1})
    assert result.report["data"]["train"]["features"] == 9
    assert len(np.loadtxt(result.run_dir / "predictions" / "test.scores")) == result.report["data"]["test"]["documents"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda paths: {**paths, "vali": paths["vali"] + ".missing"}, r"data\.vali: file not found: '.*vali\.txt\.missing'"),
        (lambda paths: {**paths, "train": "nope/train.txt", "test": "nope/test.txt"}, r"(?s)data\.train: file not found.*data\.test: file not found"),
    ],
)
def test_missing_files_fail_before_training(tmp_path, change, match, make_tiny):
    paths = change(_write_split_files(tmp_path / "data"))
    with pytest.raises(ConfigError, match=match):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}))
    assert not (tmp_path / "runs").exists()


def test_feature_count_mismatch_fails_before_training(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data", n_features_test=5)
    with pytest.raises(ConfigError, match=r"data\.test: .*test\.txt has 5 features but the training data .*train\.txt has 9.*data\.n_features"):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}))
    assert not (tmp_path / "runs").exists()


def test_a_click_config_is_refused_rather_than_trained_on_labels(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data")
    data = {**paths, "cache": False, "train_clicks": {"log": str(tmp_path / "clicks.parquet")}}
    with pytest.raises(ConfigError, match=r"data\.train_clicks: this config trains on a click log; run it with ltrkit\.clicks\.train_on_clicks"):
        train(make_tiny(tmp_path / "runs", data=data))
    assert not (tmp_path / "runs").exists()
    # a click run's folder (its saved config names the log) is not resumed on labels either
    run_dir = train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}), training={"epochs": 1}).run_dir
    saved = json.loads((run_dir / "config.resolved.json").read_text())
    saved["data"]["train_clicks"] = data["train_clicks"]
    (run_dir / "config.resolved.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"data\.train_clicks: this config trains on a click log.*resume_on_clicks"):
        resume(run_dir)


def test_empty_validation_file_fails(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data")
    (tmp_path / "data" / "vali.txt").write_text("")
    with pytest.raises(ConfigError, match=r"data\.vali: .*vali\.txt"):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}))


def test_no_validation_data_for_early_stopping(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data")
    del paths["vali"]
    with pytest.raises(ConfigError, match=r"early_stopping\.split: 'vali' needs validation data"):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}))


def test_gate_on_a_missing_split_fails_before_training(tmp_path, make_tiny):
    paths = _write_split_files(tmp_path / "data")
    del paths["test"]
    with pytest.raises(ConfigError, match=r"expected\.test: the regression gate needs test data"):
        train(make_tiny(tmp_path / "runs", data={**paths, "cache": False}, expected={"test": {"ndcg@10": 0.1}}))
    assert not (tmp_path / "runs").exists()


def test_filtering_everything_fails(tmp_path, make_tiny):
    config = make_tiny(tmp_path / "runs")
    config["data"]["min_docs_per_query"] = 10_000
    with pytest.raises(ConfigError, match=r"data\.train: no training query is left after filtering \(min_docs_per_query=10000"):
        train(config)


def test_bad_config_fails_before_any_output(tmp_path, make_tiny):
    with pytest.raises(ConfigError, match=r"loss\.name: unknown list loss 'lambdarnk'"):
        train(make_tiny(tmp_path / "runs"), loss={"name": "lambdarnk"})
    with pytest.raises(ConfigError, match="no CUDA GPU is available") if not torch.cuda.is_available() else _no_error():
        train(make_tiny(tmp_path / "runs"), device="cuda", training={"epochs": 1})


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_ranker_rejects_wrong_feature_count(tiny):
    result = train(tiny, training={"epochs": 1})
    ranker = Ranker.load(result.run_dir, checkpoint="last")
    with pytest.raises(ValueError, match="features has 4 columns but the model was trained on 10"):
        ranker.predict_features(np.zeros((3, 4), np.float32), np.array([0, 3]))
    with pytest.raises(ConfigError, match="checkpoint must be 'best' or 'last'"):
        Ranker.load(result.run_dir, checkpoint="final")


def test_learnable_loss_parameters_are_trained(tiny):
    result = train(tiny, loss={"name": "ordinal", "args": {"n_classes": 5}}, training={"epochs": 2})
    first = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert first["loss"], "the ordinal loss has learnable cutpoints that must be checkpointed"
    import ltrkit.losses

    fresh = ltrkit.losses.get("ordinal", n_classes=5).state_dict()
    assert any(not torch.equal(fresh[key], first["loss"][key]) for key in fresh)


def test_a_diverging_loss_stops_with_a_clear_error(tiny, monkeypatch):
    import ltrkit.losses

    class NanLoss(torch.nn.Module):
        def forward(self, scores, labels, mask):
            return (scores * float("nan")).sum()

    monkeypatch.setattr(ltrkit.losses, "get", lambda name, **args: NanLoss())
    with pytest.raises(FloatingPointError, match=r"epoch 1: the lambdarank loss became nan; lower optimizer\.lr"):
        train(tiny)


def test_shipped_lightgbm_config_trains_on_the_real_files(tmp_path, monkeypatch):
    """The example config's relative ../shared/data paths resolve from the repository root."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".." / "shared" / "data" / "lightgbm-rank" / "rank.train").is_file():
        pytest.skip("../shared/data is not present")
    monkeypatch.chdir(repo)
    result = train(
        repo / "configs" / "lightgbm_rank.json",
        set=["training.epochs=2", "data.cache=false", "num_threads=1", f"output.dir={json.dumps(str(tmp_path))}",
             "output.tensorboard=false", "output.plots=false"],
    )
    data = result.report["data"]
    assert (data["train"]["queries"] + data["vali"]["queries"], data["test"]["queries"]) == (201, 50)
    assert (data["train"]["documents"] + data["vali"]["documents"], data["test"]["documents"]) == (3005, 768)
    assert data["train"]["features"] == 300
    assert len(np.loadtxt(result.run_dir / "predictions" / "test.scores")) == 768


def test_resume_refuses_changes_that_make_another_run(tiny):
    first = train(tiny, training={"epochs": 1, "batch_size": 8, "max_slate_length": 20})
    with pytest.raises(ConfigError, match=r"(?s)model\.args: cannot change when resuming.*optimizer\.lr: cannot change"):
        resume(first.run_dir, set=["optimizer.lr=0.5", "model.args={\"hidden_sizes\": [4]}"])
    assert resume(first.run_dir, set=["training.epochs=2", "early_stopping.patience=3"]).history[-1]["epoch"] == 2


def test_timestamp_run_name_is_saved(tmp_path, make_tiny):
    config = make_tiny(tmp_path / "runs")
    config["output"]["name"] = None
    result = train(config, training={"epochs": 1})
    assert json.loads((result.run_dir / "config.resolved.json").read_text())["output"]["name"] == result.run_dir.name


@pytest.mark.parametrize(
    ("model", "loss"),
    [
        ({"name": "linear", "args": {}}, {"name": "listnet", "args": {}}),
        ({"name": "attention", "args": {"n_layers": 1, "d_model": 16, "n_heads": 2}}, {"name": "neural_ndcg", "args": {}}),
    ],
)
def test_other_models_and_losses_train_and_predict(tiny, model, loss):
    result = train(tiny, model=model, loss=loss, training={"epochs": 1, "batch_size": 8}, optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9})
    scores = np.loadtxt(result.run_dir / "predictions" / "test.scores")
    assert np.isfinite(scores).all() and scores.shape == (result.report["data"]["test"]["documents"],)
    assert result.report["model"] == model["name"] and result.report["loss"] == loss["name"]


def test_a_batch_without_signal_is_skipped_not_fatal(tiny, monkeypatch):
    import ltrkit.losses

    class ConstantLoss(torch.nn.Module):
        def forward(self, scores, labels, mask):
            return torch.zeros(())

    monkeypatch.setattr(ltrkit.losses, "get", lambda name, **args: ConstantLoss())
    result = train(tiny, training={"epochs": 1}, model={"name": "linear", "args": {}})
    first = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert result.history[0]["train_loss"] == 0.0
    assert first["scheduler"]["last_epoch"] == 0  # no optimiser step, no schedule step
