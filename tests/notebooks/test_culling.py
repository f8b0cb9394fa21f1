"""Culling as Kubeflow's culler does it: the algorithm on a notebook's annotations, and
a real JupyterLab on a ``ketch up`` whose culler looks every 0.6 s and stops a notebook
after 9 s without kernel activity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.timestamps import parse_time
from ketch.notebooks import culling
from ketch.notebooks.settings import Culling
from tests.notebooks.helpers import (
    example_notebook,
    execute,
    path,
    requires_jupyterlab,
    running,
    server_pid,
    start_kernel,
    status,
    wait_ready,
)
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.waiting import wait_for

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Culling(enabled=True, idle_seconds=600, check_seconds=60)


def _stamp(moment: datetime) -> str:
    return culling.rfc3339(moment)


def test_settings_read_kubeflows_variables_in_minutes() -> None:
    assert Culling.from_env({}) == Culling(False, 1440 * 60, 60)
    read = Culling.from_env(
        {"ENABLE_CULLING": "true", "CULL_IDLE_TIME": "0.05", "IDLENESS_CHECK_PERIOD": "0.5"}
    )
    assert read.enabled and read.idle_seconds == pytest.approx(3) and read.check_seconds == 30
    bad = Culling.from_env({"ENABLE_CULLING": "yes", "CULL_IDLE_TIME": "soon"})
    assert not bad.enabled and bad.idle_seconds == 1440 * 60


def test_kernels_activity() -> None:
    idle = [
        {"execution_state": "idle", "last_activity": "2026-03-01T11:00:00.123Z"},
        {"execution_state": "idle", "last_activity": "2026-03-01T11:30:00Z"},
    ]
    assert culling.kernels_activity(idle, NOW) == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    busy = [*idle, {"execution_state": "busy", "last_activity": "2026-03-01T10:00:00Z"}]
    assert culling.kernels_activity(busy, NOW) == NOW
    assert culling.kernels_activity([], NOW) is None


def test_missing_annotations_start_now_and_checks_read_the_kernels() -> None:
    annotations: dict[str, str] = {}
    seen: list[int] = []

    def kernels() -> list[dict[str, Any]]:
        seen.append(1)
        return [{"execution_state": "idle", "last_activity": "2026-03-01T11:59:00Z"}]

    assert not culling.cull(annotations, SETTINGS, kernels, NOW)
    # both start now; the kernels are read once the check period has passed
    assert annotations == {
        culling.LAST_ACTIVITY: "2026-03-01T12:00:00Z",
        culling.LAST_CHECK: "2026-03-01T12:00:00Z",
    }
    later = NOW + timedelta(seconds=30)
    assert not culling.cull(annotations, SETTINGS, kernels, later)
    assert seen == [] and culling.due(annotations, SETTINGS, later) == 30
    checked = NOW + timedelta(seconds=60)
    assert not culling.cull(annotations, SETTINGS, kernels, checked)
    assert seen == [1]
    assert annotations == {
        culling.LAST_ACTIVITY: "2026-03-01T11:59:00Z",
        culling.LAST_CHECK: "2026-03-01T12:01:00Z",
    }


def test_no_kernels_or_no_answer_leave_the_activity_and_idle_notebooks_stop() -> None:
    start = _stamp(NOW - timedelta(minutes=9))
    annotations = {culling.LAST_ACTIVITY: start, culling.LAST_CHECK: start}
    assert not culling.cull(annotations, SETTINGS, lambda: None, NOW)
    assert annotations[culling.LAST_ACTIVITY] == start
    assert annotations[culling.LAST_CHECK] == _stamp(NOW)
    later = NOW + timedelta(minutes=2)
    assert culling.cull(annotations, SETTINGS, lambda: [], later)
    assert annotations["kubeflow-resource-stopped"] == _stamp(later)
    assert culling.clear(annotations)
    assert set(annotations) == {"kubeflow-resource-stopped"}


NS, NAME = "nb-cull", "idle"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        **SERVER_ENV,
        "ENABLE_CULLING": "true",
        "CULL_IDLE_TIME": "0.15",  # 9 s
        "IDLENESS_CHECK_PERIOD": "0.01",  # 0.6 s
    }
    home: Path = tmp_path_factory.mktemp("ketch-culling")
    started = Server(home, extra_env=env).start()
    try:
        yield started
    finally:
        started.stop()


def _annotations(http: httpx.Client) -> dict[str, str]:
    found: dict[str, str] = http.get(path(NS, NAME)).json()["metadata"].get("annotations") or {}
    return found


@requires_jupyterlab
@pytest.mark.timeout(240)
def test_kernel_activity_keeps_a_notebook_and_idleness_culls_it(server: Server) -> None:
    with server.client() as http:
        assert http.post(path(NS), json=example_notebook(NAME, NS)).status_code == 201
        wait_ready(http, NS, NAME)
        prefix = f"/notebook/{NS}/{NAME}/"
        kernel = start_kernel(http, prefix)
        before = datetime.now(UTC).replace(microsecond=0)
        assert execute(server.url, prefix, kernel, "import time; time.sleep(3); 1+1") == "2"
        pid = server_pid(http, NS, NAME)

        def active() -> bool:
            found = _annotations(http).get(culling.LAST_ACTIVITY)
            return bool(found) and parse_time(found) >= before

        wait_for(active, 30, what="the kernel's activity in notebooks.kubeflow.org/last-activity")
        last = parse_time(_annotations(http)[culling.LAST_ACTIVITY])
        wait_for(
            lambda: "kubeflow-resource-stopped" in _annotations(http),
            90,
            what="the idle notebook to be culled",
        )
        stopped = parse_time(_annotations(http)["kubeflow-resource-stopped"])
        assert stopped - last >= timedelta(seconds=8)  # CULL_IDLE_TIME, to the second
        wait_for(lambda: not running(pid), 30, what="the culled notebook's server to end")
        wait_for(lambda: status(http, NS, NAME).get("readyReplicas") == 0, 30)
        # a stopped notebook has no activity annotations (Kubeflow's culler removes them)
        wait_for(lambda: culling.LAST_ACTIVITY not in _annotations(http), 30)
        assert culling.LAST_CHECK not in _annotations(http)
        reasons = {
            e["reason"]
            for e in http.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
            if e["involvedObject"]["name"] == NAME
        }
        assert {"Culled", "Stopped"} <= reasons
