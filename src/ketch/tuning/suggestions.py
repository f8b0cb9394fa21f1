"""Katib's ``Suggestion`` (``kubeflow.org/v1beta1``): what an Experiment's algorithm
has handed out, kept by the Experiment controller.

Katib runs each experiment's algorithm as a service and records its work in a
``Suggestion`` with the experiment's name: ``spec.requests`` (how many
assignments were asked for so far), ``status.suggestions`` (each trial's name,
parameter assignments and labels), ``status.suggestionCount`` and the conditions
Katib's suggestion controller writes (``Created``, ``DeploymentReady``,
``Running``, ``Succeeded`` once a completed experiment's ``resumePolicy`` is
``Never`` or ``FromVolume``). Ketch's algorithms run inside the control plane, so
the Experiment controller writes the Suggestion itself through a
:class:`SuggestionWriter` (:func:`manifest`, :func:`update_status`); users read it (``KatibClient.get_suggestion``) but do
not create it: :func:`validate` refuses one that no Experiment owns.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from ketch.core.conditions import get_condition
from ketch.core.controller import Key
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.resource import Resource, set_condition
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, utcnow
from ketch.tuning.spec import ExperimentSpec
from ketch.tuning.states import experiment_ended
from ketch.tuning.trials import EXPERIMENT_LABEL

log = logging.getLogger(__name__)

KIND = "Suggestion"
GROUP_VERSION = "kubeflow.org/v1beta1"

# Katib's reasons and messages (pkg/controller.v1beta1/suggestion and the experiment
# controller's suggestion clean-up)
CREATED = ("SuggestionCreated", "Suggestion is created")
DEPLOYMENT_READY = ("DeploymentReady", "Deployment is ready")
RUNNING = ("SuggestionRunning", "Suggestion is running")
SUCCEEDED_REASON = "Experiment is succeeded"
NOT_RUNNING = ("Suggestion is succeeded", "Suggestion is not running")
SUCCEEDED_MESSAGES = {
    "Never": "Suggestion is succeeded, can't be restarted",
    "FromVolume": "Suggestion is succeeded, suggestion volume is not deleted, can be restarted",
}


def owner_reference(experiment: Resource) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Experiment",
        "name": experiment.metadata.name,
        "uid": experiment.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def desired_spec(spec: ExperimentSpec, requests: int) -> dict[str, Any]:
    """The Suggestion's spec: the experiment's algorithm and how many assignments
    it has been asked for."""
    wanted: dict[str, Any] = {
        "algorithm": spec.algorithm.model_dump(exclude_none=True),
        "requests": requests,
        "resumePolicy": spec.resumePolicy,
    }
    if spec.earlyStopping is not None:
        wanted["earlyStopping"] = spec.earlyStopping.model_dump(exclude_none=True)
    return wanted


def manifest(experiment: Resource, spec: ExperimentSpec, requests: int) -> dict[str, Any]:
    meta = experiment.metadata
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "labels": {EXPERIMENT_LABEL: meta.name},
            "ownerReferences": [owner_reference(experiment)],
        },
        "spec": desired_spec(spec, requests),
    }


def assignment(trial: Resource) -> dict[str, Any]:
    """One entry of ``status.suggestions``: the trial's name, assignments and the
    algorithm's labels (hyperband's bracket, PBT's generation …)."""
    entry: dict[str, Any] = {
        "name": trial.metadata.name,
        "parameterAssignments": [
            {"name": str(a.get("name")), "value": str(a.get("value"))}
            for a in trial.spec.get("parameterAssignments") or []
        ],
    }
    labels = {
        k: v for k, v in trial.metadata.labels.items() if not k.startswith("katib.kubeflow.org/")
    }
    if labels:
        entry["labels"] = labels
    return entry


def update_status(
    status: dict[str, Any],
    trials: list[Resource],
    spec: ExperimentSpec,
    experiment_status: dict[str, Any],
) -> None:
    """Bring a Suggestion's ``status`` in line with the experiment's trials and state."""
    if get_condition(status, "Created") is None:
        status.setdefault("startTime", format_time(utcnow()))
        set_condition(status, "Created", "True", *CREATED)
    ordered = sorted(
        trials,
        key=lambda t: (
            t.metadata.creationTimestamp.isoformat() if t.metadata.creationTimestamp else "",
            t.metadata.name,
        ),
    )
    suggestions = [assignment(t) for t in ordered]
    if suggestions != status.get("suggestions", []):
        status["suggestions"] = suggestions
        status["lastReconcileTime"] = format_time(utcnow())
    status["suggestionCount"] = len(suggestions)
    completed = experiment_ended(experiment_status)
    message = SUCCEEDED_MESSAGES.get(spec.resumePolicy)
    if completed and message is not None:
        set_condition(status, "DeploymentReady", "False", NOT_RUNNING[0], "Deployment is not ready")
        set_condition(status, "Running", "False", *NOT_RUNNING)
        set_condition(status, "Succeeded", "True", SUCCEEDED_REASON, message)
        status.setdefault("completionTime", format_time(utcnow()))
        return
    # running (again, once a FromVolume experiment is restarted)
    status["conditions"] = [c for c in status.get("conditions", []) if c.get("type") != "Succeeded"]
    status.pop("completionTime", None)
    set_condition(status, "DeploymentReady", "True", *DEPLOYMENT_READY)
    set_condition(status, "Running", "True", *RUNNING)


