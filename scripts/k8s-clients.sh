#!/usr/bin/env bash
# Install the Kubernetes-based SDKs (kubernetes, kserve, kubeflow-katib, kubeflow)
# into their own virtualenv, .venv-k8s-clients, for the end-to-end tests that drive
# a real `ketch up` with them (tests/e2e/kubernetes/), then run a command:
#
#   scripts/k8s-clients.sh .venv/bin/pytest -n auto   # install if needed, run the tests
#   scripts/k8s-clients.sh                            # only install (exit 1 when it cannot)
#
# The versions are pinned in tests/e2e/kubernetes/requirements.txt; they conflict with
# Ketch's own dependencies, so they stay out of Ketch's virtualenv. Running it again
# does nothing while the requirements file and the interpreter are unchanged. When
# the SDKs cannot be installed, COMMAND still runs with KETCH_TEST_K8S_CLIENTS_SKIP
# set to the reason, and those tests skip and say it. KETCH_TEST_K8S_CLIENTS=off
# skips the installation on purpose.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-k8s-clients"
REQUIREMENTS="$ROOT/tests/e2e/kubernetes/requirements.txt"
STAMP="$VENV/.ketch-requirements"
COMMAND=("$@")
unset KETCH_TEST_K8S_CLIENTS_SKIP

log() { echo "k8s-clients: $*" >&2; }

finish() {
  if [[ ${#COMMAND[@]} -gt 0 ]]; then exec "${COMMAND[@]}"; fi
  if [[ -n "${KETCH_TEST_K8S_CLIENTS_SKIP:-}" ]]; then exit 1; fi
  exit 0
}

without() {
  export KETCH_TEST_K8S_CLIENTS_SKIP="$*"
  log "the tests that drive Ketch with the Kubernetes SDKs will be skipped: $*"
  finish
}

case "${KETCH_TEST_K8S_CLIENTS:-}" in
  off|0|false|no) without "KETCH_TEST_K8S_CLIENTS=${KETCH_TEST_K8S_CLIENTS}" ;;
esac

# kserve 0.15.2 supports Python 3.9 to 3.12: take the first interpreter in that range.
PYTHON=""
for candidate in ${KETCH_K8S_CLIENTS_PYTHON:-} python3 python3.12 python3.11 python3.10; do
  if command -v "$candidate" >/dev/null \
    && "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))' 2>/dev/null; then
    PYTHON=$(command -v "$candidate")
    break
  fi
done
if [[ -z "$PYTHON" ]]; then
  without "no Python 3.10 to 3.12 on this machine (the pinned kserve SDK supports up to 3.12; set KETCH_K8S_CLIENTS_PYTHON)"
fi

WANTED="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" ]]; then
  finish
fi

log "installing the pinned SDKs into $VENV (with $PYTHON)"
started=$SECONDS
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"  # made by an interpreter that is gone
fi
rm -f "$STAMP"
if ! "$PYTHON" -m venv "$VENV" >&2; then
  without "could not make the virtualenv $VENV with $PYTHON -m venv"
fi
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2; then
  without "pip could not install $REQUIREMENTS (is the package index reachable?)"
fi
if ! "$VENV/bin/python" -m pip check >&2; then
  without "the SDKs installed from $REQUIREMENTS do not agree with each other (pip check)"
fi
if ! "$VENV/bin/python" -c '
from kubernetes import client, config, watch
from kserve import KServeClient
from kubeflow.katib import KatibClient
from kubeflow.trainer import TrainerClient
' >&2; then
  without "the SDKs installed in $VENV cannot be imported"
fi
echo "$WANTED" >"$STAMP"
log "installed in $((SECONDS - started))s: $(grep -E '^[a-z]' "$REQUIREMENTS" | tr '\n' ' ')"
finish
