"""Apply-time checks of the kubeflow.org/v1 training jobs: the training operator's
admission rules, then what Ketch needs to run the job here.

The operator's rules, per kind:

- ``metadata.name``, when given, is a DNS-1035 label (lowercase letters, digits and ``-``,
  starting with a letter, at most 63 characters): replicas are named after it;
- ``spec.runPolicy.managedBy``, when set, is ``kubeflow.org/training-operator`` or
  ``kueue.x-k8s.io/multikueue``;
- the replica specs (``spec.pytorchReplicaSpecs``, ...) are present and every
  replica type is one the kind has;
- every replica's ``template.spec.containers`` is non-empty, every container has
  an ``image``, and one container has the kind's default name (``pytorch``,
  ``tensorflow``, ``xgboost``, ``mpi`` or the MPIJob's ``mainContainer``, ``jax``,
  ``paddle``, ``mxnet``);
- PyTorchJob: ``Master`` has exactly 1 replica and other types at least 1; an
  ``elasticPolicy`` needs ``Worker`` replicas, and its deprecated ``nProcPerNode``
  may not be set together with ``spec.nprocPerNode``;
- TFJob: at most one of ``Chief`` and ``Master``;
- XGBoostJob: a ``Master`` with exactly 1 replica;
- MPIJob: a ``Launcher`` with exactly 1 replica;
- MXJob: at most one ``Scheduler``; ``jobMode`` is ``MXTrain`` or ``MXTune``, and
  ``MXTune`` needs a ``Tuner`` (``MXTrain`` a ``Worker``).

Then Ketch's own: the container that runs needs a ``command`` (see
:func:`ketch.jobs.spec.parse`). Every refusal is an ``InvalidSpec`` naming the
field, e.g. ``spec.pytorchReplicaSpecs.Worker.template.spec.containers``.

:func:`validator` gives the :class:`~ketch.core.validation.ManifestValidator`
each kind registers with the API server (the batch ``Job`` registers one of the
same shape): it takes a ``Resource`` (as every registered validator does) and also
offers ``validate_manifest(manifest)`` for code holding a plain manifest (a Katib
trial template, for instance).
"""

from __future__ import annotations

from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.core.resource import DEFAULT_NAMESPACE, DNS_1035_LABEL
from ketch.core.validation import ManifestValidator
from ketch.core.workloads.gang import ReplicaSpec
from ketch.jobs.spec import (
    KINDS,
    JobSpec,
    KindInfo,
    MPIJobSpec,
    MXJobSpec,
    PyTorchJobSpec,
    canonical_type,
    load,
    parse,
)

MANAGERS = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")


