#!/usr/bin/env bash
# Make sure OpenMPI's `mpirun` is on this machine for Ketch's MPIJob tests, then
# run a command.
#
#   scripts/ci-mpi.sh .venv/bin/pytest -n auto   # install OpenMPI if needed, run the tests
#   scripts/ci-mpi.sh                            # only install it (exit 1 when it cannot be had)
#
# OpenMPI (`openmpi-bin`) is installed from Debian's packages, non-interactively,
# when `mpirun` is missing and this script may use apt-get (as root, or through
# sudo without a password). Running it again does nothing once `mpirun` is there.
# When OpenMPI cannot be had, the command still runs and the reason is printed
# (the real-MPI tests then skip and say why). KETCH_TEST_MPI=off skips the
# installation on purpose.
set -euo pipefail

log() { echo "ci-mpi: $*" >&2; }

COMMAND=("$@")

finish() {
  # Run the command (its exit status is this script's), or report whether mpirun is here.
  if [[ ${#COMMAND[@]} -gt 0 ]]; then exec "${COMMAND[@]}"; fi
  if command -v mpirun >/dev/null; then exit 0; fi
  exit 1
}

without_mpi() {
  log "real-MPI tests will be skipped: $*"
  finish
}

case "${KETCH_TEST_MPI:-}" in
  off|0|false|no) without_mpi "KETCH_TEST_MPI=${KETCH_TEST_MPI}" ;;
esac

if command -v mpirun >/dev/null; then
  finish
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120 "$@" </dev/null >&2
}

if ! command -v apt-get >/dev/null; then
  without_mpi "mpirun is not installed and apt-get is not available (install OpenMPI's openmpi-bin)"
fi

if ! as_root true; then
  without_mpi "mpirun is not installed and apt-get needs root or passwordless sudo (install OpenMPI's openmpi-bin)"
fi

log "mpirun is not installed; installing openmpi-bin from Debian's packages"
# The package lists may already know openmpi-bin: try without an update first.
if ! apt_get install -y --no-install-recommends openmpi-bin 2>/dev/null; then
  if ! apt_get update || ! apt_get install -y --no-install-recommends openmpi-bin; then
    without_mpi "could not install openmpi-bin with apt-get (is the network reachable?)"
  fi
fi

if ! command -v mpirun >/dev/null; then
  without_mpi "openmpi-bin was installed but mpirun is not on PATH"
fi
log "installed $(mpirun --version 2>/dev/null | head -n 1)"
finish
