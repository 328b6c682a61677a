"""Atomic file writes: every file of a run folder is written to a temporary file in the same
folder and renamed into place, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from ltrkit._atomic import PathLike, atomic_path


def atomic_write(path: PathLike, write: Callable[[Any], None], *, binary: bool) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        with open(temporary, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as handle:
            write(handle)


def write_text(path: PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def write_json(path: PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON; float NaN/inf become ``null`` so the file is strict JSON."""
    write_text(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")


def write_bytes(path: PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    atomic_write(path, lambda handle: handle.write(data), binary=True)


def torch_save(path: PathLike, obj: Any) -> None:
    """Atomically ``torch.save(obj)`` to ``path``."""
    atomic_write(path, lambda handle: torch.save(obj, handle), binary=True)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj
