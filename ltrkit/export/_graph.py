"""The exported computation: raw features + padding mask -> scores, the normaliser folded in.

The training models gather real documents with ``nonzero`` (:class:`ltrkit.models._layers.RealRows`),
a data-dependent shape that ``torch.export`` cannot trace and that TorchScript cannot script. The
graph here runs the same layers on the whole padded batch instead: every pointwise layer maps a
row to a row (eval-mode batch norm included), so real rows get the same values, and padded rows
are zeroed wherever the training model would hold zeros (after the input projection and at the
output). Padded keys are masked out of self-attention exactly as in training. An ensemble is
the graphs of its members and their combination; ``rank_mean`` ranks each member's scores within
each list over its real documents, as in training.
"""

from __future__ import annotations

import copy
import warnings
from typing import Tuple

import numpy as np
import torch
from torch import nn

from ltrkit.data.transforms import (
    _ACKLAM_A,
    _ACKLAM_B,
    _ACKLAM_C,
    _ACKLAM_D,
    _ACKLAM_TAIL,
    _GAUSS_CLIP,
    Normalizer,
)
from ltrkit.models._layers import RankingModel, RowBatchNorm, sinusoidal_positions
from ltrkit.models.ensemble import list_ranks

__all__ = ["EXPORTABLE_MODELS", "FOLDABLE_METHODS", "InferenceGraph"]

EXPORTABLE_MODELS = ("linear", "mlp", "attention", "dasalc", "ensemble")
FOLDABLE_METHODS = ("zscore", "minmax", "log1p", "quantile", "rank_gauss", "query_zscore", "query_minmax", "none")


def _quantile_tables(normalizer: Normalizer) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(knots [F, K], levels [F, K], counts [F])`` of the quantile curves, or 1-wide dummies.

    The curves come from the normaliser itself, so the graph interpolates through exactly the
    points :meth:`Normalizer.transform_features` does.
    """
    if normalizer.method not in ("quantile", "rank_gauss"):
        return torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, dtype=torch.long)
    curves = normalizer._quantile_curves()
    longest = max(len(points) for points, _ in curves)
    width = 1 << longest.bit_length()  # a power of two > longest: every row ends in +inf padding
    knots = np.full((len(curves), width), np.inf)
    levels = np.zeros((len(curves), width))
    for column, (points, values) in enumerate(curves):
        knots[column, : len(points)] = points
        levels[column, : len(values)] = values
    counts = torch.tensor([len(points) for points, _ in curves], dtype=torch.long)
    return torch.from_numpy(knots), torch.from_numpy(levels), counts


def _horner(coefficients: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum(c[k] * x**(n-1-k))`` for float64 ``x`` and float64 ``coefficients [n]``.

    The coefficients are tensors, not Python floats: the ONNX exporter stores scalar
    constants as float32, which costs Acklam's approximation up to 3e-2.
    """
    y = coefficients[0].expand_as(x)
    for k in range(1, coefficients.shape[0]):
        y = y * x + coefficients[k]
    return y


class _NoEncoder(nn.Module):
    """Stands in for the encoder of a pointwise model (same call signature)."""

    def forward(self, hidden: torch.Tensor, src_key_padding_mask: torch.Tensor) -> torch.Tensor:
        return hidden


def _plain_batch_norms(module: nn.Module) -> None:
    """Replace every :class:`RowBatchNorm` by an ``nn.BatchNorm1d`` holding its state.

    In eval mode the two compute the same thing; the subclass's training-time branch calls
    ``super().forward``, which TorchScript cannot compile.
    """
    for name, child in module.named_children():
        if isinstance(child, RowBatchNorm):
            plain = nn.BatchNorm1d(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain.eval())
        else:
            _plain_batch_norms(child)


def _padding_keys(mask: torch.Tensor) -> torch.Tensor:
    """The encoder's key padding mask; a list with no real document attends over its padding
    (no all -inf softmax row), and its outputs are discarded."""
    return ~mask & mask.any(dim=1, keepdim=True)


