"""The isolation matrix's probes of the Katib, Training and Serving pages: a page of a
namespace needs view there (what its API read needs: a list, a get, a log), a create
form and its write need edit, a rollout (the service's update) needs edit, and trying
a service needs what calling it needs (view). Named without a namespace, a page only
redirects (signed in). Writes send what the page refuses (422), or name an object that
is not there (404), so an allowed caller changes nothing."""

from __future__ import annotations

from tests.tenancy.matrix_probes import SIGNED_IN, Probe, level
from tests.tenancy.matrix_world import EDIT, TEAM, VIEW, World

IN_TEAM = {"ns": TEAM}
MISSING = "mx-not-there"
#: route -> (the path probed, the level it needs, whether it redirects without ns)
PAGES = {
    "/ui/katib": ("/ui/katib", VIEW, True),
    "/ui/katib/new": ("/ui/katib/new", EDIT, True),
    "/ui/katib/{name}": (f"/ui/katib/{MISSING}", VIEW, False),
    "/ui/katib/{name}/trials/{trial}": (f"/ui/katib/{MISSING}/trials/{MISSING}", VIEW, False),
    "/ui/katib/{name}/trials/{trial}/log": (
        f"/ui/katib/{MISSING}/trials/{MISSING}/log",
        VIEW,
        False,
    ),
    "/ui/pods/{name}/log": (f"/ui/pods/{MISSING}/log", VIEW, False),
    "/ui/training": ("/ui/training", VIEW, True),
    "/ui/training/{resource}/{name}": ("/ui/training/pytorchjobs.kubeflow.org/job-a", VIEW, False),
    "/ui/serving": ("/ui/serving", VIEW, True),
    "/ui/serving/new": ("/ui/serving/new", EDIT, True),
    "/ui/serving/{name}": (f"/ui/serving/{MISSING}", VIEW, False),
    "/ui/serving/{name}/model": (f"/ui/serving/{MISSING}/model", VIEW, False),
    "/ui/serving/{name}/metrics": (f"/ui/serving/{MISSING}/metrics", VIEW, False),
}
#: route -> (the path probed, the level it needs, the body sent)
WRITES = {
    "/ui/katib": ("/ui/katib", EDIT, {"yaml": "spec: [this does not parse"}),
    "/ui/serving": ("/ui/serving", EDIT, {"name": ""}),
    "/ui/serving/{name}/infer": (f"/ui/serving/{MISSING}/infer", VIEW, {"request": "not json"}),
    "/ui/serving/{name}/traffic": (f"/ui/serving/{MISSING}/traffic", EDIT, {"action": "promote"}),
}


def workload_probes(path: str, method: str, world: World) -> list[Probe] | None:
    """The probes of one of these pages' routes (``None``: not one of them)."""
    del world
    if method == "GET" and path in PAGES:
        url, need, redirects = PAGES[path]
        probes = [Probe(path, method, url, level(need), params=dict(IN_TEAM))]
        if redirects:
            probes.append(Probe(path, method, url, SIGNED_IN))
        return probes
    if method == "POST" and path in WRITES:
        url, need, body = WRITES[path]
        probe = Probe(path, method, url, level(need), params=dict(IN_TEAM))
        probe.json_body = body
        return [probe]
    return None
