"""Triplet mining + loss (forward and backward) vs pytorch-metric-learning, and retrieval metrics
over 100k x 100k similarities in chunks.

Part 1, same inputs for both libraries (random ``[N, 64]`` float32 embeddings, ``N / 8`` classes,
margin 0.2) at N = 256, 1024, 4096, where the definitions coincide, the values checked equal
(1e-5 relative) in the run:

=============  =============================================  ============================================
row            ltrkit                                         pytorch-metric-learning
=============  =============================================  ============================================
batch_all      ``batch_triplet_loss(mining="batch_all")``     ``TripletMarginMiner("all")`` +
               (mean over positive-loss triplets)             ``TripletMarginLoss`` (``AvgNonZeroReducer``)
batch_hard     ``batch_triplet_loss(mining="batch_hard",      ``BatchHardMiner`` +
               reduction="sum")``                             ``TripletMarginLoss(reducer=SumReducer())``
semi_hard      ``batch_triplet_loss(mining="semi_hard")``     none (PML's "semihard" keeps other triplets)
=============  =============================================  ============================================

Each (library, row, N, threads) runs in a fresh subprocess: one warm-up, then the best of
``--repeat`` timed runs of ``loss(embeddings, classes).backward()``, and the peak RSS delta of
those runs (``VmHWM`` after a ``/proc/self/clear_refs`` reset, minus RSS before), which sees
torch's CPU allocations. PML's batch-all lists every triplet (at N = 4096: 117 million, a few
GB); a case whose estimated footprint exceeds ``--memory-guard-gib`` is reported as skipped.

Part 2: :func:`ltrkit.embeddings.retrieval.retrieval_metrics` on ``--items`` items (every item a
query over all the others; 1,000 classes; recall@1, recall@10, map, mrr, ndcg@10) exactly, in
chunks, vs the generic list-metric path (``ltrkit.metrics.compute_metrics`` on the same
``[chunk, N]`` blocks), timed on ``--sample`` queries and scaled up.

Usage: ``python benchmarks/bench_embeddings.py [--rows batch_all ...] [--sizes 256 ...] [--threads 1 2] [--repeat 3] [--items 100000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from _memory import reset_peak_rss, rss_kib  # benchmarks/, the script's folder

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("batch_all", "batch_hard", "semi_hard")
SIZES = (256, 1024, 4096)
MARGIN = 0.2


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return torch.randn(n, 64, generator=generator), torch.randint(0, n // 8, (n,), generator=generator)


def _loss_fn(lib: str, row: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if lib == "ltrkit":
        from ltrkit.losses.embedding import batch_triplet_loss

        reduction = "sum" if row == "batch_hard" else "mean"
        return lambda x, classes: batch_triplet_loss(x, classes, mining=row, margin=MARGIN, reduction=reduction)
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import SumReducer

    distance = LpDistance(normalize_embeddings=False)
    if row == "batch_all":
        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="all", distance=distance)
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance)
    else:
        miner = miners.BatchHardMiner(distance=distance)
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=distance, reducer=SumReducer())
    return lambda x, classes: loss(x, classes, miner(x, classes))


def worker(lib: str, row: str, n: int, threads: int, repeat: int) -> None:
    """Measure one case and print a JSON line: best time, peak RSS delta, loss value."""
    torch.set_num_threads(threads)
    fn = _loss_fn(lib, row)
    embeddings, classes = _inputs(n)
    fn(embeddings.clone().requires_grad_(True), classes).backward()  # warm-up
    before = rss_kib("VmRSS")
    reset_peak_rss()

    def run() -> float:
        x = embeddings.clone().requires_grad_(True)
        loss = fn(x, classes)
        loss.backward()
        return float(loss.detach())

    seconds, value = best_of(repeat, run)
    print(json.dumps({"ms": 1000 * seconds, "peak_mib": max(rss_kib("VmHWM") - before, 0) / 1024, "value": value}))


def _estimate_gib(lib: str, row: str, n: int) -> float:
    """Rough footprint: PML's batch-all holds ~7 int64/float tensors over every triplet (and an
    [N, N, N] uint8 mask below 2^31 elements); the rest stays a few [N, N] tensors."""
    if lib == "pml" and row == "batch_all":
        classes = _inputs(n)[1]
        sizes = torch.bincount(classes).double()
        triplets = float((sizes * (sizes - 1) * (n - sizes)).sum())
        return (56 * triplets + (n**3 if n**3 < 2**31 else 0)) / 2**30
    return 24 * n * n * 4 / 2**30


def measure(lib: str, row: str, n: int, threads: int, args: argparse.Namespace) -> Dict[str, object]:
    estimate = _estimate_gib(lib, row, n)
    if estimate > args.memory_guard_gib:
        return {"note": f"skip:~{estimate:.0f}GiB"}
    command = [sys.executable, __file__, "--worker", lib, row, str(n), str(threads), str(args.repeat)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"note": "too slow"}
    if done.returncode != 0:
        if done.returncode < 0 or "MemoryError" in done.stderr or "can't allocate" in done.stderr:
            return {"note": "OOM"}
        return {"note": f"error: {(done.stderr.strip().splitlines() or ['no output'])[-1][:60]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def mining_table(args: argparse.Namespace) -> None:
    print(f"{'row':<10} {'N':>5} {'thr':>3} {'ltrkit ms':>10} {'PML ms':>10} {'PML/ltrkit':>10} {'ltrkit MiB':>10} {'PML MiB':>9}  value")
    for row in args.rows:
        for n in args.sizes:
            for threads in args.threads:
                ours = measure("ltrkit", row, n, threads, args)
                theirs = measure("pml", row, n, threads, args) if row != "semi_hard" else {"note": "-"}
                if "value" in ours and "value" in theirs and abs(ours["value"] - theirs["value"]) > 1e-5 * max(abs(theirs["value"]), 1.0):
                    raise SystemExit(f"{row} N={n}: ltrkit {ours['value']} != PML {theirs['value']}")

                def cell(result: Dict[str, object], key: str, width: int) -> str:
                    return f"{result[key]:>{width}.1f}" if key in result else f"{result.get('note', '?'):>{width}}"

                ratio = f"{theirs['ms'] / ours['ms']:>10.2f}" if "ms" in ours and "ms" in theirs else f"{'-':>10}"
                value = f"{ours['value']:.6g}" if "value" in ours else ""
                print(
                    f"{row:<10} {n:>5} {threads:>3} {cell(ours, 'ms', 10)} {cell(theirs, 'ms', 10)} {ratio} "
                    f"{cell(ours, 'peak_mib', 10)} {cell(theirs, 'peak_mib', 9)}  {value}",
                    flush=True,
                )


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


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts of the mining table")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-guard-gib", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mining measurement")
    parser.add_argument("--items", type=int, default=100_000, help="items of the retrieval part (0: skip it)")
    parser.add_argument("--sample", type=int, default=2_000, help="queries the generic path is timed on")
    parser.add_argument("--worker", nargs=5, metavar=("LIB", "ROW", "N", "THREADS", "REPEAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        lib, row, n, threads, repeat = args.worker
        worker(lib, row, int(n), int(threads), int(repeat))
        return
    print(f"torch {torch.__version__}\n")
    mining_table(args)
    if args.items:
        torch.set_num_threads(max(args.threads))
        print(f"\n{max(args.threads)} thread(s)")
        retrieval_table(args.items, args.sample)


if __name__ == "__main__":
    main()
