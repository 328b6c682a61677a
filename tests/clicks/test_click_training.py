"""Training on click logs inside ``ltrkit train`` (``data.train_clicks``): CLI and API, IPS against
naive training, exact resume, DLA's propensities, and one-line errors for bad logs and configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.clicks.log import read_click_log
from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em
from ltrkit.clicks.simulate import write_simulation
from ltrkit.clicks.spec import load_click_spec
from ltrkit.clicks.task import ClickLoss, aggregate_sessions, load_click_config, train_on_clicks
from ltrkit.clicks.unbiased import ips_softmax_loss
from ltrkit.data.cache import load_dataset
from ltrkit.data.synthetic import generate_splits, write_splits
from ltrkit.data.transforms import Normalizer
from ltrkit.training import Ranker
from ltrkit.training.checkpoint import load_checkpoint
from ltrkit.training.config import ConfigError

pytest.importorskip("pyarrow")

TOP_K = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic LETOR files (10 features: columns 0..7 carry the relevance, 8 and 9 are noise) and
    two PBM (eta = 1) logs of a logging policy that ranks by the irrelevant column 9: naive
    training learns that column from the position bias, IPS does not."""
    folder = tmp_path_factory.mktemp("clicks_world")
    splits = generate_splits(train_queries=150, vali_queries=60, test_queries=100, n_features=10, mean_list_length=15, max_list_length=30, seed=3)
    files = write_splits(splits, folder)
    train = load_dataset(files["train"], cache=False)
    scores = np.asarray(train.features[:, 9], dtype=np.float64)
    behaviour = load_click_spec({"name": "pbm", "eta": 1.0}).with_max_grade(4.0)
    plain = write_simulation(folder / "plain", train, scores, behaviour, sessions=20_000, top_k=TOP_K, seed=3)
    shuffled = write_simulation(folder / "shuffled", train, scores, behaviour, sessions=10_000, top_k=TOP_K, seed=4, intervention="topk_shuffle")
    return {"folder": folder, "files": files, "train": train, "log": plain.log, "shuffled_log": shuffled.log}


def config_for(world, runs: Path, name: str, propensities: str, **clicks) -> dict:
    files = world["files"]
    return {
        "data": {
            "train": str(files["train"]), "vali": str(files["vali"]), "test": str(files["test"]), "cache": False,
            "train_clicks": {"log": str(world["log"]), "propensities": propensities, **clicks},
        },
        "model": {"name": "linear"},
        "loss": {"name": "softmax"},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 8},
        "early_stopping": {"patience": None},
        "evaluation": {"baselines": False, "metrics": ["ndcg@10"]},
        "num_threads": 1,
        "output": {"dir": str(runs), "name": name, "tensorboard": False, "plots": False},
    }


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """Naive, IPS (true propensities) and DLA runs on the same log."""
    runs = tmp_path_factory.mktemp("click_runs")
    return {method: train_on_clicks(config_for(world, runs, method, method)) for method in ("none", "logged", "dla")}


