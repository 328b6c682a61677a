"""The embedding job end to end: the digits example beats raw pixels, exact resume, every
objective, the CLI (train, search, one-line errors with exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.embeddings.job import Embedder, resume_embeddings, train_embeddings
from ltrkit.embeddings.retrieval import similarity
from ltrkit.training import ConfigError

QUIET_OUTPUT = {"tensorboard": False, "plots": False}


def _write_items(path: Path, n_per_class: int, seed: int, *, classes: int = 4, features: int = 6) -> None:
    """Gaussian clusters, one per class, written as a CSV items table (id, label, f0..)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=2.0, size=(classes, features))
    lines = ["id,label," + ",".join(f"f{j}" for j in range(features))]
    for c in range(classes):
        for i in range(n_per_class):
            values = centres[c] + rng.normal(size=features)
            lines.append(f"{path.stem}-{c}-{i},c{c}," + ",".join(f"{v:.6f}" for v in values))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def items(tmp_path: Path) -> Dict[str, Path]:
    paths = {split: tmp_path / f"{split}.csv" for split in ("train", "vali", "test")}
    for seed, (split, path) in enumerate(paths.items()):
        _write_items(path, 16 if split == "train" else 8, seed)
    return paths


def _config(tmp_path: Path, items: Dict[str, Path], name: str = "run", **sections: Any) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "data": {split: str(path) for split, path in items.items()},
        "encoder": {"name": "mlp", "args": {"hidden_sizes": [16], "dim": 8, "dropout": 0.1}},
        "sampler": {"p": 4, "k": 4},
        "training": {"epochs": 3, "batch_size": 16},
        "early_stopping": {"metric": "map", "patience": None},
        "seed": 3,
        "num_threads": 1,
        "output": {"dir": str(tmp_path / "runs"), "name": name, **QUIET_OUTPUT},
    }
    config.update(sections)
    return config


def test_the_digits_example_beats_raw_pixels(tmp_path):
    result = train_embeddings(
        None,
        training={"epochs": 12},
        early_stopping={"patience": None},
        evaluation={"metrics": ["p@1", "map"]},
        num_threads=1,
        output={"dir": str(tmp_path), "name": "digits", "tensorboard": False},
    )
    test, raw = result.metrics["test"], result.baselines["raw_inputs"]["metrics"]["test"]
    untrained = result.baselines["untrained"]["metrics"]["test"]
    # 12 epochs, seeds 0/1/2: p@1 0.9917/0.9889/0.9833 against 0.9694 for raw pixels; map 0.97 against 0.65
    assert test["p@1"] > raw["p@1"] + 0.01 and test["p@1"] > untrained["p@1"]
    assert test["map"] > raw["map"] + 0.25
    run = result.run_dir
    assert (run / "projection.png").stat().st_size > 0 and (run / "curves.png").is_file()
    report = json.loads((run / "report.json").read_text())
    assert report["objective"] == "classes" and report["data"]["train"]["items"] == 1078
    assert "raw inputs test" in (run / "report.md").read_text()


def test_resume_continues_to_the_uninterrupted_weights(tmp_path, items):
    whole = train_embeddings(_config(tmp_path, items, "whole", training={"epochs": 4}))

    def interrupt(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embeddings(_config(tmp_path, items, "part", training={"epochs": 4}), on_epoch_end=interrupt)
    resumed = resume_embeddings(tmp_path / "runs" / "part")
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [r["vali_map"] for r in whole.history] == [r["vali_map"] for r in resumed.history]


def _write_table(path: Path, header: str, rows) -> None:
    path.write_text(header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))


def _train_ids(items: Dict[str, Path]):
    lines = items["train"].read_text().splitlines()[1:]
    return [(line.split(",")[0], line.split(",")[1]) for line in lines]


