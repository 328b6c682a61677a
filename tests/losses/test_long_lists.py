"""Long lists: the chunked RankNet/LambdaRank (and RankNet's top-k truncation) against references,
their memory on lists of 10,000 and 100,000 documents, and the quadratic losses' refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ltrkit.losses
from ltrkit.losses._pairwise_kernels import (
    PAIR_BYTES,
    check_pair_memory,
    largest_list,
    lambdarank_value_and_lambdas,
    ranknet_value_and_lambdas,
)
from ltrkit.losses.pairwise import ranknet_loss
from tests.losses import reference_pairwise as ref
from tests.losses.test_pairwise import random_batch

REPO = Path(__file__).resolve().parents[2]


def ranknet_top_k_reference(scores, labels, mask, *, k, sigma, include_ties):
    """Per-list RankNet cost over the pairs with a document in the top k of the current ranking,
    and the pair counts: double loops over explicit pairs, differentiated by autograd."""
    values, counts = [], []
    for b in range(scores.shape[0]):
        keep = mask[b].nonzero().flatten().tolist()
        s = [scores[b, i] for i in keep]
        l = labels[b, keep].tolist()
        order = ref.ranking([float(v.detach()) for v in s])
        in_top = {doc for doc in order[:k]}
        total, pairs = scores.new_zeros(()), 0
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                if (l[i] == l[j] and not include_ties) or not (i in in_top or j in in_top):
                    continue
                target = 1.0 if l[i] > l[j] else (0.0 if l[i] < l[j] else 0.5)
                total = total + ref.ranknet_cost(s[i], s[j], target, sigma)
                pairs += 1
        values.append(total)
        counts.append(pairs)
    return torch.stack(values), counts


@pytest.mark.parametrize("include_ties", [False, True])
@pytest.mark.parametrize("k", [1, 3, 8, 50])
def test_ranknet_top_k_matches_the_pair_loop(k, include_ties):
    scores, labels, mask = random_batch(batch=4, length=9, seed=k, score_ties=True)
    scores.requires_grad_()
    ours = ranknet_loss(scores, labels, mask, k=k, sigma=1.5, include_ties=include_ties, reduction="none")
    expected, counts = ranknet_top_k_reference(scores, labels, mask, k=k, sigma=1.5, include_ties=include_ties)
    torch.testing.assert_close(ours, expected, atol=1e-10, rtol=1e-10)
    g_ours, = torch.autograd.grad(ours.sum(), scores)
    g_ref, = torch.autograd.grad(expected.sum(), scores)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-10, rtol=1e-10)
    pairs_mean = ranknet_loss(scores, labels, mask, k=k, sigma=1.5, include_ties=include_ties, normalize="pairs")
    torch.testing.assert_close(pairs_mean, expected.sum() / max(sum(counts), 1), atol=1e-10, rtol=1e-10)


def test_ranknet_top_k_of_the_whole_list_is_plain_ranknet():
    scores, labels, mask = random_batch(batch=3, length=12, seed=9)
    torch.testing.assert_close(ranknet_loss(scores, labels, mask, k=12), ranknet_loss(scores, labels, mask))


@pytest.mark.parametrize("top", [None, 7, 300])
def test_chunked_equals_unchunked_on_a_long_list(top):
    gen = torch.Generator().manual_seed(1)
    # float64, so the comparison sees the chunking and not float32 summation order
    scores = torch.randn(2, 3000, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 3000), generator=gen).double()
    mask = torch.rand(2, 3000, generator=gen) > 0.1
    kw = dict(sigma=1.0, include_ties=False, top=top)
    whole = ranknet_value_and_lambdas(scores, labels, mask, **kw, block_elements=1 << 30)
    chunked = ranknet_value_and_lambdas(scores, labels, mask, **kw, block_elements=4096)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # LambdaRank's lists are in rank order: real documents first
    valid = torch.sort(mask.double(), dim=-1, descending=True).values
    gains = torch.rand(2, 3000, generator=gen, dtype=torch.float64) * valid
    discounts = torch.rand(3000, generator=gen, dtype=torch.float64)  # per position
    rank_top = 3000 if top is None else top
    whole = lambdarank_value_and_lambdas(scores, gains, discounts, valid, sigma=1.0, top=rank_top, block_elements=1 << 30)
    chunked = lambdarank_value_and_lambdas(scores, gains, discounts, valid, sigma=1.0, top=rank_top, block_elements=4096)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, torch
    import ltrkit.losses
    torch.set_num_threads(1)
    name, args, length = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    loss_fn = ltrkit.losses.get(name, **args)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(1, length, generator=gen, requires_grad=True)
    labels = torch.randint(0, 5, (1, length), generator=gen).float()
    loss_fn(scores[:, :50], labels[:, :50]).backward()  # warm-up: allocator pools, lazy imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = loss_fn(scores, labels)
    loss.backward()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(json.dumps({"grown": grown, "finite": bool(torch.isfinite(loss)) and bool(torch.isfinite(scores.grad).all())}))
    """
)


