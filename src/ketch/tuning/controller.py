"""The Katib controllers: Experiment -> Trials -> jobs, as Katib reconciles them.

An :class:`ExperimentController` keeps ``parallelTrialCount`` trials running until
a completion rule holds (Katib's, in its order: the goal is reached, more trials
failed than ``maxFailedTrialCount``, ``maxTrialCount`` trials finished, the
algorithm has no suggestions left). Each new trial's parameters come from the
experiment's :class:`~ketch.tuning.algorithms.Suggester` (Optuna). The study is
not kept anywhere else than in the trials: they are resources, and on a restart
the suggester is rebuilt from them (finished and running), with the seed stored
in the experiment's status, so an experiment picks up where it stopped. What the
algorithm handed out is published as Katib does, in a ``Suggestion`` with the
experiment's name (:mod:`ketch.tuning.suggestions`), which this controller keeps.

A :class:`TrialController` turns a ``Trial`` into the job its ``runSpec`` holds
(a batch ``Job``, a ``PyTorchJob`` or another training job, a ``TrainJob``): it
creates that resource, reads its metrics while it runs (the experiment's metrics
collector, plus anything the trial pushes with ``ketch.tuning.report_metrics``),
reports the objective's intermediate values to the experiment's early-stopping
rule, and reads the job's ``successCondition``/``failureCondition``. The job's
own controller runs it. Neither controller imports another capability: they
create resources and read them.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import secrets
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.backend import Backend
from ketch.core.capability import Admission
from ketch.core.controller import Controller, Events, Key, Result, StatusController
from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound
from ketch.core.resource import (
    Resource,
    format_time,
    get_condition,
    set_condition,
    utcnow,
)
from ketch.core.store.resources import ResourceStore
from ketch.tuning import collectors, suggestions, trials
from ketch.tuning.algorithms import Suggester, TrialRecord, validate_algorithm
from ketch.tuning.pbt import CHECKPOINT_ENV
from ketch.tuning.spec import (
    ExperimentSpec,
    check_runnable,
    check_trial_kind,
    parse_experiment,
)

log = logging.getLogger("ketch.tuning.controller")

GROUP_VERSION = "kubeflow.org/v1beta1"
METRICS_POLL = 0.25
#: how soon an experiment's counts follow a trial that started running
COUNTS_DELAY = 0.2
#: how many intermediate objective values a trial keeps in its status (for restarts)
HISTORY_CAP = 2000

TERMINAL = ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")


def validate(resource: Resource, *, admission: Admission) -> None:
    """Refuse a bad Experiment before it is stored (``InvalidSpec`` names the field):
    Katib's webhook rules, what Ketch cannot run, and a trial template whose job the
    job kind's own validator (in ``admission``) refuses."""
    namespace, name = resource.metadata.namespace, resource.metadata.name
    spec = parse_experiment(resource.spec, name=name, namespace=namespace)
    validate_algorithm(spec)
    check_runnable(spec)
    template = spec.trialTemplate
    if template is not None and template.trialSpec:
        kind = str(template.trialSpec.get("kind", ""))
        trials.conditions_for(kind, template.successCondition, template.failureCondition)
        validate_trial_job(spec, name=name, namespace=namespace, admission=admission)


TRIAL_SPEC_FIELD = "spec.trialTemplate.trialSpec"


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


# -- shared state: one study per experiment ---------------------------------------


@dataclass
class Study:
    uid: str | None
    spec: ExperimentSpec
    suggester: Suggester
    told: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Studies:
    """The live studies of one server, shared by its Experiment and Trial controllers."""

    def __init__(self) -> None:
        self._studies: dict[Key, Study] = {}
        self._lock = threading.Lock()

    def get(self, key: Key) -> Study | None:
        with self._lock:
            return self._studies.get(key)

    def put(self, key: Key, study: Study) -> None:
        with self._lock:
            self._studies[key] = study

    def drop(self, key: Key) -> None:
        with self._lock:
            self._studies.pop(key, None)


_shared: dict[int, Studies] = {}
_shared_lock = threading.Lock()


