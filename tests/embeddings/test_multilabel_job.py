"""Multi-label items in the embedding job: a labels column read from CSV and Parquet, vali/test
metrics by shared labels (against pytrec_eval and against retrieval_metrics on the saved
embeddings), the checks of which split needs what, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.embeddings import multi_hot, retrieval_metrics
from ltrkit.embeddings.data import load_items
from ltrkit.embeddings.job import Embedder, train_embeddings
from ltrkit.training import ConfigError

FEATURES = 4
# "fresh" is a test label the training items never carry
TEST_TAGS = ["t0", "t0|x", "t1", "t1|y", "t2", "t2|x", "t3", "t3|y"] * 2 + ["fresh", "fresh|t1", "", "y|t2"]
METRICS = {"p@5": "P_5", "recall@5": "recall_5", "map": "map", "mrr": "recip_rank", "ndcg@10": "ndcg_cut_10"}


def _write_items(path: Path, tags: List[str], seed: int, *, with_class: bool) -> None:
    """Gaussian clusters: an item's features are the mean of the centres of its ``t*`` tags."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(scale=2.0, size=(4, FEATURES))
    header = ["id"] + (["label"] if with_class else []) + ["tags"] + [f"f{j}" for j in range(FEATURES)]
    lines = [",".join(header)]
    for row, cell in enumerate(tags):
        own = [int(tag[1]) for tag in cell.split("|") if tag.startswith("t")]
        values = (centres[own].mean(0) if own else np.zeros(FEATURES)) + rng.normal(size=FEATURES)
        first = [f"{path.stem}{row}"] + ([f"c{own[0]}"] if with_class else []) + [cell]
        lines.append(",".join(first + [f"{v:.6f}" for v in values]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def items(tmp_path: Path) -> Dict[str, Path]:
    paths = {split: tmp_path / f"{split}.csv" for split in ("train", "vali", "test")}
    _write_items(paths["train"], [f"t{c}" + ("|x" if i % 3 == 0 else "") for c in range(4) for i in range(8)], 0, with_class=True)
    # vali and test carry no class column: the labels stand in for it
    _write_items(paths["vali"], TEST_TAGS[:16], 1, with_class=False)
    _write_items(paths["test"], TEST_TAGS, 2, with_class=False)
    return paths


def _config(tmp_path: Path, items: Dict[str, Path], **data: Any) -> Dict[str, Any]:
    return {
        "data": {**{split: str(path) for split, path in items.items()}, "labels_column": "tags", **data},
        "encoder": {"name": "mlp", "args": {"hidden_sizes": [8], "dim": 4}},
        "sampler": {"p": 4, "k": 4},
        "training": {"epochs": 2},
        "evaluation": {"metrics": list(METRICS)},
        "early_stopping": {"metric": "map", "patience": None},
        "num_threads": 1,
        "output": {"dir": str(tmp_path / "runs"), "name": "run", "tensorboard": False, "plots": False},
    }


def _tag_sets(path: Path) -> List[set]:
    with path.open(newline="") as handle:
        return [{tag for tag in row["tags"].split("|") if tag} for row in csv.DictReader(handle)]


def _pytrec_means(vectors: np.ndarray, tags: List[set]) -> Dict[str, float]:
    """Every item queries the others by float64 cosine; relevant = a shared tag; a query without a
    relevant item counts 0 (pytrec_eval leaves it out of its per-query results)."""
    import pytrec_eval

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit.T
    n = len(tags)
    qrels = {f"q{i}": {f"d{j}": 1 for j in range(n) if j != i and tags[i] & tags[j]} for i in range(n)}
    qrels = {query: judged for query, judged in qrels.items() if judged}
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(n) if j != i} for i in range(n)}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(METRICS.values())).evaluate(run)
    return {ours: sum(values[theirs] for values in per_query.values()) / n for ours, theirs in METRICS.items()}


def test_vali_and_test_metrics_are_those_of_shared_labels(tmp_path, items):
    result = train_embeddings(_config(tmp_path, items))
    embedder = Embedder.load(result.run_dir)
    test_tags = _tag_sets(items["test"])
    test = embedder.read_items(items["test"])
    for name, value in _pytrec_means(embedder.encode(test).double().numpy(), test_tags).items():
        assert result.metrics["test"][name] == pytest.approx(value, abs=1e-9), name
    raw = result.baselines["raw_inputs"]["metrics"]["test"]
    for name, value in _pytrec_means(test.inputs.double().numpy(), test_tags).items():
        assert raw[name] == pytest.approx(value, abs=1e-9), name
    vali_labels, _ = multi_hot([sorted(tags) for tags in _tag_sets(items["vali"])])
    vali = retrieval_metrics(embedder.encode(embedder.read_items(items["vali"])), vali_labels, list(METRICS)).means
    assert result.metrics["vali"] == pytest.approx(vali, abs=1e-12)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["data"]["test"]["labels"] == 7 and report["data"]["test"]["classes"] == 0


