"""The dashboard's part of the isolation matrix: each page route (``/`` and ``/ui/...``)
made into probes of team-a, with what Kubeflow's roles ask of the read or write it
stands for: a page of a namespace or a list needs view there (a Secret's needs edit, as
its API read does), the YAML editor and its save need edit (a RoleBinding's admin), a
delete needs edit. A page named without a namespace only redirects (signed in), and
the static files are for anyone signed in.

The save sends YAML that does not parse, so an allowed caller gets 422 and nothing
changes; the delete removes a ConfigMap of its own, made again before each caller's try
(it is made by the reset only, so the matrix's snapshot of team-a does not hold it)."""

from __future__ import annotations

from ketch.core.resource import Resource
from tests.tenancy.matrix_probes import SIGNED_IN, Need, Probe, level
from tests.tenancy.matrix_world import ADMIN_LEVEL, EDIT, TEAM, VIEW, World, config_map

DOOMED = "mx-ui-doomed"
IN_TEAM = {"ns": TEAM}
#: (resource, name, the level its read needs, the level its edit needs)
OBJECTS = (
    ("pytorchjobs.kubeflow.org", "job-a", VIEW, EDIT),
    ("secrets", "secret-a", EDIT, EDIT),
    ("rolebindings.rbac.authorization.k8s.io", "edit-eddie", VIEW, ADMIN_LEVEL),
)


def _probe(route: str, method: str, path: str, need: Need, **params: str) -> Probe:
    return Probe(route, method, path, need, params=dict(params))


def ui_probes(path: str, method: str, world: World) -> list[Probe] | None:
    """The probes of a dashboard route (``None``: not one)."""
    if path != "/" and not path.startswith("/ui/"):
        return None
    from tests.tenancy.matrix_ui_workloads import workload_probes

    if (workloads := workload_probes(path, method, world)) is not None:
        return workloads
    ids = world.ids
    view = level(VIEW)
    if path == "/ui/static/{digest}/{name}":
        from ketch.ui.assets import url

        return [_probe(path, method, url("ketch.css"), SIGNED_IN)]
    if path == "/":
        return [_probe(path, method, "/", view, **IN_TEAM), _probe(path, method, "/", SIGNED_IN)]
    if path == "/ui/k":
        return [_probe(path, method, path, SIGNED_IN)]
    if (mine := _runs_probes(path, method, world)) is not None:
        return mine
    if (detail := _rundetail_probes(path, method, world)) is not None:
        return detail
    fixed = {
        "/ui/runs": "/ui/runs",
        "/ui/runs/{run_id}": f"/ui/runs/{ids['run']}",
        "/ui/experiments": "/ui/experiments",
        "/ui/experiments/{experiment_id}": f"/ui/experiments/{ids['exp']}",
        "/ui/pipelines": "/ui/pipelines",
        "/ui/pipelines/{pipeline_id}": f"/ui/pipelines/{ids['pipeline']}",
        "/ui/models": "/ui/models",
    }
    if path in fixed:
        url = fixed[path]
        probes = [_probe(path, method, url, view, **IN_TEAM)]
        if "{" not in path:  # a list named without a namespace: a redirect
            probes.append(_probe(path, method, url, SIGNED_IN))
        return probes
    if path.startswith(("/ui/models/", "/ui/model-versions/")):
        return _model_probes(path, method, world)
    if path.startswith(("/ui/notebooks", "/ui/profiles")):
        return _notebook_and_profile_probes(path, method)
    if path == "/ui/k/{resource}":
        return [
            _probe(path, method, "/ui/k/pytorchjobs.kubeflow.org", view, **IN_TEAM),
            _probe(path, method, "/ui/k/secrets", level(EDIT), **IN_TEAM),
            _probe(path, method, "/ui/k/pytorchjobs.kubeflow.org", SIGNED_IN),
            # a cluster-scoped kind: filtered to what the caller sees
            _probe(path, method, "/ui/k/profiles.kubeflow.org", SIGNED_IN),
        ]
    if path == "/ui/k/{resource}/{name}":
        return _object_probes(path, method, world)
    if path == "/ui/k/{resource}/{name}/edit":
        return [
            _probe(path, method, f"/ui/k/{resource}/{name}/edit", level(edit), **IN_TEAM)
            for resource, name, _read, edit in OBJECTS
        ]
    return []


def _object_probes(path: str, method: str, world: World) -> list[Probe]:
    if method == "GET":
        return [
            *(
                _probe(path, method, f"/ui/k/{resource}/{name}", level(read), **IN_TEAM)
                for resource, name, read, _edit in OBJECTS
            ),
            _probe(path, method, f"/ui/k/profiles.kubeflow.org/{TEAM}", level(VIEW)),
        ]
    if method == "PUT":
        made = []
        for resource, name, _read, edit in OBJECTS:
            probe = _probe(path, method, f"/ui/k/{resource}/{name}", level(edit), **IN_TEAM)
            probe.json_body = {"yaml": "spec: [this does not parse"}
            made.append(probe)
        return made
    if method == "DELETE":
        probe = _probe(path, method, f"/ui/k/configmaps/{DOOMED}", level(EDIT), **IN_TEAM)
        probe.last = True
        probe.reset = lambda: world.app_store.apply(_doomed())
        return [probe]
    return []


