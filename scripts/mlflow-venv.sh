#!/usr/bin/env bash
# Install MLflow 3 into its own virtualenv, .venv-mlflow, for the benchmark that
# compares Ketch's Model Registry with MLflow's (benchmarks/registry_vs_mlflow.py):
#
#   scripts/mlflow-venv.sh        # install if needed; prints the venv's python
#
# MLflow is a peer measured against Ketch, never one of Ketch's dependencies, so it
# stays out of Ketch's virtualenv. Running it again does nothing while the venv's
# MLflow imports. MLFLOW_SPEC overrides what pip installs (default 'mlflow>=3,<4').
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-mlflow"
SPEC="${MLFLOW_SPEC:-mlflow>=3,<4}"
PYTHON="${MLFLOW_VENV_PYTHON:-python3}"

log() { echo "mlflow-venv: $*" >&2; }

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import mlflow, sys; sys.exit(int(mlflow.__version__.split(".")[0]) != 3)' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"  # made by an interpreter that is gone
fi
log "installing $SPEC into $VENV (with $PYTHON); this takes a minute or two"
started=$SECONDS
if ! "$PYTHON" -m venv "$VENV" >&2; then
  log "could not make the virtualenv $VENV with $PYTHON -m venv (is python3-venv installed?)"
  exit 1
fi
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2; then
  log "pip could not install '$SPEC' into $VENV (is the package index reachable?)"
  exit 1
fi
log "installed MLflow $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)') in $((SECONDS - started))s"
echo "$VENV/bin/python"
