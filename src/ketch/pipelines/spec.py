"""Loading and checking a pipeline's IR (the PipelineSpec the `kfp` compiler writes).

Sources: a compiled YAML/JSON file (a second YAML document holding the platform
spec is accepted and ignored with a warning), a PipelineJob JSON holding
``pipelineSpec``, a Python file with ``@dsl.pipeline`` functions, or a pipeline
(or single component) object from the ``kfp`` SDK. Python is compiled with the
real ``kfp`` compiler.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.documents import load_json, load_yaml_all
from ketch.core.errors import InvalidSpec

log = logging.getLogger(__name__)


@dataclass
class PipelineIR:
    """A checked PipelineSpec as plain dicts, with where it came from."""

    spec: dict[str, Any]
    source: str
    # function name -> python source file, for `target_image` components whose
    # code is not inline in the IR (known when the pipeline came from Python).
    function_files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec.get("pipelineInfo", {}).get("name") or "pipeline")

    @property
    def components(self) -> dict[str, Any]:
        return self.spec.get("components", {})

    @property
    def executors(self) -> dict[str, Any]:
        return self.spec.get("deploymentSpec", {}).get("executors", {})

    @property
    def root(self) -> dict[str, Any]:
        return self.spec["root"]


def load(source: Any, pipeline_name: str | None = None) -> PipelineIR:
    """Load a pipeline from a path, a dict, or a ``kfp`` pipeline/component object."""
    if isinstance(source, dict):
        ir = PipelineIR(spec=_unwrap_job(source, "<dict>"), source="<dict>")
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise InvalidSpec(f"pipeline file {str(path)!r} does not exist", field="FILE")
        if path.is_dir():
            raise InvalidSpec(
                f"{str(path)!r} is a directory; pass a .py file with a @dsl.pipeline "
                "or a compiled .yaml/.json pipeline",
                field="FILE",
            )
        if not path.is_file():
            raise InvalidSpec(f"{str(path)!r} is not a regular file", field="FILE")
        if path.suffix == ".py":
            ir = _load_python_file(path, pipeline_name)
        else:
            ir = _load_document_file(path)
    elif hasattr(source, "pipeline_spec"):
        ir = _from_kfp_object(source, files=_function_files_of_module(_module_of(source)))
    else:
        raise InvalidSpec(
            f"cannot run a {type(source).__name__}: pass a @dsl.pipeline function, "
            "a .py file, or a compiled .yaml/.json pipeline",
            field="pipeline",
        )
    validate(ir.spec)
    return ir


def _unwrap_job(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidSpec(f"{where}: expected a PipelineSpec mapping, found {type(doc).__name__}")
    if "pipelineSpec" in doc and "root" not in doc:  # a PipelineJob
        doc = doc["pipelineSpec"]
        if not isinstance(doc, dict):
            raise InvalidSpec(f"{where}: pipelineSpec must be a mapping", field="pipelineSpec")
    return doc


def _read_text(path: Path, *, python: bool = False) -> str:
    """A pipeline file's text; a binary or unreadable file is refused by name.

    Python source may declare another encoding, so for ``.py`` files only NUL
    bytes (which no source file holds) mark a binary file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidSpec(
            f"{str(path)!r} cannot be read: {exc.strerror or exc}", field="FILE"
        ) from None
    binary = b"\x00" in data
    text = ""
    if not binary:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            binary = not python
    if binary:
        raise InvalidSpec(
            f"{str(path)!r} is a binary file, not a pipeline; pass a .py file with a "
            "@dsl.pipeline or a compiled .yaml/.json pipeline",
            field="FILE",
        )
    return text


def _load_document_file(path: Path) -> PipelineIR:
    text = _read_text(path)
    warnings: list[str] = []
    if path.suffix == ".json":
        docs = [load_json(text, field=str(path))]
    else:
        docs = load_yaml_all(text, field=str(path))
    if not docs:
        raise InvalidSpec(f"{path}: the file is empty")
    for extra in docs[1:]:
        if isinstance(extra, dict) and "platforms" in extra:
            msg = f"{path}: the platform spec (Kubernetes settings) is ignored on the local backend"
        else:
            msg = f"{path}: an extra YAML document was ignored"
        log.warning(msg)
        warnings.append(msg)
    return PipelineIR(spec=_unwrap_job(docs[0], str(path)), source=str(path), warnings=warnings)


def _load_python_file(path: Path, pipeline_name: str | None) -> PipelineIR:
    _read_text(path, python=True)  # a binary file is refused before Python imports it
    module_name = f"_ketch_pipeline_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidSpec(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module failed at import
        raise InvalidSpec(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent.resolve()))
    pipelines = _pipelines_in(module)
    if not pipelines:
        raise InvalidSpec(f"{path}: no @dsl.pipeline function found in this file")
    if pipeline_name is None:
        if len(pipelines) > 1:
            names = ", ".join(sorted(pipelines))
            raise InvalidSpec(
                f"{path}: several pipelines found ({names}); choose one with --pipeline NAME"
            )
        obj = next(iter(pipelines.values()))
    else:
        obj = pipelines.get(pipeline_name) or next(
            (p for p in pipelines.values() if getattr(p, "name", None) == pipeline_name), None
        )
        if obj is None:
            names = ", ".join(sorted(pipelines))
            raise InvalidSpec(
                f"{path}: no pipeline named {pipeline_name!r}; found: {names}", field="--pipeline"
            )
    ir = _from_kfp_object(obj, files=_function_files_of_module(module))
    ir.source = str(path)
    return ir


