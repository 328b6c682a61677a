"""``ClickSessions``: a click log as dense ``[S, K]`` arrays, one row per session in shown order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["ClickSessions"]


@dataclass
class ClickSessions:
    """Sessions of a click log, position ``r`` (0-based) of row ``s`` = the document shown at rank ``r + 1``.

    Attributes:
        docs: ``[S, K]`` int64 document keys (the data file's row of the document, so a key
            identifies a (query, document) pair); ``-1`` at padding.
        clicks: ``[S, K]`` bool, False at padding.
        mask: ``[S, K]`` bool, True = a shown document. Shown positions come first in a row.
        queries: ``[S]`` int64 query index of each session (position in the data), or None.
        propensities: ``[S, K]`` float64 examination probabilities when known, else None.
        logging_ranks: ``[S, K]`` int64 1-based rank of the document under the logging policy
            before any randomised intervention, or None.
    """

    docs: np.ndarray
    clicks: np.ndarray
    mask: np.ndarray
    queries: Optional[np.ndarray] = None
    propensities: Optional[np.ndarray] = None
    logging_ranks: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.docs = np.asarray(self.docs, dtype=np.int64)
        self.clicks = np.asarray(self.clicks, dtype=bool)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.docs.ndim != 2 or self.clicks.shape != self.docs.shape or self.mask.shape != self.docs.shape:
            raise ValueError(
                f"docs, clicks and mask must share one [S, K] shape, got {self.docs.shape}, {self.clicks.shape}, {self.mask.shape}"
            )
        if (self.clicks & ~self.mask).any():
            raise ValueError("clicks must be False at padding (mask=False) positions")
        if (self.mask[:, 1:] & ~self.mask[:, :-1]).any():
            raise ValueError("shown positions must come first in each session (mask is a prefix)")
        if (self.docs[self.mask] < 0).any():
            raise ValueError("document keys must be >= 0 at shown positions")
        for name in ("propensities", "logging_ranks"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != self.docs.shape:
                raise ValueError(f"{name} shape {np.shape(value)} does not match docs shape {self.docs.shape}")

    @property
    def n_sessions(self) -> int:
        return int(self.docs.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.docs.shape[1])

    def subset(self, rows: np.ndarray) -> "ClickSessions":
        """The sessions at ``rows`` (indices or a boolean mask)."""
        pick = lambda value: None if value is None else value[rows]  # noqa: E731
        return ClickSessions(self.docs[rows], self.clicks[rows], self.mask[rows], pick(self.queries),
                             pick(self.propensities), pick(self.logging_ranks))

    def split(self, holdout: float, seed: int = 0) -> tuple["ClickSessions", "ClickSessions"]:
        """``(train, held_out)``: a random ``holdout`` fraction of the sessions held out."""
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
        held = np.random.default_rng(seed).random(self.n_sessions) < holdout
        return self.subset(~held), self.subset(held)
