#!/usr/bin/env bash
# Make sure a program from Debian's packages is on this machine for some of Ketch's
# tests, then run a command. The thin scripts beside it name the program:
#
#   scripts/ci-debian-package.sh PROGRAM PACKAGE SWITCH [COMMAND...]
#
# PACKAGE is installed from Debian's packages, non-interactively, when PROGRAM is
# missing and this script may use apt-get (as root, or through sudo without a
# password). Running it again does nothing once PROGRAM is there. When it cannot be
# had, COMMAND still runs and the reason is printed (the tests that need it then
# skip and say why). Setting the environment variable SWITCH to off skips the
# installation on purpose. Without COMMAND, the exit status says whether PROGRAM is
# here.
set -euo pipefail

PROGRAM=$1 PACKAGE=$2 SWITCH=$3
shift 3
COMMAND=("$@")

log() { echo "ci-${PROGRAM}: $*" >&2; }

finish() {
  if [[ ${#COMMAND[@]} -gt 0 ]]; then exec "${COMMAND[@]}"; fi
  if command -v "$PROGRAM" >/dev/null; then exit 0; fi
  exit 1
}

without() {
  log "tests that need ${PROGRAM} will be skipped: $*"
  finish
}

case "${!SWITCH:-}" in
  off|0|false|no) without "${SWITCH}=${!SWITCH}" ;;
esac

if command -v "$PROGRAM" >/dev/null; then
  finish
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120 "$@" </dev/null >&2
}

if ! command -v apt-get >/dev/null; then
  without "${PROGRAM} is not installed and apt-get is not available (install Debian's ${PACKAGE})"
fi
if ! as_root true; then
  without "${PROGRAM} is not installed and apt-get needs root or passwordless sudo (install Debian's ${PACKAGE})"
fi

log "${PROGRAM} is not installed; installing ${PACKAGE} from Debian's packages"
# The package lists may already know the package: try without an update first.
if ! apt_get install -y --no-install-recommends "$PACKAGE" 2>/dev/null; then
  if ! apt_get update || ! apt_get install -y --no-install-recommends "$PACKAGE"; then
    without "could not install ${PACKAGE} with apt-get (is the network reachable?)"
  fi
fi
if ! command -v "$PROGRAM" >/dev/null; then
  without "${PACKAGE} was installed but ${PROGRAM} is not on PATH"
fi
log "installed $("$PROGRAM" --version 2>/dev/null | head -n 1)"
finish
