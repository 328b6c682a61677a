"""Optional dependencies (the ``onnx`` and ``serve`` extras): import them or say which pip install fixes it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Tuple

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that fixes it."""


def require(feature: str, extra: str, *modules: str) -> Tuple[ModuleType, ...]:
    """Import ``modules`` (top-level names), or raise one error naming every missing one.

    Args:
        feature: what needs them, e.g. ``"ONNX export"``.
        extra: the ltrkit extra that installs them, e.g. ``"onnx"``.
        *modules: module names to import.

    Returns:
        The imported modules, in the order given.

    Raises:
        MissingExtraError: ``"ONNX export needs onnx and onnxruntime: pip install 'ltrkit[onnx]'"``.

    Example:
        >>> (json_module,) = require("reading JSON", "none", "json")
        >>> json_module.__name__
        'json'
    """
    imported, missing = [], []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        names = f"{', '.join(missing[:-1])} and {missing[-1]}" if len(missing) > 1 else missing[0]
        raise MissingExtraError(f"{feature} needs {names}: pip install 'ltrkit[{extra}]'")
    return tuple(imported)
