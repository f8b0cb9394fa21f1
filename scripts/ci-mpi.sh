#!/usr/bin/env bash
# Make sure OpenMPI's `mpirun` is on this machine for Ketch's MPIJob tests, then
# run a command (see ci-debian-package.sh):
#
#   scripts/ci-mpi.sh .venv/bin/pytest -n auto   # install OpenMPI if needed, run the tests
#   scripts/ci-mpi.sh                            # only install it (exit 1 when it cannot be had)
#
# KETCH_TEST_MPI=off skips the installation on purpose.
exec "$(dirname "${BASH_SOURCE[0]}")/ci-debian-package.sh" mpirun openmpi-bin KETCH_TEST_MPI "$@"
