"""Click simulation throughput and click-model parameter recovery versus the number of sessions.

Three tables:

* **throughput** (impressions per second, best of ``--repeat``): the click models alone on
  ``[S, K]`` attraction arrays (``S = --throughput-sessions``, ``K = 10``), the whole simulation
  pipeline on MQ2008 Fold1 train (rank every query, draw sessions, randomise, map labels, click;
  no I/O), and the pipeline writing the Parquet log plus the aggregated training set;
* **recovery**: the largest absolute error of the estimated relative propensities ``p_r / p_1``
  over ranks 1..10 (UBM: over every ``(rank, previous click)`` cell with at least 100
  impressions), mean +- standard deviation over ``--seeds`` seeds, at each of ``--sessions``:
  PBM EM and the randomisation estimator on a RandTop-10 log (true ``p_r = 1/r``), UBM EM on a
  UBM log (``gamma_{r,r'} = 1/(r - r')``, RandTop-10), and regression EM on a log *without*
  interventions, next to plain PBM EM on that same log (which is not identified there).

* **unbiased LTR** (``--ultr-sessions``): test NDCG@10 (true labels) on MQ2008 Fold1 and on the
  built-in synthetic data of ltrkit's own click training (:func:`ltrkit.clicks.train_on_clicks`,
  the ``data.train_clicks`` job of ``ltrkit train``: the shared loop, model selection on the true
  validation labels) with the recipe ``configs/clicks.json`` (its model, or ``--ultr-model``), on
  PBM or DBN clicks of the logging policy's top 10 (no intervention), one Parquet log per cell:
  naive (``propensities: none``, clicks as labels), IPS with the true propensities (``logged``:
  the simulator's examination probability of each shown slot; for DBN it depends on the
  documents above), IPS with regression-EM propensities estimated from the same log (both
  estimators assume PBM, so they are misspecified for DBN clicks), IPS with randomisation
  propensities estimated from an equally large RandTop-10 log (``propensity_log``), and DLA (the
  ranker trained jointly with one propensity logit per rank, Ai et al. 2018), Joachims' "click >
  skip above" preference pairs with RankNet (``pairs: skip_above``, loss ``ranknet``, no
  propensities); next to full
  information, a ranking run (``ltrkit.train``) of the same recipe on the shown documents (their
  true attraction probabilities as labels) and on all documents (true graded labels). Mean +-
  std over ``--seeds`` click samples; the training seed is 0; the recipe's ``clip`` (0.01) floors
  every propensity. Each table's heading gives the share of impressions whose true propensity
  is below the clip: under DBN (satisfaction = attraction) a top-grade document ends every
  session, so the slots below it are never examined (propensity 0, logged as 1e-6) and never
  clicked; no propensity, true or estimated, recovers their relevance (IPS needs ``p > 0``), and
  IPS and naive see the same zeros there.

The logging policy is a fixed linear scorer (the sum of the features, 46 on MQ2008); labels are
mapped to attraction with the graded mapping (``epsilon_minus = 0.1``).

Usage: ``python benchmarks/bench_clicks.py [--sessions 10000,100000,1000000] [--ultr-sessions 10000,100000,1000000]
[--ultr-data mq2008,synthetic] [--ultr-model recipe|linear|mlp] [--seeds 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mq2008" / "Fold1" / "train.txt"
VALI = DATA.with_name("vali.txt")
TEST = DATA.with_name("test.txt")
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "clicks.json"


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(args: argparse.Namespace, dataset, scores) -> None:
    from ltrkit.clicks.models import DBN, PBM, CascadeModel
    from ltrkit.clicks.simulate import simulate_sessions, write_simulation
    from ltrkit.clicks.spec import load_click_spec

    s, k = args.throughput_sessions, 10
    attraction = np.random.default_rng(0).random((s, k))
    print(f"\n## throughput (impressions/s, best of {args.repeat}; {s:,} sessions x {k} ranks; {args.threads} thread(s))\n")
    print("| what | PBM | cascade | DBN |")
    print("| --- | ---: | ---: | ---: |")
    row = []
    for model in (PBM(), CascadeModel(), DBN(0.9)):
        seconds = best_of(args.repeat, lambda: model.simulate(attraction, seed=1))
        row.append(f"{s * k / seconds:,.0f}")
    print("| model.simulate on [S, K] arrays | " + " | ".join(row) + " |")

    def pipeline(name: str) -> Callable[[], object]:
        behaviour = load_click_spec(name)
        return lambda: sum(int(c.sessions.mask.sum()) for c in simulate_sessions(
            dataset, scores, behaviour, sessions=s, top_k=k, seed=2, intervention="topk_shuffle"))

    impressions = pipeline("pbm")()
    row = [f"{impressions / best_of(args.repeat, pipeline(name)):,.0f}" for name in ("pbm", "cascade", "dbn")]
    print("| pipeline on MQ2008 (rank, sample, RandTop-10, click), no I/O | " + " | ".join(row) + " |")
    row = []
    with tempfile.TemporaryDirectory() as folder:
        # warm-up: the first write imports pyarrow's Parquet writer
        write_simulation(folder, dataset, scores, load_click_spec("pbm"), sessions=100, top_k=k, seed=2)
        for name in ("pbm", "cascade", "dbn"):
            behaviour = load_click_spec(name)
            seconds = best_of(1, lambda: write_simulation(folder, dataset, scores, behaviour, sessions=s, top_k=k, seed=2,
                                                          intervention="topk_shuffle"))
            row.append(f"{impressions / seconds:,.0f}")
    print("| pipeline + Parquet log + training set written | " + " | ".join(row) + " |")


def _stats(values: List[float]) -> str:
    return f"{np.mean(values):.4f} +- {np.std(values):.4f}"


def recovery(args: argparse.Namespace, dataset, scores) -> None:
    from ltrkit.clicks.models import PBM, UBM
    from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em
    from ltrkit.clicks.simulate import simulate_log
    from ltrkit.clicks.spec import load_click_spec

    k = 10
    truth = 1.0 / np.arange(1, k + 1)
    ubm_truth = UBM(eta=1.0).gamma_table(k)
    sizes = [int(float(x)) for x in args.sessions.split(",")]
    print(f"\n## recovery: max |estimate - truth| of relative propensities ({args.seeds} seeds, mean +- std; EM <= 100 iterations)\n")
    print("| sessions | PBM EM (RandTop-10) | randomisation (RandTop-10) | UBM EM (RandTop-10) | regression EM (no intervention) | PBM EM (no intervention) | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        errors: Dict[str, List[float]] = {key: [] for key in ("pbm", "rand", "ubm", "regem", "naive")}
        start = time.perf_counter()
        for seed in range(args.seeds):
            shuffled, _ = simulate_log(dataset, scores, load_click_spec("pbm"), sessions=n, top_k=k, seed=seed, intervention="topk_shuffle")
            errors["pbm"].append(float(np.abs(PBM().fit(shuffled).relative_propensities_ - truth).max()))
            errors["rand"].append(float(np.abs(estimate_by_randomization(shuffled) - truth).max()))
            del shuffled
            ubm_log, _ = simulate_log(dataset, scores, load_click_spec("ubm"), sessions=n, top_k=k, seed=seed, intervention="topk_shuffle")
            fitted = UBM().fit(ubm_log)
            previous = np.concatenate([np.zeros((n, 1), int), np.maximum.accumulate(
                np.where(ubm_log.clicks, np.arange(1, k + 1), 0), axis=1)[:, :-1]], axis=1)
            counts = np.zeros((k, k))
            np.add.at(counts, (np.broadcast_to(np.arange(k), (n, k))[ubm_log.mask], previous[ubm_log.mask]), 1)
            cells = counts >= 100
            errors["ubm"].append(float(np.abs(fitted.gamma_ / fitted.gamma_[0, 0] - ubm_truth)[cells].max()))
            del ubm_log
            plain, _ = simulate_log(dataset, scores, load_click_spec("pbm"), sessions=n, top_k=k, seed=seed, intervention="none")
            estimate, _ = estimate_by_regression_em(plain, dataset.features)
            errors["regem"].append(float(np.abs(estimate - truth).max()))
            errors["naive"].append(float(np.abs(PBM().fit(plain).relative_propensities_ - truth).max()))
            del plain
        seconds = time.perf_counter() - start
        print(f"| {n:,} | " + " | ".join(_stats(errors[key]) for key in ("pbm", "rand", "ubm", "regem", "naive")) + f" | {seconds:.0f} |")


def _write_log(path: Path, dataset, scores, behaviour, n: int, seed: int, intervention: str) -> Path:
    """Simulate ``n`` sessions of the logging policy's top 10 and stream them to the Parquet log ``path``."""
    from ltrkit.clicks.log import ClickLogWriter
    from ltrkit.clicks.simulate import simulate_sessions

    with ClickLogWriter(path, dataset, propensities=True) as writer:
        for chunk in simulate_sessions(dataset, scores, behaviour, sessions=n, top_k=10, seed=seed, intervention=intervention):
            writer.write(chunk.first_session, chunk.sessions, chunk.scores)
    return path


