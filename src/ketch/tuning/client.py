"""The Python surface of tuning: ``ketch.tune(...)`` and a KatibClient-shaped client.

``tune`` makes a Katib ``Experiment`` whose trials are batch ``Job`` s running the
objective function (see :mod:`ketch.tuning.function_trials` for what the function
is given and how it reports metrics).

Where it runs: against the server at ``server`` (or ``KETCH_URL``) when one is
given or answers at the configured URL; otherwise in this process, with the
server's own controllers over the same store (an embedded control plane that
touches nothing but this experiment), and ``tune`` returns when it is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ketch.core import config
from ketch.core.conditions import FINISHED, Finished, get_condition, is_true, true_conditions
from ketch.core.embedded import Assembly
from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.http import ApiClient
from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.tuning.function_trials import experiment_manifest
from ketch.tuning.progress import ExperimentProgress
from ketch.tuning.states import trial_state
from ketch.tuning.trials import EXPERIMENT_LABEL

GROUP, VERSION = "kubeflow.org", "v1beta1"


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
        return is_true(self.status, Finished.SUCCEEDED)

    @property
    def condition(self) -> str | None:
        """The latest condition that holds (Succeeded, Failed, Running, …)."""
        held = true_conditions(self.status)
        return str(held[-1]["type"]) if held else None

    def optimal(self) -> dict[str, Any]:
        return self.client.get_optimal_hyperparameters(self.name, self.namespace)

    def trials(self) -> list[TrialInfo]:
        return self.client.list_trials(self.name, self.namespace)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r}, condition={self.condition!r})"


class TuningClient:
    """Katib's client calls against a Ketch server (``server`` or ``KETCH_URL``), or
    against the local store through an embedded control plane (``server=False``).

    Without a server the client holds its own connections to the store (opened on
    first use); :meth:`close` (or ``with TuningClient(...) as client:``) closes them.
    """

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
        self._api = (
            ApiClient(url, timeout=timeout, field="server", unreachable=TuningError)
            if url
            else None
        )
        self._database: Database | None = None
        self._store: ResourceStore | None = None
        self._assembly = assembly

    def close(self) -> None:
        """Close this client's connections to the local store (a later call opens
        them again)."""
        if self._database is not None:
            self._database.dispose()

    def __enter__(self) -> TuningClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- where objects live ------------------------------------------------------

    @property
    def remote(self) -> bool:
        return self._api is not None

    def _local(self) -> Assembly:
        """What runs experiments here, without a server (``ketch.tune`` passes it)."""
        if self._assembly is None:
            raise TuningError(
                "no Ketch server to run the experiment: start one with 'ketch up', or pass "
                "assembly=ketch.capabilities.ASSEMBLY to run it in this process"
            )
        return self._assembly

    def _local_database(self) -> Database:
        if self._database is None:
            self._database = Database(config.database_url())
        return self._database

    def _local_store(self) -> ResourceStore:
        if self._store is None:
            self._store = ResourceStore(self._local_database())
        return self._store

    def _path(self, plural: str, namespace: str, name: str | None = None) -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._api is not None
        return self._api.json(method, path, **kwargs)

    def _get(self, kind: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if self.remote:
            return dict(self._call("GET", self._path(plural, namespace, name)))
        return dict(self._local_store().get(kind, namespace, name).to_manifest())

    def _list(
        self, kind: str, plural: str, namespace: str, selector: str | None
    ) -> list[dict[str, Any]]:
        if self.remote:
            assert self._api is not None
            params = {"labelSelector": selector} if selector else {}
            return self._api.items(self._path(plural, namespace), params)
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
            if is_true(experiment.status, expected_condition):
                return experiment
            if expected_condition != Finished.FAILED and is_true(
                experiment.status, Finished.FAILED
            ):
                failed = get_condition(experiment.status, Finished.FAILED) or {}
                raise TuningError(f"experiment {name} failed: {failed.get('message', '')}")
            if time.monotonic() >= deadline:
                raise TuningError(
                    f"experiment {name} did not reach {expected_condition} within {timeout:g}s"
                )
            time.sleep(polling_interval)

    def list_trials(self, name: str, namespace: str = "default") -> list[TrialInfo]:
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
        :func:`ketch.tuning.function_trials.experiment_manifest`). Returns the experiment once it has ended
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
        with ExperimentProgress(name) as progress:
            while True:
                experiment = self.get_experiment(name, namespace)
                progress.show(experiment.manifest)
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

        plane = self._local().control_plane(database=self._local_database(), accept=mine)
        self._store = plane.store
        with plane:
            yield


def _answers(url: str) -> bool:
    """Whether a Ketch server answers at ``url``."""
    try:
        with ApiClient(url, timeout=0.3) as api:
            return api.request("GET", "/healthz").status_code == 200
    except KetchError:
        return False


def tune(
    name: str,
    objective: Callable[[dict[str, Any]], Any],
    parameters: dict[str, Any],
    **options: Any,
) -> Experiment:
    """Tune ``objective`` over ``parameters``; see :meth:`TuningClient.tune`."""
    server = options.pop("server", None)
    assembly = options.pop("assembly", None)
    with TuningClient(server, assembly=assembly) as client:
        return client.tune(name, objective, parameters, **options)
