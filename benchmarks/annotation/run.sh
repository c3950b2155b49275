#!/usr/bin/env bash
# The annotation benchmark in one command: peers' virtualenv (once), cells, driftkeel and the peers on
# the same inputs, results.json beside this file and a printed table. Extra arguments go to bench.py
# (e.g. --cells rte_clean temp_clean, --work DIR).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
[ -x .venv/bin/python ] || bash scripts/setup.sh
bash "$HERE/setup_peers.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python "$HERE/bench.py" "$@"
