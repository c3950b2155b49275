#!/usr/bin/env bash
# The peers' own virtualenv (never a dependency of driftkeel): small-text and its numeric stack.
# Idempotent: installs only when the pins below changed (benchmarks/_peers_venv.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../_peers_venv.sh"
PINS=(small-text==1.4.1 scikit-learn==1.6.1 numpy==1.26.4 scipy==1.13.1)
peers_venv "$HERE/.venv-peers" peers "${PINS[@]}"