@pytest.mark.parametrize(
    "name, args, length",
    [
        ("ranknet", {}, 10_000),
        ("lambdarank", {}, 10_000),
        ("ranknet", {"k": 10}, 100_000),
        ("lambdarank", {"k": 10}, 100_000),
        ("lambdaloss", {"weighting": "ndcg_loss2pp"}, 10_000),
        ("lambdaloss", {"weighting": "ndcg_loss2", "k": 10}, 100_000),
    ],
)
def test_long_lists_train_in_bounded_memory(name, args, length):
    # stated bound: 64 MiB of growth for one list (the [L, L] float32 matrix alone would be
    # 381 MiB at 10,000 documents and 37 GiB at 100,000)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, name, json.dumps(args), str(length)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    assert probe["finite"]
    assert probe["grown"] < 64 * 2**20


QUADRATIC = [
    ("lambdaloss", {"weighting": "ndcg_loss1"}),
    ("lambdaloss", {"weighting": "arp_loss1"}),
    ("ranknet_matrix", {}),
    ("pairwise_hinge", {}),
    ("approx_ndcg", {}),
    ("neural_ndcg", {}),
]


@pytest.mark.parametrize("name, args", QUADRATIC)
def test_quadratic_losses_refuse_long_lists_with_a_clear_message(name, args, monkeypatch):
    loss_fn = ltrkit.losses.get(name, **args)
    # 100,000 documents: refused before anything list-sized is allocated
    scores, labels = torch.zeros(1, 100_000), torch.zeros(1, 100_000)
    labels[0, :3] = 1.0
    registered = "lambdaloss" if name == "lambdaloss" else name
    need = 100_000**2 * PAIR_BYTES[registered] / 2**30
    with pytest.raises(ValueError) as error:
        loss_fn(scores, labels)
    message = str(error.value)
    assert message.startswith(f"{registered}: a batch of 1 list(s) of 100,000 documents needs about {need:,.1f} GiB")
    assert "over the limit of 4 GiB" in message and "ranknet or lambdarank" in message and "max_slate_length" in message
    # a lower limit refuses short lists too; a higher one lets them through
    small_scores, small_labels, _ = random_batch(batch=2, length=300, seed=3, dtype=torch.float32)
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", "0.001")
    with pytest.raises(ValueError, match=r"a batch of 2 list\(s\) of 300 documents needs about .* MiB .* over the limit of 0.001 GiB"):
        loss_fn(small_scores, small_labels)
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", "1")
    assert torch.isfinite(loss_fn(small_scores, small_labels))


def test_lambdaloss_counts_the_longest_real_list_not_the_padding(monkeypatch):
    # a batch padded to 100,000 but holding 200 real documents needs [1, 200, 200]
    scores, labels, mask = torch.zeros(1, 100_000), torch.zeros(1, 100_000), torch.zeros(1, 100_000, dtype=torch.bool)
    mask[0, :200] = True
    labels[0, :5] = 1.0
    assert torch.isfinite(ltrkit.losses.get("lambdaloss", weighting="ndcg_loss1")(scores, labels, mask))


def test_limit_setting_and_ceiling(monkeypatch):
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", "lots")
    with pytest.raises(ValueError, match="LTRKIT_PAIR_MEMORY_GIB must be a positive number of GiB, got 'lots'"):
        check_pair_memory("lambdaloss", 1, 10, 10)
    monkeypatch.setenv("LTRKIT_PAIR_MEMORY_GIB", "4")
    for name in PAIR_BYTES:
        ceiling = largest_list(name)
        check_pair_memory(name, 1, ceiling, ceiling)
        with pytest.raises(ValueError):
            check_pair_memory(name, 1, ceiling + 1, ceiling + 1)