@pytest.mark.parametrize("loss", ["contrastive", "cosine_embedding"])
def test_pairs_objective(tmp_path, items, loss):
    ids = _train_ids(items)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(120):
        (a, ca), (b, cb) = (ids[int(i)] for i in rng.integers(0, len(ids), 2))
        rows.append((a, b, 1 if ca == cb else (0 if loss == "contrastive" else -1)))
    _write_table(tmp_path / "pairs.csv", "a,b,target", rows)
    config = _config(tmp_path, items, objective="pairs", loss={"name": loss, "args": {"margin": 0.5}})
    config["data"]["pairs"] = str(tmp_path / "pairs.csv")
    result = train_embeddings(config, training={"epochs": 4})
    assert result.metrics["test"]["map"] > result.baselines["untrained"]["metrics"]["test"]["map"]


@pytest.mark.parametrize("loss", [{"name": "triplet", "args": {"margin": 0.5}}, {"name": "margin_ranking", "args": {"margin": 0.3}}])
def test_triplets_objective(tmp_path, items, loss):
    ids = _train_ids(items)
    by_class: Dict[str, list] = {}
    for item, label in ids:
        by_class.setdefault(label, []).append(item)
    rng = np.random.default_rng(1)
    rows = []
    for item, label in ids * 3:
        others = [c for c in by_class if c != label]
        rows.append((item, rng.choice(by_class[label]), rng.choice(by_class[rng.choice(others)])))
    _write_table(tmp_path / "triplets.csv", "anchor,positive,negative", rows)
    config = _config(tmp_path, items, objective="triplets", loss=loss)
    config["data"]["triplets"] = str(tmp_path / "triplets.csv")
    result = train_embeddings(config, training={"epochs": 4})
    assert result.metrics["test"]["map"] > result.baselines["untrained"]["metrics"]["test"]["map"]


def test_starspace_ranks_the_true_class_entity(tmp_path, items):
    config = _config(
        tmp_path, items, objective="starspace", loss={"name": "margin_ranking", "args": {"margin": 0.2}},
        evaluation={"metrics": ["recall@1", "mrr"], "baselines": True},
    )
    result = train_embeddings(config, training={"epochs": 5, "starspace_negatives": 2}, optimizer={"lr": 0.01})
    # one true entity per item: recall@1 is hits@1
    assert result.metrics["test"]["recall@1"] >= 0.9
    assert result.metrics["test"]["mrr"] > result.baselines["untrained"]["metrics"]["test"]["mrr"]
    assert "raw_inputs" not in result.baselines
    embedder = Embedder.load(result.run_dir)
    assert embedder.model.entity_vectors().shape == (4, 8)


# --------------------------------------------------------------------------- CLI and bad inputs


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_trains_and_searches(tmp_path, items):
    config = tmp_path / "embed.json"
    config.write_text(json.dumps(_config(tmp_path, items, "cli")))
    result = _cli("embed", str(config), "-q")
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.stdout
    run = tmp_path / "runs" / "cli"
    out = tmp_path / "hits.tsv"
    result = _cli("embed", "search", "--run", str(run), "--index", str(items["train"]), "--query", str(items["test"]), "--k", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "query_id\trank\titem_id\tscore" and len(lines) == 1 + 32 * 3
    # the same neighbours as a brute-force cosine ranking of the run's embeddings
    from ltrkit.embeddings.data import load_items

    embedder = Embedder.load(run)
    index, queries = load_items(items["train"]), load_items(items["test"])
    scores = similarity(embedder.encode(queries), embedder.encode(index), "cosine")
    first = lines[1].split("\t")
    assert first[0] == queries.ids[0] and first[2] == index.ids[int(scores[0].argmax())]


def test_cli_faiss_search_states_its_recall(tmp_path, items):
    pytest.importorskip("faiss")
    train_embeddings(_config(tmp_path, items, "f", training={"epochs": 1}))
    result = _cli("embed", "search", "--run", str(tmp_path / "runs" / "f"), "--index", str(items["train"]), "--query", str(items["vali"]), "--backend", "faiss")
    assert result.exit_code == 0, result.output
    assert "faiss recall@10 against exact search: 1.0000" in result.stderr


def _one_line_error(result, pattern: str) -> None:
    import re

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines


def test_a_class_with_one_item_cannot_be_mined(tmp_path, items):
    with items["train"].open("a") as handle:
        handle.write("lonely,c9," + ",".join(["0.5"] * 6) + "\n")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(_config(tmp_path, items)))
    _one_line_error(_cli("embed", str(config)), r"train\.csv: class 'c9' has 1 item \(id 'lonely'\); triplet mining needs at least 2")


