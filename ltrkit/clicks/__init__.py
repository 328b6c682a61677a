"""Click models, click-log simulation, propensity estimation and unbiased learning to rank.

A layer beside :mod:`ltrkit.training`: it uses :mod:`ltrkit.data`, :mod:`ltrkit.metrics` and
:mod:`ltrkit.losses`. Names are imported on first use, so ``import ltrkit.clicks`` stays cheap.
"""

from ltrkit._lazy import lazy_exports

_EXPORTS = {
    "ClickSessions": "ltrkit.clicks.sessions",
    "Propensities": "ltrkit.clicks.mappings",
    "AttractionMapping": "ltrkit.clicks.mappings",
    "ClickModel": "ltrkit.clicks.models",
    "PBM": "ltrkit.clicks.models",
    "UBM": "ltrkit.clicks.models",
    "CascadeModel": "ltrkit.clicks.models",
    "DCM": "ltrkit.clicks.models",
    "DBN": "ltrkit.clicks.models",
    "SDBN": "ltrkit.clicks.models",
    "get_model": "ltrkit.clicks.models",
    "Impressions": "ltrkit.clicks.behaviours",
    "ClickBehaviour": "ltrkit.clicks.behaviours",
    "load_click_spec": "ltrkit.clicks.spec",
    "build_behaviour": "ltrkit.clicks.spec",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
