"""The core group over HTTP (a real ``ketch up``): secrets and configmaps stored per
namespace, namespaces, and the store's events as core/v1 and events.k8s.io/v1
Events; Secret values never in Tables or the server's log."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from tests.server.fixtures import job, jobs_path
from tests.server.helpers import Server, assert_status, object_path

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
VALUE = "s3cr3t-hunter2-value"
ENCODED = base64.b64encode(VALUE.encode()).decode()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secrets_path(ns: str, name: str | None = None) -> str:
    return object_path("/api/v1", ns, "secrets", name)


def configmaps_path(ns: str, name: str | None = None) -> str:
    return object_path("/api/v1", ns, "configmaps", name)


def secret(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}


def configmap(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **fields}


# -- secrets and configmaps -------------------------------------------------------------


def test_secret_lifecycle(server: Server, client: httpx.Client, ns: str) -> None:
    last_applied = json.dumps(secret("creds", stringData={"password": VALUE}))
    body = secret("creds", data={"user": _b64("bob")}, stringData={"password": VALUE})
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied
    }
    made = client.post(secrets_path(ns), json=body)
    assert made.status_code == 201, made.text
    created = made.json()
    # stringData is folded into data, type defaults to Opaque, no spec or status
    assert created["data"] == {"user": _b64("bob"), "password": ENCODED}
    assert created["type"] == "Opaque"
    assert not {"stringData", "spec", "status"} & set(created)
    assert "generation" not in created["metadata"] and created["metadata"]["uid"]
    assert client.get(secrets_path(ns, "creds")).json() == created
    listed = client.get(secrets_path(ns)).json()
    assert listed["kind"] == "SecretList" and [i["metadata"]["name"] for i in listed["items"]] == [
        "creds"
    ]
    assert client.get("/api/v1/secrets").json()["kind"] == "SecretList"

    # a Table shows the type and the number of keys, never a value
    table = client.get(secrets_path(ns), headers={"Accept": TABLE})
    assert table.json()["kind"] == "Table"
    assert [c["name"] for c in table.json()["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table.json()["rows"][0]["cells"][:3] == ["creds", "Opaque", 2]
    assert VALUE not in table.text and ENCODED not in table.text
    one = client.get(secrets_path(ns, "creds"), headers={"Accept": TABLE})
    assert one.json()["rows"][0]["cells"][:3] == ["creds", "Opaque", 2]
    assert VALUE not in one.text and ENCODED not in one.text

    # apply, merge patch (stringData folded again), type is immutable
    body = secret("creds", data={"user": _b64("alice")})
    applied = client.put(secrets_path(ns, "creds"), json=body)
    assert applied.status_code == 200 and applied.json()["data"] == {"user": _b64("alice")}
    patched = client.patch(
        secrets_path(ns, "creds"),
        content=json.dumps({"stringData": {"token": "t"}, "metadata": {"labels": {"a": "b"}}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"] == {"user": _b64("alice"), "token": _b64("t")}
    assert patched.json()["metadata"]["labels"] == {"a": "b"}
    retyped = client.patch(
        secrets_path(ns, "creds"),
        json={"type": "example.com/custom"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_status(retyped, 422, "Invalid", "immutable")
    assert_status(client.put(secrets_path(ns, "creds") + "/status", json={"status": {}}), 405)

    gone = client.delete(secrets_path(ns, "creds"))
    assert gone.status_code == 200 and gone.json()["metadata"]["name"] == "creds"
    assert_status(client.get(secrets_path(ns, "creds")), 404, "NotFound", 'secrets "creds"')
    assert VALUE not in server.output() and ENCODED not in server.output()


def test_secrets_kubernetes_would_refuse(server: Server, client: httpx.Client, ns: str) -> None:
    bad_value = secret("s", data={"k": "not base64!" + VALUE})
    message = assert_status(
        client.post(secrets_path(ns), json=bad_value), 422, "Invalid", "data[k]"
    )
    assert VALUE not in message and "base64" in message
    assert_status(
        client.post(secrets_path(ns), json=secret("s", data={"a/b": _b64("x")})),
        422,
        "Invalid",
        "a/b",
    )
    # unknown fields, as Kubernetes' strict decoding refuses them (kubectl asks for Strict;
    # without fieldValidation, Warn, they are dropped with a warning)
    for unknown, field in (
        (secret("s", spec={"data": {}}), "spec"),
        (secret("s", values={"a": "b"}), "values"),
    ):
        assert_status(
            client.post(secrets_path(ns), params={"fieldValidation": "Strict"}, json=unknown),
            400,
            "BadRequest",
            f'unknown field "{field}"',
        )
    tls = secret("s", type="kubernetes.io/tls", data={"tls.crt": _b64("c")})
    assert_status(client.post(secrets_path(ns), json=tls), 422, "Invalid", "tls.key")
    huge = secret("s", stringData={"big": "x" * (1024 * 1024 + 1)})
    assert client.post(secrets_path(ns), json=huge).status_code in (413, 422)
    assert_status(
        client.post(secrets_path(ns), json={**secret("s"), "kind": "ConfigMap"}), 422, "Invalid"
    )
    assert client.get(secrets_path(ns)).json()["items"] == []
    assert VALUE not in server.output()


def test_immutable_objects_keep_their_values(client: httpx.Client, ns: str) -> None:
    made = client.post(
        configmaps_path(ns),
        json=configmap("frozen", data={"a": "1"}, binaryData={"b": _b64("2")}, immutable=True),
    )
    assert made.status_code == 201, made.text
    assert made.json()["data"] == {"a": "1"} and made.json()["immutable"] is True
    changed = client.patch(
        configmaps_path(ns, "frozen"),
        json={"data": {"a": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_status(changed, 422, "Invalid", "immutable")
    unfrozen = client.put(
        configmaps_path(ns, "frozen"),
        json=configmap("frozen", data={"a": "1"}, binaryData={"b": _b64("2")}),
    )
    assert_status(unfrozen, 422, "Invalid", "immutable")
    # labels may still change
    relabelled = client.patch(
        configmaps_path(ns, "frozen"),
        json={"metadata": {"labels": {"x": "y"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert relabelled.status_code == 200 and relabelled.json()["immutable"] is True
    assert client.delete(configmaps_path(ns, "frozen")).status_code == 200


def test_configmaps(client: httpx.Client, ns: str) -> None:
    made = client.post(configmaps_path(ns), json=configmap("conf", data={"a": "1", "b": "two"}))
    assert made.status_code == 201
    assert made.json()["data"] == {"a": "1", "b": "two"} and "type" not in made.json()
    table = client.get(configmaps_path(ns), headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["conf", 2]
    both = configmap("dup", data={"a": "1"}, binaryData={"a": _b64("1")})
    assert_status(client.post(configmaps_path(ns), json=both), 422, "Invalid", "binaryData[a]")
    bad = configmap("bad", data={"a": 1})
    assert_status(client.post(configmaps_path(ns), json=bad), 422, "Invalid", "data[a]")
    assert_status(
        client.post(configmaps_path(ns), json=configmap("conf")), 409, "AlreadyExists", "conf"
    )
    labelled = client.get(configmaps_path(ns), params={"labelSelector": "x=y"}).json()
    assert labelled["items"] == []


# -- namespaces ---------------------------------------------------------------------------


def test_namespaces_listed_created_labelled_and_deleted(client: httpx.Client, ns: str) -> None:
    assert client.post(jobs_path(ns), json=job("holder")).status_code == 201
    listed = client.get("/api/v1/namespaces").json()
    assert listed["kind"] == "NamespaceList"
    names = {i["metadata"]["name"]: i for i in listed["items"]}
    assert {"default", ns} <= set(names)
    held = names[ns]
    assert held["status"] == {"phase": "Active"}
    assert held["metadata"]["labels"] == {"kubernetes.io/metadata.name": ns}
    assert held["metadata"]["creationTimestamp"].endswith("Z")
    assert (
        client.get(f"/api/v1/namespaces/{ns}").json()["metadata"]["uid"]
        == (held["metadata"]["uid"])
    )
    assert client.get("/api/v1/namespaces/default").status_code == 200

    empty = f"{ns}-empty"
    assert_status(client.get(f"/api/v1/namespaces/{empty}"), 404, "NotFound", "namespaces")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": empty}}
    made = client.post("/api/v1/namespaces", json=namespace)
    assert made.status_code == 201, made.text
    assert made.json()["metadata"]["name"] == empty and made.json()["status"]["phase"] == "Active"
    assert_status(client.post("/api/v1/namespaces", json=namespace), 409, "AlreadyExists")
    held_again = {**namespace, "metadata": {"name": ns}}
    assert_status(client.post("/api/v1/namespaces", json=held_again), 409, "AlreadyExists")
    bad = {**namespace, "metadata": {"name": "Not_A_Label"}}
    assert_status(client.post("/api/v1/namespaces", json=bad), 422, "Invalid", "metadata.name")

    labelled = client.patch(
        f"/api/v1/namespaces/{empty}",
        content=json.dumps({"metadata": {"labels": {"team": "a"}}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["metadata"]["labels"]["team"] == "a"
    selected = client.get("/api/v1/namespaces", params={"labelSelector": "team=a"}).json()
    assert [i["metadata"]["name"] for i in selected["items"]] == [empty]
    by_name = client.get("/api/v1/namespaces", params={"fieldSelector": f"metadata.name={ns}"})
    assert [i["metadata"]["name"] for i in by_name.json()["items"]] == [ns]
    assert_status(
        client.get("/api/v1/namespaces", params={"fieldSelector": "spec.x=1"}),
        400,
        "BadRequest",
        "spec.x",
    )
    table = client.get("/api/v1/namespaces", headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert [ns, "Active"] in [r["cells"][:2] for r in table["rows"]]

    # a namespace's objects are never deleted with it
    refused = client.delete(f"/api/v1/namespaces/{ns}")
    assert_status(refused, 409, "Conflict", "pytorchjobs/holder", "delete them first")
    assert_status(client.delete("/api/v1/namespaces/default"), 403, "Forbidden", "default")
    deleted = client.delete(f"/api/v1/namespaces/{empty}")
    assert deleted.status_code == 200 and deleted.json()["status"]["phase"] == "Terminating"
    assert_status(client.get(f"/api/v1/namespaces/{empty}"), 404, "NotFound")
    assert_status(client.delete(f"/api/v1/namespaces/{empty}"), 404, "NotFound")
    assert client.delete(jobs_path(ns, "holder")).status_code == 200


# -- events -------------------------------------------------------------------------------


def _record_events(server: Server, client: httpx.Client, ns: str) -> str:
    """Two jobs with events; the uid of the first."""
    uid = client.post(jobs_path(ns), json=job("ev-job")).json()["metadata"]["uid"]
    client.post(jobs_path(ns), json=job("other-job"))
    store = server.store()
    store.record_event("PyTorchJob", ns, "ev-job", reason="Tested", message="first")
    for _ in range(2):
        store.record_event(
            "PyTorchJob", ns, "ev-job", reason="Broke", message="oom", type="Warning"
        )
    store.record_event("PyTorchJob", ns, "other-job", reason="Tested", message="other")
    return str(uid)


def test_events_as_kubectl_describe_asks_for_them(
    server: Server, client: httpx.Client, ns: str
) -> None:
    uid = _record_events(server, client, ns)
    selector = (
        f"involvedObject.name=ev-job,involvedObject.namespace={ns},"
        f"involvedObject.kind=PyTorchJob,involvedObject.uid={uid}"
    )
    body = client.get(
        f"/api/v1/namespaces/{ns}/events", params={"fieldSelector": selector, "limit": 500}
    ).json()
    assert body["kind"] == "EventList" and body["apiVersion"] == "v1"
    ours = [e for e in body["items"] if e["reason"] in ("Tested", "Broke")]
    assert [(e["reason"], e["type"], e["count"]) for e in ours] == [
        ("Tested", "Normal", 1),
        ("Broke", "Warning", 2),
    ]
    assert all(e["involvedObject"]["name"] == "ev-job" for e in body["items"])
    event = ours[1]
    assert event["involvedObject"] == {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "name": "ev-job",
        "namespace": ns,
        "uid": uid,
    }
    assert event["source"] == {"component": "ketch"} and event["message"] == "oom"
    assert event["firstTimestamp"].endswith("Z") and event["lastTimestamp"].endswith("Z")
    assert len(event["eventTime"].rsplit(".", 1)[1]) == len("000000Z")  # a MicroTime
    name = event["metadata"]["name"]
    assert name.startswith("ev-job.") and event["metadata"]["namespace"] == ns
    # the store's revision at its last write (its repeat), within the list's history
    versions = [int(e["metadata"]["resourceVersion"]) for e in ours]
    assert versions[0] < versions[1] <= int(body["metadata"]["resourceVersion"])

    # one event by name; the same names and uids every time
    assert client.get(f"/api/v1/namespaces/{ns}/events/{name}").json() == event
    assert_status(client.get(f"/api/v1/namespaces/{ns}/events/ev-job.999999"), 404, "NotFound")
    again = client.get(f"/api/v1/namespaces/{ns}/events", params={"fieldSelector": selector})
    assert [e["metadata"]["uid"] for e in again.json()["items"]] == [
        e["metadata"]["uid"] for e in body["items"]
    ]


def test_event_field_selectors(server: Server, client: httpx.Client, ns: str) -> None:
    _record_events(server, client, ns)

    def reasons(path: str, selector: str) -> list[str]:
        response = client.get(path, params={"fieldSelector": selector})
        assert response.status_code == 200, response.text
        return [e["reason"] for e in response.json()["items"] if e["reason"] in ("Tested", "Broke")]

    events = f"/api/v1/namespaces/{ns}/events"
    assert reasons(events, "type=Warning") == ["Broke"]
    assert reasons(events, "type!=Warning,reason==Tested") == ["Tested", "Tested"]
    assert reasons(events, "involvedObject.kind=pytorchjobs,involvedObject.name=other-job") == [
        "Tested"
    ]
    assert reasons(events, "involvedObject.name!=ev-job") == ["Tested"]
    assert reasons("/api/v1/events", f"involvedObject.namespace={ns},reason=Broke") == ["Broke"]
    assert reasons(events, "involvedObject.namespace=elsewhere") == []
    newest = client.get(events, params={"limit": 1}).json()["items"]
    assert [e["involvedObject"]["name"] for e in newest] == ["other-job"]
    unknown = client.get(events, params={"fieldSelector": "spec.nodeName=x"})
    assert_status(unknown, 400, "BadRequest", "spec.nodeName", "fieldSelector")
    assert_status(
        client.get(events, params={"fieldSelector": "involvedObject.kind=gizmo"}), 404, "NotFound"
    )
    assert_status(client.get(events, params={"fieldSelector": "reason"}), 400, "BadRequest")


def test_events_k8s_io_and_tables(server: Server, client: httpx.Client, ns: str) -> None:
    _record_events(server, client, ns)
    path = f"/apis/events.k8s.io/v1/namespaces/{ns}/events"
    body = client.get(path, params={"fieldSelector": "regarding.name=ev-job,type=Warning"})
    assert body.status_code == 200, body.text
    [event] = body.json()["items"]
    assert event["apiVersion"] == "events.k8s.io/v1" and event["kind"] == "Event"
    assert event["regarding"]["kind"] == "PyTorchJob" and event["note"] == "oom"
    assert event["reason"] == "Broke" and event["action"] == "Broke"
    assert event["reportingController"] == "ketch" and event["deprecatedCount"] == 2
    assert event["series"]["count"] == 2
    one = client.get(f"{path}/{event['metadata']['name']}").json()
    assert one == event
    assert client.get("/apis/events.k8s.io/v1/events").json()["kind"] == "EventList"

    table = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": "reason=Broke"},
        headers={"Accept": TABLE},
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]][:6] == [
        "Name",
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]
    assert table["rows"][0]["cells"][2:6] == ["Warning", "Broke", "pytorchjob/ev-job", "oom"]


def test_events_are_read_only(client: httpx.Client, ns: str) -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "made-up"},
        "involvedObject": {"kind": "PyTorchJob", "name": "x"},
        "reason": "Fake",
    }
    assert_status(client.post(f"/api/v1/namespaces/{ns}/events", json=event), 405)
    assert_status(client.put(f"/api/v1/namespaces/{ns}/events/made-up", json=event), 405)
    assert_status(client.delete(f"/api/v1/namespaces/{ns}/events/made-up"), 405)
    assert_status(
        client.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json=event), 422
    )  # a core/v1 manifest sent to events.k8s.io


def test_an_event_watch_sees_new_events(server: Server, client: httpx.Client, ns: str) -> None:
    client.post(jobs_path(ns), json=job("watched"))
    store = server.store()
    seen = ""
    with client.stream(
        "GET",
        f"/api/v1/namespaces/{ns}/events",
        params={
            "watch": "true",
            "timeoutSeconds": 5,
            "fieldSelector": "involvedObject.name=watched,reason=Watched",
        },
        timeout=30,
    ) as response:
        assert response.status_code == 200
        store.record_event("PyTorchJob", ns, "watched", reason="Watched", message="seen")
        for chunk in response.iter_text():
            seen += chunk
            if "seen" in seen:
                break
    assert '"reason":"Watched"' in seen.replace(" ", "") and "ADDED" in seen
