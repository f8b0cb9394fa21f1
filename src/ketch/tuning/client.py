"""The Python surface of tuning: ``ketch.tune(...)`` and a KatibClient-shaped client.

``tune`` makes a Katib ``Experiment`` whose trials are batch ``Job`` s running the
objective function (its source, like KatibClient.tune, so the function must be
self-contained: imports inside it). The function is called with a dict of the
trial's parameters, already of their declared types (``float`` for double,
``int`` for int, numbers for discrete, ``str`` for categorical), and reports
metrics by printing ``name=value`` lines (the StdOut collector) or by calling
``ketch.tuning.report_metrics({...})``.

Where it runs: against the server at ``server`` (or ``KETCH_URL``) when one is
given or answers at the configured URL; otherwise in this process, with the
server's own controllers over the same store (an embedded control plane that
touches nothing but this experiment), and ``tune`` returns when it is done.
"""

from __future__ import annotations

import inspect
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from ketch.core import config
from ketch.core.embedded import Assembly
from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.http import api_client, error_from
from ketch.core.resource import Resource, get_condition

GROUP, VERSION = "kubeflow.org", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
FINISHED = ("Succeeded", "Failed")


class TuningError(KetchError):
    exit_code = 1


@dataclass
class TrialInfo:
    name: str
    state: str
    parameters: dict[str, str]
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    start_time: str | None = None
    completion_time: str | None = None


@dataclass
class Experiment:
    """An experiment as stored, with its best trial and trials at hand."""

    name: str
    namespace: str
    manifest: dict[str, Any]
    client: TuningClient

    @property
    def status(self) -> dict[str, Any]:
        return self.manifest.get("status") or {}

    @property
    def succeeded(self) -> bool:
        condition = get_condition(self.status, "Succeeded")
        return condition is not None and condition.get("status") == "True"

    @property
    def condition(self) -> str | None:
        """The latest condition that holds (Succeeded, Failed, Running, …)."""
        held = [c for c in self.status.get("conditions") or [] if c.get("status") == "True"]
        return held[-1]["type"] if held else None

    def optimal(self) -> dict[str, Any]:
        return self.client.get_optimal_hyperparameters(self.name, self.namespace)

    def trials(self) -> list[TrialInfo]:
        return self.client.list_trials(self.name, self.namespace)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r}, condition={self.condition!r})"


