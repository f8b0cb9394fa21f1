"""Between the SDK types and Kubeflow Trainer manifests: a CustomTrainer as a TrainJob's
``spec.trainer``, and runtimes and TrainJobs read back as :mod:`ketch.trainer.types`."""

from __future__ import annotations

import ast
import inspect
import textwrap
from datetime import datetime
from typing import Any

from ketch.core.conditions import get_condition, is_true
from ketch.core.errors import InvalidSpec
from ketch.core.timestamps import parse_time, utcnow
from ketch.trainer.types import (
    COMPLETE,
    CREATED,
    FAILED,
    RUNNING,
    UNKNOWN,
    CustomTrainer,
    Runtime,
    RuntimeTrainer,
    Step,
    TrainerType,
    TrainJob,
)

FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
GPU = "nvidia.com/gpu"
NODE = "node"
BUILTIN_FRAMEWORKS = ("torchtune",)


# -- CustomTrainer -> spec.trainer ---------------------------------------------------


def function_script(trainer: CustomTrainer) -> str:
    """The function's source followed by its call with ``func_args`` as keywords."""
    func = trainer.func
    if not callable(func):
        raise InvalidSpec(f"must be a function, got {type(func).__name__}", field="trainer.func")
    name = getattr(func, "__name__", "")
    if not name.isidentifier():
        raise InvalidSpec(
            "must be a function defined with def (a lambda's source cannot be sent)",
            field="trainer.func",
        )
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise InvalidSpec(
            f"the source of {name} cannot be read ({exc}); define it in a file or a notebook cell",
            field="trainer.func",
        ) from None
    if not trainer.func_args:
        return f"{source}\n\n{name}()\n"
    if not all(isinstance(key, str) and key.isidentifier() for key in trainer.func_args):
        raise InvalidSpec("keys must be the function's parameter names", field="trainer.func_args")
    text = repr(trainer.func_args)
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InvalidSpec(
            "values must be Python literals (numbers, strings, booleans, None, and lists, "
            "tuples and dicts of them); load anything else inside the function",
            field="trainer.func_args",
        ) from None
    return f"{source}\n\n{name}(**{text})\n"


def function_command(trainer: CustomTrainer, framework: str) -> list[str]:
    """``spec.trainer.command``: run the function under torchrun (torch) or python."""
    command = ["python", "-m", "ketch.trainer.function_runner"]
    for package in trainer.packages_to_install or []:
        command += ["--package", str(package)]
    urls = list(trainer.pip_index_urls or [])
    if urls:
        command.append(f"--pip-option=--index-url={urls[0]}")
        command += [f"--pip-option=--extra-index-url={url}" for url in urls[1:]]
    launcher = "torchrun" if framework == "torch" else "python"
    return [*command, "--launcher", launcher, function_script(trainer)]