def _ultr_datasets(names: List[str]):
    """``(name, {"train", "vali", "test"})`` of ``names``: ``mq2008`` (Fold1) and ``synthetic`` (the built-in data)."""
    from ltrkit.data.cache import load_dataset
    from ltrkit.data.synthetic import generate_splits

    if "mq2008" in names:
        yield "MQ2008 Fold1", {"train": load_dataset(DATA), "vali": load_dataset(VALI), "test": load_dataset(TEST)}
    if "synthetic" in names:
        yield "synthetic (1,500 train / 300 vali / 300 test queries)", generate_splits(train_queries=1500, vali_queries=300, test_queries=300, seed=0)


def _recipe(args: argparse.Namespace, folder: str, name: str) -> Dict[str, object]:
    """The training recipe of every cell: ``configs/clicks.json`` (its data paths dropped: the
    splits are passed in memory), the model of ``--ultr-model``, one thread, a run folder in ``folder``."""
    from ltrkit.training.config import read_config_file

    recipe = read_config_file(RECIPE)
    recipe["data"] = {key: value for key, value in recipe["data"].items() if key not in ("train", "vali", "test")}
    if args.ultr_model != "recipe":
        recipe["model"] = {"name": args.ultr_model}
    recipe["num_threads"] = args.threads
    recipe["evaluation"] = {**recipe.get("evaluation", {}), "baselines": False}
    recipe["output"] = {"dir": folder, "name": name, "tensorboard": False, "plots": False}
    return recipe