def test_a_pairs_file_with_an_unknown_id(tmp_path, items):
    ids = _train_ids(items)
    _write_table(tmp_path / "pairs.csv", "a,b,target", [(ids[0][0], ids[1][0], 1), (ids[2][0], "nobody", 0)])
    raw = _config(tmp_path, items, objective="pairs", loss={"name": "contrastive", "args": {}})
    raw["data"]["pairs"] = str(tmp_path / "pairs.csv")
    config = tmp_path / "p.json"
    config.write_text(json.dumps(raw))
    _one_line_error(_cli("embed", str(config)), r"pairs\.csv: line 3, column b: unknown id 'nobody'")


def test_nan_features(tmp_path, items):
    lines = items["vali"].read_text().splitlines()
    parts = lines[4].split(",")
    parts[5] = "nan"
    lines[4] = ",".join(parts)
    items["vali"].write_text("\n".join(lines) + "\n")
    config = tmp_path / "n.json"
    config.write_text(json.dumps(_config(tmp_path, items)))
    _one_line_error(_cli("embed", str(config)), r"data\.vali: .*vali\.csv: line 5, column f3: the feature is missing, NaN or infinite")
    assert not (tmp_path / "runs" / "run").exists()


def test_config_errors_are_listed_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        train_embeddings({"encoder": {"name": "mlp", "args": {"width": 3}}, "evaluation": {"metrics": ["err@10"]}, "training": {"epochs": 0}})
    text = "\n".join(info.value.errors)
    assert "training.epochs" in text and "unknown argument(s) ['width']" in text and "not a retrieval metric" in text
    with pytest.raises(ConfigError, match="objective 'classes' mines triplets"):
        train_embeddings({"loss": {"name": "triplet", "args": {}}})


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,label,f0\na,x,1\nb,x,zz\n", r"line 3, column f0: features must be numbers, got 'zz'"),
        ("id,label,f0\na,x,1\na,y,2\n", r"line 3, column id: id 'a' appears twice \(first at line 2\)"),
        ("id,label,f0\na,,1\n", r"line 2, column label: the label is missing"),
        ("id,label\na,x\n", r"no feature column"),
    ],
)
def test_bad_items_files(tmp_path, text, message):
    from ltrkit.embeddings.data import load_items

    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_items(path)


def test_bad_pair_and_triplet_tables(tmp_path, items):
    from ltrkit.embeddings.data import load_items, load_pairs, load_triplets

    train = load_items(items["train"])
    first, second = train.ids[0], train.ids[1]
    (tmp_path / "p.csv").write_text(f"a,b,target\n{first},{second},2\n")
    with pytest.raises(ValueError, match=r"p\.csv: line 2, column target: must be 1 \(similar\), 0 or -1"):
        load_pairs(tmp_path / "p.csv", train)
    (tmp_path / "t.csv").write_text(f"anchor,positive\n{first},{second}\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['negative'\]"):
        load_triplets(tmp_path / "t.csv", train)


# --------------------------------------------------------------------------- text items


