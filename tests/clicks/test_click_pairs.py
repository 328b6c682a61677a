"""Joachims' click preference pairs as training data (``data.train_clicks.pairs``): the pair loss
against explicit per-pair costs and finite differences, the aggregated lists against per-session
pairs, what the pairs learn from a log, and one-line errors for combinations that do not apply."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ltrkit.cli.main import app
from ltrkit.clicks.log import read_click_log
from ltrkit.clicks.simulate import write_simulation
from ltrkit.clicks.spec import load_click_spec
from ltrkit.clicks.task import ClickLoss, aggregate_sessions, train_on_clicks
from ltrkit.clicks.unbiased import click_preference_pairs, preference_pair_loss
from ltrkit.data.cache import load_dataset
from ltrkit.data.synthetic import generate_splits, write_splits
from ltrkit.data.dataset import pad_ragged
from ltrkit.metrics.functional import ndcg
from ltrkit.training.checkpoint import load_checkpoint

pytest.importorskip("pyarrow")

TOP_K = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic LETOR files (columns 0..7 carry the relevance, 8 and 9 are noise) and cascade logs
    of two logging policies: one ranking by the noise column 9, one by a fixed random score per
    document (no feature follows it)."""
    folder = tmp_path_factory.mktemp("pairs_world")
    splits = generate_splits(train_queries=120, vali_queries=50, test_queries=80, n_features=10, mean_list_length=15, max_list_length=30, seed=5)
    files = write_splits(splits, folder)
    train = load_dataset(files["train"], cache=False)
    behaviour = load_click_spec({"name": "cascade"}).with_max_grade(4.0)
    policies = {"column9": np.asarray(train.features[:, 9], dtype=np.float64), "random": np.random.default_rng(1).random(train.n_docs)}
    logs = {name: write_simulation(folder / name, train, scores, behaviour, sessions=6_000, top_k=TOP_K, seed=7).log
            for name, scores in policies.items()}
    return {"files": files, "train": train, "logs": logs}


def config_for(world, runs, name: str, log: str, clicks: dict, loss: str) -> dict:
    files = world["files"]
    return {
        "data": {"train": str(files["train"]), "vali": str(files["vali"]), "test": str(files["test"]), "cache": False,
                 "train_clicks": {"log": str(world["logs"][log]), **clicks}},
        "model": {"name": "linear"},
        "loss": {"name": loss},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 4},
        "early_stopping": {"patience": None},
        "evaluation": {"baselines": False, "metrics": ["ndcg@10"]},
        "num_threads": 1,
        "output": {"dir": str(runs), "name": name, "tensorboard": False, "plots": False},
    }


def test_the_pair_loss_is_the_weighted_sum_of_explicit_pair_costs():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 5, dtype=torch.float64, generator=generator)
    weights = torch.rand(2, 3, 5, 5, dtype=torch.float64, generator=generator) * (torch.rand(2, 3, 5, 5, generator=generator) < 0.5)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1, 3:] = False
    mask[1, 2, :] = False
    for cost, kwargs in (("ranknet", {"sigma": 0.7}), ("hinge", {"margin": 0.5})):
        per_list = preference_pair_loss(scores, weights, mask, cost=cost, reduction="none", **kwargs)
        expected = torch.zeros(2, 3, dtype=torch.float64)
        for index in np.ndindex(2, 3):
            for i in range(5):
                for j in range(5):
                    if i != j and mask[index][i] and mask[index][j]:
                        x = float(scores[index][i] - scores[index][j])
                        value = math.log1p(math.exp(-0.7 * x)) if cost == "ranknet" else max(0.0, 0.5 - x)
                        expected[index] += float(weights[index][i, j]) * value
        torch.testing.assert_close(per_list, expected, rtol=1e-12, atol=1e-12)
        # the mean is over lists with a real document: the empty list [1, 2] drops out
        assert float(preference_pair_loss(scores, weights, mask, cost=cost, **kwargs)) == pytest.approx(float(expected.sum() / 5))
    assert torch.autograd.gradcheck(
        lambda s: preference_pair_loss(s, weights, mask, sigma=0.7), (scores.clone().requires_grad_(True),), eps=1e-6, atol=1e-7, fast_mode=True
    )


