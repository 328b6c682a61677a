"""``ltrkit clicks simulate|fit|estimate-propensity`` end to end, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.clicks.log import read_click_log
from ltrkit.clicks.models import PBM
from ltrkit.clicks.simulate import simulate_log
from ltrkit.clicks.spec import load_click_spec
from ltrkit.data.cache import load_dataset

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TEST_FILE = DATA / "lightgbm-rank" / "test.txt"


def invoke(*args: str):
    return CliRunner().invoke(app, ["clicks", *map(str, args)])


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scores")
    data = load_dataset(TEST_FILE, cache=False)
    scores = np.random.default_rng(0).normal(size=data.n_docs)
    path = folder / "scores.txt"
    path.write_text("".join(f"{s!r}\n" for s in scores.tolist()))
    return data, scores, path


@pytest.fixture(scope="module")
def simulated(scored, tmp_path_factory):
    data, scores, path = scored
    out = tmp_path_factory.mktemp("sim")
    result = invoke("simulate", "--data", TEST_FILE, "--scores", path, "--model", "pbm", "--sessions", 20_000,
                    "--top-k", 5, "--seed", 3, "--intervention", "topk_shuffle", "--out", out, "--no-cache")
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_the_library_log(scored, simulated):
    data, scores, _ = scored
    sessions, info = read_click_log(simulated / "clicks.parquet", data)
    expected, _ = simulate_log(data, scores, load_click_spec("pbm"), sessions=20_000, top_k=5, seed=3, intervention="topk_shuffle")
    assert np.array_equal(sessions.docs, expected.docs) and np.array_equal(sessions.clicks, expected.clicks)
    meta = json.loads((simulated / "simulation.json").read_text())
    assert meta["sessions"] == 20_000 and meta["intervention"] == "topk_shuffle" and meta["propensities"] is True
    assert load_dataset(simulated / "train.txt", cache=False).n_docs == len((simulated / "train.positions.csv").read_text().splitlines()) - 1


def test_fit_and_estimate_propensity(simulated, tmp_path):
    out = tmp_path / "pbm.json"
    result = invoke("fit", "--log", simulated / "clicks.parquet", "--model", "pbm", "--out", out, "--data", TEST_FILE)
    assert result.exit_code == 0, result.output
    params = json.loads(out.read_text())
    sessions, _ = read_click_log(simulated / "clicks.parquet")
    train, held_out = sessions.split(0.2, seed=0)
    model = PBM().fit(train)
    assert params["relative_propensities"] == pytest.approx(model.relative_propensities_.tolist())
    assert params["evaluation"]["log_likelihood"] == pytest.approx(model.log_likelihood(held_out))
    assert params["evaluation"]["sessions"] == held_out.n_sessions
    # 20,000 shuffled sessions: the propensities 1/r come back within a few hundredths
    assert np.abs(np.array(params["relative_propensities"]) - 1 / np.arange(1, 6)).max() < 0.06
    result = invoke("estimate-propensity", "--log", simulated / "clicks.parquet", "--method", "randomization")
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)["relative_propensities"]
    assert np.abs(np.array(estimate) - 1 / np.arange(1, 6)).max() < 0.06
    result = invoke("estimate-propensity", "--log", simulated / "clicks.parquet", "--method", "regression_em",
                    "--data", TEST_FILE, "--out", tmp_path / "em.json", "--max-iterations", 3)
    assert result.exit_code == 0, result.output
    em = json.loads((tmp_path / "em.json").read_text())
    assert len(em["relative_propensities"]) == 5 and em["iterations"] == 3


@pytest.mark.parametrize("model", ["cm", "dcm", "ubm", "dbn", "sdbn"])
def test_fit_every_model(simulated, model):
    result = invoke("fit", "--log", simulated / "clicks.parquet", "--model", model, "--max-iterations", 20)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["model"] == model and 1.0 <= payload["evaluation"]["perplexity"] < 2.0


def test_simulate_with_a_trained_run_and_a_spec_file(tmp_path):
    import ltrkit
    from ltrkit.training import Ranker

    config = {
        "data": {"train": str(TEST_FILE), "vali": str(TEST_FILE)},
        "model": {"name": "linear"}, "training": {"epochs": 1}, "num_threads": 1,
        "evaluation": {"baselines": False},
        "output": {"dir": str(tmp_path / "runs"), "name": "r", "tensorboard": False, "plots": False},
    }
    run = ltrkit.train(config).run_dir
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: max_clicks\nmax_clicks: 1\nmodel:\n  name: dbn\n  gamma: 0.8\n")
    out = tmp_path / "sim"
    result = invoke("simulate", "--run", run, "--data", TEST_FILE, "--model", spec, "--sessions", 500, "--top-k", 4,
                    "--out", out, "--format", "csv", "--label", "clicks")
    assert result.exit_code == 0, result.output
    sessions, info = read_click_log(out / "clicks.csv")
    assert "propensity" not in info["columns"] and (sessions.clicks.sum(axis=1) <= 1).all()
    data = load_dataset(TEST_FILE, cache=False)
    scores = Ranker.load(run).predict(data)
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(str(out / "clicks.csv"))
    np.testing.assert_allclose(table.column("score").to_numpy(), scores[table.column("doc").to_numpy()], rtol=1e-6)


def test_simulate_errors(scored, simulated, tmp_path):
    _, _, path = scored
    base = ["--data", TEST_FILE, "--model", "pbm", "--out", tmp_path / "new", "--no-cache"]
    one_line_error(invoke("simulate", *base), "give exactly one of --run DIR and --scores FILE")
    one_line_error(invoke("simulate", *base, "--scores", path, "--run", tmp_path), "give exactly one of")
    one_line_error(invoke("simulate", *base, "--scores", path, "--sessions", 0), "--sessions must be >= 1")
    short = tmp_path / "short.txt"
    short.write_text("1\n2\n")
    one_line_error(invoke("simulate", *base, "--scores", short), "has 2 scores but --data")
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(json.dumps({"name": "pbm", "eta": -1, "extra": 1}))
    result = invoke("simulate", "--data", TEST_FILE, "--model", bad_spec, "--scores", path, "--out", tmp_path / "new")
    one_line_error(result, f"{bad_spec} has 2 error(s)")
    assert "eta: Input should be greater than or equal to 0" in result.stderr and "extra: unknown field" in result.stderr
    one_line_error(invoke("simulate", *base, "--scores", path, "--intervention", "shuffle"), "must be one of")
    one_line_error(invoke("simulate", "--data", TEST_FILE, "--model", "pbm", "--out", simulated, "--scores", path),
                   "already holds a simulation; pass --overwrite")
    assert not (tmp_path / "new").exists()


def test_log_errors(simulated, tmp_path):
    one_line_error(invoke("fit", "--log", tmp_path / "absent.parquet", "--model", "pbm"), "no such click log")
    bad = tmp_path / "bad.csv"
    bad.write_text("session,qid,doc,position,clicked,propensity\n0,1001,0,1,1,1.0\n0,1001,1,2,0,0\n")
    one_line_error(invoke("fit", "--log", bad, "--model", "pbm"), f"{bad}: row 2, column 'propensity': must be a finite number in (0, 1]")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("session,qid,doc,position,clicked\n0,9999,0,1,1\n")
    one_line_error(invoke("fit", "--log", unknown, "--model", "pbm", "--data", TEST_FILE), "row 1, column 'qid': unknown qid '9999'")
    one_line_error(invoke("estimate-propensity", "--log", simulated / "clicks.parquet", "--method", "regression_em"),
                   "--method regression_em needs --data")
    plain = tmp_path / "plain.csv"
    plain.write_text("session,qid,doc,position,clicked,logging_rank\n0,1001,0,1,1,1\n0,1001,1,2,0,2\n")
    one_line_error(invoke("estimate-propensity", "--log", plain, "--method", "randomization"), "no randomised impressions link rank 2")
    one_line_error(invoke("fit", "--log", plain, "--model", "pbm", "--holdout", 1.5), "--holdout must be in [0, 1)")
