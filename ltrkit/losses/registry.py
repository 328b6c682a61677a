"""Name -> loss registry so that configs can name a loss and its hyperparameters.

Each family module registers its ``nn.Module`` wrappers with :func:`register`. ``get(name,
**hyperparams)`` checks the hyperparameters against the wrapper's signature and returns an
instance, a callable ``(scores, labels, mask) -> loss`` for list losses.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, List, Optional, Type, TypeVar

from torch import nn

KINDS = ("list", "embedding")
_REGISTRY: Dict[str, Type[nn.Module]] = {}
_KIND: Dict[str, str] = {}

ModuleType = TypeVar("ModuleType", bound=Type[nn.Module])


def register(name: str, *, kind: str = "list") -> Callable[[ModuleType], ModuleType]:
    """Class decorator: make ``cls`` reachable as ``get(name, **hyperparams)``.

    ``kind="list"`` losses are called as ``loss(scores, labels, mask)`` on padded lists;
    ``kind="embedding"`` losses (contrastive, triplet, ...) have their own signatures.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")

    def decorate(cls: ModuleType) -> ModuleType:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"loss name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        _KIND[name] = kind
        return cls

    return decorate


def names(kind: Optional[str] = None) -> List[str]:
    """Sorted names of the registered losses, all of them or those of one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)} or None, got {kind!r}")
    return sorted(name for name in _REGISTRY if kind is None or _KIND[name] == kind)


def hyperparameters(name: str) -> Dict[str, object]:
    """The hyperparameters a loss accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
    cls = _lookup(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: p.default for p in params if p.kind in named}


def get(name: str, **hyperparams: object) -> nn.Module:
    """Instantiate the loss registered as ``name``.

    Raises:
        KeyError: unknown name (the message lists the known names).
        TypeError: a hyperparameter the loss does not take (the message lists those it takes).
    """
    cls = _lookup(name)
    allowed = hyperparameters(name)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise TypeError(f"loss {name!r} got unknown hyperparameter(s) {unknown}; it takes {sorted(allowed)}")
    return cls(**hyperparams)


def _lookup(name: str) -> Type[nn.Module]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown loss {name!r}; choose from {names()}")
    return _REGISTRY[name]
