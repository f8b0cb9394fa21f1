"""The isolation matrix: every route the server serves × every kind of caller × the
route's verbs, with the outcome Kubeflow's roles give, and no leak of one profile's
objects to a user without a role in it.

Callers: anonymous, the owner of the profile ``team-a``, a contributor with
``kubeflow-edit`` and one with ``kubeflow-view`` there (RoleBindings), another user
(owner of ``team-b``), a cluster admin, and the owner named by a trusted proxy's
``kubeflow-userid`` header, from an address the server trusts and from one it does not
(a second app that trusts only 10.0.0.0/8: the header is ignored, so the request is
anonymous).

Routes are enumerated from the app (:func:`ketch.server.access.routes_of`): each must
declare an access rule, and each is called with its path parameters filled from
objects made in ``team-a`` (a ConfigMap, a Secret, a suspended PyTorchJob,
RoleBindings, a Profile, an event, KFP experiments, pipelines, runs and recurring
runs); the generic Kubernetes routes once per kind. The expected outcome is computed
here from Kubeflow's roles (``view`` reads all but Secrets, ``edit`` writes all but
RoleBindings, ``admin`` all; a namespace's own object and other cluster-scoped
objects are written by cluster admins; a Profile is read by its contributors and
changed by its owner), independently of the server's rules: 401 for anonymous callers
(but public routes), 403 without the role, anything else when allowed. Kubernetes
writes are dry runs (``dryRun=All``), so what the allowed callers send changes nothing.

The servers run in this process with their controllers off (nothing runs: the job is
suspended, the runs are never started). One test walks the whole matrix and reports
every mismatch in one table.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ketch.core.access import rule_of
from ketch.core.store.resources import ResourceStore
from tests.core.conftest import _postgres_database
from tests.tenancy.matrix_probes import call, expected, outcome, probes_of
from tests.tenancy.matrix_world import (
    CALLERS,
    ELSEWHERE,
    FASTAPI_PAGES,
    KFP,
    MERGE,
    OWNER,
    TABLE,
    TEAM,
    World,
    apply,
    config_map,
    make_world,
    ok,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The servers and team-a's objects, on SQLite and on PostgreSQL when one is
    configured (``scripts/ci-postgres.sh``)."""
    home = tmp_path_factory.mktemp("ketch-matrix")
    if request.param == "sqlite":
        yield from make_world(home)
        return
    for url in _postgres_database():
        yield from make_world(home, url)


# -- the tests -----------------------------------------------------------------------------


def test_every_route_declares_an_access_rule(world: World) -> None:
    missing = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in world.routes
        if r.path not in FASTAPI_PAGES and rule_of(r.endpoint) is None
    ]
    assert not missing, "routes without an access rule:\n" + "\n".join(missing)


def _snapshot(store: ResourceStore) -> dict[str, Any]:
    """What team-a holds, to compare after the matrix."""
    kept: dict[str, Any] = {}
    for kind in ("ConfigMap", "Secret", "PyTorchJob", "RoleBinding"):
        for resource in store.list(kind, TEAM):
            kept[f"{kind}/{resource.metadata.name}"] = (
                resource.metadata.resourceVersion,
                resource.spec,
                dict(resource.metadata.labels),
            )
    profile = store.get("Profile", "default", TEAM)
    kept["Profile"] = (profile.metadata.resourceVersion, profile.spec)
    return kept


