"""Loading speed and memory: ltrkit's LETOR parser and binary cache vs scikit-learn.

Generates (unless already present) an MSLR-WEB30K-shaped file: 136 dense features written the
way MSLR writes them (integers for counts, 6-decimal values for scores, some negative), labels
0-4, heavy-tailed list lengths around 120 documents. Then, each in its own subprocess so peak
RSS (VmHWM) is not shared:

1. ``sklearn.datasets.load_svmlight_file(path, query_id=True)``
2. ltrkit first parse without cache (``load_dataset(path, cache=False)``)
3. ltrkit first parse writing the cache
4. ltrkit reload from the cache (memory-mapped), and the same plus reading every feature once

and prints a table with MB/s and ratios, plus the padding fraction of length-bucketed vs plain
batches (``BatchLoader(batch_size=64, shuffle=True, seed=0)``).

Usage: ``python benchmarks/bench_load.py --size-mb 500 [--path FILE] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from _memory import rss_kib  # benchmarks/, the script's folder

N_FEATURES = 136


@njit(cache=True)
def _write_int(out, pos, value):
    if value < 0:
        out[pos] = 45
        pos += 1
        value = -value
    start = pos
    while True:
        out[pos] = 48 + value % 10
        pos += 1
        value //= 10
        if value == 0:
            break
    end = pos - 1
    while start < end:
        out[start], out[end] = out[end], out[start]
        start += 1
        end -= 1
    return pos


@njit(cache=True)
def _render(labels, qids, kinds, ints, fracs, negs, out):
    """MSLR-like text of a block of rows into ``out``; returns the number of bytes written."""
    pos = 0
    for r in range(labels.shape[0]):
        pos = _write_int(out, pos, labels[r])
        for c in (32, 113, 105, 100, 58):
            out[pos] = c
            pos += 1
        pos = _write_int(out, pos, qids[r])
        for f in range(kinds.shape[0]):
            out[pos] = 32
            pos += 1
            pos = _write_int(out, pos, f + 1)
            out[pos] = 58
            pos += 1
            if kinds[f] == 0 or (ints[r, f] == 0 and fracs[r, f] == 0):
                pos = _write_int(out, pos, ints[r, f])
            else:
                if negs[r, f]:
                    out[pos] = 45
                    pos += 1
                pos = _write_int(out, pos, ints[r, f])
                out[pos] = 46
                pos += 1
                frac = fracs[r, f]
                for k in range(6):
                    out[pos + 5 - k] = 48 + frac % 10
                    frac //= 10
                pos += 6
        out[pos] = 10
        pos += 1
    return pos


def generate(path: Path, size_mb: float, seed: int = 0) -> None:
    """Write an MSLR-shaped LETOR file of about ``size_mb`` MB to ``path`` (atomically)."""
    rng = np.random.default_rng(seed)
    kinds = (rng.random(N_FEATURES) < 0.45).astype(np.int64)  # 0: integer count, 1: decimal
    target = int(size_mb * 1e6)
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    qid = 0
    with open(tmp, "wb") as f:
        while written < target:
            lengths = np.clip(rng.lognormal(np.log(100), 0.7, size=200).astype(np.int64), 1, 1250)
            n = int(lengths.sum())
            qids = np.repeat(np.arange(qid + 1, qid + 1 + len(lengths)), lengths)
            qid += len(lengths)
            labels = rng.choice(5, size=n, p=[0.51, 0.32, 0.13, 0.03, 0.01])
            zero = rng.random((n, N_FEATURES)) < 0.3
            ints = np.where(zero, 0, np.floor(rng.pareto(1.5, size=(n, N_FEATURES)) * 3)).astype(np.int64)
            fracs = np.where(zero, 0, rng.integers(0, 1_000_000, size=(n, N_FEATURES)))
            negs = (rng.random((n, N_FEATURES)) < 0.05) & ~zero
            out = np.empty(n * (N_FEATURES * 32 + 40), dtype=np.uint8)
            size = _render(labels, qids, kinds, np.minimum(ints, 10**9), fracs, negs, out)
            f.write(out[:size].tobytes())
            written += size
    os.replace(tmp, path)


def _peak_rss_mb() -> float:
    return rss_kib("VmHWM") / 1024


def _measure(kind: str, path: str, cache_dir: str) -> dict:
    """One measurement, run in a fresh subprocess."""
    if kind == "baseline-sklearn":
        import sklearn.datasets  # noqa: F401  (the fixed RSS floor of the sklearn step)

        return {"seconds": float("nan"), "peak_rss_mb": _peak_rss_mb(), "shape": [0, 0]}
    if kind == "baseline-ltrkit":
        from ltrkit.data.letor import read_letor

        tiny = Path(cache_dir).with_name("warm.txt")
        read_letor(tiny)  # imports plus numba's compiled kernels: the fixed RSS floor of ltrkit
        return {"seconds": float("nan"), "peak_rss_mb": _peak_rss_mb(), "shape": [0, 0]}
    if kind == "sklearn":
        from sklearn.datasets import load_svmlight_file

        start = time.perf_counter()
        X, y, q = load_svmlight_file(path, query_id=True)
        seconds = time.perf_counter() - start
        shape = X.shape
    else:
        from ltrkit.data.cache import load_dataset

        start = time.perf_counter()
        if kind == "parse":
            ds = load_dataset(path, cache=False)
        elif kind == "parse+cache":
            ds = load_dataset(path, cache_dir=cache_dir)
        elif kind == "reload":
            ds = load_dataset(path, cache_dir=cache_dir)
        elif kind == "reload+touch":
            ds = load_dataset(path, cache_dir=cache_dir)
            float(np.asarray(ds.features).sum(dtype=np.float64))
        else:
            raise ValueError(f"unknown measurement {kind!r}")
        seconds = time.perf_counter() - start
        shape = ds.features.shape
        if kind.startswith("reload") and not isinstance(ds.features, np.memmap):
            raise RuntimeError("reload did not come from the cache")
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "shape": list(shape)}


def _run(kind: str, path: Path, cache_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(path), str(cache_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=500.0, help="size of the generated file")
    parser.add_argument("--path", type=Path, default=None, help="data file to use or create")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and cache")
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "PATH", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return

    work = Path(tempfile.mkdtemp(prefix="ltrkit-bench-load-"))
    path = args.path if args.path is not None else work / f"mslr_like_{int(args.size_mb)}mb.txt"
    generated = not path.exists()
    if generated:
        start = time.perf_counter()
        generate(path, args.size_mb)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s")
    cache_dir = work / "cache"
    size_mb = path.stat().st_size / 1e6

    # Compile (or load from numba's cache) the parser once so no measurement includes it.
    from ltrkit.data.letor import read_letor

    warm = work / "warm.txt"
    warm.write_text("1 qid:1 1:0.5 2:3\n0 qid:1 1:1e-3\n")
    read_letor(warm)

    runs = {}
    for kind in ("baseline-sklearn", "baseline-ltrkit", "sklearn", "parse", "parse+cache", "reload", "reload+touch"):
        runs[kind] = _run(kind, path, cache_dir)
    n_docs, n_features = runs["parse"]["shape"]
    matrix_mb = n_docs * n_features * 4 / 1e6

    print(f"\nfile: {path} ({size_mb:.0f} MB, {n_docs:,} docs x {n_features} features; "
          f"float32 matrix {matrix_mb:.0f} MB; {os.cpu_count()} CPUs)")
    print(f"{'step':<34}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}{'RSS/matrix':>12}")
    labels = {
        "baseline-sklearn": "python + sklearn imports only",
        "baseline-ltrkit": "python + ltrkit imports + kernels",
        "sklearn": "sklearn load_svmlight_file",
        "parse": "ltrkit parse (cache=False)",
        "parse+cache": "ltrkit parse + write cache",
        "reload": "ltrkit reload from cache (mmap)",
        "reload+touch": "ltrkit reload + read all features",
    }
    for kind, result in runs.items():
        seconds = result["seconds"]
        timing = f"{'-':>9}{'-':>9}" if kind.startswith("baseline") else f"{seconds:>9.3f}{size_mb / seconds:>9.0f}"
        print(f"{labels[kind]:<34}{timing}{result['peak_rss_mb']:>13.0f}{result['peak_rss_mb'] / matrix_mb:>12.2f}")
    floor_sk, floor_ltr = runs["baseline-sklearn"]["peak_rss_mb"], runs["baseline-ltrkit"]["peak_rss_mb"]
    print(f"\n(peak RSS - its import baseline) / float32 matrix: "
          f"sklearn {(runs['sklearn']['peak_rss_mb'] - floor_sk) / matrix_mb:.2f}, "
          f"ltrkit parse {(runs['parse']['peak_rss_mb'] - floor_ltr) / matrix_mb:.2f}, "
          f"ltrkit parse + cache {(runs['parse+cache']['peak_rss_mb'] - floor_ltr) / matrix_mb:.2f}")
    print(f"\nltrkit parse speedup vs sklearn:          {runs['sklearn']['seconds'] / runs['parse']['seconds']:.2f}x")
    print(f"cache reload speedup vs first parse:      {runs['parse']['seconds'] / runs['reload']['seconds']:.0f}x")
    print(f"cache reload+read-all speedup vs parse:   {runs['parse']['seconds'] / runs['reload+touch']['seconds']:.1f}x")

    from ltrkit.data.batching import BatchLoader
    from ltrkit.data.cache import load_dataset

    dataset = load_dataset(path, cache_dir=cache_dir)
    lengths = dataset.list_lengths
    print(f"\nlist lengths: {dataset.n_queries:,} queries, min {lengths.min()}, median {int(np.median(lengths))}, "
          f"mean {lengths.mean():.0f}, max {lengths.max()}")
    for bucket in (False, True):
        loader = BatchLoader(dataset, batch_size=64, shuffle=True, seed=0, bucket_by_length=bucket)
        print(f"padding fraction, batch_size=64, bucket_by_length={bucket!s:<5}: {loader.padding_fraction():.3f}")

    if args.keep:
        print(f"\nkept {path} and {cache_dir}")
    else:
        if generated and args.path is not None:
            path.unlink()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