def _write_text_items(path: Path, seed: int, *, n_per_class: int = 6) -> None:
    """Four classes, each drawing words from its own 8 of 24 words; a tokens column of ids too."""
    rng = np.random.default_rng(seed)
    lines = ["id,label,text,ids"]
    for c in range(4):
        for i in range(n_per_class):
            words = rng.choice([f"w{c * 6 + j}" for j in range(8)], size=int(rng.integers(3, 8)))
            lines.append(f"{path.stem}-{c}-{i},c{c},{' '.join(words).capitalize()},{c} {int(rng.integers(0, 9))}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def text_items(tmp_path: Path) -> Dict[str, Path]:
    paths = {split: tmp_path / f"t{split}.csv" for split in ("train", "vali", "test")}
    for seed, path in enumerate(paths.values()):
        _write_text_items(path, seed)
    return paths


def _text_config(tmp_path: Path, items: Dict[str, Path], name: str = "text", **sections: Any) -> Dict[str, Any]:
    text = {
        "data": {**{split: str(path) for split, path in items.items()}, "text_column": "text", "tokens_column": "ids", "vocabulary": {"min_count": 2}},
        "encoder": {"name": "bag_of_words", "args": {"token_dim": 8, "dim": 8}},
        "pretrain": {"epochs": 1},
        "evaluation": {"duplicates": True},
    }
    return _config(tmp_path, items, name, **{**text, **sections})


def test_text_items_train_search_and_report_tfidf(tmp_path, text_items):
    config = tmp_path / "text.json"
    config.write_text(json.dumps(_text_config(tmp_path, text_items)))
    assert _cli("embed", str(config), "-q").exit_code == 0
    run = tmp_path / "runs" / "text"
    vocabulary = json.loads((run / "vocabulary.json").read_text())
    # built on the training items only, lower-cased, min_count 2; token ids read as '#<id>'
    from ltrkit.embeddings.data import Vocabulary, load_items

    train = load_items(text_items["train"], text_column="text", tokens_column="ids")
    assert vocabulary == Vocabulary.build(train, min_count=2).to_dict() and "#0" in vocabulary["words"] and "w0" in vocabulary["words"]
    report = json.loads((run / "report.json").read_text())
    assert set(report["baselines"]) == {"tfidf", "untrained"} and "dup_f1" in report["metrics"]["test"]
    out = tmp_path / "hits.tsv"
    result = _cli("embed", "search", "--run", str(run), "--index", str(text_items["train"]), "--query", str(text_items["test"]), "--k", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    embedder = Embedder.load(run)
    index, queries = embedder.read_items(text_items["train"]), embedder.read_items(text_items["test"])
    scores = similarity(embedder.encode(queries), embedder.encode(index), "cosine")
    first = out.read_text().splitlines()[1].split("\t")
    assert first[0] == queries.ids[0] and first[2] == index.ids[int(scores[0].argmax())]


def test_text_items_bad_input(tmp_path, text_items):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(_text_config(tmp_path, text_items, data={"train": str(text_items["train"]), "text_column": "body"}, evaluation={}, early_stopping={"split": "train"})))
    _one_line_error(_cli("embed", str(config)), r"data\.train: .*ttrain\.csv: no column 'body' \(data\.text_column\)")
    config.write_text(json.dumps(_text_config(tmp_path, text_items, data={"train": str(text_items["train"]), "text_column": "text", "vocabulary": {"min_count": 1000}}, evaluation={}, early_stopping={"split": "train"})))
    _one_line_error(_cli("embed", str(config)), r"data\.vocabulary: .*empty vocabulary: no token occurs at least 1000 times")
    text_items["vali"].write_text(text_items["vali"].read_text() + "bad,c1,w1 w2,4 x\n")
    config.write_text(json.dumps(_text_config(tmp_path, text_items)))
    _one_line_error(_cli("embed", str(config)), r"tvali\.csv: line 26, column ids: token ids must be non-negative integers, got 'x'")
    assert not (tmp_path / "runs" / "text").exists()
    with pytest.raises(ConfigError, match="the bag_of_words encoder reads text items"):
        train_embeddings(_config(tmp_path, text_items, encoder={"name": "bag_of_words"}))
    with pytest.raises(ConfigError, match="pretrain.epochs: pre-training reconstructs bags of tokens"):
        train_embeddings(_config(tmp_path, text_items, pretrain={"epochs": 1}))
    result = _cli("embed", "--example", "news", str(config))
    assert result.exit_code == 2 and "--example is a config of its own" in result.stderr
    assert _cli("embed", "--example", "poems").exit_code == 2
