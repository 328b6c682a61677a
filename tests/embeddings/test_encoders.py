"""Built-in encoders: shapes, padding, L2 normalisation, argument checks."""

from __future__ import annotations

import pytest
import torch

from ltrkit.embeddings.encoders import EmbeddingModel, build_encoder


def test_bag_of_words_ignores_padding_and_averages_token_vectors():
    torch.manual_seed(0)
    encoder = build_encoder("bag_of_words", 20, token_dim=5, dim=3)
    tokens = torch.tensor([[4, 7, 0, 0], [4, 7, 9, 0]])
    out = encoder(tokens)
    assert out.shape == (2, 3)
    # padding (id 0) is no token: [4, 7, 0, 0] is the bag {4, 7}
    mean = encoder.bag.weight[[4, 7]].mean(0)
    torch.testing.assert_close(out[0], encoder.out(mean))


def test_cnn_reshapes_flat_images():
    encoder = build_encoder("cnn", 64, image_shape=[1, 8, 8], channels=[4, 6], dim=5)
    assert encoder(torch.rand(3, 64)).shape == (3, 5)
    with pytest.raises(ValueError, match="multiply to the 64 inputs"):
        build_encoder("cnn", 64, image_shape=[1, 7, 8])


def test_normalised_model_outputs_unit_vectors():
    model = EmbeddingModel(build_encoder("mlp", 4, hidden_sizes=[8], dim=6), normalize=True, n_entities=3, dim=6)
    torch.testing.assert_close(model(torch.randn(5, 4)).norm(dim=1), torch.ones(5))
    torch.testing.assert_close(model.entity_vectors().norm(dim=1), torch.ones(3))
    raw = EmbeddingModel(build_encoder("mlp", 4, dim=6), normalize=False)
    assert not torch.allclose(raw(torch.randn(5, 4) * 10).norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="no entity table"):
        raw.entity_vectors()


def test_unknown_encoder_and_arguments():
    with pytest.raises(KeyError, match="choose from"):
        build_encoder("rnn", 3)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['width'\]"):
        build_encoder("mlp", 3, width=4)
