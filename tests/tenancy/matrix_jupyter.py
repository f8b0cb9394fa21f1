"""The Jupyter web app API's part of the isolation matrix: each ``/jupyter/api`` route
made into a probe of team-a (its stopped notebook ``mx-notebook``, made by
:mod:`tests.tenancy.matrix_notebooks`): the namespace's reads need view there, its
writes edit; the form settings, GPUs and storage classes are read by anyone signed in.
A create sends a form without a workspace (nothing runs the notebook: the matrix's
servers run no controllers); stopping the stopped notebook answers 409; the delete
removes a notebook of its own, made again before each caller's try."""

from __future__ import annotations

import uuid

from tests.tenancy.matrix_notebooks import NAME
from tests.tenancy.matrix_probes import SIGNED_IN, Probe, level
from tests.tenancy.matrix_world import EDIT, TEAM, VIEW, World, apply

PREFIX = "/jupyter/api"
DOOMED = "mx-doomed-notebook"


def _doomed(world: World) -> None:
    apply(
        world.store,
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Notebook",
            "metadata": {
                "name": DOOMED,
                "namespace": TEAM,
                "annotations": {"kubeflow-resource-stopped": "2026-01-01T00:00:00Z"},
            },
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": DOOMED, "image": "jupyter/scipy-notebook"}]}
                }
            },
        },
    )


def jupyter_probe(path: str, method: str, world: World) -> Probe | None:
    """The probe of a Jupyter web app route (``None``: not one)."""
    if not path.startswith(PREFIX + "/"):
        return None
    if "{namespace}" not in path:
        return Probe(path, method, path, SIGNED_IN)
    deleting = method == "DELETE"
    url = path.replace("{namespace}", TEAM).replace("{name}", DOOMED if deleting else NAME)
    probe = Probe(path, method, url, level(VIEW if method == "GET" else EDIT), last=deleting)
    if method == "POST":
        probe.json_body = {"name": f"mx-{uuid.uuid4().hex[:6]}", "workspace": None}
    elif method == "PATCH":
        probe.json_body = {"stopped": True}
    elif deleting:
        probe.reset = lambda: _doomed(world)
    return probe
