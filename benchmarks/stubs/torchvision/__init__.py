"""Minimal stand-in for torchvision, for benchmarks only.

allRank imports torchvision solely for ``transforms.Compose``; PyPI's torchvision wheels do not
import beside the torch pinned for the benchmarks, so benchmarks/allrank_env.sh puts this folder
on the benchmark venv's ``sys.path`` instead. Never installed with ltrkit.
"""

from torchvision import transforms

__all__ = ["transforms"]
