"""Logs from status.logPaths (plain text, follow) and events (the core v1 events API)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.server.fixtures import runtime, runtimes_path
from tests.server.helpers import Server, assert_error


def _with_logs(server: Server, client: httpx.Client, ns: str) -> dict[str, Path]:
    """A job whose logPaths a controller would have written: files in the server's logs."""
    folder = server.home / "logs" / "test" / ns
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"master-0": folder / "master.log", "worker-0": folder / "worker.log"}
    paths["master-0"].write_text("master line 1\nmaster line 2\n")
    paths["worker-0"].write_text("worker line\n")
    client.post(runtimes_path(ns), json=runtime("logged"))
    status = {"logPaths": {k: str(v) for k, v in paths.items()}}
    server.store().update_status("TrainingRuntime", ns, "logged", status)
    return paths


def test_log_of_a_replica_and_of_all(server: Server, client: httpx.Client, ns: str) -> None:
    _with_logs(server, client, ns)
    one = client.get(runtimes_path(ns, "logged") + "/log", params={"replica": "worker-0"})
    assert one.status_code == 200 and one.text == "worker line\n"
    assert one.headers["content-type"].startswith("text/plain")
    everything = client.get(runtimes_path(ns, "logged") + "/log").text
    assert everything == (
        "==> master-0 <==\nmaster line 1\nmaster line 2\n==> worker-0 <==\nworker line\n"
    )
    missing = client.get(runtimes_path(ns, "logged") + "/log", params={"replica": "worker-9"})
    assert_error(missing, 404, "worker-9", "master-0")
    assert_error(client.get(runtimes_path(ns, "nobody") + "/log"), 404)


def test_follow_tails_until_the_object_finishes(
    server: Server, client: httpx.Client, ns: str
) -> None:
    paths = _with_logs(server, client, ns)

    def later() -> None:
        time.sleep(0.5)
        with paths["master-0"].open("a") as handle:
            handle.write("master line 3\n")
        time.sleep(0.5)
        status = {
            "logPaths": {k: str(v) for k, v in paths.items()},
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Done"}],
        }
        client.put(runtimes_path(ns, "logged") + "/status", json={"status": status})

    writer = threading.Thread(target=later)
    writer.start()
    started = time.monotonic()
    followed = client.get(
        runtimes_path(ns, "logged") + "/log",
        params={"replica": "master-0", "follow": "true"},
        timeout=30,
    )
    writer.join()
    assert followed.text == "master line 1\nmaster line 2\nmaster line 3\n"
    assert time.monotonic() - started >= 0.9


def test_events_by_field_selector(server: Server, client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("ev"))
    client.post(runtimes_path(ns), json=runtime("quiet"))
    store = server.store()
    store.record_event("TrainingRuntime", ns, "ev", reason="Created", message="replicas created")
    store.record_event("TrainingRuntime", ns, "ev", reason="Failed", message="oom", type="Warning")
    store.record_event("TrainingRuntime", ns, "quiet", reason="Created")

    selected = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": "involvedObject.kind=trainingruntime,involvedObject.name=ev"},
    ).json()
    assert selected["kind"] == "EventList"
    assert [(e["reason"], e["type"]) for e in selected["items"]] == [
        ("Created", "Normal"),
        ("Failed", "Warning"),
    ]
    first = selected["items"][0]
    assert (
        first["involvedObject"]["name"] == "ev"
        and first["involvedObject"]["kind"] == "TrainingRuntime"
    )
    assert first["message"] == "replicas created" and first["eventTime"].endswith("Z")

    assert len(client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]) == 3
    newest = client.get(f"/api/v1/namespaces/{ns}/events", params={"limit": 1}).json()["items"]
    assert [e["involvedObject"]["name"] for e in newest] == ["quiet"]
    across = client.get(
        "/api/v1/events", params={"fieldSelector": f"involvedObject.namespace={ns}"}
    )
    assert len(across.json()["items"]) == 3
    assert_error(
        client.get("/api/v1/events", params={"fieldSelector": "spec.x=1"}), 400, "fieldSelector"
    )
    assert_error(
        client.get("/api/v1/events", params={"fieldSelector": "involvedObject.kind=gizmo"}),
        404,
        "gizmo",
    )
    # deleting an object removes its events
    client.delete(runtimes_path(ns, "ev"))
    assert len(client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]) == 1
