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

* **unbiased LTR** (``--ultr-sessions``): test NDCG@10 (true labels, exp2 gain, queries without
  a relevant document score 0) on MQ2008 Fold1 and on the built-in synthetic data (features
  z-scored on train) of a linear scorer trained with the softmax loss on PBM or DBN clicks of the
  logging policy's top 10 (no intervention): naive (click-through
  rates as labels), IPS with the true propensities (the simulator's examination probability of
  each shown slot; for DBN it depends on the documents above), IPS with regression-EM propensities
  estimated from the same log (both estimators assume PBM, so they are misspecified for DBN
  clicks), IPS with randomisation propensities estimated from an equally
  large RandTop-10 log, and DLA (the ranker trained jointly with one propensity logit per rank,
  Ai et al. 2018, inverse weights capped at 10); next to full information on the same shown documents (their true
  attraction probabilities as labels) and on all documents (true graded labels). Without an
  intervention every session of a query shows the same list, so the sessions of a query sum to
  one list whose labels are the mean clicks (IPS: mean clicks / propensity): the same loss and
  gradient as one list per session, divided by the session count. Mean +- std over ``--seeds``
  click samples; the training itself is deterministic (full batch, Adam, 300 steps, seed 0).

The logging policy is a fixed linear scorer (the sum of the 46 MQ2008 features); labels are
mapped to attraction with the graded mapping (``epsilon_minus = 0.1``).

Usage: ``python benchmarks/bench_clicks.py [--sessions 10000,100000,1000000] [--ultr-sessions 10000,100000,1000000]
[--seeds 2] [--threads 1]``
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
TEST = DATA.with_name("test.txt")


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


