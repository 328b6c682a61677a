"""Training benchmark: ltrkit vs allRank (same MLP, same loss) vs LightGBM lambdarank.

Run in the benchmark venv (``bash benchmarks/allrank_env.sh`` creates it)::

    .bench-venv/bin/python benchmarks/bench_train.py                      # both datasets
    .bench-venv/bin/python benchmarks/bench_train.py --datasets small --epochs 5   # a short run

Datasets:

* ``small``: LightGBM's lambdarank example (``<--data-dir>/lightgbm-rank``, default
  ``../shared/data``; libsvm + .query files). It has no validation split: 20% of the training
  queries (seeded) are held out as one. The training slate length defaults to its longest list.
* ``synthetic``: ``ltrkit.data.synthetic.generate_splits`` (MSLR-shaped, 136 features,
  ``--synthetic-queries`` training queries, a tenth of that for validation, a fifth for test).

Every split is prepared once, the same way for every contender: training queries without a
relevant document (label > 0) are dropped (they hold no LambdaLoss pair), features are z-scored
with training statistics, and the splits are written as LETOR files ``train.txt``, ``vali.txt``,
``test.txt`` in a temporary folder. ltrkit (``ltrkit.training.train``, normalisation off) and
allRank (``load_libsvm_dataset`` + ``train_utils.fit``) read these files; LightGBM gets the same
arrays.

Both neural contenders train the same network (``n_features -> hidden... -> 1``, ReLU, the same
dropout), with LambdaLoss NDCG-Loss2++ (Wang et al. 2018; allRank ``lambdaLoss(weighing_scheme=
"ndcgLoss2PP_scheme", mu=10, sigma=1, k=None, reduction="sum", eps=1e-10)`` and ltrkit
``lambdaloss(weighting="ndcg_loss2pp", mu=10, sigma=1, k=None, eps=1e-10)``; the trainer takes the
mean over the batch's lists of each list's summed pair costs, i.e. allRank's loss divided by the
number of lists in the batch, a constant factor that Adam's update is invariant to),
Adam with the same learning rate and no schedule, the same batch size (queries), the same number
of epochs and the same training slate length (longer lists randomly sampled down, as allRank's
``FixLength`` does), on ``torch.set_num_threads(--threads)`` threads. The last epoch's model is
evaluated (no model selection on validation data). LightGBM (``LGBMRanker``, lambdarank, 500 trees
at learning rate 0.05 on the small set, 200 at 0.1 on the synthetic one, 31 leaves) is the GBDT
reference.

All three are evaluated by the same code, ``ltrkit.metrics.evaluate_dataset`` on the test split: exp2 gain
(``2^rel - 1``), tied scores averaged (``ties="average"``, which matters for tree ensembles), and
a query without a relevant document scores 1 (``empty="one"``, the LightGBM/allRank convention).

Timing: ``train s/epoch`` is the training pass only (allRank: the pass over its training
DataLoader inside ``fit``, measured by wrapping the loader; ltrkit: the epoch's training seconds
from its history). ``fit s/epoch`` is the wall clock of the whole fit divided by epochs, including
each library's per-epoch evaluation (allRank also re-scores the whole training set every epoch).
``docs/s`` = real training documents per epoch (after slate sampling) / ``train s/epoch``.
ltrkit's ``fit s/epoch`` also carries its fixed per-run costs (run folder, checkpoints, final
evaluation and report), which dominate on the small set.

Timings on a busy shared machine are dominated by contention: with more runnable threads than
cores, every OpenMP barrier waits for a descheduled thread, so the op-heavy loops (and
LightGBM with 2 threads: ``--gbdt-threads``) slow down many times. Compare ratios from one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch

from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import read_letor, write_letor
from ltrkit.data.synthetic import generate_splits
from ltrkit.metrics import evaluate_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
EVAL_KS = (5, 10)
EMPTY = "one"
TIES = "average"


@dataclass
class Outcome:
    """One contender's result on one dataset."""

    name: str
    test_scores: np.ndarray
    train_seconds_per_epoch: Optional[float]
    fit_seconds_per_epoch: float
    docs_per_epoch: Optional[int]


# --------------------------------------------------------------------------- data


def _relevant_queries(dataset: RankingDataset) -> np.ndarray:
    has = np.add.reduceat(dataset.labels > 0, dataset.query_offsets[:-1]) if dataset.n_docs else np.zeros(0)
    has = np.where(dataset.list_lengths > 0, has, 0)
    return np.flatnonzero(has > 0)


