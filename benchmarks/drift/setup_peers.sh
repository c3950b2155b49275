#!/usr/bin/env bash
# Evidently's own virtualenv (a peer, never a dependency of driftkeel): evidently 0.7.23 fails to import
# under pandas 3 (`infer_dtype_from_object`), so it gets pandas<3 here. It receives precomputed
# embeddings from the benchmark (no second MiniLM). Idempotent: reinstalls only when the pins change.
# Git-ignored (benchmarks/**/.venv*/).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-evidently"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PINS=(evidently==0.7.23 "pandas<3" "numpy<2.3")
want="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.peers-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[evidently] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[evidently] installing ${PINS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}"
  "$VENV/bin/python" -c "import evidently, pandas; print('[evidently]', evidently.__version__, 'pandas', pandas.__version__)"
  echo "$want" > "$stamp"
else
  echo "[evidently] $VENV up to date"
fi
