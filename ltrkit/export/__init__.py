"""Export a trained ranker (ONNX, TorchScript) with its normaliser folded in, and score with the file.

    >>> from ltrkit.export import export_run, load_exported                # doctest: +SKIP
    >>> export_run("runs/my-run", "model.onnx")                            # doctest: +SKIP
    >>> scores = load_exported("model.onnx").predict("Fold1/test.txt")     # doctest: +SKIP

Names are imported on first use, so ``import ltrkit.export`` does not import torch or onnx.
"""

from ltrkit._lazy import lazy_exports

_EXPORTS = {
    "FORMATS": "ltrkit.export.exporter",
    "OPSET": "ltrkit.export.exporter",
    "export_ranker": "ltrkit.export.exporter",
    "export_run": "ltrkit.export.exporter",
    "BACKENDS": "ltrkit.export.loaded",
    "ExportedRanker": "ltrkit.export.loaded",
    "load_exported": "ltrkit.export.loaded",
    "export_encoder_run": "ltrkit.export.encoder",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
