"""The notebook proxy's part of the isolation matrix: team-a's Notebook (stored: the
matrix's servers run no controllers, so it answers 503, or 404 for a name that is not
there, to whoever may reach it), and each proxy route, HTTP and websocket, made into a
probe of it: reading needs view in team-a, writing and websockets (a kernel runs code)
need edit."""

from __future__ import annotations

from typing import Any

import httpx
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.tenancy.matrix_probes import Probe, level
from tests.tenancy.matrix_world import EDIT, TEAM, VIEW, World, apply

PREFIX = "/notebook/"
NAME = "mx-notebook"
WEBSOCKET = "WEBSOCKET"


def populate_notebooks(world: World) -> None:
    """Team-a's Notebook (stopped: nothing would run it here anyway)."""
    apply(
        world.store,
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Notebook",
            "metadata": {
                "name": NAME,
                "namespace": TEAM,
                "annotations": {"kubeflow-resource-stopped": "2026-01-01T00:00:00Z"},
            },
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": NAME, "image": "jupyter/scipy-notebook"}]}
                }
            },
        },
    )


def notebook_probe(path: str, method: str, _world: World) -> Probe | None:
    """The probe of a notebook proxy route (``None``: not one)."""
    if not path.startswith(PREFIX):
        return None
    url = path.replace("{namespace}", TEAM).replace("{name}", NAME)
    url = url.replace("{path:path}", "api/kernels")
    need = level(VIEW if method == "GET" else EDIT)
    probe = Probe(path, method, url, need)
    if method in ("POST", "PUT", "PATCH"):
        probe.json_body = {"name": "python3"}
    return probe


def websocket_status(http: httpx.Client, probe: Probe) -> int:
    """A websocket probe's answer: the handshake's status (101 when accepted)."""
    url = str(http.base_url).rstrip("/").replace("http://", "ws://") + probe.path
    headers: dict[str, Any] = {
        k: v for k, v in http.headers.items() if k in ("authorization", "kubeflow-userid")
    }
    try:
        with connect(url, additional_headers=headers, open_timeout=30):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
