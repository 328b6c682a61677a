"""The near-duplicate news example: a generated corpus, duplicate detection, the TF-IDF baseline.

**Corpus** (:func:`news_items`, seeded, offline). A made-up language of pseudo-words: common
words with Zipf frequencies shared by every topic, and ``topics`` topics of ``concepts``
concepts each; a concept is spelled by one of ``synonyms`` words. A *story* belongs to a topic,
mentions 8 of its concepts and 3 of another topic's, each in the spelling its author prefers,
between common words (half of the words). Its *near-duplicates* rewrite it the way re-published
copies of an article differ: a paraphrase respells a concept throughout with a synonym (chance
``swap``) and changes 30% of the common words, 8% of the words are deleted and 8% inserted
after, and the tail is cut (50-100% kept). The class of an item is its story; the stories of
the train, vali and test splits are disjoint, so the test is on held-out stories of the same
language.

TF-IDF is decent here: a copy keeps most of its common words and some of its concepts'
spellings (test p@1 0.57, map 0.48 on the default corpus). It cannot tell that two synonyms mean
the same, while stories of one topic share their topic's words; the encoder learns both from
the training stories.

**Duplicate detection** (:func:`duplicate_scores`): every pair of items of a split whose
similarity is at least a threshold is called a duplicate; precision, recall and F1 count the
pairs of the same story. :func:`best_threshold` picks the threshold of the highest F1 on the
validation items; the test figures use it unchanged.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ltrkit.embeddings.data import ItemSet, tokenize

__all__ = ["best_threshold", "duplicate_scores", "news_items", "tfidf_vectors"]

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _pseudo_words(rng: np.random.Generator, count: int) -> List[str]:
    words: List[str] = []
    seen = set()
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def news_items(
    *,
    train_stories: int = 600,
    vali_stories: int = 150,
    test_stories: int = 150,
    topics: int = 12,
    concepts: int = 30,
    synonyms: int = 4,
    swap: float = 0.9,
    seed: int = 0,
) -> Dict[str, ItemSet]:
    """``{"train", "vali", "test"}`` text items of the generated corpus (see the module docstring).

    Every story has 2 to 4 items (the original and 1-3 near-duplicates); ``swap`` is the chance
    that a duplicate spells a concept with another of its synonyms.
    """
    rng = np.random.default_rng([seed, 7])
    language = _Language(rng, topics=topics, concepts=concepts, synonyms=synonyms)
    splits: Dict[str, ItemSet] = {}
    for name, n_stories in (("train", train_stories), ("vali", vali_stories), ("test", test_stories)):
        texts: List[str] = []
        labels: List[int] = []
        for story in range(n_stories):
            for text in language.story(rng, swap):
                texts.append(text)
                labels.append(story)
        splits[name] = ItemSet(
            ids=np.asarray([f"{name}-{row}" for row in range(len(texts))]),
            inputs=torch.zeros(len(texts), 0, dtype=torch.int64),
            classes=torch.tensor(labels, dtype=torch.int64),
            class_names=[f"{name}-story-{story}" for story in range(n_stories)],
            source=f"generated news corpus ({name})",
            tokens=[tokenize(text) for text in texts],
            texts=texts,
        )
    return splits


class _Language:
    """The words of the corpus: common words (Zipf weights), then ``[topic, concept, synonym]`` spellings."""

    COMMON = 150
    COMMON_SHARE = 0.5  # of an article's words
    MENTIONED, BORROWED = 8, 3  # concepts of the story's topic, of another topic
    COMMON_CHANGE = 0.3  # chance that a duplicate changes a common word
    EDIT = 0.08  # chance of a deletion, and of an insertion, at each word of a duplicate

    def __init__(self, rng: np.random.Generator, *, topics: int, concepts: int, synonyms: int) -> None:
        self.shape = (topics, concepts, synonyms)
        self.words = np.asarray(_pseudo_words(rng, self.COMMON + topics * concepts * synonyms))
        weights = 1.0 / np.arange(1, self.COMMON + 1)
        self.common_weights = weights / weights.sum()

    def spelling(self, topic: np.ndarray, concept: np.ndarray, synonym: np.ndarray) -> np.ndarray:
        """Word ids of concepts spelled by a synonym."""
        _, concepts, synonyms = self.shape
        return self.COMMON + (topic * concepts + concept) * synonyms + synonym

    def story(self, rng: np.random.Generator, swap: float) -> List[str]:
        """The original article of one story and its 1-3 near-duplicates, as texts."""
        topics, concepts, synonyms = self.shape
        topic = int(rng.integers(topics))
        other = int((topic + rng.integers(1, topics)) % topics)
        mentioned_topic = np.r_[np.full(self.MENTIONED, topic), np.full(self.BORROWED, other)]
        mentioned = np.r_[rng.choice(concepts, self.MENTIONED, replace=False), rng.choice(concepts, self.BORROWED, replace=False)]
        preferred = rng.integers(synonyms, size=mentioned.size)
        length = int(rng.integers(60, 110))
        is_common = rng.random(length) < self.COMMON_SHARE
        which = rng.choice(mentioned.size, size=length, p=rng.dirichlet(np.ones(mentioned.size)))
        original = np.where(
            is_common,
            rng.choice(self.COMMON, size=length, p=self.common_weights),
            self.spelling(mentioned_topic[which], mentioned[which], preferred[which]),
        )
        texts = [" ".join(self.words[original])]
        for _ in range(int(rng.integers(1, 4))):
            # a paraphrase respells a concept throughout, and changes some common words
            respelled = np.where(rng.random(mentioned.size) < swap, (preferred + rng.integers(1, synonyms, size=mentioned.size)) % synonyms, preferred)
            copy = np.where(is_common, original, self.spelling(mentioned_topic[which], mentioned[which], respelled[which]))
            copy = np.where(is_common & (rng.random(length) < self.COMMON_CHANGE), rng.choice(self.COMMON, size=length, p=self.common_weights), copy)
            inserted = np.where(
                rng.random(length) < 0.5,
                rng.choice(self.COMMON, size=length, p=self.common_weights),
                self.spelling(np.full(length, topic), rng.integers(concepts, size=length), rng.integers(synonyms, size=length)),
            )
            # each position keeps its word unless deleted, and is followed by an insertion or not
            pairs = np.stack([np.where(rng.random(length) < self.EDIT, -1, copy), np.where(rng.random(length) < self.EDIT, inserted, -1)], axis=1).ravel()
            words = pairs[pairs >= 0]
            texts.append(" ".join(self.words[words[: int(len(words) * rng.uniform(0.5, 1.0))]]))
        return texts


def tfidf_vectors(train_texts: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
    """``[N, V]`` float32 TF-IDF rows of ``texts`` (scikit-learn's ``TfidfVectorizer`` fitted on
    ``train_texts``, L2-normalised, the words of :func:`ltrkit.embeddings.data.tokenize`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, sublinear_tf=True)
    vectorizer.fit(train_texts)
    return torch.from_numpy(vectorizer.transform(texts).toarray().astype(np.float32))