def test_the_matrix(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    probes, unfilled = probes_of(world)
    before = _snapshot(world.store)
    clients = {caller.name: world.client(caller) for caller in CALLERS}
    mismatches: list[tuple[str, str, str, str, str, int]] = []
    calls = 0
    try:
        for probe in probes:
            for caller in CALLERS:
                if probe.reset is not None:
                    probe.reset()
                status = call(clients[caller.name], probe)
                calls += 1
                want = expected(caller, probe.need)
                if outcome(status) != want:
                    mismatches.append(
                        (caller.name, probe.method, probe.path, probe.route, want, status)
                    )
    finally:
        for http in clients.values():
            http.close()
    routes = {(p.route, p.method) for p in probes}
    with capsys.disabled():
        print(
            f"\nisolation matrix: {len(routes)} route-verbs ({len(probes)} probes) "
            f"x {len(CALLERS)} callers = {calls} requests, {len(mismatches)} mismatches"
        )
        for row in mismatches:
            print("  {:<18} {:<6} {}  [{}] expected {} got {}".format(*row))
    assert not unfilled, "routes the matrix does not know how to call:\n" + "\n".join(unfilled)
    assert not mismatches, f"{len(mismatches)} outcomes differ from Kubeflow's roles"
    after = _snapshot(world.store)
    # what allowed callers made is there too; what was there is unchanged
    assert {key: after.get(key) for key in before} == before, "team-a's objects changed"


# -- leaks of lists, tables, pages and watches ---------------------------------------------


def _namespaces_in(body: dict[str, Any]) -> set[str]:
    if body.get("kind") == "Table":
        objects = [row.get("object") or {} for row in body.get("rows", [])]
    else:
        objects = body.get("items", [])
    return {str((o.get("metadata") or {}).get("namespace")) for o in objects}


ACROSS = (
    "/api/v1/configmaps",
    "/api/v1/secrets",
    "/api/v1/pods",
    "/api/v1/events",
    "/apis/events.k8s.io/v1/events",
    "/apis/kubeflow.org/v1/pytorchjobs",
    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
)


def test_lists_across_namespaces_show_only_the_callers_namespaces(world: World) -> None:
    other = next(c for c in CALLERS if c.name == "other-user")
    owner = next(c for c in CALLERS if c.name == "owner")
    admin = next(c for c in CALLERS if c.name == "cluster-admin")
    with world.client(other) as bob, world.client(owner) as alice, world.client(admin) as root:
        for path in ACROSS:
            for headers in ({}, TABLE):
                seen = _namespaces_in(ok(bob.get(path, headers=headers)))
                assert TEAM not in seen, (path, headers, seen)
                mine = _namespaces_in(ok(alice.get(path, headers=headers)))
                assert ELSEWHERE not in mine, (path, headers, mine)
                if "pods" not in path:
                    assert seen == {ELSEWHERE} or (
                        "rolebindings" in path and seen <= {ELSEWHERE}
                    ), (path, seen)
                    assert TEAM in _namespaces_in(ok(root.get(path, headers=headers)))
        # pages of one item, followed to the end, hold exactly the caller's objects
        # (bob's one namespace is read alone; alice's several are filtered row by row)
        assert _paged(bob, "/api/v1/configmaps") == [(ELSEWHERE, "cm-a")]
        everything = ok(alice.get("/api/v1/configmaps"))["items"]
        paged = _paged(alice, "/api/v1/configmaps")
        assert paged == [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everything]
        assert (TEAM, "cm-a") in paged and all(ns != ELSEWHERE for ns, _ in paged)
        # namespaces and profiles: only the caller's
        listed = ok(bob.get("/api/v1/namespaces"))
        assert {i["metadata"]["name"] for i in listed["items"]} == {ELSEWHERE}
        table = ok(bob.get("/api/v1/namespaces", headers=TABLE))
        assert [r["object"]["metadata"]["name"] for r in table["rows"]] == [ELSEWHERE]
        if world.kinds.get(("kubeflow.org", "profiles"), (True,))[0] is False:
            profiles = ok(bob.get("/apis/kubeflow.org/v1/profiles"))
            assert {i["metadata"]["name"] for i in profiles["items"]} == {ELSEWHERE}
            assert bob.get(f"/apis/kubeflow.org/v1/profiles/{TEAM}").status_code == 403
        # KFP's lists without a namespace
        for what, key in (("experiments", "experiments"), ("runs", "runs")):
            body = ok(bob.get(f"{KFP}/{what}"))
            assert all(i.get("namespace") != TEAM for i in body.get(key) or []), body


def _paged(http: httpx.Client, path: str) -> list[tuple[str, str]]:
    """Every item of a list read one per page, by its continue tokens."""
    names: list[tuple[str, str]] = []
    token = None
    while True:
        params = {"limit": "1", **({"continue": token} if token else {})}
        page = ok(http.get(path, params=params))
        names += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            return names


def _watch(
    http: httpx.Client, path: str, params: dict[str, str], out: queue.Queue[Any]
) -> threading.Thread:
    def run() -> None:
        try:
            with http.stream("GET", path, params=params) as response:
                out.put(("status", response.status_code))
                for line in response.iter_lines():
                    if line:
                        out.put(("event", json.loads(line)))
        except httpx.HTTPError as exc:
            out.put(("error", exc))
        out.put(("end", None))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watches_across_namespaces_send_nothing_of_other_namespaces(world: World) -> None:
    other = next(c for c in CALLERS if c.name == "other-user")
    owner = next(c for c in CALLERS if c.name == "owner")
    with world.client(other) as bob, world.client(owner) as alice:
        start = ok(bob.get("/api/v1/configmaps"))["metadata"]["resourceVersion"]
        marks = {"allowWatchBookmarks": "true", "timeoutSeconds": "30"}
        streams = {
            "from-now": ("/api/v1/configmaps", {"watch": "true"}),
            "resumed": ("/api/v1/watch/configmaps", {"resourceVersion": start}),
            "table": ("/api/v1/configmaps", {"watch": "true", "as": "Table"}),
            "namespaces": ("/api/v1/namespaces", {"watch": "true", "resourceVersion": start}),
            "events": ("/api/v1/events", {"watch": "true", "resourceVersion": start}),
            "jobs": ("/apis/kubeflow.org/v1/pytorchjobs", {"watch": "true"}),
        }
        queues: dict[str, queue.Queue[Any]] = {}
        for key, (path, params) in streams.items():
            queues[key] = queue.Queue()
            _watch(bob, path, {**params, **marks}, queues[key])
        for q in queues.values():
            assert q.get(timeout=10) == ("status", 200)
        marker = uuid.uuid4().hex[:6]
        # the owner writes in team-a (through the API and, as another process would,
        # the store: an object, an event, an object of a new namespace), then the
        # other user in team-b
        mine = config_map(f"a-{marker}", TEAM)
        ok(alice.post(f"/api/v1/namespaces/{TEAM}/configmaps", json=mine))
        ok(
            alice.patch(
                f"/apis/kubeflow.org/v1/namespaces/{TEAM}/pytorchjobs/job-a",
                json={"metadata": {"labels": {"m": marker}}},
                headers=MERGE,
            )
        )
        world.store.record_event("ConfigMap", TEAM, f"a-{marker}", reason="Matrix")
        apply(world.store, config_map("x", f"{TEAM}-{marker}"))
        theirs = config_map(f"b-{marker}", ELSEWHERE)
        ok(bob.post(f"/api/v1/namespaces/{ELSEWHERE}/configmaps", json=theirs))
        world.store.record_event("ConfigMap", ELSEWHERE, f"b-{marker}", reason="Matrix")
        written = world.store.revision()
        # a bookmark at or after the last write: every change up to it was read
        seen: dict[str, list[dict[str, Any]]] = {}
        for key, q in queues.items():
            events: list[dict[str, Any]] = []
            while True:
                what, value = q.get(timeout=30)
                assert what == "event", (key, what, value, events)
                if value["type"] == "BOOKMARK":
                    version = value["object"]["metadata"].get("resourceVersion") or "0"
                    if int(version) >= written:
                        break
                    continue
                events.append(value)
            seen[key] = events
        text = json.dumps(seen)
        assert TEAM not in text, f"a watch leaked team-a: {text[:2000]}"
        for key in ("from-now", "resumed", "table", "events"):
            assert f"b-{marker}" in json.dumps(seen[key]), (key, seen[key])
        assert [e["object"]["metadata"]["name"] for e in seen["jobs"]] == ["job-a"]
    # the owner's watch of the same does see team-a's
    with world.client(owner) as alice:
        params = {"watch": "true", "resourceVersion": start, "timeoutSeconds": "1"}
        with alice.stream("GET", "/api/v1/configmaps", params=params) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
        names = {e["object"]["metadata"]["name"] for e in lines}
        assert f"a-{marker}" in names and f"b-{marker}" not in names


def test_an_anonymous_or_untrusted_proxy_caller_is_told_to_sign_in(world: World) -> None:
    untrusted = next(c for c in CALLERS if c.name == "proxy-disallowed")
    trusted = next(c for c in CALLERS if c.name == "proxy-allowed")
    with world.client(untrusted) as http:
        answer = http.get("/auth/whoami")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    with world.client(trusted) as http:
        me = ok(http.get("/auth/whoami"))
        assert (me["user"], me["via"]) == (OWNER, "proxy")
    assert re.match(r"http://127\.0\.0\.1:\d+$", world.distrusting.url)
