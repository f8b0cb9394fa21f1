"""Restart safety: a ``ketch up`` killed with SIGKILL leaves no notebook server behind,
and the next one starts every notebook that is not stopped again (a stopped one stays
stopped), its status and pod written anew."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.notebooks.helpers import (
    example_notebook,
    path,
    requires_jupyterlab,
    running,
    server_pid,
    status,
    wait_ready,
)
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.waiting import wait_for

pytestmark = [requires_jupyterlab, pytest.mark.timeout(300)]

NS = "nb-restart"


def test_a_killed_server_starts_its_notebooks_again(tmp_path: Path) -> None:
    first = Server(tmp_path, extra_env=SERVER_ENV).start()
    try:
        with first.client() as http:
            assert http.post(path(NS), json=example_notebook("runs", NS)).status_code == 201
            stopped = example_notebook("rests", NS)
            stopped["metadata"]["annotations"]["kubeflow-resource-stopped"] = "2026-01-01T00:00:00Z"
            assert http.post(path(NS), json=stopped).status_code == 201
            wait_ready(http, NS, "runs")
            pid = server_pid(http, NS, "runs")
    finally:
        first.stop(signal.SIGKILL)
    wait_for(lambda: not running(pid), 30, what="the killed server's notebook to end")

    second = Server(tmp_path, extra_env=SERVER_ENV).start()
    try:
        with second.client() as http:
            wait_ready(http, NS, "runs")
            assert server_pid(http, NS, "runs") != pid
            assert http.get(f"/notebook/{NS}/runs/api/status").status_code == 200
            assert status(http, NS, "rests").get("readyReplicas", 0) == 0
            assert http.get(f"/api/v1/namespaces/{NS}/pods/rests-0").status_code == 404
            pods = http.get(f"/api/v1/namespaces/{NS}/pods").json()["items"]
            assert [p["metadata"]["name"] for p in pods] == ["runs-0"]
            pid = server_pid(http, NS, "runs")
    finally:
        assert second.stop() == 0
    assert not running(pid)
