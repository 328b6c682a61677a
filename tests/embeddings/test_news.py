"""The near-duplicate news example: the generated corpus, duplicate detection against brute force
and scikit-learn, denoising pre-training (its loss, its corruption, exact resume across the
switch to fine-tuning), and a shrunken example that beats TF-IDF with a fixed seed."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from ltrkit.embeddings.config import example_config, load_embed_config
from ltrkit.embeddings.job import Embedder, EmbeddingTask, resume_embeddings, train_embeddings
from ltrkit.embeddings.news import best_threshold, duplicate_scores, news_items
from ltrkit.training import ConfigError

TINY_NEWS = {"train_stories": 40, "vali_stories": 10, "test_stories": 10, "topics": 3, "concepts": 12, "seed": 1}


def _news_config(tmp_path, name, **sections):
    config = example_config("news")
    config.update(num_threads=1, output={"dir": str(tmp_path), "name": name, "tensorboard": False, "plots": False})
    config["data"]["news"] = TINY_NEWS
    config["encoder"]["args"] = {"token_dim": 16, "dim": 8}
    config["training"] = {"epochs": 4}
    config["pretrain"] = {"epochs": 2, "word_dropout": 0.3, "word_replace": 0.2}
    config["sampler"] = {"p": 8, "k": 4}
    config.update(sections)
    return config


def test_the_corpus_is_seeded_and_splits_hold_disjoint_stories():
    first, again = news_items(**TINY_NEWS), news_items(**TINY_NEWS)
    assert first["test"].texts == again["test"].texts
    assert news_items(**{**TINY_NEWS, "seed": 2})["test"].texts != first["test"].texts
    for split, items in first.items():
        sizes = torch.bincount(items.classes)
        assert len(items.class_names) == TINY_NEWS[f"{split}_stories"] and sizes.min() >= 2 and sizes.max() <= 4
        assert all(name.startswith(f"{split}-story-") for name in items.class_names)
        assert items.tokens[0] and all(len(tokens) > 0 for tokens in items.tokens)


def test_duplicate_scores_equal_scikit_learn_on_every_pair():
    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(16, 5, generator=generator), dim=1)
    classes = torch.randint(0, 5, (16,), generator=generator)
    pairs = list(itertools.combinations(range(16), 2))
    same = np.array([bool(classes[i] == classes[j]) for i, j in pairs])
    cosine = np.array([float(vectors[i] @ vectors[j]) for i, j in pairs])
    threshold = float(np.quantile(cosine, 0.8))
    precision, recall, f1, _ = precision_recall_fscore_support(same, cosine >= threshold, average="binary", zero_division=0)
    scores = duplicate_scores(vectors, classes, threshold)
    assert scores["dup_precision"] == pytest.approx(precision) and scores["dup_recall"] == pytest.approx(recall)
    assert scores["dup_f1"] == pytest.approx(f1)
    # brute force over every candidate threshold: the chosen one has the best F1
    best = max(duplicate_scores(vectors, classes, float(t))["dup_f1"] for t in cosine)
    assert duplicate_scores(vectors, classes, best_threshold(vectors, classes))["dup_f1"] == pytest.approx(best)
    # nothing called: precision 1 by convention, recall 0
    assert duplicate_scores(vectors, classes, 2.0) == {"dup_precision": 1.0, "dup_recall": 0.0, "dup_f1": 0.0}


def test_pretraining_corrupts_the_bag_and_reconstructs_its_frequencies(tmp_path):
    task = EmbeddingTask(load_embed_config(_news_config(tmp_path, "unused")))
    task.prepare(None)
    torch.manual_seed(0)
    task.build(torch.device("cpu"))
    batches = task.train_batches(1)
    assert len(batches) == task.steps_per_epoch() and sorted(torch.cat([b.rows for b in batches]).tolist()) == list(range(len(task.splits["train"])))
    assert [b.corrupted.tolist() for b in task.train_batches(1)] == [b.corrupted.tolist() for b in batches]
    batch = batches[0]
    clean, corrupted = task.splits["train"].inputs[batch.rows], batch.corrupted
    real = clean > 0
    dropped = real & (corrupted == 0)
    changed = real & (corrupted != 0) & (corrupted != clean)
    assert (corrupted[~real] == 0).all() and 0.2 < float(dropped.sum() / real.sum()) < 0.4
    assert (corrupted[changed] >= 2).all() and (corrupted < task.n_inputs).all() and changed.any()
    loss = task.training_step(batch, torch.device("cpu"), None).loss
    # reference: -sum_w p_w log softmax(decoder(model(corrupted)))_w with p the clean counts / length
    with torch.no_grad():
        logits = task.decoder(task.model(corrupted)).double()
    expected = []
    for row in range(clean.shape[0]):
        counts = Counter(t for t in clean[row].tolist() if t)
        log_softmax = logits[row] - torch.logsumexp(logits[row], 0)
        expected.append(-sum(c / sum(counts.values()) * float(log_softmax[t]) for t, c in counts.items()))
    assert float(loss.detach()) == pytest.approx(np.mean(expected), rel=1e-5)
    # fine-tuning epochs are the objective's P x K batches again
    assert isinstance(task.train_batches(3)[0], torch.Tensor)


def test_resume_across_the_switch_from_pretraining_is_exact(tmp_path):
    fast = {"evaluation": {"metrics": ["map"], "baselines": False}}
    whole = train_embeddings(_news_config(tmp_path, "whole", **fast))

    def interrupt_at_the_switch(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embeddings(_news_config(tmp_path, "part", **fast), on_epoch_end=interrupt_at_the_switch)
    resumed = resume_embeddings(tmp_path / "part")
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]
    vocabulary = json.loads((whole.run_dir / "vocabulary.json").read_text())
    assert vocabulary["words"][:2] == ["<pad>", "<unk>"] and len(vocabulary["words"]) == whole.report["data"]["vocabulary"]["size"]


def test_the_shrunken_news_example_beats_tfidf(tmp_path):
    config = example_config("news")
    config.update(num_threads=1, output={"dir": str(tmp_path), "name": "news", "tensorboard": False, "plots": False})
    config["data"]["news"] = {"train_stories": 300, "vali_stories": 60, "test_stories": 60, "topics": 6, "concepts": 20, "seed": 1}
    config.update(seed=1, training={"epochs": 40}, pretrain={"epochs": 5})
    result = train_embeddings(config)
    model, tfidf = result.metrics["test"], result.baselines["tfidf"]["metrics"]["test"]
    # measured (seeds 0/1/2 of corpus and run): map 0.648/0.820/0.724 against TF-IDF's
    # 0.492/0.508/0.535, duplicate F1 0.511/0.652/0.596 against 0.349/0.459/0.456; a change of
    # the triplet loss's float rounding alone moved seed 0's map to 0.577, hence the slack
    assert model["map"] > tfidf["map"] + 0.15 and model["p@1"] > tfidf["p@1"] + 0.1
    assert model["dup_f1"] > tfidf["dup_f1"] + 0.08
    assert 0 < model["dup_threshold"] < 1 and tfidf["map"] > 0.4
    assert "TF-IDF cosine test" in (result.run_dir / "report.md").read_text()


def test_a_news_run_encodes_a_text_file_as_in_training(tmp_path):
    result = train_embeddings(_news_config(tmp_path, "run", evaluation={"metrics": ["map"], "baselines": False}))
    path = tmp_path / "items.csv"
    test = news_items(**TINY_NEWS)["test"]
    path.write_text("id,text\n" + "".join(f"{item},{text}\n" for item, text in zip(test.ids[:5], test.texts[:5])))
    embedder = Embedder.load(result.run_dir)
    vectors = embedder.encode(embedder.read_items(path))
    with torch.no_grad():
        expected = result.model(embedder.vocabulary.encode(test).inputs[:5])
    torch.testing.assert_close(vectors, expected)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pretrain": {"epochs": 4}}, "pretrain.epochs: 4 of training.epochs 4 leaves no epoch for the triplet loss"),
        ({"objective": "starspace", "loss": {"name": "margin_ranking"}}, "evaluation.duplicates: StarSpace ranks class entities"),
        ({"encoder": {"name": "mlp"}}, "the bag_of_words encoder reads text items"),
    ],
)
def test_bad_news_configs(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_embed_config(_news_config(tmp_path, "bad", **change))
