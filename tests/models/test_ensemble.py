"""EnsembleRanker: mean / rank-mean of members, one member = that member, padding invisible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from ltrkit.models import build_model
from ltrkit.models.ensemble import EnsembleRanker, list_ranks

F = 5


def _members(count: int, name: str = "mlp") -> list:
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        args = {"hidden_sizes": [8], "dropout": 0.0} if name == "mlp" else {"hidden_sizes": [6], "d_model": 4, "n_heads": 2, "ff_dim": 8, "dropout": 0.0, "input_noise": 0.0}
        out.append(build_model(name, F, **args).eval())
    return out


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 6, F, generator=g)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    return features, mask


def test_one_member_is_that_member():
    (member,) = _members(1)
    features, mask = _batch()
    alone = member(features, mask)
    assert torch.equal(EnsembleRanker([member]).eval()(features, mask), alone)
    ranked = EnsembleRanker([member], combine="rank_mean").eval()(features, mask)
    for row in range(3):
        n = int(mask[row].sum())
        assert torch.equal(torch.argsort(ranked[row, :n], descending=True), torch.argsort(alone[row, :n], descending=True))


def test_mean_is_the_average_of_the_members_scores():
    members = _members(3)
    features, mask = _batch()
    expected = sum(member(features, mask) for member in members) / 3
    torch.testing.assert_close(EnsembleRanker(members).eval()(features, mask), expected)


def test_rank_mean_against_scipy_rankdata():
    members = _members(2)
    features, mask = _batch(1)
    got = EnsembleRanker(members, combine="rank_mean").eval()(features, mask)
    for row in range(3):
        n = int(mask[row].sum())
        # scipy ranks ascending from 1 with ties averaged; descending 0-based rank = n - rank
        ranks = [n - rankdata(member(features, mask)[row, :n].detach().numpy()) for member in members]
        np.testing.assert_allclose(got[row, :n].detach().numpy(), -np.mean(ranks, axis=0), rtol=0, atol=1e-12)
        assert torch.all(got[row, n:] == 0)


def test_list_ranks_share_ties_and_ignore_padding():
    scores = torch.tensor([[3.0, 1.0, 3.0, 7.0, -1e30]])
    mask = torch.tensor([[True, True, True, False, False]])
    assert list_ranks(scores, mask).tolist() == [[0.5, 2.0, 0.5, 0.0, 0.0]]


@pytest.mark.parametrize("combine", ["mean", "rank_mean"])
@pytest.mark.parametrize("name", ["mlp", "dasalc"])
def test_padding_has_no_influence(combine, name):
    model = EnsembleRanker(_members(2, name), combine=combine).eval()
    features, mask = _batch(2)
    scrambled = features.clone()
    scrambled[~mask] = float("nan")
    first, second = model(features, mask), model(scrambled, mask)
    torch.testing.assert_close(first, second)
    assert torch.all(first[~mask] == 0)
    # the scores of a list do not depend on the other lists of the batch
    torch.testing.assert_close(model(features[1:2], mask[1:2]), first[1:2])


def test_bad_ensembles_are_refused():
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleRanker([])
    with pytest.raises(ValueError, match="same number of features"):
        EnsembleRanker([build_model("linear", 3), build_model("linear", 4)])
    with pytest.raises(ValueError, match="combine"):
        EnsembleRanker(_members(1), combine="median")
