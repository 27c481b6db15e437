#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian `chromium` + `chromium-driver`) for the
# report tests (tests/report_browser.rs) and benches/report.sh. Safe to re-run: when both are
# present nothing is done. Prints the two paths; exits non-zero when they cannot be installed.
set -euo pipefail
# Tests call this at once from several threads: one apt-get at a time.
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.cache"
exec 9>"$root/.cache/setup-browser.lock"
flock 9
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (apt-get)..." >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi
command -v chromium
command -v chromedriver
