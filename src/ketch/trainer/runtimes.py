"""The (Cluster)TrainingRuntimes: the built-ins installed when the server starts, and
the lookup of the runtime a TrainJob names.

A TrainJob names a runtime: ``runtimeRef.kind: TrainingRuntime`` is looked up in
the job's namespace, ``ClusterTrainingRuntime`` among the cluster-scoped ones.
When ``runtimeRef.kind`` is left out it is ClusterTrainingRuntime, as in Kubeflow;
when no cluster runtime has that name, a TrainingRuntime of that name in the job's
namespace is used (Kubeflow would fail the job). A missing runtime is a
:class:`RuntimeNotFound` saying which runtimes exist.

``torch-distributed``, ``jax-distributed``, ``xgboost-distributed`` and
``mpi-distributed`` have Kubeflow Trainer's names, ML policies and images; their
default commands (used when a TrainJob gives none) print the distributed
environment the runtime sets, so they make sense on this machine.

Cluster-scoped objects live in the ``default`` namespace of the store (where
``ketch get clustertrainingruntimes`` looks). Installing is idempotent: a missing
built-in is created; one still as Ketch installed it (its spec hash matches the
``ketch.dev/builtin-spec-hash`` annotation) is updated to this version's spec; one a
user edited is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.resource import DEFAULT_NAMESPACE, ObjectMeta, Resource
from ketch.core.store.resources import ResourceStore
from ketch.trainer.spec import (
    ANCESTOR_LABEL,
    ANCESTOR_TRAINER,
    API_VERSION,
    CLUSTER_RUNTIME,
    LAUNCHER,
    NAMESPACED_RUNTIME,
    NODE,
    RuntimeRef,
    TrainingRuntimeSpec,
    parse_runtime,
)

log = logging.getLogger(__name__)

BUILTIN_LABEL = "ketch.dev/builtin"
HASH_ANNOTATION = "ketch.dev/builtin-spec-hash"
FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"


def _print_env(title: str, *prefixes: str) -> list[str]:
    """A local default command: print the runtime's title and its distributed env."""
    wanted = ", ".join(repr(p) for p in prefixes)
    code = (
        "import os\n"
        f"print({title!r})\n"
        "print('--------------------------------------')\n"
        "for key, value in sorted(os.environ.items()):\n"
        f"    if key.startswith(({wanted},)):\n"
        "        print(f'{key}={value}')\n"
    )
    return ["python", "-c", code]


def _replicated_job(
    name: str,
    image: str,
    command: list[str],
    *,
    ancestor: str | None = None,
    args: list[str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": NODE, "image": image, "command": command}
    if args:
        container["args"] = args
    template: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [container]}}}}
    if ancestor:
        template["metadata"] = {"labels": {ANCESTOR_LABEL: ancestor}}
    return {"name": name, "template": template}


def _runtime(name: str, framework: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": CLUSTER_RUNTIME,
        "metadata": {
            "name": name,
            "labels": {FRAMEWORK_LABEL: framework, BUILTIN_LABEL: "true"},
        },
        "spec": spec,
    }


