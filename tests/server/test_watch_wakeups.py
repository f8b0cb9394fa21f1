"""A watch learns of every write of the server's own process as the write commits,
whoever makes it: a controller in its thread (a pod it records, an event, its
status), a request. Here the server reads the store's revision (for other processes'
writes) and the journal (when nothing woke it) only once an hour, so every event a
watch gets below reached it through the commit of the write that made it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.capabilities import backend
from ketch.core.capability import Capability
from ketch.core.controller import Controller, Key, Result
from ketch.core.kinds import Kind
from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.core.store.pods import ContainerRecord, Owner, PodRecord, PodStore, Terminated
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import utcnow
from ketch.server import watch
from ketch.server.app import create_app
from tests.server.helpers import ThreadServer
from tests.server.test_watch import summary, version, watching

GIZMO = Kind("Gizmo", "example.com", ("v1",), "gizmos")
NS = "toys"
GIZMOS = f"/apis/example.com/v1/namespaces/{NS}/gizmos"
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"


class GizmoController(Controller):
    """For each Gizmo: writes its status, then records its pod running, its pod ended
    and an event, each a write of its own, from the controller's thread."""

    kind = "Gizmo"

    def __init__(self, store: ResourceStore) -> None:
        super().__init__(store)
        self.pods = PodStore(store.database)

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        gizmo = self.store.get(self.kind, namespace, name)
        if gizmo.status.get("phase") == "Running":
            return None
        self.store.update_status(self.kind, namespace, name, {"phase": "Running"})
        owner = Owner("example.com/v1", "Gizmo", name, gizmo.metadata.uid or "")
        started = utcnow()
        pod = PodRecord(namespace=namespace, name=f"{name}-pod", owner=owner, phase="Running")
        pod.containers = [ContainerRecord("main", {"image": "i"}, "running", started_at=started)]
        self.pods.put([pod])
        pod.phase = "Succeeded"
        ended = Terminated(0, started, utcnow())
        pod.containers = [
            ContainerRecord("main", {"image": "i"}, "terminated", started_at=started, ended=ended)
        ]
        self.pods.put([pod])
        self.store.record_event(self.kind, namespace, name, reason="Finished", message="done")
        return None


@dataclass
class Quiet:
    url: str
    #: the app's own connections to its store (what its controllers and services write by)
    database: Database


@pytest.fixture
def quiet_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Quiet]:
    """An app in this process whose watches neither poll nor read the journal unless
    a commit wakes them (for an hour)."""
    monkeypatch.setenv(watch.POLL_ENV, "3600")
    monkeypatch.setattr(watch, "IDLE_READ_SECONDS", 3600.0)
    toy = Capability(
        "toy",
        kinds=(GIZMO,),
        validators=lambda _a: {"Gizmo": lambda _r: None},
        controllers=(lambda store, _backend: GizmoController(store),),
    )
    app = create_app(
        (toy,), backend=backend(), database_url=f"sqlite:///{tmp_path / 'k.db'}", home=tmp_path
    )
    with ThreadServer(app) as running:
        yield Quiet(running.url, app.state.api.database)


def gizmo(name: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": name, "namespace": namespace},
    }


def test_a_controllers_writes_reach_the_watches_as_they_commit(quiet_server: Quiet) -> None:
    url = quiet_server.url
    with httpx.Client(base_url=url, timeout=15.0) as http:
        start = http.get(PODS).json()["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": start}
        with (
            watching(url, PODS, params) as pods,
            watching(url, EVENTS, params) as events,
            watching(url, GIZMOS, params) as gizmos,
        ):
            made = http.post(GIZMOS, json=gizmo("g1"))
            assert made.status_code == 201, made.text
            # each stream in the order the controller wrote, each write once
            added, ended = pods.next(), pods.next()
            assert summary(added) == ("ADDED", "g1-pod")
            assert added["object"]["status"]["phase"] == "Running"
            assert summary(ended) == ("MODIFIED", "g1-pod")
            assert ended["object"]["status"]["phase"] == "Succeeded"
            recorded = events.next()
            assert recorded["type"] == "ADDED" and recorded["object"]["reason"] == "Finished"
            created, running = gizmos.next(), gizmos.next()
            assert summary(created) == ("ADDED", "g1") and summary(running) == ("MODIFIED", "g1")
            assert running["object"]["status"] == {"phase": "Running"}
            order = [version(e["object"]) for e in (created, running, added, ended, recorded)]
            assert order == sorted(order) and order[0] > int(start)
            # a second object: the same, after the first's
            assert http.post(GIZMOS, json=gizmo("g2")).status_code == 201
            assert [summary(pods.next()) for _ in range(2)] == [
                ("ADDED", "g2-pod"),
                ("MODIFIED", "g2-pod"),
            ]
            assert events.next()["object"]["involvedObject"]["name"] == "g2"
            assert [summary(gizmos.next()) for _ in range(2)] == [
                ("ADDED", "g2"),
                ("MODIFIED", "g2"),
            ]


def test_writes_from_other_threads_and_namespace_changes_reach_the_watches(
    quiet_server: Quiet,
) -> None:
    """A write of the app's process made outside its controllers and requests (a
    service's thread, through a store of its own on the app's connections) wakes the
    watches as well; so do namespaces coming and going."""
    url = quiet_server.url
    with httpx.Client(base_url=url, timeout=15.0) as http:
        assert http.post(GIZMOS, json=gizmo("first")).status_code == 201
        start = http.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": start}
        with (
            watching(url, "/api/v1/namespaces", params) as namespaces,
            watching(
                url,
                "/apis/example.com/v1/watch/gizmos",
                {**params, "fieldSelector": "metadata.namespace=by-service"},
            ) as gizmos,
        ):
            store = ResourceStore(quiet_server.database, migrate=False)
            service = threading.Thread(
                target=lambda: store.create(Resource.from_manifest(gizmo("s", "by-service")))
            )
            service.start()
            service.join(30)
            assert summary(gizmos.next()) == ("ADDED", "s")
            assert summary(namespaces.next()) == ("ADDED", "by-service")
            made = http.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "made"}},
            )
            assert made.status_code == 201, made.text
            assert summary(namespaces.next()) == ("ADDED", "made")
            assert (
                http.delete("/apis/example.com/v1/namespaces/by-service/gizmos/s").status_code
                == 200
            )
            gone = namespaces.next()
            assert summary(gone) == ("DELETED", "by-service")
            assert gone["object"]["status"]["phase"] == "Terminating"