def _train_linear(features, labels, mask, propensities=None, steps: int = 300, dla: bool = False) -> "object":
    """A linear scorer fitted by full-batch Adam on the (IPS) softmax loss, or jointly with one
    propensity logit per rank on the DLA loss; returns the scorer."""
    import torch

    from ltrkit.clicks.unbiased import dla_loss, ips_softmax_loss
    from ltrkit.losses.listwise import softmax_loss

    torch.manual_seed(0)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    m = torch.as_tensor(mask)
    model = torch.nn.Linear(x.shape[-1], 1)
    logits = torch.zeros(x.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([*model.parameters(), logits], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        scores = model(x).squeeze(-1)
        if dla:
            loss = dla_loss(scores, y, m, propensity_logits=logits)
        elif propensities is None:
            loss = softmax_loss(scores, y, m)
        else:
            loss = ips_softmax_loss(scores, y, m, propensities=torch.tensor(np.array(propensities), dtype=torch.float32))
        loss.backward()
        optimizer.step()
    return model


def _ndcg10(model, test) -> float:
    import torch

    from ltrkit.metrics.evaluation import evaluate_dataset

    with torch.no_grad():
        scores = model(torch.tensor(np.array(test.features), dtype=torch.float32)).squeeze(-1).numpy()
    return float(evaluate_dataset(test, scores, ["ndcg@10"]).mean["ndcg@10"])


def _click_rates(dataset, scores, behaviour, n: int, seed: int, intervention: str):
    """Per logging-policy slot ``[Q, K]``: mean clicks and mean true propensity over each query's
    sessions, and the sessions (for EM)."""
    from ltrkit.clicks.simulate import logging_ranking, simulate_log

    shown = logging_ranking(dataset, scores, 10)
    sessions, _ = simulate_log(dataset, scores, behaviour, sessions=n, top_k=10, seed=seed, intervention=intervention)
    m = sessions.mask
    slot = np.where(m, sessions.logging_ranks - 1, 0)
    where = (np.broadcast_to(sessions.queries[:, None], slot.shape)[m], slot[m])
    clicks, propensities = np.zeros(shown.shape), np.zeros(shown.shape)
    np.add.at(clicks, where, sessions.clicks[m])
    np.add.at(propensities, where, sessions.propensities[m])
    per_query = np.maximum(np.bincount(sessions.queries, minlength=shown.shape[0])[:, None], 1)
    return clicks / per_query, propensities / per_query, sessions


def _ultr_datasets():
    """``(name, train, test, logging scores)``: MQ2008 Fold1 and the built-in synthetic data, z-scored on train."""
    from ltrkit.data.cache import load_dataset
    from ltrkit.data.synthetic import generate_splits
    from ltrkit.data.transforms import Normalizer

    synthetic = generate_splits(train_queries=1500, vali_queries=1, test_queries=300, seed=0)
    for name, train, test in (("MQ2008 Fold1", load_dataset(DATA), load_dataset(TEST)),
                              ("synthetic (1,500 train / 300 test queries)", synthetic["train"], synthetic["test"])):
        normalizer = Normalizer("zscore").fit(train)
        train, test = normalizer.transform(train), normalizer.transform(test)
        yield name, train, test, np.asarray(train.features, dtype=np.float64).sum(axis=1)


def ultr(args: argparse.Namespace) -> None:
    from ltrkit.clicks.propensity import estimate_by_randomization, estimate_by_regression_em
    from ltrkit.clicks.simulate import logging_ranking
    from ltrkit.clicks.spec import load_click_spec
    from ltrkit.data.dataset import pad_ragged

    sizes = [int(float(v)) for v in args.ultr_sessions.split(",")]
    for data_name, dataset, test, scores in _ultr_datasets():
        shown = logging_ranking(dataset, scores, 10)
        mask = shown >= 0
        rows = np.where(mask, shown, 0)
        x = np.where(mask[:, :, None], np.asarray(dataset.features)[rows], 0.0)
        all_x, all_mask = pad_ragged(np.asarray(dataset.features), dataset.query_offsets)
        all_y, _ = pad_ragged(np.asarray(dataset.labels), dataset.query_offsets)
        all_full = _ndcg10(_train_linear(all_x, all_y, all_mask), test)
        for model in ("pbm", "dbn"):
            behaviour = load_click_spec(model).with_max_grade(float(np.max(dataset.labels)))
            # full information on the shown documents: their true attraction probabilities
            attraction = behaviour.attraction(np.asarray(dataset.labels))
            shown_full = _ndcg10(_train_linear(x, np.where(mask, attraction[rows], 0.0), mask), test)
            print(f"\n## unbiased LTR, {data_name}, {model.upper()} clicks on the top 10: test NDCG@10 ({args.seeds} seeds)\n")
            print("| sessions | naive clicks | IPS, true propensities | IPS, regression EM | IPS, randomisation (RandTop-10 log) "
                  "| DLA | full info, shown top 10 | full info, all documents |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for n in sizes:
                results = {key: [] for key in ("naive", "true", "regem", "rand", "dla")}
                for seed in range(args.seeds):
                    ctr, true_p, sessions = _click_rates(dataset, scores, behaviour, n, seed, "none")
                    ctr = np.where(mask, ctr, 0.0)
                    estimated, _ = estimate_by_regression_em(sessions, dataset.features)
                    del sessions
                    randomised = estimate_by_randomization(_click_rates(dataset, scores, behaviour, n, 1000 + seed, "topk_shuffle")[2])
                    results["naive"].append(_ndcg10(_train_linear(x, ctr, mask), test))
                    # slots never shown in a sample keep propensity 1 (they carry no click)
                    true_p = np.where(mask & (true_p > 0), true_p, 1.0)
                    for key, p in (("true", true_p), ("regem", estimated), ("rand", randomised)):
                        p = np.clip(np.broadcast_to(p, shown.shape), 1e-3, 1.0)
                        results[key].append(_ndcg10(_train_linear(x, ctr, mask, p), test))
                    results["dla"].append(_ndcg10(_train_linear(x, ctr, mask, dla=True), test))
                cells = " | ".join(f"{np.mean(v):.4f} +- {np.std(v):.4f}" for v in results.values())
                print(f"| {n:,} | {cells} | {shown_full:.4f} | {all_full:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000,100000,1000000", help="comma-separated session counts for the recovery table")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--throughput-sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    # one thread by default: numpy's BLAS threads only wait for a core on a shared 2-core machine
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (OpenBLAS/MKL/OMP)")
    parser.add_argument("--ultr-sessions", default="10000,100000,1000000", help="comma-separated session counts for the unbiased-LTR table ('' to skip)")
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
