"""``ketch notebooks`` against a real ``ketch up``: create (as the web app's form does),
list, open (the URL; with --browser, the browser when there is a display, never
waiting for it), stop and start, delete, and ``ketch get notebooks`` showing the same
columns. Each test's namespace has a compute quota no notebook fits in, so the
notebooks it makes wait (ExceededQuota) and no server is started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.helpers import Ketch, bad, ok
from tests.server.helpers import Server, base_env, ketch_command
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

NOTEBOOKS = "/apis/kubeflow.org/v1/namespaces/{ns}/notebooks"


@pytest.fixture
def quota_ns(client: httpx.Client, ns: str) -> str:
    """``ns``, as a profile whose quota no notebook fits in."""
    profile = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": ns},
        "spec": {
            "owner": {"kind": "User", "name": "someone@example.com"},
            "resourceQuotaSpec": {"hard": {"requests.cpu": "1m"}},
        },
    }
    made = client.post("/apis/kubeflow.org/v1/profiles", json=profile)
    assert made.status_code == 201, made.text
    return ns


def _stored(client: httpx.Client, ns: str, name: str) -> dict[str, Any]:
    response = client.get(NOTEBOOKS.format(ns=ns) + f"/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_create_list_open_stop_start_delete(
    ketch: Ketch, client: httpx.Client, server: Server, quota_ns: str
) -> None:
    ns = quota_ns
    made = ok(
        ketch(
            "notebooks",
            "create",
            "lab",
            "-n",
            ns,
            "--cpu",
            "0.25",
            "--memory",
            "512Mi",
            "--configuration",
            "access-ml-pipeline",
        )
    )
    assert f"notebook/lab created in namespace {ns}" in made
    url = f"{server.url}/notebook/{ns}/lab/"
    assert f"URL: {url}" in made
    stored = _stored(client, ns, "lab")
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "0.25", "memory": "512Mi"}
    assert container["resources"]["limits"] == {"cpu": "0.3", "memory": "614.4Mi"}
    assert container["image"].endswith("/jupyter-scipy:latest")
    assert stored["metadata"]["labels"]["access-ml-pipeline"] == "true"
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/home/jovyan", "/dev/shm"]

    def waiting_for_quota() -> dict[str, Any] | None:
        rows = json.loads(ok(ketch("notebooks", "list", "-n", ns, "-o", "json")))["notebooks"]
        return rows[0] if rows[0]["status"]["message"].startswith("ExceededQuota") else None

    row = wait_for(waiting_for_quota, 30, 0.2, "the notebook waiting for its quota")
    assert row["status"]["phase"] == "warning" and row["image"] == container["image"]
    assert "MESSAGE" in ok(ketch("notebooks", "list", "-n", ns, "-o", "wide")).splitlines()[0]
    table = ok(ketch("notebooks", "list", "-n", ns)).splitlines()
    assert table[0].split() == ["NAME", "STATUS", "IMAGE", "CPU", "MEMORY", "AGE", "URL"]
    assert url in table[1]
    short = table[1].split()
    assert short[:5] == ["lab", "warning", "jupyter-scipy:latest", "0.25", "512Mi"]
    got = ok(ketch("get", "notebooks", "-n", ns)).splitlines()
    assert got[0].split()[:3] == ["NAME", "STATUS", "IMAGE"]
    assert got[1].split()[:3] == ["lab", "warning", "jupyter-scipy:latest"]

    opened = ketch("notebooks", "open", "lab", "-n", ns)
    assert ok(opened) == url + "\n"
    assert "not ready (warning: ExceededQuota" in opened.stderr

    assert ok(ketch("notebooks", "stop", "lab", "-n", ns)).strip() == "notebook/lab stopped"
    assert "kubeflow-resource-stopped" in _stored(client, ns, "lab")["metadata"]["annotations"]
    assert ok(ketch("notebooks", "list", "-n", ns)).splitlines()[1].split()[1] == "stopped"
    again = ok(ketch("notebooks", "stop", "lab", "-n", ns))
    assert again.strip() == "notebook/lab is stopped already"
    assert ok(ketch("notebooks", "start", "lab", "-n", ns)).strip() == "notebook/lab started"
    assert "kubeflow-resource-stopped" not in _stored(client, ns, "lab")["metadata"]["annotations"]

    assert ok(ketch("notebooks", "delete", "lab", "-n", ns)).strip() == "notebook/lab deleted"
    listed = ketch("notebooks", "list", "-n", ns)
    assert ok(listed) == "" and f"No notebooks found in namespace '{ns}'" in listed.stderr
    bad(ketch("notebooks", "stop", "lab", "-n", ns), 2, "not found")

    # made again under its name, it mounts the workspace claim it had
    ok(ketch("notebooks", "create", "lab", "-n", ns))
    volumes = _stored(client, ns, "lab")["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {
        "name": "lab-workspace",
        "persistentVolumeClaim": {"claimName": "lab-workspace"},
    }


def test_wait_shows_progress_and_times_out_saying_why(ketch: Ketch, quota_ns: str) -> None:
    waited = ketch(
        "notebooks", "create", "slow", "-n", quota_ns, "--no-workspace", "--wait", "--timeout", "5"
    )
    assert waited.returncode == 1, (waited.stdout, waited.stderr)
    assert "notebook/slow created" in waited.stdout
    progress = [line for line in waited.stderr.splitlines() if line.startswith("[")]
    assert progress and all(
        "notebook/slow waiting" in line or "notebook/slow warning" in line for line in progress
    )
    last = waited.stderr.splitlines()[-1]
    assert last.startswith("error: timed out after 5s waiting for notebook/slow to be ready")
    assert f"ketch describe notebook slow -n {quota_ns}" in last


def test_bad_input_is_refused_naming_it(ketch: Ketch, ns: str) -> None:
    bad(ketch("notebooks", "create", "Not_A_Name", "-n", ns), 2, "NAME")
    bad(ketch("notebooks", "create", "x", "-n", ns, "--cpu", "lots"), 2, "cpu")
    bad(ketch("notebooks", "create", "x", "-n", ns, "--type", "emacs"), 2, "--type")
    bad(ketch("notebooks", "create", "x", "-n", "Bad_NS"), 2, "--namespace")
    bad(ketch("notebooks", "open", "absent", "-n", ns), 2, "not found")


def _open(
    server: Server, tmp_path: Path, ns: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    run_env = {**base_env(tmp_path / "client-home"), "KETCH_URL": server.url, **env}
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        if key not in env:
            run_env.pop(key, None)
    return subprocess.run(
        [*ketch_command(), "notebooks", "open", "lab", "-n", ns, "--browser"],
        capture_output=True,
        text=True,
        timeout=60,
        env=run_env,
        stdin=subprocess.DEVNULL,
    )


def test_open_starts_the_browser_only_with_a_display_and_never_waits(
    ketch: Ketch, server: Server, quota_ns: str, tmp_path: Path
) -> None:
    ok(ketch("notebooks", "create", "lab", "-n", quota_ns, "--no-workspace"))
    url = f"{server.url}/notebook/{quota_ns}/lab/"
    headless = _open(server, tmp_path, quota_ns, {})
    assert ok(headless) == url + "\n"
    assert "no display here" in headless.stderr
    # a display, and a browser command that records what it was asked to open and
    # would keep the terminal: it is started on its own, not waited for
    seen = tmp_path / "seen.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import os, sys, time\n"
        f"open({str(seen)!r}, 'w').write(f'{{os.getpid()}} {{sys.argv[1]}}')\n"
        "time.sleep(120)\n"
    )
    browser.chmod(0o755)
    launcher = tmp_path / "browser"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {browser} "$@"\n')
    launcher.chmod(0o755)
    shown = _open(server, tmp_path, quota_ns, {"DISPLAY": ":99", "BROWSER": str(launcher)})
    try:
        assert ok(shown) == url + "\n"
        wait_for(lambda: seen.exists() and " " in seen.read_text(), 30, 0.1, "the browser")
        pid, asked = seen.read_text().split(" ", 1)
        assert asked == url
    finally:
        if seen.exists() and " " in seen.read_text():
            os.kill(int(seen.read_text().split(" ", 1)[0]), signal.SIGTERM)
