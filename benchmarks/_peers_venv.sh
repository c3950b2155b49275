# Sourced by the benchmarks' setup_peers.sh: a peer's own virtualenv (never a dependency of driftkeel)
# holding pinned packages. Idempotent: the venv is created once, and the pins are (re)installed only
# when they changed (their hash is stamped in the venv). Git-ignored (benchmarks/**/.venv*/).
#
#   source "$HERE/../_peers_venv.sh"
#   peers_venv [--check PYTHON_CODE] VENV_DIR LOG_TAG PIN...
#
# --check runs PYTHON_CODE in the venv after an install (before the stamp is written).
# The interpreter is $PYTHON, else python3.11, else python3.

peers_venv() {
  local check=""
  if [ "${1:-}" = "--check" ]; then
    check="$2"
    shift 2
  fi
  local venv="$1" tag="$2"
  shift 2
  local py want stamp="$venv/.peers-installed"
  py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  want="$(printf '%s\n' "$@" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ]; then
    echo "[$tag] creating $venv with $py"
    "$py" -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[$tag] installing $*"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
    if [ -n "$check" ]; then
      "$venv/bin/python" -c "$check"
    fi
    echo "$want" > "$stamp"
  else
    echo "[$tag] $venv up to date"
  fi
}
