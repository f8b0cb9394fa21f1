"""A pod's container run as a local process: its ProcessSpec, what it asks of the
machine, and the Warning for GPUs the machine does not have.

Where a container's command is found: Ketch's own environment first, then ``PATH``.
A command's first word without a ``/`` (``python``, ``torchrun``, ``mpirun``, ...)
is looked up in the folder of the interpreter Ketch runs from (its virtual
environment's ``bin``), then on ``PATH`` (the container's own ``PATH`` when its
``env`` sets one, else the server's), so the commands of Kubeflow's manifests and
of the TrainJob runtimes run with the packages Ketch was installed with, whatever
``PATH`` the server was started with. ``python`` and ``python3`` are Ketch's own
interpreter itself (which also lets them start from the warm fork server). A name
found nowhere is left as written: starting it then fails with the usual error in
the replica's log. The processes also get Ketch's ``bin`` at the head of their
``PATH`` (unless their container sets ``PATH``), so what they start in turn
(``mpirun``'s ranks, a script's ``subprocess.run(["python", ...])``) is found the
same way.

GPUs: ``nvidia.com/gpu`` in a container's limits (or requests) is counted against
the GPUs the backend has. The local backend does not schedule GPUs: a job asking
for more than the machine has still runs (on the CPU, when there is no GPU at
all), and its controller records a Warning event saying so (:func:`gpu_warning`),
rather than ignoring the request silently.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ketch.core.backend import (
    ProcessSpec,
    Request,
    Resources,
    command_entry,
    parse_cpu,
    parse_memory,
)
from ketch.core.errors import KetchError
from ketch.core.workloads.pods import Container

GPU = "nvidia.com/gpu"
GPU_REASON = "GPUNotAvailable"
IMAGE_REASON = "ImageNotUsed"

_PYTHONS = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")


def own_bin() -> Path:
    """The folder of the interpreter Ketch runs from (not resolved: a virtual
    environment's ``bin`` holds links to the base interpreter)."""
    return Path(sys.executable).parent


def which(program: str, env: Mapping[str, str] | None = None) -> str | None:
    """The path ``program`` runs from: Ketch's ``bin`` first, then ``PATH``."""
    if not program or "/" in program:
        return None
    if program in _PYTHONS:
        return sys.executable
    candidate = own_bin() / program
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    path = (env or {}).get("PATH") or os.environ.get("PATH", os.defpath)
    return shutil.which(program, path=path)


def resolve(command: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``command`` with its program made a path by :func:`which` (unchanged when the
    program is a path already or is found nowhere)."""
    if not command:
        return command
    found = which(command[0], env)
    return [found, *command[1:]] if found else list(command)


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``PATH`` starting at Ketch's ``bin`` (left alone when ``env`` sets
    ``PATH`` itself or the server's ``PATH`` already starts there)."""
    if "PATH" in env:
        return env
    current = os.environ.get("PATH", os.defpath)
    head = str(own_bin())
    if current.split(os.pathsep)[0] == head:
        return env
    return {**env, "PATH": os.pathsep.join([head, current]) if current else head}


def container_process(
    container: Container,
    *,
    name: str,
    env: dict[str, str],
    log_path: Path,
    ports: tuple[int, ...] = (),
    namespace: str | None = None,
) -> ProcessSpec:
    """The local process of ``container``: its command and args (the program found
    by :func:`resolve`: ``python``/``python3`` is this server's interpreter, started
    from the warm fork server when it can be), ``env``, working directory and
    CPU/memory quantities, with stdout and stderr in ``log_path``; ``namespace``: the
    profile it works for (its OS user in multi-user mode)."""
    command = resolve([*container.command, *container.args], env)
    env = child_env(env)
    requests, limits = container.resources.requests, container.resources.limits
    return ProcessSpec(
        name=name,
        command=command,
        env=env,
        cwd=Path(container.workingDir) if container.workingDir else None,
        stdout_path=log_path,
        stderr_path=log_path,
        resources=Resources(
            cpu_request=_quantity(requests.get("cpu")),
            cpu_limit=_quantity(limits.get("cpu")),
            memory_request=_quantity(requests.get("memory")),
            memory_limit=_quantity(limits.get("memory")),
            accelerator_type=GPU,
            accelerator_count=math.ceil(gpus_requested(container)),
        ),
        ports=ports,
        python=command_entry(command, sys.executable),
        namespace=namespace,
    )


def _quantity(value: str | int | float | None) -> str | None:
    return None if value is None else str(value)


def container_request(container: Container) -> Request:
    """What ``container`` asks of the machine: its CPU and memory requests, else
    its limits (nothing for neither), and its GPUs."""
    resources = container.resources
    cpu = resources.requests.get("cpu", resources.limits.get("cpu"))
    memory = resources.requests.get("memory", resources.limits.get("memory"))
    return Request(
        parse_cpu(cpu) if cpu is not None else 0.0,
        float(parse_memory(memory)) if memory is not None else 0.0,
        gpus_requested(container),
    )


def image_notice(images: Iterable[str]) -> str:
    """The Normal event's message saying the containers' ``images`` are not run (the
    local backend runs their commands on this machine)."""
    return (
        f"image {', '.join(sorted(images))} is not used: the local backend runs each "
        "container's command on this machine"
    )


def gpus_requested(container: Container) -> float:
    """The GPUs ``container`` asks for (its limit, else its request; 0 for none)."""
    resources = container.resources
    value = resources.limits.get(GPU, resources.requests.get(GPU))
    if value is None:
        return 0.0
    try:
        return parse_cpu(value)  # a plain count: "1", 2
    except KetchError:
        return 0.0


def gpu_warning(requests: Iterable[tuple[str, float]], available: int) -> str | None:
    """The Warning to record when ``requests`` (``(who, gpus)``) ask for more GPUs
    than the ``available`` ones; ``None`` when they fit (or ask for none)."""
    asked = [(who, count) for who, count in requests if count > 0]
    if not asked:
        return None
    have = available
    total = sum(count for _who, count in asked)
    if total <= have:
        return None
    who = ", ".join(f"{name} ({count:g})" for name, count in asked[:5])
    more = f" and {len(asked) - 5} more" if len(asked) > 5 else ""
    if have == 0:
        return (
            f"{GPU} requested by {who}{more} but this machine has no NVIDIA GPU; "
            "the job runs on the CPU"
        )
    return (
        f"{GPU} requested by {who}{more}: {total:g} in all, but this machine has {have}; "
        "the processes share the GPUs there are"
    )
