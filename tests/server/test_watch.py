"""Watching kinds as Kubernetes streams them: newline-delimited ADDED, MODIFIED,
DELETED, BOOKMARK and ERROR events, resumed from a resourceVersion, read by httpx, by
the real kubectl (``get -w``) and by the ``kubernetes`` client's ``Watch().stream``;
server-sent events for the clients that ask for them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.capabilities import create_app
from ketch.core.resource import Resource
from ketch.server.watch import BOOKMARK_ENV, INITIAL_EVENTS_END
from tests.pipelines.submitted import hello_pipeline_ir
from tests.server.fixtures import runtime, runtimes_path
from tests.server.helpers import Server, ThreadServer, assert_error, assert_status, sse_events
from tests.server.kubectl import Background, kubectl_for
from tests.waiting import poll

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
RUNTIMES = "/apis/trainer.kubeflow.org/v1alpha1"


class Events:
    """A watch stream read in the test's own thread; ``next()`` waits for one event."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        for line in self._lines:
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return event
        raise AssertionError("the watch ended")

    def rest(self) -> list[dict[str, Any]]:
        """Every event until the stream ends (a watch with timeoutSeconds)."""
        return [json.loads(line) for line in self._lines if line.strip()]


@contextmanager
def watching(
    url: str,
    path: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Events]:
    with httpx.Client(base_url=url, timeout=15.0) as http:
        with http.stream("GET", path, params=params, headers=headers) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == "application/json"
            yield Events(response)