def _pair_similarities(embeddings: torch.Tensor, classes: torch.Tensor, kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Similarities ``[P]`` of every unordered pair of items and whether the pair is one story's."""
    from ltrkit.embeddings.retrieval import similarity

    scores = similarity(embeddings, embeddings, kind)
    upper = torch.triu_indices(len(classes), len(classes), offset=1)
    return scores[upper[0], upper[1]], classes[upper[0]] == classes[upper[1]]


def duplicate_scores(embeddings: torch.Tensor, classes: torch.Tensor, threshold: float, *, similarity_kind: str = "cosine") -> Dict[str, float]:
    """Duplicate-detection precision, recall and F1 of the pairs with similarity ``>= threshold``.

    A pair is a true duplicate when both items belong to one class; precision is 1 when no pair
    is called (nothing claimed, nothing wrong).
    """
    scores, same = _pair_similarities(embeddings, classes, similarity_kind)
    called = scores >= threshold
    hits = float((called & same).sum())
    precision = hits / float(called.sum()) if bool(called.any()) else 1.0
    recall = hits / float(same.sum()) if bool(same.any()) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"dup_precision": precision, "dup_recall": recall, "dup_f1": f1}


def best_threshold(embeddings: torch.Tensor, classes: torch.Tensor, *, similarity_kind: str = "cosine") -> float:
    """The similarity threshold of the highest duplicate-detection F1 on these items.

    Every pair's similarity is a candidate (calling the pairs at least as similar); ties in F1
    go to the highest threshold.
    """
    scores, same = _pair_similarities(embeddings, classes, similarity_kind)
    order = torch.argsort(scores, descending=True, stable=True)
    scores, same = scores[order], same[order].double()
    hits = torch.cumsum(same, 0)
    called = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # a threshold calls every pair down to the last one of equal similarity
    last_of_tie = torch.ones(len(scores), dtype=torch.bool)
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    f1 = 2 * hits / (called + same.sum())
    f1[~last_of_tie] = -1.0
    return float(scores[int(torch.argmax(f1))])
