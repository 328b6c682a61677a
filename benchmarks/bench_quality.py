"""Quality benchmark: ltrkit's recipe against LightGBM LambdaMART, both early-stopped on validation.

Run in the project venv (LightGBM comes with ``pip install -e '.[gbdt]'``)::

    python benchmarks/bench_quality.py                                    # everything (long)
    python benchmarks/bench_quality.py --datasets small --seeds 1         # a quick look
    python benchmarks/bench_quality.py --datasets mq2008 --folds 1 --skip-lightgbm \\
        --set optimizer.lr=0.003 --set model.args.dropout=0.2             # one trial of a sweep

Datasets (``--data-dir``, default ``../shared/data``):

* ``mq2008``: LETOR 4.0 MQ2008, ``--folds`` of its five folds (train / vali / test files).
* ``small``: LightGBM's lambdarank example; it has no validation split, so 20% of the training
  queries (seeded by ``--split-seed``, as ``bench_train.load_small`` does) are held out as one.
* ``synthetic``: ``ltrkit.data.synthetic.generate_splits`` (MSLR-shaped, 136 features),
  ``--synthetic-queries`` training queries, a tenth of that for validation, a fifth for test.

Both contenders see the same splits: training queries without a relevant document (label > 0)
are dropped (neither LambdaMART nor a listwise loss learns from them), validation and test are
kept whole. LightGBM (``lightgbm.train``, lambdarank) trains on the raw features (trees do not care
about monotone transforms) with row and feature subsampling seeded per run, up to ``--trees``
trees, and stops when its validation NDCG@10 has not improved for ``--gbdt-patience`` rounds;
the best iteration scores the test set. ltrkit trains the recipe config of the dataset
(``--recipe NAME=CONFIG``; defaults: ``configs/mq2008.json``, ``configs/lightgbm_rank.json``,
``configs/synthetic.json``; ``configs/recipe_dasalc.json`` is the DASALC alternative) through
the public API ``ltrkit.train(config, datasets=splits, quiet=True)``: the config's data paths
are replaced by the in-memory splits, its normalisation is fitted on the training split, its
early stopping runs on the validation split, and its best epoch scores the test set. ``--set key.path=value`` overrides every recipe
(as ``ltrkit train --set``); ``--epochs`` sets ``training.epochs``.

Every score is evaluated by the same code, ``ltrkit.metrics.evaluate_dataset`` with exp2 gain
(``2^rel - 1``) and tied scores averaged (``ties="average"``, which matters for tree
ensembles), under the three conventions for a query without a relevant document: it scores 0
(``zero``, scikit-learn / rax), 1 (``one``, LightGBM / allRank) or is left out (``skip``).
The convention shifts every system by the same amount, so it never changes which one wins; it
changes how large the numbers and their gap look.

Reported per dataset and convention: mean ± standard deviation of test NDCG@1/5/10 over the
runs (folds x seeds), and the paired per-query difference ltrkit - LightGBM (each query's value
averaged over the seeds, queries pooled over the folds, whose test sets are disjoint) with two
p-values: a paired t-test (scipy) and a paired randomisation test (random sign flips of the
per-query differences, ``--permutations`` draws, two-sided). The validation NDCG@10 (empty
queries = 0) is printed too: recipes are chosen on it, never on test. A closing summary gives,
per dataset, ltrkit's and LightGBM's mean test NDCG@10 (empty queries = 0), their difference and
whether ltrkit reaches LightGBM or by how much it is short (the issue's requirement).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# benchmarks/ is on sys.path when this script runs, so its sibling is importable
from bench_train import _relevant_queries, load_small, load_synthetic

import ltrkit
from ltrkit.data.dataset import RankingDataset
from ltrkit.data.letor import read_letor
from ltrkit.metrics import evaluate_dataset
from ltrkit.training.config import apply_overrides, read_config_file

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
METRICS = ("ndcg@1", "ndcg@5", "ndcg@10")
CONVENTIONS = ("zero", "one", "skip")
TIES = "average"
DEFAULT_RECIPES = {
    "mq2008": REPO / "configs" / "mq2008.json",
    "small": REPO / "configs" / "lightgbm_rank.json",
    "synthetic": REPO / "configs" / "synthetic.json",
}
# what a recipe config may say about data that does not apply to in-memory splits
_FILE_KEYS = ("train", "vali", "test", "synthetic", "vali_fraction", "query_files", "n_features")


@dataclass
class Run:
    """One contender trained once (one fold, one seed): its scores and costs."""

    vali_scores: np.ndarray
    test_scores: np.ndarray
    seconds: float
    stopped_at: int  # LightGBM: best iteration; ltrkit: best epoch


@dataclass
class Contender:
    """Every run of one contender on one dataset, keyed by ``(fold, seed)``."""

    name: str
    runs: Dict[Tuple[int, int], Run] = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def load_mq2008(data_dir: Path, fold: int) -> Dict[str, RankingDataset]:
    """MQ2008 ``Fold<fold>``: its train, vali and test files (46 features)."""
    folder = data_dir / "mq2008" / f"Fold{fold}"
    return {name: read_letor(folder / f"{name}.txt", n_features=46) for name in ("train", "vali", "test")}


def dataset_folds(name: str, opts: argparse.Namespace) -> List[Tuple[int, Dict[str, RankingDataset]]]:
    """``[(fold, splits)]`` of a dataset, training queries without a relevant document dropped."""
    data_dir = Path(opts.data_dir)
    if name == "mq2008":
        folds = [(fold, load_mq2008(data_dir, fold)) for fold in range(1, opts.folds + 1)]
    elif name == "small":
        folds = [(1, load_small(data_dir, seed=opts.split_seed))]
    elif name == "synthetic":
        folds = [(1, load_synthetic(opts.synthetic_queries, seed=opts.split_seed))]
    else:
        raise SystemExit(f"--datasets: unknown dataset {name!r}; choose from mq2008, small, synthetic")
    for _, splits in folds:
        splits["train"] = splits["train"].subset(_relevant_queries(splits["train"]))
    return folds


# --------------------------------------------------------------------------- contenders


def run_lightgbm(splits: Dict[str, RankingDataset], seed: int, opts: argparse.Namespace) -> Run:
    """LambdaMART early-stopped on the validation split's NDCG@10."""
    import lightgbm

    train, vali = splits["train"], splits["vali"]
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": opts.gbdt_lr,
        "num_leaves": opts.gbdt_leaves,
        "min_data_in_leaf": opts.gbdt_min_child,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "seed": seed,
        "num_threads": opts.gbdt_threads,
        "verbosity": -1,
    }
    start = time.perf_counter()
    train_set = lightgbm.Dataset(train.features, train.labels, group=train.list_lengths)
    vali_set = lightgbm.Dataset(vali.features, vali.labels, group=vali.list_lengths, reference=train_set)
    booster = lightgbm.train(
        params, train_set, num_boost_round=opts.trees, valid_sets=[vali_set],
        callbacks=[lightgbm.early_stopping(opts.gbdt_patience, verbose=False)],
    )
    seconds = time.perf_counter() - start
    best = booster.best_iteration or opts.trees
    return Run(
        booster.predict(vali.features, num_iteration=best), booster.predict(splits["test"].features, num_iteration=best),
        seconds, best,
    )


