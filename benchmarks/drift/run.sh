#!/usr/bin/env bash
# The drift benchmark in one command: Evidently's virtualenv (once), the embedding cache (once; MiniLM
# on CPU if the cache is empty), every cell for driftkeel, a plain MMD test and Evidently on the same
# windows, results.json beside this file and a printed table. Extra arguments go to bench.py
# (e.g. --quick, --only real_hh_10 sim_covariate, --skip stream speed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
[ -x .venv/bin/python ] || bash scripts/setup.sh
source scripts/env.sh
bash "$HERE/setup_peers.sh" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python "$HERE/pool.py"
.venv/bin/python "$HERE/bench.py" "$@"
