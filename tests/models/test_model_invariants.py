"""Invariants every scorer must satisfy: padding is invisible, padded outputs are 0, no NaN."""

from __future__ import annotations

import pytest
import torch

from ltrkit.models import build_model, model_hyperparameters

N_FEATURES = 6

# (name, args): every model and the options that touch padding (batch statistics, attention).
CONFIGS = [
    ("linear", {}),
    ("linear", {"input_norm": "batch"}),
    ("linear", {"input_norm": "affine"}),
    ("mlp", {"hidden_sizes": [8, 8]}),
    ("mlp", {"hidden_sizes": [8, 5], "norm": "batch", "input_norm": "batch", "residual": True}),
    ("mlp", {"hidden_sizes": [7], "norm": "layer", "activation": "gelu", "input_norm": "affine"}),
    ("mlp", {"hidden_sizes": [], "activation": "tanh"}),
    ("attention", {"d_model": 8, "n_heads": 2, "n_layers": 2, "ff_dim": 16}),
    ("attention", {"d_model": 8, "n_heads": 4, "n_layers": 1, "ff_dim": 8, "norm_first": False, "input_norm": "batch"}),
    ("attention", {"d_model": 6, "n_heads": 3, "n_layers": 0, "ff_dim": 8, "input_hidden_sizes": [5], "head_hidden_sizes": [4]}),
    ("attention", {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 8, "encoder_activation": "gelu", "activation": "silu"}),
    ("dasalc", {"hidden_sizes": [8, 6], "d_model": 8, "n_heads": 2, "n_layers": 2, "ff_dim": 16}),
    ("dasalc", {"hidden_sizes": [5], "d_model": 4, "n_heads": 1, "n_layers": 1, "ff_dim": 8, "input_norm": "affine", "activation": "gelu"}),
    ("dasalc", {"hidden_sizes": [7], "n_layers": 0, "input_norm": "none"}),
]
CONTEXT_MODELS = ("attention", "dasalc")
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CONFIGS)]


def _model(name: str, args: dict, *, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    args = dict(args)
    # train-mode comparisons need a deterministic forward
    if "dropout" in model_hyperparameters(name):
        args.setdefault("dropout", 0.0)
    if "input_noise" in model_hyperparameters(name):
        args.setdefault("input_noise", 0.0)
    return build_model(name, N_FEATURES, **args)


def _lists(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, N_FEATURES, generator=g) for n in (5, 1, 3, 7)]


