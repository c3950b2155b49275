#!/usr/bin/env bash
# The test suite: set up, audit the pinned dependencies, then pytest (all tests, the end-to-end
# pipeline test included) on two workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
bash scripts/audit.sh
export PREFECT_HOME="$(mktemp -d)"
python -m pytest -n 2 --dist loadfile --no-loadscope-reorder tests "$@"
