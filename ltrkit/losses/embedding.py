"""Metric-learning losses for siamese / triplet embedding networks.

Embeddings are ``[..., D]`` tensors. Where PyTorch has the same loss
(``torch.nn.TripletMarginLoss``, ``torch.nn.CosineEmbeddingLoss``) the values and gradients
here match it, including its ``eps`` conventions. Reductions: ``"mean"`` over the pairs /
triplets / anchors described per loss, ``"sum"``, ``"none"`` (one value per pair, triplet or
anchor); a mean over nothing is 0. Float16/bfloat16 embeddings are computed in float32 (see
:mod:`ltrkit.losses._common`): triplet counts pass 65,504 and PyTorch's ``1e-12`` norm ``eps``
underflows to 0 in float16.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import nn

from ltrkit._checks import check_reduction
from ltrkit._checks import check_choice, check_non_negative, check_positive
from ltrkit.losses._common import at_least_float32
from ltrkit.losses.registry import register

__all__ = [
    "contrastive_loss",
    "triplet_margin_loss",
    "batch_triplet_loss",
    "cosine_embedding_loss",
    "ContrastiveLoss",
    "TripletLoss",
    "CosineEmbeddingLoss",
]

DISTANCES = ("euclidean", "cosine")
MININGS = ("batch_all", "batch_hard", "semi_hard")
# PyTorch's cosine_embedding_loss adds this to each squared norm
_COSINE_EPS = 1e-12


def _check_embedding(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor [..., D], got shape {tuple(x.shape)} dtype {x.dtype}")
    return at_least_float32(x)


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"embedding shapes must match, got {shapes}")


def _check_pair_target(name: str, target: object, expected: torch.Size) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.shape != expected:
        raise ValueError(f"{name} must have shape {tuple(expected)} (embeddings without the last dim), got {tuple(target.shape)}")
    return target


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / max(values.numel(), 1)


def _cosine(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Cosine similarity as PyTorch's cosine_embedding_loss computes it (eps on squared norms)."""
    dot = (x1 * x2).sum(dim=-1)
    norms = ((x1 * x1).sum(dim=-1) + _COSINE_EPS) * ((x2 * x2).sum(dim=-1) + _COSINE_EPS)
    return dot / norms.sqrt()