def load_small(data_dir: Path, *, seed: int) -> Dict[str, RankingDataset]:
    """LightGBM's example: train (80% of rank.train's queries), vali (the other 20%), test."""
    folder = data_dir / "lightgbm-rank"
    train = read_letor(folder / "rank.train")
    test = read_letor(folder / "rank.test", n_features=train.n_features)
    order = np.random.default_rng(seed).permutation(train.n_queries)
    n_vali = train.n_queries // 5
    return {
        "train": train.subset(np.sort(order[n_vali:])),
        "vali": train.subset(np.sort(order[:n_vali])),
        "test": test,
    }


def load_synthetic(n_queries: int, *, seed: int) -> Dict[str, RankingDataset]:
    """MSLR-shaped synthetic splits: ``n_queries`` train, ``n/10`` vali, ``n/5`` test."""
    return generate_splits(
        train_queries=n_queries, vali_queries=max(1, n_queries // 10), test_queries=max(1, n_queries // 5), seed=seed
    )


def prepare(splits: Dict[str, RankingDataset]) -> Dict[str, RankingDataset]:
    """Drop training queries without a relevant document; z-score features with train statistics."""
    train = splits["train"].subset(_relevant_queries(splits["train"]))
    mean = train.features.mean(axis=0, dtype=np.float64)
    std = train.features.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    out = {}
    for name, ds in (("train", train), ("vali", splits["vali"]), ("test", splits["test"])):
        features = ((ds.features - mean) / std).astype(np.float32)
        out[name] = RankingDataset(features, ds.labels, ds.query_offsets, ds.qids, None, ds.source)
    return out


def write_folder(splits: Dict[str, RankingDataset], folder: Path) -> None:
    for name, ds in splits.items():
        write_letor(ds, folder / f"{name}.txt", write_doc_ids=False)


def docs_per_epoch(train: RankingDataset, slate_length: int) -> int:
    """Real documents one training epoch processes after slates are cut to ``slate_length``."""
    return int(np.minimum(train.list_lengths, slate_length).sum())


def evaluate(test: RankingDataset, scores: np.ndarray) -> Dict[int, float]:
    """Mean NDCG@k over test queries (exp2 gain, averaged ties, empty queries score 1)."""
    names = [f"ndcg@{k}" for k in EVAL_KS]
    result = evaluate_dataset(test, scores, names, gain="exp2", empty=EMPTY, ties=TIES)
    return {k: float(result.mean[f"ndcg@{k}"]) for k in EVAL_KS}


# --------------------------------------------------------------------------- contenders


def run_ltrkit(folder: Path, n_train_docs: int, opts: argparse.Namespace) -> Outcome:
    from ltrkit.training.trainer import train

    config = {
        "data": {
            "train": str(folder / "train.txt"),
            "vali": str(folder / "vali.txt"),
            "test": str(folder / "test.txt"),
            "cache": False,
            "drop_train_queries_without_relevant": False,
        },
        "normalization": "none",
        "model": {"name": "mlp", "args": {"hidden_sizes": opts.hidden, "activation": "relu", "dropout": opts.dropout}},
        "loss": {
            "name": "lambdaloss",
            "args": {"weighting": "ndcg_loss2pp", "mu": 10.0, "sigma": 1.0, "eps": 1e-10},
        },
        "optimizer": {"name": "adam", "lr": opts.lr},
        "schedule": {"name": "constant"},
        "training": {
            "epochs": opts.epochs,
            "batch_size": opts.batch_size,
            "max_slate_length": opts.slate_length,
            "truncation": "random",
        },
        "early_stopping": {"patience": None},
        "evaluation": {"metrics": ["ndcg@10"], "baselines": False},
        "seed": opts.seed,
        "device": "cpu",
        "num_threads": opts.threads,
        "output": {"dir": str(folder / "runs"), "name": "ltrkit", "tensorboard": False, "plots": False},
    }
    start = time.perf_counter()
    result = train(config, quiet=True)
    fit_seconds = time.perf_counter() - start
    ranker = result.ranker("last")
    scores = ranker.predict(read_letor(folder / "test.txt", n_features=ranker.n_features))
    train_seconds = [record["seconds"] for record in result.history]
    return Outcome("ltrkit", scores, float(np.mean(train_seconds)), fit_seconds / opts.epochs, n_train_docs)


class _TimedLoader:
    """Wraps allRank's training DataLoader and times each full pass over it.

    ``fit`` iterates the training loader twice per epoch: the training pass, then a metric pass
    (``compute_metrics`` on the training data). Even-numbered passes are the training passes.
    """

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader
        self.pass_seconds: List[float] = []
        self.real_docs: List[int] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        start = time.perf_counter()
        docs = 0
        for xb, yb, indices in self.loader:
            docs += int((yb != -1).sum())
            yield xb, yb, indices
        self.pass_seconds.append(time.perf_counter() - start)
        self.real_docs.append(docs)


def run_allrank(folder: Path, n_features: int, opts: argparse.Namespace) -> Outcome:
    import allrank.models.losses as allrank_losses
    from allrank.data.dataset_loading import load_libsvm_dataset, load_libsvm_role
    from allrank.models.model import make_model
    from allrank.training import train_utils
    from torch.utils.data import DataLoader

    logging.getLogger("allrank").setLevel(logging.WARNING)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    train_ds, vali_ds = load_libsvm_dataset(str(folder), opts.slate_length, "vali")
    for ds in (train_ds, vali_ds):
        _widen(ds, n_features)
    model = make_model(
        fc_model={"sizes": list(opts.hidden), "input_norm": False, "activation": "ReLU", "dropout": opts.dropout},
        transformer=None,
        post_model={"d_output": 1, "output_activation": None},
        n_features=n_features,
    )
    train_dl = _TimedLoader(DataLoader(train_ds, batch_size=opts.batch_size, shuffle=True, num_workers=0))
    vali_dl = DataLoader(vali_ds, batch_size=opts.batch_size, shuffle=False, num_workers=0)
    loss = partial(
        allrank_losses.lambdaLoss, weighing_scheme="ndcgLoss2PP_scheme", k=None, sigma=1.0, mu=10.0,
        reduction="sum", eps=1e-10,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    config = SimpleNamespace(metrics={"ndcg": [10]}, val_metric="ndcg_10")
    out_dir = folder / "allrank"
    out_dir.mkdir()
    start = time.perf_counter()
    train_utils.fit(
        epochs=opts.epochs, model=model, loss_func=loss, optimizer=optimizer, scheduler=None,
        train_dl=train_dl, valid_dl=vali_dl, config=config, gradient_clipping_norm=None,
        early_stopping_patience=opts.epochs + 1, device=torch.device("cpu"), output_dir=str(out_dir),
        tensorboard_output_path=str(out_dir / "tb"),
    )
    fit_seconds = time.perf_counter() - start
    training_passes = train_dl.pass_seconds[0::2]

    test_ds = load_libsvm_role(str(folder), "test")
    _widen(test_ds, n_features)
    model.eval()
    scores = []
    with torch.no_grad():
        for x, y in zip(test_ds.X_by_qid, test_ds.y_by_qid):
            xb = torch.from_numpy(x).float()[None]
            mask = torch.zeros(1, len(y), dtype=torch.bool)  # allRank's mask: True = padding
            indices = torch.arange(len(y))[None]
            scores.append(model.score(xb, mask, indices)[0].numpy())
    return Outcome(
        "allRank", np.concatenate(scores), float(np.mean(training_passes)), fit_seconds / opts.epochs,
        int(np.mean(train_dl.real_docs[0::2])),
    )


def _widen(ds: object, n_features: int) -> None:
    """scikit-learn's svmlight reader sizes a file by its largest index: pad to ``n_features``."""
    ds.X_by_qid = [np.pad(x, ((0, 0), (0, n_features - x.shape[1]))) for x in ds.X_by_qid]


def run_lightgbm(splits: Dict[str, RankingDataset], opts: argparse.Namespace) -> Outcome:
    import lightgbm

    train = splits["train"]
    ranker = lightgbm.LGBMRanker(
        objective="lambdarank", n_estimators=opts.trees, learning_rate=opts.gbdt_lr, num_leaves=31,
        random_state=opts.seed, n_jobs=opts.gbdt_threads, verbose=-1,
    )
    start = time.perf_counter()
    ranker.fit(train.features, train.labels, group=train.list_lengths)
    seconds = time.perf_counter() - start
    return Outcome("LightGBM", ranker.predict(splits["test"].features), None, seconds, None)


# --------------------------------------------------------------------------- driver


def bench_dataset(name: str, splits: Dict[str, RankingDataset], opts: argparse.Namespace) -> None:
    splits = prepare(splits)
    train = splits["train"]
    if opts.slate_length is None:
        opts = argparse.Namespace(**{**vars(opts), "slate_length": min(240, int(train.list_lengths.max()))})
    print(f"\n== {name}: {train.n_queries} train queries ({train.n_docs} docs), {splits['vali'].n_queries} vali, "
          f"{splits['test'].n_queries} test ({splits['test'].n_docs} docs), {train.n_features} features, "
          f"longest train list {int(train.list_lengths.max())}")
    print(f"   MLP {train.n_features}->{'->'.join(map(str, opts.hidden))}->1 ReLU dropout={opts.dropout}, "
          f"LambdaLoss NDCG-Loss2++, Adam lr={opts.lr}, batch={opts.batch_size} queries, "
          f"slate={opts.slate_length}, epochs={opts.epochs}, threads={opts.threads}; "
          f"LightGBM {opts.trees} trees lr={opts.gbdt_lr}, {opts.gbdt_threads} thread(s)")
    print(f"   test NDCG: exp2 gain, ties averaged, queries without a relevant document = 1 ({EMPTY!r})")
    outcomes: List[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        folder = Path(tmp)
        write_folder(splits, folder)
        n_docs = docs_per_epoch(train, opts.slate_length)
        runners: List[Callable[[], Outcome]] = [lambda: run_ltrkit(folder, n_docs, opts)]
        if not opts.skip_allrank:
            runners.append(lambda: run_allrank(folder, train.n_features, opts))
        if not opts.skip_lightgbm:
            runners.append(lambda: run_lightgbm(splits, opts))
        for runner in runners:
            outcomes.append(runner())

    metrics = {o.name: evaluate(splits["test"], o.test_scores) for o in outcomes}
    header = f"   {'':9} {'NDCG@5':>8} {'NDCG@10':>8} {'train s/ep':>11} {'fit s/ep':>9} {'docs/s':>10}"
    print(header)
    for o in outcomes:
        docs_s = f"{o.docs_per_epoch / o.train_seconds_per_epoch:10.0f}" if o.train_seconds_per_epoch else f"{'-':>10}"
        train_s = f"{o.train_seconds_per_epoch:11.3f}" if o.train_seconds_per_epoch else f"{'-':>11}"
        fit_label = "fit s" if o.name == "LightGBM" else ""
        print(f"   {o.name:9} {metrics[o.name][5]:8.4f} {metrics[o.name][10]:8.4f} {train_s} "
              f"{o.fit_seconds_per_epoch:9.3f} {docs_s} {fit_label}".rstrip())
    by_name = {o.name: o for o in outcomes}
    if "allRank" in by_name:
        ours, theirs = by_name["ltrkit"], by_name["allRank"]
        for k in EVAL_KS:
            print(f"   ltrkit NDCG@{k} - allRank NDCG@{k}: {metrics['ltrkit'][k] - metrics['allRank'][k]:+.4f}")
        ratio = (ours.docs_per_epoch / ours.train_seconds_per_epoch) / (theirs.docs_per_epoch / theirs.train_seconds_per_epoch)
        print(f"   ltrkit docs/s / allRank docs/s (training pass): {ratio:.2f}x")
        print(f"   allRank fit s/epoch / ltrkit fit s/epoch (whole epoch incl. evaluation): "
              f"{theirs.fit_seconds_per_epoch / ours.fit_seconds_per_epoch:.2f}x")
    if "LightGBM" in by_name:
        print(f"   ltrkit NDCG@10 - LightGBM NDCG@10: {metrics['ltrkit'][10] - metrics['LightGBM'][10]:+.4f}")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="small,synthetic", help="comma list of: small, synthetic")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="folder holding lightgbm-rank/ (default: ../shared/data)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 20 small, 2 synthetic)")
    parser.add_argument("--synthetic-queries", type=int, default=5000, help="training queries of the synthetic set")
    parser.add_argument("--batch-size", type=int, default=64, help="queries per batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[128, 64], help="hidden sizes, e.g. 128,64")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument(
        "--slate-length", type=int, default=None,
        help="training slate length, allRank's slate_length (default: the longest training list, at most 240)",
    )
    parser.add_argument("--trees", type=int, default=None, help="LightGBM trees (default: 500 small, 200 synthetic)")
    parser.add_argument("--gbdt-lr", type=float, default=None, help="LightGBM learning rate (default: 0.05 small, 0.1 synthetic)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both neural contenders")
    parser.add_argument(
        "--gbdt-threads", type=int, default=1,
        help="LightGBM threads (default 1: on a shared, oversubscribed machine its OpenMP barriers make 2 threads "
             "several times slower than 1; its scores do not depend on it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-allrank", action="store_true")
    parser.add_argument("--skip-lightgbm", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    opts = parse_args(argv)
    torch.set_num_threads(opts.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    print(f"bench_train: torch {torch.__version__}, {torch.get_num_threads()} threads, python {sys.version.split()[0]}")
    for name in opts.datasets.split(","):
        small = name == "small"
        defaults = {"epochs": 20 if small else 2, "trees": 500 if small else 200, "gbdt_lr": 0.05 if small else 0.1}
        run_opts = argparse.Namespace(
            **{**vars(opts), **{key: value for key, value in defaults.items() if getattr(opts, key) is None}}
        )
        if name == "small":
            bench_dataset("lightgbm-rank (small, real)", load_small(Path(opts.data_dir), seed=opts.seed), run_opts)
        elif name == "synthetic":
            bench_dataset(f"synthetic MSLR-shaped ({opts.synthetic_queries} train queries)",
                          load_synthetic(opts.synthetic_queries, seed=opts.seed), run_opts)
        else:
            raise SystemExit(f"--datasets: unknown dataset {name!r}; choose from small, synthetic")


if __name__ == "__main__":
    main()
