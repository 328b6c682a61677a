"""Triplet mining + loss (forward and backward) vs pytorch-metric-learning, and retrieval metrics
over 100k x 100k similarities in chunks.

Part 1, same inputs for both libraries (random ``[N, 64]`` embeddings, ``N / 8`` classes), where
the definitions coincide, values checked equal (1e-5 relative) before timing:

* ``batch_all``: ``batch_triplet_loss(mining="batch_all")`` (mean over positive-loss triplets)
  vs PML's ``TripletMarginLoss`` without a miner (``AvgNonZeroReducer``). ltrkit's batch-all
  holds ``[N, N, N]`` tensors (documented), so it runs at N = 256 only (N = 1024 needs ~16 GB).
* ``batch_hard``: ``batch_triplet_loss(mining="batch_hard", reduction="sum")`` vs PML's
  ``BatchHardMiner`` + ``TripletMarginLoss(reducer=SumReducer())``.

Part 2: :func:`ltrkit.embeddings.retrieval.retrieval_metrics` on ``--items`` items (every item a
query over all the others; 1,000 classes; recall@1, recall@10, map, mrr, ndcg@10) exactly, in
chunks, vs the generic list-metric path (``ltrkit.metrics.compute_metrics`` on the same
``[chunk, N]`` blocks), timed on ``--sample`` queries and scaled up.

Usage: ``python benchmarks/bench_embeddings.py [--items 100000] [--threads 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def mining_table(repeat: int) -> None:
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import SumReducer

    from ltrkit.losses.embedding import batch_triplet_loss

    distance = LpDistance(normalize_embeddings=False)
    print(f"{'mining':<11} {'N':>5} {'ltrkit ms':>10} {'PML ms':>10} {'PML/ltrkit':>11}  value")
    for mining, sizes in (("batch_all", (256,)), ("batch_hard", (256, 1024, 4096))):
        for n in sizes:
            generator = torch.Generator().manual_seed(n)
            embeddings = torch.randn(n, 64, generator=generator)
            classes = torch.randint(0, n // 8, (n,), generator=generator)

            def ours() -> float:
                x = embeddings.clone().requires_grad_(True)
                if mining == "batch_all":
                    loss = batch_triplet_loss(x, classes, mining="batch_all", margin=0.2)
                else:
                    loss = batch_triplet_loss(x, classes, mining="batch_hard", margin=0.2, reduction="sum")
                loss.backward()
                return float(loss.detach())

            def theirs() -> float:
                x = embeddings.clone().requires_grad_(True)
                if mining == "batch_all":
                    loss = losses.TripletMarginLoss(margin=0.2, distance=distance)(x, classes)
                else:
                    triplets = miners.BatchHardMiner(distance=distance)(x, classes)
                    loss = losses.TripletMarginLoss(margin=0.2, distance=distance, reducer=SumReducer())(x, classes, triplets)
                loss.backward()
                return float(loss.detach())

            ours_s, ours_value = best_of(repeat, ours)
            theirs_s, theirs_value = best_of(repeat, theirs)
            if abs(ours_value - theirs_value) > 1e-5 * max(abs(theirs_value), 1.0):
                raise SystemExit(f"{mining} N={n}: ltrkit {ours_value} != PML {theirs_value}")
            print(f"{mining:<11} {n:>5} {ours_s * 1e3:>10.1f} {theirs_s * 1e3:>10.1f} {theirs_s / ours_s:>11.2f}  {ours_value:.6g}")


def retrieval_table(items: int, sample: int) -> None:
    from ltrkit.embeddings.retrieval import retrieval_metrics, similarity
    from ltrkit.metrics import compute_metrics

    metrics = ["recall@1", "recall@10", "map", "mrr", "ndcg@10"]
    generator = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 1000, (items,), generator=generator)
    centres = torch.randn(1000, 64, generator=generator)
    embeddings = centres[classes] + 1.5 * torch.randn(items, 64, generator=generator)

    start = time.perf_counter()
    result = retrieval_metrics(embeddings, classes, metrics)
    ours_s = time.perf_counter() - start

    # the generic path on the first `sample` queries, the same chunking, self masked out
    chunk = max(1, (1 << 24) // items)
    start = time.perf_counter()
    for begin in range(0, sample, chunk):
        stop = min(begin + chunk, sample)
        scores = similarity(embeddings[begin:stop], embeddings)
        labels = (classes[begin:stop, None] == classes[None, :]).float()
        mask = torch.ones_like(labels, dtype=torch.bool)
        mask[torch.arange(stop - begin), torch.arange(begin, stop)] = False
        compute_metrics(scores, labels, mask, metrics)
    generic_s = (time.perf_counter() - start) * items / sample
    means = ", ".join(f"{name} {value:.4f}" for name, value in result.means.items())
    print(f"\nretrieval metrics, {items:,} x {items:,} similarities, chunks of {chunk} queries")
    print(f"  ltrkit.embeddings.retrieval_metrics: {ours_s:8.1f} s  ({items / ours_s:,.0f} queries/s)  {means}")
    print(f"  generic compute_metrics (scaled from {sample:,} queries): {generic_s:8.1f} s  ratio generic/ours {generic_s / ours_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000, help="queries the generic path is timed on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    mining_table(args.repeat)
    retrieval_table(args.items, args.sample)


if __name__ == "__main__":
    main()
