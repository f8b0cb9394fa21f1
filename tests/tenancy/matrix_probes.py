"""The probes of the isolation matrix (tests/tenancy/test_isolation_matrix.py): each
route the app serves made into concrete requests, its path parameters filled from what
team-a holds (the generic Kubernetes routes once per kind), and what each needs of a
caller as Kubeflow's roles say, computed here independently of the server's rules."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from tests.tenancy.helpers import profile
from tests.tenancy.matrix_world import (
    ADMIN_LEVEL,
    DRY,
    EDIT,
    FASTAPI_PAGES,
    KFP,
    MERGE,
    OWNER,
    SPARE,
    TEAM,
    VIEW,
    Caller,
    World,
    config_map,
    job,
    secret,
)

# -- what a request needs ----------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """What Kubeflow's roles ask of a caller: ``public`` (nobody signed in),
    ``signed-in``, ``level`` (that level in team-a), ``profile-owner``,
    ``cluster-admin``."""

    what: str
    level: int = 0


PUBLIC_NEED = Need("public")
SIGNED_IN = Need("signed-in")
CLUSTER_ADMIN = Need("cluster-admin")
PROFILE_OWNER = Need("profile-owner")


def level(n: int) -> Need:
    return Need("level", n)


def expected(caller: Caller, need: Need) -> str:
    """``401``, ``403`` or ``ok`` (any other answer)."""
    if need.what == "public":
        return "ok"
    if not caller.signed_in:
        return "401"
    if caller.cluster_admin or need.what == "signed-in":
        return "ok"
    if need.what == "level":
        return "ok" if caller.level >= need.level else "403"
    if need.what == "profile-owner":
        return "ok" if caller.owner else "403"
    return "403"


def outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "ok"


@dataclass
class Probe:
    """One concrete request of a route."""

    route: str
    method: str
    path: str
    need: Need
    params: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] | None = None
    stream: bool = False
    #: probes that remove what later ones use run last
    last: bool = False
    #: made again before each caller's request
    reset: Callable[[], None] | None = None


# -- turning routes into probes -------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A kind the generic Kubernetes routes are probed with, and one of its objects."""

    group: str
    version: str
    plural: str
    name: str
    manifest: Callable[[str, str], dict[str, Any]] | None = None
    #: the level its reads and writes need in team-a
    read: int = VIEW
    write: int = EDIT

    @property
    def api(self) -> str:
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"


NAMESPACED = (
    Target("", "v1", "configmaps", "cm-a", config_map),
    Target("", "v1", "secrets", "secret-a", secret, read=EDIT),
    Target("", "v1", "pods", "no-pod"),
    Target("kubeflow.org", "v1", "pytorchjobs", "job-a", job),
    Target("rbac.authorization.k8s.io", "v1", "rolebindings", "edit-eddie", write=ADMIN_LEVEL),
)
PROFILES = Target("kubeflow.org", "v1", "profiles", TEAM)
#: a core kind the server does not serve: the cluster-scoped core routes are checked
#: before they answer 404 (the core group's one cluster kind, Namespace, has routes of
#: its own)
NO_CORE_KIND = Target("", "v1", "nothings", "x")


def _cluster_targets(world: World) -> list[Target]:
    found = [PROFILES] if world.kinds.get(("kubeflow.org", "profiles"), (True,))[0] is False else []
    for (group, plural), (namespaced, version) in sorted(world.kinds.items()):
        if not namespaced and plural not in ("profiles", "namespaces") and group:
            found.append(Target(group, version, plural, "matrix-none"))
            break
    return [*found, NO_CORE_KIND]


def _write_body(target: Target, name: str) -> dict[str, Any]:
    if target.manifest is not None:
        return target.manifest(name, TEAM)
    kind = "".join(p.capitalize() for p in target.plural[:-1].split("-"))
    api_version = f"{target.group}/{target.version}" if target.group else target.version
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


