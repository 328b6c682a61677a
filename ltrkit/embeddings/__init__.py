"""Siamese and triplet embedding training on the shared trainer, retrieval evaluation, search.

    >>> from ltrkit.embeddings import train_embeddings, Embedder   # doctest: +SKIP
    >>> result = train_embeddings(None, training__epochs=5)         # doctest: +SKIP
    >>> embedder = Embedder.load(result.run_dir)                    # doctest: +SKIP

Layering: this package sits above :mod:`ltrkit.training` (it runs its loop through the
:class:`~ltrkit.training.task.Task` interface) and uses :mod:`ltrkit.losses` and
:mod:`ltrkit.metrics`; nothing below imports it.
"""

from ltrkit._lazy import lazy_exports

_EXPORTS = {
    "train_embeddings": "ltrkit.embeddings.job",
    "resume_embeddings": "ltrkit.embeddings.job",
    "Embedder": "ltrkit.embeddings.job",
    "EmbeddingTask": "ltrkit.embeddings.job",
    "EmbedConfig": "ltrkit.embeddings.config",
    "load_embed_config": "ltrkit.embeddings.config",
    "example_config": "ltrkit.embeddings.config",
    "Vocabulary": "ltrkit.embeddings.data",
    "load_items": "ltrkit.embeddings.data",
    "news_items": "ltrkit.embeddings.news",
    "retrieval_metrics": "ltrkit.embeddings.retrieval",
    "retrieval_values": "ltrkit.embeddings.retrieval",
    "multi_hot": "ltrkit.embeddings.retrieval",
    "mine_triplets": "ltrkit.embeddings.mining",
    "search": "ltrkit.embeddings.search",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
