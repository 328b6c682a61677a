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

Training pass against the bare model (``--losses``, skip with ``--skip-passes``): for each list
loss, ``ltrkit`` trains ``--pass-epochs`` epochs with it (vali scoring between epochs, no
baselines), and after each epoch, inside the same call, the same epoch's batches (the run's own
``BatchLoader``, same epoch, same thread count) go through a *bare model step*: a second MLP of
the same shape, forward, ``scores.sum()`` as the loss (no ranking loss at all: matmul + ReLU),
backward and an Adam step. ``loss pass`` is the trainer's training seconds of an epoch (its
history), ``bare pass`` the bare loop's; both take the best of the epochs (interleaved, so a
burst of contention hits both), and ``ratio = loss pass / bare pass``. The same pair is also
measured in process CPU seconds (``time.process_time``: the training pass from the epoch's first
batch to its validation), which a descheduled process does not accumulate: on a shared machine
the CPU ratio is the stable one.

Whole call (skip with ``--skip-whole-call``): one ``ltrkit train config.json -q`` subprocess with
the defaults of a real run (NDCG-Loss2++, per-epoch validation, test predictions, report with
the random / single-feature / LightGBM baselines, ``curves.png``, TensorBoard), wall clock
against the sum of its training passes (``report.json``'s ``train_seconds``); the same config
run in-process splits the call into loading (config, data, normaliser), training passes,
per-epoch validation, test scoring and predictions, baselines (the LightGBM baseline timed on
its own, with LightGBM's import) and the rest (run folder, checkpoints, report, plots); the
subprocess writes the data cache (``data.cache``, on by default) that the in-process run then
reads, and imports everything the in-process run finds imported already. The ratio is printed
with and without the LightGBM baseline, which trains a second model and is a fixed cost of the run.

Timings on a busy shared machine are dominated by contention: with more runnable threads than
cores, every OpenMP barrier waits for a descheduled thread, so the op-heavy loops (and
LightGBM with 2 threads: ``--gbdt-threads``) slow down many times. Compare ratios from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
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

    config = ltrkit_config(
        folder, opts, loss={"name": "lambdaloss", "args": {"weighting": "ndcg_loss2pp", "mu": 10.0, "sigma": 1.0, "eps": 1e-10}},
        name="ltrkit",
    )
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


# --------------------------------------------------------------------------- loss pass vs bare model

# --losses names: registered list losses, plus the NDCG-Loss2++ LambdaLoss (the default loss)
LOSS_ALIASES: Dict[str, Dict[str, object]] = {
    "ndcg_loss2pp": {"name": "lambdaloss", "args": {"weighting": "ndcg_loss2pp"}},
}
DEFAULT_LOSSES = "listnet,ranknet,lambdarank,ndcg_loss2pp"


def ltrkit_config(folder: Path, opts: argparse.Namespace, *, loss: Dict[str, object], name: str) -> Dict[str, object]:
    """The config both neural measurements share (allRank's recipe; ``loss`` and output name vary)."""
    return {
        "data": {
            "train": str(folder / "train.txt"),
            "vali": str(folder / "vali.txt"),
            "test": str(folder / "test.txt"),
            "cache": False,
            "drop_train_queries_without_relevant": False,
        },
        "normalization": "none",
        "model": {"name": "mlp", "args": {"hidden_sizes": opts.hidden, "activation": "relu", "dropout": opts.dropout}},
        "loss": loss,
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
        "output": {"dir": str(folder / "runs"), "name": name, "tensorboard": False, "plots": False},
    }


def loss_spec(name: str) -> Dict[str, object]:
    from ltrkit.losses import names

    if name in LOSS_ALIASES:
        return LOSS_ALIASES[name]
    if name not in names("list"):
        raise SystemExit(f"--losses: {name!r} is not a list loss; choose from {sorted(names('list')) + sorted(LOSS_ALIASES)}")
    return {"name": name, "args": {}}


def _timed_task_class():
    """A RankingTask that times its phases (load, validation, test, baselines; LightGBM apart)."""
    import ltrkit.training.gbdt as gbdt
    from ltrkit.training.trainer import RankingTask

    class TimedTask(RankingTask):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.seconds: Dict[str, float] = defaultdict(float)
            self.passes: List[tuple] = []  # (wall s, process CPU s) of each training pass

        @contextlib.contextmanager
        def timed(self, phase: str) -> Iterator[None]:
            start = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[phase] += time.perf_counter() - start

        def prepare(self, state):
            with self.timed("load"):
                return super().prepare(state)

        def train_batches(self, epoch):
            # the training pass runs from here to the epoch's first evaluation
            self.pass_start = (time.perf_counter(), time.process_time())
            return super().train_batches(epoch)

        def evaluate(self, split, device, amp_dtype):
            if getattr(self, "pass_start", None) is not None:
                wall, cpu = self.pass_start
                self.passes.append((time.perf_counter() - wall, time.process_time() - cpu))
                self.pass_start = None
            with self.timed("validation"):
                return super().evaluate(split, device, amp_dtype)

        def final_metrics(self, folder, device, amp_dtype):
            with self.timed("test"):
                return super().final_metrics(folder, device, amp_dtype)

        def baselines(self):
            # LightGBM's import (scikit-learn, SciPy) and its training are the LightGBM baseline's
            originals = {name: getattr(gbdt, name) for name in ("lambdamart_baseline", "lightgbm_available")}

            def timed_lightgbm(function):
                def call(*args, **kwargs):
                    with self.timed("lightgbm"):
                        return function(*args, **kwargs)

                return call

            for name, function in originals.items():
                setattr(gbdt, name, timed_lightgbm(function))
            try:
                with self.timed("baselines"):
                    return super().baselines()
            finally:
                for name, function in originals.items():
                    setattr(gbdt, name, function)

    return TimedTask


def bare_pass(task, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple:
    """(wall s, process CPU s) of one bare model step over every batch of ``epoch`` of the task's own loader."""
    loader = task.loader
    loader.set_epoch(epoch)
    model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in loader:
        scores = model(batch.features, batch.mask)
        optimizer.zero_grad(set_to_none=True)
        scores.float().sum().backward()
        optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def pass_against_bare(folder: Path, loss: str, opts: argparse.Namespace) -> Dict[str, float]:
    """Best training pass of ``loss`` and best bare pass over the same batches, interleaved by epoch."""
    from ltrkit.training.config import load_config
    from ltrkit.training.trainer import build_ranking_model, run_task

    config = ltrkit_config(folder, opts, loss=loss_spec(loss), name=f"pass-{loss}")
    config["training"]["epochs"] = opts.pass_epochs
    task = _timed_task_class()(load_config(config))
    bare: List[float] = []
    state: Dict[str, object] = {}

    def after_epoch(epoch: int, record: Dict[str, object]) -> None:
        if "model" not in state:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(opts.seed)
                state["model"] = build_ranking_model(task.config, task.data.train.n_features)
            state["optimizer"] = torch.optim.Adam(state["model"].parameters(), lr=opts.lr)
        bare.append(bare_pass(task, epoch, state["model"], state["optimizer"]))

    result = run_task(task, overwrite=True, quiet=True, on_epoch_end=after_epoch)
    history = [record["seconds"] for record in result.history]
    return {
        "loss": min(history), "bare": min(wall for wall, _ in bare),
        "loss_cpu": min(cpu for _, cpu in task.passes), "bare_cpu": min(cpu for _, cpu in bare),
    }


def whole_call(folder: Path, opts: argparse.Namespace) -> Dict[str, float]:
    """``ltrkit train`` as a subprocess (wall clock, train_seconds) and the same run in-process, timed by phase."""
    from ltrkit.training.config import load_config
    from ltrkit.training.trainer import run_task

    config = ltrkit_config(folder, opts, loss={"name": "lambdaloss", "args": {"weighting": "ndcg_loss2pp"}}, name="whole")
    config["data"]["cache"] = True  # the default: the first call writes it, the in-process run reads it
    config["evaluation"] = {"metrics": ["ndcg@10"]}
    config["output"].update(tensorboard=True, plots=True)
    path = folder / "whole.json"
    path.write_text(json.dumps(config))
    ltrkit = Path(sys.executable).with_name("ltrkit")
    start = time.perf_counter()
    done = subprocess.run([str(ltrkit), "train", str(path), "-q", "--overwrite"], capture_output=True, text=True)
    call_seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ltrkit train failed:\n{done.stderr[-2000:]}")
    report = json.loads((folder / "runs" / "whole" / "report.json").read_text())
    cli_lightgbm = float(report["baselines"].get("lightgbm", {}).get("train_seconds", 0.0))

    task = _timed_task_class()(load_config(config))
    start = time.perf_counter()
    result = run_task(task, overwrite=True, quiet=True)
    total = time.perf_counter() - start
    phases = dict(task.seconds)
    phases["passes"] = sum(record["seconds"] for record in result.history)
    phases["baselines"] -= phases.get("lightgbm", 0.0)
    phases["rest"] = total - sum(phases.values())
    return {"call": call_seconds, "call_passes": float(report["train_seconds"]), "call_lightgbm": cli_lightgbm, "total": total, **phases}


def print_passes(folder: Path, opts: argparse.Namespace) -> None:
    print(f"   training pass vs bare model step (same batches, {opts.threads} thread(s), best of {opts.pass_epochs} epochs):")
    print(f"   {'loss':14} {'loss pass s':>12} {'bare pass s':>12} {'ratio':>7} {'loss CPU s':>11} {'bare CPU s':>11} {'CPU ratio':>10}")
    for loss in opts.losses.split(","):
        f = pass_against_bare(folder, loss, opts)
        print(f"   {loss:14} {f['loss']:12.3f} {f['bare']:12.3f} {f['loss'] / f['bare']:6.2f}x "
              f"{f['loss_cpu']:11.3f} {f['bare_cpu']:11.3f} {f['loss_cpu'] / f['bare_cpu']:9.2f}x", flush=True)


def print_whole_call(folder: Path, opts: argparse.Namespace) -> None:
    figures = whole_call(folder, opts)
    passes = figures["call_passes"]
    print(f"   whole `ltrkit train` call ({opts.epochs} epochs, defaults of a real run, first call: writes the data cache): {figures['call']:.2f} s wall, "
          f"training passes {passes:.2f} s: {figures['call'] / passes:.2f}x the passes; without its LightGBM baseline "
          f"({figures['call_lightgbm']:.2f} s) {(figures['call'] - figures['call_lightgbm']) / passes:.2f}x")
    order = ("load", "passes", "validation", "test", "baselines", "lightgbm", "rest")
    labels = {"load": "load", "passes": "passes", "validation": "validation", "test": "test+predictions",
              "baselines": "random+single-feature", "lightgbm": "LightGBM baseline", "rest": "folder/report/plots"}
    shown = ", ".join(f"{labels[key]} {figures.get(key, 0.0):.2f}" for key in order)
    in_process = figures["total"] - figures.get("lightgbm", 0.0)
    print(f"   in-process run of the same config (data cache read, modules imported) breakdown (s): {shown}; total {figures['total']:.2f} = {figures['total'] / figures['passes']:.2f}x "
          f"the passes, {in_process / figures['passes']:.2f}x without LightGBM")


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
        if not opts.skip_passes:
            print_passes(folder, opts)
        if not opts.skip_whole_call:
            print_whole_call(folder, opts)

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
    parser.add_argument("--losses", default=DEFAULT_LOSSES, help=f"list losses timed against the bare model (default {DEFAULT_LOSSES})")
    parser.add_argument(
        "--pass-epochs", type=int, default=None, help="epochs per loss in the loss-vs-bare comparison, best of (default: 20 small, 3 synthetic)"
    )
    parser.add_argument("--skip-passes", action="store_true", help="skip the loss-vs-bare-model comparison")
    parser.add_argument("--skip-whole-call", action="store_true", help="skip the whole-call timing")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    opts = parse_args(argv)
    torch.set_num_threads(opts.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    print(f"bench_train: torch {torch.__version__}, {torch.get_num_threads()} threads, python {sys.version.split()[0]}")
    for name in opts.datasets.split(","):
        small = name == "small"
        defaults = {
            "epochs": 20 if small else 2, "trees": 500 if small else 200, "gbdt_lr": 0.05 if small else 0.1,
            "pass_epochs": 20 if small else 3,
        }
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
