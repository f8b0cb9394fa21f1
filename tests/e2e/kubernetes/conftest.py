"""A real ``ketch up`` for the Kubernetes SDK tests, the kubeconfig ``ketch
kubeconfig`` writes for it, and the runner of snippets in the SDKs' virtualenv."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kubernetes.sdk import Sdk, unavailable
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server, base_env, ketch_command


@pytest.fixture(scope="session")
def k8s_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``ketch up`` on a free port with a KETCH_HOME of its own."""
    server = Server(tmp_path_factory.mktemp("k8s-home"), extra_env=SERVER_ENV).start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"the server exited with {code}:\n{server.output()[-4000:]}"


@pytest.fixture(scope="session")
def kubeconfig(k8s_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubeconfig ``ketch kubeconfig --output`` writes for ``k8s_server``."""
    folder = tmp_path_factory.mktemp("k8s-kubeconfig")
    path = folder / "config"
    env = {**base_env(folder / "client-home"), "KETCH_URL": k8s_server.url}
    result = subprocess.run(
        [*ketch_command(), "kubeconfig", "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="session")
def sdk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sdk:
    """Runs snippets with the SDKs against ``k8s_server``; skips, before starting the
    server, when they are not installed (scripts/k8s-clients.sh says why)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    kubeconfig: Path = request.getfixturevalue("kubeconfig")
    return Sdk(kubeconfig=kubeconfig, home=tmp_path_factory.mktemp("k8s-sdk-home"))


@pytest.fixture(scope="session")
def iris_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A scikit-learn model (iris) saved as KServe's sklearn server loads it."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    folder = tmp_path_factory.mktemp("k8s-iris") / "iris"
    folder.mkdir()
    joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), folder / "model.joblib")
    return f"file://{folder}"
