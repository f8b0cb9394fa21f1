"""A task's inputs: the pipeline's arguments checked against its root inputs, and
each task's parameters and artifacts resolved from their sources (the enclosing
DAG's inputs, upstream tasks' outputs, constants, run placeholders, an upstream
task's final status), with defaults, as the KFP backend resolves them.
"""

from __future__ import annotations

from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.pipelines import conditions
from ketch.pipelines.placeholders import resource_name, run_values
from ketch.pipelines.spec import PipelineIR
from ketch.pipelines.tasks import CANCELED, FAILED, SKIPPED, SUCCEEDED, Node, RunContext, Scope
from ketch.pipelines.values import coerce


def root_inputs(ir: PipelineIR, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the pipeline arguments against the root inputs; apply defaults."""
    defs = ir.root.get("inputDefinitions", {})
    pdefs = defs.get("parameters", {})
    unknown = sorted(set(arguments) - set(pdefs) - set(defs.get("artifacts", {})))
    if unknown:
        known = ", ".join(sorted(pdefs)) or "none"
        raise InvalidSpec(
            f"unknown pipeline parameter {unknown[0]!r}; the pipeline takes: {known}",
            field=f"arguments.{unknown[0]}",
        )
    params: dict[str, Any] = {}
    for name, pdef in pdefs.items():
        where = f"pipeline parameter {name!r}"
        if name in arguments:
            params[name] = coerce(arguments[name], pdef.get("parameterType"), where)
        elif "defaultValue" in pdef:
            params[name] = coerce(pdef["defaultValue"], pdef.get("parameterType"), where)
        elif pdef.get("isOptional"):
            continue
        else:
            raise InvalidSpec(
                "is required and has no default; pass it with --param "
                f"{name}=VALUE (or arguments={{'{name}': ...}})",
                field=where,
            )
    artifacts: dict[str, list[dict[str, Any]]] = {}
    for name, adef in defs.get("artifacts", {}).items():
        if name in arguments:
            value = arguments[name]
            uri = getattr(value, "uri", value)
            artifacts[name] = [
                {
                    "name": name,
                    "uri": str(uri),
                    "type": adef.get("artifactType", {}),
                    "metadata": dict(getattr(value, "metadata", {}) or {}),
                }
            ]
        elif not adef.get("isOptional"):
            raise InvalidSpec("artifact input is required", field=f"pipeline input {name!r}")
    return params, artifacts


def resolve_inputs(node: Node, scope: Scope, ctx: RunContext) -> None:
    """Set ``node``'s inputs (parameters, artifacts) from their sources in ``scope``;
    ``InvalidSpec`` when a required one has no value."""
    comp_defs = node.component.get("inputDefinitions", {})
    pdefs = comp_defs.get("parameters", {})
    task_inputs = node.task.get("inputs", {})
    params: dict[str, Any] = {}
    for name, src in task_inputs.get("parameters", {}).items():
        where = f"task {node.path!r} input {name!r}"
        found, value = _param_source(src, scope, where, node, ctx)
        if found and "parameterExpressionSelector" in src:
            value = conditions.select(src["parameterExpressionSelector"], value, where)
        if found:
            params[name] = coerce(value, pdefs.get(name, {}).get("parameterType"), where)
    iterator = node.task.get("parameterIterator") or node.task.get("artifactIterator") or {}
    item_input = iterator.get("itemInput")
    for name, pdef in pdefs.items():
        if name in params or name == item_input:
            continue
        if "defaultValue" in pdef:
            params[name] = coerce(
                pdef["defaultValue"],
                pdef.get("parameterType"),
                f"task {node.path!r} input {name!r}",
            )
        elif not pdef.get("isOptional"):
            why = _missing_reason(task_inputs.get("parameters", {}).get(name), scope)
            raise InvalidSpec(
                f"required input {name!r} has no value{why}", field=f"task {node.path!r}"
            )
    artifacts: dict[str, list[dict[str, Any]]] = {}
    adefs = comp_defs.get("artifacts", {})
    for name, src in task_inputs.get("artifacts", {}).items():
        if "componentInputArtifact" in src:
            arts = scope.artifacts.get(src["componentInputArtifact"])
        elif "taskOutputArtifact" in src:
            ref = src["taskOutputArtifact"]
            producer = scope.nodes[ref["producerTask"]]
            arts = (
                producer.output_artifacts.get(ref["outputArtifactKey"])
                if producer.state == SUCCEEDED
                else None
            )
        else:
            arts = None
        if arts is not None:
            artifacts[name] = arts
    for name, adef in adefs.items():
        if name not in artifacts and name != item_input and not adef.get("isOptional"):
            why = _missing_reason(task_inputs.get("artifacts", {}).get(name), scope)
            raise InvalidSpec(
                f"required artifact input {name!r} has no value{why}",
                field=f"task {node.path!r}",
            )
    node.inputs = params
    node.input_artifacts = artifacts


def _run_placeholders(text: str, node: Node, ctx: RunContext) -> str:
    """Run and task placeholders passed as task arguments (``dsl.PIPELINE_JOB_NAME_PLACEHOLDER``)."""
    values = run_values(ctx, node)
    for key, value in values.items():
        text = text.replace("{{$." + key + "}}", value)
    return text


def _param_source(
    src: dict[str, Any], scope: Scope, where: str, node: Node, ctx: RunContext
) -> tuple[bool, Any]:
    if "componentInputParameter" in src:
        key = src["componentInputParameter"]
        return (key in scope.params, scope.params.get(key))
    if "taskOutputParameter" in src:
        ref = src["taskOutputParameter"]
        producer = scope.nodes[ref["producerTask"]]
        key = ref["outputParameterKey"]
        if producer.state == SUCCEEDED and key in producer.outputs:
            return True, producer.outputs[key]
        return False, None
    if "runtimeValue" in src:
        rv = src["runtimeValue"]
        if "constant" in rv:
            const = rv["constant"]
            if isinstance(const, str) and "{{$." in const:
                const = _run_placeholders(const, node, ctx)
            return True, const
        const = rv.get("constantValue", {})
        for k in ("stringValue", "intValue", "doubleValue"):
            if k in const:
                return True, int(const[k]) if k == "intValue" else const[k]
        return False, None
    if "taskFinalStatus" in src:
        producer = scope.nodes[src["taskFinalStatus"]["producerTask"]]
        error: dict[str, Any] = {}
        if producer.state in (FAILED, CANCELED):
            error = {
                "code": 2 if producer.state == FAILED else 1,
                "message": producer.error or "",
            }
        return True, {
            "state": final_state(producer),
            "pipelineJobResourceName": resource_name(ctx),
            "pipelineTaskName": producer.name,
            "error": error,
        }
    raise InvalidSpec(f"unsupported input source {sorted(src)}", field=where)


def _missing_reason(src: dict[str, Any] | None, scope: Scope) -> str:
    if not src:
        return " (nothing is connected to it)"
    ref = src.get("taskOutputParameter") or src.get("taskOutputArtifact")
    if ref:
        producer = scope.nodes.get(ref.get("producerTask", ""))
        if producer is not None:
            return f" (producer task {producer.name!r} is {producer.state})"
    return ""


# The state PipelineTaskFinalStatus reports: the KFP backend hands over the ML
# Metadata state of the producer's execution, not the run-state name.
_FINAL_STATES = {SUCCEEDED: "COMPLETE", FAILED: "FAILED", CANCELED: "CANCELED", SKIPPED: "CANCELED"}


def final_state(node: Node) -> str:
    if node.state == SUCCEEDED and node.cached:
        return "CACHED"
    return _FINAL_STATES.get(node.state, node.state)
