"""Encoders: modules from item inputs to vectors, and the model the embedding job trains.

Every encoder takes ``n_inputs`` first (the feature count, or the vocabulary size of a token
encoder) and keyword hyperparameters, and maps ``inputs [B, ...]`` to ``[B, dim]``:

* ``mlp``: dense features ``[B, F]`` float -> ``[B, dim]`` (Linear + ReLU + dropout layers).
* ``bag_of_words``: token ids ``[B, T]`` int64 (``0`` = padding, ids ``1..n_inputs-1``) -> the
  mean (or sum) of the tokens' vectors (``torch.nn.EmbeddingBag``), then a linear layer.
* ``cnn``: images flattened to ``[B, C*H*W]`` (``image_shape = [C, H, W]``) -> two 3x3
  convolution blocks, global average pooling, a linear layer.

:class:`EmbeddingModel` wraps an encoder with optional L2 normalisation of the outputs (then
cosine similarity is a dot product and Euclidean distances lie in ``[0, 2]``) and, for
StarSpace-style training, a table of entity vectors of the second kind (tags) in the same space.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

__all__ = ["BagOfWordsEncoder", "CNNEncoder", "EmbeddingModel", "MLPEncoder", "build_encoder", "encoder_hyperparameters", "encoder_names", "ENCODERS"]


class MLPEncoder(nn.Module):
    """Dense features ``[B, F]`` -> ``[B, dim]``: ``hidden_sizes`` ReLU layers, then a linear layer."""

    input_kind = "float"

    def __init__(self, n_inputs: int, *, hidden_sizes: Sequence[int] = (128,), dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        width = n_inputs
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(size)
        layers.append(nn.Linear(width, int(dim)))
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


class BagOfWordsEncoder(nn.Module):
    """Token ids ``[B, T]`` (0 = padding) -> ``[B, dim]``: mean or sum of token vectors, then linear."""

    input_kind = "tokens"

    def __init__(self, n_inputs: int, *, token_dim: int = 64, dim: int = 64, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "sum"):
            raise ValueError(f"mode must be 'mean' or 'sum', got {mode!r}")
        self.bag = nn.EmbeddingBag(n_inputs, int(token_dim), mode=mode, padding_idx=0)
        self.out = nn.Linear(int(token_dim), int(dim))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.out(self.bag(inputs))


class CNNEncoder(nn.Module):
    """Images ``[B, C*H*W]`` -> ``[B, dim]``: two conv(3x3)-ReLU blocks (the first pooled 2x2), mean pool, linear."""

    input_kind = "float"

    def __init__(self, n_inputs: int, *, image_shape: Sequence[int] = (1, 8, 8), channels: Sequence[int] = (16, 32), dim: int = 64) -> None:
        super().__init__()
        shape = [int(size) for size in image_shape]
        if len(shape) != 3 or shape[0] * shape[1] * shape[2] != n_inputs:
            raise ValueError(f"image_shape [C, H, W] must multiply to the {n_inputs} inputs, got {list(image_shape)}")
        if len(channels) != 2:
            raise ValueError(f"channels must list the 2 convolution widths, got {list(channels)}")
        self.image_shape = shape
        # plain ints, not a list, so that TorchScript compiles the reshape of forward
        self.channels_in, self.height, self.width = shape
        first, second = int(channels[0]), int(channels[1])
        self.features = nn.Sequential(
            nn.Conv2d(shape[0], first, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(first, second, 3, padding=1), nn.ReLU(),
        )
        self.out = nn.Linear(second, int(dim))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        images = inputs.reshape(inputs.shape[0], self.channels_in, self.height, self.width)
        return self.out(self.features(images).mean(dim=(2, 3)))


ENCODERS: Dict[str, type] = {"mlp": MLPEncoder, "bag_of_words": BagOfWordsEncoder, "cnn": CNNEncoder}


def encoder_names() -> List[str]:
    """Sorted names of the built-in encoders."""
    return sorted(ENCODERS)


def encoder_hyperparameters(name: str) -> Dict[str, Any]:
    """Keyword arguments of encoder ``name`` with their defaults.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; choose from {encoder_names()}")
    params = list(inspect.signature(ENCODERS[name].__init__).parameters.values())[2:]
    return {p.name: p.default for p in params}


def build_encoder(name: str, n_inputs: int, **args: Any) -> nn.Module:
    """Instantiate encoder ``name`` for ``n_inputs`` inputs (features, or the vocabulary size).

    Raises:
        KeyError: unknown name. TypeError: an argument it does not take. ValueError: a bad value.
    """
    allowed = encoder_hyperparameters(name)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise TypeError(f"encoder {name!r} got unknown argument(s) {unknown}; it takes {sorted(allowed)}")
    return ENCODERS[name](n_inputs, **args)


class EmbeddingModel(nn.Module):
    """An encoder, optionally L2-normalised, plus (StarSpace) a table of ``n_entities`` entity vectors.

    Args:
        encoder: module ``inputs -> [B, dim]``.
        normalize: L2-normalise every output vector (items and entities).
        n_entities: size of the second entity kind's table (``None``: no table).
        dim: the encoder's output size (needed for the table).

    Example:
        >>> model = EmbeddingModel(MLPEncoder(4, hidden_sizes=[], dim=3), normalize=True)
        >>> float(model(torch.ones(2, 4)).detach().norm(dim=1)[0])  # doctest: +ELLIPSIS
        1.0...
    """

    def __init__(self, encoder: nn.Module, *, normalize: bool = True, n_entities: Optional[int] = None, dim: Optional[int] = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = bool(normalize)
        self.entities = None if n_entities is None else nn.Embedding(int(n_entities), int(dim))

    def _finish(self, vectors: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` embeddings of the items ``inputs``."""
        return self._finish(self.encoder(inputs))

    def entity_vectors(self, ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Vectors of entities ``ids`` (all of them when ``None``), normalised like the items."""
        if self.entities is None:
            raise ValueError("this model has no entity table (it was not trained StarSpace-style)")
        weight = self.entities.weight if ids is None else self.entities(ids)
        return self._finish(weight)
