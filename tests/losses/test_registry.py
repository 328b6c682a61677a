"""The loss registry: every required name resolves, and bad names/hyperparameters fail clearly."""

from __future__ import annotations

import pytest
import torch

from ltrkit.losses import get, hyperparameters, names

REQUIRED_LIST = [
    "ranknet",
    "ranknet_matrix",
    "lambdarank",
    "lambdaloss",
    "listnet",
    "kl_div",
    "listmle",
    "approx_ndcg",
    "neural_ndcg",
    "softmax",
    "pairwise_hinge",
    "mse",
    "sigmoid_bce",
    "ordinal",
]
REQUIRED_EMBEDDING = ["contrastive", "triplet", "cosine_embedding", "margin_ranking"]


@pytest.mark.parametrize("name", REQUIRED_LIST + REQUIRED_EMBEDDING)
def test_required_name_returns_a_callable_module(name):
    loss = get(name)
    assert isinstance(loss, torch.nn.Module) and callable(loss)
    assert "reduction" in hyperparameters(name)


@pytest.mark.parametrize("name", REQUIRED_LIST)
def test_list_losses_are_registered_as_list_kind_and_run(name):
    assert name in names(kind="list")
    scores = torch.randn(2, 4)
    labels = torch.tensor([[2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    out = get(name)(scores, labels, torch.ones(2, 4, dtype=torch.bool))
    assert out.shape == () and torch.isfinite(out)


@pytest.mark.parametrize("name", ["contrastive", "triplet", "cosine_embedding"])
def test_embedding_losses_are_registered_as_embedding_kind(name):
    assert name in names(kind="embedding") and name not in names(kind="list")


def test_unknown_name_lists_the_known_names():
    with pytest.raises(KeyError, match=r"unknown loss 'lambdarnk'; choose from \[.*'lambdarank'.*'listnet'.*\]"):
        get("lambdarnk")


@pytest.mark.parametrize("name", ["listnet", "neural_ndcg", "ordinal", "triplet"])
def test_unknown_hyperparameter_is_a_type_error_listing_the_accepted_ones(name):
    with pytest.raises(TypeError, match=rf"loss '{name}' got unknown hyperparameter\(s\) \['temprature'\]; it takes \[.*'reduction'.*\]"):
        get(name, temprature=1.0)


def test_hyperparameters_report_defaults():
    assert hyperparameters("listnet") == {"reduction": "mean", "temperature": 1.0, "label_transform": "softmax"}
    assert hyperparameters("triplet")["mining"] is None
    assert hyperparameters("ordinal")["n_classes"] == 5
