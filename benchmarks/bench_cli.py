"""Start-up time of the ``ltrkit`` command against bare Python and ``import torch``.

Each command runs in a fresh process, ``--repeat`` times (best and median wall time):

1. ``python -c pass`` (the floor: interpreter start-up)
2. ``python -c "import torch"`` (what any command importing torch pays on top)
3. ``ltrkit --help``, ``ltrkit --version``
4. ``ltrkit data stats FILE`` and ``... --json`` on a cached LETOR file of about ``--size-mb``
   MB written by ``ltrkit data generate`` (its cache is built once before timing)

and prints seconds plus the ratios to ``python -c pass`` and to ``import torch``. ``ltrkit`` is
run as ``python -m ltrkit.cli.main`` (what the console script does, without depending on the
script being on PATH). With ``PYTHONDONTWRITEBYTECODE`` set, ltrkit's own modules are compiled
in every process; the script says so, since that inflates every ltrkit figure a little.

Usage: ``python benchmarks/bench_cli.py [--repeat 7] [--size-mb 6]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: bytes of LETOR text per training query of the default generator (136 features, ~50 docs)
_BYTES_PER_QUERY = 57_000


def _time(command: list[str], repeat: int) -> tuple[float, float]:
    """Best and median wall seconds of ``command`` over ``repeat`` fresh processes."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="processes per command (default 7)")
    parser.add_argument("--size-mb", type=float, default=6.0, help="size of the LETOR file for data stats (default 6)")
    args = parser.parse_args()

    python = [sys.executable]
    ltrkit = [sys.executable, "-m", "ltrkit.cli.main"]
    with tempfile.TemporaryDirectory() as folder:
        queries = max(1, round(args.size_mb * 1e6 / _BYTES_PER_QUERY))
        subprocess.run(
            [*ltrkit, "data", "generate", "--out", folder, "--train-queries", str(queries),
             "--vali-queries", "1", "--test-queries", "1"],
            check=True, stdout=subprocess.DEVNULL,
        )
        data = Path(folder) / "train.txt"
        subprocess.run([*ltrkit, "data", "stats", str(data), "--json"], check=True, stdout=subprocess.DEVNULL)
        cases = [
            ("python -c pass", [*python, "-c", "pass"]),
            ('python -c "import torch"', [*python, "-c", "import torch"]),
            ("ltrkit --help", [*ltrkit, "--help"]),
            ("ltrkit --version", [*ltrkit, "--version"]),
            (f"ltrkit data stats ({data.stat().st_size / 1e6:.1f} MB, cached)", [*ltrkit, "data", "stats", str(data)]),
            ("ltrkit data stats --json (cached)", [*ltrkit, "data", "stats", str(data), "--json"]),
        ]
        results = [(name, *_time(command, args.repeat)) for name, command in cases]

    floor, torch_import = results[0][1], results[1][1]
    print(f"best / median of {args.repeat} processes each; CPUs: {os.cpu_count()}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set, so ltrkit's modules are compiled in every process")
    print(f"{'command':<40} {'best s':>8} {'median s':>9} {'/ python':>9} {'/ torch':>8}")
    for name, best, median in results:
        print(f"{name:<40} {best:8.3f} {median:9.3f} {best / floor:9.1f} {best / torch_import:8.2f}")


if __name__ == "__main__":
    main()
