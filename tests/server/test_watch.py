"""Watching kinds: server-sent ADDED, MODIFIED and DELETED events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ketch.core.resource import Resource
from tests.server.fixtures import runtime, runtimes_path
from tests.server.helpers import Server, assert_error, sse_events


class Watch:
    """A watch stream read in the test's own thread; ``next()`` waits for one event."""

    def __init__(self, response: httpx.Response) -> None:
        self._events = sse_events(response.iter_lines())

    def next(self) -> dict[str, Any]:
        return next(self._events)


@contextmanager
def watching(server: Server, path: str, params: dict[str, Any] | None = None) -> Iterator[Watch]:
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        with http.stream("GET", path, params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            yield Watch(response)


def test_watch_sees_added_modified_deleted(server: Server, client: httpx.Client, ns: str) -> None:
    with watching(server, runtimes_path(ns), {"watch": "true"}) as events:
        client.post(runtimes_path(ns), json=runtime("w"))
        added = events.next()
        assert added["type"] == "ADDED" and added["object"]["metadata"]["name"] == "w"
        client.put(runtimes_path(ns, "w") + "/status", json={"status": {"phase": "Running"}})
        modified = events.next()
        assert modified["type"] == "MODIFIED" and modified["object"]["status"] == {
            "phase": "Running"
        }
        client.delete(runtimes_path(ns, "w"))
        deleted = events.next()
        assert deleted["type"] == "DELETED" and deleted["object"]["metadata"]["name"] == "w"


def test_watch_path_sends_existing_objects_first_and_filters_labels(
    server: Server, client: httpx.Client, ns: str
) -> None:
    client.post(runtimes_path(ns), json=runtime("old", labels={"app": "x"}))
    client.post(runtimes_path(ns), json=runtime("other", labels={"app": "y"}))
    path = f"/apis/trainer.kubeflow.org/v1alpha1/watch/namespaces/{ns}/trainingruntimes"
    with watching(server, path, {"labelSelector": "app=x"}) as events:
        first = events.next()
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "old")
        client.patch(runtimes_path(ns, "other"), json={"spec": {"n": 1}})  # not selected
        client.patch(runtimes_path(ns, "old"), json={"metadata": {"labels": {"app": "z"}}})
        left = events.next()  # no longer selected: gone from this watch
        assert (left["type"], left["object"]["metadata"]["name"]) == ("DELETED", "old")


def test_watch_sees_writes_made_by_other_processes(server: Server, ns: str) -> None:
    store = server.store()
    with watching(
        server,
        "/apis/trainer.kubeflow.org/v1alpha1/watch/trainingruntimes",
        {"labelSelector": f"suite={ns}"},
    ) as events:
        store.create(
            Resource.from_manifest(
                {
                    **runtime("direct", labels={"suite": ns}),
                    "metadata": {"name": "direct", "namespace": ns, "labels": {"suite": ns}},
                }
            )
        )
        event = events.next()
        assert event["type"] == "ADDED" and event["object"]["metadata"]["namespace"] == ns
        store.update_status("TrainingRuntime", ns, "direct", {"phase": "Done"})
        assert events.next()["type"] == "MODIFIED"


def test_watch_ends_after_timeout_seconds(client: httpx.Client, ns: str) -> None:
    response = client.get(runtimes_path(ns), params={"watch": "1", "timeoutSeconds": 0.5})
    assert response.status_code == 200 and response.text == ""


def test_watch_of_an_unknown_kind_is_404(client: httpx.Client, ns: str) -> None:
    assert_error(
        client.get(f"/apis/trainer.kubeflow.org/v1alpha1/watch/namespaces/{ns}/nothings"), 404
    )
