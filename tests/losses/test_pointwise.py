"""Pointwise losses against PyTorch's own losses and a loop reference of the ordinal model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ltrkit.losses import get
from ltrkit.losses.pointwise import mse_loss, ordinal_loss, ordinal_probabilities, rmse_loss, sigmoid_bce_loss

_spec = importlib.util.spec_from_file_location("reference_listwise", Path(__file__).with_name("reference_listwise.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def random_batch(batch=4, length=7, *, seed=0, levels=5, p_pad=0.3):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, levels, (batch, length), generator=gen).double()
    mask = torch.rand(batch, length, generator=gen) > p_pad
    mask[:, 0] = True
    return scores, labels, mask


def torch_per_list(fn, scores, labels, mask):
    """Per-list values of a PyTorch loss applied to each list's real positions (mean over items)."""
    leaf = scores.clone().requires_grad_(True)
    values = torch.stack([fn(leaf[b][mask[b]], labels[b][mask[b]]) for b in range(scores.shape[0])])
    values.sum().backward()
    return values.detach(), leaf.grad


def ours_per_list(fn, scores, labels, mask, **kw):
    leaf = scores.clone().requires_grad_(True)
    values = fn(leaf, labels, mask, reduction="none", **kw)
    values.sum().backward()
    return values.detach(), leaf.grad


def test_mse_and_rmse_match_pytorch_per_list():
    scores, labels, mask = random_batch(seed=1)
    want, want_grad = torch_per_list(F.mse_loss, scores, labels, mask)
    got, got_grad = ours_per_list(mse_loss, scores, labels, mask)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    want, want_grad = torch_per_list(lambda s, y: F.mse_loss(s, y).sqrt(), scores, labels, mask)
    got, got_grad = ours_per_list(rmse_loss, scores, labels, mask)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)


def test_rmse_gradient_at_a_perfect_fit_is_zero_not_nan():
    labels = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    scores = labels.clone().requires_grad_(True)
    loss = rmse_loss(scores, labels)
    loss.backward()
    assert float(loss.detach()) == 0 and torch.all(scores.grad == 0)


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_sigmoid_bce_equals_binary_cross_entropy_with_logits_on_real_positions(threshold):
    scores, labels, mask = random_batch(seed=2)
    scores[0, 1] = 40.0  # far into the tails, where a naive log(sigmoid) would break
    scores[1, 0] = -40.0

    def torch_bce(s, y):
        return F.binary_cross_entropy_with_logits(s, (y > threshold).double())

    want, want_grad = torch_per_list(torch_bce, scores, labels, mask)
    got, got_grad = ours_per_list(sigmoid_bce_loss, scores, labels, mask, threshold=threshold)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)
    # with equal-length lists the default mean is PyTorch's mean over all items
    full = torch.ones_like(mask)
    torch.testing.assert_close(
        sigmoid_bce_loss(scores, labels, full, threshold=threshold),
        F.binary_cross_entropy_with_logits(scores, (labels > threshold).double()),
    )


def test_sigmoid_bce_bad_threshold():
    with pytest.raises(ValueError, match="threshold must be a finite number, got inf"):
        sigmoid_bce_loss(torch.zeros(1, 2), torch.zeros(1, 2), threshold=float("inf"))


CUTPOINTS = torch.tensor([-1.5, -0.2, 0.4, 2.0], dtype=torch.float64)


def test_ordinal_matches_loop_reference_values_and_gradients():
    scores, labels, mask = random_batch(seed=3)
    cut = CUTPOINTS.clone().requires_grad_(True)
    leaf = scores.clone().requires_grad_(True)
    got = ordinal_loss(leaf, labels, mask, cutpoints=cut, reduction="none")
    got.sum().backward()
    got_s, got_c = leaf.grad, cut.grad
    leaf2 = scores.clone().requires_grad_(True)
    cut2 = CUTPOINTS.clone().requires_grad_(True)
    want = torch.stack(
        [ref.ordinal_nll(leaf2[b][mask[b]], labels[b][mask[b]], cut2) for b in range(scores.shape[0])]
    )
    want.sum().backward()
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_s, leaf2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_c, cut2.grad, rtol=1e-10, atol=1e-12)