class _ListScorer(nn.Module):
    """The ``linear``, ``mlp`` and ``attention`` models on a whole padded batch.

    ``rows -> [positions] -> encoder -> head``: the pointwise models have the identity as encoder
    and head, the attention ranker its input projection as ``rows``.
    """

    __constants__ = ["positional"]

    def __init__(self, model: RankingModel) -> None:
        super().__init__()
        self.n_features = model.n_features
        self.input_norm = model.input_norm_layer if model.input_norm_layer is not None else nn.Identity()
        self.encoder: nn.Module = _NoEncoder()
        self.head: nn.Module = nn.Identity()
        self.positional = False
        if model.name == "linear":
            self.rows: nn.Module = model.linear
        elif model.name == "mlp":
            self.rows = nn.Sequential(model.body, model.head)
        else:
            self.rows = model.input_projection
            self.head = model.head
            self.positional = model.positional_encoding == "sinusoidal"
            if model.encoder is not None:
                self.encoder = model.encoder

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length = mask.shape[0], mask.shape[1]
        rows = features.reshape(batch * length, self.n_features)
        hidden = self.rows(self.input_norm(rows)).reshape(batch, length, -1)
        # the training model scatters projected rows into zeros: padded rows hold 0 there too
        hidden = torch.where(mask.unsqueeze(-1), hidden, torch.zeros_like(hidden))
        if self.positional:
            hidden = hidden + sinusoidal_positions(length, hidden.shape[2], device=hidden.device, dtype=hidden.dtype)
        hidden = self.encoder(hidden, src_key_padding_mask=_padding_keys(mask))
        scores = self.head(hidden.reshape(batch * length, -1)).reshape(batch, length)
        return torch.where(mask, scores, torch.zeros_like(scores))


class _DASALCScorer(nn.Module):
    """The ``dasalc`` model on a whole padded batch: tower, context branch, latent cross, head.

    Its input noise is a training-time augmentation and has no place here.
    """

    __constants__ = ["contextual"]

    def __init__(self, model: RankingModel) -> None:
        super().__init__()
        self.n_features = model.n_features
        self.input_norm = model.input_norm_layer if model.input_norm_layer is not None else nn.Identity()
        self.tower = model.tower
        self.head = model.head
        self.contextual = model.encoder is not None
        self.encoder: nn.Module = model.encoder if model.encoder is not None else _NoEncoder()
        self.context_in: nn.Module = model.context_in if model.context_in is not None else nn.Identity()
        self.context_out: nn.Module = model.context_out if model.context_out is not None else nn.Identity()

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length = mask.shape[0], mask.shape[1]
        rows = self.input_norm(features.reshape(batch * length, self.n_features))
        latent = self.tower(rows)
        if self.contextual:
            context = self.context_in(rows).reshape(batch, length, -1)
            # as in training, the encoder sees zeros at padded positions
            context = torch.where(mask.unsqueeze(-1), context, torch.zeros_like(context))
            context = self.encoder(context, src_key_padding_mask=_padding_keys(mask))
            latent = (1.0 + self.context_out(context.reshape(batch * length, -1))) * latent
        scores = self.head(latent).reshape(batch, length)
        return torch.where(mask, scores, torch.zeros_like(scores))


class _EnsembleScorer(nn.Module):
    """An :class:`~ltrkit.models.ensemble.EnsembleRanker`: every member's graph, then the same
    combination (``rank_mean``: :func:`~ltrkit.models.ensemble.list_ranks` over the real
    documents of each list)."""

    __constants__ = ["rank_mean"]

    def __init__(self, model: RankingModel) -> None:
        super().__init__()
        self.members = nn.ModuleList([_scorer(member) for member in model.members])
        self.rank_mean = model.combine == "rank_mean"

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = []
        for member in self.members:
            member_scores = member(features, mask)
            if self.rank_mean:
                member_scores = -list_ranks(member_scores, mask).to(member_scores.dtype)
            scores.append(member_scores)
        return torch.stack(scores).mean(0)