def recipe_config(path: Path, *, seed: int, run_dir: Path, run_name: str, opts: argparse.Namespace) -> Dict[str, Any]:
    """The recipe at ``path`` made to train on in-memory splits, into ``run_dir``, with ``seed``."""
    config = read_config_file(path)
    config["data"] = {key: value for key, value in config.get("data", {}).items() if key not in _FILE_KEYS}
    config.pop("expected", None)
    config["seed"] = seed
    config["device"] = "cpu"
    config["num_threads"] = opts.threads
    config["output"] = {"dir": str(run_dir), "name": run_name, "tensorboard": False, "plots": False}
    config.setdefault("evaluation", {})["baselines"] = False
    overrides = list(opts.set)
    if opts.epochs is not None:
        overrides.append(f"training.epochs={opts.epochs}")
    return apply_overrides(config, overrides)


def run_ltrkit(splits: Dict[str, RankingDataset], config: Dict[str, Any]) -> Run:
    """Train ``config`` on ``splits`` with the public API; score vali and test with the best epoch."""
    start = time.perf_counter()
    result = ltrkit.train(config, datasets=splits, quiet=True)
    seconds = time.perf_counter() - start
    ranker = result.ranker("best")
    return Run(ranker.predict(splits["vali"]), ranker.predict(splits["test"]), seconds, result.best_epoch)


# --------------------------------------------------------------------------- statistics


def per_query(dataset: RankingDataset, scores: np.ndarray, empty: str) -> np.ndarray:
    """``[n_queries, len(METRICS)]`` NDCG values in the dataset's query order (NaN = skipped)."""
    result = evaluate_dataset(dataset, scores, list(METRICS), gain="exp2", empty=empty, ties=TIES)
    return np.array([[result.per_query[str(qid)][name] for name in METRICS] for qid in dataset.qids], dtype=np.float64)


def randomisation_p(differences: np.ndarray, *, permutations: int, seed: int = 0) -> float:
    """Two-sided paired randomisation test: random sign flips of the per-query differences.

    p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + permutations), ``s`` uniform in {-1, 1}^n.
    """
    if differences.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    observed = abs(differences.mean())
    hits = 0
    chunk = 1000
    for start in range(0, permutations, chunk):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(chunk, permutations - start), differences.size))
        # a flip that reproduces the observed mean up to rounding counts as a hit
        hits += int((np.abs(signs @ differences) / differences.size >= observed - 1e-12).sum())
    return (1 + hits) / (1 + permutations)


