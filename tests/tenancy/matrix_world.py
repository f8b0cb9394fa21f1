"""The world of the isolation matrix (tests/tenancy/test_isolation_matrix.py): its
callers, and two servers in this process over one store (one trusts 127.0.0.1 as an
authenticating proxy, the other only 10.0.0.0/8) with their controllers off, and what
the profile ``team-a`` holds (a ConfigMap, a Secret, a suspended PyTorchJob,
RoleBindings of its contributors, an event, KFP experiments, pipelines, stored runs
and recurring runs), and the same in ``team-b``, another user's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kfp import compiler, dsl

from ketch.core.resource import Resource, utcnow
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.records import Recorder
from ketch.pipelines.tasks import RunContext
from ketch.server.access import routes_of
from ketch.tenancy.authn import ProxySettings, parse_networks
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import Directory
from tests.pipelines.components import inc
from tests.server.fixtures import job as suspended_job
from tests.server.helpers import ThreadServer, wait_until
from tests.tenancy.helpers import add_users, profile

TEAM, ELSEWHERE = "team-a", "team-b"
#: a profile of the owner's that the matrix may delete
SPARE = "team-spare"
ADMIN, OWNER, EDITOR, VIEWER, OTHER = (
    "root@example.com",
    "alice@example.com",
    "eddie@example.com",
    "vera@example.com",
    "bob@example.com",
)
VIEW, EDIT, ADMIN_LEVEL = 1, 2, 3
KFP = "/apis/v2beta1"
#: FastAPI's own pages, which carry no rule (the app answers them only to callers the
#: middleware let through)
FASTAPI_PAGES = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
DRY = {"dryRun": "All"}
MERGE = {"content-type": "application/merge-patch+json"}
TABLE = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


# -- callers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    #: its level in team-a (0: none), as Kubeflow's roles give it
    level: int = 0
    signed_in: bool = True
    cluster_admin: bool = False
    owner: bool = False
    #: which app it calls: "trusting" (127.0.0.1 is a trusted proxy) or "distrusting"
    app: str = "trusting"


CALLERS = (
    Caller("anonymous", signed_in=False),
    Caller("proxy-disallowed", signed_in=False, app="distrusting"),
    Caller("other-user"),
    Caller("contributor-view", level=VIEW),
    Caller("contributor-edit", level=EDIT),
    Caller("owner", level=ADMIN_LEVEL, owner=True),
    Caller("proxy-allowed", level=ADMIN_LEVEL, owner=True),
    Caller("cluster-admin", level=ADMIN_LEVEL, cluster_admin=True),
)

# -- the servers and what team-a holds ----------------------------------------------------


@dataclass
class World:
    trusting: ThreadServer
    distrusting: ThreadServer
    store: ResourceStore
    tokens: dict[str, str]
    kinds: dict[tuple[str, str], tuple[bool, str]]  # (group, plural) -> namespaced, version
    #: the app's own store: its writes reach the app's roles at once
    app_store: Any = None
    ids: dict[str, str] = field(default_factory=dict)
    routes: list[Any] = field(default_factory=list)

    def client(self, caller: Caller) -> httpx.Client:
        server = self.trusting if caller.app == "trusting" else self.distrusting
        headers: dict[str, str] = {}
        if caller.name.startswith("proxy-"):
            headers["kubeflow-userid"] = OWNER
        elif caller.signed_in:
            headers["authorization"] = f"Bearer {self.tokens[caller.name]}"
        return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def apply(store: ResourceStore, manifest: dict[str, Any]) -> Resource:
    return store.apply(Resource.from_manifest(manifest))


def binding(store: ResourceStore, name: str, role: str, user: str) -> None:
    apply(
        store,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": TEAM},
            "spec": {
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        },
    )


def config_map(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": "v"},
    }


def secret(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": "hunter2"},
    }


def job(name: str, namespace: str) -> dict[str, Any]:
    """A suspended PyTorchJob in ``namespace``."""
    manifest = suspended_job(name)
    manifest["metadata"]["namespace"] = namespace
    return manifest


@dsl.pipeline(name="matrix-pipeline")
def _pipeline():  # kfp reads the annotations it finds: none here
    inc(x=1)


def pipeline_spec(tmp: Path) -> dict[str, Any]:
    path = tmp / "pipeline.yaml"
    compiler.Compiler().compile(_pipeline, str(path))
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, (response.request.url, response.text)
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def make_world(home: Path, url: str | None = None) -> Iterator[World]:
    """The servers on the store at ``url`` (default: SQLite in ``home``), with what
    the profiles hold."""
    url = url or f"sqlite:///{home / 'ketch.db'}"
    database = Database(url)
    database.migrate([MIGRATIONS])
    callers = {
        "cluster-admin": ADMIN,
        "owner": OWNER,
        "contributor-edit": EDITOR,
        "contributor-view": VIEWER,
        "other-user": OTHER,
    }
    made = add_users(Directory(database), callers.values(), admin=ADMIN)
    tokens = {caller: made[email] for caller, email in callers.items()}

    from ketch.ui.assembly import create_app  # every capability's API and the dashboard

    def app(networks: list[str]) -> Any:
        return create_app(
            proxy=ProxySettings(networks=parse_networks(networks)),
            database_url=url,
            home=home,
            background=False,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KETCH_HOME", str(home))
        patch.setenv("KETCH_WATCH_POLL_SECONDS", "0.2")
        patch.setenv("KETCH_WATCH_BOOKMARK_SECONDS", "0.5")
        # nothing runs here, and the process's backend is shared with other tests of
        # this worker: the apps must not make it run workloads as profile users
        patch.setenv("KETCH_HOST_ISOLATION", "off")
        trusting_app = app(["127.0.0.1/32"])
        with ThreadServer(trusting_app) as trusting, ThreadServer(app(["10.0.0.0/8"])) as other:
            store = ResourceStore(database)
            kinds = {
                (k.group, k.plural): (k.namespaced, k.api_version.rpartition("/")[2])
                for k in trusting_app.state.api.kinds
            }
            world = World(trusting, other, store, tokens, kinds, trusting_app.state.api.store)
            # every route with an endpoint (FastAPI's included routers answer route
            # contexts, not APIRoutes)
            world.routes = [
                r for r in routes_of(trusting_app.routes) if getattr(r, "endpoint", None)
            ]
            populate(world, home)
            yield world
    database.dispose()


def populate(world: World, home: Path) -> None:
    store = world.store
    for name, owner in ((TEAM, OWNER), (ELSEWHERE, OTHER), (SPARE, OWNER)):
        store.apply(profile(name, owner))
    binding(store, "edit-eddie", "kubeflow-edit", EDITOR)
    binding(store, "view-vera", "kubeflow-view", VIEWER)
    for namespace in (TEAM, ELSEWHERE):
        apply(store, config_map("cm-a", namespace))
        apply(store, secret("secret-a", namespace))
        apply(store, job("job-a", namespace))
        event = store.record_event(
            "PyTorchJob", namespace, "job-a", reason="Matrix", message=f"about {namespace}"
        )
        world.ids[f"event:{namespace}"] = f"job-a.{event.id}"
    owner = Caller("owner", level=ADMIN_LEVEL, owner=True)
    # the owner's role is read from a snapshot of the store: wait for it
    with world.client(owner) as http:
        wait_until(lambda: http.get(f"/api/v1/namespaces/{TEAM}/configmaps").status_code == 200)
        spec = pipeline_spec(home)
        world.ids["spec"] = json.dumps(spec)
        for key in ("exp", "exp-del"):
            made = ok(
                http.post(
                    f"{KFP}/experiments",
                    json={"display_name": f"matrix-{key}", "namespace": TEAM},
                )
            )
            world.ids[key] = made["experiment_id"]
        for key in ("run", "run-del"):
            # this server executes no runs: the runs are stored as the run service
            # stores them
            world.ids[key] = stored_run(store.database, world.ids["exp"], home)
        for key in ("pipeline", "pipeline-del"):
            made = ok(
                http.post(
                    f"{KFP}/pipelines/create",
                    json={
                        "pipeline": {"display_name": f"matrix-{key}", "namespace": TEAM},
                        "pipeline_version": {"display_name": "v1", "pipeline_spec": spec},
                    },
                )
            )
            world.ids[key] = made["pipeline_id"]
            world.ids[f"{key}-name"] = f"matrix-{key}"
        versions = ok(http.get(f"{KFP}/pipelines/{world.ids['pipeline']}/versions"))
        world.ids["version"] = versions["pipeline_versions"][0]["pipeline_version_id"]
        for key in ("recurring", "recurring-del"):
            made = ok(
                http.post(
                    f"{KFP}/recurringruns",
                    json={
                        "display_name": f"matrix-{key}",
                        "experiment_id": world.ids["exp"],
                        "pipeline_spec": spec,
                        "mode": "DISABLE",
                        "trigger": {"cron_schedule": {"cron": "0 0 0 1 1 *"}},
                        "max_concurrency": "1",
                    },
                )
            )
            world.ids[key] = made["recurring_run_id"]
        runs = ok(http.get(f"/apis/pipelines.ketch.dev/v1/namespaces/{TEAM}/pipelineruns"))
        world.ids["pipelinerun"] = runs["items"][0]["metadata"]["name"]
        from tests.tenancy.matrix_registry import populate_registry

        populate_registry(world, http)
        from tests.tenancy.matrix_notebooks import populate_notebooks

        populate_notebooks(world)


def stored_run(database: Database, experiment: str, home: Path) -> str:
    """A finished run of :func:`_pipeline` in team-a, stored as the run service
    stores one."""
    run_id = str(uuid.uuid4())
    context = RunContext(
        run_id=run_id,
        display_name=f"matrix-{run_id[:6]}",
        ir=ir_loader.load(_pipeline),
        pipeline_root=str(home / "artifacts"),
        work_dir=home / "work",
        enable_caching=False,
        created_at=utcnow(),
    )
    Recorder(database).create_run(
        context, {}, owner=OWNER, state="SUCCEEDED", namespace=TEAM, experiment_id=experiment
    )
    return run_id
