"""The Trial controller: a Katib Trial runs as the job its ``runSpec`` holds.

A :class:`TrialController` turns a ``Trial`` into that job (a batch ``Job``, a
``PyTorchJob`` or another training job, a ``TrainJob``: the kinds of
:mod:`ketch.tuning.jobkinds`): it creates the resource, reads its metrics while it
runs (the experiment's metrics collector, plus anything the trial pushes with
``ketch.tuning.report_metrics``), reports the objective's intermediate values to
the experiment's study for its early-stopping rule, and reads the job's
``successCondition``/``failureCondition``. The job's own controller runs it;
tuning does not import that capability: it creates the resource and reads it.

The job is created as the API server would create it for Katib: a namespace whose
profile's count quota (``count/pytorchjobs.kubeflow.org``, ``count/jobs.batch``, ...)
is reached refuses it with Kubernetes' ``exceeded quota`` message; as Katib's
controller does with such an error, the trial records a ``ReconcileFailed`` Warning
(``Failed to reconcile: <message>``) and tries again, staying ``Created`` (not
``Running``) until the quota has room.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core import quota
from ketch.core.conditions import get_condition, is_true
from ketch.core.controller import Events, Key, Result, StatusController
from ketch.core.errors import KetchError, NotFound
from ketch.core.quota import QuotaExceeded
from ketch.core.resource import Resource, set_condition
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, utcnow
from ketch.tuning import trials
from ketch.tuning.collectors import Collector, make_collector
from ketch.tuning.jobkinds import JOB_KINDS
from ketch.tuning.observations import Observation, summarize
from ketch.tuning.states import RUNNING, TRIAL_ENDS, finish, trial_state
from ketch.tuning.studies import Studies
from ketch.tuning.trialfiles import local_path, push_file, trial_dir

METRICS_POLL = 0.25
#: seconds before a job the namespace's count quota refused is created again
QUOTA_RETRY = 1.0
#: how many intermediate objective values a trial keeps in its status (for restarts)
HISTORY_CAP = 2000


@dataclass
class TrialRun:
    uid: str | None
    kind: str
    main: Collector | None = None
    push: Collector | None = None
    log_path: str | None = None
    observations: list[Observation] = field(default_factory=list)
    reported: int = 0
    #: the refusal last reported of its job's create (its namespace's count quota)
    refused: str | None = None

    def collectors(self) -> list[Collector]:
        return [c for c in (self.main, self.push) if c is not None]


class TrialController(StatusController):
    """Reconciles Trials; ``studies`` is shared with the Experiment controller."""

    kind = "Trial"
    workers = 2
    watches = tuple(JOB_KINDS)

    def __init__(self, store: ResourceStore, studies: Studies) -> None:
        super().__init__(store)
        self.studies = studies
        self.runs: dict[Key, TrialRun] = {}
        self._lock = threading.Lock()

    def related(self, resource: Resource) -> Iterable[Key]:
        trial = resource.metadata.labels.get(trials.TRIAL_LABEL)
        if trial:
            yield (resource.metadata.namespace, trial)

    def gone(self, key: Key) -> None:
        self._forget(key, delete_job=True)

    def sync(
        self, key: Key, trial: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        namespace, name = key
        spec = trial.spec
        run_spec = spec.get("runSpec") or {}
        kind = str(run_spec.get("kind", ""))
        if get_condition(status, "Created") is None:
            set_condition(status, "Created", "True", "TrialCreated", "Trial is created")
        state = trial_state(status)
        if state in TRIAL_ENDS:
            self._finish_run(key, trial, state)
            return None
        run = self._run(key, trial, kind)
        try:
            job = self.store.get(kind, namespace, name)
        except NotFound:
            try:
                job = self._create_job(key, trial, run_spec)
            except QuotaExceeded as exc:
                # as Katib retries a create the API server refused: the trial waits
                message = f"Failed to reconcile: {exc}"
                if run.refused != message:
                    run.refused = message
                    events.append(("ReconcileFailed", message, "Warning"))
                return Result(requeue_after=QUOTA_RETRY)
            except KetchError as exc:
                finish(
                    status,
                    events,
                    "Failed",
                    "TrialFailed",
                    f"the trial's job could not be created: {exc}",
                )
                return None
            events.append(("JobCreated", f"{kind} {name} is created", "Normal"))
        if not is_true(status, RUNNING):
            set_condition(status, "Running", "True", "TrialRunning", "Trial is running")
            status.setdefault("startTime", format_time(utcnow()))
        self._collect(key, trial, run, job)
        if job.status.get("logPaths"):  # `ketch logs trial NAME` reads the job's replicas
            status["logPaths"] = dict(job.status["logPaths"])
        history = [
            (o.step or 0, o.value) for o in run.observations if o.name == _objective_name(spec)
        ]
        if history:
            status.setdefault("ketch", {})["history"] = [list(h) for h in history[-HISTORY_CAP:]]
        self._observe(status, trial, run)

        success, failure = trials.conditions_for(
            kind, spec.get("successCondition"), spec.get("failureCondition")
        )
        document = job.to_manifest()
        if trials.matches(document, failure):
            self._final_collect(run)
            self._observe(status, trial, run)
            finish(
                status,
                events,
                "Failed",
                "TrialFailed",
                _job_message(job, "Failed") or "Trial has failed",
            )
            return None
        if trials.matches(document, success):
            self._final_collect(run)
            self._observe(status, trial, run)
            if not _has_metric(status, _objective_name(spec)):
                finish(
                    status,
                    events,
                    "MetricsUnavailable",
                    "MetricsUnavailable",
                    "Metrics are not available: the objective metric "
                    f"{_objective_name(spec)!r} was not found in the trial's output",
                )
            else:
                finish(status, events, "Succeeded", "TrialSucceeded", "Trial has succeeded")
            return None
        if self._early_stop(key, trial, run):
            finish(
                status,
                events,
                "EarlyStopped",
                "TrialEarlyStopped",
                "Trial is early stopped: its objective is worse than the early-stopping rule allows",
            )
            return None
        return Result(requeue_after=METRICS_POLL)

    # -- the job -----------------------------------------------------------------

    def _create_job(self, key: Key, trial: Resource, run_spec: dict[str, Any]) -> Resource:
        namespace, name = key
        manifest = copy.deepcopy(run_spec)
        # the job is the trial's: its name and namespace (as the controller looks it up)
        metadata = manifest.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        labels = dict(metadata.get("labels") or {})
        labels[trials.TRIAL_LABEL] = name
        manifest["metadata"] = {**metadata, "name": name, "namespace": namespace, "labels": labels}
        folder = trial_dir(namespace, name, trial.metadata.uid)
        folder.mkdir(parents=True, exist_ok=True)
        collector_spec = trial.spec.get("metricsCollector") or {}
        source_path = (((collector_spec.get("source") or {}).get("fileSystemPath")) or {}).get(
            "path"
        )
        if source_path:
            local = local_path(str(source_path), folder)
            local.parent.mkdir(parents=True, exist_ok=True)
            manifest = trials.replace_text(manifest, str(source_path), str(local))
        env = {
            "KATIB_TRIAL_NAME": name,
            "KETCH_TRIAL_METRICS_FILE": str(push_file(folder)),
            **{str(k): str(v) for k, v in (trial.spec.get("env") or {}).items()},
        }
        trials.inject_env(manifest, env, str(trial.spec.get("primaryContainerName") or ""))
        job = Resource.from_manifest(manifest)
        known = JOB_KINDS.get(job.kind)
        if known is None:
            return self.store.create(job)
        # counted as the API server counts a create: the namespace's count quota holds
        return quota.create_counted(self.store, known.served_as, job)

    def _run(self, key: Key, trial: Resource, kind: str) -> TrialRun:
        with self._lock:
            run = self.runs.get(key)
            if run is None or run.uid != trial.metadata.uid:
                run = TrialRun(uid=trial.metadata.uid, kind=kind)
                self.runs[key] = run
            return run

    def _collect(self, key: Key, trial: Resource, run: TrialRun, job: Resource) -> None:
        folder = trial_dir(*key, trial.metadata.uid)
        names = _metric_names(trial.spec)
        spec = trial.spec.get("metricsCollector") or None
        kind_ = ((spec or {}).get("collector") or {}).get("kind", "StdOut")
        log_path = trials.primary_log(run.kind, job.status.get("logPaths") or {})
        if run.push is None and kind_ != "Push":  # report_metrics works with any collector
            push = {"collector": {"kind": "Push"}}
            run.push = make_collector(push, names, log_path=None, trial_dir=folder)
        if run.main is not None and kind_ == "StdOut" and log_path != run.log_path:
            run.observations.extend(run.main.close())  # a new pod replaced the old one
            run.main = None
        if run.main is None and (kind_ != "StdOut" or log_path is not None):
            run.log_path = log_path
            path = Path(log_path) if log_path else None
            run.main = make_collector(spec, names, log_path=path, trial_dir=folder)
        for collector in run.collectors():
            run.observations.extend(collector.poll())

    def _final_collect(self, run: TrialRun) -> None:
        for collector in run.collectors():
            run.observations.extend(collector.close())

    def _observe(self, status: dict[str, Any], trial: Resource, run: TrialRun) -> None:
        if not run.observations:
            return
        strategies = _strategies(trial.spec)
        metrics = summarize(run.observations, strategies)
        status["observation"] = {"metrics": metrics}

    def _early_stop(self, key: Key, trial: Resource, run: TrialRun) -> bool:
        experiment = trial.metadata.labels.get(trials.EXPERIMENT_LABEL)
        if not experiment:
            return False
        study = self.studies.get((key[0], experiment))
        if study is None:
            return False
        name = _objective_name(trial.spec)
        own = [o for o in run.observations if o.name == name]
        stop = False
        with study.lock:
            for index, observation in enumerate(own[run.reported :], start=run.reported):
                step = observation.step if observation.step is not None else index
                if study.suggester.report(key[1], step, observation.value):
                    stop = True
        run.reported = len(own)
        return stop

    def _finish_run(self, key: Key, trial: Resource, state: str) -> None:
        """A finished trial's job stops (killed, early stopped) and, unless the
        template says ``retain``, is deleted once it is done."""
        kind = str((trial.spec.get("runSpec") or {}).get("kind", ""))
        retain = bool(trial.spec.get("retainRun"))
        with self._lock:
            self.runs.pop(key, None)
        if retain and state not in ("Killed", "EarlyStopped"):
            return
        try:
            self.store.delete(kind, *key)
        except (NotFound, KetchError):
            pass

    def _forget(self, key: Key, *, delete_job: bool) -> None:
        with self._lock:
            run = self.runs.pop(key, None)
        if delete_job and run is not None:
            try:
                self.store.delete(run.kind, *key)
            except (NotFound, KetchError):
                pass


def _objective_name(spec: dict[str, Any]) -> str:
    return str((spec.get("objective") or {}).get("objectiveMetricName", ""))


def _metric_names(spec: dict[str, Any]) -> list[str]:
    objective = spec.get("objective") or {}
    names = [str(objective.get("objectiveMetricName", ""))]
    for extra in objective.get("objectives") or []:
        names.append(str(extra.get("objectiveMetricName", "")))
    names += [str(n) for n in objective.get("additionalMetricNames") or []]
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


def _strategies(spec: dict[str, Any]) -> dict[str, str]:
    objective = spec.get("objective") or {}
    found = {
        str(s.get("name")): str(s.get("value")) for s in objective.get("metricStrategies") or []
    }
    primary = str(objective.get("objectiveMetricName", ""))
    if primary and primary not in found:
        found[primary] = "max" if objective.get("type") == "maximize" else "min"
    for extra in objective.get("objectives") or []:
        extra_name = str(extra.get("objectiveMetricName", ""))
        if extra_name and extra_name not in found:
            found[extra_name] = "max" if extra.get("type") == "maximize" else "min"
    for name in _metric_names(spec):
        found.setdefault(name, "latest")
    return found


def _has_metric(status: dict[str, Any], name: str) -> bool:
    metrics = (status.get("observation") or {}).get("metrics") or []
    return any(m.get("name") == name for m in metrics)


def _job_message(job: Resource, type_: str) -> str | None:
    condition = get_condition(job.status, type_)
    if condition is None:
        return None
    reason, message = condition.get("reason", ""), condition.get("message", "")
    return f"the trial's {job.kind} failed: {reason}: {message}".strip(": ")