class TuningClient:
    """Katib's client calls against a Ketch server (``server`` or ``KETCH_URL``), or
    against the local store through an embedded control plane (``server=False``)."""

    def __init__(
        self,
        server: str | bool | None = None,
        *,
        timeout: float = 30.0,
        assembly: Assembly | None = None,
    ) -> None:
        url = server if isinstance(server, str) else None
        if server is None and _answers(config.server_url()):
            url = config.server_url()
        elif server is None and os.environ.get("KETCH_URL"):
            url = config.server_url()
        self.url = url
        self._http = api_client(url, timeout=timeout, field="server") if url else None
        self._store: Any = None
        self._assembly = assembly

    # -- where objects live ------------------------------------------------------

    @property
    def remote(self) -> bool:
        return self._http is not None

    def _local(self) -> Assembly:
        """What runs experiments here, without a server (``ketch.tune`` passes it)."""
        if self._assembly is None:
            raise TuningError(
                "no Ketch server to run the experiment: start one with 'ketch up', or pass "
                "assembly=ketch.capabilities.ASSEMBLY to run it in this process"
            )
        return self._assembly

    def _local_store(self) -> Any:
        if self._store is None:
            from ketch.core.store.resources import ResourceStore

            self._store = ResourceStore(config.database_url())
        return self._store

    def _path(self, plural: str, namespace: str, name: str | None = None) -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._http is not None
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TuningError(f"no Ketch server answers at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    def _get(self, kind: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if self.remote:
            return dict(self._call("GET", self._path(plural, namespace, name)))
        return dict(self._local_store().get(kind, namespace, name).to_manifest())

    def _list(
        self, kind: str, plural: str, namespace: str, selector: str | None
    ) -> list[dict[str, Any]]:
        if self.remote:
            params = {"labelSelector": selector} if selector else {}
            body = self._call("GET", self._path(plural, namespace), params=params)
            return list(body.get("items") or [])
        page = self._local_store().list(kind, namespace, label_selector=selector)
        return [r.to_manifest() for r in page]

    # -- experiments ---------------------------------------------------------------

    def create_experiment(
        self, manifest: dict[str, Any], namespace: str | None = None
    ) -> Experiment:
        """Store an Experiment manifest (validated as the server validates it)."""
        metadata = dict(manifest.get("metadata") or {})
        namespace = namespace or metadata.get("namespace") or "default"
        metadata["namespace"] = namespace
        manifest = {**manifest, "metadata": metadata}
        if self.remote:
            created = self._call("POST", self._path("experiments", namespace), json=manifest)
        else:
            resource = self._local().admission().validate(Resource.from_manifest(manifest))
            created = self._local_store().create(resource).to_manifest()
        return Experiment(created["metadata"]["name"], namespace, created, self)

    def get_experiment(self, name: str, namespace: str = "default") -> Experiment:
        return Experiment(
            name, namespace, self._get("Experiment", "experiments", namespace, name), self
        )

    def list_experiments(self, namespace: str = "default") -> list[Experiment]:
        return [
            Experiment(m["metadata"]["name"], namespace, m, self)
            for m in self._list("Experiment", "experiments", namespace, None)
        ]

    def delete_experiment(self, name: str, namespace: str = "default") -> None:
        if self.remote:
            self._call("DELETE", self._path("experiments", namespace, name))
        else:
            self._local_store().delete("Experiment", namespace, name)
            for trial in self._local_store().list(
                "Trial", namespace, label_selector=f"{EXPERIMENT_LABEL}={name}"
            ):
                self._local_store().delete("Trial", namespace, trial.metadata.name)

    def wait_for_experiment_condition(
        self,
        name: str,
        namespace: str = "default",
        expected_condition: str = "Succeeded",
        timeout: float = 600,
        polling_interval: float = 0.2,
    ) -> Experiment:
        """Wait until the experiment has ``expected_condition``; a Failed experiment
        (when that was not expected) or the timeout raises ``TuningError``."""
        deadline = time.monotonic() + timeout
        while True:
            experiment = self.get_experiment(name, namespace)
            condition = get_condition(experiment.status, expected_condition)
            if condition is not None and condition.get("status") == "True":
                return experiment
            failed = get_condition(experiment.status, "Failed")
            if (
                expected_condition != "Failed"
                and failed is not None
                and failed.get("status") == "True"
            ):
                raise TuningError(f"experiment {name} failed: {failed.get('message', '')}")
            if time.monotonic() >= deadline:
                raise TuningError(
                    f"experiment {name} did not reach {expected_condition} within {timeout:g}s"
                )
            time.sleep(polling_interval)

    def list_trials(self, name: str, namespace: str = "default") -> list[TrialInfo]:
        from ketch.tuning.controller import trial_state

        out = []
        for manifest in self._list("Trial", "trials", namespace, f"{EXPERIMENT_LABEL}={name}"):
            status = manifest.get("status") or {}
            metrics = {
                m["name"]: {k: v for k, v in m.items() if k != "name"}
                for m in (status.get("observation") or {}).get("metrics") or []
            }
            out.append(
                TrialInfo(
                    name=manifest["metadata"]["name"],
                    state=trial_state(status),
                    parameters={
                        a["name"]: a["value"]
                        for a in (manifest.get("spec") or {}).get("parameterAssignments") or []
                    },
                    metrics=metrics,
                    start_time=status.get("startTime"),
                    completion_time=status.get("completionTime"),
                )
            )
        return out

    def get_suggestion(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """The experiment's ``Suggestion`` (same name), as Katib's client returns it:
        ``spec.algorithm``, ``spec.requests``, ``status.suggestionCount``,
        ``status.suggestions`` and the conditions."""
        return self._get("Suggestion", "suggestions", namespace, name)

    def get_optimal_hyperparameters(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """Katib's ``currentOptimalTrial``: ``bestTrialName``, ``parameterAssignments``
        and ``observation`` (empty until a trial has succeeded)."""
        status = self.get_experiment(name, namespace).status
        return dict(status.get("currentOptimalTrial") or {})

    # -- tune ----------------------------------------------------------------------

    def tune(
        self,
        name: str,
        objective: Callable[[dict[str, Any]], Any],
        parameters: dict[str, dict[str, Any]],
        *,
        namespace: str = "default",
        wait: bool = True,
        timeout: float = 24 * 3600,
        **options: Any,
    ) -> Experiment:
        """Tune ``objective`` over ``parameters``; ``options`` are KatibClient.tune's
        (``objective_metric_name``, ``algorithm_name``, ``max_trial_count``, …, see
        :func:`experiment_manifest`). Returns the experiment once it has ended
        (``wait``, always without a server)."""
        manifest = experiment_manifest(name, objective, parameters, namespace=namespace, **options)
        return self.run_experiment(manifest, namespace, wait=wait, timeout=timeout)

    def run_experiment(
        self,
        manifest: dict[str, Any],
        namespace: str = "default",
        *,
        wait: bool = True,
        timeout: float = 24 * 3600,
    ) -> Experiment:
        """Create the Experiment in ``manifest`` and (with ``wait``) return it once it
        has succeeded or failed. Without a server it runs here, so it always waits."""
        name = str((manifest.get("metadata") or {}).get("name") or "")
        if not name:
            raise InvalidSpec("the experiment needs a name", field="metadata.name")
        if self.remote:
            experiment = self.create_experiment(manifest, namespace)
            return self._wait_finished(name, namespace, timeout) if wait else experiment
        with self.embedded(name, namespace):
            self.create_experiment(manifest, namespace)
            return self._wait_finished(name, namespace, timeout)

    def _wait_finished(self, name: str, namespace: str, timeout: float) -> Experiment:
        """Wait for the end, with a progress bar (trials done of the maximum, the best
        objective so far) when stderr is a terminal."""
        deadline = time.monotonic() + timeout
        with _Progress(name) as progress:
            while True:
                experiment = self.get_experiment(name, namespace)
                progress.show(experiment)
                if experiment.condition in FINISHED:
                    return experiment
                if time.monotonic() >= deadline:
                    raise TuningError(f"experiment {name} did not finish within {timeout:g}s")
                time.sleep(0.05)

    @contextmanager
    def embedded(self, name: str, namespace: str = "default") -> Iterator[None]:
        """Run the controllers in this process for experiment ``name`` (only)."""

        def mine(resource: Resource) -> bool:
            meta = resource.metadata
            if meta.namespace != namespace:
                return False
            if resource.kind == "Experiment":
                return meta.name == name
            return meta.labels.get(EXPERIMENT_LABEL) == name

        plane = self._local().control_plane(accept=mine)
        self._store = plane.store
        with plane:
            yield


class _Progress:
    """A rich progress bar for an experiment, on an interactive stderr only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        import sys

        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[best]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"experiment {self.name}", total=None, best="")
        return self

    def show(self, experiment: Experiment) -> None:
        if self._bar is None:
            return
        status = experiment.status
        finished = sum(int(status.get(k) or 0) for k in _FINISHED_COUNTS)
        total = (experiment.manifest.get("spec") or {}).get("maxTrialCount")
        optimal = status.get("currentOptimalTrial") or {}
        objective = (experiment.manifest.get("spec") or {}).get("objective") or {}
        metric = objective.get("objectiveMetricName")
        best = ""
        for entry in (optimal.get("observation") or {}).get("metrics") or []:
            if entry.get("name") == metric:
                pick = "max" if objective.get("type") == "maximize" else "min"
                best = f"best {metric}={entry.get(pick)} ({optimal.get('bestTrialName')})"
        self._bar.update(self._task, completed=finished, total=total, best=best)

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


_FINISHED_COUNTS = (
    "trialsSucceeded",
    "trialsFailed",
    "trialsKilled",
    "trialsEarlyStopped",
    "trialMetricsUnavailable",
)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.3).status_code == 200
    except httpx.HTTPError:
        return False


# -- the experiment tune() makes --------------------------------------------------------

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


def tune(
    name: str,
    objective: Callable[[dict[str, Any]], Any],
    parameters: dict[str, Any],
    **options: Any,
) -> Experiment:
    """Tune ``objective`` over ``parameters``; see :meth:`TuningClient.tune`."""
    server = options.pop("server", None)
    assembly = options.pop("assembly", None)
    return TuningClient(server, assembly=assembly).tune(name, objective, parameters, **options)