def builtin_runtimes() -> list[dict[str, Any]]:
    """The manifests of the built-in ClusterTrainingRuntimes."""
    torch = _runtime(
        "torch-distributed",
        "torch",
        {
            "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        _replicated_job(
                            NODE,
                            "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
                            _print_env("Torch Distributed Runtime", "PET_"),
                            ancestor=ANCESTOR_TRAINER,
                        ),
                    ]
                }
            },
        },
    )
    jax = _runtime(
        "jax-distributed",
        "jax",
        {
            "mlPolicy": {"numNodes": 1, "jax": {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        _replicated_job(
                            NODE,
                            "nvcr.io/nvidia/jax:25.10-py3",
                            _print_env("JAX Distributed Runtime", "JAX_"),
                            ancestor=ANCESTOR_TRAINER,
                        ),
                    ]
                }
            },
        },
    )
    xgboost = _runtime(
        "xgboost-distributed",
        "xgboost",
        {
            "mlPolicy": {"numNodes": 1, "xgboost": {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        _replicated_job(
                            NODE,
                            "ghcr.io/kubeflow/trainer/xgboost-runtime:latest",
                            _print_env("XGBoost Distributed Runtime", "DMLC_"),
                            ancestor=ANCESTOR_TRAINER,
                        ),
                    ]
                }
            },
        },
    )
    mpi = _runtime(
        "mpi-distributed",
        "mpi",
        {
            "mlPolicy": {
                "numNodes": 1,
                "mpi": {
                    "numProcPerNode": 1,
                    "mpiImplementation": "OpenMPI",
                    "sshAuthMountPath": "/home/mpiuser/.ssh",
                    "runLauncherAsNode": False,
                },
            },
            "template": {
                "spec": {
                    "successPolicy": {"operator": "All", "targetReplicatedJobs": [LAUNCHER]},
                    "replicatedJobs": [
                        _replicated_job(
                            LAUNCHER,
                            "mpioperator/mpi-pi:openmpi",
                            _print_env("MPI Distributed Runtime", "OMPI_", "I_MPI_"),
                            ancestor=ANCESTOR_TRAINER,
                        ),
                        _replicated_job(
                            NODE,
                            "mpioperator/mpi-pi:openmpi",
                            ["/usr/sbin/sshd"],
                            args=["-De", "-f", "/home/mpiuser/.sshd_config"],
                        ),
                    ],
                }
            },
        },
    )
    return [torch, jax, xgboost, mpi]


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def install_builtins(store: ResourceStore) -> list[str]:
    """Create or update the built-ins in ``store``; the names of those written."""
    written: list[str] = []
    for manifest in builtin_runtimes():
        name = manifest["metadata"]["name"]
        digest = spec_hash(manifest["spec"])
        manifest["metadata"]["annotations"] = {HASH_ANNOTATION: digest}
        manifest["metadata"]["namespace"] = DEFAULT_NAMESPACE
        wanted = Resource.from_manifest(manifest)
        try:
            current = store.get(CLUSTER_RUNTIME, DEFAULT_NAMESPACE, name)
        except NotFound:
            try:
                store.create(wanted)
                written.append(name)
            except Conflict:  # another server created it meanwhile
                pass
            continue
        installed = current.metadata.annotations.get(HASH_ANNOTATION)
        if installed != spec_hash(current.spec):
            continue  # edited by a user: theirs now
        if installed == digest:
            continue  # up to date
        labels = {**current.metadata.labels, **wanted.metadata.labels}
        annotations = {**current.metadata.annotations, HASH_ANNOTATION: digest}
        store.apply(
            wanted.model_copy(
                update={
                    "metadata": ObjectMeta(
                        name=name,
                        namespace=DEFAULT_NAMESPACE,
                        labels=labels,
                        annotations=annotations,
                    ),
                }
            )
        )
        written.append(name)
    if written:
        log.info("installed built-in ClusterTrainingRuntimes: %s", ", ".join(written))
    return written


# -- lookup ------------------------------------------------------------------------


class RuntimeNotFound(InvalidSpec):
    """The TrainJob's runtimeRef names no runtime this server has."""


def find_runtime(
    store: ResourceStore, namespace: str, ref: RuntimeRef
) -> tuple[str, TrainingRuntimeSpec]:
    """``(label, spec)`` of the runtime ``ref`` names; ``RuntimeNotFound`` says what exists."""
    kinds = [ref.kind] if ref.kind else [CLUSTER_RUNTIME, NAMESPACED_RUNTIME]
    for kind in kinds:
        found = _get_runtime(store, kind, namespace, ref.name)
        if found is not None:
            label = f"{kind} {found.metadata.name!r}"
            return label, parse_runtime(found.spec, field=f"{kind}({found.metadata.name}).spec")
    cluster = sorted({r.metadata.name for r in store.list(CLUSTER_RUNTIME, namespace=None)})
    local = sorted(r.metadata.name for r in store.list(NAMESPACED_RUNTIME, namespace=namespace))
    wanted = ref.kind or f"{NAMESPACED_RUNTIME} or {CLUSTER_RUNTIME}"
    where = f" in namespace {namespace!r}" if ref.kind == NAMESPACED_RUNTIME else ""
    known = [f"ClusterTrainingRuntimes: {', '.join(cluster) or 'none'}"]
    known.append(f"TrainingRuntimes in {namespace!r}: {', '.join(local) or 'none'}")
    raise RuntimeNotFound(
        f"{wanted} {ref.name!r} not found{where}; {'; '.join(known)}",
        field="spec.runtimeRef.name",
        hint="list them with: ketch get clustertrainingruntimes",
    )


def _get_runtime(store: ResourceStore, kind: str, namespace: str, name: str) -> Resource | None:
    if kind == NAMESPACED_RUNTIME:
        try:
            return store.get(kind, namespace, name)
        except NotFound:
            return None
    try:  # cluster-scoped: stored in the default namespace, else wherever it was applied
        return store.get(kind, DEFAULT_NAMESPACE, name)
    except NotFound:
        pass
    return next((r for r in store.list(kind, namespace=None) if r.metadata.name == name), None)
