"""``ltrkit evaluate --multilabel --scores S --targets T`` against scikit-learn, and its errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.metrics import coverage_error, label_ranking_average_precision_score, label_ranking_loss
from typer.testing import CliRunner

from ltrkit.cli.main import app


def invoke(*args: object):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def write(path, matrix, fmt="{!r}"):
    path.write_text("".join(" ".join(fmt.format(v) for v in row) + "\n" for row in matrix.tolist()) + "\n")
    return path


@pytest.fixture
def matrices(tmp_path):
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 4, size=(40, 6)).astype(float)  # integer scores: many ties
    scores[::3] += rng.normal(size=(14, 6))
    targets = (rng.random((40, 6)) < 0.35).astype(int)
    targets[0] = 0  # no relevant label
    targets[1] = 1  # every label relevant
    return scores, targets, write(tmp_path / "scores.txt", scores), write(tmp_path / "targets.txt", targets, "{}")


def test_json_equals_scikit_learn(matrices):
    scores, targets, scores_path, targets_path = matrices
    result = invoke("--multilabel", "--scores", scores_path, "--targets", targets_path, "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["items"], payload["labels"]) == (40, 6)
    assert payload["mean"]["label_ranking_loss"] == pytest.approx(label_ranking_loss(targets, scores), abs=1e-12)
    assert payload["mean"]["coverage_error"] == pytest.approx(coverage_error(targets, scores), abs=1e-12)
    assert payload["mean"]["label_ranking_average_precision"] == pytest.approx(
        label_ranking_average_precision_score(targets, scores), abs=1e-12
    )


def test_table(matrices):
    _, _, scores_path, targets_path = matrices
    result = invoke("--multilabel", "--scores", scores_path, "--targets", targets_path)
    assert result.exit_code == 0, result.stderr
    for text in ("40 items, 6 labels", "label_ranking_loss", "coverage_error", "label_ranking_average_precision"):
        assert text in result.stdout


@pytest.mark.parametrize(
    "scores, targets, extra, message",
    [
        ("1 2\n3 4\n", "1 0\n0 1 1\n", (), r"^error: {t}:2: 3 values, but line 1 has 2; every row needs one value per label$"),
        ("1 2\n3 x\n", "1 0\n0 1\n", (), r"^error: {s}:2: 'x' is not a number$"),
        ("1 2\n3 nan\n", "1 0\n0 1\n", (), r"^error: {s}:2: values must be finite, got 'nan'$"),
        ("1 2\n3 4\n", "1 0\n0 0.5\n", (), r"^error: {t}:2: targets must be 0 or 1 \(1 = relevant\), got '0.5'$"),
        ("1 2\n3 4\n5 6\n", "1 0\n0 1\n", (), r"^error: {t}:3: no row here, but --scores {s} has 3 rows and --targets {t} 2"),
        ("1 2 3\n3 4 5\n", "1 0\n0 1\n", (), r"^error: {t}:1: 2 labels, but {s}:1 has 3; give one column per label in both$"),
        ("1 2\n\n3 4\n", "1 0\n0 1\n1 1\n", (), r"^error: {s}:2: 0 values, but line 1 has 2"),
        ("", "1 0\n", (), r"^error: {s}: no rows; give one row of values per item$"),
        ("1 2\n", "1 0\n", ("--metrics", "ndcg"), r"^error: --multilabel takes --scores and --targets only, not --metrics$"),
    ],
)
def test_bad_matrices_name_the_file_and_line(tmp_path, scores, targets, extra, message):
    (tmp_path / "s.txt").write_text(scores)
    (tmp_path / "t.txt").write_text(targets)
    result = invoke("--multilabel", "--scores", tmp_path / "s.txt", "--targets", tmp_path / "t.txt", *extra)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    pattern = message.format(s=re.escape(str(tmp_path / "s.txt")), t=re.escape(str(tmp_path / "t.txt")))
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr


def test_targets_need_multilabel(tmp_path):
    (tmp_path / "t.txt").write_text("1 0\n")
    result = invoke("--scores", tmp_path / "t.txt", "--targets", tmp_path / "t.txt")
    assert result.exit_code == 2 and result.stderr == "error: --targets applies to --multilabel only\n"
