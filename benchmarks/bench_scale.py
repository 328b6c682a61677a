"""Scale benchmark: one epoch of MLP + LambdaRank on an MSLR-WEB30K-sized set, 1 and N processes.

    python benchmarks/bench_scale.py --scale 0.1            # 3,153 queries, ~0.38M documents
    python benchmarks/bench_scale.py                         # full size: 31,531 queries, ~3.77M documents
    python benchmarks/bench_scale.py --processes 1,2 --keep /tmp/scale   # reuse the cache next time

The data is :func:`ltrkit.data.synthetic.generate` with MSLR-WEB30K's shape (31,531 queries,
mean list length 119.6 so ~3.77M documents, lists up to 1,251, 136 features), written once as a
binary cache folder (``ltrkit.data.cache.save_cache``) in a temporary folder (or ``--keep``).
Each run is a real ``torchrun --standalone --nproc-per-node P`` job on gloo; every process
memory-maps the cache, fits the z-score normaliser by streaming it, and trains one epoch on its
shard (``BatchLoader(num_replicas=P, rank=r)``, features normalised per batch from the mapping
by :func:`ltrkit.data.batching.normalized_view`, so no process holds the feature matrix): the
MLP of ``ltrkit train`` (136 -> 128 -> 64 -> 1), factorised LambdaRank, AdamW, wrapped in
``DistributedDataParallel`` when ``P > 1``. Threads per process: ``--threads`` (default: the
cores divided by ``P``).

Printed per process count: documents trained, epoch seconds (the slowest rank), docs/s, the share
of the epoch spent building batches (gather + normalisation), and each rank's peak RSS (its
high-water mark, which counts the mapped cache pages it touched). Then the longest single list
each quadratic loss accepts under the pair-memory limit (``LTRKIT_PAIR_MEMORY_GIB``, default
4 GiB); the chunked ``ranknet``/``lambdarank`` and ``lambdaloss``'s symmetric weightings have no
such ceiling (memory ``O(B L)``).

Figures on a shared 2-core machine vary with the other load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MSLR_QUERIES = 31_531
MSLR_DOCS = 3_771_125
MSLR_FEATURES = 136
MSLR_LONGEST = 1_251


def prepare(folder: Path, scale: float, seed: int) -> Path:
    """Write the synthetic set's cache folder once; returns it (reused when it already exists)."""
    from ltrkit.data.cache import is_cache_folder, save_cache
    from ltrkit.data.synthetic import generate

    cache = folder / f"mslr-scale{scale:g}-seed{seed}.ltrcache"
    if is_cache_folder(cache):
        return cache
    started = time.perf_counter()
    dataset = generate(
        max(1, round(MSLR_QUERIES * scale)), n_features=MSLR_FEATURES, seed=seed,
        mean_list_length=MSLR_DOCS / MSLR_QUERIES, max_list_length=MSLR_LONGEST,
    )
    save_cache(dataset, cache)
    print(f"generated {dataset.n_queries:,} queries, {dataset.n_docs:,} documents in {time.perf_counter() - started:.1f} s -> {cache}")
    return cache