def summary(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event["object"]["metadata"].get("name", "")


def version(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_watch_sees_added_modified_deleted(server: Server, client: httpx.Client, ns: str) -> None:
    with watching(server.url, runtimes_path(ns), {"watch": "true"}) as events:
        created = client.post(runtimes_path(ns), json=runtime("w")).json()
        added = events.next()
        assert summary(added) == ("ADDED", "w") and added["object"] == created
        client.put(runtimes_path(ns, "w") + "/status", json={"status": {"phase": "Running"}})
        modified = events.next()
        assert modified["type"] == "MODIFIED"
        assert modified["object"]["status"] == {"phase": "Running"}
        assert version(modified["object"]) > version(added["object"])
        client.delete(runtimes_path(ns, "w"))
        deleted = events.next()
        assert summary(deleted) == ("DELETED", "w")
        # the object as it was, at the version of its deletion
        assert deleted["object"]["status"] == {"phase": "Running"}
        assert version(deleted["object"]) > version(modified["object"])


def test_watch_path_sends_existing_objects_first_and_filters_labels(
    server: Server, client: httpx.Client, ns: str
) -> None:
    client.post(runtimes_path(ns), json=runtime("old", labels={"app": "x"}))
    client.post(runtimes_path(ns), json=runtime("other", labels={"app": "y"}))
    path = f"{RUNTIMES}/watch/namespaces/{ns}/trainingruntimes"
    with watching(server.url, path, {"labelSelector": "app=x"}) as events:
        assert summary(events.next()) == ("ADDED", "old")
        client.patch(runtimes_path(ns, "other"), json={"spec": {"n": 1}})  # not selected
        relabeled = client.patch(
            runtimes_path(ns, "old"), json={"metadata": {"labels": {"app": "z"}}}
        ).json()
        left = events.next()  # no longer selected: gone from this watch
        assert summary(left) == ("DELETED", "old")
        # as it was last selected, at the version of the change that deselected it
        assert left["object"]["metadata"]["labels"] == {"app": "x"}
        assert version(left["object"]) == version(relabeled)
        client.patch(runtimes_path(ns, "other"), json={"metadata": {"labels": {"app": "x"}}})
        assert summary(events.next()) == ("ADDED", "other")  # selected from now on


def test_watch_sees_writes_made_by_other_processes(server: Server, ns: str) -> None:
    store = server.store()
    path = f"{RUNTIMES}/watch/trainingruntimes"
    with watching(server.url, path, {"labelSelector": f"suite={ns}"}) as events:
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


def test_a_watch_resumes_exactly_after_a_resource_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    client.post(runtimes_path(ns), json=runtime("a"))
    listed = client.get(runtimes_path(ns)).json()
    start = listed["metadata"]["resourceVersion"]
    assert int(start) >= version(listed["items"][0])
    client.post(runtimes_path(ns), json=runtime("b"))
    patched = client.patch(runtimes_path(ns, "a"), json={"spec": {"x": 1}}).json()
    client.delete(runtimes_path(ns, "b"))
    params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}
    with watching(server.url, runtimes_path(ns), params) as events:
        seen = events.rest()
    assert [summary(e) for e in seen] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert seen[1]["object"] == patched
    versions = [version(e["object"]) for e in seen]
    assert versions == sorted(versions) and versions[0] > int(start)
    # from the middle: only what came after
    params["resourceVersion"] = str(versions[0])
    with watching(server.url, runtimes_path(ns), params) as events:
        assert [summary(e) for e in events.rest()] == [("MODIFIED", "a"), ("DELETED", "b")]
    # "0": the objects there are, as ADDED
    params["resourceVersion"] = "0"
    with watching(server.url, runtimes_path(ns), params) as events:
        assert [summary(e) for e in events.rest()] == [("ADDED", "a")]


def test_a_version_older_than_the_journal_is_a_410_error_event(
    server: Server, client: httpx.Client, ns: str
) -> None:
    for name in ("a", "b"):
        client.post(runtimes_path(ns), json=runtime(name))
    first_page = client.get(runtimes_path(ns), params={"limit": 1}).json()
    old = first_page["metadata"]["resourceVersion"]
    client.patch(runtimes_path(ns, "a"), json={"spec": {"x": 1}})
    compacted = server.store().compact(keep_seconds=0, min_entries=0)
    assert compacted > int(old)
    with watching(server.url, runtimes_path(ns), {"watch": "1", "resourceVersion": old}) as events:
        (error,) = events.rest()  # the stream ends after it
    assert error["type"] == "ERROR"
    status = error["object"]
    assert (status["kind"], status["status"], status["code"], status["reason"]) == (
        "Status",
        "Failure",
        410,
        "Expired",
    )
    assert status["message"] == f"too old resource version: {old} ({compacted})"
    # a list continued with a token from before the compaction: 410 as well
    expired = client.get(
        runtimes_path(ns), params={"limit": 1, "continue": first_page["metadata"]["continue"]}
    )
    assert_status(expired, 410, "Expired", "continue parameter is too old")
    # from the compacted version on, the watch goes on
    params = {"watch": "1", "resourceVersion": str(compacted), "timeoutSeconds": 0.5}
    with watching(server.url, runtimes_path(ns), params) as events:
        assert events.rest() == []


def test_a_pipelinerun_watch_resumes_exactly_after_a_resource_version(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    """PipelineRuns, kept in the pipelines capability's own tables, take the store's
    revision and are journaled too: a watch from a list's resourceVersion sends exactly
    what changed after it (a run added and run to the end, a run deleted), and one
    from a version the journal no longer keeps is a 410."""
    runs = f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns"
    ir = hello_pipeline_ir(tmp_path)

    def run_to_the_end(name: str) -> dict[str, Any]:
        body = {"apiVersion": "pipelines.ketch.dev/v1", "kind": "PipelineRun"}
        body |= {"metadata": {"name": name}, "spec": {"pipelineSpec": ir}}
        created = client.post(runs, json=body)
        assert created.status_code == 201, created.text
        path = f"{runs}/{created.json()['metadata']['name']}"
        assert poll(lambda: client.get(path).json()["status"]["state"] == "SUCCEEDED", 90, 0.1)
        return dict(client.get(path).json())

    first = run_to_the_end("first")
    listed = client.get(runs).json()
    start = listed["metadata"]["resourceVersion"]
    assert int(start) >= version(first) == version(listed["items"][0])
    second = run_to_the_end("second")
    first_id, second_id = first["metadata"]["name"], second["metadata"]["name"]
    deleted = client.delete(f"{runs}/{first_id}")
    assert deleted.status_code == 200, deleted.text

    params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}
    with watching(server.url, runs, params) as events:
        seen = events.rest()
    kinds = [summary(e) for e in seen]
    # the second run added, changed as it ran (its state, its tasks), then the first deleted
    assert kinds[0] == ("ADDED", second_id) and kinds[-1] == ("DELETED", first_id)
    assert set(kinds[1:-1]) == {("MODIFIED", second_id)} and len(kinds) >= 4
    versions = [version(e["object"]) for e in seen]
    assert versions == sorted(set(versions)) and versions[0] > int(start)
    last = seen[-2]["object"]
    assert last["status"]["state"] == "SUCCEEDED" and version(last) == version(second)
    assert seen[-1]["object"]["metadata"] == deleted.json()["metadata"]
    # from the middle: exactly what came after
    params["resourceVersion"] = str(versions[1])
    with watching(server.url, runs, params) as events:
        assert events.rest() == seen[2:]
    # older than the journal keeps: 410, as for resources
    compacted = server.store().compact(keep_seconds=0, min_entries=0)
    params["resourceVersion"] = start
    with watching(server.url, runs, params) as events:
        (error,) = events.rest()
    assert (error["type"], error["object"]["code"]) == ("ERROR", 410)
    assert error["object"]["message"] == f"too old resource version: {start} ({compacted})"


def test_timeout_seconds_ends_the_watch(client: httpx.Client, ns: str) -> None:
    response = client.get(runtimes_path(ns), params={"watch": "1", "timeoutSeconds": 0.5})
    assert response.status_code == 200 and response.text == ""


def test_field_selectors_pick_objects_by_name_and_namespace(
    server: Server, client: httpx.Client, ns: str
) -> None:
    for name in ("a", "b"):
        client.post(runtimes_path(ns), json=runtime(name))
    params = {"watch": "1", "fieldSelector": "metadata.name=b", "timeoutSeconds": 1}
    with watching(server.url, runtimes_path(ns), params) as events:
        client.patch(runtimes_path(ns, "a"), json={"spec": {"x": 1}})
        client.patch(runtimes_path(ns, "b"), json={"spec": {"x": 1}})
        assert [summary(e) for e in events.rest()] == [("ADDED", "b"), ("MODIFIED", "b")]
    params = {
        "watch": "1",
        "fieldSelector": f"metadata.namespace={ns},metadata.name!=b",
        "timeoutSeconds": 0.5,
    }
    with watching(server.url, f"{RUNTIMES}/trainingruntimes", params) as events:
        assert [summary(e) for e in events.rest()] == [("ADDED", "a")]


def test_table_events_for_kubectl(server: Server, client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("t"))
    params = {"watch": "true", "resourceVersion": "0"}
    with watching(server.url, runtimes_path(ns), params, {"Accept": TABLE}) as events:
        first = events.next()
        client.patch(runtimes_path(ns, "t"), json={"spec": {"x": 1}})
        second = events.next()
    for event, kind in ((first, "ADDED"), (second, "MODIFIED")):
        table = event["object"]
        assert event["type"] == kind
        assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
        (row,) = table["rows"]
        assert row["cells"][0] == "t"
        assert row["object"]["kind"] == "PartialObjectMetadata"
        assert row["object"]["metadata"]["resourceVersion"] == table["metadata"]["resourceVersion"]
    # the column definitions come with the first event only, as the API server sends them
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == ["Name", "Age"]
    assert second["object"]["columnDefinitions"] == []


def test_server_sent_events_for_the_clients_that_ask(
    server: Server, client: httpx.Client, ns: str
) -> None:
    client.post(runtimes_path(ns), json=runtime("s"))
    headers = {"Accept": "text/event-stream"}
    with httpx.Client(base_url=server.url, timeout=15.0) as http:
        params = {"watch": "true"}
        with http.stream("GET", runtimes_path(ns), params=params, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
            assert summary(next(events)) == ("ADDED", "s")
            client.delete(runtimes_path(ns, "s"))
            assert summary(next(events)) == ("DELETED", "s")


def test_malformed_watch_parameters_are_400(client: httpx.Client, ns: str) -> None:
    path = runtimes_path(ns)
    for params, field in (
        ({"resourceVersion": "seven"}, "resourceVersion"),
        ({"allowWatchBookmarks": "maybe"}, "allowWatchBookmarks"),
        ({"fieldSelector": "spec.x=1"}, "fieldSelector"),
        ({"labelSelector": "a in (b"}, "labelSelector"),
    ):
        assert_error(client.get(path, params={"watch": "true", **params}), 400, field)
    assert_error(client.get(path, params={"watch": "perhaps"}), 400, "watch")


def test_watch_of_an_unknown_kind_is_404(client: httpx.Client, ns: str) -> None:
    assert_error(client.get(f"{RUNTIMES}/watch/namespaces/{ns}/nothings"), 404)


# -- bookmarks (a server of the test's own: their period comes from its environment) --


@pytest.fixture
def quick_bookmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(BOOKMARK_ENV, "0.3")
    app = create_app(database_url=f"sqlite:///{tmp_path / 'k.db'}", background=False)
    with ThreadServer(app) as running:
        yield running.url


def test_bookmarks_say_how_far_the_watch_has_read(quick_bookmarks: str) -> None:
    url = quick_bookmarks
    with httpx.Client(base_url=url, timeout=15.0) as client:
        client.post(runtimes_path("b"), json=runtime("x"))
        latest = client.get(runtimes_path("b")).json()["metadata"]["resourceVersion"]
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": latest,
            "timeoutSeconds": 1.2,
        }
        with watching(url, runtimes_path("b"), params) as events:
            seen = events.rest()
    # periodically, and as the watch ends: only the version, nothing changed since
    assert len(seen) >= 2 and {e["type"] for e in seen} == {"BOOKMARK"}
    for event in seen:
        assert event["object"] == {
            "kind": "TrainingRuntime",
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "metadata": {"resourceVersion": latest},
        }

    # sendInitialEvents: the objects, then a bookmark marking their end
    params = {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": 0.2,
    }
    with watching(url, runtimes_path("b"), params) as events:
        added, end = events.next(), events.next()
    assert summary(added) == ("ADDED", "x")
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"] == {
        "resourceVersion": latest,
        "annotations": {INITIAL_EVENTS_END: "true"},
    }