def _scorer(model: RankingModel) -> nn.Module:
    """The padded-batch graph of a trained model (a CPU float32 eval copy with plain batch norms)."""
    if model.name not in EXPORTABLE_MODELS:
        raise ValueError(f"model {model.name!r} cannot be exported; exportable models: {list(EXPORTABLE_MODELS)}")
    if model.name == "ensemble":
        return _EnsembleScorer(model)
    if model.name == "dasalc":
        return _DASALCScorer(model)
    return _ListScorer(model)


class InferenceGraph(nn.Module):
    r"""Scores raw features: ``normalise -> scorer``, one module for ``torch.onnx`` and TorchScript.

    .. math:: s = \mathrm{model}(\mathrm{norm}(x)) \odot m

    The normaliser runs in float64, as :class:`~ltrkit.data.transforms.Normalizer` does, then the
    model in float32. Per-query methods (``query_zscore``, ``query_minmax``) compute each list's
    statistics over its real documents, so a list must hold its whole query.

    Args:
        model: a trained model of :data:`EXPORTABLE_MODELS` (an ensemble's members too), on
            any device (copied to the CPU; the original is not changed).
        normalizer: the fitted normaliser of the run.

    Shapes:
        ``features [B, L, F]`` float32 raw, ``mask [B, L]`` bool (True = real) -> ``scores [B, L]``
        float32, 0 at padded positions. Values at padded positions are never read.

    Raises:
        ValueError: an unknown model kind, an unfitted normaliser or mismatched feature counts.

    Example:
        >>> import numpy as np
        >>> from ltrkit.models import build_model
        >>> normalizer = Normalizer("zscore").fit_features(np.random.default_rng(0).normal(size=(50, 4)))
        >>> graph = InferenceGraph(build_model("attention", 4, d_model=8, n_heads=2, n_layers=1, ff_dim=16), normalizer)
        >>> mask = torch.tensor([[True, True, False], [True, False, False]])
        >>> scores = graph(torch.randn(2, 3, 4), mask)
        >>> scores.shape, bool((scores[~mask] == 0).all())
        (torch.Size([2, 3]), True)
    """

    # compile-time constants for TorchScript: the untaken branches are never compiled
    __constants__ = ["method", "search_steps"]

    def __init__(self, model: RankingModel, normalizer: Normalizer) -> None:
        super().__init__()
        if not normalizer.is_fitted or normalizer.n_features != model.n_features:
            raise ValueError(f"the normalizer ({normalizer!r}) does not fit the model's {model.n_features} features")
        # a CPU float32 copy: the graph is exported from the CPU, and the caller's model stays as it was
        model = copy.deepcopy(model).cpu().float().eval()
        _plain_batch_norms(model)
        self.n_features = model.n_features
        self.scorer = _scorer(model)
        if normalizer.method not in FOLDABLE_METHODS:
            raise ValueError(f"normaliser {normalizer.method!r} cannot be folded into an export; foldable: {list(FOLDABLE_METHODS)}")
        self.method = normalizer.method
        n = model.n_features
        shift = normalizer.shift if normalizer.shift is not None else [0.0] * n
        scale = normalizer.scale if normalizer.scale is not None else [1.0] * n
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))
        knots, levels, counts = _quantile_tables(normalizer)
        self.register_buffer("knots", knots)
        self.register_buffer("levels", levels)
        self.register_buffer("counts", counts)
        self.search_steps = tuple(1 << power for power in reversed(range(int(knots.shape[1]).bit_length() - 1)))
        for name, values in (("acklam_a", _ACKLAM_A), ("acklam_b", _ACKLAM_B), ("acklam_c", _ACKLAM_C), ("acklam_d", _ACKLAM_D)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float64))
        # [low clip, high clip, central-branch bound] as float64 for the same reason as in _horner
        self.register_buffer("gauss_bounds", torch.tensor([_GAUSS_CLIP, 1.0 - _GAUSS_CLIP, 0.5 - _ACKLAM_TAIL], dtype=torch.float64))
        self.eval()

    def normalise(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, F]`` raw -> normalised float64 features, 0 at padded positions."""
        real = mask.unsqueeze(-1)
        x = torch.where(real, features.to(torch.float64), torch.zeros_like(features, dtype=torch.float64))
        if self.method == "none":
            return x
        if self.method == "log1p":
            x = torch.sign(x) * torch.log1p(torch.abs(x))
        if self.method in ("zscore", "minmax", "log1p"):
            out = (x - self.shift) / self.scale
        elif self.method in ("quantile", "rank_gauss"):
            out = self._interpolate(x)
            if self.method == "rank_gauss":
                out = self._normal_quantile(out)
        else:
            count = real.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)
            low = torch.where(real, x, torch.full_like(x, float("inf"))).amin(dim=1, keepdim=True)
            high = torch.where(real, x, torch.full_like(x, float("-inf"))).amax(dim=1, keepdim=True)
            constant = high == low
            if self.method == "query_zscore":
                centred = x - torch.where(constant, low, x.sum(dim=1, keepdim=True) / count)
                spread = torch.sqrt((torch.where(real, centred, torch.zeros_like(centred)) ** 2).sum(dim=1, keepdim=True) / count)
            else:
                centred = x - low
                spread = high - low
            # a constant column maps to 0 (shift = its value, scale 1), as in Normalizer
            out = centred / torch.where(constant | ~(spread > 0), torch.ones_like(spread), spread)
        return torch.where(real, out, torch.zeros_like(out))

    def _normal_quantile(self, p: torch.Tensor) -> torch.Tensor:
        """:func:`ltrkit.data.transforms.normal_quantile` (Acklam's approximation) of ``p`` clipped like rank_gauss."""
        p = torch.minimum(torch.maximum(p, self.gauss_bounds[0]), self.gauss_bounds[1])
        q = p - 0.5
        central = q * _horner(self.acklam_a, q * q) / _horner(self.acklam_b, q * q)
        tail = torch.sqrt(-2.0 * torch.log(torch.minimum(p, 1.0 - p)))
        outer = _horner(self.acklam_c, tail) / _horner(self.acklam_d, tail)
        return torch.where(q.abs() <= self.gauss_bounds[2], central, torch.where(p < 0.5, outer, -outer))

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        """``np.interp`` of every column through its quantile curve, by a branch-free binary search.

        ``knots [F, K]`` holds each column's distinct quantiles padded with +inf (``K`` a power of
        two above the longest curve), so after the search ``position`` counts the knots ``<= x``.
        """
        n_knots = self.knots.shape[1]
        flat_knots, flat_levels = self.knots.reshape(-1), self.levels.reshape(-1)
        column = torch.arange(x.shape[-1], device=x.device) * n_knots
        position = torch.zeros(x.shape, dtype=torch.long, device=x.device)
        for step in self.search_steps:
            candidate = position + step
            position = torch.where(flat_knots[column + candidate - 1] <= x, candidate, position)
        last = self.counts - 1
        low = column + torch.minimum((position - 1).clamp(min=0), last)
        high = column + torch.minimum(position, last)
        x0, x1 = flat_knots[low], flat_knots[high]
        y0, y1 = flat_levels[low], flat_levels[high]
        width = torch.where(x1 > x0, x1 - x0, torch.ones_like(x1))
        return y0 + torch.where(x1 > x0, (x - x0) / width, torch.zeros_like(x)) * (y1 - y0)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, L]`` of raw ``features [B, L, F]`` under ``mask [B, L]``."""
        return self.scorer(self.normalise(features, mask).to(torch.float32), mask)

    def scripted(self) -> torch.jit.ScriptModule:
        """This graph compiled with ``torch.jit.script`` (shapes stay dynamic, unlike tracing)."""
        with warnings.catch_warnings():
            # nn.TransformerEncoder lists its optional final norm in __constants__; TorchScript
            # warns about that on every compile, harmlessly
            warnings.filterwarnings("ignore", message=".*found in ScriptModule constants.*")
            return torch.jit.script(self)