def one_line_error(result, *patterns: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for pattern in patterns:
        assert pattern in lines[0], lines[0]
    return lines[0]


def test_aggregated_lists_give_the_mean_per_session_loss_and_gradient(world):
    sessions, _ = read_click_log(world["shuffled_log"], world["train"])
    sessions = sessions.subset(np.arange(1000))
    lists = aggregate_sessions(sessions, sessions.propensities)
    keys = [(tuple(d[m]), tuple(p[m])) for d, p, m in zip(sessions.docs, sessions.propensities, sessions.mask)]
    clicked = {key for key, c in zip(keys, sessions.clicks) if c.any()}
    assert lists.n_lists == len(clicked) and lists.counts.sum() == sum(key in clicked for key in keys)
    weights = torch.linspace(-1, 1, 10, dtype=torch.float64, requires_grad=True)
    features = torch.as_tensor(np.asarray(world["train"].features, dtype=np.float64))

    def scores(docs):
        return (features[np.where(docs >= 0, docs, 0)] @ weights).masked_fill(torch.from_numpy(docs < 0), 0.0)

    reference = ips_softmax_loss(
        scores(np.where(sessions.mask, sessions.docs, -1)), torch.from_numpy(sessions.clicks.astype(np.float64)),
        torch.from_numpy(sessions.mask), propensities=torch.from_numpy(np.where(sessions.mask, sessions.propensities, 1.0)), reduction="sum",
    ) / lists.counts.sum()
    (expected,) = torch.autograd.grad(reference, weights)
    loss = ClickLoss("ips_softmax", {}, top_k=TOP_K)(
        scores(lists.docs), torch.from_numpy(lists.clicks), torch.from_numpy(lists.docs >= 0),
        torch.from_numpy(lists.propensities), torch.from_numpy(lists.counts),
    )
    (gradient,) = torch.autograd.grad(loss, weights)
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


def test_ips_beats_naive_training_on_the_true_labels(trained):
    naive = trained["none"].metrics["test"]["ndcg@10"]
    ips = trained["logged"].metrics["test"]["ndcg@10"]
    dla = trained["dla"].metrics["test"]["ndcg@10"]
    # seeds 0..8 of this set-up (data and clicks): IPS and DLA ahead of naive by 0.07..0.13
    assert ips > naive + 0.04, (naive, ips)
    assert dla > naive + 0.04, (naive, dla)
    report = trained["logged"].report
    assert report["click_loss"] == "ips_softmax" and report["clicks"]["sessions"] == 20_000


def test_dla_learns_propensities_that_fall_with_rank(trained):
    learned = np.array(trained["dla"].report["clicks"]["learned_propensities"])
    assert learned[0] == pytest.approx(1.0)
    # the simulator's are 1/rank; seeds 0..8: Spearman correlation with the rank -0.88..-1
    assert np.corrcoef(np.argsort(np.argsort(learned)), np.arange(TOP_K))[0, 1] < -0.8, learned
    assert learned[5:].mean() < 0.5 * learned[1:3].mean() < 0.5, learned
    # the report's propensities are those of the best checkpoint's logits
    state = load_checkpoint(trained["dla"].run_dir / "checkpoints" / "best.pt")
    loss = ClickLoss("dla", {}, top_k=TOP_K, lr_multiplier=50.0)
    loss.load_state_dict(state["loss"])
    np.testing.assert_allclose(loss.propensities(), learned)


def test_cli_trains_on_clicks_and_the_run_predicts_like_a_ranking_run(world, trained, tmp_path):
    config = config_for(world, tmp_path, "cli", "logged")
    config["training"]["epochs"] = 3
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["train", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "cli"
    report = json.loads((run / "report.json").read_text())
    assert report["clicks"]["propensities"] == "logged" and report["epochs_run"] == 3
    api = train_on_clicks(config, set=["output.name=api"])
    cli_state, api_state = (load_checkpoint(folder / "checkpoints" / "last.pt") for folder in (run, api.run_dir))
    for key, value in cli_state["model"].items():
        torch.testing.assert_close(value, api_state["model"][key], rtol=0, atol=0)
    test = load_dataset(world["files"]["test"], cache=False)
    scores = Ranker.load(run).predict(test)
    out = tmp_path / "scores.txt"
    result = CliRunner().invoke(app, ["predict", "--run", str(run), "--data", str(world["files"]["test"]), "--out", str(out), "--no-cache"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.loadtxt(out), scores, rtol=1e-6)


def test_resume_continues_to_the_uninterrupted_weights_and_propensities(world, tmp_path):
    full = train_on_clicks(config_for(world, tmp_path, "full", "dla"), training={"epochs": 3})

    def interrupt(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_on_clicks(config_for(world, tmp_path, "part", "dla"), training={"epochs": 3}, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["epoch"] == 2
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "part"), "--quiet"])
    assert result.exit_code == 0, result.output
    a, b = (load_checkpoint(folder / "checkpoints" / "last.pt") for folder in (full.run_dir, tmp_path / "part"))
    assert a["epoch"] == b["epoch"] == 3 and a["clicks"] == b["clicks"]
    for part in ("model", "loss"):
        for key, value in a[part].items():
            torch.testing.assert_close(value, b[part][key], rtol=0, atol=0)
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]


def test_estimated_propensities_and_clipping_are_reported(world, tmp_path):
    run = train_on_clicks(
        config_for(world, tmp_path, "rand", "randomization", propensity_log=str(world["shuffled_log"]), clip=0.3), training={"epochs": 1}
    )
    shuffled, _ = read_click_log(world["shuffled_log"])
    estimate = estimate_by_randomization(shuffled)
    clicks = run.report["clicks"]
    np.testing.assert_allclose(clicks["estimated_propensities"], estimate / estimate.max())
    log, _ = read_click_log(world["log"])
    below = int(((np.broadcast_to(estimate / estimate.max(), log.mask.shape) < 0.3) & log.mask).sum())
    assert below > 0 and clicks["clipped_impressions"] == below
    assert any(f"{below} of {int(log.mask.sum())} impressions" in warning for warning in run.report["warnings"])


def test_regression_em_propensities_are_estimated_on_the_normalised_training_features(world, tmp_path):
    run = train_on_clicks(config_for(world, tmp_path, "em", "regression_em", em_max_iterations=4), training={"epochs": 1})
    sessions, _ = read_click_log(world["log"])
    normalizer = Normalizer.from_state_dict(load_checkpoint(run.run_dir / "checkpoints" / "last.pt")["normalizer"])
    estimate, details = estimate_by_regression_em(sessions, normalizer.transform(world["train"]).features, max_iterations=4)
    np.testing.assert_allclose(run.report["clicks"]["estimated_propensities"], estimate / estimate.max())
    assert run.report["clicks"]["em_iterations"] == details["iterations"] == 4 and "clipped_impressions" not in run.report["clicks"]


def test_the_shipped_click_recipe_is_a_click_config():
    config = load_click_config(Path(__file__).resolve().parents[2] / "configs" / "clicks.json")
    assert config.data.train_clicks.propensities == "regression_em" and config.loss.name == "softmax"


def _csv_log(world, path: Path, edit=None, drop: str = "") -> Path:
    """A three-session CSV log of real documents, with ``edit(rows)`` applied and column ``drop`` left out."""
    train = world["train"]
    rows = []
    queries = np.flatnonzero(train.list_lengths >= 3)[:3]
    for session, query in enumerate(queries.tolist()):
        first = int(train.query_offsets[query])
        for position in (1, 2, 3):
            rows.append({"session": session, "qid": str(train.qids[query]), "doc": first + position - 1,
                         "position": position, "clicked": int(position == 1), "propensity": 1.0 / position})
    if edit is not None:
        edit(rows)
    columns = [name for name in rows[0] if name != drop]
    path.write_text(",".join(columns) + "\n" + "".join(",".join(str(row[c]) for c in columns) + "\n" for row in rows))
    return path


BAD_LOGS = {
    "unknown_qid": (lambda rows: rows[4].update(qid="no-such-qid"), "", "row 5, column 'qid'"),
    "foreign_document": (lambda rows: rows[2].update(doc=rows[3]["doc"]), "", "row 3, column 'doc'"),
    "position_beyond_shown": (lambda rows: rows[5].update(position=7), "", "row 6, column 'position'"),
    "zero_propensity": (lambda rows: rows[1].update(propensity=0.0), "", "row 2, column 'propensity'"),
    "nan_propensity": (lambda rows: rows[7].update(propensity="nan"), "", "row 8, column 'propensity'"),
    "negative_propensity": (lambda rows: rows[0].update(propensity=-0.5), "", "row 1, column 'propensity'"),
    "missing_column": (None, "position", "column 'position': missing"),
    "logged_without_propensities": (None, "propensity", "column 'propensity': missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_LOGS))
def test_a_bad_log_is_one_line_and_leaves_no_run_folder(world, tmp_path, case):
    edit, drop, where = BAD_LOGS[case]
    log = _csv_log(world, tmp_path / "bad.csv", edit, drop)
    config = config_for(world, tmp_path / "runs", "bad", "logged")
    config["data"]["train_clicks"]["log"] = str(log)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    line = one_line_error(CliRunner().invoke(app, ["train", str(path)]), str(log), where)
    assert "data.train_clicks" in line
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_good_csv_log_trains(world, tmp_path):
    config = config_for(world, tmp_path, "csv", "logged")
    config["data"]["train_clicks"]["log"] = str(_csv_log(world, tmp_path / "good.csv"))
    run = train_on_clicks(config, training={"epochs": 1})
    assert run.report["clicks"] == {"propensities": "logged", "log": str(tmp_path / "good.csv"), "sessions": 3, "impressions": 9,
                                    "clicks": 3, "lists": 3, "top_k": 3}


def test_config_errors_are_reported_at_once_before_any_run_folder(world, tmp_path):
    config = config_for(world, tmp_path / "runs", "bad", "dla")
    config["loss"] = {"name": "ranknet", "args": {"include_ties": True}}
    config["data"]["train_clicks"].update(clip=1.5, unknown=1)
    config["early_stopping"]["split"] = "train"
    config["training"]["max_slate_length"] = 5
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as caught:
        load_click_config(path)
    assert caught.value.source == str(path)
    assert [error.split(":")[0] for error in caught.value.errors] == [
        "data.train_clicks.clip", "data.train_clicks.unknown", "loss.args", "data.train_clicks.propensities",
        "early_stopping.split", "training.max_slate_length",
    ]
    assert "['include_ties'] of 'ranknet'" in caught.value.errors[2] and "IPS softmax loss" in caught.value.errors[3]
    one_line_error(CliRunner().invoke(app, ["train", str(path)]), str(path), "data.train_clicks.clip")
    config = config_for(world, tmp_path / "runs", "bad", "logged")
    del config["loss"]
    path.write_text(json.dumps(config))
    one_line_error(CliRunner().invoke(app, ["train", str(path)]), "loss.name: 'lambdaloss' has no inverse-propensity-scored form")
    assert not (tmp_path / "runs").exists()
