"""Name -> scorer registry, so that configs can name a model and its arguments."""

from __future__ import annotations

import inspect
from typing import Callable, Dict, List, Type, TypeVar

from ltrkit.models._layers import RankingModel

_REGISTRY: Dict[str, Type[RankingModel]] = {}

ModelType = TypeVar("ModelType", bound=Type[RankingModel])


def register_model(name: str) -> Callable[[ModelType], ModelType]:
    """Class decorator: make a :class:`RankingModel` subclass reachable as ``build_model(name, ...)``.

    The class must take ``n_features`` first and everything else as keyword arguments.
    """

    def decorate(cls: ModelType) -> ModelType:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def names() -> List[str]:
    """Sorted names of the registered models."""
    return sorted(_REGISTRY)


def model_hyperparameters(name: str) -> Dict[str, object]:
    """The keyword arguments of model ``name`` with their defaults (``n_features`` excluded).

    Raises:
        KeyError: unknown name (the message lists the known names).
    """
    params = list(inspect.signature(_lookup(name).__init__).parameters.values())[2:]  # self, n_features
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_model(name: str, n_features: int, **args: object) -> RankingModel:
    """Instantiate model ``name`` for ``n_features`` input features.

    The model is called as ``model(features [B, L, F], mask [B, L]) -> scores [B, L]`` with 0
    at padded positions; ``model.config`` holds the resolved ``args`` to rebuild it.

    Raises:
        KeyError: unknown name (the message lists the known names).
        TypeError: an argument the model does not take (the message lists those it takes).
        ValueError: an argument with a bad value (from the model's constructor).

    Example:
        >>> model = build_model("mlp", 136, hidden_sizes=[64], dropout=0.1)
        >>> model.config["hidden_sizes"]
        [64]
    """
    cls = _lookup(name)
    allowed = model_hyperparameters(name)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise TypeError(f"model {name!r} got unknown argument(s) {unknown}; it takes {sorted(allowed)}")
    return cls(n_features, **args)


def _lookup(name: str) -> Type[RankingModel]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose from {names()}")
    return _REGISTRY[name]
