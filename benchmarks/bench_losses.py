"""Forward+backward time and peak memory of ltrkit's ranking losses against allRank's, same run.

Run inside the benchmark venv (``bash benchmarks/allrank_env.sh`` creates it)::

    .bench-venv/bin/python benchmarks/bench_losses.py            # full grid
    .bench-venv/bin/python benchmarks/bench_losses.py --lengths 32 128 --repeats 3

For each (loss, list length L) it times ``loss(scores, labels, mask).backward()`` on one batch of
64 queries (float32, CPU, ``torch.set_num_threads(2)``, labels in 0..4, every list full),
taking the best of ``--repeats`` runs (fewer on long lists) after one warm-up (the
minimum: on a shared machine noise only ever adds time), for ltrkit and for allRank's equivalent:

=================  ===========================================  ======================================
row                ltrkit                                       allRank 1.4.3
=================  ===========================================  ======================================
ranknet_matrix     ``ranknet_matrix`` (all-pairs, autograd)     ``rankNet``
ranknet            ``ranknet`` (factorised lambdas, chunked)    ``rankNet``
lambdarank         ``lambdarank`` (factorised lambdas)          ``lambdaLoss(lambdaRank_scheme)``
listnet            ``listnet``                                  ``listNet``
neural_ndcg        ``neural_ndcg``                              ``neuralNDCG``
=================  ===========================================  ======================================

Every measurement runs in a fresh subprocess, so that its peak memory is its own: the peak RSS
delta (``VmHWM`` after ``/proc/self/clear_refs`` reset, minus RSS before the first call), which
sees torch's CPU allocations unlike tracemalloc. A measurement whose estimated footprint exceeds
``--memory-guard-gib`` is reported as ``skipped`` before it runs; one that is killed or exceeds
``--timeout`` seconds is reported as ``OOM``/``too slow``. Before timing, the script checks on a
small batch that ltrkit and allRank compute the same RankNet and LambdaRank values.

Labels (``--labels``): ``uniform`` (default) draws each grade with probability 1/5;
``mslr`` draws them in MSLR-WEB30K's proportions (51% of documents 0, 33% 1, 13% 2, 2% 3, 1% 4),
whose lists hold many more pairs of equal labels, which ltrkit's pair kernel skips.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from _memory import reset_peak_rss, rss_kib  # benchmarks/, the script's folder

BATCH = 64
LEVELS = 5
ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "benchmarks" / "stubs"

# row name -> (ltrkit registry name, allRank function name, allRank keyword arguments)
ROWS: Dict[str, Tuple[str, str, Dict[str, object]]] = {
    "ranknet": ("ranknet", "rankNet", {}),
    "lambdarank": ("lambdarank", "lambdaLoss", {"weighing_scheme": "lambdaRank_scheme"}),
    "ranknet_matrix": ("ranknet_matrix", "rankNet", {}),
    "listnet": ("listnet", "listNet", {}),
    "neural_ndcg": ("neural_ndcg", "neuralNDCG", {}),
}

# Rough bytes per (query x L x L) pair that each implementation holds at its peak, used only by
# the memory guard: number of live [B, L, L] float32 temporaries (plus allRank's rankNet index
# tuples) observed on small lists, rounded up.
PAIR_BYTES = {
    ("ltrkit", "ranknet_matrix"): 40,
    ("ltrkit", "ranknet"): 0,
    ("ltrkit", "lambdarank"): 0,
    ("ltrkit", "listnet"): 0,
    ("ltrkit", "neural_ndcg"): 48,
    ("allrank", "ranknet_matrix"): 48,
    ("allrank", "ranknet"): 48,
    ("allrank", "lambdarank"): 56,
    ("allrank", "listnet"): 0,
    ("allrank", "neural_ndcg"): 448,
}


def _setup_torch():
    sys.path.insert(0, str(STUBS))
    # allrank.utils.file_utils imports pkg_resources, which warns on every start
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import torch

    torch.set_num_threads(2)
    return torch


def _inputs(torch, length: int, seed: int = 0, label_mix: str = "uniform"):
    from ltrkit.data.synthetic import LABEL_PROPORTIONS

    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(BATCH, length, generator=gen)
    if label_mix == "mslr":
        draws = torch.multinomial(torch.tensor(LABEL_PROPORTIONS), BATCH * length, replacement=True, generator=gen)
        labels = draws.reshape(BATCH, length).float()
    else:
        labels = torch.randint(0, LEVELS, (BATCH, length), generator=gen).float()
    mask = torch.ones(BATCH, length, dtype=torch.bool)
    return scores, labels, mask


def _loss_fn(torch, lib: str, row: str) -> Callable:
    ltr_name, ar_name, ar_kwargs = ROWS[row]
    if lib == "ltrkit":
        from ltrkit.losses import get

        loss = get(ltr_name)
        return lambda scores, labels, mask: loss(scores, labels, mask)
    import allrank.models.losses as allrank_losses

    fn = getattr(allrank_losses, ar_name)

    def call(scores, labels, mask):
        # allRank marks padding with the label -1 (PADDED_Y_VALUE)
        return fn(scores, labels.masked_fill(~mask, -1.0), **ar_kwargs)

    return call


def worker(lib: str, row: str, length: int, repeats: int, label_mix: str) -> None:
    """Measure one (library, loss, length) and print a JSON line."""
    torch = _setup_torch()
    fn = _loss_fn(torch, lib, row)
    scores, labels, mask = _inputs(torch, length, label_mix=label_mix)
    before = rss_kib("VmRSS")
    reset_peak_rss()
    times: List[float] = []
    for run in range(repeats + 1):
        leaf = scores.clone().requires_grad_()
        start = time.perf_counter()
        loss = fn(leaf, labels, mask)
        loss.backward()
        elapsed = time.perf_counter() - start
        if not (torch.isfinite(loss) and torch.isfinite(leaf.grad).all()):
            raise RuntimeError(f"{lib} {row} L={length}: non-finite loss or gradient")
        if run:
            times.append(elapsed)
        del loss, leaf
    peak = rss_kib("VmHWM")
    print(json.dumps({"ms": 1000 * min(times), "peak_mib": (peak - before) / 1024}))


def _repeats(repeats: int, length: int) -> int:
    """Fewer timed runs on long lists, where one run already takes seconds."""
    return repeats if length <= 128 else max(1, repeats - 1)


def measure(lib: str, row: str, length: int, args: argparse.Namespace) -> Dict[str, object]:
    estimate_gib = PAIR_BYTES[(lib, row)] * BATCH * length * length / 2**30
    if estimate_gib > args.memory_guard_gib:
        return {"note": f"skip:~{estimate_gib:.0f}GiB"}
    repeats = _repeats(args.repeats, length)
    command = [sys.executable, __file__, "--worker", lib, row, str(length), str(repeats), args.labels]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"note": "too slow"}
    if done.returncode != 0:
        killed = done.returncode < 0 or "MemoryError" in done.stderr or "out of memory" in done.stderr
        if killed:
            return {"note": "OOM"}
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"note": f"error: {last[0][:60]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement() -> str:
    """ltrkit and allRank values on one small batch (same definitions, different normalisations)."""
    torch = _setup_torch()
    import allrank.models.losses as allrank_losses

    from ltrkit.losses.pairwise import lambdaloss, lambdarank_loss, ranknet_loss

    scores, labels, mask = _inputs(torch, 40, seed=1)
    mask[:, 30:] = False
    padded = labels.masked_fill(~mask, -1.0)
    ranknet_ltr = ranknet_loss(scores, labels, mask, normalize="pairs")
    ranknet_ar = allrank_losses.rankNet(scores, padded)
    lambda_ltr = lambdarank_loss(scores, labels, mask, reduction="sum") / math.log(2.0)
    lambda_ar = allrank_losses.lambdaLoss(scores, padded, weighing_scheme="lambdaRank_scheme")
    loss2_ltr = lambdaloss(scores, labels, mask, weighting="ndcg_loss2pp", reduction="sum")
    loss2_ar = allrank_losses.lambdaLoss(scores, padded, weighing_scheme="ndcgLoss2PP_scheme")
    return (
        f"agreement on 64 lists of 30 (+10 padded): RankNet ltrkit {ranknet_ltr.item():.6f} vs allRank "
        f"{ranknet_ar.item():.6f}; LambdaRank/ln2 {lambda_ltr.item():.4f} vs {lambda_ar.item():.4f}; "
        f"NDCG-Loss2++ {loss2_ltr.item():.4f} vs {loss2_ar.item():.4f}"
    )


def _cell(result: Dict[str, object], key: str, fmt: str) -> str:
    return fmt.format(result[key]) if key in result else str(result["note"])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1024, 4096])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (after 1 warm-up)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per measurement")
    parser.add_argument("--memory-guard-gib", type=float, default=6.0, help="skip runs estimated above this")
    parser.add_argument("--labels", choices=("uniform", "mslr"), default="uniform", help="label distribution (see above)")
    parser.add_argument("--worker", nargs=5, metavar=("LIB", "ROW", "L", "REPEATS", "LABELS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        lib, row, length, repeats, label_mix = args.worker
        worker(lib, row, int(length), int(repeats), label_mix)
        return

    torch = _setup_torch()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH} queries, "
          f"forward+backward, best of {args.repeats} timed runs after a warm-up "
          f"({_repeats(args.repeats, 512)} for L > 128), labels {args.labels}")
    print(agreement())
    from ltrkit.losses import names

    header = f"{'loss':<15}{'L':>6}{'ltrkit ms':>12}{'allRank ms':>14}{'speedup':>9}{'ltrkit MiB':>12}{'allRank MiB':>13}"
    print(header)
    print("-" * len(header))
    print("(skip:~N GiB = estimated footprint above --memory-guard-gib, not run; speedup = allRank ms / ltrkit ms)")
    for row in args.rows:
        if ROWS[row][0] not in names():
            print(f"{row:<15}  not registered in ltrkit.losses yet: skipped")
            continue
        for length in args.lengths:
            ours = measure("ltrkit", row, length, args)
            theirs = measure("allrank", row, length, args)
            speedup = f"{theirs['ms'] / ours['ms']:.1f}x" if "ms" in ours and "ms" in theirs else "-"
            print(
                f"{row:<15}{length:>6}{_cell(ours, 'ms', '{:.1f}'):>12}{_cell(theirs, 'ms', '{:.1f}'):>14}{speedup:>9}"
                f"{_cell(ours, 'peak_mib', '{:.0f}'):>12}{_cell(theirs, 'peak_mib', '{:.0f}'):>13}",
                flush=True,
            )


if __name__ == "__main__":
    main()
