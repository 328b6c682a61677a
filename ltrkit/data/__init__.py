"""Files and datasets: LETOR/libsvm I/O, the binary cache, batching, normalisation, synthetic data.

``load_dataset(path)`` is the entry point: it parses a LETOR/SVMlight file (or libsvm + group
file) once and memory-maps its binary cache afterwards.
"""

from ltrkit.data.batching import Batch, BatchLoader, scores_to_rows
from ltrkit.data.cache import CacheError, load_cache, load_dataset, save_cache
from ltrkit.data.dataset import RankingDataset, dataset_statistics, filter_queries, pad_ragged
from ltrkit.data.letor import LetorFormatError, read_letor, write_letor, write_libsvm
from ltrkit.data.synthetic import DEFAULT_SPLITS, generate, generate_splits
from ltrkit.data.transforms import Normalizer

__all__ = [
    "DEFAULT_SPLITS",
    "Batch",
    "BatchLoader",
    "CacheError",
    "LetorFormatError",
    "Normalizer",
    "RankingDataset",
    "dataset_statistics",
    "filter_queries",
    "generate",
    "generate_splits",
    "load_cache",
    "load_dataset",
    "pad_ragged",
    "read_letor",
    "save_cache",
    "scores_to_rows",
    "write_letor",
    "write_libsvm",
]
