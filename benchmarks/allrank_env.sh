#!/usr/bin/env bash
# Create the benchmark-only virtual environment `.bench-venv/` at the repository root, holding
# ltrkit (editable) beside the peers the benchmark scripts compare it with: allRank and LightGBM.
#
# Usage (from anywhere):
#     bash benchmarks/allrank_env.sh            # creates or updates .bench-venv/
#     .bench-venv/bin/python benchmarks/bench_losses.py
#
# Environment overrides: BENCH_VENV (venv folder, default <repo>/.bench-venv), PYTHON (the
# interpreter that creates it, default python3).
#
# Why it looks like this:
# * allRank 1.4.3 pins torch<=1.8 and torchvision<=0.9 and cloud clients (gcsfs==0.6.2,
#   google-auth==1.27.1) that do not install beside current torch. It is installed with
#   --no-deps, after torch==2.13.0 and exactly the packages its modules import:
#   numpy, scipy, scikit-learn, pandas, attrs, flatten-dict, tensorboardX, gcsfs (imported at
#   module level by allrank.utils.file_utils, so even `allrank.models.losses` needs it) and
#   setuptools below 81 (allrank.utils.file_utils imports pkg_resources).
# * allRank imports torchvision only for `transforms.Compose`; PyPI's torchvision does not
#   import beside torch 2.13 here, so benchmarks/stubs/torchvision (a minimal stand-in) is put
#   on the venv's sys.path through a .pth file.
# * The script is idempotent: rerunning it reuses the venv and reinstalls nothing up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.bench-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

# torch first, so that nothing below can pull in another version
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" "torch==2.13.0" numpy scipy scikit-learn pandas attrs flatten-dict tensorboardX gcsfs \
    "setuptools<81" lightgbm
"${PIP[@]}" --no-deps "allrank==1.4.3"
"${PIP[@]}" "torch==2.13.0" -e "$ROOT"

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$ROOT/benchmarks/stubs" > "$SITE/ltrkit_bench_stubs.pth"

"$VENV/bin/python" - <<'PY'
import torch
import allrank.models.losses as losses
import ltrkit
import lightgbm

print(f"bench venv ready: torch {torch.__version__}, allRank losses {len(dir(losses))} names, "
      f"ltrkit {ltrkit.__file__}, lightgbm {lightgbm.__version__}")
PY
