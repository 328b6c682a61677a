"""The HTTP re-ranking service (FastAPI + uvicorn) over ONNX Runtime, TorchScript or PyTorch.

    >>> from ltrkit.serve import create_app, serve                   # doctest: +SKIP
    >>> serve(load_exported("model.onnx"), host="127.0.0.1", port=8000)  # doctest: +SKIP

Names are imported on first use, so ``import ltrkit.serve`` does not import FastAPI.
"""

from ltrkit._lazy import lazy_exports

_EXPORTS = {
    "Limits": "ltrkit.serve.app",
    "create_app": "ltrkit.serve.app",
    "load_ranker": "ltrkit.serve.server",
    "serve": "ltrkit.serve.server",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
