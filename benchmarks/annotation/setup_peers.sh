#!/usr/bin/env bash
# The peers' own virtualenv (never dependencies of driftkeel): crowd-kit and cleanlab, with
# scikit-learn 1.6.1 (crowd-kit 1.4.2's Wawa/ZeroBasedSkill fail with scikit-learn >= 1.7).
# Idempotent: installs only when the pins below changed (benchmarks/_peers_venv.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../_peers_venv.sh"
PINS=(crowd-kit==1.4.2 cleanlab==2.9.0 scikit-learn==1.6.1 numpy==2.2.6 pandas==2.2.3 scipy==1.15.3)
peers_venv "$HERE/.venv-peers" peers "${PINS[@]}"
