"""The trainer capability: Kubeflow Trainer's TrainJob and the (Cluster)TrainingRuntimes
it runs with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import LAST_CONDITION, Kind
from ketch.core.services import Service, ServiceContext
from ketch.core.spec import model_schema
from ketch.core.validation import ManifestValidator, spec_of
from ketch.core.workloads.provenance import WorkloadProvenance
from ketch.trainer.controller import FACTORY, KIND
from ketch.trainer.spec import (
    CLUSTER_RUNTIME,
    NAMESPACED_RUNTIME,
    TrainingRuntimeSpec,
    TrainJobSpec,
    parse_runtime,
    parse_trainjob,
)

_RUNTIME_SCHEMA = model_schema(TrainingRuntimeSpec)

KINDS: tuple[Kind, ...] = (
    Kind(
        KIND,
        "trainer.kubeflow.org",
        ("v1alpha1",),
        "trainjobs",
        columns=(LAST_CONDITION,),
        categories=("all", "kubeflow"),
        spec_schema=model_schema(TrainJobSpec),
    ),
    Kind(
        NAMESPACED_RUNTIME,
        "trainer.kubeflow.org",
        ("v1alpha1",),
        "trainingruntimes",
        spec_schema=_RUNTIME_SCHEMA,
    ),
    Kind(
        CLUSTER_RUNTIME,
        "trainer.kubeflow.org",
        ("v1alpha1",),
        "clustertrainingruntimes",
        namespaced=False,
        spec_schema=_RUNTIME_SCHEMA,
    ),
)


def _check_trainjob(manifest: dict[str, Any]) -> None:
    parse_trainjob(spec_of(manifest))


def _check_runtime(manifest: dict[str, Any]) -> None:
    parse_runtime(spec_of(manifest))


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {
        # a TrainJob whose spec does not parse (its runtime is looked up when it runs)
        KIND: ManifestValidator(KIND, _check_trainjob),
        # a (Cluster)TrainingRuntime whose spec does not parse (replicated jobs
        # without containers included)
        NAMESPACED_RUNTIME: ManifestValidator(NAMESPACED_RUNTIME, _check_runtime),
        CLUSTER_RUNTIME: ManifestValidator(CLUSTER_RUNTIME, _check_runtime),
    }


def _provenance(context: ServiceContext) -> Service:
    # what made a file under a TrainJob's KETCH_OUTPUT_DIR (the model registry's lineage)
    return WorkloadProvenance(context.store, [KIND])


CAPABILITY = Capability(
    name="trainer",
    kinds=KINDS,
    controllers=(FACTORY,),
    validators=_validators,
    services=(_provenance,),
)