def ttest_p(differences: np.ndarray) -> float:
    """Paired t-test p-value (two-sided) of the per-query differences, NaN without scipy."""
    try:
        from scipy import stats
    except ImportError:
        return float("nan")
    if differences.size < 2 or not np.any(differences != differences[0]):
        return float("nan") if differences.size < 2 else (1.0 if differences[0] == 0 else 0.0)
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


# --------------------------------------------------------------------------- report


def _mean_std(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.4f} ± {spread:.4f}"


def report(name: str, folds: List[Tuple[int, Dict[str, RankingDataset]]], contenders: List[Contender], opts: argparse.Namespace) -> Dict[str, float]:
    """Print the dataset's tables; returns each contender's mean test NDCG@10 (empty queries = 0)."""
    tests = {fold: splits["test"] for fold, splits in folds}
    headline: Dict[str, float] = {}
    valis = {fold: splits["vali"] for fold, splits in folds}
    for contender in contenders:
        vali = [
            np.nanmean(per_query(valis[fold], run.vali_scores, "zero")[:, METRICS.index("ndcg@10")])
            for (fold, _), run in contender.runs.items()
        ]
        seconds = [run.seconds for run in contender.runs.values()]
        stops = [run.stopped_at for run in contender.runs.values()]
        unit = "best iteration" if contender.name == "LightGBM" else "best epoch"
        print(f"   {contender.name:9} vali NDCG@10 (empty=0) {_mean_std(vali)}; fit {np.mean(seconds):.1f} s per run; "
              f"{unit} {min(stops)}..{max(stops)}")
    for empty in CONVENTIONS:
        print(f"\n   test, queries without a relevant document: {empty}; mean ± std over {len(contenders[0].runs)} runs")
        print(f"   {'':9} " + " ".join(f"{metric:>17}" for metric in METRICS))
        # values[contender][fold] = [seeds, queries, metrics]
        values: Dict[str, Dict[int, np.ndarray]] = {}
        for contender in contenders:
            by_fold: Dict[int, List[np.ndarray]] = {}
            for (fold, _), run in sorted(contender.runs.items()):
                by_fold.setdefault(fold, []).append(per_query(tests[fold], run.test_scores, empty))
            values[contender.name] = {fold: np.stack(arrays) for fold, arrays in by_fold.items()}
            means = np.array([np.nanmean(array, axis=0) for arrays in by_fold.values() for array in arrays])
            if empty == "zero":
                headline[contender.name] = float(means[:, METRICS.index("ndcg@10")].mean())
            print(f"   {contender.name:9} " + " ".join(f"{_mean_std(means[:, m]):>17}" for m in range(len(METRICS))))
        if len(contenders) == 2:
            ours, theirs = (values[c.name] for c in contenders)
            # per query: the mean over seeds; queries pooled over folds (disjoint test sets)
            diffs = np.concatenate([ours[fold].mean(axis=0) - theirs[fold].mean(axis=0) for fold in ours])
            cells = []
            for m in range(len(METRICS)):
                d = diffs[:, m][~np.isnan(diffs[:, m])]
                cells.append(f"{d.mean():+.4f} (t p={ttest_p(d):.3f}, rand p={randomisation_p(d, permutations=opts.permutations):.3f})")
            print(f"   paired ltrkit - LightGBM over {int((~np.isnan(diffs[:, 0])).sum())} queries:")
            for metric, cell in zip(METRICS, cells):
                print(f"     {metric:8} {cell}")
    return headline


def describe_recipe(config: Dict[str, Any]) -> str:
    """The settings of a recipe that make it what it is, on one line."""
    model, loss = config.get("model", {}), config.get("loss", {})
    optimizer, training = config.get("optimizer", {}), config.get("training", {})
    return (f"normalization={config.get('normalization', 'default')} model={model.get('name')} {model.get('args', {})} "
            f"loss={loss.get('name')} {loss.get('args', {})} optimizer={optimizer} training={training}")


