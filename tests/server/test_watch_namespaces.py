"""Namespaces watched through the store's change journal: an explicit namespace's
writes, and a namespace coming into being with its first object and going with its
last, are changes at those writes' revisions, so a watch resumes exactly from a
resourceVersion, is a 410 when the journal no longer goes back that far, and sends
bookmarks, as every journaled kind's watch does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.fixtures import runtime, runtimes_path
from tests.server.helpers import Server
from tests.server.kubectl import Background, kubectl_for
from tests.server.test_watch import summary, version, watching

NAMESPACES = "/api/v1/namespaces"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def ours(events: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """The events about ``names`` (the server is shared: other tests' namespaces come
    and go too)."""
    return [e for e in events if e["type"] == "ERROR" or e["object"]["metadata"]["name"] in names]


def test_a_namespace_watch_resumes_exactly_after_a_resource_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    made, held = f"{ns}-made", f"{ns}-held"
    listed = client.get(NAMESPACES).json()
    start = listed["metadata"]["resourceVersion"]
    assert made not in {item["metadata"]["name"] for item in listed["items"]}

    assert client.post(NAMESPACES, json=namespace(made)).status_code == 201
    labeled = client.patch(f"{NAMESPACES}/{made}", json={"metadata": {"labels": {"team": "a"}}})
    assert labeled.status_code == 200, labeled.text
    first = client.post(runtimes_path(held), json=runtime("first")).json()
    client.post(runtimes_path(held), json=runtime("second"))  # held already: no change
    client.delete(runtimes_path(held, "first"))  # still holds one: no change
    client.delete(runtimes_path(held, "second"))  # its last object: it goes
    assert client.delete(f"{NAMESPACES}/{made}").status_code == 200

    params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}
    with watching(server.url, NAMESPACES, params) as events:
        seen = ours(events.rest(), made, held)
    assert [summary(e) for e in seen] == [
        ("ADDED", made),
        ("MODIFIED", made),
        ("ADDED", held),
        ("DELETED", held),
        ("DELETED", made),
    ]
    assert seen[1]["object"]["metadata"]["labels"]["team"] == "a"
    assert seen[2]["object"]["metadata"]["labels"] == {"kubernetes.io/metadata.name": held}
    # each at the revision of the write that made it: the held namespace's first
    # object's creation, and so on, in order
    versions = [version(e["object"]) for e in seen]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert versions[2] == version(first)
    assert {e["object"]["status"]["phase"] for e in seen if e["type"] == "DELETED"} == {
        "Terminating"
    }
    assert all(e["object"]["kind"] == "Namespace" for e in seen)
    assert all("namespace" not in e["object"]["metadata"] for e in seen)

    # from the middle: exactly what came after
    params["resourceVersion"] = str(versions[2])
    with watching(server.url, NAMESPACES, params) as events:
        assert ours(events.rest(), made, held) == seen[3:]
    # the watch path, selecting by name
    by_name = {"resourceVersion": start, "fieldSelector": f"metadata.name={held}"}
    with watching(server.url, "/api/v1/watch/namespaces", {**by_name, "timeoutSeconds": 1}) as ev:
        assert ev.rest() == seen[2:4]
    # "0": the namespaces there are, as ADDED (those two are gone)
    params["resourceVersion"] = "0"
    with watching(server.url, NAMESPACES, params) as events:
        initial = events.rest()
    assert {e["type"] for e in initial} == {"ADDED"}
    names = {e["object"]["metadata"]["name"] for e in initial}
    assert "default" in names and made not in names and held not in names


def test_a_resumed_namespace_watch_selects_by_labels_as_they_were(
    server: Server, client: httpx.Client, ns: str
) -> None:
    name = f"{ns}-team"
    assert client.post(NAMESPACES, json=namespace(name)).status_code == 201
    start = client.get(NAMESPACES).json()["metadata"]["resourceVersion"]
    path = f"{NAMESPACES}/{name}"
    client.patch(path, json={"metadata": {"labels": {"team": ns}}})  # comes into the selection
    client.patch(path, json={"metadata": {"annotations": {"note": "x"}}})
    client.patch(path, json={"metadata": {"labels": {"team": None}}})  # and leaves it
    params = {"watch": "1", "resourceVersion": start, "labelSelector": f"team={ns}"}
    with watching(server.url, NAMESPACES, {**params, "timeoutSeconds": 1}) as events:
        seen = events.rest()
    assert [summary(e) for e in seen] == [("ADDED", name), ("MODIFIED", name), ("DELETED", name)]
    assert seen[1]["object"]["metadata"]["annotations"] == {"note": "x"}
    assert seen[2]["object"]["metadata"]["labels"]["team"] == ns  # as it was last selected
    client.delete(path)


def test_a_namespace_watch_older_than_the_journal_is_a_410_and_bookmarks_say_how_far(
    server: Server, client: httpx.Client, ns: str
) -> None:
    old = client.get(NAMESPACES).json()["metadata"]["resourceVersion"]
    client.post(runtimes_path(ns), json=runtime("r"))
    compacted = server.store().compact(keep_seconds=0, min_entries=0)
    assert compacted > int(old)
    with watching(server.url, NAMESPACES, {"watch": "1", "resourceVersion": old}) as events:
        (error,) = events.rest()  # the stream ends after it
    assert error["type"] == "ERROR"
    status = error["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"] == f"too old resource version: {old} ({compacted})"

    latest = client.get(NAMESPACES).json()["metadata"]["resourceVersion"]
    params = {
        "watch": "1",
        "resourceVersion": latest,
        "allowWatchBookmarks": "true",
        "fieldSelector": f"metadata.name={ns}-later",
        "timeoutSeconds": 1.5,
    }
    with watching(server.url, NAMESPACES, params) as events:
        client.post(runtimes_path(f"{ns}-later"), json=runtime("r"))
        added = events.next()
        rest = events.rest()
    assert summary(added) == ("ADDED", f"{ns}-later") and version(added["object"]) > int(latest)
    assert rest[-1]["type"] == "BOOKMARK" and rest[-1]["object"]["kind"] == "Namespace"
    assert int(rest[-1]["object"]["metadata"]["resourceVersion"]) >= version(added["object"])
    client.delete(runtimes_path(f"{ns}-later", "r"))


def test_kubectl_get_namespaces_watch_and_the_kubernetes_client_resume(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    before = f"{ns}-before"
    client.post(NAMESPACES, json=namespace(before))
    kubectl = kubectl_for(server.url, tmp_path)
    watch = Background(
        kubectl, "get", "namespaces", "-w", "--output-watch-events", "-l", f"suite={ns}"
    )
    try:
        client.patch(f"{NAMESPACES}/{before}", json={"metadata": {"labels": {"suite": ns}}})
        lines = watch.wait_for(lambda lines: any(before in line for line in lines))
        client.post(NAMESPACES, json={**namespace(f"{ns}-after")})
        client.patch(f"{NAMESPACES}/{ns}-after", json={"metadata": {"labels": {"suite": ns}}})
        lines = watch.wait_for(lambda lines: any(f"{ns}-after" in line for line in lines))
    finally:
        watch.stop()
    assert lines is not None
    assert [line.split()[:2] for line in lines] == [
        ["EVENT", "NAME"],
        ["ADDED", before],
        ["ADDED", f"{ns}-after"],
    ]

    kubernetes = pytest.importorskip("kubernetes")
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    with kubernetes.client.ApiClient(configuration) as api_client:
        api = kubernetes.client.CoreV1Api(api_client)
        start = api.list_namespace(label_selector=f"suite={ns}").metadata.resource_version
        client.delete(f"{NAMESPACES}/{before}")
        client.post(runtimes_path(f"{ns}-held"), json=runtime("r"))
        w = kubernetes.watch.Watch()
        resumed = []
        for event in w.stream(api.list_namespace, resource_version=start, timeout_seconds=30):
            name = event["object"].metadata.name
            if name in (before, f"{ns}-held"):
                resumed.append((event["type"], name))
            if len(resumed) == 2:
                w.stop()
        assert resumed == [("DELETED", before), ("ADDED", f"{ns}-held")]
    client.delete(runtimes_path(f"{ns}-held", "r"))
    client.delete(f"{NAMESPACES}/{ns}-after")
