"""The Experiment controller: an Experiment's trials, as Katib reconciles them.

An :class:`ExperimentController` keeps ``parallelTrialCount`` trials running until
a completion rule holds (Katib's, in its order: the goal is reached, more trials
failed than ``maxFailedTrialCount``, ``maxTrialCount`` trials finished, the
algorithm has no suggestions left). Each new trial's parameters come from the
experiment's study (:mod:`ketch.tuning.studies`). The study is not kept anywhere
else than in the trials: they are resources, and on a restart the suggester is
rebuilt from them (finished and running), with the seed stored in the
experiment's status, so an experiment picks up where it stopped. What the
algorithm handed out is published as Katib does, in a ``Suggestion`` with the
experiment's name (:mod:`ketch.tuning.suggestions`). The experiment's status
counts and lists its trials by state and names the best one.
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import string
from collections.abc import Iterable
from typing import Any

from ketch.core.conditions import Finished, get_condition, is_true
from ketch.core.controller import Events, Key, Result, StatusController
from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.resource import Resource, set_condition
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, utcnow
from ketch.tuning import suggestions, trials
from ketch.tuning.algorithms import Suggester
from ketch.tuning.jobkinds import primary_container
from ketch.tuning.pbt import CHECKPOINT_ENV
from ketch.tuning.spec import ExperimentSpec
from ketch.tuning.states import (
    ACTIVE,
    RUNNING,
    TRIAL_ENDS,
    experiment_ended,
    finish,
    trial_state,
)
from ketch.tuning.studies import Studies, Study, objectives, trial_record, trial_values
from ketch.tuning.suggestions import SuggestionWriter
from ketch.tuning.trialcache import TrialCache
from ketch.tuning.trialfiles import trial_dir
from ketch.tuning.validation import checked_experiment

GROUP_VERSION = "kubeflow.org/v1beta1"
#: how soon an experiment's counts follow a trial that started running
COUNTS_DELAY = 0.2


class ExperimentController(StatusController):
    """Reconciles Experiments; ``studies`` is shared with the Trial controller."""

    kind = "Experiment"
    watches = ("Trial", suggestions.KIND)

    def __init__(self, store: ResourceStore, studies: Studies) -> None:
        super().__init__(store)
        self.studies = studies
        self.trials = TrialCache(store)
        self._specs: dict[Key, tuple[tuple[str | None, int | None], ExperimentSpec]] = {}
        self.suggestions = SuggestionWriter(store)

    def related(self, resource: Resource) -> Iterable[Key]:
        if resource.kind == suggestions.KIND:
            key = (resource.metadata.namespace, resource.metadata.name)
            if self.suggestions.changed(key):  # by someone else: write it again
                yield key
            return
        experiment = resource.metadata.labels.get(trials.EXPERIMENT_LABEL)
        if not experiment:
            return
        key = (resource.metadata.namespace, experiment)
        if trial_state(resource.status) in ACTIVE and resource.status:
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
            if self.suggestions.deleted(key):
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
        spec = checked_experiment(experiment.spec, name=key[1], namespace=key[0])
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
            if not is_true(status, Finished.FAILED):
                finish(status, events, "Failed", "ExperimentFailed", f"invalid spec: {exc}")
            return None
        study = self._study(key, experiment, spec, status)
        items = self.trials.of(key)
        with study.lock:
            self._tell(study, spec, items)
        states = {t.metadata.name: trial_state(t.status) for t in items}
        counts = _counts(states)
        finished = sum(counts[s] for s in TRIAL_ENDS)
        active = counts["Running"] + counts["Pending"]

        if experiment_ended(status):
            if not self._restartable(spec, status, len(items)):
                self._write_status(status, spec, items, states, study)
                self.suggestions.sync(key, experiment, spec, items, status)
                return None
            message = "Experiment is restarted: maxTrialCount was raised"
            set_condition(status, "Succeeded", "False", "ExperimentRestarting", message, last=True)
            set_condition(status, "Restarting", "True", "ExperimentRestarting", message, last=True)
            status.pop("completionTime", None)
            events.append(("ExperimentRestarting", message, "Normal"))

        best = self._best(spec, items, states)
        done = self._done(spec, study, counts, finished, active, len(items), best)
        if done is not None:
            condition, reason, message = done
            for trial in items:  # what still runs once the goal is reached is killed
                if states[trial.metadata.name] in ACTIVE:
                    self._kill(trial, "the experiment completed")
                    states[trial.metadata.name] = "Killed"
            finish(status, events, condition, reason, message)
            self._write_status(status, spec, items, states, study)
            self.suggestions.sync(key, experiment, spec, items, status)
            return None

        if not is_true(status, RUNNING):
            running = ("ExperimentRunning", "Experiment is running")
            if get_condition(status, "Restarting") is not None:
                set_condition(status, "Restarting", "False", *running, last=True)
            set_condition(status, "Running", "True", *running, last=True)
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
        self.suggestions.sync(key, experiment, spec, items, status)
        if not created and active == 0 and study.suggester.exhausted:
            return Result(requeue_after=0.05)  # let the completion rule see it
        return None

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
        workdir = trial_dir(key[0], key[1], None).parent / f".{key[1]}-{uid}-study"
        suggester = Suggester(spec, seed=seed, workdir=workdir)
        records = [trial_record(spec, t) for t in self.trials.of(key)]
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
            record = trial_record(spec, trial)
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
            asked = study.suggester.ask(names)
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
        for trial_name, suggestion in asked.items():
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
                        or primary_container(str(run_spec.get("kind"))),
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
        succeeded = get_condition(status, Finished.SUCCEEDED) or {}
        return (
            is_true(status, Finished.SUCCEEDED)
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
        self.suggestions.delete(key)
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


def _counts(states: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys((*TRIAL_ENDS, *ACTIVE), 0)
    for state in states.values():
        counts[state] += 1
    return counts


def _trial_name(experiment: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{experiment[:54]}-{suffix}"


def _collector_path(spec: ExperimentSpec) -> str:
    """The file or folder the metrics collector reads (rewritten per trial later)."""
    source = spec.metricsCollectorSpec.source if spec.metricsCollectorSpec else None
    path = source.fileSystemPath.path if source and source.fileSystemPath else None
    return str(path or "")