def _test_ndcg10(result) -> float:
    return float(result.metrics["test"]["ndcg@10"])


def _full_information(args: argparse.Namespace, folder: str, splits, labels: np.ndarray, shown: Optional[np.ndarray] = None) -> float:
    """Test NDCG@10 of the recipe trained on labels (the same loop, a ranking run): ``labels`` of
    every training document, or of the ``shown`` rows ``[Q, K]`` only."""
    import ltrkit
    from ltrkit.data.dataset import RankingDataset

    train = splits["train"]
    rows = np.arange(train.n_docs) if shown is None else shown[shown >= 0]
    offsets = train.query_offsets if shown is None else np.r_[0, np.cumsum((shown >= 0).sum(axis=1))]
    subset = RankingDataset(np.asarray(train.features)[rows], np.asarray(labels, dtype=np.float32)[rows], offsets, train.qids, source=train.source)
    recipe = _recipe(args, folder, "full-all" if shown is None else "full-shown")
    del recipe["data"]["train_clicks"]
    # attraction probabilities are below the default relevance threshold 1: keep every query
    recipe["data"]["drop_train_queries_without_relevant"] = shown is None
    return _test_ndcg10(ltrkit.train(recipe, datasets={**splits, "train": subset}, overwrite=True))


def ultr(args: argparse.Namespace) -> None:
    from ltrkit.clicks.simulate import logging_ranking, simulate_log
    from ltrkit.clicks.spec import load_click_spec
    from ltrkit.clicks.task import train_on_clicks

    sizes = [int(float(v)) for v in args.ultr_sessions.split(",")]
    methods = ("none", "logged", "regression_em", "randomization", "dla", "pairs")
    print(f"\n## unbiased LTR: ltrkit's click training (recipe {RECIPE.name}, model {args.ultr_model}), test NDCG@10\n")
    for data_name, splits in _ultr_datasets(args.ultr_data.split(",")):
        train = splits["train"]
        scores = np.asarray(train.features, dtype=np.float64).sum(axis=1)
        shown = logging_ranking(train, scores, 10)
        with tempfile.TemporaryDirectory() as folder:
            all_full = _full_information(args, folder, splits, train.labels)
            for model in ("pbm", "dbn"):
                behaviour = load_click_spec(model).with_max_grade(float(np.max(train.labels)))
                shown_full = _full_information(args, folder, splits, behaviour.attraction(np.asarray(train.labels)), shown)
                probe, _ = simulate_log(train, scores, behaviour, sessions=10_000, top_k=10, seed=0)
                clip = _recipe(args, folder, "probe")["data"]["train_clicks"]["clip"]
                unreachable = float(((probe.propensities < clip) & probe.mask).sum() / probe.mask.sum())
                print(f"\n### {data_name}, {model.upper()} clicks on the top 10 ({args.seeds} seeds, mean +- std; "
                      f"{unreachable:.1%} of the impressions have a true propensity below the clip {clip:g})\n")
                print("| sessions | naive clicks | IPS, true propensities | IPS, regression EM | IPS, randomisation (RandTop-10 log) "
                      "| DLA | skip-above pairs, RankNet | full info, shown top 10 | full info, all documents | seconds |")
                print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for n in sizes:
                    started = time.perf_counter()
                    results: Dict[str, List[float]] = {method: [] for method in methods}
                    for seed in range(args.seeds):
                        log = _write_log(Path(folder) / "clicks.parquet", train, scores, behaviour, n, seed, "none")
                        shuffled = _write_log(Path(folder) / "shuffled.parquet", train, scores, behaviour, n, 1000 + seed, "topk_shuffle")
                        for method in methods:
                            recipe = _recipe(args, folder, method)
                            if method == "pairs":
                                clicks = {"log": str(log), "propensities": "none", "pairs": "skip_above"}
                                recipe["loss"] = {"name": "ranknet"}
                            else:
                                clicks = {"log": str(log), "propensities": method, "propensity_log": str(shuffled) if method == "randomization" else None}
                            recipe["data"]["train_clicks"] = {**recipe["data"].get("train_clicks", {}), **clicks}
                            results[method].append(_test_ndcg10(train_on_clicks(recipe, datasets=splits, overwrite=True)))
                    cells = " | ".join(_stats(values) for values in results.values())
                    print(f"| {n:,} | {cells} | {shown_full:.4f} | {all_full:.4f} | {time.perf_counter() - started:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000,100000,1000000", help="comma-separated session counts for the recovery table")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--throughput-sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    # one thread by default: numpy's BLAS threads only wait for a core on a shared 2-core machine
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (OpenBLAS/MKL/OMP)")
    parser.add_argument("--ultr-sessions", default="10000,100000,1000000", help="comma-separated session counts for the unbiased-LTR table ('' to skip)")
    parser.add_argument("--ultr-data", default="mq2008,synthetic", help="comma-separated data sets of the unbiased-LTR table")
    parser.add_argument("--ultr-model", default="recipe", help="scorer of the unbiased-LTR runs: recipe (configs/clicks.json's), linear, mlp, ...")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    from ltrkit.data.cache import load_dataset

    dataset = load_dataset(DATA)
    scores = np.asarray(dataset.features, dtype=np.float64).sum(axis=1)
    print(f"data: {DATA.resolve()} ({dataset.n_queries} queries, {dataset.n_docs} documents)")
    if not args.skip_throughput:
        throughput(args, dataset, scores)
    if not args.skip_recovery:
        recovery(args, dataset, scores)
    if args.ultr_sessions:
        ultr(args)


if __name__ == "__main__":
    main()
