"""A Python objective function as a Katib Experiment: what ``ketch.tune`` creates.

Like ``KatibClient.tune``, each trial is a batch ``Job`` that runs the function's
source (so the function must be self-contained: imports inside it), called with
a dict of the trial's parameters already of their declared types (``float`` for
double, ``int`` for int, numbers for discrete, ``str`` for categorical), which
arrive in the trial's environment. The function reports metrics by printing
``name=value`` lines (the StdOut collector) or by calling
``ketch.tuning.report_metrics({...})``.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from ketch.core.errors import InvalidSpec

API_VERSION = "kubeflow.org/v1beta1"

_CASTS = {"double": "float", "int": "int", "categorical": "str", "discrete": "_number"}


def function_source(objective: Callable[..., Any]) -> str:
    """The objective's source, dedented; a clear error when it has none."""
    if not callable(objective):
        raise InvalidSpec("must be a function", field="objective")
    try:
        source = inspect.getsource(objective)
    except (OSError, TypeError):
        raise InvalidSpec(
            "the objective's source code is not available (define it in a file or a "
            "notebook cell, not in an interactive prompt or with lambda)",
            field="objective",
        ) from None
    return textwrap.dedent(source)


def trial_code(objective: Callable[..., Any], parameters: dict[str, dict[str, Any]]) -> str:
    """The program a trial runs: the objective's source, then a call with the typed
    parameters (which arrive in ``KETCH_TRIAL_PARAMETER_<i>``)."""
    lines = [
        "from __future__ import annotations",  # annotations may name what is not imported
        "",
        "import os as _os",
        "",
        "def _number(text):",
        "    try:",
        "        return int(text)",
        "    except ValueError:",
        "        return float(text)",
        "",
        function_source(objective),
        "",
        "_parameters = {",
    ]
    for index, (pname, space) in enumerate(parameters.items()):
        cast = _CASTS[space["parameterType"]]
        lines.append(f"    {pname!r}: {cast}(_os.environ['KETCH_TRIAL_PARAMETER_{index}']),")
    lines += ["}", f"{objective.__name__}(_parameters)", ""]
    return "\n".join(lines)


def experiment_manifest(
    name: str,
    objective: Callable[[dict[str, Any]], Any],
    parameters: dict[str, dict[str, Any]],
    *,
    namespace: str = "default",
    objective_metric_name: str,
    objective_type: str = "maximize",
    objective_goal: float | None = None,
    additional_metric_names: list[str] | None = None,
    algorithm_name: str = "random",
    algorithm_settings: dict[str, Any] | None = None,
    early_stopping_name: str | None = None,
    early_stopping_settings: dict[str, Any] | None = None,
    max_trial_count: int | None = None,
    parallel_trial_count: int | None = None,
    max_failed_trial_count: int | None = None,
    resources_per_trial: dict[str, Any] | None = None,
    env_per_trial: dict[str, str] | None = None,
    retain_trials: bool = False,
    metrics_collector_config: dict[str, Any] | None = None,
    base_image: str | None = None,
) -> dict[str, Any]:
    """The Katib Experiment that ``tune`` creates (a batch Job per trial)."""
    if not isinstance(parameters, dict) or not parameters:
        raise InvalidSpec(
            "give at least one parameter, e.g. {'lr': ketch.search.double(min=0.01, max=0.1)}",
            field="parameters",
        )
    search_space = []
    for pname, space in parameters.items():
        if not isinstance(space, dict) or space.get("parameterType") not in _CASTS:
            raise InvalidSpec(
                "must be made with ketch.search.double/int/categorical/discrete",
                field=f"parameters.{pname}",
            )
        search_space.append({"name": pname, **space})
    env = [
        {"name": f"KETCH_TRIAL_PARAMETER_{i}", "value": f"${{trialParameters.{p}}}"}
        for i, p in enumerate(parameters)
    ]
    env += [{"name": k, "value": str(v)} for k, v in (env_per_trial or {}).items()]
    container: dict[str, Any] = {
        "name": "training-container",
        "image": base_image or "python:3.11",
        "command": ["python", "-u", "-c", trial_code(objective, parameters)],
        "env": env,
    }
    if resources_per_trial:
        container["resources"] = _resources(resources_per_trial)
    objective_spec: dict[str, Any] = {
        "type": objective_type,
        "objectiveMetricName": objective_metric_name,
    }
    if objective_goal is not None:
        objective_spec["goal"] = objective_goal
    if additional_metric_names:
        objective_spec["additionalMetricNames"] = list(additional_metric_names)
    spec: dict[str, Any] = {
        "objective": objective_spec,
        "algorithm": {
            "algorithmName": algorithm_name,
            "algorithmSettings": _settings(algorithm_settings),
        },
        "parameters": search_space,
        "trialTemplate": {
            "retain": retain_trials,
            "primaryContainerName": "training-container",
            "trialParameters": [{"name": p, "reference": p} for p in parameters],
            "trialSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "backoffLimit": 0,
                    "template": {"spec": {"containers": [container], "restartPolicy": "Never"}},
                },
            },
        },
    }
    if early_stopping_name:
        spec["earlyStopping"] = {
            "algorithmName": early_stopping_name,
            "algorithmSettings": _settings(early_stopping_settings),
        }
    for key, value in (
        ("maxTrialCount", max_trial_count),
        ("parallelTrialCount", parallel_trial_count),
        ("maxFailedTrialCount", max_failed_trial_count),
    ):
        if value is not None:
            spec[key] = value
    if metrics_collector_config:
        spec["metricsCollectorSpec"] = {"collector": dict(metrics_collector_config)}
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _settings(settings: dict[str, Any] | None) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in (settings or {}).items()]


def _resources(resources: dict[str, Any]) -> dict[str, Any]:
    if "requests" in resources or "limits" in resources:
        return resources
    values = {k: str(v) for k, v in resources.items()}
    return {"requests": dict(values), "limits": dict(values)}