def _kubernetes_probes(route: Any, method: str, world: World) -> list[Probe] | None:
    """The probes of a generic resource route (``/apis/{group}/{version}/...`` and
    ``/api{group}/{version}/...``), once per target kind; ``None`` for another route."""
    path = route.path
    if path.startswith("/api{group:"):
        core = True
        rest = path.split("}/", 1)[1]  # after /api{group}/
    elif path.startswith("/apis/{group}/{version}/"):
        core = False
        rest = path[len("/apis/{group}/") :]
    else:
        return None
    # the version parameter, with its convertor when it has one ({version:ketchapiversion})
    rest = re.sub(r"^\{version(:\w+)?\}/", "", rest)
    namespaced = "{namespace}" in rest
    probes = []
    list_all = not namespaced and rest in ("{plural}", "watch/{plural}") and method == "GET"
    targets: tuple[Target, ...] = NAMESPACED
    if list_all:  # every kind, across namespaces (no list of a kind not served)
        targets = (*NAMESPACED, *_cluster_targets(world)[:-1])
    elif not namespaced:
        targets = tuple(_cluster_targets(world))
    for target in targets:
        if core != (target.group == ""):
            continue
        if rest.endswith("/log") and target.plural != "pytorchjobs":
            continue
        is_cluster = target not in NAMESPACED
        concrete = (
            rest.replace("{namespace}", TEAM)
            .replace("{plural}", target.plural)
            .replace("{name}", target.name)
        )
        url = f"{target.api}/{concrete}"
        probe = Probe(path, method, url, SIGNED_IN)
        named = "{name}" in rest
        if method == "GET":
            probe.stream = "watch/" in rest
            if list_all:
                probe.need = SIGNED_IN  # filtered, checked by the leak tests
            elif is_cluster:
                probe.need = level(VIEW) if target is PROFILES else SIGNED_IN
            else:
                probe.need = level(target.read)
        else:
            probe.params = dict(DRY)
            if is_cluster:
                probe.need = PROFILE_OWNER if target is PROFILES else CLUSTER_ADMIN
                if target is PROFILES and method == "POST":
                    probe.need = CLUSTER_ADMIN  # a new profile: not one the caller owns
            else:
                probe.need = level(target.write)
            if method == "POST":
                probe.json_body = _write_body(target, f"mx-{uuid.uuid4().hex[:6]}")
            elif method == "PUT":
                probe.json_body = (
                    {"status": {}} if rest.endswith("/status") else _write_body(target, target.name)
                )
                if target is PROFILES and not rest.endswith("/status"):
                    probe.json_body = {
                        "apiVersion": "kubeflow.org/v1",
                        "kind": "Profile",
                        "metadata": {"name": TEAM},
                        "spec": {"owner": {"kind": "User", "name": OWNER}},
                    }
            elif method == "PATCH":
                probe.headers = dict(MERGE)
                probe.json_body = (
                    {"status": {}}
                    if rest.endswith("/status")
                    else {"metadata": {"labels": {"matrix": "1"}}}
                )
        assert named or method in ("GET", "POST"), path
        probes.append(probe)
    return probes


def _kfp_probe(path: str, method: str, world: World) -> Probe | None:
    """The probe of a KFP v2beta1 route (``None``: not one)."""
    if not path.startswith(KFP):
        return None
    ids = world.ids
    deleting = method == "DELETE"
    fills = {
        "{experiment_id}": ids["exp-del" if deleting else "exp"],
        "{run_id}": ids["run-del" if deleting else "run"],
        "{recurring_run_id}": ids["recurring-del" if deleting else "recurring"],
        "{pipeline_id}": ids[
            "pipeline-del"
            if deleting and path.endswith("}") and "versions" not in path
            else "pipeline"
        ],
        "{pipeline_version_id}": ids["version"],
        "{name}": ids["pipeline-name"],
        "{node_id}": "no-node",
        "{artifact_name}": "no-artifact",
    }
    url = path
    for key, value in fills.items():
        url = url.replace(key, value)
    probe = Probe(path, method, url, level(VIEW if method == "GET" else EDIT), last=deleting)
    spec = json.loads(ids["spec"])
    tail = path[len(KFP) :]
    if tail == "/healthz":
        probe.need = PUBLIC_NEED
    elif method == "GET" and "{" not in tail or tail == "/pipelines/names/{name}":
        probe.params = {"namespace": TEAM}
        if tail in ("/runs", "/recurringruns"):
            probe.params = {"experiment_id": ids["exp"]}
    elif tail == "/pipelines/upload":
        probe.params = {"name": f"mx-{uuid.uuid4().hex[:6]}", "namespace": TEAM}
        probe.files = {
            "uploadfile": ("p.yaml", yaml.safe_dump(spec).encode(), "application/x-yaml")
        }
    elif tail == "/pipelines/upload_version":
        probe.params = {"pipelineid": ids["pipeline"], "name": f"mx-{uuid.uuid4().hex[:6]}"}
        probe.files = {
            "uploadfile": ("p.yaml", yaml.safe_dump(spec).encode(), "application/x-yaml")
        }
    elif tail == "/pipelines/create":
        probe.json_body = {
            "pipeline": {"display_name": f"mx-{uuid.uuid4().hex[:6]}", "namespace": TEAM},
            "pipeline_version": {"display_name": "v1", "pipeline_spec": spec},
        }
    elif tail == "/pipelines:compile":
        # an empty source: an allowed caller gets 422 before any compiler starts
        probe.json_body = {"namespace": TEAM, "filename": "p.py", "source": ""}
    elif tail == "/pipelines":
        probe.json_body = {"display_name": f"mx-{uuid.uuid4().hex[:6]}", "namespace": TEAM}
    elif tail == "/pipelines/{pipeline_id}/versions" and method == "POST":
        probe.json_body = {"display_name": f"mx-{uuid.uuid4().hex[:6]}", "pipeline_spec": spec}
    elif tail == "/experiments" and method == "POST":
        probe.json_body = {"display_name": f"mx-{uuid.uuid4().hex[:6]}", "namespace": TEAM}
    elif tail == "/runs" and method == "POST":
        probe.json_body = {
            "display_name": "mx",
            "experiment_id": ids["exp"],
            "pipeline_spec": spec,
        }
    elif tail == "/recurringruns" and method == "POST":
        probe.json_body = {
            "display_name": "mx",
            "experiment_id": ids["exp"],
            "pipeline_spec": spec,
            "mode": "DISABLE",
            "trigger": {"cron_schedule": {"cron": "0 0 0 1 1 *"}},
            "max_concurrency": "1",
        }
    return probe


