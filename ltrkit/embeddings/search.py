"""Nearest-neighbour search over embeddings: exact in torch (chunked top-k), or faiss when installed.

Scores follow :func:`ltrkit.embeddings.retrieval.similarity` (higher = closer); ties in the exact
search keep index order. faiss (``pip install 'ltrkit[faiss]'``) runs a flat index
(``IndexFlatIP`` for cosine/dot, ``IndexFlatL2`` for Euclidean): exhaustive too, but in float32
with its own summation order, so near-ties may swap; :func:`neighbour_recall` states how many
of the exact neighbours it returns.
"""

from __future__ import annotations

from typing import Tuple

import torch

from ltrkit._checks import check_choice
from ltrkit.embeddings.retrieval import SIMILARITIES, similarity

__all__ = ["BACKENDS", "neighbour_recall", "search"]

BACKENDS = ("exact", "faiss")
_BLOCK_ELEMENTS = 1 << 24


def search(
    index: torch.Tensor, queries: torch.Tensor, k: int, *, similarity_kind: str = "cosine", backend: str = "exact"
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` index rows closest to each query: ``(scores [Q, k] float32, rows [Q, k] int64)``.

    ``k`` larger than the index returns every row.

    Raises:
        ValueError: bad shapes, ``k < 1``, an unknown similarity or backend.
        MissingExtraError: ``backend="faiss"`` without faiss installed.
    """
    check_choice("similarity", similarity_kind, SIMILARITIES)
    check_choice("backend", backend, BACKENDS)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if index.dim() != 2 or queries.dim() != 2 or index.shape[1] != queries.shape[1]:
        raise ValueError(f"index [N, D] and queries [Q, D] must share D, got {tuple(index.shape)} and {tuple(queries.shape)}")
    k = min(k, index.shape[0])
    if backend == "faiss":
        return _faiss_search(index, queries, k, similarity_kind)
    chunk = max(1, _BLOCK_ELEMENTS // max(index.shape[0], 1))
    scores, rows = [], []
    for start in range(0, queries.shape[0], chunk):
        block = similarity(queries[start : start + chunk], index, similarity_kind)
        # a stable descending sort keeps index order among ties (topk does not promise it)
        order = torch.sort(block, dim=1, descending=True, stable=True).indices[:, :k]
        scores.append(torch.gather(block, 1, order))
        rows.append(order)
    return torch.cat(scores), torch.cat(rows)


def _faiss_search(index: torch.Tensor, queries: torch.Tensor, k: int, kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    from ltrkit._optional import require

    (faiss,) = require("faiss search", "faiss", "faiss")
    if kind == "cosine":
        index, queries = torch.nn.functional.normalize(index, dim=-1), torch.nn.functional.normalize(queries, dim=-1)
    vectors = index.float().contiguous().numpy()
    flat = faiss.IndexFlatL2(vectors.shape[1]) if kind == "euclidean" else faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    values, rows = flat.search(queries.float().contiguous().numpy(), k)
    scores = torch.from_numpy(values)
    # IndexFlatL2 returns squared distances; the scores are negated distances like the exact search's
    return (-scores.clamp_min(0).sqrt() if kind == "euclidean" else scores), torch.from_numpy(rows).long()


def neighbour_recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Fraction of the exact top-k rows ``exact [Q, k]`` that ``found [Q, k]`` also returns."""
    if exact.numel() == 0:
        return 1.0
    hits = (found.unsqueeze(2) == exact.unsqueeze(1)).any(dim=1)
    return float(hits.float().mean())
