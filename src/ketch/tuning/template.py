"""An Experiment's trial template (``spec.trialTemplate``): its typed model, Katib's
checks of it and the defaults its webhook fills in.

``trialSpec`` is the manifest of the job each trial runs (one of the kinds in
:mod:`ketch.tuning.jobkinds`), with ``${trialParameters.<name>}`` placeholders;
``trialParameters`` say what each placeholder stands for (a search parameter, or
``${trialSpec.Name}``-style metadata). Katib's webhook fills in the job kind's
``successCondition``, ``failureCondition`` and ``primaryPodLabels``. A template
kept in a ConfigMap is not supported: Ketch asks for it inline. Rendering a
template for one trial is :func:`ketch.tuning.trials.render`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from pydantic import Field

from ketch.core.errors import InvalidSpec
from ketch.core.spec import SpecModel
from ketch.tuning.jobkinds import JOB_KINDS

_PARAM_PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")
_META_REFERENCE = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(?:Labels|Annotations)\[.+\])\}$"
)


class TrialParameterSpec(SpecModel):
    name: str = ""
    description: str | None = None
    reference: str = ""


class ConfigMapSource(SpecModel):
    configMapName: str | None = None
    configMapNamespace: str | None = None
    templatePath: str | None = None


class TrialTemplate(SpecModel):
    retain: bool = False
    trialSpec: dict[str, Any] | None = None
    configMap: ConfigMapSource | None = None
    trialParameters: list[TrialParameterSpec] = Field(default_factory=list)
    primaryPodLabels: dict[str, str] = Field(default_factory=dict)
    primaryContainerName: str | None = None
    successCondition: str | None = None
    failureCondition: str | None = None


def check_trial_template(template: TrialTemplate, parameter_names: Collection[str]) -> None:
    """Katib's checks of ``spec.trialTemplate`` (``parameter_names``: the experiment's
    search parameters), then its defaults for the job's kind: ``successCondition``,
    ``failureCondition`` and ``primaryPodLabels``."""
    where = "spec.trialTemplate"
    if template.configMap is not None and template.trialSpec:
        raise InvalidSpec(
            "give either trialSpec or configMap, not both",
            field=f"{where}.configMap",
        )
    if template.configMap is not None:
        source = template.configMap
        named = f" {source.configMapName!r}" if source.configMapName else ""
        raise InvalidSpec(
            f"Ketch cannot read trial templates from ConfigMaps (ConfigMap{named}"
            f"{', path ' + repr(source.templatePath) if source.templatePath else ''}); "
            "put the template inline in spec.trialTemplate.trialSpec",
            field=f"{where}.configMap",
        )
    if not template.trialSpec:
        raise InvalidSpec(
            "is required (the job manifest each trial runs)", field=f"{where}.trialSpec"
        )
    trial_spec = template.trialSpec
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        raise InvalidSpec(
            "apiVersion and kind of the trial's job are required", field=f"{where}.trialSpec"
        )
    check_trial_kind(trial_spec, f"{where}.trialSpec")
    metadata = trial_spec.get("metadata") or {}
    if isinstance(metadata, dict) and (metadata.get("name") or metadata.get("namespace")):
        raise InvalidSpec(
            "metadata.name and metadata.namespace must be omitted (each trial names its job)",
            field=f"{where}.trialSpec.metadata",
        )
    text = json.dumps(trial_spec)
    names = set(parameter_names)
    declared: set[str] = set()
    references: set[str] = set()
    for index, entry in enumerate(template.trialParameters):
        at = f"{where}.trialParameters[{index}]"
        if not entry.name or "{" in entry.name or "}" in entry.name:
            raise InvalidSpec(
                "name is required and must not contain '{' or '}'", field=f"{at}.name"
            )
        if not entry.reference:
            raise InvalidSpec(
                "is required (a parameter name or a ${trialSpec.…} reference)",
                field=f"{at}.reference",
            )
        if entry.name in declared:
            raise InvalidSpec(
                f"trial parameter {entry.name!r} is declared twice", field=f"{at}.name"
            )
        if entry.reference in references:
            raise InvalidSpec(
                f"reference {entry.reference!r} is used twice", field=f"{at}.reference"
            )
        declared.add(entry.name)
        references.add(entry.reference)
        if entry.reference not in names and not _META_REFERENCE.match(entry.reference):
            raise InvalidSpec(
                f"reference {entry.reference!r} is neither a parameter in spec.parameters "
                f"({', '.join(sorted(names))}) nor a ${{trialSpec.Name}}-style reference",
                field=f"{at}.reference",
            )
        if "${trialParameters." + entry.name + "}" not in text:
            raise InvalidSpec(
                f"${{trialParameters.{entry.name}}} is not used in spec.trialTemplate.trialSpec",
                field=f"{at}.name",
            )
    for used in _PARAM_PLACEHOLDER.findall(text):
        if used not in declared:
            raise InvalidSpec(
                f"${{trialParameters.{used}}} is used in the trial spec but not declared in "
                "spec.trialTemplate.trialParameters",
                field=f"{where}.trialParameters",
            )
    job = JOB_KINDS.get(str(trial_spec.get("kind")))
    if job is None:
        return
    template.successCondition = template.successCondition or job.success_condition
    template.failureCondition = template.failureCondition or job.failure_condition
    if not template.primaryPodLabels:
        template.primaryPodLabels = dict(job.primary_pod_labels)


def check_trial_kind(trial_spec: dict[str, Any], where: str) -> None:
    """Refuse a trial job of a kind Ketch does not run (an Argo Workflow, a Pod, a
    custom resource): its trials would never start."""
    kind, api_version = str(trial_spec.get("kind")), str(trial_spec.get("apiVersion"))
    supported = ", ".join(f"{k} ({known.api_version})" for k, known in JOB_KINDS.items())
    job = JOB_KINDS.get(kind)
    expected = job.api_version if job is not None else None
    if expected is None:
        what = "an Argo Workflow" if kind == "Workflow" else f"kind {kind!r} ({api_version})"
        raise InvalidSpec(
            f"Ketch cannot run trials as {what}; the trial's job must be one of: {supported}",
            field=f"{where}.kind",
        )
    if api_version != expected:
        raise InvalidSpec(
            f"{kind} is served at {expected}, not {api_version!r}", field=f"{where}.apiVersion"
        )