def resources_per_node(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{"cpu": 2, "memory": "4Gi", "gpu": 1}`` as ``resourcesPerNode``.

    CPU and accelerators are requested and limited; memory is only requested,
    because a local memory limit bounds address space, which frameworks such as
    torch reserve far beyond what they use.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for key, value in resources.items():
        name = GPU if key == "gpu" else str(key)
        requests[name] = str(value)
        if name != "memory":
            limits[name] = str(value)
    return {"requests": requests, "limits": limits}


def trainer_spec(trainer: CustomTrainer, framework: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": function_command(trainer, framework)}
    if trainer.num_nodes is not None:
        if not isinstance(trainer.num_nodes, int) or trainer.num_nodes < 1:
            raise InvalidSpec(
                f"must be a positive integer, got {trainer.num_nodes!r}", field="trainer.num_nodes"
            )
        spec["numNodes"] = trainer.num_nodes
    if trainer.resources_per_node:
        spec["resourcesPerNode"] = resources_per_node(trainer.resources_per_node)
    if trainer.env:
        spec["env"] = [{"name": str(k), "value": str(v)} for k, v in trainer.env.items()]
    return spec


# -- manifests -> types -----------------------------------------------------------------


def runtime_from_manifest(manifest: dict[str, Any]) -> Runtime:
    metadata = manifest.get("metadata") or {}
    spec = manifest.get("spec") or {}
    framework = str((metadata.get("labels") or {}).get(FRAMEWORK_LABEL) or UNKNOWN)
    policy = spec.get("mlPolicy") or {}
    trainer = RuntimeTrainer(
        trainer_type=(
            TrainerType.BUILTIN_TRAINER
            if framework in BUILTIN_FRAMEWORKS
            else TrainerType.CUSTOM_TRAINER
        ),
        framework=framework,
        num_nodes=int(policy.get("numNodes") or 1),
    )
    container = _trainer_container(spec)
    if container is not None:
        trainer.image = str(container.get("image") or UNKNOWN)
        trainer.set_command(tuple(str(c) for c in container.get("command") or ()))
        trainer.device, trainer.device_count = _device(container.get("resources") or {})
    return Runtime(name=str(metadata.get("name", "")), trainer=trainer)


def _trainer_container(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The container of the replicated job trainer nodes run (the ancestor ``trainer``)."""
    jobs = ((spec.get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
    chosen = None
    for job in jobs:
        labels = ((job.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(ANCESTOR_LABEL) == "trainer" or (chosen is None and job.get("name") == NODE):
            chosen = job
    if chosen is None:
        return None
    pod = (((chosen.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec")
    containers = (pod or {}).get("containers") or []
    named = [c for c in containers if c.get("name") == NODE]
    return (named or containers or [None])[0]


def _device(resources: dict[str, Any]) -> tuple[str, str]:
    for part in ("limits", "requests"):
        values = resources.get(part) or {}
        if GPU in values:
            return "gpu", str(values[GPU])
        if "cpu" in values:
            return "cpu", str(values["cpu"])
    return UNKNOWN, UNKNOWN


def job_status(manifest: dict[str, Any]) -> str:
    """``Complete``/``Failed`` from the conditions, ``Running`` once nodes run, else ``Created``."""
    status = manifest.get("status") or {}
    for terminal in (COMPLETE, FAILED):
        if is_true(status, terminal):
            return terminal
    if is_true(status, "Suspended"):
        return CREATED
    active = sum(int(j.get("active") or 0) for j in status.get("jobsStatus") or [])
    if active or status.get("logPaths"):
        return RUNNING
    return CREATED


def failure(manifest: dict[str, Any]) -> str:
    """The Failed condition's reason and message, for an error."""
    status = manifest.get("status") or {}
    condition = (get_condition(status, FAILED) if is_true(status, FAILED) else None) or {}
    return ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)


def steps(manifest: dict[str, Any]) -> list[Step]:
    """One step per replica with a log (``node-0``, ``node-1``, ``dataset-initializer``...)."""
    name = str((manifest.get("metadata") or {}).get("name", ""))
    state = job_status(manifest)
    phase = {COMPLETE: "Succeeded", FAILED: "Failed", RUNNING: "Running"}.get(state, "Pending")
    paths = (manifest.get("status") or {}).get("logPaths") or {}
    return [Step(name=str(step), status=phase, pod_name=f"{name}-{step}") for step in paths]


def time_or_now(value: Any) -> datetime:
    """``value`` read as an RFC 3339 timestamp; now, when it is missing or is not one."""
    if isinstance(value, str) and value:
        try:
            return parse_time(value)
        except ValueError:
            pass
    return utcnow()


def trainjob_from_manifest(manifest: dict[str, Any], runtime: Runtime) -> TrainJob:
    metadata = manifest.get("metadata") or {}
    trainer = (manifest.get("spec") or {}).get("trainer") or {}
    return TrainJob(
        name=str(metadata.get("name", "")),
        runtime=runtime,
        steps=steps(manifest),
        num_nodes=int(trainer.get("numNodes") or runtime.trainer.num_nodes),
        creation_timestamp=time_or_now(metadata.get("creationTimestamp")),
        status=job_status(manifest),
    )
