"""Click simulation throughput and click-model parameter recovery versus the number of sessions.

Two tables:

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

The logging policy is a fixed linear scorer (the sum of the 46 MQ2008 features); labels are
mapped to attraction with the graded mapping (``epsilon_minus = 0.1``).

Usage: ``python benchmarks/bench_clicks.py [--sessions 10000,100000,1000000] [--seeds 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mq2008" / "Fold1" / "train.txt"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000,100000,1000000", help="comma-separated session counts for the recovery table")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--throughput-sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    # one thread by default: numpy's BLAS threads only wait for a core on a shared 2-core machine
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (OpenBLAS/MKL/OMP)")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    from ltrkit.data.cache import load_dataset

    dataset = load_dataset(DATA)
    scores = np.asarray(dataset.features, dtype=np.float64).sum(axis=1)
    print(f"data: {DATA.resolve()} ({dataset.n_queries} queries, {dataset.n_docs} documents)")
    throughput(args, dataset, scores)
    if not args.skip_recovery:
        recovery(args, dataset, scores)


if __name__ == "__main__":
    main()