def studies_for(store: ResourceStore) -> Studies:
    with _shared_lock:
        return _shared.setdefault(id(store), Studies())


def experiment_factory(store: ResourceStore, _backend: Backend) -> Controller:
    return ExperimentController(store, studies_for(store))


def trial_factory(store: ResourceStore, _backend: Backend) -> Controller:
    return TrialController(store, studies_for(store))


# -- trials as the experiment sees them ---------------------------------------------


def trial_state(status: dict[str, Any]) -> str:
    """Succeeded, Failed, Killed, EarlyStopped, MetricsUnavailable, Running or Pending."""
    for type_ in TERMINAL:
        condition = get_condition(status, type_)
        if condition is not None and condition.get("status") == "True":
            return type_
    running = get_condition(status, "Running")
    if running is not None and running.get("status") == "True":
        return "Running"
    return "Pending"


def objectives(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """``(metric name, "maximize"|"minimize")`` of every objective, the primary first."""
    return [(o.objectiveMetricName, o.type) for o in spec.objectives]


def metric_value(metrics: list[dict[str, Any]], name: str, strategy: str) -> float | None:
    return collectors.objective_value(metrics, name, strategy)


def trial_values(spec: ExperimentSpec, status: dict[str, Any]) -> list[float] | None:
    metrics = (status.get("observation") or {}).get("metrics") or []
    values = []
    for name, _direction in objectives(spec):
        value = metric_value(metrics, name, spec.metric_strategy(name))
        if value is None:
            return None
        values.append(value)
    return values


def _record(spec: ExperimentSpec, trial: Resource) -> TrialRecord:
    assignments = {
        a.get("name"): a.get("value") for a in trial.spec.get("parameterAssignments") or []
    }
    parameters: dict[str, Any] = {}
    for parameter in spec.parameters:
        if parameter.name in assignments:
            parameters[parameter.name] = parameter.coerce(str(assignments[parameter.name]))
    state = trial_state(trial.status)
    mapped = {
        "Succeeded": "succeeded",
        "Failed": "failed",
        "MetricsUnavailable": "failed",
        "Killed": "killed",
        "EarlyStopped": "early_stopped",
    }.get(state, "running")
    history = [(int(s), float(v)) for s, v in (trial.status.get("ketch") or {}).get("history", [])]
    return TrialRecord(
        name=trial.metadata.name,
        parameters=parameters,
        state=mapped,  # type: ignore[arg-type]
        values=trial_values(spec, trial.status)
        if mapped in ("succeeded", "early_stopped")
        else None,
        intermediate=history,
        labels={
            k: v
            for k, v in trial.metadata.labels.items()
            if not k.startswith("katib.kubeflow.org/")
        },
    )


# -- the Experiment controller ------------------------------------------------------


class TrialCache:
    """Each experiment's trials, listed from the store once and then kept current
    from the store's change feed (so a reconcile does not list every trial again)."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._trials: dict[Key, dict[str, Resource]] = {}
        self._gone: dict[Key, set[str]] = {}
        self._lock = threading.Lock()

    def of(self, key: Key) -> list[Resource]:
        with self._lock:
            cached = self._trials.get(key)
            if cached is not None:
                return list(cached.values())
            self._trials[key] = {}  # from now on, writes are kept (and win if newer)
            self._gone[key] = set()
        listed = self.store.list(
            "Trial", key[0], label_selector=f"{trials.EXPERIMENT_LABEL}={key[1]}"
        )
        with self._lock:
            cached = self._trials.setdefault(key, {})
            gone = self._gone.pop(key, set())
            for trial in listed:
                name = trial.metadata.name
                if name in gone:
                    continue
                newer = cached.get(name)
                if newer is None or _version(newer) < _version(trial):
                    cached[name] = trial
            return list(cached.values())

    def seen(self, resource: Resource, deleted: bool) -> None:
        experiment = resource.metadata.labels.get(trials.EXPERIMENT_LABEL)
        if not experiment:
            return
        key = (resource.metadata.namespace, experiment)
        with self._lock:
            cached = self._trials.get(key)
            if cached is None:
                return
            name = resource.metadata.name
            if deleted:
                cached.pop(name, None)
                if key in self._gone:
                    self._gone[key].add(name)
                return
            current = cached.get(name)
            if current is None or _version(current) <= _version(resource):
                cached[name] = resource

    def drop(self, key: Key) -> None:
        with self._lock:
            self._trials.pop(key, None)
            self._gone.pop(key, None)


def _version(resource: Resource) -> int:
    try:
        return int(resource.metadata.resourceVersion or 0)
    except ValueError:
        return 0


class ExperimentController(StatusController):
    kind = "Experiment"
    watches = ("Trial", suggestions.KIND)

    def __init__(self, store: ResourceStore, studies: Studies) -> None:
        super().__init__(store)
        self.studies = studies
        self.trials = TrialCache(store)
        self._specs: dict[Key, tuple[tuple[str | None, int | None], ExperimentSpec]] = {}
        # each experiment's Suggestion as last written: (experiment uid, suggestion)
        self._suggestions: dict[Key, tuple[str | None, Resource]] = {}
        self._writing: set[Key] = set()  # Suggestions being written by this controller
        self._signatures: dict[Key, tuple[list[str], bool, int | None]] = {}

    def related(self, resource: Resource) -> Iterable[Key]:
        if resource.kind == suggestions.KIND:
            key = (resource.metadata.namespace, resource.metadata.name)
            if key not in self._writing:  # changed or deleted by someone else: write it again
                self._suggestions.pop(key, None)
                self._signatures.pop(key, None)
                yield key
            return
        experiment = resource.metadata.labels.get(trials.EXPERIMENT_LABEL)
        if not experiment:
            return
        key = (resource.metadata.namespace, experiment)
        if trial_state(resource.status) in ("Running", "Pending") and resource.status:
            # a trial started: only counts change, so one pass a little later covers
            # several such changes; a finished trial frees a slot at once
            if self.manager is not None:
                self.manager.enqueue_after(self.kind, *key, COUNTS_DELAY)
            return
        yield key

    def seen(self, resource: Resource, deleted: bool) -> None:
        if resource.kind == "Trial":
            self.trials.seen(resource, deleted)
        elif deleted:  # a deleted Suggestion is written again, whoever deleted it
            key = (resource.metadata.namespace, resource.metadata.name)
            self._suggestions.pop(key, None)
            self._signatures.pop(key, None)
            if key in self._writing:
                self.enqueue(key)

    def gone(self, key: Key) -> None:
        self._cascade(key)

    def _parsed(self, key: Key, experiment: Resource) -> ExperimentSpec:
        """The experiment's checked spec, parsed once per generation (not on every
        pass: a pass runs for every change of every trial)."""
        version = (experiment.metadata.uid, experiment.metadata.generation)
        cached = self._specs.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        spec = parse_experiment(experiment.spec, name=key[1], namespace=key[0])
        validate_algorithm(spec)
        check_runnable(spec)
        if spec.trialTemplate is None or not spec.trialTemplate.trialSpec:
            raise InvalidSpec(
                "an experiment needs trialTemplate.trialSpec (the job each trial runs)",
                field="spec.trialTemplate.trialSpec",
            )
        self._specs[key] = (version, spec)
        return spec

    def sync(
        self, key: Key, experiment: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        namespace, name = key
        if get_condition(status, "Created") is None:
            message = "Experiment is created"
            set_condition(status, "Created", "True", "ExperimentCreated", message)
            events.append(("ExperimentCreated", f"Experiment {name} is created", "Normal"))
            status["startTime"] = format_time(utcnow())
        try:
            spec = self._parsed(key, experiment)
        except InvalidSpec as exc:
            if not _true(status, "Failed"):
                _finish(status, events, "Failed", "ExperimentFailed", f"invalid spec: {exc}")
            return None
        study = self._study(key, experiment, spec, status)
        items = self.trials.of(key)
        with study.lock:
            self._tell(study, spec, items)
        states = {t.metadata.name: trial_state(t.status) for t in items}
        counts = _counts(states)
        finished = sum(counts[s] for s in TERMINAL)
        active = counts["Running"] + counts["Pending"]

        if _true(status, "Succeeded") or _true(status, "Failed"):
            if not self._restartable(spec, status, len(items)):
                self._write_status(status, spec, items, states, study)
                self._sync_suggestion(key, experiment, spec, items, status)
                return None
            message = "Experiment is restarted: maxTrialCount was raised"
            set_condition(status, "Succeeded", "False", "ExperimentRestarting", message)
            set_condition(status, "Restarting", "True", "ExperimentRestarting", message)
            status.pop("completionTime", None)
            events.append(("ExperimentRestarting", message, "Normal"))

        best = self._best(spec, items, states)
        done = self._done(spec, study, counts, finished, active, len(items), best)
        if done is not None:
            condition, reason, message = done
            for trial in items:  # what still runs once the goal is reached is killed
                if states[trial.metadata.name] in ("Running", "Pending"):
                    self._kill(trial, "the experiment completed")
                    states[trial.metadata.name] = "Killed"
            _finish(status, events, condition, reason, message)
            self._write_status(status, spec, items, states, study)
            self._sync_suggestion(key, experiment, spec, items, status)
            return None

        if not _true(status, "Running"):
            set_condition(status, "Running", "True", "ExperimentRunning", "Experiment is running")
            if get_condition(status, "Restarting") is not None:
                set_condition(
                    status, "Restarting", "False", "ExperimentRunning", "Experiment is running"
                )
        wanted = spec.parallelTrialCount - active
        if spec.maxTrialCount is not None:
            wanted = min(wanted, spec.maxTrialCount - len(items))
        created: list[Resource] = []
        if wanted > 0:
            created = self._create_trials(key, experiment, spec, study, wanted, events)
            for trial in created:
                states[trial.metadata.name] = "Pending"
            items.extend(created)
        elif active > spec.parallelTrialCount:  # parallelTrialCount was lowered
            pending = [t for t in items if states[t.metadata.name] == "Pending"]
            for trial in pending[: active - spec.parallelTrialCount]:
                self._kill(trial, "parallelTrialCount was lowered")
                states[trial.metadata.name] = "Killed"
        self._write_status(status, spec, items, states, study)
        self._sync_suggestion(key, experiment, spec, items, status)
        if not created and active == 0 and study.suggester.exhausted:
            return Result(requeue_after=0.05)  # let the completion rule see it
        return None

    # -- the Suggestion ---------------------------------------------------------

    def _sync_suggestion(
        self,
        key: Key,
        experiment: Resource,
        spec: ExperimentSpec,
        items: list[Resource],
        status: dict[str, Any],
    ) -> None:
        """Create or update the experiment's Suggestion (same name): the algorithm,
        how many assignments were requested, which trials got which."""
        uid = experiment.metadata.uid
        ended = _true(status, "Succeeded") or _true(status, "Failed")
        signature = (sorted(t.metadata.name for t in items), ended, experiment.metadata.generation)
        cached = self._suggestions.get(key)
        if cached is not None and cached[0] == uid and self._signatures.get(key) == signature:
            return  # nothing the Suggestion shows has changed since it was written
        self._writing.add(key)
        try:
            current = self._current_suggestion(key, experiment)
            document = suggestions.manifest(experiment, spec, len(items))
            new_status = copy.deepcopy(current.status) if current is not None else {}
            suggestions.update_status(new_status, items, spec, status)
            if current is None:  # created with its status: readers never see it empty
                current = self.store.create(
                    Resource.from_manifest({**document, "status": new_status})
                )
            elif (
                current.spec != document["spec"]
                or current.metadata.labels != document["metadata"]["labels"]
            ):
                current = self.store.apply(Resource.from_manifest(document))
            if current.status != new_status:
                current = self.store.update_status(suggestions.KIND, *key, new_status)
            self._suggestions[key] = (uid, current)
            self._signatures[key] = signature
        except (KetchError, ValueError) as exc:  # the experiment goes on; the next pass retries
            self._suggestions.pop(key, None)
            log.warning("could not write the Suggestion of %s/%s: %s", *key, exc)
        finally:
            self._writing.discard(key)

    def _current_suggestion(self, key: Key, experiment: Resource) -> Resource | None:
        cached = self._suggestions.get(key)
        if cached is not None and cached[0] == experiment.metadata.uid:
            return cached[1]
        try:
            found = self.store.get(suggestions.KIND, *key)
        except NotFound:
            return None
        born, owner_born = found.metadata.creationTimestamp, experiment.metadata.creationTimestamp
        if born is not None and owner_born is not None and born < owner_born:
            self.store.delete(suggestions.KIND, *key)  # left from an earlier experiment
            return None
        return found

    def _delete_suggestion(self, key: Key) -> None:
        self._suggestions.pop(key, None)
        self._signatures.pop(key, None)
        self._writing.add(key)
        try:
            self.store.delete(suggestions.KIND, *key)
        except NotFound:
            pass
        finally:
            self._writing.discard(key)

    # -- the study -------------------------------------------------------------

    def _study(
        self, key: Key, experiment: Resource, spec: ExperimentSpec, status: dict[str, Any]
    ) -> Study:
        study = self.studies.get(key)
        if study is not None and study.uid == experiment.metadata.uid:
            study.spec = spec  # parallel/max counts may be edited: the suggester stays
            return study
        book = status.setdefault("ketch", {})
        seed = book.get("seed")
        if not isinstance(seed, int):
            seed = random.SystemRandom().randrange(2**31)
            book["seed"] = seed
        uid = experiment.metadata.uid or "local"
        workdir = collectors.trial_dir(key[0], key[1], None).parent / f".{key[1]}-{uid}-study"
        suggester = Suggester(spec, seed=seed, workdir=workdir)
        records = [_record(spec, t) for t in self.trials.of(key)]
        suggester.restore(records)
        study = Study(
            experiment.metadata.uid,
            spec,
            suggester,
            told={r.name for r in records if r.state != "running"},
        )
        self.studies.put(key, study)
        return study

    def _tell(self, study: Study, spec: ExperimentSpec, items: list[Resource]) -> None:
        for trial in items:
            name = trial.metadata.name
            if name in study.told:
                continue
            record = _record(spec, trial)
            if record.state == "running":
                continue
            study.suggester.tell(name, record.state, record.values)
            study.told.add(name)

    def _create_trials(
        self,
        key: Key,
        experiment: Resource,
        spec: ExperimentSpec,
        study: Study,
        count: int,
        events: Events,
    ) -> list[Resource]:
        namespace, name = key
        names = [_trial_name(name) for _ in range(count)]
        with study.lock:
            suggestions = study.suggester.ask(names)
        template = spec.trialTemplate
        assert template is not None and template.trialSpec is not None  # validated
        trial_parameters = [p.model_dump(exclude_none=True) for p in template.trialParameters]
        collector = (
            spec.metricsCollectorSpec.model_dump(exclude_none=True)
            if spec.metricsCollectorSpec is not None
            else {"collector": {"kind": "StdOut"}}
        )
        objective = spec.objective.model_dump(exclude_none=True)
        created = []
        for trial_name, suggestion in suggestions.items():
            assignments = [
                {"name": p.name, "value": p.format(suggestion.parameters[p.name])}
                for p in spec.parameters
                if p.name in suggestion.parameters
            ]
            by_name = {a["name"]: a["value"] for a in assignments}
            try:
                run_spec = trials.render(
                    template.trialSpec,
                    trial_parameters,
                    by_name,
                    name=trial_name,
                    namespace=namespace,
                    experiment=name,
                )
                checkpoint = suggestion.env.get(CHECKPOINT_ENV)
                mounted = spec.algorithm.settings().get("suggestion_trial_dir")
                if checkpoint and mounted:  # Katib mounts the trial's checkpoint there
                    run_spec = trials.replace_path(
                        run_spec, mounted, checkpoint, keep=(_collector_path(spec),)
                    )
            except InvalidSpec as exc:
                events.append(("TrialTemplateInvalid", str(exc), "Warning"))
                with study.lock:
                    study.suggester.tell(trial_name, "failed", None)
                    study.told.add(trial_name)
                continue
            labels = {trials.EXPERIMENT_LABEL: name, **suggestion.labels}
            trial = Resource.from_manifest(
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Trial",
                    "metadata": {"name": trial_name, "namespace": namespace, "labels": labels},
                    "spec": {
                        "objective": objective,
                        "parameterAssignments": assignments,
                        "runSpec": run_spec,
                        "primaryContainerName": template.primaryContainerName
                        or trials.DEFAULT_PRIMARY_CONTAINER.get(str(run_spec.get("kind")), ""),
                        "successCondition": template.successCondition,
                        "failureCondition": template.failureCondition,
                        "metricsCollector": collector,
                        "retainRun": bool(template.retain),
                        "env": suggestion.env,
                    },
                }
            )
            try:
                created.append(self.store.create(trial))
            except Conflict:
                continue
            events.append(("TrialCreated", f"Trial {trial_name} is created", "Normal"))
        return created

    # -- completion --------------------------------------------------------------

    def _best(
        self, spec: ExperimentSpec, items: list[Resource], states: dict[str, str]
    ) -> Resource | None:
        name, direction = objectives(spec)[0]
        best: tuple[float, Resource] | None = None
        for trial in items:
            if states[trial.metadata.name] not in ("Succeeded", "EarlyStopped"):
                continue
            values = trial_values(spec, trial.status)
            if values is None or math.isnan(values[0]):
                continue
            score = values[0] if direction == "maximize" else -values[0]
            if best is None or score > best[0]:
                best = (score, trial)
        return best[1] if best is not None else None

    def _done(
        self,
        spec: ExperimentSpec,
        study: Study,
        counts: dict[str, int],
        finished: int,
        active: int,
        total: int,
        best: Resource | None,
    ) -> tuple[str, str, str] | None:
        if best is not None and spec.objective.goal is not None:
            values = trial_values(spec, best.status)
            if values is not None and spec.goal_reached(values[0]):
                return (
                    "Succeeded",
                    "ExperimentGoalReached",
                    "Experiment has succeeded because Objective goal has reached",
                )
        failed = counts["Failed"] + counts["MetricsUnavailable"]
        if spec.maxFailedTrialCount is not None and failed > spec.maxFailedTrialCount:
            return (
                "Failed",
                "ExperimentFailed",
                "Experiment has failed because max failed count has reached",
            )
        if spec.maxTrialCount is not None and finished >= spec.maxTrialCount:
            return (
                "Succeeded",
                "ExperimentMaxTrialsReached",
                "Experiment has succeeded because max trial count has reached",
            )
        if active == 0 and study.suggester.exhausted and total > 0:
            return (
                "Succeeded",
                "ExperimentSuggestionEndReached",
                "Experiment has succeeded because suggestion service has reached the end",
            )
        return None

    def _restartable(self, spec: ExperimentSpec, status: dict[str, Any], total: int) -> bool:
        succeeded = get_condition(status, "Succeeded") or {}
        return (
            succeeded.get("status") == "True"
            and succeeded.get("reason") == "ExperimentMaxTrialsReached"
            and spec.resumePolicy != "Never"
            and spec.maxTrialCount is not None
            and spec.maxTrialCount > total
        )

    def _kill(self, trial: Resource, why: str) -> None:
        status = copy.deepcopy(trial.status)
        message = f"Trial is killed: {why}"
        set_condition(status, "Running", "False", "TrialKilled", message)
        set_condition(status, "Killed", "True", "TrialKilled", message)
        status.setdefault("completionTime", format_time(utcnow()))
        meta = trial.metadata
        try:
            self.store.update_status("Trial", meta.namespace, meta.name, status)
        except NotFound:
            pass

    def _cascade(self, key: Key) -> None:
        """The experiment is gone: so are its trials (and their jobs, through them)."""
        self.studies.drop(key)
        self.trials.drop(key)
        self._specs.pop(key, None)
        self._delete_suggestion(key)
        namespace, name = key
        for trial in self.store.list(
            "Trial", namespace, label_selector=f"{trials.EXPERIMENT_LABEL}={name}"
        ):
            try:
                self.store.delete("Trial", namespace, trial.metadata.name)
            except NotFound:
                pass

    # -- status ------------------------------------------------------------------

    def _write_status(
        self,
        status: dict[str, Any],
        spec: ExperimentSpec,
        items: list[Resource],
        states: dict[str, str],
        study: Study,
    ) -> None:
        counts = _counts(states)
        status["trials"] = len(items)
        for state, field_name in _COUNT_FIELDS.items():
            status[field_name] = counts[state]
        for state, field_name in _LIST_FIELDS.items():
            names = sorted(n for n, s in states.items() if s == state)
            if names:
                status[field_name] = names
            else:
                status.pop(field_name, None)
        best = self._best(spec, items, states)
        if best is not None:
            status["currentOptimalTrial"] = {
                "bestTrialName": best.metadata.name,
                "parameterAssignments": best.spec.get("parameterAssignments") or [],
                "observation": best.status.get("observation") or {"metrics": []},
            }
        if len(objectives(spec)) > 1:
            with study.lock:
                status["paretoFront"] = list(study.suggester.pareto_front())


_COUNT_FIELDS = {
    "Succeeded": "trialsSucceeded",
    "Failed": "trialsFailed",
    "Killed": "trialsKilled",
    "EarlyStopped": "trialsEarlyStopped",
    "MetricsUnavailable": "trialMetricsUnavailable",
    "Running": "trialsRunning",
    "Pending": "trialsPending",
}
_LIST_FIELDS = {
    "Succeeded": "succeededTrialList",
    "Failed": "failedTrialList",
    "Killed": "killedTrialList",
    "EarlyStopped": "earlyStoppedTrialList",
    "MetricsUnavailable": "metricsUnavailableTrialList",
    "Running": "runningTrialList",
    "Pending": "pendingTrialList",
}


def _finish(
    status: dict[str, Any], events: Events, condition: str, reason: str, message: str
) -> None:
    """End an experiment or a trial: ``condition`` True, Running False, completionTime."""
    set_condition(status, "Running", "False", reason, message)
    set_condition(status, condition, "True", reason, message)
    status["completionTime"] = format_time(utcnow())
    normal = condition in ("Succeeded", "EarlyStopped")
    events.append((reason, message, "Normal" if normal else "Warning"))


def _counts(states: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys((*TERMINAL, "Running", "Pending"), 0)
    for state in states.values():
        counts[state] += 1
    return counts


def _true(status: dict[str, Any], type_: str) -> bool:
    condition = get_condition(status, type_)
    return condition is not None and condition.get("status") == "True"


def _trial_name(experiment: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{experiment[:54]}-{suffix}"


# -- the Trial controller -----------------------------------------------------------


@dataclass
class TrialRun:
    uid: str | None
    kind: str
    main: collectors.Collector | None = None
    push: collectors.Collector | None = None
    log_path: str | None = None
    observations: list[collectors.Observation] = field(default_factory=list)
    reported: int = 0

    def collectors(self) -> list[collectors.Collector]:
        return [c for c in (self.main, self.push) if c is not None]


class TrialController(StatusController):
    kind = "Trial"
    workers = 2
    watches = tuple(trials.JOB_KINDS)

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
        if state in TERMINAL:
            self._finish_run(key, trial, state)
            return None
        run = self._run(key, trial, kind)
        try:
            job = self.store.get(kind, namespace, name)
        except NotFound:
            try:
                job = self._create_job(key, trial, run_spec)
            except KetchError as exc:
                _finish(
                    status,
                    events,
                    "Failed",
                    "TrialFailed",
                    f"the trial's job could not be created: {exc}",
                )
                return None
            events.append(("JobCreated", f"{kind} {name} is created", "Normal"))
        if not _true(status, "Running"):
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
            _finish(
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
                _finish(
                    status,
                    events,
                    "MetricsUnavailable",
                    "MetricsUnavailable",
                    "Metrics are not available: the objective metric "
                    f"{_objective_name(spec)!r} was not found in the trial's output",
                )
            else:
                _finish(status, events, "Succeeded", "TrialSucceeded", "Trial has succeeded")
            return None
        if self._early_stop(key, trial, run):
            _finish(
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
        folder = collectors.trial_dir(namespace, name, trial.metadata.uid)
        folder.mkdir(parents=True, exist_ok=True)
        collector_spec = trial.spec.get("metricsCollector") or {}
        source_path = (((collector_spec.get("source") or {}).get("fileSystemPath")) or {}).get(
            "path"
        )
        if source_path:
            local = collectors.local_path(str(source_path), folder)
            local.parent.mkdir(parents=True, exist_ok=True)
            manifest = trials.replace_text(manifest, str(source_path), str(local))
        env = {
            "KATIB_TRIAL_NAME": name,
            "KETCH_TRIAL_METRICS_FILE": str(collectors.push_file(folder)),
            **{str(k): str(v) for k, v in (trial.spec.get("env") or {}).items()},
        }
        trials.inject_env(manifest, env, str(trial.spec.get("primaryContainerName") or ""))
        return self.store.create(Resource.from_manifest(manifest))

    def _run(self, key: Key, trial: Resource, kind: str) -> TrialRun:
        with self._lock:
            run = self.runs.get(key)
            if run is None or run.uid != trial.metadata.uid:
                run = TrialRun(uid=trial.metadata.uid, kind=kind)
                self.runs[key] = run
            return run

    def _collect(self, key: Key, trial: Resource, run: TrialRun, job: Resource) -> None:
        folder = collectors.trial_dir(*key, trial.metadata.uid)
        names = _metric_names(trial.spec)
        spec = trial.spec.get("metricsCollector") or None
        kind_ = ((spec or {}).get("collector") or {}).get("kind", "StdOut")
        log_path = trials.primary_log(run.kind, job.status.get("logPaths") or {})
        if run.push is None and kind_ != "Push":  # report_metrics works with any collector
            push = {"collector": {"kind": "Push"}}
            run.push = collectors.make_collector(push, names, log_path=None, trial_dir=folder)
        if run.main is not None and kind_ == "StdOut" and log_path != run.log_path:
            run.observations.extend(run.main.close())  # a new pod replaced the old one
            run.main = None
        if run.main is None and (kind_ != "StdOut" or log_path is not None):
            run.log_path = log_path
            path = Path(log_path) if log_path else None
            run.main = collectors.make_collector(spec, names, log_path=path, trial_dir=folder)
        for collector in run.collectors():
            run.observations.extend(collector.poll())

    def _final_collect(self, run: TrialRun) -> None:
        for collector in run.collectors():
            run.observations.extend(collector.close())

    def _observe(self, status: dict[str, Any], trial: Resource, run: TrialRun) -> None:
        if not run.observations:
            return
        strategies = _strategies(trial.spec)
        metrics = collectors.summarize(run.observations, strategies)
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


def _collector_path(spec: ExperimentSpec) -> str:
    """The file or folder the metrics collector reads (rewritten per trial later)."""
    source = spec.metricsCollectorSpec.source if spec.metricsCollectorSpec else None
    path = source.fileSystemPath.path if source and source.fileSystemPath else None
    return str(path or "")


def _has_metric(status: dict[str, Any], name: str) -> bool:
    metrics = (status.get("observation") or {}).get("metrics") or []
    return any(m.get("name") == name for m in metrics)


def _job_message(job: Resource, type_: str) -> str | None:
    condition = get_condition(job.status, type_)
    if condition is None:
        return None
    reason, message = condition.get("reason", ""), condition.get("message", "")
    return f"the trial's {job.kind} failed: {reason}: {message}".strip(": ")
