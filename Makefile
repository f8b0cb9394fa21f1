# Ketch developer tasks. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ketch-installed
PYTEST_ARGS ?=

.PHONY: install test demo bench lint

install: $(STAMP)

# Re-run the install whenever pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# The CPU build of PyTorch (a local wheel here; a bare `torch` would pull CUDA):
	@# the TorchScript serving runtime's tests use it and skip without it.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 \
		|| echo "make install: torch==2.13.0 (CPU) not installed; PyTorch tests will skip"
	@touch $(STAMP)

# Installs OpenMPI (`mpirun`) for the real-MPI tests and Debian's Chromium for the
# browser tests, starts a throwaway PostgreSQL for the PostgreSQL-backed tests, and
# installs the Kubernetes-based SDKs (kubernetes, kserve, kubeflow-katib, kubeflow) in
# their own virtualenv (.venv-k8s-clients) for tests/e2e/kubernetes, when they can be
# had (KETCH_TEST_MPI=off, KETCH_TEST_BROWSER=off, KETCH_TEST_POSTGRES=off and
# KETCH_TEST_K8S_CLIENTS=off skip them); otherwise those tests skip and say why.
# pytest exit 5 means "no tests collected": reported, not treated as a failure.
test: $(STAMP)
	@status=0; scripts/k8s-clients.sh scripts/ci-mpi.sh scripts/ci-postgres.sh scripts/ci-chromium.sh $(BIN)/pytest -n auto -rs $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests"; status=0; fi; \
	exit $$status

# The platform tour (`ketch demo`): installs only what it needs (ketch[demo]), keeps its
# server's state in .ketch-demo, serves until Ctrl-C (exits once done without a terminal).
DEMO_STAMP := $(VENV)/.ketch-demo-installed

$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/ketch demo --home .ketch-demo

# Each script runs Ketch and its peer side by side and prints the ratio.
bench: $(STAMP)
	$(BIN)/python benchmarks/pipelines_vs_kfp_local.py
	$(BIN)/python benchmarks/parallelfor_200.py
	$(BIN)/python benchmarks/kfp_client_api.py
	$(BIN)/python benchmarks/registry_vs_mlflow.py
	$(BIN)/python benchmarks/serving_vs_mlserver.py
	$(BIN)/python benchmarks/inferenceservice_vs_mlserver.py
	$(BIN)/python benchmarks/tuning_vs_raytune.py
	$(BIN)/python benchmarks/training_start.py
	$(BIN)/python benchmarks/notebook_start.py
	$(BIN)/python benchmarks/notebook_memory.py
	$(BIN)/python benchmarks/training_vs_torchrun.py
	$(BIN)/python benchmarks/ray_backend.py
	$(BIN)/python benchmarks/hardening_overhead.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/dashboard_vs_mlflow.py
	$(BIN)/python benchmarks/dashboard_graph.py

# The rules of ARCHITECTURE.md: style and formatting (ruff), types (mypy, 0 errors on
# src/), layers and independent capabilities (import-linter's contracts in
# pyproject.toml), no import cycles and no private names imported across modules.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_imports.py
