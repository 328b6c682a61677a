"""Files and datasets: LETOR/libsvm I/O, the binary cache, batching, normalisation, synthetic data.

``load_dataset(path)`` is the entry point: it parses a LETOR/SVMlight file (or libsvm + group
file) once and memory-maps its binary cache afterwards. Names are imported on first use, so the
parser and the cache can be used without importing torch (only batching needs it).
"""

from ltrkit._lazy import lazy_exports

_EXPORTS = {
    "Batch": "ltrkit.data.batching",
    "BatchLoader": "ltrkit.data.batching",
    "scores_to_rows": "ltrkit.data.batching",
    "CacheError": "ltrkit.data.cache",
    "load_cache": "ltrkit.data.cache",
    "load_dataset": "ltrkit.data.cache",
    "save_cache": "ltrkit.data.cache",
    "RankingDataset": "ltrkit.data.dataset",
    "dataset_statistics": "ltrkit.data.dataset",
    "filter_queries": "ltrkit.data.dataset",
    "pad_ragged": "ltrkit.data.dataset",
    "LetorFormatError": "ltrkit.data.letor",
    "read_letor": "ltrkit.data.letor",
    "write_letor": "ltrkit.data.letor",
    "write_libsvm": "ltrkit.data.letor",
    "DEFAULT_SPLITS": "ltrkit.data.synthetic",
    "generate": "ltrkit.data.synthetic",
    "generate_splits": "ltrkit.data.synthetic",
    "Normalizer": "ltrkit.data.transforms",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
