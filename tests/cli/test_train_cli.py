"""``ltrkit train``, ``ltrkit predict`` and ``ltrkit config`` through the CLI (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.data.letor import write_letor
from ltrkit.data.synthetic import generate_splits
from ltrkit.training import Ranker, load_config
from ltrkit.training.config import TrainConfig

SYNTHETIC = {"train_queries": 30, "vali_queries": 10, "test_queries": 10, "n_features": 9, "mean_list_length": 10.0, "max_list_length": 25, "seed": 5}


def _runner() -> CliRunner:
    return CliRunner()


def _tiny_args(out: Path, name: str = "cli") -> list[str]:
    return [
        "--set", f"data.synthetic={json.dumps(SYNTHETIC)}",
        "--set", "model.args.hidden_sizes=[8]",
        "--set", "training.epochs=2",
        "--set", "training.batch_size=8",
        "--set", "num_threads=1",
        "--set", "output.tensorboard=false",
        "--set", "output.plots=false",
        "--set", f"output.dir={out}",
        "--name", name,
    ]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = _runner().invoke(app, ["train", *_tiny_args(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out / "cli"


def test_train_quiet_prints_one_summary_line(trained_run):
    assert (trained_run / "report.json").is_file()
    result = _runner().invoke(app, ["train", *_tiny_args(trained_run.parent, "again"), "--quiet"])
    assert result.exit_code == 0
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "best epoch" in lines[0] and "test ndcg@10=" in lines[0]


def test_train_shows_tables_when_not_quiet(tmp_path):
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.stdout and "random" in result.stdout and "feature" in result.stdout


def test_train_refuses_existing_run_then_overwrites(trained_run):
    result = _runner().invoke(app, ["train", *_tiny_args(trained_run.parent), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--set", "loss.name=lambdarnk"], "loss.name: unknown list loss 'lambdarnk'"),
        (["--set", "training.epochs=0", "--set", "optimizer.name=rms"], "optimizer.name: Input should be 'adamw', 'adam' or 'sgd' (got 'rms'); training.epochs: Input should be greater than or equal to 1 (got 0)"),
        (["--set", "data.synthetic=null", "--set", "data.train=/no/such/file.txt"], "data.train: file not found: '/no/such/file.txt'"),
        (["--set", "training.epochs"], "must look like key.path=value"),
    ],
)
def test_train_bad_input_exits_2_with_one_line(tmp_path, args, match):
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), *args, "--quiet"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert match in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("limit", "match"), [("0.00001", "lambdaloss: a batch of 8 list(s)"), ("lots", "LTRKIT_PAIR_MEMORY_GIB must be a positive number")])
def test_a_batch_too_large_for_a_quadratic_loss_exits_2_with_one_line(tmp_path, monkeypatch, limit, match):
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", limit)
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--set", 'loss.args={"weighting": "ndcg_loss1"}', "--quiet"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert match in result.stderr and "Traceback" not in result.output


def test_train_from_a_config_file_and_missing_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"training": {"epochs": 1}, "data": {"synthetic": SYNTHETIC}, "model": {"name": "linear"}}))
    result = _runner().invoke(app, ["train", str(config), "--set", f"output.dir={tmp_path}", "--name", "y", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "y" / "config.resolved.json").read_text())["model"]["name"] == "linear"
    result = _runner().invoke(app, ["train", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "file not found" in result.stderr


def test_regression_gate_exit_code(tmp_path):
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--set", 'expected={"test": {"ndcg@10": 1.5}}', "--quiet"])
    assert result.exit_code == 1
    assert "regression gate failed" in result.stderr and "test ndcg@10" in result.stderr
    assert (tmp_path / "cli" / "report.json").is_file()


def test_resume_via_cli(trained_run, tmp_path):
    result = _runner().invoke(app, ["train", "--resume", str(trained_run), "--set", "training.epochs=3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((trained_run / "history.json").read_text())) == 3
    result = _runner().invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "run folder not found" in result.stderr
    result = _runner().invoke(app, ["train", "some.json", "--resume", str(trained_run)])
    assert result.exit_code == 2 and "not both" in result.stderr


def _test_file(folder: Path, n_features: int = 9) -> tuple[Path, object]:
    test = generate_splits(**{**SYNTHETIC, "n_features": max(n_features, 8)})["test"]
    if n_features < test.n_features:
        from ltrkit.data.dataset import RankingDataset

        test = RankingDataset(test.features[:, :n_features].copy(), test.labels, test.query_offsets, test.qids)
    path = folder / "test.txt"
    write_letor(test, path)
    return path, test


def test_predict_scores_and_trec(trained_run, tmp_path):
    path, test = _test_file(tmp_path)
    out = tmp_path / "scores.txt"
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = np.loadtxt(out)
    assert scores.shape == (test.n_docs,)
    np.testing.assert_allclose(scores, Ranker.load(trained_run).predict(test), rtol=1e-6, atol=1e-7)

    trec = tmp_path / "run.trec"
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(trec), "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    lines = trec.read_text().splitlines()
    assert len(lines) == test.n_docs and lines[0].split()[1] == "Q0"

    # `ltrkit evaluate` reads what predict wrote
    result = _runner().invoke(app, ["evaluate", "--data", str(path), "--scores", str(out), "--metrics", "ndcg@10", "--json"])
    assert result.exit_code == 0, result.output
    from ltrkit.metrics import evaluate_dataset

    assert json.loads(result.stdout)["mean"]["ndcg@10"] == pytest.approx(evaluate_dataset(test, scores, ["ndcg@10"]).mean["ndcg@10"], abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--checkpoint", "final"], "checkpoint must be 'best' or 'last'"),
        (["--format", "csv"], "--format must be 'scores' or 'trec'"),
    ],
)
def test_predict_bad_options(trained_run, tmp_path, extra, match):
    path, _ = _test_file(tmp_path)
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(tmp_path / "s.txt"), *extra])
    assert result.exit_code == 2 and match in result.stderr


def test_predict_feature_count_mismatch(trained_run, tmp_path):
    # a dense file with more features than the model: an index beyond the trained count
    test = generate_splits(**{**SYNTHETIC, "n_features": 12})["test"]
    path = tmp_path / "wide.txt"
    write_letor(test, path)
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(tmp_path / "s.txt")])
    assert result.exit_code == 2
    assert "wide.txt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = _runner().invoke(app, ["predict", "--run", str(tmp_path), "--data", str(path), "--out", str(tmp_path / "s.txt")])
    assert result.exit_code == 2 and "config.resolved.json is missing" in result.stderr


def test_config_show_json_and_yaml(tmp_path):
    result = _runner().invoke(app, ["config", "show", "--set", "training.epochs=7"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["training"]["epochs"] == 7
    assert TrainConfig.model_validate(shown) == load_config({"training": {"epochs": 7}})
    result = _runner().invoke(app, ["config", "show", str(Path(__file__).resolve().parents[2] / "configs" / "mq2008.json"), "--format", "yaml"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["data"]["n_features"] == 46
    result = _runner().invoke(app, ["config", "show", "--set", "model.name=nope"])
    assert result.exit_code == 2 and "model.name: unknown model 'nope'" in result.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_init_writes_a_loadable_default(tmp_path, suffix):
    path = tmp_path / f"my{suffix}"
    result = _runner().invoke(app, ["config", "init", str(path)])
    assert result.exit_code == 0
    assert load_config(path) == TrainConfig()
    if suffix == ".yaml":
        assert "# peak learning rate" in path.read_text()
    result = _runner().invoke(app, ["config", "init", str(path)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    result = _runner().invoke(app, ["config", "init", str(tmp_path / "x.toml")])
    assert result.exit_code == 2 and "suffix" in result.stderr


def test_config_schema_is_json():
    result = _runner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert "properties" in json.loads(result.stdout)


def test_interrupt_keeps_the_last_epoch_and_exits_130(tmp_path, monkeypatch):
    from ltrkit.training import trainer

    real_epoch = trainer._Session._train_epoch

    def interrupt_second_epoch(self, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, *args)

    monkeypatch.setattr(trainer._Session, "_train_epoch", interrupt_second_epoch)
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--quiet"])
    assert result.exit_code == 130
    assert "--resume" in result.stderr
    run = tmp_path / "cli"
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "report.json").exists()
    monkeypatch.setattr(trainer._Session, "_train_epoch", real_epoch)
    result = _runner().invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert [record["epoch"] for record in json.loads((run / "history.json").read_text())] == [1, 2]


def test_predict_missing_data_file(trained_run, tmp_path):
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(tmp_path / "none.txt"), "--out", str(tmp_path / "s.txt")])
    assert result.exit_code == 2 and "--data: file not found" in result.stderr and "none.txt" in result.stderr
    assert not (tmp_path / "s.txt").exists()


# --------------------------------------------------------------------------- names, devices, outputs


@pytest.mark.parametrize("name", ["two words", "line\nbreak", "a/b", "-dash"])
def test_train_rejects_a_bad_name_before_anything_runs(tmp_path, name):
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--name", name, "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --name: must be a plain folder name") and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_train_device_flag(tmp_path):
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--device", "tpu", "--quiet"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path), "--set", "device=cuda:7", "--device", "cpu", "--set", "training.epochs=1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "report.json").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "cli" / "config.resolved.json").read_text())["device"] == "cpu"


def test_predict_to_stdout(trained_run, tmp_path, monkeypatch):
    path, test = _test_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", "-"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.array(result.stdout.split(), dtype=float), Ranker.load(trained_run).predict(test), rtol=1e-6, atol=1e-7)
    assert not (tmp_path / "-").exists()
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", "-", "--format", "trec", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == test.n_docs and all(line.split()[1] == "Q0" for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "test.txt.ltrcache"]
    result = _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", "-", "--device", "gpu"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --device:")


def test_predict_reading_options(trained_run, tmp_path):
    path, test = _test_file(tmp_path)
    expected = Ranker.load(trained_run).predict(test)

    def predict(*options):
        return _runner().invoke(app, ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(tmp_path / "s.txt"), *options])

    assert predict("--no-cache").exit_code == 0 and not (tmp_path / "test.txt.ltrcache").exists()
    result = predict("--cache-dir", str(tmp_path / "caches"))
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "caches").iterdir()) and not (tmp_path / "test.txt.ltrcache").exists()
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.txt"), expected, rtol=1e-6, atol=1e-7)

    # a 0-based file read as 1-based: the option reaches the parser
    write_letor(test, path, index_base=0)
    result = predict("--no-cache", "--index-base", "1")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "test.txt" in result.stderr
    assert predict("--no-cache", "--index-base", "0").exit_code == 0
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.txt"), expected, rtol=1e-6, atol=1e-7)

    # the rows of one qid split in two: an error unless --regroup
    lines = path.read_text().splitlines()
    first = [line for line in lines if f"qid:{test.qids[0]} " in line]
    rest = [line for line in lines if line not in first]
    path.write_text("\n".join(first[:1] + rest + first[1:]) + "\n")
    result = predict("--no-cache")
    assert result.exit_code == 2 and "test.txt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert predict("--no-cache", "--regroup", "--index-base", "0").exit_code == 0


def test_config_init_overwrite_and_its_old_spelling(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    assert _runner().invoke(app, ["config", "init", str(path), "--overwrite"]).exit_code == 0
    assert load_config(path) == TrainConfig()
    path.write_text("{}")
    assert _runner().invoke(app, ["config", "init", str(path), "--force"]).exit_code == 0
    assert load_config(path) == TrainConfig()
    assert "--force" not in _runner().invoke(app, ["config", "init", "--help"]).stdout


def test_predict_missing_values(trained_run, tmp_path):
    path, test = _test_file(tmp_path)
    lines = path.read_text().splitlines()
    label, qid, first, *rest = lines[0].split()
    lines[0] = " ".join([label, qid, first.split(":")[0] + ":NULL", *rest])
    path.write_text("\n".join(lines) + "\n")
    args = ["predict", "--run", str(trained_run), "--data", str(path), "--out", str(tmp_path / "s.txt"), "--no-cache"]
    result = _runner().invoke(app, args)
    assert result.exit_code == 2 and "line 1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = _runner().invoke(app, [*args, "--missing", "zero"])
    assert result.exit_code == 0, result.output
    zeroed = test.features.copy()
    zeroed[0, int(first.split(":")[0]) - 1] = 0.0
    expected = Ranker.load(trained_run).predict(type(test)(zeroed, test.labels, test.query_offsets, test.qids))
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.txt"), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_damaged_checkpoints_are_one_line_errors(trained_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for which in ("best", "last"):
        path = run / "checkpoints" / f"{which}.pt"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3] if damage is None else damage)
    path, _ = _test_file(tmp_path)
    result = _runner().invoke(app, ["predict", "--run", str(run), "--data", str(path), "--out", str(tmp_path / "s.txt")])
    assert result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.stderr.startswith("error: predict: ") and "best.pt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.txt").exists()
    result = _runner().invoke(app, ["train", "--resume", str(run), "--set", "training.epochs=5", "--quiet"])
    assert result.exit_code == 2 and "last.pt" in result.stderr and "cannot resume from it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_verify_cache_reaches_the_loader(tmp_path, monkeypatch):
    import ltrkit.data.cache as cache

    seen = []
    real = cache.load_dataset

    def spy(path, **options):
        seen.append(options["verify"])
        return real(path, **options)

    monkeypatch.setattr(cache, "load_dataset", spy)
    path, _ = _test_file(tmp_path)
    data = f'data={{"train": "{path}", "vali_fraction": 0.3, "verify_cache": true}}'
    result = _runner().invoke(app, ["train", *_tiny_args(tmp_path / "runs"), "--set", "data.synthetic=null", "--set", data, "--set", "training.epochs=1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen == [True]
