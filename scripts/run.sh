#!/usr/bin/env bash
# The main job: set up, materialise the demo data (if missing), run the whole DVC pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
if [ ! -d data ] || [ -z "$(ls -A data 2>/dev/null)" ]; then
  driftkeel demo-data
fi
start=$(date +%s)
dvc repro "$@"
echo "[run] dvc repro took $(( $(date +%s) - start )) s"
driftkeel metrics   # all of them: dvc metrics show / driftkeel metrics --all
