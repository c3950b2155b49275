#!/usr/bin/env bash
# Create .venv in the repo (if missing) and install the pinned stack (only when the lock changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp=.venv/.driftkeel-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing the pinned stack (requirements.lock) — a few minutes the first time"
  .venv/bin/python -m pip install -q --disable-pip-version-check "pip==25.3"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "[setup] .venv up to date (nothing to install)"
fi