def bench_dataset(name: str, opts: argparse.Namespace) -> Dict[str, float]:
    folds = dataset_folds(name, opts)
    recipe = Path(opts.recipes.get(name, DEFAULT_RECIPES[name]))
    first = folds[0][1]
    print(f"\n== {name}: {len(folds)} fold(s) x {opts.seeds} seed(s); fold {folds[0][0]}: "
          f"{first['train'].n_queries} train queries with a relevant document ({first['train'].n_docs} docs), "
          f"{first['vali'].n_queries} vali, {first['test'].n_queries} test, {first['train'].n_features} features")
    print(f"   ltrkit recipe {recipe.relative_to(REPO) if recipe.is_relative_to(REPO) else recipe}"
          + (f" with {' '.join(opts.set)}" if opts.set else "") + (f", epochs={opts.epochs}" if opts.epochs else ""))
    stated = recipe_config(recipe, seed=0, run_dir=Path("."), run_name="-", opts=opts)
    print(f"     {describe_recipe(stated)}")
    if not opts.skip_lightgbm:
        print(f"   LightGBM lambdarank: up to {opts.trees} trees, lr {opts.gbdt_lr}, {opts.gbdt_leaves} leaves, "
              f"min_data_in_leaf {opts.gbdt_min_child}, bagging 0.8, feature_fraction 0.8, "
              f"early stopping {opts.gbdt_patience} rounds on vali NDCG@10")
    ours, theirs = Contender("ltrkit"), Contender("LightGBM")
    contenders = ([] if opts.skip_ltrkit else [ours]) + ([] if opts.skip_lightgbm else [theirs])
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        for fold, splits in folds:
            for seed in range(opts.seeds):
                if not opts.skip_ltrkit:
                    config = recipe_config(recipe, seed=seed, run_dir=Path(tmp), run_name=f"{name}-f{fold}-s{seed}", opts=opts)
                    ours.runs[(fold, seed)] = run_ltrkit(splits, config)
                if not opts.skip_lightgbm:
                    theirs.runs[(fold, seed)] = run_lightgbm(splits, seed, opts)
    return report(name, folds, contenders, opts)


def verdict(headlines: Dict[str, Dict[str, float]]) -> None:
    """The issue's requirement per dataset: ltrkit's mean test NDCG@10 at least LightGBM's."""
    rows = {name: values for name, values in headlines.items() if {"ltrkit", "LightGBM"} <= set(values)}
    if not rows:
        return
    print("\n== summary: mean test NDCG@10 (empty queries = 0)")
    for name, values in rows.items():
        gap = values["ltrkit"] - values["LightGBM"]
        outcome = "ltrkit >= LightGBM" if gap >= 0 else f"ltrkit short by {-gap:.4f}"
        print(f"   {name:10} ltrkit {values['ltrkit']:.4f}  LightGBM {values['LightGBM']:.4f}  {gap:+.4f}  {outcome}")


def _recipe(text: str) -> Tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or name not in DEFAULT_RECIPES:
        raise argparse.ArgumentTypeError(f"expected NAME=CONFIG with NAME one of {sorted(DEFAULT_RECIPES)}, got {text!r}")
    return name, path


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mq2008,small,synthetic", help="comma list of: mq2008, small, synthetic")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="folder holding mq2008/ and lightgbm-rank/")
    parser.add_argument("--folds", type=int, default=5, choices=range(1, 6), help="MQ2008 folds 1..N")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 of both contenders")
    parser.add_argument("--epochs", type=int, default=None, help="training.epochs of every recipe (default: the recipe's)")
    parser.add_argument("--synthetic-queries", type=int, default=5000, help="training queries of the synthetic set")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the synthetic data and of the small set's vali hold-out")
    parser.add_argument("--recipe", dest="recipes", type=_recipe, action="append", default=[], help="NAME=CONFIG: the ltrkit recipe of a dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of every recipe (repeatable)")
    parser.add_argument("--trees", type=int, default=2000, help="LightGBM's most trees")
    parser.add_argument("--gbdt-lr", type=float, default=0.05)
    parser.add_argument("--gbdt-leaves", type=int, default=31)
    parser.add_argument("--gbdt-min-child", type=int, default=20, help="LightGBM min_data_in_leaf")
    parser.add_argument("--gbdt-patience", type=int, default=100, help="LightGBM early-stopping rounds")
    parser.add_argument("--gbdt-threads", type=int, default=1, help="LightGBM threads (1: see bench_train on shared machines)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of ltrkit")
    parser.add_argument("--permutations", type=int, default=10000, help="draws of the randomisation test")
    parser.add_argument("--skip-lightgbm", action="store_true", help="train ltrkit only (recipe sweeps on vali)")
    parser.add_argument("--skip-ltrkit", action="store_true", help="train LightGBM only")
    opts = parser.parse_args(argv)
    if opts.skip_lightgbm and opts.skip_ltrkit:
        parser.error("--skip-lightgbm and --skip-ltrkit leave nothing to train")
    opts.recipes = dict(opts.recipes)
    return opts


def main(argv: Optional[List[str]] = None) -> None:
    opts = parse_args(argv)
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    torch.set_num_threads(opts.threads)
    print(f"bench_quality: ltrkit {ltrkit.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}, "
          f"{opts.threads} torch thread(s); NDCG with exp2 gain, ties {TIES}")
    verdict({name: bench_dataset(name, opts) for name in opts.datasets.split(",")})


if __name__ == "__main__":
    main()
