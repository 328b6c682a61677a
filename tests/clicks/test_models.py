"""Click models: likelihoods and marginals against the slow references, simulation frequencies,
closed-form fits on hand-made logs, simulate-then-fit recovery."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from ltrkit.clicks.models import DBN, DCM, PBM, SDBN, UBM, CascadeModel, get_model
from ltrkit.clicks.sessions import ClickSessions

_spec = importlib.util.spec_from_file_location("reference_clicks", Path(__file__).with_name("reference_clicks.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)
session_probability, marginal_click_probabilities = ref.session_probability, ref.marginal_click_probabilities

K = 4
ATTRACTION = np.array([0.7, 0.2, 0.5, 0.9])
SATISFACTION = np.array([0.3, 0.6, 0.1, 0.8])
PROPENSITIES = [1.0, 0.6, 0.4, 0.3]
CONTINUATION = [0.7, 0.5, 0.4, 0.2]
UBM_GAMMA = np.tril(np.random.default_rng(3).uniform(0.2, 1.0, size=(K, K)))

CASES = {
    "pbm": (lambda: PBM(PROPENSITIES), {"propensities": PROPENSITIES}),
    "ubm": (lambda: UBM(UBM_GAMMA), {"ubm_gamma": UBM_GAMMA}),
    "cm": (CascadeModel, {}),
    "dcm": (lambda: DCM(CONTINUATION), {"continuation": CONTINUATION}),
    "dbn": (lambda: DBN(0.7), {"gamma": 0.7, "satisfaction": SATISFACTION}),
    "sdbn": (SDBN, {"satisfaction": SATISFACTION}),
}


def all_patterns() -> ClickSessions:
    clicks = np.array(list(itertools.product([False, True], repeat=K)))
    docs = np.broadcast_to(np.arange(K), clicks.shape)
    return ClickSessions(docs, clicks, np.ones_like(clicks))


def with_true_documents(name: str):
    make, _ = CASES[name]
    model = make()
    return model.set_documents(np.arange(K), ATTRACTION, SATISFACTION if model.uses_satisfaction else None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_session_likelihood_matches_reference(name):
    model, params = with_true_documents(name), CASES[name][1]
    sessions = all_patterns()
    q = model.conditional_click_probabilities(sessions)
    probability = np.where(sessions.clicks, q, 1 - q).prod(axis=1)
    expected = [session_probability(name, list(c), ATTRACTION, **params) for c in sessions.clicks]
    assert np.isclose(sum(expected), 1.0)
    np.testing.assert_allclose(probability, expected, rtol=1e-9, atol=1e-12)
    # the reported log-likelihood is the mean log-probability (the clipping at 1e-6 aside)
    kept = np.array(expected) > 1e-5
    assert model.log_likelihood(sessions.subset(kept)) == pytest.approx(np.log(np.array(expected)[kept]).mean(), abs=K * 2e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_marginals_match_reference_and_simulation(name):
    model, params = with_true_documents(name), CASES[name][1]
    expected = marginal_click_probabilities(name, K, ATTRACTION, **params)
    sessions = all_patterns()
    np.testing.assert_allclose(model.click_probabilities(sessions)[0], expected, rtol=1e-9)
    examination = model.examination(ATTRACTION[None], satisfaction=SATISFACTION[None])[0]
    np.testing.assert_allclose(examination * ATTRACTION, expected, rtol=1e-9)
    n = 200_000
    clicks = model.simulate(np.tile(ATTRACTION, (n, 1)), satisfaction=np.tile(SATISFACTION, (n, 1)), seed=7)
    tolerance = 5 * np.sqrt(expected * (1 - expected) / n) + 1e-9
    assert (np.abs(clicks.mean(axis=0) - expected) <= tolerance).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulation_is_seeded_and_respects_padding(name):
    model = with_true_documents(name)
    attraction = np.full((50, K), 0.9)
    mask = np.ones((50, K), dtype=bool)
    mask[:, 2:] = False
    first = model.simulate(attraction, mask, seed=1)
    assert np.array_equal(first, model.simulate(attraction, mask, seed=1))
    assert not first[:, 2:].any()


def test_hand_made_cascade_lists():
    assert CascadeModel().simulate(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]), seed=0).tolist() == [
        [True, False, False], [False, False, True]]
    np.testing.assert_allclose(CascadeModel().examination(np.array([[0.5, 0.5, 1.0]]))[0], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(PBM([1.0, 0.5]).examination(np.array([[0.3, 0.3]]))[0], [1.0, 0.5])
    # SDBN with certain satisfaction after a click is the cascade model
    clicks = SDBN().simulate(np.ones((3, 3)), satisfaction=np.ones((3, 3)), seed=0)
    assert clicks.tolist() == [[True, False, False]] * 3


def hand_log() -> ClickSessions:
    clicks = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    return ClickSessions(np.tile([10, 11, 12], (3, 1)), clicks, np.ones((3, 3), dtype=bool))


def test_closed_form_fits_on_a_hand_made_log():
    log = hand_log()
    cm = CascadeModel().fit(log).params()
    # examined up to the first click: doc 10 in all three, doc 11 in sessions 2-3, doc 12 in session 3
    assert cm["attractiveness"] == {"10": 1 / 3, "11": 1 / 2, "12": 0.0}
    dcm = DCM().fit(log).params()
    # up to the last click: doc 10: 3 impressions 1 click; 11: 3 / 1; 12: sessions 1 and 3, 1 click
    assert dcm["attractiveness"] == {"10": 1 / 3, "11": 1 / 3, "12": 1 / 2}
    # clicks at rank 1: one, not last -> lambda 1; rank 2: one, last -> 0; rank 3: one, last -> 0
    assert dcm["continuation"] == [1.0, 0.0, 0.0]
    sdbn = SDBN().fit(log).params()
    assert sdbn["attractiveness"] == dcm["attractiveness"]
    assert sdbn["satisfaction"] == {"10": 0.0, "11": 1.0, "12": 1.0}


def random_lists(n_sessions: int, n_docs: int, k: int, seed: int) -> np.ndarray:
    keys = np.random.default_rng(seed).random((n_sessions, n_docs))
    return np.argsort(keys, axis=1)[:, :k]


def ratio_tolerance(ratio: np.ndarray, cell_clicks: np.ndarray, first_clicks: float) -> np.ndarray:
    """Six standard errors of a ratio of two click counts (Poisson): ``ratio * sqrt(1/n_r + 1/n_1)``."""
    return 6 * ratio * np.sqrt(1 / np.maximum(cell_clicks, 1) + 1 / first_clicks)


def test_pbm_recovers_propensities():
    n_docs, k, n = 30, 6, 40_000
    alpha = np.random.default_rng(0).uniform(0.1, 0.9, n_docs)
    docs = random_lists(n, n_docs, k, seed=1)
    truth = (1.0 / np.arange(1, k + 1)) ** 1.2
    clicks = PBM(truth).simulate(alpha[docs], seed=2)
    fitted = PBM().fit(ClickSessions(docs, clicks, np.ones_like(clicks)), max_iterations=300)
    per_rank = clicks.sum(axis=0)
    tolerance = ratio_tolerance(truth, per_rank, per_rank[0])
    assert (np.abs(fitted.relative_propensities_ - truth) <= tolerance).all(), (fitted.relative_propensities_, truth, tolerance)
    assert tolerance[1:].max() < 0.05  # rank 1 is 1 by construction
    # the attractiveness is recovered up to the scale gamma_1
    scaled = fitted.attraction_.values * fitted.propensities_[0]
    assert np.abs(scaled - alpha).max() < 0.05


def test_ubm_recovers_its_examination_table():
    n_docs, k, n = 30, 4, 40_000
    alpha = np.random.default_rng(4).uniform(0.2, 0.9, n_docs)
    docs = random_lists(n, n_docs, k, seed=5)
    simulator = UBM(eta=1.0)
    truth = simulator.gamma_table(k)
    clicks = simulator.simulate(alpha[docs], seed=6)
    sessions = ClickSessions(docs, clicks, np.ones_like(clicks))
    fitted = UBM().fit(sessions, max_iterations=300)
    relative = fitted.gamma_ / fitted.gamma_[0, 0]
    # clicks observed in each (rank, previous-click rank) cell set that cell's standard error
    previous = np.concatenate([np.zeros((n, 1), int), np.maximum.accumulate(np.where(clicks, np.arange(1, k + 1), 0), axis=1)[:, :-1]], axis=1)
    cell_clicks = np.zeros((k, k))
    np.add.at(cell_clicks, (np.broadcast_to(np.arange(k), (n, k)), previous), clicks)
    lower = np.tril(np.ones((k, k), dtype=bool))
    tolerance = ratio_tolerance(truth, cell_clicks, cell_clicks[0, 0])
    assert (np.abs(relative - truth)[lower] <= tolerance[lower]).all(), (relative, truth)


def test_dbn_em_recovers_parameters():
    n_docs, k, n = 15, 4, 40_000
    rng = np.random.default_rng(8)
    alpha, sigma = rng.uniform(0.2, 0.9, n_docs), rng.uniform(0.2, 0.8, n_docs)
    docs = random_lists(n, n_docs, k, seed=9)
    clicks = DBN(0.7).simulate(alpha[docs], satisfaction=sigma[docs], seed=10)
    fitted = DBN().fit(ClickSessions(docs, clicks, np.ones_like(clicks)), max_iterations=200)
    assert abs(fitted.gamma_ - 0.7) < 0.03
    assert np.abs(fitted.attraction_.values - alpha).max() < 0.05
    assert np.abs(fitted.satisfaction_.values - sigma).max() < 0.1


def test_held_out_evaluation_prefers_the_true_model():
    n_docs, k, n = 20, 5, 20_000
    alpha = np.random.default_rng(11).uniform(0.1, 0.9, n_docs)
    docs = random_lists(n, n_docs, k, seed=12)
    clicks = CascadeModel().simulate(alpha[docs], seed=13)
    train, held_out = ClickSessions(docs, clicks, np.ones_like(clicks)).split(0.25, seed=0)
    cm, pbm = CascadeModel().fit(train), PBM().fit(train)
    assert cm.log_likelihood(held_out) > pbm.log_likelihood(held_out)
    assert cm.perplexity(held_out)[0] < pbm.perplexity(held_out)[0]
    assert 1.0 < cm.perplexity(held_out)[0] < 2.0


def test_perplexity_of_a_perfect_model_is_one():
    sessions = ClickSessions(np.array([[0, 1]]), np.array([[True, False]]), np.ones((1, 2), dtype=bool))
    model = PBM([1.0, 1.0]).set_documents([0, 1], [1.0, 0.0])
    overall, per_rank = model.perplexity(sessions)
    assert overall == pytest.approx(1.0, abs=1e-5) and per_rank.shape == (2,)


@pytest.mark.parametrize("call, message", [
    (lambda: PBM().simulate(np.array([[1.5]])), "attraction must be probabilities"),
    (lambda: PBM([1.0]).simulate(np.ones((1, 2))), "1 propensities given but 2 ranks"),
    (lambda: PBM().simulate(np.ones(3)), r"attraction must be \[S, K\]"),
    (lambda: DBN(gamma=1.5), "gamma must be a probability"),
    (lambda: DCM([0.5, 2.0]), "continuation must be a probability"),
    (lambda: PBM().log_likelihood(hand_log()), "not fitted"),
    (lambda: PBM().fit("log"), "sessions must be ClickSessions"),
    (lambda: PBM().simulate(np.ones((1, 1)), seed=-1), "seed must be an int >= 0"),
    (lambda: get_model("pmb"), "unknown click model 'pmb'"),
])
def test_bad_input(call, message):
    with pytest.raises((ValueError, KeyError), match=message):
        call()
