"""``ltrkit tune`` / ``ltrkit.training.tune``: Optuna search, every trial a run, a leaderboard."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.training.config import ConfigError

optuna = pytest.importorskip("optuna", reason="needs optuna (pip install 'ltrkit[tune]')")

from ltrkit.training.tune import tune  # noqa: E402  (after the skip: the module needs nothing, its search does)

SPACE = {
    "optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "loss": {"type": "categorical", "choices": [{"name": "softmax", "args": {}}, {"name": "lambdarank", "args": {}}]},
}


def _config(make_tiny, tmp_path: Path, **tune_section):
    config = make_tiny(tmp_path / "runs", training={"epochs": 2, "batch_size": 8, "max_slate_length": 20})
    config["output"]["name"] = "study"
    config["tune"] = {"space": SPACE, "seed": 1, **tune_section}
    return config


def test_two_trials_write_runs_and_a_leaderboard(make_tiny, tmp_path):
    result = tune(_config(make_tiny, tmp_path), trials=2)
    study = tmp_path / "runs" / "study"
    assert result.study_dir == study
    rows = list(csv.DictReader((study / "leaderboard.csv").open(encoding="utf-8")))
    assert [row["state"] for row in rows] == ["complete", "complete"]
    # each trial is a full run; its value is its own report's validation metric (never test)
    values = {}
    for row in rows:
        report = json.loads((Path(row["run_dir"]) / "report.json").read_text(encoding="utf-8"))
        assert float(row["value"]) == pytest.approx(report["metrics"]["vali"]["ndcg@10"])
        config = json.loads((Path(row["run_dir"]) / "config.resolved.json").read_text(encoding="utf-8"))
        assert config["optimizer"]["lr"] == pytest.approx(json.loads(row["optimizer.lr"]))
        assert config["loss"]["name"] == json.loads(row["loss"])["name"]
        values[row["run_dir"]] = float(row["value"])
    assert float(rows[0]["value"]) >= float(rows[1]["value"])  # best first
    assert result.best_value == max(values.values()) and values[str(result.best_run_dir)] == result.best_value
    summary = json.loads((study / "tune.json").read_text(encoding="utf-8"))
    assert summary["best_value"] == result.best_value and summary["trials"] == 2
    assert (study / "best_value.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| trial | state | value |" in (study / "leaderboard.md").read_text(encoding="utf-8")


def test_pruning_stops_a_trial_through_on_epoch_end(make_tiny, tmp_path, monkeypatch):
    # a pruner that always prunes after the first epoch: the trial's run stops there
    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: True)
    config = _config(make_tiny, tmp_path)
    config["training"]["epochs"] = 3
    with pytest.raises(ConfigError, match="none of the 1 trial"):
        tune(config, trials=1)
    rows = list(csv.DictReader((tmp_path / "runs" / "study" / "leaderboard.csv").open(encoding="utf-8")))
    assert [row["state"] for row in rows] == ["pruned"]
    history = json.loads((Path(rows[0]["run_dir"]) / "history.json").read_text(encoding="utf-8"))
    assert len(history) == 1


@pytest.mark.parametrize(
    "section, message",
    [
        (None, "tune: the config needs a 'tune' section"),
        ({"space": {}}, "tune.space: "),
        ({"space": {"optimizer.lr": {"type": "float", "low": 1.0}}}, "tune.space.optimizer.lr: a float entry takes low and high"),
        ({"space": {"optimizer.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "log=true needs low > 0"),
        ({"space": {"training.batchsize": {"type": "int", "low": 4, "high": 8}}}, "tune.space.training.batchsize: value 4 is refused"),
    ],
)
def test_bad_tune_sections_are_one_config_error(make_tiny, tmp_path, section, message):
    config = make_tiny(tmp_path / "runs")
    if section is not None:
        config["tune"] = section
    with pytest.raises(ConfigError) as caught:
        tune(config, trials=1)
    assert any(message in line for line in caught.value.errors), caught.value.errors
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_a_trial_too_large_for_its_loss_fails_and_the_study_goes_on(make_tiny, tmp_path, monkeypatch):
    # the probe batch of the config check passes the limit, the trials' batches do not
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", "0.00001")
    space = {
        "optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "loss": {"type": "categorical", "choices": [{"name": "lambdaloss", "args": {"weighting": "ndcg_loss1"}}]},
    }
    with pytest.raises(ConfigError, match=r"none of the 2 trial\(s\) finished"):
        tune(_config(make_tiny, tmp_path, space=space), trials=2)
    rows = list(csv.DictReader((tmp_path / "runs" / "study" / "leaderboard.csv").open(encoding="utf-8")))
    assert [row["state"] for row in rows] == ["fail", "fail"]


def test_cli_tune_and_its_errors(make_tiny, tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(_config(make_tiny, tmp_path)), encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(app, ["tune", str(path), "--trials", "1", "--quiet"])
    assert done.exit_code == 0, done.output
    assert "best trial: vali" in done.stdout and (tmp_path / "runs" / "study" / "leaderboard.csv").is_file()
    again = runner.invoke(app, ["tune", str(path), "--trials", "1"])
    assert again.exit_code == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    monkeypatch.setitem(sys.modules, "optuna", None)  # an import of it now raises ImportError
    missing = runner.invoke(app, ["tune", str(path), "--trials", "1", "--overwrite"])
    assert missing.exit_code == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "ltrkit tune needs optuna: pip install 'ltrkit[tune]'" in lines[0]