def test_label_cells_of_csv_and_parquet(tmp_path):
    (tmp_path / "a.csv").write_text('id,tags,f0\na, y | x ,1\nb,,2\nc,"x,z|x",3\nd,w,4\n')
    items = load_items(tmp_path / "a.csv", labels_column="tags", label_names=["y", "x"])
    # the given vocabulary first, then this file's new labels sorted; repeats count once
    assert items.label_names == ["y", "x", "w", "x,z"]
    assert items.labels.int().tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]
    assert items.n_inputs == 1 and items.inputs[:, 0].tolist() == [1, 2, 3, 4]
    # numbers are labels too: the column is read as text, not as integers
    (tmp_path / "n.csv").write_text("id,tags,f0\na,1,1\nb,1|2,2\n")
    assert load_items(tmp_path / "n.csv", labels_column="tags").label_names == ["1", "2"]
    for cells in (pa.array([["y", "x"], [], ["x,z", "x"], ["w"]]), pa.array(["y|x", None, "x,z|x", "w"])):
        pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "tags": cells, "f0": [1.0, 2.0, 3.0, 4.0]}), tmp_path / "a.parquet")
        parquet = load_items(tmp_path / "a.parquet", labels_column="tags", label_names=["y", "x"])
        assert parquet.label_names == items.label_names and parquet.labels.equal(items.labels)
    # a file that is only searched may lack the labels column
    (tmp_path / "plain.csv").write_text("id,f0,f1\na,1,2\n")
    searched = load_items(tmp_path / "plain.csv", labels_column="tags", labels_required=False)
    assert searched.labels is None and searched.n_inputs == 2


@pytest.mark.parametrize(
    "cells, message",
    [
        (["a||b"], r"line 2, column tags: an empty label in 'a\|\|b'"),
        (["a", "b|"], r"line 3, column tags: an empty label in 'b\|'"),
    ],
)
def test_bad_label_cells(tmp_path, cells, message):
    path = tmp_path / "items.csv"
    path.write_text("id,tags,f0\n" + "".join(f"{row},{cell},1\n" for row, cell in enumerate(cells)))
    with pytest.raises(ValueError, match=message):
        load_items(path, labels_column="tags")


def test_bad_parquet_labels_and_a_missing_column(tmp_path):
    pq.write_table(pa.table({"tags": pa.array([[1], [2]]), "f0": [1.0, 2.0]}), tmp_path / "i.parquet")
    with pytest.raises(ValueError, match=r"i\.parquet: row 0, column tags: labels must be strings joined by '\|' or a list of strings, got \[1\]"):
        load_items(tmp_path / "i.parquet", labels_column="tags")
    with pytest.raises(ValueError, match=r"i\.parquet: no column 'topics' \(data\.labels_column\)"):
        load_items(tmp_path / "i.parquet", labels_column="topics")


def _one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines


def test_cli_bad_label_cell_and_missing_labels_exit_2(tmp_path, items):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(_config(tmp_path, items)))
    with items["test"].open("a") as handle:
        handle.write("bad,t1||x," + ",".join(["0.5"] * FEATURES) + "\n")
    _one_line_error(CliRunner().invoke(app, ["embed", str(config)]), r"data\.test: .*test\.csv: line 22, column tags: an empty label in 't1\|\|x'")
    config.write_text(json.dumps(_config(tmp_path, items, labels_column="topics")))
    _one_line_error(CliRunner().invoke(app, ["embed", str(config)]), r"data\.train: .*train\.csv: no column 'topics' \(data\.labels_column\)")
    assert not (tmp_path / "runs" / "run").exists()


def _without(path: Path, columns: List[str]) -> Path:
    """A copy of the CSV ``path`` without ``columns``."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [j for j, name in enumerate(rows[0]) if name not in columns]
    out = path.with_name(f"{path.stem}_without_{'_'.join(columns)}.csv")
    out.write_text("".join(",".join(row[j] for j in keep) + "\n" for row in rows))
    return out


def test_which_split_needs_classes(tmp_path, items):
    bare = {"train": _without(items["train"], ["tags"]), "vali": _without(items["vali"], ["tags"])}
    raw = _config(tmp_path, bare)
    del raw["data"]["labels_column"]
    with pytest.raises(ConfigError, match=r"vali_without_tags\.csv has no 'label' column \(nor data\.labels_column\); retrieval metrics need classes or labels"):
        train_embeddings(raw)
    no_class = {**items, "train": _without(items["train"], ["label"])}
    with pytest.raises(ConfigError, match=r"train_without_label\.csv has no 'label' column; objective 'classes' trains on the classes"):
        train_embeddings(_config(tmp_path, no_class))
    with pytest.raises(ConfigError, match="has no 'label' column; evaluation.duplicates calls items of one class duplicates"):
        train_embeddings({**_config(tmp_path, items), "evaluation": {"duplicates": True}})
    starspace = {**_config(tmp_path, items), "objective": "starspace", "loss": {"name": "margin_ranking", "args": {}}}
    with pytest.raises(ConfigError, match="data.labels_column: StarSpace ranks each item's class entity"):
        train_embeddings(starspace)
    with pytest.raises(ConfigError, match="data.labels_column: 'label' is already the id, class, text or tokens column"):
        train_embeddings(_config(tmp_path, items, labels_column="label"))
