"""``TrainerClient``: the Kubeflow SDK's ``kubeflow.trainer.TrainerClient``, against a Ketch server.

::

    from ketch.trainer.client import CustomTrainer, TrainerClient

    def train(lr: float) -> None:
        import torch.distributed as dist
        dist.init_process_group("gloo")
        ...

    client = TrainerClient()                      # KETCH_URL, or http://127.0.0.1:8808
    name = client.train(trainer=CustomTrainer(func=train, func_args={"lr": 0.1}, num_nodes=2))
    client.wait_for_job_status(name)
    print("\\n".join(client.get_job_logs(name)))

``train()`` creates a ``trainer.kubeflow.org/v1alpha1`` ``TrainJob`` whose
``spec.trainer.command`` runs the function's source on every node (under
``torchrun`` for the torch runtimes; see :mod:`ketch.trainer.function_runner`).
Everything goes through the server's resource API, so jobs made here are the
ones ``ketch get trainjobs`` lists. Errors are Ketch's: ``NotFound`` for an
unknown job or runtime, ``InvalidSpec`` for a bad argument (both name what to
fix); a job that fails while waited for raises ``RuntimeError``.
"""

from __future__ import annotations

import random
import string
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound
from ketch.core.http import ApiClient
from ketch.trainer import manifests
from ketch.trainer.types import (
    COMPLETE,
    FAILED,
    JOB_STATUSES,
    CustomTrainer,
    DatasetInitializer,
    Event,
    Initializer,
    ModelInitializer,
    Runtime,
    RuntimeTrainer,
    Step,
    TrainerType,
    TrainJob,
)

GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_RUNTIME = "torch-distributed"
DEFAULT_STEP = "node-0"

__all__ = [
    "CustomTrainer",
    "DatasetInitializer",
    "Event",
    "Initializer",
    "ModelInitializer",
    "Runtime",
    "RuntimeTrainer",
    "Step",
    "TrainJob",
    "TrainerClient",
    "TrainerError",
    "TrainerType",
]


class TrainerError(KetchError):
    """The server could not be reached or answered with an unexpected error."""


