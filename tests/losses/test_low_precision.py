"""Float16/bfloat16 inputs: every registered loss computes as it does in float32.

Each loss is called on 16-bit inputs and on the same (already rounded) values in float32; the
loss and the gradient must agree up to the rounding of the gradient to the input dtype. The
inputs are chosen to break 16-bit arithmetic: lists of 300 documents (``n^2 = 90,000`` pairs
overflow float16's 65,504; bfloat16 holds integers exactly only up to 256), the pair-normalised
reductions, scores near 1e4 (NeuralSort's logits overflow float16) and, for the embedding
losses, more than 65,504 mined triplets and a zero vector (the ``1e-12`` norm eps underflows).
Comparing against the original float32 inputs instead would mix in ties created by rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltrkit.losses import get, hyperparameters, names
from ltrkit.losses.listwise import neural_sort
from ltrkit.losses.pairwise import NORMALIZATIONS, _count_pairs

LOW = [torch.float16, torch.bfloat16]
DETERMINISTIC = {"listmle": {"tie_break": "input_order"}}


def close(got, want, dtype):
    """``got`` (any dtype) equals ``want`` (float32) to the precision of ``dtype``: relative
    ``eps``, and absolute ``eps`` of the largest value or of ``tiny`` (the spacing of subnormals,
    where small float16 gradients land)."""
    info = torch.finfo(dtype)
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got.float(), want, rtol=info.eps, atol=info.eps * max(scale, info.tiny))


def list_cases():
    gen = torch.Generator().manual_seed(0)
    long_scores = 2.0 * torch.randn(2, 300, generator=gen)
    long_labels = torch.randint(0, 5, (2, 300), generator=gen).float()
    long_mask = torch.ones(2, 300, dtype=torch.bool)
    long_mask[1, 260:] = False
    large_scores = (1e4 * torch.randn(3, 12, generator=gen)).clamp(-6e4, 6e4)
    large_labels = torch.randint(0, 5, (3, 12), generator=gen).float()
    return {
        "300 documents": (long_scores, long_labels, long_mask),
        "scores near 1e4": (large_scores, large_labels, None),
    }


def list_variants(name):
    """Per-list values, plus the pair-normalised means of the pairwise losses (they divide by counts)."""
    base = {**DETERMINISTIC.get(name, {}), "reduction": "none"}
    if "normalize" in hyperparameters(name):
        return [base] + [{**base, "reduction": "mean", "normalize": normalize} for normalize in NORMALIZATIONS]
    return [base]


def value_and_grads(fn, floats, others):
    leaves = [x.detach().clone().requires_grad_(True) for x in floats]
    out = fn(*leaves, *others)
    grads = torch.autograd.grad(out.sum(), leaves)
    return out.detach(), grads


def embedding_cases(name):
    """``[(hyperparameters, float inputs, other inputs)]`` for each embedding loss."""
    gen = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    def signs(n):
        return torch.where(torch.rand(n, generator=gen) > 0.5, 1, -1)

    x1, x2 = randn(64, 16), randn(64, 16)
    x2[3] = 0.0
    classes = torch.arange(96) % 2  # 96 * 47 * 48 = 216,576 valid triplets
    cases = {
        "contrastive": [({"distance": d}, [x1, x2], [torch.rand(64, generator=gen) > 0.5]) for d in ("euclidean", "cosine")],
        "triplet": [({}, [randn(64, 16), randn(64, 16), randn(64, 16)], [])]
        + [({"mining": m, "margin": 4.0}, [randn(96, 8)], [classes]) for m in ("batch_all", "batch_hard", "semi_hard")],
        "cosine_embedding": [({"margin": 0.2}, [x1, x2], [signs(64)])],
        "margin_ranking": [({"margin": 0.5}, [randn(64), randn(64)], [signs(64)])],
    }
    return cases[name]


@pytest.mark.parametrize("name", names(kind="list"))
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_list_losses_compute_16_bit_scores_as_float32(name, dtype):
    for case, (scores, labels, mask) in list_cases().items():
        low = scores.to(dtype)
        for hp in list_variants(name):
            fn = get(name, **hp)
            want, (want_grad,) = value_and_grads(fn, [low.float()], [labels, mask])
            got, (got_grad,) = value_and_grads(fn, [low], [labels, mask])
            assert got_grad.dtype == dtype and torch.isfinite(got).all(), f"{name} {hp} on {case}"
            close(got, want, dtype)
            close(got_grad, want_grad, dtype)


@pytest.mark.parametrize("name", names(kind="embedding"))
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_embedding_losses_compute_16_bit_embeddings_as_float32(name, dtype):
    for hp, floats, others in embedding_cases(name):
        fn = get(name, **hp)
        low = [x.to(dtype) for x in floats]
        want, want_grads = value_and_grads(fn, [x.float() for x in low], others)
        got, got_grads = value_and_grads(fn, low, others)
        assert float(want) > 0 and torch.isfinite(got).all(), f"{name} {hp}"
        close(got, want, dtype)
        for g, w in zip(got_grads, want_grads):
            assert g.dtype == dtype
            close(g, w, dtype)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_neural_sort_of_16_bit_scores_near_1e4_is_the_float32_matrix(dtype):
    scores = torch.tensor([[1e4, -2e4, 3.5e4, 0.0, 5e3]]).to(dtype)
    mask = torch.tensor([[True, True, True, True, False]])
    got = neural_sort(scores, mask, temperature=1e3, sinkhorn_iters=5)
    assert torch.isfinite(got).all()
    close(got, neural_sort(scores.float(), mask, temperature=1e3, sinkhorn_iters=5), dtype)


def test_pair_counts_are_exact_int64_beyond_float32_integers():
    # n^2 = 3.6e7 > 2^24: a float32 count would be rounded
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(rng.integers(0, 5, size=(2, 6000)).astype(np.float32))
    mask = torch.ones(2, 6000, dtype=torch.bool)
    mask[1, 5001:] = False
    counts = _count_pairs(labels, mask, include_ties=False)
    assert counts.dtype == torch.int64
    for b in range(2):
        real = labels[b, mask[b]].long().numpy()
        n = real.size
        same = sum(math.comb(int(c), 2) for c in np.bincount(real))
        assert int(counts[b]) == math.comb(n, 2) - same
    assert _count_pairs(labels, mask, include_ties=True).tolist() == [math.comb(6000, 2), math.comb(5001, 2)]
