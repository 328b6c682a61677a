"""Registry behaviour, argument validation, and the models against hand-written references."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ltrkit.models import AttentionRanker, LinearRanker, MLPRanker, build_model, model_hyperparameters, names


def test_names() -> None:
    assert names() == ["attention", "dasalc", "linear", "mlp"]


def test_unknown_model_lists_names() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'mpl'; choose from \['attention', 'dasalc', 'linear', 'mlp'\]"):
        build_model("mpl", 4)
    with pytest.raises(KeyError, match="unknown model"):
        model_hyperparameters("transformer")


def test_unknown_argument_lists_allowed() -> None:
    with pytest.raises(TypeError, match=r"model 'mlp' got unknown argument\(s\) \['hidden'\]; it takes \['activation'"):
        build_model("mlp", 4, hidden=[3])


@pytest.mark.parametrize(
    "name,args,message",
    [
        ("mlp", {"hidden_sizes": [8, 0]}, r"hidden_sizes\[1\] must be an int >= 1, got 0"),
        ("mlp", {"hidden_sizes": 8}, "hidden_sizes must be a sequence of positive ints, got 8"),
        ("mlp", {"hidden_sizes": [2.5]}, r"hidden_sizes\[0\] must be an int >= 1, got 2.5"),
        ("mlp", {"activation": "swish"}, r"activation must be one of \['relu', 'gelu', 'tanh', 'leaky_relu', 'silu', 'elu'\], got 'swish'"),
        ("mlp", {"dropout": 1.0}, r"dropout must be a float in \[0, 1\), got 1.0"),
        ("mlp", {"norm": "group"}, r"norm must be one of \['none', 'batch', 'layer'\], got 'group'"),
        ("linear", {"input_norm": "zscore"}, r"input_norm must be one of \['none', 'batch', 'affine'\], got 'zscore'"),
        ("attention", {"d_model": 10, "n_heads": 4}, "d_model must be divisible by n_heads, got d_model=10, n_heads=4"),
        ("attention", {"n_layers": -1}, "n_layers must be a non-negative int, got -1"),
        ("attention", {"n_heads": True}, "n_heads must be an int >= 1, got True"),
        ("attention", {"positional_encoding": "learned"}, r"positional_encoding must be one of \['none', 'sinusoidal'\]"),
        ("attention", {"encoder_activation": "tanh"}, r"encoder_activation must be one of \['relu', 'gelu'\], got 'tanh'"),
        ("dasalc", {"hidden_sizes": []}, "hidden_sizes must hold at least one width"),
        ("dasalc", {"input_noise": -0.1}, r"input_noise must be a finite float >= 0, got -0.1"),
        ("dasalc", {"input_noise": float("inf")}, r"input_noise must be a finite float >= 0, got inf"),
        ("dasalc", {"d_model": 6, "n_heads": 4}, "d_model must be divisible by n_heads, got d_model=6, n_heads=4"),
        ("dasalc", {"n_layers": -2}, "n_layers must be a non-negative int, got -2"),
    ],
)
def test_bad_argument_values(name: str, args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, 4, **args)


@pytest.mark.parametrize("n_features", [0, -3, 2.0, True])
def test_bad_n_features(n_features: object) -> None:
    with pytest.raises(ValueError, match=f"n_features must be an int >= 1, got {n_features!r}"):
        build_model("linear", n_features)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", names())
def test_hyperparameters_build_and_config_round_trip(name: str) -> None:
    defaults = model_hyperparameters(name)
    assert "n_features" not in defaults and all(v is not inspect.Parameter.empty for v in defaults.values())
    torch.manual_seed(0)
    model = build_model(name, 5, **defaults)
    assert set(model.config) == set(defaults)
    clone = build_model(name, 5, **model.config)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 5)
    model.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))


@pytest.mark.parametrize(
    "features,mask,message",
    [
        (np.zeros((1, 2, 3)), None, "features must be a torch.Tensor"),
        (torch.zeros(2, 3), None, r"features must be 3-D \[B, L, F\], got shape \(2, 3\)"),
        (torch.zeros(1, 2, 4), None, r"features has 4 features .* built for n_features=3"),
        (torch.zeros(1, 2, 3, dtype=torch.int64), None, "features must be a floating-point tensor, got dtype torch.int64"),
        (torch.zeros(1, 2, 3), torch.ones(1, 2), r"mask must be a torch.bool tensor \[B, L\] .* got torch.float32"),
        (torch.zeros(1, 2, 3), torch.ones(2, 1, dtype=torch.bool), r"mask shape \(2, 1\) does not match features shape"),
    ],
)
def test_bad_forward_inputs(features: object, mask: object, message: str) -> None:
    for name in names():
        with pytest.raises(ValueError, match=message):
            build_model(name, 3)(features, mask)


def test_linear_matches_formula() -> None:
    torch.manual_seed(0)
    model = LinearRanker(4)
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    expected = (x @ model.linear.weight[0] + model.linear.bias) * mask
    torch.testing.assert_close(model(x, mask), expected)


def test_mlp_matches_hand_written_network() -> None:
    torch.manual_seed(0)
    model = MLPRanker(4, hidden_sizes=(5, 3), activation="leaky_relu", residual=True).eval()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    model.double()
    b0, b1, head = model.body[0], model.body[1], model.head

    def reference(doc: torch.Tensor) -> torch.Tensor:
        h1 = F.leaky_relu(b0.linear.weight @ doc + b0.linear.bias) + b0.skip.weight @ doc  # widths differ
        h2 = F.leaky_relu(b1.linear.weight @ h1 + b1.linear.bias) + b1.skip.weight @ h1
        return head.weight[0] @ h2 + head.bias[0]

    expected = torch.stack([torch.stack([reference(x[b, i]) for i in range(6)]) for b in range(2)])
    torch.testing.assert_close(model(x), expected)


def _reference_attention_layer(layer: torch.nn.TransformerEncoderLayer, z: torch.Tensor, n_heads: int) -> torch.Tensor:
    """One encoder block over one unpadded list ``z [n, d]``, written from Vaswani et al. 2017."""
    n, d = z.shape
    head_dim = d // n_heads
    w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    wo, bo = layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias

    def attention(x: torch.Tensor) -> torch.Tensor:
        q, k, v = (x @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d] for i in range(3))
        out = torch.zeros(n, d, dtype=x.dtype)
        for h in range(n_heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            for i in range(n):
                logits = torch.stack([q[i, cols] @ k[j, cols] / math.sqrt(head_dim) for j in range(n)])
                weights = torch.exp(logits - logits.max())
                weights = weights / weights.sum()
                out[i, cols] = sum(weights[j] * v[j, cols] for j in range(n))
        return out @ wo.T + bo

    def feed_forward(x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias

    if layer.norm_first:
        z = z + attention(layer.norm1(z))
        return z + feed_forward(layer.norm2(z))
    z = layer.norm1(z + attention(z))
    return layer.norm2(z + feed_forward(z))


@pytest.mark.parametrize("norm_first", [True, False])
def test_attention_matches_hand_written_transformer(norm_first: bool) -> None:
    torch.manual_seed(0)
    model = AttentionRanker(3, d_model=4, n_heads=2, n_layers=2, ff_dim=6, norm_first=norm_first).double().eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        scores = model(x, mask)
        for b in range(2):
            n = int(mask[b].sum())
            z = model.input_projection(x[b, :n])
            for layer in model.encoder.layers:
                z = _reference_attention_layer(layer, z, 2)
            if norm_first:
                z = model.encoder.norm(z)
            torch.testing.assert_close(scores[b, :n], model.head(z)[:, 0])


def test_fit_input_normalization_affine_gives_zscores() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(500, 3, generator=g) * torch.tensor([1.0, 50.0, 0.1]) + torch.tensor([3.0, -7.0, 100.0])
    data = torch.cat([data, torch.full((500, 1), 2.0)], dim=1)  # a constant feature keeps scale 1
    model = MLPRanker(4, input_norm="affine")
    model.fit_input_normalization(data.numpy())
    out = model.input_norm_layer(data).double()
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, :3].std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 3], torch.zeros(500, dtype=torch.float64))


def test_fit_input_normalization_batch_sets_running_stats() -> None:
    data = torch.randn(100, 3) * 4 + 2
    model = LinearRanker(3, input_norm="batch")
    model.fit_input_normalization(data)
    torch.testing.assert_close(model.input_norm_layer.running_mean, data.double().mean(0).float())
    torch.testing.assert_close(model.input_norm_layer.running_var, data.double().var(0, unbiased=False).float())


@pytest.mark.parametrize(
    "data,message",
    [
        (torch.zeros(4, 2), r"features must be \[N, 3\], got shape \(4, 2\)"),
        (torch.zeros(0, 3), "at least one document, got 0 rows"),
        (torch.tensor([[0.0, float("nan"), 1.0]]), "features must be finite"),
    ],
)
def test_fit_input_normalization_errors(data: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LinearRanker(3, input_norm="affine").fit_input_normalization(data)


def test_fit_input_normalization_without_layer_changes_nothing() -> None:
    model = LinearRanker(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.fit_input_normalization(torch.randn(10, 3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_single_real_document_in_training_batch_norm() -> None:
    model = MLPRanker(3, hidden_sizes=[4], norm="batch", input_norm="batch").train()
    mask = torch.tensor([[True, False, False]])
    scores = model(torch.randn(1, 3, 3), mask)
    assert torch.isfinite(scores).all() and scores[0, 1:].eq(0).all()
