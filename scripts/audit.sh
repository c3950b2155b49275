#!/usr/bin/env bash
# Dependency audit: pip-audit over every pin in requirements.lock against PyPI's advisory data.
#
#   bash scripts/audit.sh            # exit 0: no known vulnerability outside .pip-audit-ignore
#                                    # exit 1: vulnerabilities found (listed), a pin that could not be
#                                    #         audited (--strict), or a malformed ignore entry
#
# pip-audit lives in its own throwaway virtualenv (.cache/audit-venv, git-ignored), never in .venv.
# Every pin is audited as pinned (--no-deps --disable-pip: nothing is installed or resolved).
# .pip-audit-ignore lists accepted advisories, one a line: <VULN-ID> <package> <review-by YYYY-MM-DD> <reason>.
# An entry past its review date is reported (the audit still passes): look at it again.
# pip-audit reads PyPI's per-release JSON (https://pypi.org/pypi/<name>/<version>/json, its
# "vulnerabilities" field). When that cannot be reached the audit cannot run: the script says so in a
# banner and exits 0 (only then).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_AUDIT_VERSION=2.10.1
VENV="${AUDIT_VENV:-.cache/audit-venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
LOCK=requirements.lock
IGNORE_FILE=.pip-audit-ignore

warn_offline() {
  echo "================================================================================"
  echo "WARNING: dependency audit NOT RUN: $1"
  echo "WARNING: PyPI's advisory data is not reachable from here; $LOCK was not checked."
  echo "================================================================================"
  exit 0
}

# 1. the ignore list: every entry needs an id, a package, a review date and a reason
ignore_args=()
today="$(date -u +%Y-%m-%d)"
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  case "$line" in ''|'#'*) continue ;; esac
  read -r id pkg review reason <<<"$line"
  if [ -z "${reason:-}" ] || ! [[ "$review" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
    echo "[audit] $IGNORE_FILE:$n: want '<VULN-ID> <package> <review-by YYYY-MM-DD> <reason>': $line" >&2
    exit 1
  fi
  if [[ "$review" < "$today" ]]; then
    echo "[audit] WARNING: $IGNORE_FILE:$n: $id ($pkg) was to be reviewed by $review"
  fi
  echo "[audit] ignoring $id ($pkg): $reason"
  ignore_args+=(--ignore-vuln "$id")
done < <(cat "$IGNORE_FILE" 2>/dev/null || true)

# 2. can we reach PyPI's per-release JSON API (where pip-audit's advisory data comes from)?
probe="https://pypi.org/pypi/pip-audit/$PIP_AUDIT_VERSION/json"
if ! why="$("$PY" -c '
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=15).read(1)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
' "$probe" 2>&1)"; then
  warn_offline "$probe -> $why"
fi

# 3. pip-audit in its own venv (installed once; reinstalled when the pinned version changes)
if [ "$("$VENV/bin/pip-audit" --version 2>/dev/null | awk '{print $2}')" != "$PIP_AUDIT_VERSION" ]; then
  echo "[audit] installing pip-audit==$PIP_AUDIT_VERSION into $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pip-audit==$PIP_AUDIT_VERSION" \
    || warn_offline "pip install pip-audit==$PIP_AUDIT_VERSION failed"
fi

# 4. the audit (--strict: a pin that cannot be audited is a failure, not a silent pass)
echo "[audit] pip-audit $PIP_AUDIT_VERSION on $(grep -c '==' "$LOCK") pins of $LOCK"
set +e
"$VENV/bin/pip-audit" -r "$LOCK" --no-deps --disable-pip --strict --vulnerability-service pypi \
  --progress-spinner off --desc on "${ignore_args[@]}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "[audit] FAILED: upgrade the package within the pins, or add a justified entry to $IGNORE_FILE" >&2
fi
exit $rc
