"""A Notebook on a real ``ketch up`` with a real JupyterLab: Kubeflow's example manifest
is applied, becomes Ready, answers through Ketch's proxy, runs ``1+1`` in a kernel over
the proxied websocket, stops with ``kubeflow-resource-stopped`` and starts again with
its workspace kept, refuses its port to callers without its token, and stops when
deleted. The tests that change the notebook run last (in file order: with xdist each
worker has a server of its own)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notebooks.helpers import (
    events,
    example_notebook,
    execute,
    path,
    requires_jupyterlab,
    running,
    server_pid,
    server_port,
    start_kernel,
    status,
    wait_ready,
)
from tests.server.fixtures import DATABASES, serve_on
from tests.server.helpers import Server, assert_status
from tests.waiting import wait_for

pytestmark = [requires_jupyterlab, pytest.mark.timeout(300)]

NS, NAME = "nb-team", "scipy"
PREFIX = f"/notebook/{NS}/{NAME}/"


@pytest.fixture(scope="module", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``ketch up`` on SQLite, and on PostgreSQL when one is configured."""
    yield from serve_on(request.param, tmp_path_factory.mktemp(f"ketch-nb-{request.param}"))


@pytest.fixture(scope="module")
def home(server: Server) -> Path:
    return server.home


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def notebook(http: httpx.Client) -> str:
    made = http.post(path(NS), json=example_notebook(NAME, NS))
    assert made.status_code == 201, made.text
    wait_ready(http, NS, NAME)
    return NAME


def test_a_bad_manifest_is_refused_with_its_field(http: httpx.Client) -> None:
    bad = example_notebook("bad", NS)
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "nowhere"
    message = assert_status(http.post(path(NS), json=bad), 422, "Invalid")
    assert "spec.template.spec.containers[0].volumeMounts[0].name" in message
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    message = assert_status(http.post(path(NS), json=bad), 422, "Invalid")
    assert "spec.template.spec.containers[0].image" in message
    empty = example_notebook("bad", NS)
    empty["spec"]["template"]["spec"]["containers"] = []
    message = assert_status(http.post(path(NS), json=empty), 422, "Invalid")
    assert "spec.template.spec.containers" in message
    assert http.get(path(NS, "bad")).status_code == 404


def test_ready_status_pod_and_proxy(http: httpx.Client, notebook: str, home: Path) -> None:
    found = status(http, NS, notebook)
    assert found["readyReplicas"] == 1
    assert "running" in found["containerState"]
    assert {c["type"]: c["status"] for c in found["conditions"]}["Ready"] == "True"
    reasons = [e["reason"] for e in events(http, NS, notebook)]
    assert {"Started", "ImageNotUsed", "Ready"} <= set(reasons)

    answer = http.get(f"{PREFIX}api/status")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) >= {"connections", "kernels", "last_activity", "started"}
    assert http.get(f"/notebook/{NS}/{notebook}").headers["location"] == PREFIX

    pod = http.get(f"/api/v1/namespaces/{NS}/pods/{notebook}-0").json()
    assert pod["metadata"]["labels"]["notebook-name"] == notebook
    assert pod["metadata"]["labels"]["statefulset"] == notebook
    assert pod["status"]["phase"] == "Running"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "kubeflownotebookswg/jupyter-scipy:v1.8.0"
    assert {"name": "NB_PREFIX", "value": PREFIX.rstrip("/")} in container["env"]
    # the workspace claim is the server's root, a named folder under KETCH_HOME
    workspace = home / "volumes" / NS / f"{notebook}-workspace"
    assert container["workingDir"] == str(workspace)
    # the token is in no manifest, pod or log
    token_words = ("IdentityProvider.token", "JUPYTER_TOKEN", "token=")
    manifest = http.get(path(NS, notebook)).text + str(pod)
    log = (home / "logs" / "notebooks" / NS / notebook / "server.log").read_text()
    for word in token_words[:2]:
        assert word not in manifest
    assert "token=..." in log or "token=" not in log


def test_the_port_refuses_callers_without_the_token(http: httpx.Client, notebook: str) -> None:
    port = server_port(http, NS, notebook)
    direct = httpx.get(f"http://127.0.0.1:{port}{PREFIX}api/status")
    assert direct.status_code == 403
    forged = httpx.get(
        f"http://127.0.0.1:{port}{PREFIX}api/status", headers={"Authorization": "token guess"}
    )
    assert forged.status_code == 403