def _pad(lists: list[torch.Tensor], length: int, fill: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.empty(len(lists), length, N_FEATURES)
    batch[:] = fill
    mask = torch.zeros(len(lists), length, dtype=torch.bool)
    for i, docs in enumerate(lists):
        batch[i, : len(docs)] = docs
        mask[i, : len(docs)] = True
    return batch, mask


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
@pytest.mark.parametrize("fill", [0.0, float("nan"), 1e30, "random"])
def test_padding_never_changes_real_scores_in_eval(name: str, args: dict, fill: object) -> None:
    model = _model(name, args).eval()
    lists = _lists()
    g = torch.Generator().manual_seed(7)
    fill_value = torch.randn(len(lists), 12, N_FEATURES, generator=g) * 100 if fill == "random" else fill
    batch, mask = _pad(lists, 12, fill_value)
    with torch.no_grad():
        padded = model(batch, mask)
        for i, docs in enumerate(lists):
            alone = model(docs[None], torch.ones(1, len(docs), dtype=torch.bool))[0]
            torch.testing.assert_close(padded[i, : len(docs)], alone, rtol=1e-5, atol=1e-5)
    assert torch.all(padded[~mask] == 0)
    assert torch.isfinite(padded).all()


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
def test_padding_never_changes_real_scores_in_training(name: str, args: dict) -> None:
    """In training mode batch statistics must come from real documents only."""
    lists = _lists()
    tight, tight_mask = _pad(lists, 7, 0.0)
    loose, loose_mask = _pad(lists, 15, 1e3)
    model = _model(name, args).train()
    out_tight = model(tight, tight_mask)
    out_loose = model(loose, loose_mask)
    torch.testing.assert_close(out_loose[:, :7][tight_mask], out_tight[tight_mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
def test_all_padding_rows_and_nan_padding_give_finite_gradients(name: str, args: dict) -> None:
    lists = _lists()
    batch, mask = _pad(lists, 9, float("nan"))
    batch = torch.cat([batch, torch.full((1, 9, N_FEATURES), float("nan"))])  # a list with no real document
    mask = torch.cat([mask, torch.zeros(1, 9, dtype=torch.bool)])
    model = _model(name, args).train()
    scores = model(batch, mask)
    assert torch.all(scores[-1] == 0) and torch.isfinite(scores).all()
    (scores * torch.randn_like(scores)).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
def test_batch_of_only_padding(name: str, args: dict) -> None:
    model = _model(name, args).train()
    scores = model(torch.randn(2, 4, N_FEATURES), torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(scores, torch.zeros(2, 4))


@pytest.mark.parametrize(
    "name,args", [c for c in CONFIGS if c[0] in CONTEXT_MODELS], ids=[i for i in IDS if i.startswith(CONTEXT_MODELS)]
)
def test_context_models_are_permutation_equivariant(name: str, args: dict) -> None:
    model = _model(name, args).eval()
    g = torch.Generator().manual_seed(3)
    batch = torch.randn(3, 8, N_FEATURES, generator=g)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, 5:] = False
    perm = torch.randperm(8, generator=g)
    with torch.no_grad():
        scores = model(batch, mask)
        permuted = model(batch[:, perm], mask[:, perm])
    torch.testing.assert_close(permuted, scores[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_context_scores_depend_on_the_other_documents(name: str) -> None:
    """Context awareness: changing one document changes another document's score."""
    model = _model(name, {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}).eval()
    g = torch.Generator().manual_seed(4)
    batch = torch.randn(1, 5, N_FEATURES, generator=g)
    changed = batch.clone()
    changed[0, 4] += 3.0
    with torch.no_grad():
        before, after = model(batch), model(changed)
    assert not torch.allclose(before[0, :4], after[0, :4], atol=1e-4)


def test_sinusoidal_positions_break_equivariance() -> None:
    args = {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16, "positional_encoding": "sinusoidal"}
    model = _model("attention", args).eval()
    g = torch.Generator().manual_seed(5)
    batch = torch.randn(1, 6, N_FEATURES, generator=g)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    with torch.no_grad():
        scores, permuted = model(batch), model(batch[:, perm])
    assert not torch.allclose(permuted, scores[:, perm], atol=1e-4)


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
def test_missing_mask_means_all_real_and_float64_works(name: str, args: dict) -> None:
    model = _model(name, args).eval()
    batch = torch.randn(2, 4, N_FEATURES)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch, torch.ones(2, 4, dtype=torch.bool)))
        out64 = model.double()(batch.double())
    assert out64.dtype == torch.float64 and out64.shape == (2, 4)


@pytest.mark.parametrize("name,args", CONFIGS, ids=IDS)
def test_context_aware_flag_matches_behaviour(name: str, args: dict) -> None:
    """``context_aware=False`` promises that grouping documents differently changes no score."""
    model = _model(name, args).eval()
    lists = _lists()
    batch, mask = _pad(lists, 7, 0.0)
    merged = torch.cat(lists)[None]  # every document in one list
    with torch.no_grad():
        per_list = model(batch, mask)[mask]
        together = model(merged, torch.ones(merged.shape[:2], dtype=torch.bool))[0]
    assert model.context_aware == (name in CONTEXT_MODELS and model.config["n_layers"] > 0)
    if model.context_aware:
        assert not torch.allclose(per_list, together, atol=1e-4)
    else:
        torch.testing.assert_close(per_list, together, rtol=1e-5, atol=1e-5)


def test_dasalc_noise_is_training_only_augmentation() -> None:
    model = _model("dasalc", {"hidden_sizes": [8], "d_model": 4, "n_heads": 2, "ff_dim": 8, "input_noise": 0.5})
    batch = torch.randn(2, 5, N_FEATURES)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)
        model.train()
        torch.manual_seed(0)
        noisy = model(batch)
        torch.manual_seed(0)
        again = model(batch)
        torch.manual_seed(1)
        other = model(batch)
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    assert not torch.allclose(noisy, other, atol=1e-4)


def test_dasalc_latent_cross_formula() -> None:
    """Score = head((1 + W_out c) * tower(x)), recomputed by hand from the submodules."""
    model = _model("dasalc", {"hidden_sizes": [6], "d_model": 4, "n_heads": 2, "n_layers": 1, "ff_dim": 8, "input_norm": "none"}).eval()
    x = torch.randn(1, 4, N_FEATURES)
    with torch.no_grad():
        h = model.tower(x[0])
        c = model.encoder(model.context_in(x))[0]
        expected = model.head((1 + model.context_out(c)) * h).squeeze(-1)
        torch.testing.assert_close(model(x)[0], expected, rtol=1e-5, atol=1e-6)
