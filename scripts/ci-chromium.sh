#!/usr/bin/env bash
# Make sure Debian's Chromium is on this machine for Ketch's browser tests, then run
# a command.
#
#   scripts/ci-chromium.sh .venv/bin/pytest -n auto   # install Chromium if needed, run the tests
#   scripts/ci-chromium.sh                            # only install it (exit 1 when it cannot be had)
#
# Playwright cannot download its own browser here, so the tests drive Debian's
# `chromium` (package chromium) through its executable path. It is installed
# non-interactively when missing and this script may use apt-get (as root, or
# through sudo without a password). When it cannot be had, the command still runs
# and the reason is printed (the browser tests then skip and say why).
# KETCH_TEST_BROWSER=off skips the installation on purpose.
set -euo pipefail

log() { echo "ci-chromium: $*" >&2; }

COMMAND=("$@")

finish() {
  if [[ ${#COMMAND[@]} -gt 0 ]]; then exec "${COMMAND[@]}"; fi
  if command -v chromium >/dev/null; then exit 0; fi
  exit 1
}

without_browser() {
  log "browser tests will be skipped: $*"
  finish
}

case "${KETCH_TEST_BROWSER:-}" in
  off|0|false|no) without_browser "KETCH_TEST_BROWSER=${KETCH_TEST_BROWSER}" ;;
esac

if command -v chromium >/dev/null; then
  finish
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120 "$@" </dev/null >&2
}

if ! command -v apt-get >/dev/null; then
  without_browser "chromium is not installed and apt-get is not available (install Debian's chromium)"
fi
if ! as_root true; then
  without_browser "chromium is not installed and apt-get needs root or passwordless sudo (install Debian's chromium)"
fi

log "chromium is not installed; installing it from Debian's packages"
if ! apt_get install -y --no-install-recommends chromium 2>/dev/null; then
  if ! apt_get update || ! apt_get install -y --no-install-recommends chromium; then
    without_browser "could not install chromium with apt-get (is the network reachable?)"
  fi
fi
if ! command -v chromium >/dev/null; then
  without_browser "chromium was installed but is not on PATH"
fi
log "installed $(chromium --version 2>/dev/null | head -n 1)"
finish
