"""Apply-time checks of Katib's Experiments and Trials: a bad manifest is refused
with the field to fix before it is stored.

An Experiment is checked as Katib's webhooks check it (:mod:`ketch.tuning.spec`),
then for what its algorithm and Ketch can run; its trial template is rendered with
placeholder values and checked as the job it makes, by that job kind's own
validator in the assembled :class:`~ketch.core.capability.Admission` (tuning does
not know other capabilities' rules). A Trial's ``runSpec`` is checked the same way.
"""

from __future__ import annotations

import copy
from typing import Any

from ketch.core.capability import Admission
from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.tuning import trials
from ketch.tuning.algorithms import validate_algorithm
from ketch.tuning.collector_spec import check_runnable
from ketch.tuning.spec import ExperimentSpec, parse_experiment
from ketch.tuning.template import check_trial_kind

TRIAL_SPEC_FIELD = "spec.trialTemplate.trialSpec"


def checked_experiment(spec: dict[str, Any], *, name: str, namespace: str) -> ExperimentSpec:
    """An Experiment's spec, parsed with Katib's webhook rules and defaults, with an
    algorithm that accepts it and a metrics collector Ketch can run."""
    parsed = parse_experiment(spec, name=name, namespace=namespace)
    validate_algorithm(parsed)
    check_runnable(parsed.metricsCollectorSpec)
    return parsed


def validate_experiment(resource: Resource, *, admission: Admission) -> None:
    """Refuse a bad Experiment before it is stored (``InvalidSpec`` names the field):
    Katib's webhook rules, what Ketch cannot run, and a trial template whose job the
    job kind's own validator (in ``admission``) refuses."""
    namespace, name = resource.metadata.namespace, resource.metadata.name
    spec = checked_experiment(resource.spec, name=name, namespace=namespace)
    template = spec.trialTemplate
    if template is not None and template.trialSpec:
        kind = str(template.trialSpec.get("kind", ""))
        trials.conditions_for(kind, template.successCondition, template.failureCondition)
        validate_trial_job(spec, name=name, namespace=namespace, admission=admission)


def validate_trial(resource: Resource, *, admission: Admission) -> None:
    """Refuse a Trial (Experiments make them; one may also be applied by hand) whose
    ``runSpec`` is not a job Ketch runs, or is a job its kind's validator refuses."""
    run_spec = resource.spec.get("runSpec")
    if not isinstance(run_spec, dict) or not run_spec:
        raise InvalidSpec(
            "is required: the manifest of the job the trial runs", field="spec.runSpec"
        )
    check_trial_kind(run_spec, "spec.runSpec")
    manifest = copy.deepcopy(run_spec)
    meta = manifest.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise InvalidSpec("must be an object", field="spec.runSpec.metadata")
    meta.update(name=resource.metadata.name, namespace=resource.metadata.namespace)
    _check_job(manifest, "spec.runSpec", "the trial's runSpec", admission)


def validate_trial_job(
    spec: ExperimentSpec, *, name: str, namespace: str, admission: Admission
) -> None:
    """Render the trial template with placeholder values (each parameter's first
    feasible value) and check the job with the validator registered for its kind,
    so a template that is itself an invalid job is refused before any trial runs."""
    template = spec.trialTemplate
    assert template is not None and template.trialSpec
    assignments = {p.name: p.format(p.sample_value()) for p in spec.parameters}
    trial_name = f"{name[:54]}-validate"
    manifest = trials.render(
        template.trialSpec,
        [p.model_dump(exclude_none=True) for p in template.trialParameters],
        assignments,
        name=trial_name,
        namespace=namespace,
        experiment=name,
    )
    _check_job(manifest, TRIAL_SPEC_FIELD, "the trial template", admission)


def _check_job(manifest: dict[str, Any], where: str, what: str, admission: Admission) -> None:
    """Check a trial's job with its kind's validator; errors name ``where``."""
    check = admission.validator(str(manifest.get("kind", "")))
    try:
        job = Resource.from_manifest(manifest)
        if check is not None:
            check(job)
    except InvalidSpec as exc:
        field = f"{where}.{exc.field}" if exc.field else where
        raise InvalidSpec(
            f"{what} is not a valid {manifest.get('kind')}: {exc.message}",
            field=field,
            hint=exc.hint,
        ) from None
