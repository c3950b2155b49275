#!/usr/bin/env bash
# Evidently's own virtualenv (a peer, never a dependency of driftkeel): evidently 0.7.23 fails to import
# under pandas 3 (`infer_dtype_from_object`), so it gets pandas<3 here. It receives precomputed
# embeddings from the benchmark (no second MiniLM). Idempotent: reinstalls only when the pins change
# (benchmarks/_peers_venv.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../_peers_venv.sh"
PINS=(evidently==0.7.23 "pandas<3" "numpy<2.3")
peers_venv --check "import evidently, pandas; print('[evidently]', evidently.__version__, 'pandas', pandas.__version__)" \
  "$HERE/.venv-evidently" evidently "${PINS[@]}"