class TrainerClient:
    """Train with Kubeflow Trainer's API on a Ketch server.

    ``url``: the server (default ``KETCH_URL`` or ``http://127.0.0.1:8808``);
    ``namespace``: where TrainJobs go (default ``default``, or the namespace of a
    ``backend_config`` that has one).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        backend_config: Any = None,
        timeout: float = 30.0,
    ) -> None:
        self._api = ApiClient(url, timeout=timeout, field="url", unreachable=TrainerError)
        self.url = self._api.url
        self.namespace = namespace or getattr(backend_config, "namespace", None) or "default"

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> TrainerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- runtimes --------------------------------------------------------------------

    def list_runtimes(self) -> list[Runtime]:
        """The runtimes TrainJobs can use: this namespace's TrainingRuntimes, then the
        ClusterTrainingRuntimes (those without a framework label are skipped)."""
        try:
            items = self._api.items(self._path("trainingruntimes", self.namespace))
        except NotFound:  # a server without namespaced runtimes
            items = []
        items += self._api.items(f"/apis/{GROUP}/{VERSION}/clustertrainingruntimes")
        labelled = [
            i
            for i in items
            if manifests.FRAMEWORK_LABEL in (i.get("metadata", {}).get("labels") or {})
        ]
        return [manifests.runtime_from_manifest(item) for item in labelled]

    def get_runtime(self, name: str) -> Runtime:
        """The TrainingRuntime ``name`` of this namespace, else the ClusterTrainingRuntime."""
        for path in (
            self._path("trainingruntimes", self.namespace, name),
            f"/apis/{GROUP}/{VERSION}/clustertrainingruntimes/{quote(name, safe='')}",
        ):
            try:
                found = self._api.json("GET", path)
            except NotFound:
                continue
            return manifests.runtime_from_manifest(found)
        known = ", ".join(sorted(r.name for r in self.list_runtimes())) or "none"
        raise NotFound(
            f"no training runtime {name!r} (a TrainingRuntime in namespace {self.namespace} "
            f"or a ClusterTrainingRuntime); available runtimes: {known}",
            hint="list them with TrainerClient().list_runtimes() or 'ketch get clustertrainingruntimes'",
        )

    # -- jobs --------------------------------------------------------------------------

    def train(
        self,
        runtime: Runtime | str | None = None,
        initializer: Initializer | None = None,
        trainer: CustomTrainer | None = None,
        options: list[Any] | None = None,
    ) -> str:
        """Create a TrainJob; return its (generated) name.

        ``runtime``: a :class:`Runtime` or a runtime's name (default
        ``torch-distributed``); ``trainer``: a :class:`CustomTrainer` (``None``
        runs the runtime's own command).
        """
        if initializer is not None and not isinstance(initializer, Initializer):
            raise InvalidSpec(
                "must be an Initializer(dataset=DatasetInitializer(storage_uri=...), "
                "model=ModelInitializer(storage_uri=...))",
                field="initializer",
            )
        if options:
            raise InvalidSpec(
                "options are not supported by Ketch's TrainerClient; pass num_nodes, "
                "resources_per_node and env in the CustomTrainer",
                field="options",
            )
        if trainer is not None and not isinstance(trainer, CustomTrainer):
            raise InvalidSpec(
                f"{type(trainer).__name__} is not supported; use CustomTrainer", field="trainer"
            )
        name_of = runtime.name if isinstance(runtime, Runtime) else runtime or DEFAULT_RUNTIME
        chosen = self.get_runtime(name_of)  # a clear error now rather than a failed job later
        if trainer is not None and chosen.trainer.trainer_type != TrainerType.CUSTOM_TRAINER:
            raise InvalidSpec(
                f"runtime {chosen.name} is for built-in trainers; choose a runtime for CustomTrainer",
                field="runtime",
            )
        spec: dict[str, Any] = {"runtimeRef": {"name": chosen.name}}
        if initializer is not None and initializer.spec():
            spec["initializer"] = initializer.spec()
        if trainer is not None:
            spec["trainer"] = manifests.trainer_spec(trainer, chosen.trainer.framework)
        for _attempt in range(3):
            name = random.choice(string.ascii_lowercase) + uuid.uuid4().hex[:11]
            manifest = {
                "apiVersion": API_VERSION,
                "kind": "TrainJob",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                self._api.json("POST", self._path("trainjobs", self.namespace), json=manifest)
            except Conflict:
                continue
            return name
        raise TrainerError("could not find a free TrainJob name after 3 tries")

    def list_jobs(self, runtime: Runtime | str | None = None) -> list[TrainJob]:
        """This namespace's TrainJobs (only ``runtime``'s when given)."""
        wanted = runtime.name if isinstance(runtime, Runtime) else runtime
        items = self._api.items(self._path("trainjobs", self.namespace))
        runtimes: dict[str, Runtime] = {}
        out = []
        for item in items:
            ref = str(((item.get("spec") or {}).get("runtimeRef") or {}).get("name", ""))
            if wanted is not None and ref != wanted:
                continue
            out.append(manifests.trainjob_from_manifest(item, self._runtime_for(ref, runtimes)))
        return out

    def get_job(self, name: str) -> TrainJob:
        item = self._trainjob(name)
        ref = str(((item.get("spec") or {}).get("runtimeRef") or {}).get("name", ""))
        return manifests.trainjob_from_manifest(item, self._runtime_for(ref, {}))

    def get_job_logs(
        self, name: str, step: str = DEFAULT_STEP, follow: bool | None = False
    ) -> Iterator[str]:
        """The lines ``step`` (``node-0``, ``node-1``, ...) printed; with ``follow``, new
        lines as they come, until the job ends."""
        path = self._path("trainjobs", self.namespace, name) + "/log"
        params = {"replica": step, "follow": "true" if follow else "false"}
        if not follow:
            item = self._trainjob(name)
            paths = (item.get("status") or {}).get("logPaths") or {}
            if step not in paths:
                if paths:
                    raise NotFound(
                        f"TrainJob {name!r} has no step {step!r}; steps with logs: "
                        f"{', '.join(sorted(paths))}"
                    )
                return  # nothing ran yet
            yield from self._api.request("GET", path, params=params).text.splitlines()
            return
        with self._api.stream(path, params=params) as response:
            yield from response.iter_lines()

    def get_job_events(self, name: str) -> list[Event]:
        """The events recorded for TrainJob ``name``, oldest first."""
        self._trainjob(name)
        body = self._api.json(
            "GET",
            f"/api/v1/namespaces/{quote(self.namespace, safe='')}/events",
            params={"fieldSelector": f"involvedObject.kind=TrainJob,involvedObject.name={name}"},
        )
        return [
            Event(
                involved_object_kind=str(e.get("involvedObject", {}).get("kind", "")),
                involved_object_name=str(e.get("involvedObject", {}).get("name", "")),
                message=str(e.get("message", "")),
                reason=str(e.get("reason", "")),
                event_time=manifests.time_or_now(e.get("eventTime")),
            )
            for e in body.get("items", [])
        ]

    def wait_for_job_status(
        self,
        name: str,
        status: set[str] | None = None,
        timeout: float = 600,
        polling_interval: float = 2,
    ) -> TrainJob:
        """Wait until TrainJob ``name`` is in one of ``status`` (default ``{"Complete"}``).

        Raises ``RuntimeError`` when it fails (unless ``"Failed"`` is awaited) and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        wanted = set(status) if status is not None else {COMPLETE}
        if not wanted <= JOB_STATUSES:
            raise InvalidSpec(
                f"expected statuses {sorted(wanted)} must be among {sorted(JOB_STATUSES)}",
                field="status",
            )
        if polling_interval <= 0 or polling_interval > timeout:
            raise InvalidSpec(
                f"must be positive and at most timeout ({timeout}s), got {polling_interval}",
                field="polling_interval",
            )
        deadline = time.monotonic() + timeout
        while True:
            item = self._trainjob(name)
            current = manifests.job_status(item)
            if current == FAILED and FAILED not in wanted:
                why = manifests.failure(item)
                raise RuntimeError(
                    f"TrainJob {name} is Failed{': ' + why if why else ''} "
                    f"(logs: TrainerClient().get_job_logs({name!r}) or 'ketch logs trainjob {name}')"
                )
            if current in wanted:
                ref = str(((item.get("spec") or {}).get("runtimeRef") or {}).get("name", ""))
                return manifests.trainjob_from_manifest(item, self._runtime_for(ref, {}))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"TrainJob {name} did not reach {sorted(wanted)} in {timeout}s; it is {current}"
                )
            time.sleep(min(polling_interval, left))

    def delete_job(self, name: str) -> None:
        self._api.json("DELETE", self._path("trainjobs", self.namespace, name))

    # -- HTTP ----------------------------------------------------------------------------

    def _path(self, plural: str, namespace: str, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
        return base if name is None else f"{base}/{quote(name, safe='')}"

    def _trainjob(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._api.json("GET", self._path("trainjobs", self.namespace, name)))
        except NotFound:
            raise NotFound(
                f"no TrainJob {name!r} in namespace {self.namespace}",
                hint="list them with TrainerClient().list_jobs()",
            ) from None

    def _runtime_for(self, name: str, cache: dict[str, Runtime]) -> Runtime:
        if name not in cache:
            try:
                cache[name] = self.get_runtime(name)
            except NotFound:  # deleted since: keep the name
                cache[name] = Runtime(
                    name=name,
                    trainer=RuntimeTrainer(TrainerType.CUSTOM_TRAINER, framework="unknown"),
                )
        return cache[name]
