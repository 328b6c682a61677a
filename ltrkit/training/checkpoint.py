"""Checkpoints: the full training state, written atomically, loadable with ``weights_only=True``.

A checkpoint is a dict::

    {"format": 1, "epoch": int (last finished epoch, 1-based), "model": state_dict,
     "loss": state_dict (learnable loss parameters, e.g. ordinal cutpoints), "optimizer": ...,
     "scheduler": ..., "scaler": ... or None, "rng": {...}, "early_stopping": {...},
     "history": [...], "config": {...}, "normalizer": {...}, "n_features": int}

RNG states (torch CPU and CUDA, numpy's global generator, Python's ``random``) are captured after
the epoch so a resumed run draws the same dropout masks as an uninterrupted one; the data order
needs no state because ``BatchLoader.set_epoch`` makes it a function of ``(seed, epoch)``.
Numpy's state is stored as plain lists so the file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np
import torch

from ltrkit.training import _io

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_KEYS", "capture_rng_state", "restore_rng_state", "save_checkpoint", "load_checkpoint", "state_error_summary"]

CHECKPOINT_FORMAT = 1

#: The entries every checkpoint holds besides ``format`` (the trainer writes all of them).
CHECKPOINT_KEYS = (
    "epoch", "model", "loss", "optimizer", "scheduler", "scaler", "rng", "early_stopping", "history", "config", "normalizer", "n_features",
)


def capture_rng_state() -> Dict[str, Any]:
    """The global RNG states of torch (CPU, CUDA), numpy and Python's ``random``."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (CUDA states only where a GPU is present)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """Atomically write ``state`` (with ``"format"`` added) to ``path``."""
    _io.torch_save(path, {"format": CHECKPOINT_FORMAT, **state})


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", required: Sequence[str] = ()
) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    Args:
        path: the ``.pt`` file.
        map_location: where tensors are loaded.
        required: entries the caller needs (e.g. :data:`CHECKPOINT_KEYS` to resume training).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file cannot be opened, is corrupt or truncated, holds objects
            ``weights_only`` refuses to load, is not an ltrkit checkpoint of a known format, or lacks a ``required`` entry; the
            message is one line naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r}: {(error.strerror or str(error)).lower()}") from error
    try:
        with handle:
            state = torch.load(handle, map_location=map_location, weights_only=True)
    except Exception as error:  # a corrupt, foreign or refused file: say which, whatever torch raised
        # torch's messages run to a page of advice on weights_only; one phrase says what went wrong
        text = str(error)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            raise ValueError(
                f"{str(path)!r} was refused by torch.load(weights_only=True): it holds an object of {refused.group(1)}, "
                "not only tensors and plain containers"
            ) from error
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        lines = text.strip().splitlines()
        reason = detail.group(1) if detail else (lines[0] if lines else type(error).__name__)
        raise ValueError(f"{str(path)!r} is corrupt or truncated, not a readable checkpoint ({reason})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an ltrkit checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete ltrkit checkpoint: it lacks {missing}")
    return state


def state_error_summary(error: BaseException) -> str:
    """One line for an error of restoring a checkpoint's state (``load_state_dict`` and the like).

    torch lists every mismatching tensor on its own line; the first one and a count say enough.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> try:
        ...     model.load_state_dict({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)})
        ... except RuntimeError as error:
        ...     print(state_error_summary(error))
        size mismatch for weight: copying a param with shape torch.Size([3, 3]) from checkpoint, the shape in current model is torch.Size([1, 2]). (and 1 more)
    """
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    details = lines[1:] if lines[0].startswith("Error(s) in loading state_dict") and len(lines) > 1 else lines
    return details[0] + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(item) for item in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(item) for item in value)
    return value