#: the fixed probes of the other routes: path template -> {method: (path, need)}
def _other_probe(path: str, method: str, world: World) -> Probe | None:
    ids = world.ids
    needs: dict[tuple[str, str], tuple[str, Need]] = {
        ("/healthz", "GET"): ("/healthz", PUBLIC_NEED),
        ("/readyz", "GET"): ("/readyz", PUBLIC_NEED),
        ("/auth/token", "POST"): ("/auth/token", PUBLIC_NEED),
        ("/auth/whoami", "GET"): ("/auth/whoami", SIGNED_IN),
        ("/auth/audit", "GET"): ("/auth/audit", CLUSTER_ADMIN),
        ("/auth/login", "GET"): ("/auth/login", PUBLIC_NEED),
        ("/auth/login", "POST"): ("/auth/login", PUBLIC_NEED),
        ("/auth/logout", "POST"): ("/auth/logout", PUBLIC_NEED),
        ("/auth/oidc/login", "GET"): ("/auth/oidc/login", PUBLIC_NEED),
        ("/auth/oidc/callback", "GET"): ("/auth/oidc/callback", PUBLIC_NEED),
        ("/auth/session", "GET"): ("/auth/session", SIGNED_IN),
        ("/auth/account", "GET"): ("/auth/account", SIGNED_IN),
        # KFAM: contributors are managed by the profile's admins; profiles are made by
        # cluster admins and removed by their owners
        ("/kfam/v1/bindings", "GET"): ("/kfam/v1/bindings", level(VIEW)),
        ("/kfam/v1/bindings", "POST"): ("/kfam/v1/bindings", level(ADMIN_LEVEL)),
        ("/kfam/v1/bindings", "DELETE"): ("/kfam/v1/bindings", level(ADMIN_LEVEL)),
        ("/kfam/v1/profiles", "POST"): ("/kfam/v1/profiles", CLUSTER_ADMIN),
        ("/kfam/v1/profiles/{profile}", "DELETE"): (f"/kfam/v1/profiles/{SPARE}", PROFILE_OWNER),
        ("/kfam/v1/role/clusteradmin", "GET"): ("/kfam/v1/role/clusteradmin", SIGNED_IN),
        ("/version", "GET"): ("/version", SIGNED_IN),
        ("/api", "GET"): ("/api", SIGNED_IN),
        ("/api/v1", "GET"): ("/api/v1", SIGNED_IN),
        ("/apis", "GET"): ("/apis", SIGNED_IN),
        ("/apis/ketch.dev/v1/kinds", "GET"): ("/apis/ketch.dev/v1/kinds", SIGNED_IN),
        ("/apis/{group}/{version}", "GET"): ("/apis/kubeflow.org/v1", SIGNED_IN),
        ("/openapi/v2", "GET"): ("/openapi/v2", SIGNED_IN),
        ("/openapi/v3", "GET"): ("/openapi/v3", SIGNED_IN),
        ("/openapi/v3/{path:path}", "GET"): ("/openapi/v3/apis/kubeflow.org/v1", SIGNED_IN),
        ("/api/v1/namespaces", "GET"): ("/api/v1/namespaces", SIGNED_IN),
        ("/api/v1/watch/namespaces", "GET"): ("/api/v1/watch/namespaces", SIGNED_IN),
        ("/api/v1/namespaces", "POST"): ("/api/v1/namespaces", CLUSTER_ADMIN),
        ("/api/v1/namespaces/{name}", "GET"): (f"/api/v1/namespaces/{TEAM}", level(VIEW)),
        ("/api/v1/namespaces/{name}", "PATCH"): (f"/api/v1/namespaces/{TEAM}", CLUSTER_ADMIN),
        ("/api/v1/namespaces/{name}", "DELETE"): (f"/api/v1/namespaces/{TEAM}", CLUSTER_ADMIN),
        ("/api/v1/events", "GET"): ("/api/v1/events", SIGNED_IN),
        ("/apis/events.k8s.io/v1/events", "GET"): ("/apis/events.k8s.io/v1/events", SIGNED_IN),
    }
    found = needs.get((path, method))
    if found is not None:
        url, need = found
        probe = Probe(path, method, url, need, stream="/watch/" in url)
        if url == "/auth/token":
            probe.json_body = {}
        elif url == "/kfam/v1/bindings":
            probe.last = method == "DELETE"
            if method == "GET":
                probe.params = {"namespace": TEAM}
            else:
                probe.json_body = {
                    "user": {"kind": "User", "name": "nobody@example.com"},
                    "referredNamespace": TEAM,
                    "RoleRef": {"kind": "ClusterRole", "name": "view"},
                }
        elif url == "/kfam/v1/profiles":
            probe.json_body = {
                "metadata": {"name": f"mx-{uuid.uuid4().hex[:6]}"},
                "spec": {"owner": {"kind": "User", "name": "nobody@example.com"}},
            }
        elif url.startswith("/kfam/v1/profiles/"):
            probe.last = True
            # each caller finds the profile there (a profile deleted has no owner)
            probe.reset = lambda: world.app_store.apply(profile(SPARE, OWNER))
        elif url == "/kfam/v1/role/clusteradmin":
            probe.params = {"user": OWNER}
        elif url == "/api/v1/namespaces" and method == "POST":
            probe.json_body = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"mx-{uuid.uuid4().hex[:6]}"},
            }
        elif method == "PATCH":
            probe.headers = dict(MERGE)
            probe.json_body = {"metadata": {"labels": {"matrix": "1"}}}
        return probe
    # namespaced routes of their own: every one is in team-a
    if "{namespace}" not in path:
        return None
    url = (
        path.replace("{namespace}", TEAM)
        .replace("{plural}", "pytorchjobs")
        .replace("{group}", "kubeflow.org")
        .replace("{version}", "v1")
    )
    if "/events/{name}" in path:
        url = url.replace("{name}", ids[f"event:{TEAM}"])
    elif "/pipelineruns/" in path:
        url = url.replace("{name}", ids["pipelinerun"])
    elif "/pods/" in path:
        url = url.replace("{name}", "no-pod")
    else:
        url = url.replace("{name}", "job-a")
    need = level(VIEW if method == "GET" else EDIT)
    probe = Probe(path, method, url, need)
    if "/trials/" in path:
        probe.json_body = {"metrics": {"loss": 0.5}}
    return probe


