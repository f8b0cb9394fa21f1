"""Reading a run's output artifact:
``GET /apis/v2beta1/runs/{run_id}/nodes/{node_id}/artifacts/{name}:read``.

The answer is ``{"data": base64}`` where the bytes are a gzipped tar holding the
artifact (its file, or its directory's files), as KFP's ReadArtifact does;
``node_id`` is the task id from ``run_details`` (a task's path or name is accepted
too).
"""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.errors import KetchError, NotFound
from ketch.pipelines.api.access import ARTIFACTS, RUNS, by_id
from ketch.pipelines.api.common import catalog_of, json_response
from ketch.pipelines.api.paths import PREFIX

MAX_ARTIFACT_BYTES = 64 * 1024 * 1024

router = APIRouter(tags=["kfp v2beta1"])


class ArtifactTooLarge(KetchError):
    http_status = 413
    exit_code = 2


@router.get(f"{PREFIX}/runs/{{run_id}}/nodes/{{node_id}}/artifacts/{{artifact_name}}:read")
@rule(by_id(Verb.GET, RUNS, "run_id", sub=ARTIFACTS))
def read_artifact(request: Request, run_id: str, node_id: str, artifact_name: str) -> Response:
    catalog = catalog_of(request)
    catalog.get_run(run_id)
    tasks = catalog.task_rows(run_id)
    task = next((t for t in tasks if t.id == node_id), None)
    task = task or next((t for t in tasks if t.path == node_id), None)
    task = task or next((t for t in tasks if t.name == node_id or t.display_name == node_id), None)
    if task is None:
        raise NotFound(f"run {run_id!r} has no task {node_id!r}", field="node_id")
    artifacts = (task.outputs or {}).get("artifacts", {}).get(artifact_name)
    if not artifacts:
        names = ", ".join(sorted((task.outputs or {}).get("artifacts", {}))) or "none"
        raise NotFound(
            f"task {task.display_name!r} has no output artifact {artifact_name!r} "
            f"(its output artifacts: {names})",
            field="artifact_name",
        )
    uri = str(artifacts[0].get("uri", ""))
    return json_response({"data": base64.b64encode(tar_artifact(uri)).decode("ascii")})


def tar_artifact(uri: str) -> bytes:
    """A gzipped tar of the artifact at ``uri`` (a file, or a directory's files)."""
    buffer = io.BytesIO()
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise NotFound(f"the artifact file {str(path)!r} does not exist (it was removed?)")
        size = (
            path.stat().st_size
            if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        )
        if size > MAX_ARTIFACT_BYTES:
            raise ArtifactTooLarge(
                f"the artifact is {size} bytes; read it from {uri} directly "
                f"(the API returns at most {MAX_ARTIFACT_BYTES} bytes)"
            )
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(str(path), arcname=path.name)
        return buffer.getvalue()
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read(MAX_ARTIFACT_BYTES + 1)
    except (OSError, ValueError, ImportError) as exc:
        raise NotFound(f"cannot read the artifact at {uri}: {exc}") from exc
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactTooLarge(
            f"the artifact is larger than {MAX_ARTIFACT_BYTES} bytes; read it from {uri}"
        )
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(uri.rstrip("/").rsplit("/", 1)[-1] or "artifact")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
