#!/usr/bin/env bash
# The active-learning benchmark in one command: peers' virtualenv (small-text, once), then bench.py
# (results.json, curve.png beside this file and a printed table). Extra arguments go to bench.py
# (e.g. --seeds 0 1 2 --datasets simulator hh --no-peers).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
[ -x .venv/bin/python ] || bash scripts/setup.sh
bash "$HERE/setup_peers.sh" || echo "[peers] small-text did not install: the benchmark runs without peers"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python "$HERE/bench.py" "$@"
