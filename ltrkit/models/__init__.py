"""Ranking models: scorers ``(features [B, L, F], mask [B, L]) -> scores [B, L]``.

``linear`` and ``mlp`` score each document on its own; ``attention`` (Pobrotyn et al. 2020)
scores each document in the context of its list, and ``dasalc`` (Qin et al. 2021) crosses a
feed-forward document tower with that list context. Every model returns 0 at padded positions and
never lets padding change a real document's score.
"""

from ltrkit.models._layers import RankingModel
from ltrkit.models.attention import AttentionRanker
from ltrkit.models.dasalc import DASALCRanker
from ltrkit.models.linear import LinearRanker
from ltrkit.models.mlp import MLPRanker
from ltrkit.models.registry import build_model, model_hyperparameters, names, register_model

register_model("linear")(LinearRanker)
register_model("mlp")(MLPRanker)
register_model("attention")(AttentionRanker)
register_model("dasalc")(DASALCRanker)

__all__ = [
    "AttentionRanker",
    "DASALCRanker",
    "LinearRanker",
    "MLPRanker",
    "RankingModel",
    "build_model",
    "model_hyperparameters",
    "names",
    "register_model",
]