def check_name(name: str, field: str = "metadata.name") -> None:
    """``name`` is a DNS-1035 label, as the operator requires of a job's name."""
    if not name:
        raise InvalidSpec("a name is required", field=field)
    problems = []
    if len(name) > 63:
        problems.append("must be no more than 63 characters")
    if not DNS_1035_LABEL.fullmatch(name):
        problems.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character"
        )
    if problems:
        raise InvalidSpec(
            f"invalid value {name!r}: should match: {', '.join(problems)}",
            field=field,
            hint="for example 'my-job' or 'train-v2'",
        )


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a kubeflow.org/v1 job manifest the training operator (or Ketch) would not
    run; ``InvalidSpec`` names the offending field."""
    if not isinstance(manifest, dict):
        raise InvalidSpec("a manifest must be a mapping")
    kind = manifest.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidSpec(
            f"{kind!r} is not a training job kind; use one of {', '.join(KINDS)}", field="kind"
        )
    metadata = manifest.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = str(metadata.get("name") or "")
    if name or "name" in metadata:  # a template (a Katib trial's) may leave it to its owner
        check_name(name)
    info = KINDS[kind]
    model = load(kind, manifest.get("spec"))
    _check_run_policy(model)
    _check_replicas(info, model)
    _check_kind(info, model)
    parse(
        kind, name or "job", str(metadata.get("namespace") or DEFAULT_NAMESPACE), manifest["spec"]
    )


def _check_run_policy(model: JobSpec) -> None:
    manager = model.runPolicy.managedBy
    if manager is not None and manager not in MANAGERS:
        raise InvalidSpec(
            f"unsupported value {manager!r}: supported values: {', '.join(MANAGERS)}",
            field="spec.runPolicy.managedBy",
        )


def _replicas(info: KindInfo, model: JobSpec) -> dict[str, tuple[str, ReplicaSpec]]:
    """``{canonical type: (key as written, spec)}``."""
    raw: dict[str, ReplicaSpec] = getattr(model, info.replicas_field)
    return {canonical_type(info, key): (key, spec) for key, spec in raw.items()}


def _check_replicas(info: KindInfo, model: JobSpec) -> None:
    base = f"spec.{info.replicas_field}"
    replicas = _replicas(info, model)
    if not replicas:
        raise InvalidSpec("must be required: at least one replica type", field=base)
    wanted = info.default_container
    if isinstance(model, MPIJobSpec) and model.mainContainer:
        wanted = model.mainContainer
    for _rtype, (key, spec) in replicas.items():
        where = f"{base}.{key}.template.spec.containers"
        containers = spec.template.spec.containers
        if not containers:
            raise InvalidSpec("must be specified: at least one container", field=where)
        for index, container in enumerate(containers):
            if not container.image:
                raise InvalidSpec(
                    "must be required: every container needs an image (it is recorded; "
                    "the command runs on this machine)",
                    field=f"{where}[{index}].image",
                )
        if not any(c.name == wanted for c in containers):
            names = ", ".join(repr(c.name) for c in containers)
            raise InvalidSpec(
                f"must have at least one container with name {wanted} (found {names})",
                field=where,
            )


def _replica_count(
    info: KindInfo, replicas: dict[str, tuple[str, ReplicaSpec]], rtype: str
) -> None:
    key, spec = replicas[rtype]
    if spec.replicas != 1:
        raise InvalidSpec(
            f"must be 1, got {spec.replicas}", field=f"spec.{info.replicas_field}.{key}.replicas"
        )


def _require(
    info: KindInfo, replicas: dict[str, tuple[str, ReplicaSpec]], rtype: str, why: str
) -> None:
    if rtype not in replicas:
        raise InvalidSpec(f"must be present: {why}", field=f"spec.{info.replicas_field}.{rtype}")


def _check_kind(info: KindInfo, model: JobSpec) -> None:
    replicas = _replicas(info, model)
    base = f"spec.{info.replicas_field}"
    if isinstance(model, PyTorchJobSpec):
        for rtype, (key, spec) in replicas.items():
            if rtype == "Master":
                _replica_count(info, replicas, rtype)
            elif spec.replicas < 1:
                raise InvalidSpec("must be at least 1", field=f"{base}.{key}.replicas")
        policy = model.elasticPolicy
        if policy is not None:
            _require(info, replicas, "Worker", "must be configured if elastic policy is used")
            if policy.nProcPerNode is not None and model.nprocPerNode is not None:
                raise InvalidSpec(
                    "must not be used with spec.nprocPerNode (elasticPolicy.nProcPerNode is "
                    "deprecated)",
                    field="spec.elasticPolicy.nProcPerNode",
                )
    elif info.kind == "TFJob":
        if "Chief" in replicas and "Master" in replicas:
            raise InvalidSpec("must not have more than 1 Chief or Master role", field=base)
    elif info.kind == "XGBoostJob":
        _require(info, replicas, "Master", "an XGBoostJob needs a Master")
        _replica_count(info, replicas, "Master")
    elif isinstance(model, MPIJobSpec):
        _require(info, replicas, "Launcher", "an MPIJob needs a Launcher")
        _replica_count(info, replicas, "Launcher")
    elif isinstance(model, MXJobSpec):
        if "Scheduler" in replicas and replicas["Scheduler"][1].replicas > 1:
            key = replicas["Scheduler"][0]
            raise InvalidSpec("more than 1 scheduler found", field=f"{base}.{key}.replicas")
        if model.jobMode == "MXTune":
            _require(info, replicas, "Tuner", "jobMode MXTune needs a Tuner")
        else:
            _require(info, replicas, "Worker", "jobMode MXTrain needs Workers")


#: the validator of a kubeflow.org/v1 job kind
JobValidator = ManifestValidator


def validator(kind: str) -> ManifestValidator:
    """The validator of ``kind`` (a kubeflow.org/v1 job kind)."""
    if kind not in KINDS:
        raise KeyError(kind)
    return ManifestValidator(kind, validate_manifest)


VALIDATORS: dict[str, ManifestValidator] = {kind: validator(kind) for kind in KINDS}

__all__ = [
    "MANAGERS",
    "VALIDATORS",
    "JobValidator",
    "ManifestValidator",
    "check_name",
    "validate_manifest",
    "validator",
]