def probes_of(world: World) -> tuple[list[Probe], list[str]]:
    """Every route's probes, and the routes the matrix cannot fill (a new route: say
    here how to call it)."""
    from tests.tenancy.matrix_jupyter import jupyter_probe
    from tests.tenancy.matrix_notebooks import WEBSOCKET, notebook_probe
    from tests.tenancy.matrix_registry import registry_probe
    from tests.tenancy.matrix_ui import ui_probes

    probes: list[Probe] = []
    unfilled: list[str] = []
    for route in world.routes:
        if route.path in FASTAPI_PAGES:
            continue
        for method in sorted(getattr(route, "methods", None) or {WEBSOCKET}):
            if method == "HEAD":
                continue
            made = ui_probes(route.path, method, world)
            if made is None:
                made = _kubernetes_probes(route, method, world)
            if made is None:
                one = (
                    _kfp_probe(route.path, method, world)
                    or registry_probe(route.path, method, world)
                    or notebook_probe(route.path, method, world)
                    or jupyter_probe(route.path, method, world)
                    or _other_probe(route.path, method, world)
                )
                made = [one] if one is not None else []
            if not made:
                unfilled.append(f"{method} {route.path}")
            probes.extend(made)
    probes.sort(key=lambda p: p.last)
    return probes, unfilled


def call(http: httpx.Client, probe: Probe) -> int:
    if probe.method == "WEBSOCKET":
        from tests.tenancy.matrix_notebooks import websocket_status

        return websocket_status(http, probe)
    kwargs: dict[str, Any] = {"params": probe.params, "headers": probe.headers}
    if probe.files is not None:
        kwargs["files"] = probe.files
    elif probe.json_body is not None:
        kwargs["json"] = probe.json_body
    if probe.stream:
        kwargs["params"] = {**probe.params, "timeoutSeconds": "1"}
        with http.stream(probe.method, probe.path, **kwargs) as response:
            return response.status_code
    return http.request(probe.method, probe.path, **kwargs).status_code
