#!/usr/bin/env bash
# The peers' own virtualenv (never a dependency of driftkeel): small-text and its numeric stack.
# Idempotent: installs only when the pins below changed. Git-ignored (benchmarks/**/.venv*/).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-peers"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PINS=(small-text==1.4.1 scikit-learn==1.6.1 numpy==1.26.4 scipy==1.13.1)
want="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.peers-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[peers] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[peers] installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
  echo "$want" > "$stamp"
else
  echo "[peers] $VENV up to date"
fi
