"""``POST /apis/v2beta1/pipelines:compile``: a ``.py`` pipeline compiled to its spec.

The body is JSON ``{"namespace", "filename", "source"[, "pipeline"]}``; the answer
``{"pipeline_spec": {...}}`` (and ``platform_spec`` when the pipeline has one). The
caller must be allowed to create pipelines in ``namespace``.

The uploaded code never runs in the server: :mod:`ketch.pipelines.compile_upload`
compiles it in a process the compute backend starts for ``namespace`` (in multi-user
mode its isolation runs it as the profile's OS user, as any of its workloads), in a
fresh folder the server makes under ``KETCH_HOME/compile/<namespace>`` and removes afterwards.
The process is killed after ``KETCH_COMPILE_TIMEOUT`` seconds (default 60) or as soon
as its output or logs grow past 8 MiB. A source the compiler refuses answers 422
naming ``source`` with the compiler's message.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.backend.spec import Backend, ProcessSpec
from ketch.core.config import ketch_home
from ketch.core.documents import load_yaml_all
from ketch.core.errors import BackendError, InvalidSpec
from ketch.core.services import context_of
from ketch.pipelines import compile_upload
from ketch.pipelines.api.access import (
    PIPELINES,
    attributes,
    check,
    checked_in_handler,
    pipeline_scope,
)
from ketch.pipelines.api.common import body_object, json_response, text_field
from ketch.pipelines.api.paths import PREFIX

router = APIRouter(tags=["kfp v2beta1"])

COMPILE = f"{PREFIX}/pipelines:compile"
#: the most a source, the compiled spec or the process's logs may hold
MAX_BYTES = 8 * 1024 * 1024
TIMEOUT_ENV = "KETCH_COMPILE_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourceTooLarge(InvalidSpec):
    """A source over 8 MiB: 413."""

    http_status = 413


class CompileRefused(InvalidSpec):
    """The source does not compile: 422 naming ``source``."""

    http_status = 422


def time_bound() -> float:
    """Seconds a compilation may take (``KETCH_COMPILE_TIMEOUT``, default 60)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _too_big(*paths: Path) -> bool:
    for path in paths:
        try:
            if path.stat().st_size > MAX_BYTES:
                return True
        except OSError:
            continue
    return False


def compile_source(
    backend: Backend, source: str, namespace: str | None, pipeline: str | None = None
) -> dict[str, Any]:
    """The compiled spec of ``source``, compiled in a process ``backend`` starts."""
    # three deep below KETCH_HOME: deep enough for the isolation to hand it over
    root = ketch_home() / "compile" / (namespace or "shared")
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    try:
        script, out, log = folder / "pipeline.py", folder / "pipeline.yaml", folder / "compile.log"
        script.write_text(source)
        argv = [str(script), str(out), *([pipeline] if pipeline else [])]
        handle = backend.start(
            ProcessSpec(
                name=f"compile an uploaded pipeline ({namespace or 'shared'})",
                command=[sys.executable, "-m", compile_upload.MODULE, *argv],
                env={"PYTHONDONTWRITEBYTECODE": "1"},
                cwd=folder,
                stdout_path=log,
                stderr_path=log,
                namespace=namespace,
                owned=(folder,),
            )
        )
        bound = time_bound()
        deadline = time.monotonic() + bound
        code: int | None = None
        reason = ""
        while True:
            code = handle.wait(timeout=0.1)
            if code is not None:
                break
            if _too_big(out, log):
                reason = "its output grew past 8 MiB"
            elif time.monotonic() > deadline:
                reason = f"it took longer than {bound:g} s"
            if reason:
                handle.cancel(grace=1.0)
                handle.wait(timeout=10)
                raise CompileRefused(f"compiling was stopped: {reason}", field="source")
        if code != 0:
            message = _last_line(log) or f"the compiler exited with code {code}"
            raise CompileRefused(message, field="source")
        if not out.is_file() or _too_big(out):
            raise CompileRefused("the compiler wrote no spec of at most 8 MiB", field="source")
        docs = load_yaml_all(out.read_text(), field="source")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not docs or not isinstance(docs[0], dict):
        raise CompileRefused("the compiler wrote no pipeline spec", field="source")
    answer: dict[str, Any] = {"pipeline_spec": docs[0]}
    platform: dict[str, Any] = {}
    for extra in docs[1:]:
        if isinstance(extra, dict):
            platform.update(extra)
    if platform:
        answer["platform_spec"] = platform
    return answer


@router.post(COMPILE)
@rule(checked_in_handler)
def compile_pipeline(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "CompilePipelineRequest")
    namespace = text_field(body, "namespace")
    check(request, attributes(Verb.CREATE, PIPELINES, pipeline_scope(namespace)))
    source = text_field(body, "source")
    filename = text_field(body, "filename")
    pipeline = text_field(body, "pipeline")
    if namespace and not _NAMESPACE.match(namespace):
        raise CompileRefused("must be a namespace name", field="namespace")
    if filename and not filename.endswith(".py"):
        raise CompileRefused("only a Python file (.py) is compiled", field="filename")
    if pipeline and not _NAME.match(pipeline):
        raise CompileRefused("must be a Python name", field="pipeline")
    if len(source.encode()) > MAX_BYTES:
        raise SourceTooLarge("the source is larger than 8 MiB", field="source")
    if not source.strip():
        raise CompileRefused("is empty: send the pipeline's Python code", field="source")
    try:
        compiled = compile_source(context_of(request).backend, source, namespace or None, pipeline)
    except BackendError as exc:
        raise CompileRefused(f"cannot start the compiler: {exc}", field="source") from exc
    return json_response(compiled)