def worker(args: argparse.Namespace) -> None:
    """One rank of the torchrun job: train one epoch on this rank's shard and report."""
    import numpy as np
    import torch

    import ltrkit.losses
    from ltrkit.data.batching import BatchLoader, normalized_view
    from ltrkit.data.cache import load_cache
    from ltrkit.data.transforms import Normalizer
    from ltrkit.models import build_model
    from ltrkit.training.distributed import all_reduce_sum, init_distributed, shutdown

    context = init_distributed("cpu")
    world = context.world_size
    torch.set_num_threads(args.threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // world))
    torch.manual_seed(args.seed)
    raw = load_cache(args.cache)
    normalizer = Normalizer("zscore").fit(raw)
    loader = BatchLoader(
        normalized_view(raw, normalizer), batch_size=args.batch_size, shuffle=True, seed=args.seed,
        max_docs_per_batch=args.max_docs_per_batch, num_replicas=world, rank=context.rank,
    )
    model = build_model("mlp", raw.n_features)
    if context.enabled:
        model = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = ltrkit.losses.get("lambdarank")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    docs = 0
    batching_s = 0.0
    started = time.perf_counter()
    batches = iter(loader)
    for number in range(len(loader) if args.max_batches is None else min(args.max_batches, len(loader))):
        fetched = time.perf_counter()
        batch = next(batches)
        batching_s += time.perf_counter() - fetched
        loss = loss_fn(model(batch.features, batch.mask), batch.labels, batch.mask)
        optimizer.zero_grad(set_to_none=True)
        # every rank steps every batch: a skipped backward would leave DDP's all-reduce waiting
        loss.backward()
        optimizer.step()
        docs += int(batch.mask.sum())
    seconds = time.perf_counter() - started
    peak = np.zeros(world)
    peak[context.rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = np.zeros(world)
    times[context.rank] = seconds
    shares = np.zeros(world)
    shares[context.rank] = batching_s / max(seconds, 1e-9)
    totals = all_reduce_sum(context, torch.tensor(np.concatenate([[docs], peak, times, shares]), dtype=torch.float64)).numpy()
    if context.is_main:
        slowest = float(totals[1 + world : 1 + 2 * world].max())
        print("RESULT " + json.dumps({
            "processes": world,
            "threads": torch.get_num_threads(),
            "docs": int(totals[0]),
            "seconds": slowest,
            "docs_per_s": totals[0] / slowest,
            "batching_share": float(totals[1 + 2 * world :].mean()),
            "peak_rss_gib": [float(v) / 2**30 for v in totals[1 : 1 + world]],
        }))
    shutdown(context)


def run_job(cache: Path, processes: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        str(Path(__file__).resolve()), "--worker", "--cache", str(cache), "--batch-size", str(args.batch_size),
        "--seed", str(args.seed), "--max-docs-per-batch", str(args.max_docs_per_batch),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.max_batches is not None:
        command += ["--max-batches", str(args.max_batches)]
    # a single-node job talks over loopback whatever the host name resolves to
    env = dict(os.environ, GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"), OMP_NUM_THREADS=str(args.threads or 1))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        raise SystemExit(f"torchrun with {processes} process(es) failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(results[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of MSLR-WEB30K's queries (default 1 = full size)")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default cores / processes)")
    parser.add_argument("--batch-size", type=int, default=64, help="queries per batch (default 64)")
    parser.add_argument("--max-docs-per-batch", type=int, default=16384, help="cap on B x L per batch (default 16384)")
    parser.add_argument("--max-batches", type=int, default=None, help="stop each rank after this many batches (a partial epoch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the cache, kept for the next run (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], got {args.scale}")
    counts = [int(text) for text in args.processes.split(",")]
    folder = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="ltrkit-bench-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        cache = prepare(folder, args.scale, args.seed)
        print(f"{'processes':>9} {'threads':>7} {'documents':>11} {'epoch s':>8} {'docs/s':>9} {'batching':>8}  peak RSS per rank (GiB)")
        for processes in counts:
            row = run_job(cache, processes, args)
            rss = ", ".join(f"{value:.2f}" for value in row["peak_rss_gib"])
            print(f"{row['processes']:>9} {row['threads']:>7} {row['docs']:>11,} {row['seconds']:>8.1f} {row['docs_per_s']:>9,.0f} {row['batching_share']:>8.0%}  {rss}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    from ltrkit.losses._pairwise_kernels import PAIR_BYTES, largest_list, pair_memory_limit

    print(f"longest single list per quadratic loss under the {pair_memory_limit() / 2**30:g} GiB pair-memory limit (LTRKIT_PAIR_MEMORY_GIB):")
    for name in PAIR_BYTES:
        print(f"  {name:<15} {largest_list(name):>7,} documents ({PAIR_BYTES[name]} bytes per pair)" + (" (ndcg_loss1, arp_loss1)" if name == "lambdaloss" else ""))
    print("  ranknet, lambdarank, lambdaloss's other weightings: no ceiling (chunked, O(B L) memory; k= for O(B L k) time)")


if __name__ == "__main__":
    main()
