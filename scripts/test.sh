#!/usr/bin/env bash
# The test suite: set up, then pytest (all tests, the end-to-end pipeline test included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
export PREFECT_HOME="$(mktemp -d)"
python -m pytest -n 2 --dist loadfile tests "$@"