# -- real clients ---------------------------------------------------------------------


def test_kubectl_get_watch_sees_added_then_modified(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    kubectl = kubectl_for(server.url, tmp_path, namespace=ns)
    client.post(runtimes_path(ns), json=runtime("first"))
    watch = Background(kubectl, "get", "trainingruntimes", "-w", "--output-watch-events")
    try:
        # the list first (its header and row), then the watch from the list's version
        watch.wait_for(lambda lines: any("first" in line for line in lines))
        client.post(runtimes_path(ns), json=runtime("second"))
        client.patch(runtimes_path(ns, "first"), json={"metadata": {"labels": {"x": "1"}}})
        lines = watch.wait_for(
            lambda lines: any(line.split()[:2] == ["MODIFIED", "first"] for line in lines)
        )
    finally:
        watch.stop()
    assert lines is not None
    events = [line.split()[:2] for line in lines]
    assert events[0] == ["EVENT", "NAME"]
    assert events[1:] == [["ADDED", "first"], ["ADDED", "second"], ["MODIFIED", "first"]]


def test_kubectl_get_watch_of_one_object(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    kubectl = kubectl_for(server.url, tmp_path, namespace=ns)
    client.post(runtimes_path(ns), json=runtime("one"))
    client.post(runtimes_path(ns), json=runtime("another"))
    watch = Background(kubectl, "get", "trainingruntime", "one", "-w")
    try:
        watch.wait_for(lambda lines: any(line.startswith("one") for line in lines))
        # kubectl drops the first event of a one-object watch (it starts from "0": the
        # object as it is): a change made before its watch is open is never printed, so
        # change it until one is (on a cluster as well)
        lines = None
        for attempt in range(30):
            client.patch(runtimes_path(ns, "another"), json={"spec": {"x": attempt}})
            client.patch(runtimes_path(ns, "one"), json={"spec": {"x": attempt}})
            lines = watch.wait_for(
                lambda lines: sum(line.startswith("one") for line in lines) >= 2, 1, fail=False
            )
            if lines is not None:
                break
        assert lines is not None, f"kubectl printed no change: {watch.seen}; {watch.stop()}"
    finally:
        watch.stop()
    assert lines[0].split()[:2] == ["NAME", "AGE"]
    assert not any(line.startswith("another") for line in lines)


WATCHED = ("trainer.kubeflow.org", "v1alpha1")


def test_kubernetes_client_watch_stream_resumes(
    server: Server, client: httpx.Client, ns: str
) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    with kubernetes.client.ApiClient(configuration) as api_client:
        api = kubernetes.client.CustomObjectsApi(api_client)
        group, api_version = WATCHED
        client.post(runtimes_path(ns), json=runtime("k"))
        seen: list[tuple[str, str]] = []
        w = kubernetes.watch.Watch()
        for event in w.stream(
            api.list_namespaced_custom_object,
            group,
            api_version,
            ns,
            "trainingruntimes",
            timeout_seconds=30,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if event["type"] == "ADDED":
                added_version = event["object"]["metadata"]["resourceVersion"]
                client.patch(runtimes_path(ns, "k"), json={"metadata": {"labels": {"x": "1"}}})
            else:
                w.stop()
        assert seen == [("ADDED", "k"), ("MODIFIED", "k")]

        # resumed from the ADDED event's version: only what came after it
        w = kubernetes.watch.Watch()
        resumed = []
        for event in w.stream(
            api.list_namespaced_custom_object,
            group,
            api_version,
            ns,
            "trainingruntimes",
            resource_version=added_version,
            timeout_seconds=30,
        ):
            resumed.append((event["type"], event["object"]["metadata"]["labels"]))
            w.stop()
        assert resumed == [("MODIFIED", {"x": "1"})]

        # a version older than the journal: the client raises the 410
        server.store().compact(keep_seconds=0, min_entries=0)
        with pytest.raises(kubernetes.client.ApiException) as info:
            for _event in kubernetes.watch.Watch().stream(
                api.list_namespaced_custom_object,
                group,
                api_version,
                ns,
                "trainingruntimes",
                resource_version=added_version,
                timeout_seconds=30,
            ):
                pass
        assert info.value.status == 410 and "too old resource version" in str(info.value)


def test_a_cluster_scoped_kind_is_watched_without_namespaces(
    server: Server, client: httpx.Client, ns: str
) -> None:
    collection = f"{RUNTIMES}/clustertrainingruntimes"
    manifest = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": f"c-{ns}"},
        "spec": {},
    }
    params = {"watch": "1", "fieldSelector": f"metadata.name=c-{ns}", "timeoutSeconds": 1}
    with watching(server.url, collection, params) as events:
        created = client.post(collection, json=manifest)
        assert created.status_code == 201, created.text
        client.delete(f"{collection}/c-{ns}")
        seen = events.rest()
    assert [summary(e) for e in seen] == [("ADDED", f"c-{ns}"), ("DELETED", f"c-{ns}")]
    assert all("namespace" not in e["object"]["metadata"] for e in seen)


def test_a_namespace_comes_into_being_in_a_watch_from_a_lists_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    """Namespaces (a view of what is stored) are watched through the journal of what
    they hold (more in test_watch_namespaces): from a list's resourceVersion the
    watch sends what came after it, a namespace's first object making it ADDED."""
    listed = client.get("/api/v1/namespaces").json()
    params = {
        "watch": "true",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "fieldSelector": f"metadata.name={ns}",
    }
    with watching(server.url, "/api/v1/namespaces", params) as events:
        client.post(runtimes_path(ns), json=runtime("makes-the-namespace"))
        added = events.next()
    assert summary(added) == ("ADDED", ns) and added["object"]["kind"] == "Namespace"


# -- pods: their writes take the store's revision and are journaled too --------------


def pods_path(ns: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{ns}/pods"
    return f"{base}/{name}" if name else base


class PodWriter:
    """Writes pods into the server's store as a capability's controller does (from the
    test process: another process, as a pipeline task's launcher is), owned by a
    TrainingRuntime that exists, so nothing removes them as orphans."""

    def __init__(self, server: Server, client: httpx.Client, ns: str) -> None:
        from ketch.core.store.pods import Owner, PodStore

        owner = client.post(runtimes_path(ns), json=runtime("pod-owner")).json()
        self.owner = Owner(
            owner["apiVersion"], owner["kind"], "pod-owner", owner["metadata"]["uid"]
        )
        server.store()  # opens the test's own connections to the server's database
        self.pods = PodStore(server.database)
        self.ns = ns
        self.records: dict[str, Any] = {}

    def put(self, name: str, phase: str = "Running", **labels: str) -> None:
        from ketch.core.store.pods import ContainerRecord, PodRecord, Terminated
        from ketch.core.timestamps import utcnow

        record = self.records.get(name)
        if record is None:
            record = self.records[name] = PodRecord(
                namespace=self.ns, name=name, owner=self.owner, start_time=utcnow()
            )
        running = phase == "Running"
        record.phase = phase  # type: ignore[assignment]
        record.labels = dict(labels)
        record.containers = [
            ContainerRecord(
                name="main",
                spec={"image": "img"},
                state="running" if running else "terminated",
                started_at=utcnow(),
                ended=None if running else Terminated(0, utcnow(), utcnow()),
            )
        ]
        self.pods.put([record])

    def remove(self, name: str) -> None:
        assert self.pods.remove(self.ns, [name]) == 1


def test_a_pod_watch_resumes_exactly_after_a_resource_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    writer = PodWriter(server, client, ns)
    writer.put("a", app="x")
    listed = client.get(pods_path(ns)).json()
    start = listed["metadata"]["resourceVersion"]
    (pod_a,) = listed["items"]
    # the list's version is a point in the store's history, at or after its pods' writes
    assert int(start) >= version(pod_a)
    writer.put("b", app="x")
    writer.put("a", "Succeeded", app="x")
    finished = client.get(pods_path(ns, "a")).json()
    writer.remove("b")
    params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}
    with watching(server.url, pods_path(ns), params) as events:
        seen = events.rest()
    assert [summary(e) for e in seen] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert seen[1]["object"] == finished and finished["status"]["phase"] == "Succeeded"
    versions = [version(e["object"]) for e in seen]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert version(finished) > version(pod_a)
    # from the middle: only what came after
    params["resourceVersion"] = str(versions[0])
    with watching(server.url, pods_path(ns), params) as events:
        assert [summary(e) for e in events.rest()] == [("MODIFIED", "a"), ("DELETED", "b")]
    # "0": the pods there are, as ADDED; every namespace's watch path sees them too
    params["resourceVersion"] = "0"
    with watching(server.url, pods_path(ns), params) as events:
        assert [summary(e) for e in events.rest()] == [("ADDED", "a")]
    params = {
        "resourceVersion": start,
        "labelSelector": "app=x",
        "fieldSelector": f"metadata.namespace={ns}",
        "timeoutSeconds": 1,
    }
    with watching(server.url, "/api/v1/watch/pods", params) as events:
        assert [summary(e) for e in events.rest()] == [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
        ]


def test_a_resumed_pod_watch_selects_by_labels_and_fields(
    server: Server, client: httpx.Client, ns: str
) -> None:
    writer = PodWriter(server, client, ns)
    writer.put("a", app="x")
    writer.put("b", app="y")
    start = client.get(pods_path(ns)).json()["metadata"]["resourceVersion"]
    writer.put("b", app="x")  # b comes into the selection
    writer.put("a", "Succeeded", app="x")  # a leaves the status.phase=Running one
    writer.put("a", "Succeeded", app="z")  # and then the app=x one
    path = pods_path(ns)
    by_label = {"watch": "1", "resourceVersion": start, "labelSelector": "app=x"}
    with watching(server.url, path, {**by_label, "timeoutSeconds": 1}) as events:
        seen = events.rest()
    # judged by how each pod was at the version the watch resumed from (the journal's)
    assert [summary(e) for e in seen] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert seen[2]["object"]["metadata"]["labels"] == {"app": "x"}  # as last selected
    by_phase = {
        "watch": "1",
        "resourceVersion": start,
        "fieldSelector": "status.phase=Running",
        "timeoutSeconds": 1,
    }
    with watching(server.url, path, by_phase) as events:
        seen = events.rest()
    assert [summary(e) for e in seen] == [("MODIFIED", "b"), ("DELETED", "a")]
    assert seen[1]["object"]["status"]["phase"] == "Running"
    by_name = {**by_phase, "fieldSelector": "metadata.name=b"}
    with watching(server.url, path, by_name) as events:
        assert [summary(e) for e in events.rest()] == [("MODIFIED", "b")]


def test_a_pod_watch_older_than_the_journal_is_a_410_and_bookmarks_say_how_far(
    server: Server, client: httpx.Client, ns: str
) -> None:
    writer = PodWriter(server, client, ns)
    for name in ("a", "b"):
        writer.put(name)
    first_page = client.get(pods_path(ns), params={"limit": 1}).json()
    old = first_page["metadata"]["resourceVersion"]
    assert first_page["metadata"]["continue"]
    writer.put("a", "Succeeded")
    compacted = server.store().compact(keep_seconds=0, min_entries=0)
    assert compacted > int(old)
    with watching(server.url, pods_path(ns), {"watch": "1", "resourceVersion": old}) as events:
        (error,) = events.rest()
    assert error["type"] == "ERROR"
    status = error["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"] == f"too old resource version: {old} ({compacted})"
    expired = client.get(
        pods_path(ns), params={"limit": 1, "continue": first_page["metadata"]["continue"]}
    )
    assert_status(expired, 410, "Expired", "continue parameter is too old")
    # from the list's version on: only what comes after, and the bookmark that ends
    # the watch says how far it read
    latest = client.get(pods_path(ns)).json()["metadata"]["resourceVersion"]
    params = {
        "watch": "1",
        "resourceVersion": latest,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": 1.5,
    }
    with watching(server.url, pods_path(ns), params) as events:
        writer.put("c")
        added = events.next()
        rest = events.rest()
    assert summary(added) == ("ADDED", "c") and version(added["object"]) > int(latest)
    assert rest[-1]["type"] == "BOOKMARK"
    assert rest[-1]["object"]["kind"] == "Pod"
    assert int(rest[-1]["object"]["metadata"]["resourceVersion"]) >= version(added["object"])


def test_kubectl_get_pods_watch_and_the_kubernetes_client_resume(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    writer = PodWriter(server, client, ns)
    writer.put("first")
    kubectl = kubectl_for(server.url, tmp_path, namespace=ns)
    watch = Background(kubectl, "get", "pods", "-w", "--output-watch-events")
    try:
        # the list first, then the watch from the list's version: each change once
        watch.wait_for(lambda lines: any("first" in line for line in lines))
        writer.put("second")
        writer.put("first", "Succeeded")
        lines = watch.wait_for(
            lambda lines: any(line.split()[:2] == ["MODIFIED", "first"] for line in lines)
        )
    finally:
        watch.stop()
    assert lines is not None
    events = [line.split()[:2] for line in lines]
    assert events == [
        ["EVENT", "NAME"],
        ["ADDED", "first"],
        ["ADDED", "second"],
        ["MODIFIED", "first"],
    ]

    kubernetes = pytest.importorskip("kubernetes")
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    with kubernetes.client.ApiClient(configuration) as api_client:
        api = kubernetes.client.CoreV1Api(api_client)
        listed = api.list_namespaced_pod(ns)
        start = listed.metadata.resource_version
        writer.put("second", "Succeeded")
        writer.remove("first")
        w = kubernetes.watch.Watch()
        resumed = []
        for event in w.stream(
            api.list_namespaced_pod, ns, resource_version=start, timeout_seconds=30
        ):
            resumed.append((event["type"], event["object"].metadata.name))
            if len(resumed) == 2:
                w.stop()
        assert resumed == [("MODIFIED", "second"), ("DELETED", "first")]
        server.store().compact(keep_seconds=0, min_entries=0)
        with pytest.raises(kubernetes.client.ApiException) as info:
            for _event in kubernetes.watch.Watch().stream(
                api.list_namespaced_pod, ns, resource_version=start, timeout_seconds=30
            ):
                pass
        assert info.value.status == 410 and "too old resource version" in str(info.value)


# -- events: recording one, counting a repeat and removing them take revisions -------


def events_path(ns: str, group: bool = False) -> str:
    base = "/apis/events.k8s.io/v1" if group else "/api/v1"
    return f"{base}/namespaces/{ns}/events"


def test_an_event_watch_resumes_exactly_after_a_resource_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    store = server.store()
    client.post(runtimes_path(ns), json=runtime("ev"))
    store.record_event("TrainingRuntime", ns, "ev", reason="First", message="one")
    listed = client.get(events_path(ns)).json()
    start = listed["metadata"]["resourceVersion"]
    (first,) = listed["items"]
    assert int(start) >= version(first)
    store.record_event("TrainingRuntime", ns, "ev", reason="Second", message="two")
    store.record_event("TrainingRuntime", ns, "ev", reason="First", message="one")  # repeated
    repeated = client.get(f"{events_path(ns)}/{first['metadata']['name']}").json()
    assert repeated["count"] == 2 and version(repeated) > version(first)
    client.delete(runtimes_path(ns, "ev"))  # its events go with it
    params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}
    with watching(server.url, events_path(ns), params) as events:
        seen = events.rest()
    assert [(e["type"], e["object"]["reason"]) for e in seen] == [
        ("ADDED", "Second"),
        ("MODIFIED", "First"),
        ("DELETED", "First"),
        ("DELETED", "Second"),
    ]
    assert seen[1]["object"] == repeated
    assert seen[2]["object"]["count"] == 2  # as it was
    versions = [version(e["object"]) for e in seen]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert all(e["object"]["kind"] == "Event" for e in seen)
    # from the middle: only what came after
    params["resourceVersion"] = str(versions[1])
    with watching(server.url, events_path(ns), params) as events:
        assert [e["type"] for e in events.rest()] == ["DELETED", "DELETED"]
    # events.k8s.io's form, selected by its own field names
    params = {
        "watch": "true",
        "resourceVersion": start,
        "fieldSelector": "regarding.name=ev,reason=Second",
        "timeoutSeconds": 1,
    }
    with watching(server.url, events_path(ns, group=True), params) as events:
        seen = events.rest()
    assert [(e["type"], e["object"]["note"]) for e in seen] == [
        ("ADDED", "two"),
        ("DELETED", "two"),
    ]
    assert {e["object"]["apiVersion"] for e in seen} == {"events.k8s.io/v1"}
    # a version older than the journal: a 410 ERROR event
    compacted = store.compact(keep_seconds=0, min_entries=0)
    with watching(server.url, events_path(ns), {"watch": "1", "resourceVersion": start}) as ev:
        (error,) = ev.rest()
    assert error["type"] == "ERROR" and error["object"]["code"] == 410
    assert error["object"]["message"] == f"too old resource version: {start} ({compacted})"


def test_kubectl_get_events_watch_prints_each_event_once(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    store = server.store()
    client.post(runtimes_path(ns), json=runtime("kev"))
    store.record_event("TrainingRuntime", ns, "kev", reason="Listed", message="before")
    kubectl = kubectl_for(server.url, tmp_path, namespace=ns)
    watch = Background(kubectl, "get", "events", "-w", "--output-watch-events")
    try:
        # the list first, then the watch from the list's version
        watch.wait_for(lambda lines: any("Listed" in line for line in lines))
        store.record_event("TrainingRuntime", ns, "kev", reason="Watched", message="after")
        store.record_event("TrainingRuntime", ns, "kev", reason="Listed", message="before")
        lines = watch.wait_for(
            lambda lines: any(line.startswith("MODIFIED") and "Listed" in line for line in lines)
        )
    finally:
        watch.stop()
    assert lines is not None
    kinds = [(line.split()[0], "Listed" if "Listed" in line else "Watched") for line in lines[1:]]
    assert kinds == [("ADDED", "Listed"), ("ADDED", "Watched"), ("MODIFIED", "Listed")]