def contrastive_loss(
    emb1: torch.Tensor,
    emb2: torch.Tensor,
    same: torch.Tensor,
    *,
    margin: float = 1.0,
    distance: str = "euclidean",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Contrastive (pair) loss.

    .. math::
        \ell = \tfrac12\, [\text{same}]\, d^2 + \tfrac12\, [\text{not same}]\, \max(0, m - d)^2

    with ``d = ||emb1 - emb2||_2`` (``distance="euclidean"``) or ``d = 1 - cos(emb1, emb2)``
    (``"cosine"``, cosine as in ``torch.nn.CosineEmbeddingLoss``). At ``d = 0`` the Euclidean
    distance has no gradient; the subgradient 0 is used, so identical embeddings give no NaN.

    Args:
        emb1: ``[..., D]`` embeddings.
        emb2: ``[..., D]`` embeddings.
        same: ``[...]`` bool, or 0/1 numbers: 1 = similar pair.
        margin: ``m >= 0``.
        distance: ``"euclidean"`` or ``"cosine"``.
        reduction: ``"mean"`` (over pairs), ``"sum"`` or ``"none"`` (``[...]``).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: non-float or mismatched embeddings, ``same`` of the wrong shape or not 0/1,
            a negative margin, an unknown distance or reduction.

    Paper: Hadsell, Chopra, LeCun. "Dimensionality Reduction by Learning an Invariant
    Mapping". CVPR 2006.

    Example:
        >>> import torch
        >>> float(contrastive_loss(torch.tensor([[0., 0.]]), torch.tensor([[3., 4.]]), torch.tensor([1])))
        12.5
    """
    emb1 = _check_embedding("emb1", emb1)
    emb2 = _check_embedding("emb2", emb2)
    _check_same_shape(emb1=emb1, emb2=emb2)
    same = _check_pair_target("same", same, emb1.shape[:-1])
    if same.dtype != torch.bool:
        if not bool(((same == 0) | (same == 1)).all()):
            raise ValueError("same must be bool or hold only 0 and 1")
        same = same != 0
    margin = check_non_negative("margin", margin)
    check_choice("distance", distance, DISTANCES)
    check_reduction(reduction)
    if distance == "cosine":
        d = 1.0 - _cosine(emb1, emb2)
        d_squared = d * d
    else:
        d_squared = ((emb1 - emb2) ** 2).sum(dim=-1)
        positive = d_squared > 0
        d = torch.where(positive, torch.where(positive, d_squared, torch.ones_like(d_squared)).sqrt(), torch.zeros_like(d_squared))
    loss = 0.5 * torch.where(same, d_squared, torch.clamp(margin - d, min=0.0) ** 2)
    return _reduce(loss, reduction)


def _pair_distance(x1: torch.Tensor, x2: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim (``torch.nn.functional.pairwise_distance``)."""
    return torch.linalg.vector_norm(x1 - x2 + eps, ord=p, dim=-1)


def triplet_margin_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet margin loss on explicit triplets, identical to ``torch.nn.TripletMarginLoss``.

    .. math::
        \ell = \max\big(0,\ m + d(a, p) - d(a, n)\big), \quad d(x, y) = \|x - y + \epsilon\|_p

    With ``swap=True`` the negative distance is ``min(d(a, n), d(p, n))`` (the "distance swap"
    of Balntas et al.).

    Args:
        anchor: ``[..., D]`` embeddings.
        positive: ``[..., D]``.
        negative: ``[..., D]``.
        margin: ``m >= 0``.
        p: norm degree ``> 0``.
        eps: ``>= 0``, added to the difference as PyTorch does (keeps the norm differentiable).
        swap: use the distance swap.
        reduction: ``"mean"`` (over triplets), ``"sum"`` or ``"none"`` (``[...]``).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: non-float or mismatched embeddings, bad margin/p/eps/reduction.

    Paper: Balntas, Riba, Ponsa, Mikolajczyk. "Learning local feature descriptors with
    triplets and shallow convolutional neural networks". BMVC 2016.

    Example:
        >>> import torch
        >>> a, pos, neg = torch.zeros(1, 2), torch.tensor([[1., 0.]]), torch.tensor([[3., 0.]])
        >>> round(float(triplet_margin_loss(a, pos, neg, margin=3.0, eps=0.0)), 4)
        1.0
    """
    anchor = _check_embedding("anchor", anchor)
    positive = _check_embedding("positive", positive)
    negative = _check_embedding("negative", negative)
    _check_same_shape(anchor=anchor, positive=positive, negative=negative)
    margin = check_non_negative("margin", margin)
    p = check_positive("p", p)
    eps = check_non_negative("eps", eps)
    check_reduction(reduction)
    d_ap = _pair_distance(anchor, positive, p, eps)
    d_an = _pair_distance(anchor, negative, p, eps)
    if swap:
        d_an = torch.minimum(d_an, _pair_distance(positive, negative, p, eps))
    return _reduce(torch.clamp(margin + d_ap - d_an, min=0.0), reduction)


# |x|^2 + |y|^2 - 2 x.y carries a rounding error of a few eps * (|x|^2 + |y|^2): pairs whose squared
# distance is below this share of it (near duplicates, the diagonal) are recomputed from x - y, so
# every distance keeps a relative error of ~1e-6 in float32
_CANCELLATION = 2.0**-4
# more close pairs than this per row and the whole matrix is computed from the differences
_CLOSE_PER_ROW = 64


def triplet_distances(embeddings: torch.Tensor, p: float, squared: bool) -> torch.Tensor:
    """``[N, N]`` p-norm distances between the rows of ``embeddings [N, D]`` (squared with
    ``squared=True``, ``p = 2``), as the online-mining losses and :mod:`ltrkit.embeddings.mining`
    use them; gradient 0 at distance 0.

    Euclidean distances come from one matrix product (``|x|^2 + |y|^2 - 2 x.y`` in BLAS, 3-5x
    faster than ``cdist``'s direct differences), the close pairs recomputed from ``x - y`` (see
    ``_CANCELLATION``); other ``p`` use ``cdist``'s direct differences.
    """
    if p != 2.0:
        return torch.cdist(embeddings, embeddings, p=p, compute_mode="donot_use_mm_for_euclid_dist")
    squared_norms = (embeddings * embeddings).sum(dim=1)
    scale = squared_norms[:, None] + squared_norms[None, :]
    squared_d = torch.addmm(scale, embeddings, embeddings.T, alpha=-2.0).clamp(min=0.0)
    with torch.no_grad():
        rows, columns = torch.nonzero(squared_d <= scale * _CANCELLATION, as_tuple=True)
    if rows.numel() > _CLOSE_PER_ROW * embeddings.shape[0]:
        exact = torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")
        return exact * exact if squared else exact
    squared_d = squared_d.index_put((rows, columns), ((embeddings[rows] - embeddings[columns]) ** 2).sum(dim=1))
    if squared:
        return squared_d
    positive = squared_d > 0
    return torch.where(positive, torch.where(positive, squared_d, 1.0).sqrt(), 0.0)


def padded_columns(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each row's True columns of a ``[N, N]`` bool mask as a padded list.

    Returns ``(columns [N, W] int64, real [N, W] bool)``: row ``i``'s True columns in ascending
    order, then padding (column 0, ``real`` False); ``W`` = the largest row count, at least 1
    (so an empty batch still has a slot to gather from). Memory is
    ``O(N * W)``, the triplet paths' way to stay ``O(N^2)``.
    """
    rows, columns = torch.nonzero(mask, as_tuple=True)
    counts = mask.sum(dim=1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    slots = torch.arange(rows.numel(), device=mask.device) - (torch.cumsum(counts, 0) - counts)[rows]
    padded = torch.zeros(mask.shape[0], width, dtype=torch.long, device=mask.device)
    padded[rows, slots] = columns
    return padded, torch.arange(width, device=mask.device)[None, :] < counts[:, None]


class SemiHardChoice(NamedTuple):
    """The FaceNet semi-hard negatives of every positive pair, from :func:`semi_hard_choice`.

    Each anchor's positives are in slots ``[N, P]`` by ascending ``d(a, p)`` (``real`` marks
    the filled slots). The chosen negatives of one anchor have non-decreasing distances along
    the slots, so the negatives at one chosen distance (its ties) form one group, named by its
    first slot.
    """

    positives: torch.Tensor  # [N, P] int64 column of each slot's positive
    real: torch.Tensor  # [N, P] bool
    chosen: torch.Tensor  # [N, P] distance of the chosen negative (no gradient)
    group: torch.Tensor  # [N, N] int64 first slot whose chosen distance is d(a, n) (valid where `tied`; else up to P)
    tied: torch.Tensor  # [N, N] bool: n is a negative of a at some slot's chosen distance
    first: torch.Tensor  # [N, P] int64 first slot with the same chosen distance


def semi_hard_choice(d: torch.Tensor, positive_pair: torch.Tensor, negative_pair: torch.Tensor) -> SemiHardChoice:
    """Semi-hard negatives for distances ``d [N, N]`` in ``O(N^2)`` memory, ``O(N^2 log P)`` time.

    Per anchor, the negatives are bucketed by how many positives are strictly closer
    (``searchsorted`` among the sorted ``d(a, p)``); the closest negative farther than the
    ``r``-th closest positive is the minimum over buckets ``> r`` (a reversed running minimum),
    else the anchor's farthest negative. No ``[N, N, N]`` tensor is built.
    """
    n = d.shape[0]
    with torch.no_grad():
        inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
        columns, real = padded_columns(positive_pair)
        ascending, order = torch.sort(torch.where(real, torch.gather(d, 1, columns), inf), dim=1)
        negative_d = torch.where(negative_pair, d, inf).contiguous()
        buckets = torch.searchsorted(ascending, negative_d)  # positives strictly closer than each negative
        bucket_min = torch.full((n, columns.shape[1] + 1), float("inf"), dtype=d.dtype, device=d.device)
        bucket_min = bucket_min.scatter_reduce(1, buckets, negative_d, "amin")
        closest_farther = torch.flip(torch.cummin(torch.flip(bucket_min, dims=[1]), dim=1).values, dims=[1])[:, 1:]
        farthest = torch.where(negative_pair, d, -inf).amax(dim=1, keepdim=True)
        chosen = torch.where(torch.isfinite(closest_farther), closest_farther, farthest).contiguous()
        group = torch.searchsorted(chosen, negative_d)
        tied = negative_pair & (torch.searchsorted(chosen, negative_d, right=True) > group)
        first = torch.searchsorted(chosen, chosen)
    return SemiHardChoice(torch.gather(columns, 1, order), real, chosen, group, tied, first)


def _mean_chosen_distance(embeddings: torch.Tensor, chosen: torch.Tensor, p: float, squared: bool) -> torch.Tensor:
    """Per row, the mean distance ``[N]`` to its chosen columns (0 for none), from the embeddings.

    Recomputed from ``x_a - x_b`` for the ``[N, N]`` mask's few True pairs, so the gradient
    reaches only them; the mean shares it evenly among a row's tied columns.
    """
    rows, columns = torch.nonzero(chosen, as_tuple=True)
    difference = embeddings[rows] - embeddings[columns]
    distance = (difference * difference).sum(dim=1) if squared else torch.linalg.vector_norm(difference, ord=p, dim=1)
    count = torch.bincount(rows, minlength=chosen.shape[0]).clamp(min=1).to(distance.dtype)
    return torch.zeros(chosen.shape[0], dtype=distance.dtype, device=distance.device).index_add(0, rows, distance) / count


def _batch_hard(
    embeddings: torch.Tensor, d: torch.Tensor, positive_pair: torch.Tensor, negative_pair: torch.Tensor, margin: float, p: float, squared: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor losses ``[N]`` and the count of anchors with a positive and a negative; ``d``
    (no gradient) picks each anchor's farthest positive and closest negative (all of them when tied)."""
    has_both = (positive_pair.any(dim=1) & negative_pair.any(dim=1))[:, None]
    farthest = torch.where(positive_pair, d, -torch.inf).amax(dim=1, keepdim=True)
    closest = torch.where(negative_pair, d, torch.inf).amin(dim=1, keepdim=True)
    hardest_positive = _mean_chosen_distance(embeddings, positive_pair & (d == farthest) & has_both, p, squared)
    closest_negative = _mean_chosen_distance(embeddings, negative_pair & (d == closest) & has_both, p, squared)
    cost = torch.clamp(margin + hardest_positive - closest_negative, min=0.0)
    return torch.where(has_both[:, 0], cost, torch.zeros_like(cost)), has_both.sum()


def _batch_all(d: torch.Tensor, positive_pair: torch.Tensor, negative_pair: torch.Tensor, margin: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor sums over all valid triplets ``[N]`` and the count of triplets with a positive loss.

    With ``t_p = margin + d(a, p)``, anchor ``a``'s loss is ``sum_n sum_p max(0, t_p - d(a, n))
    = sum_n (S_j - j d(a, n))``, ``j`` the number of ``t_p >= d(a, n)`` and ``S_j`` the sum of
    the ``j`` largest ``t_p``: a sort of the ``P`` thresholds per anchor, one ``searchsorted`` of
    the ``[N, N]`` distances and a prefix sum. Autograd through it gives ``[N, N, N]``'s
    gradients (``-j`` for ``d(a, n)``, the count of active negatives for ``d(a, p)``) in
    ``O(N^2)`` memory.
    """
    columns, real = padded_columns(positive_pair)
    width = columns.shape[1]
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    thresholds = torch.where(real, margin + torch.gather(d, 1, columns), -inf)
    ascending = torch.sort(thresholds, dim=1).values
    keys = ascending.detach().contiguous()
    negative_d = torch.where(negative_pair, d.detach(), inf).contiguous()
    active = width - torch.searchsorted(keys, negative_d)  # t_p >= d(a, n): the triplets with a gradient
    violated = width - torch.searchsorted(keys, negative_d, right=True)  # t_p > d(a, n): a positive loss
    descending = torch.flip(ascending, dims=[1])
    prefix = torch.cumsum(torch.where(torch.isfinite(descending), descending, torch.zeros_like(descending)), dim=1)
    prefix = torch.cat([prefix.new_zeros(prefix.shape[0], 1), prefix], dim=1)
    per_negative = torch.gather(prefix, 1, active) - active * d
    return per_negative.sum(dim=1), violated.sum()


def _semi_hard(d: torch.Tensor, positive_pair: torch.Tensor, negative_pair: torch.Tensor, margin: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor sums over positive pairs ``[N]`` and the count of counted pairs.

    A chosen negative's distance takes its gradient evenly from all negatives at that distance
    (as ``amin``/``amax`` share it): each group adds ``sum (d - d.detach()) / size``, which is 0
    in value.
    """
    choice = semi_hard_choice(d, positive_pair, negative_pair)
    n, width = choice.chosen.shape
    tie_part = torch.where(choice.tied, d - d.detach(), torch.zeros_like(d))
    # one spare column takes the untied negatives (group index up to P)
    share = torch.zeros(n, width + 1, dtype=d.dtype, device=d.device).scatter_add(1, choice.group, tie_part)
    size = torch.zeros(n, width + 1, dtype=d.dtype, device=d.device).scatter_add(1, choice.group, choice.tied.to(d.dtype))
    chosen = choice.chosen + torch.gather(share / size.clamp(min=1), 1, choice.first)
    counted = choice.real & negative_pair.any(dim=1, keepdim=True)
    cost = torch.clamp(margin + torch.gather(d, 1, choice.positives) - chosen, min=0.0)
    return torch.where(counted, cost, torch.zeros_like(cost)).sum(dim=1), counted.sum()


def batch_triplet_loss(
    embeddings: torch.Tensor,
    classes: torch.Tensor,
    *,
    mining: str = "batch_all",
    margin: float = 1.0,
    p: float = 2.0,
    squared: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet loss with online mining over a batch of embeddings and class labels.

    Distances ``d`` are p-norm distances between the rows of ``embeddings`` (squared Euclidean
    with ``squared=True``, which needs ``p=2``). A triplet ``(a, p, n)`` is valid when
    ``a != p``, ``class(a) == class(p)`` and ``class(n) != class(a)``; its loss is
    ``max(0, margin + d(a, p) - d(a, n))``.

    * ``"batch_all"``: every valid triplet. ``"mean"`` averages over the triplets with a
      positive loss (Hermans et al.'s BA≠0, so easy triplets do not wash out the signal);
      ``"none"`` gives each anchor's sum over its triplets ``[N]``.
    * ``"batch_hard"``: per anchor, its farthest positive and closest negative;
      ``"mean"`` averages over anchors that have both; ``"none"`` gives ``[N]`` (0 for anchors
      with no positive or no negative).
    * ``"semi_hard"`` (FaceNet): per positive pair ``(a, p)``, the closest negative farther than
      the positive (``d(a, n) > d(a, p)``), or, if there is none, the farthest negative (the
      TensorFlow Addons convention); ``"mean"`` averages over positive pairs whose anchor has
      a negative; ``"none"`` gives each anchor's sum over its positives ``[N]``.

    ``"sum"`` always equals ``"none"`` summed. Ties in a max/min share its gradient evenly.
    Memory and time: no ``[N, N, N]`` tensor is built; every mining keeps a few ``[N, N]``
    tensors and takes ``O(N^2 (D + log P))`` time, ``P`` the largest class (peak RSS of forward
    and backward at N = 4096, D = 64, float32, in ``benchmarks/bench_embeddings.py``: about
    800 MiB for ``"batch_all"`` and ``"semi_hard"``, 300 MiB for ``"batch_hard"``).
    ``"batch_all"`` sums each anchor's ``P x (N - P)`` triplets in closed form from its sorted
    positive distances; ``"semi_hard"`` finds each pair's negative among buckets of the
    negatives (see :func:`semi_hard_choice`); ``"batch_hard"`` recomputes only the chosen
    distances with a gradient.

    Args:
        embeddings: ``[N, D]`` embeddings.
        classes: ``[N]`` integer (or bool) class labels.
        mining: ``"batch_all"``, ``"batch_hard"`` or ``"semi_hard"``.
        margin: ``>= 0``.
        p: norm degree ``> 0``.
        squared: use squared Euclidean distances (only with ``p=2``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or ``[N]`` for ``reduction="none"``.

    Raises:
        ValueError: embeddings not ``[N, D]`` float, classes not ``[N]`` integer, bad mining,
            margin, p or reduction, ``squared=True`` with ``p != 2``.

    Papers: Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person
    Re-Identification". arXiv:1703.07737, 2017; Schroff, Kalenichenko, Philbin. "FaceNet: A
    Unified Embedding for Face Recognition and Clustering". CVPR 2015.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0., 0.], [1., 0.], [3., 0.]])
        >>> float(batch_triplet_loss(emb, torch.tensor([0, 0, 1]), mining="batch_hard", margin=3.0))
        1.5
    """
    embeddings = _check_embedding("embeddings", embeddings)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape [N, D], got {tuple(embeddings.shape)}")
    if not isinstance(classes, torch.Tensor) or classes.shape != embeddings.shape[:1]:
        got = tuple(classes.shape) if isinstance(classes, torch.Tensor) else type(classes).__name__
        raise ValueError(f"classes must be a tensor of shape [{embeddings.shape[0]}], got {got}")
    if classes.is_floating_point() or classes.is_complex():
        raise ValueError(f"classes must hold integer or bool class labels, got dtype {classes.dtype}")
    check_choice("mining", mining, MININGS)
    margin = check_non_negative("margin", margin)
    p = check_positive("p", p)
    if squared and p != 2.0:
        raise ValueError(f"squared=True needs p=2 (squared Euclidean distance), got p={p}")
    check_reduction(reduction)

    n = embeddings.shape[0]
    same_class = classes.unsqueeze(0) == classes.unsqueeze(1)
    not_self = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
    positive_pair = same_class & not_self
    negative_pair = ~same_class

    if mining == "batch_hard":
        # only O(N) distances carry the loss: choose on a matrix without a graph
        with torch.no_grad():
            d = triplet_distances(embeddings, p, squared)
        per_anchor, counted = _batch_hard(embeddings, d, positive_pair, negative_pair, margin, p, squared)
    else:
        mined = _batch_all if mining == "batch_all" else _semi_hard
        per_anchor, counted = mined(triplet_distances(embeddings, p, squared), positive_pair, negative_pair, margin)
    if reduction == "mean":
        return per_anchor.sum() / counted.clamp(min=1).to(per_anchor.dtype)
    return per_anchor if reduction == "none" else per_anchor.sum()


def cosine_embedding_loss(
    x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, *, margin: float = 0.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Cosine embedding loss, identical to ``torch.nn.CosineEmbeddingLoss``.

    .. math::
        \ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\
        \max(0, \cos(x_1, x_2) - m) & y = -1 \end{cases}

    with ``cos = x1·x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))`` as in PyTorch.

    Args:
        x1: ``[..., D]`` embeddings.
        x2: ``[..., D]``.
        y: ``[...]`` targets, each 1 (similar) or -1 (dissimilar).
        margin: ``m`` in ``[-1, 1]``.
        reduction: ``"mean"`` (over pairs), ``"sum"`` or ``"none"`` (``[...]``).

    Returns:
        Scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
        ValueError: non-float or mismatched inputs, ``y`` of the wrong shape or not ±1, margin
            outside ``[-1, 1]``, a bad reduction.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1., 0.]])
        >>> round(float(cosine_embedding_loss(x, torch.tensor([[0., 1.]]), torch.tensor([1]))), 4)
        1.0
    """
    x1 = _check_embedding("x1", x1)
    x2 = _check_embedding("x2", x2)
    _check_same_shape(x1=x1, x2=x2)
    y = _check_pair_target("y", y, x1.shape[:-1])
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold only 1 (similar) and -1 (dissimilar)")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1.0 <= margin <= 1.0:
        raise ValueError(f"margin must be a number in [-1, 1], got {margin!r}")
    check_reduction(reduction)
    cos = _cosine(x1, x2)
    loss = torch.where(y == 1, 1.0 - cos, torch.clamp(cos - margin, min=0.0))
    return _reduce(loss, reduction)


@register("contrastive", kind="embedding")
class ContrastiveLoss(nn.Module):
    """Module form of :func:`contrastive_loss`; called as ``loss(emb1, emb2, same)``."""

    def __init__(self, *, margin: float = 1.0, distance: str = "euclidean", reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_non_negative("margin", margin)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.reduction = check_reduction(reduction)

    def forward(self, emb1: torch.Tensor, emb2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(emb1, emb2, same, margin=self.margin, distance=self.distance, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}, reduction={self.reduction!r}"


@register("triplet", kind="embedding")
class TripletLoss(nn.Module):
    """Triplet loss module: explicit triplets or online mining.

    With ``mining=None`` it is called as ``loss(anchor, positive, negative)`` and computes
    :func:`triplet_margin_loss` (``eps``/``swap`` apply); otherwise as
    ``loss(embeddings, classes)`` and computes :func:`batch_triplet_loss` (``squared``
    applies).
    """

    def __init__(
        self,
        *,
        mining: Optional[str] = None,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        squared: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.mining = None if mining is None else check_choice("mining", mining, MININGS)
        self.margin = check_non_negative("margin", margin)
        self.p = check_positive("p", p)
        self.eps = check_non_negative("eps", eps)
        self.swap = bool(swap)
        if squared and self.p != 2.0:
            raise ValueError(f"squared=True needs p=2 (squared Euclidean distance), got p={p}")
        self.squared = bool(squared)
        self.reduction = check_reduction(reduction)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        expected = 3 if self.mining is None else 2
        if len(inputs) != expected:
            form = "(anchor, positive, negative)" if self.mining is None else "(embeddings, classes)"
            raise ValueError(f"TripletLoss(mining={self.mining!r}) is called as loss{form}, got {len(inputs)} inputs")
        if self.mining is None:
            anchor, positive, negative = inputs
            return triplet_margin_loss(
                anchor, positive, negative, margin=self.margin, p=self.p, eps=self.eps, swap=self.swap, reduction=self.reduction
            )
        embeddings, classes = inputs
        return batch_triplet_loss(
            embeddings, classes, mining=self.mining, margin=self.margin, p=self.p, squared=self.squared, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"mining={self.mining!r}, margin={self.margin}, p={self.p}, eps={self.eps}, swap={self.swap}, "
            f"squared={self.squared}, reduction={self.reduction!r}"
        )


@register("cosine_embedding", kind="embedding")
class CosineEmbeddingLoss(nn.Module):
    """Module form of :func:`cosine_embedding_loss`; called as ``loss(x1, x2, y)``."""

    def __init__(self, *, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1.0 <= margin <= 1.0:
            raise ValueError(f"margin must be a number in [-1, 1], got {margin!r}")
        self.margin = float(margin)
        self.reduction = check_reduction(reduction)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cosine_embedding_loss(x1, x2, y, margin=self.margin, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"