def owned(resource: Resource) -> bool:
    """Whether ``resource`` names the Experiment of the same name as its owner."""
    references = resource.metadata.ownerReferences or []
    return any(
        isinstance(ref, dict)
        and ref.get("kind") == "Experiment"
        and str(ref.get("apiVersion", "")).startswith("kubeflow.org/")
        and ref.get("name") == resource.metadata.name
        for ref in references
    )


def validate(resource: Resource) -> None:
    """Refuse a Suggestion applied through the API that no Experiment owns: Ketch's
    Experiment controller creates and keeps each experiment's Suggestion."""
    if not owned(resource):
        raise InvalidSpec(
            "Suggestions are created by Ketch: each Experiment gets one with its name, "
            "kept current by the Experiment controller; create an Experiment instead "
            f"(a Suggestion needs an ownerReference to Experiment {resource.metadata.name!r})",
            field="metadata.ownerReferences",
        )


class SuggestionWriter:
    """Writes each experiment's Suggestion for the Experiment controller, and
    remembers what it last wrote, so a pass in which nothing the Suggestion shows
    has changed writes nothing. A Suggestion changed or deleted by anyone else is
    forgotten and written again."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        # each experiment's Suggestion as last written: (experiment uid, suggestion)
        self._written: dict[Key, tuple[str | None, Resource]] = {}
        self._writing: set[Key] = set()  # Suggestions being written by this writer
        self._signatures: dict[Key, tuple[list[str], bool, int | None]] = {}

    def changed(self, key: Key) -> bool:
        """The Suggestion at ``key`` was written: whether someone else wrote it (then
        it is forgotten, and its experiment must write it again)."""
        if key in self._writing:
            return False
        self._forget(key)
        return True

    def deleted(self, key: Key) -> bool:
        """The Suggestion at ``key`` was deleted: whether this writer deleted it while
        writing it (then its experiment must write it again)."""
        self._forget(key)
        return key in self._writing

    def _forget(self, key: Key) -> None:
        self._written.pop(key, None)
        self._signatures.pop(key, None)

    def sync(
        self,
        key: Key,
        experiment: Resource,
        spec: ExperimentSpec,
        trials: list[Resource],
        status: dict[str, Any],
    ) -> None:
        """Create or update the experiment's Suggestion (same name): the algorithm,
        how many assignments were requested, which trials got which."""
        uid = experiment.metadata.uid
        ended = experiment_ended(status)
        signature = (sorted(t.metadata.name for t in trials), ended, experiment.metadata.generation)
        cached = self._written.get(key)
        if cached is not None and cached[0] == uid and self._signatures.get(key) == signature:
            return  # nothing the Suggestion shows has changed since it was written
        self._writing.add(key)
        try:
            current = self._current(key, experiment)
            document = manifest(experiment, spec, len(trials))
            new_status = copy.deepcopy(current.status) if current is not None else {}
            update_status(new_status, trials, spec, status)
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
                current = self.store.update_status(KIND, *key, new_status)
            self._written[key] = (uid, current)
            self._signatures[key] = signature
        except (KetchError, ValueError) as exc:  # the experiment goes on; the next pass retries
            self._written.pop(key, None)
            log.warning("could not write the Suggestion of %s/%s: %s", *key, exc)
        finally:
            self._writing.discard(key)

    def _current(self, key: Key, experiment: Resource) -> Resource | None:
        cached = self._written.get(key)
        if cached is not None and cached[0] == experiment.metadata.uid:
            return cached[1]
        try:
            found = self.store.get(KIND, *key)
        except NotFound:
            return None
        born, owner_born = found.metadata.creationTimestamp, experiment.metadata.creationTimestamp
        if born is not None and owner_born is not None and born < owner_born:
            self.store.delete(KIND, *key)  # left from an earlier experiment
            return None
        return found

    def delete(self, key: Key) -> None:
        """The experiment is gone: so is its Suggestion."""
        self._forget(key)
        self._writing.add(key)
        try:
            self.store.delete(KIND, *key)
        except NotFound:
            pass
        finally:
            self._writing.discard(key)
