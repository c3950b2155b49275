#!/usr/bin/env bash
# System packages the tests need beyond the Python stack: a headless Chromium (renders the drift
# report.html in tests/ops). Idempotent: when chromium is already on PATH it does nothing (< 0.1 s).
#
#   bash scripts/install_system.sh          # as root (CI), or with sudo available
#
# Never fails the caller: when it cannot install (no root, no apt, no network) it says why and exits 0;
# the browser tests then skip with that reason (DRIFTKEEL_NO_SYSTEM_INSTALL=1 skips the attempt).
set -uo pipefail

have_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}

if have_browser; then
  echo "[install_system] chromium present: $(command -v chromium || command -v chromium-browser || command -v google-chrome)"
  exit 0
fi
if [ -n "${DRIFTKEEL_NO_SYSTEM_INSTALL:-}" ]; then
  echo "[install_system] DRIFTKEEL_NO_SYSTEM_INSTALL set: not installing chromium (browser tests will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[install_system] no apt-get on this system: install chromium yourself (browser tests will skip)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "[install_system] not root and no passwordless sudo: cannot install chromium (browser tests will skip)"
    exit 0
  fi
fi

echo "[install_system] installing chromium (Debian package) — about a minute the first time"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >"$log" 2>&1 \
   || { $SUDO apt-get update -q >>"$log" 2>&1 \
        && $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >>"$log" 2>&1; }; then
  echo "[install_system] installed: $(chromium --version 2>/dev/null || echo chromium)"
else
  echo "[install_system] apt-get install chromium failed (browser tests will skip); last lines:"
  tail -5 "$log"
fi
rm -f "$log"
exit 0