@pytest.mark.parametrize("weights, kwargs, message", [
    (-torch.ones(1, 3, 3), {}, "finite and >= 0"),
    (torch.full((1, 3, 3), float("nan")), {}, "finite and >= 0"),
    (torch.ones(1, 3), {}, "shape (1, 3, 3)"),
    (torch.ones(1, 3, 3), {"cost": "logistic"}, "cost"),
    (torch.ones(1, 3, 3), {"cost": "hinge", "margin": float("inf")}, "margin"),
])
def test_bad_pair_loss_input_is_refused(weights, kwargs, message):
    with pytest.raises(ValueError) as caught:
        preference_pair_loss(torch.zeros(1, 3), weights, **kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize("rule", ["skip_above", "skip_next"])
def test_aggregated_pairs_give_the_mean_per_session_pair_loss_and_gradient(world, rule):
    sessions, _ = read_click_log(world["logs"]["random"], world["train"])
    sessions = sessions.subset(np.arange(800))
    lists = aggregate_sessions(sessions, np.ones(sessions.docs.shape), pair_rule=rule)
    session, preferred, other = click_preference_pairs(sessions.clicks, sessions.mask, rule=rule)
    # a list stands for every session that showed it once any of them has a pair (the others add 0)
    shown = [tuple(docs[mask]) for docs, mask in zip(sessions.docs, sessions.mask)]
    lists_with_pairs = {shown[index] for index in np.unique(session)}
    standing_for = sum(key in lists_with_pairs for key in shown)
    assert lists.n_lists == len(lists_with_pairs) and lists.counts.sum() == standing_for
    assert lists.pairs.shape == (lists.n_lists, TOP_K, TOP_K)
    weights = torch.linspace(-1, 1, 10, dtype=torch.float64, requires_grad=True)
    features = torch.as_tensor(np.asarray(world["train"].features, dtype=np.float64))
    # the reference: RankNet on every pair of every session, summed, over the sessions the lists stand for
    preferred_scores = features[sessions.docs[session, preferred]] @ weights
    other_scores = features[sessions.docs[session, other]] @ weights
    reference = torch.nn.functional.softplus(other_scores - preferred_scores).sum() / standing_for
    (expected,) = torch.autograd.grad(reference, weights)
    list_scores = (features[np.where(lists.docs >= 0, lists.docs, 0)] @ weights).masked_fill(torch.from_numpy(lists.docs < 0), 0.0)
    loss = ClickLoss("pairs_ranknet", {}, top_k=TOP_K)(
        list_scores, torch.from_numpy(lists.pairs), torch.from_numpy(lists.docs >= 0),
        torch.from_numpy(lists.propensities), torch.from_numpy(lists.counts),
    )
    (gradient,) = torch.autograd.grad(loss, weights)
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


def _column9_weight(run) -> float:
    return float(load_checkpoint(run.run_dir / "checkpoints" / "best.pt")["model"]["linear.weight"][0, 9])


def test_pairs_learn_relevance_and_carry_the_presentation_bias(world, tmp_path):
    naive = train_on_clicks(config_for(world, tmp_path, "naive", "column9", {"propensities": "none"}, "ranknet"))
    pairs = train_on_clicks(config_for(world, tmp_path, "pairs", "column9", {"pairs": "skip_above"}, "ranknet"))
    # every skip-above pair prefers a document shown below: against the logging column, where
    # clicks as labels follow it (Joachims et al. 2005's presentation bias of the two kinds of feedback)
    assert _column9_weight(naive) > 0 > _column9_weight(pairs)
    report = pairs.report
    assert report["click_loss"] == "pairs_ranknet" and report["clicks"]["pairs"] == "skip_above"
    sessions, _ = read_click_log(world["logs"]["column9"], world["train"])
    assert report["clicks"]["preference_pairs"] == click_preference_pairs(sessions.clicks, sessions.mask)[0].size
    # on a log whose order no feature follows, the pairs (either cost) learn the relevance: far above the logging order's NDCG
    test = load_dataset(world["files"]["test"], cache=False)
    scores, mask = pad_ragged(np.random.default_rng(1).random(test.n_docs), test.query_offsets)
    labels, _ = pad_ragged(np.asarray(test.labels, dtype=np.float64), test.query_offsets)
    random_order = float(ndcg(torch.from_numpy(scores), torch.from_numpy(labels), torch.from_numpy(mask), k=10).mean())
    for loss in ("ranknet", "pairwise_hinge"):
        run = train_on_clicks(config_for(world, tmp_path, loss, "random", {"pairs": "skip_above"}, loss))
        assert run.metrics["test"]["ndcg@10"] > random_order + 0.2, (loss, run.metrics["test"]["ndcg@10"], random_order)


BAD_PAIR_CONFIGS = {
    "propensities": ({"pairs": "skip_above", "propensities": "logged"}, "ranknet", {}, "data.train_clicks: pairs='skip_above' trains on click preferences"),
    "listwise_loss": ({"pairs": "skip_next"}, "softmax", {}, "loss.name: data.train_clicks.pairs trains a pairwise loss"),
    "foreign_argument": ({"pairs": "skip_above"}, "ranknet", {"margin": 2.0}, "loss.args: ['margin'] of 'ranknet' do not apply"),
    "unknown_rule": ({"pairs": "skip_below"}, "ranknet", {}, "data.train_clicks.pairs"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIR_CONFIGS))
def test_a_bad_pair_config_is_one_line_and_leaves_no_run_folder(world, tmp_path, case):
    clicks, loss, args, expected = BAD_PAIR_CONFIGS[case]
    config = config_for(world, tmp_path / "runs", "bad", "random", clicks, loss)
    config["loss"]["args"] = args
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()
