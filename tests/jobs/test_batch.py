"""Kubernetes ``batch/v1`` Jobs through a real ``ketch up``: real processes, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.conftest import condition
from tests.server.helpers import Server, assert_error, base_env, ketch_command
from tests.waiting import poll, wait_for

PY = sys.executable
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"


@pytest.fixture
def jobs_ns(client: httpx.Client) -> Iterator[str]:
    """A namespace of the test's own; every Job left in it is deleted (its pods stop)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for item in client.get(JOBS.format(ns=name)).json().get("items", []):
        client.delete(f"{JOBS.format(ns=name)}/{item['metadata']['name']}")


def job(name: str, command: list[str], restart: str = "Never", **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "python:3.12", "command": command}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "test"}},
        "spec": {
            "template": {"spec": {"containers": [container], "restartPolicy": restart}},
            **spec,
        },
    }


def create(client: httpx.Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    response = client.post(JOBS.format(ns=ns), json=manifest)
    assert response.status_code == 201, response.text
    return dict(response.json())


def get(client: httpx.Client, ns: str, name: str) -> dict[str, Any]:
    response = client.get(f"{JOBS.format(ns=ns)}/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_until(
    client: httpx.Client, ns: str, name: str, type_: str, timeout: float = 60.0
) -> dict[str, Any]:
    """The Job once condition ``type_`` is True (fails early on another terminal one)."""
    current: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal current
        current = get(client, ns, name)
        found = condition(current, type_)
        if found and found["status"] == "True":
            return True
        for other in {"Complete", "Failed"} - {type_}:
            ended = condition(current, other)
            if ended and ended["status"] == "True":
                raise AssertionError(f"{name} ended {other}: {current['status']}")
        return False

    if not poll(reached, timeout):
        raise AssertionError(f"{name} never reached {type_}: {current.get('status')}")
    return current


def wait_status(
    client: httpx.Client, ns: str, name: str, check: Any, timeout: float = 60.0
) -> dict[str, Any]:
    current: dict[str, Any] = {}

    def matched() -> bool:
        nonlocal current
        current = get(client, ns, name)
        return bool(check(current.get("status") or {}))

    if not poll(matched, timeout):
        raise AssertionError(f"{name}: status never matched: {current.get('status')}")
    return current


def reasons(client: httpx.Client, ns: str) -> list[str]:
    return [e["reason"] for e in client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    poll(lambda: not alive(pid), timeout)
    assert not alive(pid), f"process {pid} still runs"


def test_job_succeeds_with_kubernetes_status(client: httpx.Client, jobs_ns: str) -> None:
    create(client, jobs_ns, job("hello", ["python", "-c", "print('hello from a job')"]))
    done = wait_until(client, jobs_ns, "hello", "Complete")
    status = done["status"]
    complete = condition(done, "Complete")
    assert complete is not None
    assert complete["reason"] == "CompletionsReached"
    assert complete["message"] == "Reached expected number of succeeded pods"
    assert complete["lastProbeTime"] and complete["lastTransitionTime"]
    assert status["succeeded"] == 1 and status["ready"] == 0
    assert "active" not in status and "failed" not in status
    assert status["startTime"] <= status["completionTime"]
    assert list(status["logPaths"]) == ["hello-0"]
    assert "hello from a job" in Path(status["logPaths"]["hello-0"]).read_text()
    log = client.get(f"{JOBS.format(ns=jobs_ns)}/hello/log")
    assert log.status_code == 200 and "hello from a job" in log.text
    events = reasons(client, jobs_ns)
    assert {"SuccessfulCreate", "Completed", "ImageNotUsed"} <= set(events)
    listed = client.get(JOBS.format(ns=jobs_ns), params={"labelSelector": "app=test"}).json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["hello"]


CONCURRENCY = """
import os, sys, time
folder, me = sys.argv[1], os.environ.get("JOB_NAME_TAG", str(os.getpid()))
marker = os.path.join(folder, f"running-{os.getpid()}")
open(marker, "w").close()
seen = 0
for _ in range(20):
    seen = max(seen, len([f for f in os.listdir(folder) if f.startswith("running-")]))
    time.sleep(0.1)
os.remove(marker)
with open(os.path.join(folder, f"seen-{os.getpid()}"), "w") as out:
    out.write(str(seen))
"""


def test_completions_with_parallelism(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    script = tmp_path / "concurrency.py"
    script.write_text(CONCURRENCY)
    runs = tmp_path / "runs"
    runs.mkdir()
    manifest = job("par", ["python", str(script), str(runs)], completions=3, parallelism=2)
    create(client, jobs_ns, manifest)
    done = wait_until(client, jobs_ns, "par", "Complete", timeout=90)
    assert done["status"]["succeeded"] == 3
    assert sorted(done["status"]["logPaths"]) == ["par-0", "par-1", "par-2"]
    seen = [int(p.read_text()) for p in runs.glob("seen-*")]
    assert len(seen) == 3
    assert max(seen) == 2  # two pods ran at once, never three
    assert reasons(client, jobs_ns).count("SuccessfulCreate") == 3


def test_indexed_completions(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    code = (
        "import os, sys; open(sys.argv[1] + '/' + os.environ['JOB_COMPLETION_INDEX'], 'w').close()"
    )
    manifest = job(
        "idx",
        [PY, "-c", code, str(tmp_path)],
        completions=3,
        parallelism=3,
        completionMode="Indexed",
    )
    create(client, jobs_ns, manifest)
    done = wait_until(client, jobs_ns, "idx", "Complete")
    assert done["status"]["completedIndexes"] == "0-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]


FLAKY = """
import os, sys
flag = os.path.join(sys.argv[1], "tried")
if not os.path.exists(flag):
    open(flag, "w").close()
    print("first attempt fails")
    sys.exit(1)
print("second attempt works")
"""


def test_on_failure_restarts_in_place(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    create(client, jobs_ns, job("flaky", ["python", str(script), str(tmp_path)], "OnFailure"))
    done = wait_until(client, jobs_ns, "flaky", "Complete")
    status = done["status"]
    assert status["succeeded"] == 1 and "failed" not in status
    assert list(status["logPaths"]) == ["flaky-0"]  # the same pod, restarted
    text = client.get(f"{JOBS.format(ns=jobs_ns)}/flaky/log").text
    assert "first attempt fails" in text and "second attempt works" in text
    assert "Restarted" in reasons(client, jobs_ns)


def test_on_failure_backoff_limit(client: httpx.Client, jobs_ns: str) -> None:
    manifest = job("crash", ["python", "-c", "raise SystemExit(2)"], "OnFailure", backoffLimit=2)
    create(client, jobs_ns, manifest)
    done = wait_until(client, jobs_ns, "crash", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert done["status"]["failed"] == 1 and list(done["status"]["logPaths"]) == ["crash-0"]
    assert reasons(client, jobs_ns).count("Restarted") == 1


def test_never_backoff_limit(client: httpx.Client, jobs_ns: str) -> None:
    code = "import sys; print('failing'); sys.exit(3)"
    create(client, jobs_ns, job("nope", ["python", "-c", code], "Never", backoffLimit=1))
    done = wait_until(client, jobs_ns, "nope", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    status = done["status"]
    assert status["failed"] == 2 and "succeeded" not in status and "completionTime" not in status
    assert sorted(status["logPaths"]) == ["nope-0", "nope-1"]  # a new pod per failure
    assert "BackoffLimitExceeded" in reasons(client, jobs_ns)


SLEEPER = """
import os, sys, time
folder = sys.argv[1]
with open(os.path.join(folder, f"pid-{os.getpid()}"), "w") as out:
    out.write(str(os.getpid()))
if os.path.exists(os.path.join(folder, "go")):
    print("going")
    sys.exit(0)
time.sleep(120)
"""


def pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in folder.glob("pid-*") if p.read_text()]


def test_active_deadline(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    manifest = job("late", ["python", str(script), str(tmp_path)], activeDeadlineSeconds=1)
    create(client, jobs_ns, manifest)
    done = wait_until(client, jobs_ns, "late", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"
    assert done["status"]["failed"] == 1 and "active" not in done["status"]
    for pid in pids(tmp_path):
        wait_gone(pid)


def test_suspend_and_resume(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    url = f"{JOBS.format(ns=jobs_ns)}/pause"
    create(client, jobs_ns, job("pause", ["python", str(script), str(tmp_path)], suspend=True))
    held = wait_status(client, jobs_ns, "pause", lambda s: condition({"status": s}, "Suspended"))
    suspended = condition(held, "Suspended")
    assert suspended is not None and suspended["status"] == "True"
    assert suspended["reason"] == "JobSuspended"
    assert "startTime" not in held["status"] and not held["status"].get("logPaths")

    patched = client.patch(url, json={"spec": {"suspend": False}})
    assert patched.status_code == 200, patched.text
    running = wait_status(client, jobs_ns, "pause", lambda s: s.get("active") == 1)
    assert running["status"]["startTime"]
    wait_for(lambda: pids(tmp_path), 30, what="the resumed pod wrote its pid")
    [first] = pids(tmp_path)

    assert client.patch(url, json={"spec": {"suspend": True}}).status_code == 200
    again = wait_status(
        client,
        jobs_ns,
        "pause",
        lambda s: (
            (condition({"status": s}, "Suspended") or {}).get("status") == "True"
            and "active" not in s
        ),
    )
    assert "failed" not in again["status"]  # suspended pods are not failures
    wait_gone(first)

    (tmp_path / "go").touch()
    assert client.patch(url, json={"spec": {"suspend": False}}).status_code == 200
    done = wait_until(client, jobs_ns, "pause", "Complete")
    resumed = condition(done, "Suspended")
    assert (
        resumed is not None and resumed["status"] == "False" and resumed["reason"] == "JobResumed"
    )
    assert sorted(done["status"]["logPaths"]) == ["pause-0", "pause-1"]
    assert {"Suspended", "Resumed", "SuccessfulDelete"} <= set(reasons(client, jobs_ns))


def test_ttl_after_finished_deletes(client: httpx.Client, jobs_ns: str) -> None:
    create(client, jobs_ns, job("brief", ["python", "-c", "pass"], ttlSecondsAfterFinished=0))
    gone = poll(lambda: client.get(f"{JOBS.format(ns=jobs_ns)}/brief").status_code == 404, 60)
    assert gone, "the Job was not deleted after it finished"


def test_invalid_jobs_are_refused(client: httpx.Client, jobs_ns: str) -> None:
    always = job("bad", ["python", "-c", "pass"], "Always")
    message = assert_error(client.post(JOBS.format(ns=jobs_ns), json=always), 422, "restartPolicy")
    assert "spec.template.spec.restartPolicy" in message and "Never or OnFailure" in message
    no_command = job("bad", [])
    assert_error(
        client.post(JOBS.format(ns=jobs_ns), json=no_command),
        422,
        "spec.template.spec.containers[0].command",
    )
    bad_cpu = job("bad", ["true"])
    bad_cpu["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "lots"}
    }
    assert_error(
        client.post(JOBS.format(ns=jobs_ns), json=bad_cpu),
        422,
        "spec.template.spec.containers[0].resources.requests.cpu",
    )


PI_MANIFEST = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["python", "-c", "{code}"]
      restartPolicy: Never
  backoffLimit: 4
"""

PI_CODE = (
    "from decimal import Decimal as D, getcontext; getcontext().prec = 60; "
    "print(sum(D(1) / 16**k * (D(4) / (8*k+1) - D(2) / (8*k+4) - D(1) / (8*k+5) - D(1) / (8*k+6)) "
    "for k in range(60)))"
)


def run_ketch(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(server.home), "KETCH_URL": server.url}
    return subprocess.run(
        [*ketch_command(), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_kubernetes_docs_manifest(
    server: Server, client: httpx.Client, jobs_ns: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "pi.yaml"
    manifest.write_text(PI_MANIFEST.replace("{code}", PI_CODE))
    applied = run_ketch(server, "apply", "-f", str(manifest), "-n", jobs_ns)
    assert applied.returncode == 0, applied.stderr
    wait_until(client, jobs_ns, "pi", "Complete")
    logs = run_ketch(server, "logs", "job", "pi", "-n", jobs_ns)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip().startswith("3.14159265358979323846")
    shown = json.loads(run_ketch(server, "get", "jobs", "pi", "-n", jobs_ns, "-o", "json").stdout)
    assert shown["spec"]["template"]["spec"]["containers"][0]["image"] == "perl:5.34.0"


def test_deleting_a_job_stops_its_pods(client: httpx.Client, jobs_ns: str, tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(textwrap.dedent(SLEEPER))
    create(client, jobs_ns, job("gone", ["python", str(script), str(tmp_path)], parallelism=2))
    wait_status(client, jobs_ns, "gone", lambda s: s.get("active") == 2)
    wait_for(lambda: len(pids(tmp_path)) >= 2, 30, what="both pods wrote their pids")
    assert client.delete(f"{JOBS.format(ns=jobs_ns)}/gone").status_code == 200
    for pid in pids(tmp_path):
        wait_gone(pid)


TICKET = """
import os, sys, time
folder = sys.argv[1]
with open(os.path.join(folder, f"pid-{os.getpid()}"), "w") as out:
    out.write(str(os.getpid()))
try:
    os.rename(os.path.join(folder, "ticket"), os.path.join(folder, f"used-{os.getpid()}"))
except FileNotFoundError:
    time.sleep(120)  # no ticket: wait to be stopped
"""


def test_restarted_server_keeps_finished_pods(tmp_path: Path) -> None:
    script = tmp_path / "ticket.py"
    script.write_text(TICKET)
    work = tmp_path / "work"
    work.mkdir()
    (work / "ticket").touch()  # the first pod takes it and ends; the second waits
    home = tmp_path / "home"
    first = Server(home).start()
    try:
        with first.client() as http:
            manifest = job("durable", ["python", str(script), str(work)], completions=2)
            create(http, "default", manifest)
            wait_status(
                http,
                "default",
                "durable",
                lambda s: s.get("succeeded") == 1 and s.get("active") == 1,
            )
    finally:
        assert first.stop() == 0, first.output()[-4000:]
    for pid in pids(work):
        wait_gone(pid)
    (work / "ticket").touch()
    second = Server(home).start()
    try:
        with second.client() as http:
            done = wait_until(http, "default", "durable", "Complete")
            assert done["status"]["succeeded"] == 2  # the finished pod is not run again
            assert sorted(done["status"]["logPaths"]) == ["durable-0", "durable-1", "durable-2"]
            http.delete(f"{JOBS.format(ns='default')}/durable")
    finally:
        assert second.stop() == 0, second.output()[-4000:]
