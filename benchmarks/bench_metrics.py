"""NDCG@10 and MAP over 30,000 queries x 120 documents: ltrkit vs ranx vs pytrec_eval.

Random graded labels (0-4) and random distinct scores (a random permutation per query), the same data for every library, one run.
Two timings per library, reported separately:

* ``metric``: the computation alone, on inputs already in the library's own form (ltrkit:
  padded torch tensors; ranx: ``Qrels``/``Run`` objects, after a warm-up call that JIT-compiles
  its numba kernels; pytrec_eval: a ``RelevanceEvaluator`` built from the qrels dict and the run
  dict) and including the mean over queries;
* ``end-to-end``: from flat numpy arrays (labels, scores, query offsets) to per-query values and
  means, including building the inputs each library needs (ltrkit: ``evaluate_dataset`` with its
  per-query dict; ranx/pytrec_eval: the nested dicts, ``Qrels``/``Run`` or the evaluator).

Every timing is the best of ``--repeat`` runs. Gains are linear (trec_eval's and ranx's
``ndcg``), and the three libraries' means are checked to agree before any figure is printed.

Usage: ``python benchmarks/bench_metrics.py [--queries 30000] [--docs 120] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import numpy as np


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30_000)
    parser.add_argument("--docs", type=int, default=120)
    # one thread each by default: pytrec_eval is single-threaded, and on a shared 2-core machine a
    # second thread mostly waits for a core (measured: torch with 2 threads was 2x slower here)
    parser.add_argument("--threads", type=int, default=1, help="torch and numba (ranx) threads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    # numba reads its thread count at import: set it before ranx is imported
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    import pytrec_eval
    import ranx
    import torch

    from ltrkit.data.dataset import RankingDataset
    from ltrkit.metrics.evaluation import compute_metrics, evaluate_dataset

    torch.set_num_threads(args.threads)
    n_q, n_d = args.queries, args.docs
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(n_q, n_d)).astype(np.float32)
    # distinct scores within each query, exact in float32: ties are ranked by input order in ltrkit
    # and ranx but by document id in trec_eval, which also rounds scores to float32
    scores = np.argsort(rng.random((n_q, n_d)), axis=1).astype(np.float64) / n_d
    offsets = np.arange(0, n_q * n_d + 1, n_d, dtype=np.int64)
    qids = np.array([f"q{i}" for i in range(n_q)])
    doc_names = [f"d{j}" for j in range(n_d)]
    metrics = ["ndcg@10", "map"]
    print(f"{n_q:,} queries x {n_d} documents, labels 0-4, metrics {metrics}, linear gain; "
          f"torch threads {torch.get_num_threads()}, numba threads {os.environ['NUMBA_NUM_THREADS']}, "
          f"best of {args.repeat}")

    # ltrkit
    scores_t, labels_t = torch.from_numpy(scores), torch.from_numpy(labels)

    def ltrkit_metric():
        values = compute_metrics(scores_t, labels_t, None, metrics, gain="linear")
        return {name: float(v.mean()) for name, v in values.items()}

    dataset = RankingDataset(np.zeros((n_q * n_d, 0), np.float32), labels.reshape(-1), offsets, qids, source="bench")

    def ltrkit_e2e():
        return evaluate_dataset(dataset, scores.reshape(-1), metrics, gain="linear", batch_size=4096).mean

    ltrkit_metric()  # first-call overheads (allocator, lazy imports) out of the timing
    t_ltr_metric, ltr_means = best_of(args.repeat, ltrkit_metric)
    t_ltr_e2e, ltr_means_e2e = best_of(args.repeat, ltrkit_e2e)

    # nested dicts, as ranx and pytrec_eval take them
    def build_dicts():
        qrels = {q: dict(zip(doc_names, map(int, row))) for q, row in zip(qids.tolist(), labels.tolist())}
        run = {q: dict(zip(doc_names, row)) for q, row in zip(qids.tolist(), scores.tolist())}
        return qrels, run

    t_dicts, (qrels_dict, run_dict) = best_of(1, build_dicts)

    # ranx
    ranx_names = ["ndcg@10", "map"]
    qrels_r, run_r = ranx.Qrels(qrels_dict), ranx.Run(run_dict)
    start = time.perf_counter()
    ranx.evaluate(qrels_r, run_r, ranx_names)
    t_ranx_jit = time.perf_counter() - start

    def ranx_metric():
        return ranx.evaluate(qrels_r, run_r, ranx_names)

    def ranx_e2e():
        qrels, run = build_dicts()
        return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ranx_names)

    t_ranx_metric, ranx_means = best_of(args.repeat, ranx_metric)
    t_ranx_e2e, _ = best_of(args.repeat, ranx_e2e)

    # pytrec_eval
    evaluator = pytrec_eval.RelevanceEvaluator(qrels_dict, {"ndcg_cut.10", "map"})

    def pytrec_means(per_query: dict) -> dict[str, float]:
        return {
            "ndcg@10": float(np.mean([v["ndcg_cut_10"] for v in per_query.values()])),
            "map": float(np.mean([v["map"] for v in per_query.values()])),
        }

    def pytrec_metric():
        return pytrec_means(evaluator.evaluate(run_dict))

    def pytrec_e2e():
        qrels, run = build_dicts()
        return pytrec_means(pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map"}).evaluate(run))

    t_trec_metric, trec_means = best_of(args.repeat, pytrec_metric)
    t_trec_e2e, _ = best_of(args.repeat, pytrec_e2e)

    for name in metrics:
        ranx_value = float(ranx_means[name])
        diffs = [abs(ltr_means[name] - trec_means[name]), abs(ltr_means[name] - ranx_value), abs(ltr_means_e2e[name] - trec_means[name])]
        if max(diffs) > 1e-9:
            raise SystemExit(f"disagreement on {name}: ltrkit {ltr_means[name]} pytrec_eval {trec_means[name]} ranx {ranx_value}")
        print(f"  {name}: ltrkit {ltr_means[name]:.10f}  pytrec_eval {trec_means[name]:.10f}  ranx {ranx_value:.10f}  (max |diff| {max(diffs):.1e})")

    print(f"  building the nested dicts ranx/pytrec_eval take: {t_dicts:.3f} s; ranx first call (numba JIT): {t_ranx_jit:.3f} s")
    print(f"{'library':<14}{'metric s':>10}{'end-to-end s':>14}{'metric ratio':>14}{'e2e ratio':>11}")
    rows = [("ltrkit", t_ltr_metric, t_ltr_e2e), ("ranx", t_ranx_metric, t_ranx_e2e), ("pytrec_eval", t_trec_metric, t_trec_e2e)]
    for name, metric_s, e2e_s in rows:
        print(f"{name:<14}{metric_s:>10.3f}{e2e_s:>14.3f}{metric_s / t_ltr_metric:>13.1f}x{e2e_s / t_ltr_e2e:>10.1f}x")
    print("ratios: time / ltrkit's time (higher = ltrkit faster)")


if __name__ == "__main__":
    main()