def _pipelines_in(module: Any) -> dict[str, Any]:
    from kfp.dsl.graph_component import GraphComponent

    found: dict[str, Any] = {}
    for attr, value in vars(module).items():
        if isinstance(value, GraphComponent) and getattr(value, "pipeline_func", None) is not None:
            if value.pipeline_func.__module__ == module.__name__:
                found[attr] = value
    return found


def _module_of(obj: Any) -> Any:
    func = getattr(obj, "pipeline_func", None) or getattr(obj, "python_func", None)
    return sys.modules.get(getattr(func, "__module__", ""), None)


def _function_files_of_module(module: Any) -> dict[str, str]:
    from kfp.dsl.python_component import PythonComponent

    files: dict[str, str] = {}
    if module is None:
        return files
    for value in list(vars(module).values()):
        if isinstance(value, PythonComponent):
            func = value.python_func
            mod = sys.modules.get(func.__module__)
            path = getattr(mod, "__file__", None)
            if path:
                files[func.__name__] = str(Path(path).resolve())
    return files


def _from_kfp_object(obj: Any, files: dict[str, str]) -> PipelineIR:
    from google.protobuf import json_format

    try:
        proto = obj.pipeline_spec
    except Exception as exc:
        raise InvalidSpec(f"the kfp compiler rejected the pipeline: {exc}") from exc
    spec = json_format.MessageToDict(proto)
    name = getattr(obj, "name", None) or "pipeline"
    return PipelineIR(spec=spec, source=f"<{name}>", function_files=files)


# ---------------------------------------------------------------- validation


def validate(spec: dict[str, Any]) -> None:
    """Check the IR: proto schema, references, and cycles. Raise InvalidSpec naming the spot."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    for key in ("root", "components"):
        if key not in spec and not (key == "components" and "root" in spec):
            raise InvalidSpec(
                f"missing top-level field {key!r}; is this a compiled KFP pipeline?", field=key
            )
    try:
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise InvalidSpec(f"invalid pipeline IR: {exc}") from exc
    components = spec.get("components", {})
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for cname, comp in components.items():
        if "dag" in comp:
            _validate_dag(f"components.{cname}", comp["dag"], components)
        elif "executorLabel" in comp:
            if comp["executorLabel"] not in executors:
                raise InvalidSpec(
                    f"executor {comp['executorLabel']!r} is not in deploymentSpec.executors",
                    field=f"components.{cname}.executorLabel",
                )
        else:
            raise InvalidSpec(
                "a component needs a dag or an executorLabel", field=f"components.{cname}"
            )
    if "dag" not in spec["root"]:
        raise InvalidSpec("the root component must be a DAG", field="root.dag")
    _validate_dag("root", spec["root"]["dag"], components)


def producers(task: dict[str, Any]) -> set[str]:
    deps = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for p in inputs.get("parameters", {}).values():
        if "taskOutputParameter" in p:
            deps.add(p["taskOutputParameter"].get("producerTask", ""))
        if "taskFinalStatus" in p:
            deps.add(p["taskFinalStatus"].get("producerTask", ""))
    for a in inputs.get("artifacts", {}).values():
        if "taskOutputArtifact" in a:
            deps.add(a["taskOutputArtifact"].get("producerTask", ""))
    return deps


def _validate_dag(where: str, dag: dict[str, Any], components: dict[str, Any]) -> None:
    tasks = dag.get("tasks", {})
    for tname, task in tasks.items():
        ref = task.get("componentRef", {}).get("name")
        if not ref or ref not in components:
            raise InvalidSpec(
                f"unknown component reference {ref!r}",
                field=f"{where}.dag.tasks.{tname}.componentRef.name",
            )
        for dep in producers(task):
            if dep not in tasks:
                raise InvalidSpec(
                    f"depends on task {dep!r}, which is not in the same DAG",
                    field=f"{where}.dag.tasks.{tname}",
                )
        _validate_task_inputs(where, tname, task, components[ref])
    # cycle check (iterative DFS)
    graph = {t: producers(task) for t, task in tasks.items()}
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = [n for n, _ in stack] + [nxt]
                cycle = cycle[cycle.index(nxt) :]
                raise InvalidSpec(
                    f"tasks form a cycle: {' -> '.join(cycle)}", field=f"{where}.dag.tasks.{nxt}"
                )
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))


def _validate_task_inputs(
    where: str, tname: str, task: dict[str, Any], comp: dict[str, Any]
) -> None:
    """Every required input of the component must be connected by the task."""
    defs = comp.get("inputDefinitions", {})
    given = task.get("inputs", {})
    iterator = task.get("parameterIterator") or task.get("artifactIterator") or {}
    for kind in ("parameters", "artifacts"):
        for name, d in defs.get(kind, {}).items():
            if name in given.get(kind, {}) or name == iterator.get("itemInput"):
                continue
            if d.get("isOptional") or "defaultValue" in d:
                continue
            raise InvalidSpec(
                f"required input {name!r} is not connected and has no default",
                field=f"{where}.dag.tasks.{tname}.inputs.{kind}.{name}",
            )
