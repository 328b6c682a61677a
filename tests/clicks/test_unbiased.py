"""IPS losses (Monte-Carlo unbiasedness of the gradient, invariants), click preferences, IPS evaluation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ltrkit.clicks.mappings import AttractionMapping
from ltrkit.clicks.simulate import simulate_log
from ltrkit.clicks.spec import load_click_spec
from ltrkit.clicks.unbiased import (
    PropensityClippingWarning,
    click_preference_pairs,
    ips_clicks_at_k,
    ips_dcg,
    ips_lambda_loss,
    ips_ranknet_loss,
    ips_softmax_loss,
    ips_weights,
)
from ltrkit.data.dataset import RankingDataset

RELEVANCE = torch.tensor([0.9, 0.1, 0.6, 0.3], dtype=torch.float64)
PROPENSITIES = torch.tensor([1.0, 0.5, 1 / 3, 0.25], dtype=torch.float64)
SCORES = torch.tensor([0.3, -0.2, 1.1, 0.4], dtype=torch.float64)


def full_information(name: str, scores: torch.Tensor) -> torch.Tensor:
    """The losses written out from their formulas with relevance probabilities as labels."""
    r = RELEVANCE
    if name == "softmax":
        return -(r * torch.log_softmax(scores, dim=0)).sum()
    diff = scores[:, None] - scores[None, :]
    cost = torch.nn.functional.softplus(-diff) * (1 - torch.eye(4, dtype=scores.dtype))
    if name == "ranknet":
        return (r[:, None] * cost).sum()
    rank = torch.empty(4, dtype=torch.long)
    rank[torch.argsort(scores.detach(), descending=True, stable=True)] = torch.arange(1, 5)
    d = 1 / torch.log2(1 + rank.to(scores.dtype))
    return (r[:, None] * (d[:, None] - d[None, :]).abs() * cost).sum()


LOSSES = {"softmax": ips_softmax_loss, "ranknet": ips_ranknet_loss, "lambda": ips_lambda_loss}


def batch_gradient(loss_fn, clicks: torch.Tensor, propensities: torch.Tensor) -> torch.Tensor:
    scores = SCORES.clone().requires_grad_(True)
    loss_fn(scores.expand(clicks.shape[0], 4), clicks, propensities=propensities.expand(clicks.shape[0], 4)).backward()
    return scores.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_ips_gradient_is_unbiased_for_the_full_information_gradient(name):
    generator = torch.Generator().manual_seed(0)
    batches, per_batch = 20, 1_000
    ips, naive = [], []
    for _ in range(batches):
        examined = torch.rand(per_batch, 4, generator=generator, dtype=torch.float64) < PROPENSITIES
        relevant = torch.rand(per_batch, 4, generator=generator, dtype=torch.float64) < RELEVANCE
        clicks = (examined & relevant).to(torch.float64)
        ips.append(batch_gradient(LOSSES[name], clicks, PROPENSITIES))
        naive.append(batch_gradient(LOSSES[name], clicks, torch.ones(4, dtype=torch.float64)))
    ips, naive = torch.stack(ips), torch.stack(naive)
    scores = SCORES.clone().requires_grad_(True)
    full_information(name, scores).backward()
    target = scores.grad
    error = 5 * ips.std(dim=0) / batches ** 0.5
    assert ((ips.mean(dim=0) - target).abs() <= error).all(), (ips.mean(dim=0), target, error)
    # clicks without the propensity weights are biased towards the top positions
    assert ((naive.mean(dim=0) - target).abs() > 5 * naive.std(dim=0) / batches ** 0.5).any()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_invariants(name):
    fn = LOSSES[name]
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    clicks = (torch.rand(3, 5, generator=generator) < 0.4).to(torch.float64)
    p = torch.rand(3, 5, generator=generator, dtype=torch.float64) * 0.9 + 0.1
    mask = torch.tensor([[True] * 5, [True, True, True, False, False], [False] * 5])
    per_list = fn(scores, clicks, mask, propensities=p, reduction="none")
    assert per_list.shape == (3,) and per_list[2] == 0
    assert torch.isclose(per_list.sum(), fn(scores, clicks, mask, propensities=p, reduction="sum"))
    assert torch.isclose(per_list.sum() / 2, fn(scores, clicks, mask, propensities=p))
    # a padded position changes nothing, whatever it holds
    alone = fn(scores[1:2, :3], clicks[1:2, :3], propensities=p[1:2, :3], reduction="none")
    assert torch.isclose(alone[0], per_list[1])
    leaf = scores.clone().requires_grad_(True)
    fn(leaf, clicks, mask, propensities=p).backward()
    assert torch.isfinite(leaf.grad).all() and (leaf.grad[~mask] == 0).all()


def test_clipping_is_reported_and_bounds_the_weights():
    mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.warns(PropensityClippingWarning, match="2 propensities below clip=0.2"):
        weights = ips_weights(torch.tensor([[1.0, 0.1, 0.05]]), mask, clip=0.2)
    assert weights.tolist() == [[1.0, 5.0, 5.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ips_weights(torch.tensor([[1.0, 0.5, 0.3]]), mask, clip=0.2)


@pytest.mark.parametrize("bad, message", [
    ([[1.0, 0.0, 0.5]], r"propensities must be finite and in \(0, 1\]"),
    ([[1.0, float("nan"), 0.5]], r"propensities must be finite"),
    ([[1.0, -0.5, 0.5]], r"propensities must be finite"),
    ([[1.0, 0.5]], "propensities must be a tensor of shape"),
])
def test_bad_propensities(bad, message):
    with pytest.raises(ValueError, match=message):
        ips_softmax_loss(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), propensities=torch.tensor(bad))


def test_preference_pairs_against_a_double_loop():
    rng = np.random.default_rng(0)
    clicks = rng.random((30, 6)) < 0.3
    mask = np.arange(6)[None, :] < rng.integers(1, 7, size=30)[:, None]
    clicks &= mask
    for rule in ("skip_above", "skip_next"):
        expected = []
        for s in range(30):
            for i in range(6):
                for j in range(6):
                    if not (clicks[s, i] and mask[s, j] and not clicks[s, j]):
                        continue
                    if (rule == "skip_above" and j < i) or (rule == "skip_next" and j == i + 1):
                        expected.append((s, i, j))
        got = list(zip(*[a.tolist() for a in click_preference_pairs(clicks, mask, rule=rule)]))
        assert sorted(got) == sorted(expected)


def test_ips_offline_evaluation_is_unbiased_for_the_true_dcg():
    rng = np.random.default_rng(2)
    n_queries, per_query = 30, 6
    labels = rng.integers(0, 3, size=n_queries * per_query).astype(np.float32)
    data = RankingDataset(rng.normal(size=(labels.size, 2)).astype(np.float32), labels,
                          np.arange(0, labels.size + 1, per_query), np.array([str(q) for q in range(n_queries)]))
    logging_scores = rng.normal(size=labels.size)
    new_scores = labels + rng.normal(size=labels.size)
    spec = {"name": "pbm", "eta": 1.0, "attraction": {"kind": "graded", "epsilon_minus": 0.05}}
    sessions, _ = simulate_log(data, logging_scores, load_click_spec(spec), sessions=40_000, top_k=4, seed=3)
    # the truth: the new ranker's DCG@3 over each session's shown documents, gain P(R = 1)
    attraction = AttractionMapping("graded", 2.0, epsilon_minus=0.05)(labels)
    docs = sessions.docs
    order = np.argsort(-new_scores[docs], axis=1, kind="stable")
    gains = np.take_along_axis(attraction[docs], order, axis=1)[:, :3]
    truth = (gains / np.log2(np.arange(2, 5))).sum(axis=1).mean()
    parts = np.array_split(np.arange(sessions.n_sessions), 20)
    estimates = np.array([ips_dcg(sessions.subset(rows), new_scores, k=3) for rows in parts])
    assert abs(ips_dcg(sessions, new_scores, k=3) - truth) <= 5 * estimates.std() / np.sqrt(20)
    # the naive click DCG is biased low (clicks below rank 1 are thinned by examination)
    sessions.propensities = np.where(sessions.mask, 1.0, 0.0)
    assert ips_dcg(sessions, new_scores, k=3) < truth - 5 * estimates.std() / np.sqrt(20)
    assert ips_clicks_at_k(sessions, new_scores, 4) == pytest.approx(sessions.clicks.sum() / sessions.n_sessions)


def test_dla_gradients_are_the_two_weighted_softmax_losses():
    from ltrkit.clicks.unbiased import dla_loss, dla_propensities
    from ltrkit.losses.listwise import softmax_loss

    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True)
    clicks = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    dla_loss(scores, clicks, propensity_logits=logits, max_weight=None).backward()
    ranker, propensity = scores.grad.clone(), logits.grad.clone()
    s = scores.detach().clone().requires_grad_(True)
    softmax_loss(s, clicks, weights=1 / dla_propensities(logits.detach()).expand(3, 4)).backward()
    torch.testing.assert_close(ranker, s.grad)
    t = logits.detach().clone().requires_grad_(True)
    q = torch.softmax(scores.detach(), dim=-1)
    softmax_loss(t.expand(3, 4), clicks, weights=q[:, :1] / q).backward()
    torch.testing.assert_close(propensity, t.grad)
    # the cap bounds both weights
    s.grad, t.grad = None, None
    dla_loss(s, clicks, propensity_logits=t, max_weight=1.5).backward()
    s_ref = scores.detach().clone().requires_grad_(True)
    softmax_loss(s_ref, clicks, weights=(1 / dla_propensities(logits.detach())).clamp(max=1.5).expand(3, 4)).backward()
    torch.testing.assert_close(s.grad, s_ref.grad)


def test_dla_learns_the_propensities_with_the_ranker():
    from ltrkit.clicks.models import PBM
    from ltrkit.clicks.unbiased import dla_loss, dla_propensities

    rng = np.random.default_rng(0)
    n_docs, n_features, k, n = 1000, 5, 5, 3000
    x = rng.random((n_docs, n_features))
    w = rng.normal(size=n_features)
    # relevance proportional to exp(w x): a linear scorer's softmax can match it exactly
    relevance = np.exp(x @ w - (x @ w).max())
    docs = rng.integers(0, n_docs, size=(n, k))  # documents land on every rank
    truth = 1 / np.arange(1, k + 1)
    clicks = PBM(truth).simulate(relevance[docs], seed=1)
    features, targets = torch.tensor(x[docs], dtype=torch.float32), torch.tensor(clicks, dtype=torch.float32)
    torch.manual_seed(0)
    model, logits = torch.nn.Linear(n_features, 1), torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.Adam([*model.parameters(), logits], lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        dla_loss(model(features).squeeze(-1), targets, propensity_logits=logits).backward()
        optimizer.step()
    # within six standard errors of a ratio of click counts, as the EM recoveries
    per_rank = clicks.sum(axis=0)
    tolerance = 6 * truth * np.sqrt(1 / per_rank + 1 / per_rank[0])
    assert (np.abs(dla_propensities(logits.detach()).numpy() - truth) <= tolerance).all()
    assert np.corrcoef(model.weight.detach().numpy()[0], w)[0, 1] > 0.99