def test_ordinal_probabilities_sum_to_one_and_define_the_loss():
    scores = torch.linspace(-4, 4, 9, dtype=torch.float64)
    probs = ordinal_probabilities(scores, CUTPOINTS)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(9, dtype=torch.float64))
    assert torch.all(probs > 0)
    labels = torch.arange(9).remainder(5).double()
    want = -torch.log(probs[torch.arange(9), labels.long()]).mean()
    torch.testing.assert_close(ordinal_loss(scores.unsqueeze(0), labels.unsqueeze(0), cutpoints=CUTPOINTS), want)


def test_ordinal_is_finite_for_extreme_scores():
    scores = torch.tensor([[1e4, -1e4, 1e4, -1e4]], requires_grad=True)
    labels = torch.tensor([[0.0, 4.0, 2.0, 2.0]])
    loss = ordinal_loss(scores, labels, cutpoints=CUTPOINTS.float())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    # the most likely classes cost nothing
    easy = ordinal_loss(torch.tensor([[1e4, -1e4]]), torch.tensor([[4.0, 0.0]]), cutpoints=CUTPOINTS.float())
    assert float(easy) == 0.0


@pytest.mark.parametrize(
    "cutpoints, message",
    [
        (torch.tensor([0.0, 0.0, 1.0]), r"cutpoints must be strictly increasing, got \[0.0, 0.0, 1.0\]"),
        (torch.tensor([1.0, -1.0]), "cutpoints must be strictly increasing"),
        (torch.tensor([]), "cutpoints must be a 1-d tensor"),
        (torch.zeros(2, 2), r"cutpoints must be a 1-d tensor \[n_classes - 1\] with at least 1 entry, got \(2, 2\)"),
        (torch.tensor([0.0, float("nan")]), "cutpoints must be finite"),
    ],
)
def test_ordinal_bad_cutpoints(cutpoints, message):
    with pytest.raises(ValueError, match=message):
        ordinal_loss(torch.zeros(1, 2), torch.zeros(1, 2), cutpoints=cutpoints)


@pytest.mark.parametrize("bad", [5.0, -1.0, 1.5])
def test_ordinal_labels_must_be_classes(bad):
    labels = torch.tensor([[0.0, bad]])
    with pytest.raises(ValueError, match=rf"labels must be integers in \[0, 4\] .* got {bad}"):
        ordinal_loss(torch.zeros(1, 2), labels, cutpoints=CUTPOINTS)
    # the same value at a padded position is ignored
    ordinal_loss(torch.zeros(1, 2), labels, torch.tensor([[True, False]]), cutpoints=CUTPOINTS)


def test_ordinal_module_cutpoints_stay_ordered_and_learn():
    module = get("ordinal", n_classes=4)
    assert module.cutpoints().shape == (3,)
    torch.testing.assert_close(module.cutpoints(), torch.tensor([-1.0, 0.0, 1.0]), rtol=0, atol=1e-6)
    with torch.no_grad():
        module.raw_gaps.copy_(torch.tensor([-80.0, 30.0]))
        module.first.fill_(7.0)
    cut = module.cutpoints()
    assert torch.all(cut[1:] > cut[:-1])
    scores, labels, mask = random_batch(seed=4, levels=4)
    module = get("ordinal", n_classes=4)
    loss = module(scores, labels, mask)
    loss.backward()
    assert module.first.grad is not None and torch.isfinite(module.raw_gaps.grad).all()
    torch.testing.assert_close(loss, ordinal_loss(scores, labels, mask, cutpoints=module.cutpoints().detach()))
    assert len(list(module.parameters())) == 2


def test_ordinal_module_bad_n_classes():
    with pytest.raises(ValueError, match="n_classes must be an int >= 2, got 1"):
        get("ordinal", n_classes=1)
