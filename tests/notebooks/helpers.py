"""What the notebook tests share: Kubeflow's example Notebook, waiting for it, the
server's pid and port, and running code in a kernel over the proxy's websocket with
Jupyter's v1 kernel protocol."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.waiting import wait_for

requires_jupyterlab = pytest.mark.skipif(
    importlib.util.find_spec("jupyterlab") is None or importlib.util.find_spec("ipykernel") is None,
    reason="JupyterLab is not installed (pip install 'ketch[notebooks]', or make install)",
)

API = "/apis/kubeflow.org/v1"
SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"


def example_notebook(name: str, namespace: str) -> dict[str, Any]:
    """A Notebook as Kubeflow's Jupyter web app makes it: the scipy image, a workspace
    PersistentVolumeClaim at /home/jovyan and shared memory at /dev/shm."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Notebook",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
            "annotations": {
                "notebooks.kubeflow.org/server-type": "jupyter",
                "notebooks.kubeflow.org/creator": "user@example.com",
            },
        },
        "spec": {
            "template": {
                "spec": {
                    "serviceAccountName": "default-editor",
                    "containers": [
                        {
                            "name": name,
                            "image": "kubeflownotebookswg/jupyter-scipy:v1.8.0",
                            "imagePullPolicy": "IfNotPresent",
                            "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}},
                            "volumeMounts": [
                                {"mountPath": "/home/jovyan", "name": f"{name}-workspace"},
                                {"mountPath": "/dev/shm", "name": "dshm"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": f"{name}-workspace",
                            "persistentVolumeClaim": {"claimName": f"{name}-workspace"},
                        },
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    ],
                }
            }
        },
    }


def path(namespace: str, name: str | None = None) -> str:
    base = f"{API}/namespaces/{namespace}/notebooks"
    return f"{base}/{name}" if name else base


def status(http: httpx.Client, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(path(namespace, name)).json().get("status") or {}
    return found


def wait_ready(http: httpx.Client, namespace: str, name: str, timeout: float = 120) -> None:
    wait_for(
        lambda: status(http, namespace, name).get("readyReplicas") == 1,
        timeout,
        0.05,
        f"notebook {namespace}/{name} ready",
    )


def events(http: httpx.Client, namespace: str, name: str) -> list[dict[str, Any]]:
    items = http.get(f"/api/v1/namespaces/{namespace}/events").json()["items"]
    mine = [e for e in items if e["involvedObject"]["name"] == name]
    return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))


def server_pid(http: httpx.Client, namespace: str, name: str) -> int:
    """The pid of the notebook's latest server, from its Started event."""
    started = [e for e in events(http, namespace, name) if e["reason"] == "Started"]
    match = re.search(r"pid (\d+)", started[-1]["message"])
    assert match, started[-1]
    return int(match.group(1))


def server_port(http: httpx.Client, namespace: str, name: str) -> int:
    pod = http.get(f"/api/v1/namespaces/{namespace}/pods/{name}-0").json()
    return int(pod["spec"]["containers"][0]["ports"][0]["containerPort"])


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _frame(channel: str, msg_type: str, content: dict[str, Any]) -> tuple[bytes, str]:
    """A message of Jupyter's v1 kernel websocket protocol, and its id."""
    from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": "test",
        "session": uuid.uuid4().hex,
        "date": datetime.now(UTC).isoformat(),
        "version": "5.3",
    }
    parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
    return serialize_msg_to_ws_v1(parts, channel), msg_id


def execute(
    base_url: str, prefix: str, kernel: str, code: str, headers: dict[str, str] | None = None
) -> str:
    """Run ``code`` in ``kernel`` over the websocket at ``base_url`` + ``prefix``; the
    ``text/plain`` of its execute_result."""
    from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

    url = base_url.replace("http://", "ws://") + f"{prefix}api/kernels/{kernel}/channels"
    with connect(url, subprotocols=[SUBPROTOCOL], additional_headers=headers or {}) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        frame, msg_id = _frame(
            "shell",
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        ws.send(frame)
        while True:
            raw = ws.recv(timeout=60)
            assert isinstance(raw, bytes)
            channel, parts = deserialize_msg_from_ws_v1(raw)
            header, parent = json.loads(parts[0]), json.loads(parts[1])
            if parent.get("msg_id") != msg_id:
                continue
            content = json.loads(parts[3])
            if header["msg_type"] == "execute_result":
                return str(content["data"]["text/plain"])
            if header["msg_type"] == "error":
                raise AssertionError(f"{content['ename']}: {content['evalue']}")


def start_kernel(http: httpx.Client, prefix: str) -> str:
    made = http.post(f"{prefix}api/kernels", json={"name": "python3"})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])
