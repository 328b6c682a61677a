"""Click behaviours on hand-made lists whose clicks are known, and the spec loader's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ltrkit.clicks import behaviours as b
from ltrkit.clicks.spec import load_click_spec
from ltrkit.training.config import ConfigError

RNG = lambda: np.random.default_rng(0)  # noqa: E731
RELEVANCE = np.array([[0.0, 2.0, 1.0, 0.0, 2.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
MASK = np.array([[True] * 5, [True, True, True, False, False]])


def impressions(features=None) -> b.Impressions:
    return b.Impressions(RELEVANCE, MASK, features)


def clicks_of(spec, features=None, rng=None):
    behaviour = load_click_spec(spec).with_max_grade(2.0)
    return behaviour.simulate(impressions(features), rng or RNG())[0].astype(int).tolist()


def test_fixed_only_relevant_and_combinations():
    assert clicks_of({"name": "fixed", "positions": [1, 4]}) == [[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]]
    assert clicks_of({"name": "only_relevant", "threshold": 2}) == [[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert clicks_of({"name": "only_relevant"}) == [[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]]
    both = {"name": "and", "models": [{"name": "fixed", "positions": [2, 3]}, {"name": "only_relevant", "threshold": 2}]}
    assert clicks_of(both) == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    either = {"name": "or", "models": [{"name": "fixed", "positions": [1]}, {"name": "only_relevant", "threshold": 2}]}
    assert clicks_of(either) == [[1, 1, 0, 0, 1], [1, 0, 0, 0, 0]]


def test_max_clicks_keeps_the_highest_ranked():
    spec = {"name": "max_clicks", "max_clicks": 2, "model": {"name": "only_relevant"}}
    assert clicks_of(spec) == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]]


def test_random_clicks_count_and_uniformity():
    many = b.Impressions(np.zeros((20_000, 4)), np.ones((20_000, 4), dtype=bool))
    clicks, propensities = b.RandomClicks(2).simulate(many, RNG())
    assert propensities is None and (clicks.sum(axis=1) == 2).all()
    # each position is clicked with probability 2/4
    assert np.abs(clicks.mean(axis=0) - 0.5).max() < 5 * np.sqrt(0.25 / 20_000)
    # shorter lists: every shown position, never padding
    assert clicks_of({"name": "random", "n_clicks": 4})[1] == [1, 1, 1, 0, 0]


def test_threshold_cascade():
    # eta = 0: every rank observed, so the first relevant document is clicked and nothing else
    assert clicks_of({"name": "threshold_cascade", "eta": 0, "threshold": 1}) == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    many = b.Impressions(np.array([[0.0, 1.0, 1.0]] * 40_000), np.ones((40_000, 3), dtype=bool))
    clicks, _ = b.ThresholdCascade(eta=1.0, threshold=1).simulate(many, RNG())
    # rank 2 observed w.p. 1/2; rank 3 clicked when rank 2 is not observed and rank 3 is (1/2 * 1/3)
    expected = np.array([0.0, 0.5, 1 / 6])
    assert (clicks.sum(axis=1) <= 1).all()
    assert np.abs(clicks.mean(axis=0) - expected).max() < 5 * np.sqrt(0.25 / 40_000)


def test_mixture_follows_one_model_per_session():
    spec = {"name": "mixture", "probabilities": [0.25, 0.75],
            "models": [{"name": "fixed", "positions": [1]}, {"name": "fixed", "positions": [2]}]}
    many = b.Impressions(np.zeros((40_000, 3)), np.ones((40_000, 3), dtype=bool))
    clicks, _ = load_click_spec(spec).simulate(many, RNG())
    assert (clicks.sum(axis=1) == 1).all() and not clicks[:, 2].any()
    assert abs(clicks[:, 0].mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 40_000)


def test_mixture_of_models_reports_the_chosen_propensities():
    spec = {"name": "mixture", "probabilities": [0.5, 0.5],
            "models": [{"name": "pbm", "propensities": [1.0, 0.5, 0.2]}, {"name": "pbm", "propensities": [1.0, 0.9, 0.8]}]}
    many = b.Impressions(np.zeros((1000, 3)), np.ones((1000, 3), dtype=bool))
    _, propensities = load_click_spec(spec).with_max_grade(2.0).simulate(many, RNG())
    assert {tuple(row) for row in propensities.round(6).tolist()} == {(1.0, 0.5, 0.2), (1.0, 0.9, 0.8)}


def test_everything_but_duplicates():
    features = np.zeros((2, 5, 2))
    features[0] = [[0, 0], [1, 0], [0, 0], [1, 0.05], [3, 3]]  # rank 3 repeats rank 1; rank 4 is near rank 2
    features[1, :3] = [[0, 0], [0, 0], [5, 5]]
    assert clicks_of({"name": "everything_but_duplicates"}, features) == [[1, 1, 0, 1, 1], [1, 0, 1, 0, 0]]
    assert clicks_of({"name": "everything_but_duplicates", "distance": 0.1}, features)[0] == [1, 1, 0, 0, 1]


def test_diverse_clicks_drop_documents_close_to_a_clicked_one():
    features = np.zeros((2, 5, 1))
    features[0, :, 0] = [0.0, 10.0, 0.5, 20.0, 10.2]
    features[1, :3, 0] = [0.0, 1.0, 2.0]
    everything = {"name": "fixed", "positions": [1, 2, 3, 4, 5]}
    # list 1: the 10 pairwise distances have 10th percentile 0.47 (linear interpolation): 10.2 lies 0.2 from
    # the clicked 10.0, while 0.5 lies 0.5 from the clicked 0.0 and is kept
    pairs = [abs(x - y) for i, x in enumerate(features[0, :, 0]) for y in features[0, i + 1:, 0]]
    assert np.percentile(pairs, 10) == pytest.approx(0.47)
    result = clicks_of({"name": "diverse", "percentile": 10, "model": everything}, features)
    assert result == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]
    # percentile 60 of list 2's distances (1, 1, 2) is 1.4: ranks 2 and 3 sit 1 from an earlier click
    assert clicks_of({"name": "diverse", "percentile": 60, "model": everything}, features)[1] == [1, 0, 1, 0, 0]


def test_behaviours_that_compare_documents_need_features():
    with pytest.raises(ValueError, match="needs their features"):
        clicks_of({"name": "everything_but_duplicates"})


def test_spec_files_and_built_in_names(tmp_path):
    path = tmp_path / "clicks.yaml"
    path.write_text("name: max_clicks\nmax_clicks: 1\nmodel:\n  name: only_relevant\n")
    assert clicks_of(str(path)) == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    for name in ("pbm", "ubm", "cm", "cascade", "dcm", "dbn", "sdbn"):
        behaviour = load_click_spec(name).with_max_grade(2.0)
        clicks, propensities = behaviour.simulate(impressions(), RNG())
        assert clicks.shape == (2, 5) and not (clicks & ~MASK).any()
        assert propensities is not None and propensities[0, 0] == 1.0


def test_every_problem_is_reported_at_once(tmp_path):
    spec = {"name": "mixture", "probabilities": [0.5, 0.6], "colour": "red",
            "models": [{"name": "pbm", "eta": -1, "attraction": {"kind": "graded", "epsilon_plus": 2}},
                       {"name": "max_clicks", "model": {"name": "radnom"}},
                       3]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError) as caught:
        load_click_spec(str(path))
    errors = caught.value.errors
    assert caught.value.source == str(path)
    assert any(e.startswith("colour: unknown field; allowed: ['models', 'name', 'probabilities']") for e in errors)
    assert any(e.startswith("models.0.eta: Input should be greater than or equal to 0") for e in errors)
    assert any(e.startswith("models.0.attraction.epsilon_plus: Input should be less than or equal to 1") for e in errors)
    assert any(e.startswith("models.1.max_clicks: Field required") for e in errors)
    assert any(e.startswith("models.1.model.name: unknown click model 'radnom'") for e in errors)
    assert any(e.startswith("models.2: a click spec must be a mapping") for e in errors)


@pytest.mark.parametrize("source, message", [
    ("no_such_model", "neither a built-in click model"),
    ({"name": "fixed", "positions": [0]}, "positions are 1-based"),
    ({"name": "mixture", "probabilities": [0.5, 0.6], "models": ["pbm", "cm"]}, "sum to 1"),
    ({"name": "mixture", "probabilities": [1.0], "models": ["pbm", "cm"]}, "one probability per model"),
    ({"name": "ubm", "gamma": [[1.0, 0.5]]}, "gamma must be a square"),
    ({"name": "diverse", "percentile": 101, "model": {"name": "pbm"}}, "percentile: Input should be less than or equal to 100"),
    ({"name": "and", "models": [{"name": "pbm"}]}, "models: List should have at least 2 items"),
])
def test_bad_specs(source, message):
    with pytest.raises(ConfigError, match=message):
        load_click_spec(source)
