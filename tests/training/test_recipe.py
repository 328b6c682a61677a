"""The default recipe: loop sizes that adapt to the data, the LambdaMART baseline and the
single-feature warning in every report, and ensembles that rank as one model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ltrkit.data.batching import BatchLoader
from ltrkit.data.dataset import RankingDataset, filter_queries
from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset
from ltrkit.training import Ranker, resume, train
from ltrkit.training.checkpoint import load_checkpoint
from ltrkit.training.gbdt import lightgbm_available

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_lightgbm = pytest.mark.skipif(not lightgbm_available(), reason="needs lightgbm (pip install 'ltrkit[gbdt]')")


def _tiny_splits():
    return generate_splits(train_queries=40, vali_queries=12, test_queries=12, n_features=10, mean_list_length=12.0, max_list_length=30, seed=3)


# --------------------------------------------------------------------------- adaptive sizes


def test_sizes_left_out_follow_the_data_and_are_saved_for_resume(make_tiny, tmp_path):
    config = make_tiny(tmp_path / "runs", training={"step_budget": 60, "max_slate_length": 20}, early_stopping={"patience": "auto"})
    result = train(config)
    saved = json.loads((result.run_dir / "config.resolved.json").read_text(encoding="utf-8"))
    training, stopping = saved["training"], saved["early_stopping"]
    train_split = filter_queries(_tiny_splits()["train"], min_docs=1, drop_without_relevant=True, relevance_threshold=1.0)
    # 40 queries (fewer after filtering) -> the smallest batch, 8 queries
    assert training["batch_size"] == 8
    steps = len(BatchLoader(train_split, batch_size=8, shuffle=True, seed=7, max_slate_length=20))
    # the fewest epochs that spend the budget (at least 10), and room for early stopping to act
    assert training["epochs"] == max(10, math.ceil(60 / steps))
    assert stopping["patience"] == max(5, math.ceil(training["epochs"] / 5))
    assert len(result.history) <= training["epochs"]
    # a resumed run continues with the saved numbers, not freshly derived ones
    again = resume(result.run_dir, set=[f"training.epochs={training['epochs'] + 1}", "early_stopping.patience=null"])
    assert again.config.training.batch_size == 8


def test_given_sizes_are_kept(make_tiny, tmp_path):
    result = train(make_tiny(tmp_path / "runs", training={"epochs": 2, "batch_size": 5}, early_stopping={"patience": 7}))
    assert (result.config.training.epochs, result.config.training.batch_size, result.config.early_stopping.patience) == (2, 5, 7)


@pytest.mark.skipif(not (SHARED / "mq2008").is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("dataset", ["mq2008", "lightgbm-rank"])
def test_default_config_beats_the_baselines_on_real_data(dataset, tmp_path):
    """Only the data paths (and a short step budget, for a test run of seconds): the defaults
    must clear the best single feature and the random ranker by a margin."""
    if dataset == "mq2008":
        folder = SHARED / "mq2008" / "Fold1"
        data = {"train": str(folder / "train.txt"), "vali": str(folder / "vali.txt"), "test": str(folder / "test.txt")}
    else:
        folder = SHARED / "lightgbm-rank"
        data = {"train": str(folder / "rank.train"), "test": str(folder / "rank.test"), "vali_fraction": 0.2}
    config = {
        "data": {**data, "cache": False},
        "training": {"step_budget": 300},
        "evaluation": {"lightgbm_baseline": False},
        "num_threads": 1,
        "output": {"dir": str(tmp_path), "tensorboard": False, "plots": False},
    }
    result = train(config)
    ours = result.metrics["test"]["ndcg@10"]
    assert ours > result.baselines["single_feature"]["metrics"]["test"]["ndcg@10"] + 0.01
    assert ours > result.baselines["random"]["metrics"]["test"]["ndcg@10"] + 0.1
    assert result.report["warnings"] == []


# --------------------------------------------------------------------------- report baselines


@needs_lightgbm
def test_report_has_the_lambdamart_baseline_and_its_time(make_tiny, tmp_path):
    result = train(make_tiny(tmp_path / "runs"))
    entry = result.report["baselines"]["lightgbm"]
    assert entry["label"] == "LightGBM LambdaMART" and entry["train_seconds"] > 0 and entry["trees"] >= 1
    assert set(entry["metrics"]["test"]) == set(result.metrics["test"])
    markdown = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert "LightGBM LambdaMART test" in markdown and "trained in" in markdown
    off = train(make_tiny(tmp_path / "off", evaluation={"lightgbm_baseline": False}))
    assert "lightgbm" not in off.report["baselines"] and "random" in off.report["baselines"]


def test_report_warns_when_the_model_loses_to_its_best_single_feature(make_tiny, tmp_path):
    # the label is a function of feature 0 alone: that feature ranks perfectly, an untrained
    # model (learning rate ~0, one epoch) cannot match it
    def split(n_queries: int, seed: int) -> RankingDataset:
        local = np.random.default_rng(seed)
        lengths = local.integers(5, 12, size=n_queries)
        features = local.normal(size=(int(lengths.sum()), 4)).astype(np.float32)
        labels = np.digitize(features[:, 0], [-0.5, 0.5]).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return RankingDataset(features, labels, offsets, np.array([f"{seed}-{q}" for q in range(n_queries)]))

    datasets = {"train": split(30, 1), "vali": split(10, 2), "test": split(10, 3)}
    config = make_tiny(tmp_path / "runs", optimizer={"name": "adamw", "lr": 1e-12}, training={"epochs": 1, "batch_size": 8})
    config["data"] = {}
    config["evaluation"] = {"lightgbm_baseline": False}
    result = train(config, datasets=datasets)
    (warning,) = result.report["warnings"]
    assert "does not beat its best single feature (feature col 0" in warning
    assert "**warning**" in (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert "warning:" in (result.run_dir / "train.log").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- ensembles


def _last_model(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_an_ensemble_of_one_is_the_plain_model(make_tiny, tmp_path):
    plain = train(make_tiny(tmp_path / "a"))
    one = train(make_tiny(tmp_path / "b", training={"epochs": 3, "batch_size": 8, "max_slate_length": 20, "ensemble": 1}))
    assert plain.metrics == one.metrics
    assert all(torch.equal(value, _last_model(one.run_dir)[key]) for key, value in _last_model(plain.run_dir).items())


@pytest.mark.parametrize("combine", ["mean", "rank_mean"])
def test_an_ensemble_ranks_as_one_model(make_tiny, tmp_path, combine):
    # no dropout: each member's gradient is its own loss's, so member 0 learns exactly as the plain run
    model = {"name": "mlp", "args": {"hidden_sizes": [16], "dropout": 0.0}}
    training = {"epochs": 2, "batch_size": 8, "max_slate_length": 20}
    plain = train(make_tiny(tmp_path / "plain", model=model, training=training))
    ensemble = train(make_tiny(tmp_path / "ens", model=model, training={**training, "ensemble": 3, "ensemble_combine": combine}))
    solo, joint = _last_model(plain.run_dir), _last_model(ensemble.run_dir)
    assert all(torch.equal(value, joint[f"members.0.{key}"]) for key, value in solo.items())
    assert not torch.equal(joint["members.0.head.weight"], joint["members.1.head.weight"])

    # predict, the saved test predictions and the report all see one model: the combination
    test = _tiny_splits()["test"]
    ranker = Ranker.load(ensemble.run_dir)
    scores = ranker.predict(test)
    saved = np.loadtxt(ensemble.run_dir / "predictions" / "test.scores")
    np.testing.assert_allclose(saved, scores, rtol=1e-6, atol=1e-6)
    normalised = ranker.normalizer.transform(test)
    members = [ranker.model.members[k] for k in range(3)]
    expected = _combine([_score(member, normalised) for member in members], normalised, combine)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    report = evaluate_dataset(test, scores, list(ensemble.metrics["test"]), **_conventions(ensemble))
    assert ensemble.metrics["test"] == pytest.approx(report.mean)


def _score(member: torch.nn.Module, dataset: RankingDataset) -> np.ndarray:
    """One list at a time, no padding: an independent path from the batched scorer."""
    out = np.empty(dataset.n_docs)
    member.eval()
    with torch.no_grad():
        for q in range(dataset.n_queries):
            start, end = dataset.query_offsets[q], dataset.query_offsets[q + 1]
            out[start:end] = member(torch.as_tensor(np.asarray(dataset.features[start:end]))[None])[0].numpy()
    return out


def _combine(member_scores, dataset: RankingDataset, combine: str) -> np.ndarray:
    if combine == "mean":
        return np.mean(member_scores, axis=0)
    from scipy.stats import rankdata

    out = np.zeros(dataset.n_docs)
    for scores in member_scores:
        for q in range(dataset.n_queries):
            start, end = dataset.query_offsets[q], dataset.query_offsets[q + 1]
            out[start:end] -= (end - start) - rankdata(scores[start:end])  # 0-based descending rank
    return out / len(member_scores)


def _conventions(result) -> dict:
    conventions = result.report["conventions"]
    return {key: conventions[key] for key in ("gain", "empty", "ties", "relevance_threshold")}