def test_jupyters_cookies_reach_each_caller_and_no_one_else(notebook: str, server: Server) -> None:
    with server.client() as first, server.client() as second:
        page = first.get(f"{PREFIX}lab")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        set_cookies = page.headers.get_list("set-cookie")
        assert any(c.startswith("_xsrf=") for c in set_cookies), set_cookies
        again = second.get(f"{PREFIX}lab")
        # the proxy kept none of the first caller's cookies to send on the second's behalf
        assert any(c.startswith("_xsrf=") for c in again.headers.get_list("set-cookie"))
        assert first.cookies.get("_xsrf") != second.cookies.get("_xsrf")


def test_a_kernel_runs_code_and_the_workspace_outlives_a_stop(
    server: Server, http: httpx.Client, notebook: str, home: Path
) -> None:
    # one test, in order: the module's tests may run in several workers, each with its
    # own server, and only this one changes the notebook
    kernel = start_kernel(http, PREFIX)
    assert execute(server.url, PREFIX, kernel, "1+1") == "2"
    # a file written from the kernel lands in the workspace
    written = "open('kept.txt', 'w').write('kept'); import os; os.getcwd()"
    assert "workspace" in execute(server.url, PREFIX, kernel, written)
    listed = http.get(f"{PREFIX}api/contents").json()
    assert "kept.txt" in {item["name"] for item in listed["content"]}

    pid = server_pid(http, NS, notebook)
    assert running(pid)
    stop = {"metadata": {"annotations": {"kubeflow-resource-stopped": "2026-01-01T00:00:00Z"}}}
    merge = {"content-type": "application/merge-patch+json"}
    assert http.patch(path(NS, notebook), json=stop, headers=merge).status_code == 200
    wait_for(lambda: not running(pid), 30, what="the stopped notebook's server to end")
    wait_for(lambda: status(http, NS, notebook).get("readyReplicas") == 0, 30)
    assert http.get(f"/api/v1/namespaces/{NS}/pods/{notebook}-0").status_code == 404
    stopped = http.get(f"{PREFIX}api/status")
    assert stopped.status_code == 503 and "stopped" in stopped.json()["message"]
    assert (home / "volumes" / NS / f"{notebook}-workspace" / "kept.txt").exists()

    start = {"metadata": {"annotations": {"kubeflow-resource-stopped": None}}}
    assert http.patch(path(NS, notebook), json=start, headers=merge).status_code == 200
    wait_ready(http, NS, notebook)
    pid_again = server_pid(http, NS, notebook)
    assert pid_again != pid
    kept = http.get(f"{PREFIX}api/contents/kept.txt").json()
    assert kept["content"] == "kept"

    assert http.delete(path(NS, notebook)).status_code == 200
    wait_for(lambda: not running(pid_again), 30, what="the deleted notebook's server to end")
    assert http.get(f"{PREFIX}api/status").status_code == 404


@pytest.mark.parametrize(
    ("name", "image", "program"),
    [
        ("rstudio", "kubeflownotebookswg/rstudio-tidyverse:v1.8.0", "rserver"),
        ("vscode", "kubeflownotebookswg/codeserver-python:v1.8.0", "code-server"),
    ],
)
def test_a_server_that_is_not_installed_is_refused_with_the_reason(
    http: httpx.Client, name: str, image: str, program: str
) -> None:
    if shutil.which(program):
        pytest.skip(f"{program} is installed here")
    manifest = example_notebook(name, NS)
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = image
    del manifest["metadata"]["annotations"]["notebooks.kubeflow.org/server-type"]
    assert http.post(path(NS), json=manifest).status_code == 201

    def refused() -> dict[str, str] | None:
        conditions = status(http, NS, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    condition = wait_for(refused, 30, what="the PodScheduled condition")
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert f"{program} is not installed" in condition["message"]
    found = status(http, NS, name)
    assert found["readyReplicas"] == 0
    assert found["containerState"]["waiting"]["reason"] == "ServerNotInstalled"
    warned = [e for e in events(http, NS, name) if e["reason"] == "ServerNotInstalled"]
    assert warned and warned[0]["type"] == "Warning" and program in warned[0]["message"]
    assert http.get(f"/notebook/{NS}/{name}/").status_code == 503
    assert http.delete(path(NS, name)).status_code == 200


def test_not_found_notebook_answers_404(http: httpx.Client) -> None:
    missing = http.get("/notebook/nb-team/none/api/status")
    assert missing.status_code == 404 and "not found" in missing.json()["message"]
