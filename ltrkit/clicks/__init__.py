"""Click models, click-log simulation, propensity estimation and unbiased learning to rank.

A layer beside :mod:`ltrkit.training`: it uses :mod:`ltrkit.data`, :mod:`ltrkit.metrics` and
:mod:`ltrkit.losses`, and trains rankers on click logs through the training loop
(:func:`train_on_clicks`, :mod:`ltrkit.clicks.task`). Names are imported on first use, so ``import ltrkit.clicks`` stays cheap.
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
    "simulate_sessions": "ltrkit.clicks.simulate",
    "simulate_log": "ltrkit.clicks.simulate",
    "write_simulation": "ltrkit.clicks.simulate",
    "read_click_log": "ltrkit.clicks.log",
    "ClickLogWriter": "ltrkit.clicks.log",
    "ClickLogError": "ltrkit.clicks.log",
    "estimate_by_randomization": "ltrkit.clicks.propensity",
    "estimate_by_regression_em": "ltrkit.clicks.propensity",
    "ips_softmax_loss": "ltrkit.clicks.unbiased",
    "ips_ranknet_loss": "ltrkit.clicks.unbiased",
    "ips_lambda_loss": "ltrkit.clicks.unbiased",
    "dla_loss": "ltrkit.clicks.unbiased",
    "dla_propensities": "ltrkit.clicks.unbiased",
    "click_preference_pairs": "ltrkit.clicks.unbiased",
    "ips_dcg": "ltrkit.clicks.unbiased",
    "ips_clicks_at_k": "ltrkit.clicks.unbiased",
    "ClickTask": "ltrkit.clicks.task",
    "load_click_config": "ltrkit.clicks.task",
    "train_on_clicks": "ltrkit.clicks.task",
    "resume_on_clicks": "ltrkit.clicks.task",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