def _model_probes(path: str, method: str, world: World) -> list[Probe]:
    """A model's and a version's pages (view), their archive or restore (edit: the
    probe sets the state they have, LIVE) and a version's deploy (edit: a name that is
    no name, so an allowed caller gets 422 and nothing is made)."""
    ids = world.ids
    url = path.replace("{id}", ids["mr:model" if path.startswith("/ui/models/") else "mr:version"])
    if method == "GET":
        return [_probe(path, method, url, level(VIEW), **IN_TEAM)]
    probe = _probe(path, method, url, level(EDIT), **IN_TEAM)
    probe.json_body = {"state": "LIVE"} if path.endswith("/state") else {"name": "Not A Name"}
    return [probe]


def _notebook_and_profile_probes(path: str, method: str) -> list[Probe]:
    """The notebooks' list (view) and new-notebook form (edit), the profile's page
    (view), a redirect where a page names no namespace; the writes with bodies an
    allowed caller is refused with 422 (or a notebook that is not there, 404), so
    nothing changes: notebooks' need edit, contributors' admin (binding roles)."""
    url = path.replace("{name}", "mx-no-notebook")
    if method == "GET":
        need = level(EDIT) if path.endswith("/new") else level(VIEW)
        return [_probe(path, method, url, need, **IN_TEAM), _probe(path, method, url, SIGNED_IN)]
    need = level(ADMIN_LEVEL) if path.startswith("/ui/profiles") else level(EDIT)
    probe = _probe(path, method, url, need, **IN_TEAM)
    if path.startswith(("/ui/notebooks", "/ui/profiles")):
        if method == "DELETE":
            probe.params = {**IN_TEAM, "email": "not-an-email", "role": "view"}
        else:
            probe.json_body = {"email": "not-an-email", "role": "view"}
    elif method in ("POST", "PATCH"):
        probe.json_body = {"name": ""} if method == "POST" else {"neither": True}
    return [probe]


def _doomed() -> Resource:
    return Resource.from_manifest(config_map(DOOMED, TEAM))


def _runs_probes(path: str, method: str, world: World) -> list[Probe] | None:
    """The runs pages' routes (``None``: another route): compare needs view of each run,
    archive and restore edit (runs, experiments; archiving runs last),
    the run and recurring run forms and their posts edit (an empty body: an allowed
    caller gets 422 and nothing starts), a pipeline upload edit (a .py text: refused with
    422), a version's graph view, enable and disable edit."""
    ids = world.ids
    edit = level(EDIT)
    view = level(VIEW)
    pipeline, version = ids["pipeline"], ids["version"]
    if path == "/ui/runs/compare":
        return [_probe(path, method, path, view, ids=f"{ids['run']},{ids['run']}")]
    if path in ("/ui/runs/unarchive", "/ui/experiments/unarchive"):
        key = ids["run"] if path.startswith("/ui/runs") else ids["exp"]
        return [_probe(path, method, path, edit, ids=key)]
    if path in ("/ui/runs/archive", "/ui/experiments/archive"):
        # run last: an archived experiment takes no new runs
        key = ids["run"] if path.startswith("/ui/runs") else ids["exp"]
        probe = _probe(path, method, path, edit, ids=key)
        probe.last = True
        return [probe]
    if path in ("/ui/runs/new", "/ui/recurringruns/new"):
        probe = _probe(path, method, path, edit, **IN_TEAM, pipeline=pipeline)
        if method == "POST":
            probe.json_body = {"pipeline_id": pipeline, "version_id": version, "param.x": "no"}
        return [probe, _probe(path, method, path, SIGNED_IN)] if method == "GET" else [probe]
    if path == "/ui/recurringruns":
        return [_probe(path, method, path, view, **IN_TEAM), _probe(path, method, path, SIGNED_IN)]
    if path.startswith("/ui/recurringruns/{recurring_run_id}/"):
        url = path.replace("{recurring_run_id}", ids["recurring"])
        return [_probe(path, method, url, edit)]
    if path == "/ui/pipelines" and method == "POST":
        probe = _probe(path, method, path, edit, **IN_TEAM)
        probe.json_body = {"name": "mx", "file": "from kfp import dsl", "filename": "p.py"}
        return [probe]
    if path == "/ui/pipelines/{pipeline_id}/versions":
        probe = _probe(path, method, f"/ui/pipelines/{pipeline}/versions", edit)
        probe.json_body = {"file": "from kfp import dsl", "filename": "p.py"}
        return [probe]
    if path == "/ui/pipelines/{pipeline_id}/versions/{version_id}":
        return [_probe(path, method, f"/ui/pipelines/{pipeline}/versions/{version}", view)]
    return None


def _rundetail_probes(path: str, method: str, world: World) -> list[Probe] | None:
    """A run's live fragment, a task's panel (a task that is not there: an allowed
    caller gets 404, or 303 to the run's page), an artifact's lineage and a model
    version's (view) and the run's buttons (edit: restore, which leaves an available run
    as it is); ``None``: another route."""
    run = world.ids["run"]
    if path == "/ui/runs/{run_id}/live":
        return [_probe(path, method, f"/ui/runs/{run}/live", level(VIEW))]
    if path == "/ui/runs/{run_id}/tasks/{task_id}":
        return [_probe(path, method, f"/ui/runs/{run}/tasks/no-task", level(VIEW))]
    if path == "/ui/runs/{run_id}/artifacts/{artifact_id}/lineage":
        return [_probe(path, method, f"/ui/runs/{run}/artifacts/0/lineage", level(VIEW))]
    if path == "/ui/runs/{run_id}/{action}":
        return [_probe(path, method, f"/ui/runs/{run}/unarchive", level(EDIT))]
    version = world.ids.get("mr:version")
    if path == "/ui/model-versions/{id}/lineage" and version:
        return [_probe(path, method, f"/ui/model-versions/{version}/lineage", level(VIEW))]
    return None
