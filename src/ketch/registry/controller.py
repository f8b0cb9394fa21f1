"""Keeps the registry's inference services in step with Ketch's InferenceServices.

An InferenceService whose predictor's ``storageUri`` is ``model-registry://<model>[/
<version>]`` has an entry in the registry, in its namespace, as Kubeflow's model
registry controller keeps one: under the serving environment named like the
namespace, named like the InferenceService, with the registered model, the version it
serves (the named one, or the latest LIVE one at the time) and its runtime, and
``desiredState`` ``DEPLOYED``; when the InferenceService is deleted, or stops naming a
registered model, the entry turns ``UNDEPLOYED``. The InferenceService itself is the
serving capability's: this controller writes only the registry's tables.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select

from ketch.core.backend import Backend
from ketch.core.controller import Controller, Key, Result
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.modeluris import is_registry_uri, parse
from ketch.core.store.resources import ResourceStore
from ketch.registry.entities import (
    INFERENCE_SERVICE,
    MODEL_VERSION,
    REGISTERED_MODEL,
    SERVING_ENVIRONMENT,
    Fields,
)
from ketch.registry.store import ListQuery, Registry
from ketch.registry.tables import EntityRow

log = logging.getLogger(__name__)

KIND = "InferenceService"
#: the custom property that says which Kubernetes object an entry follows
FOLLOWS = "ketch.dev/inferenceservice"
RESYNC_SECONDS = 30.0


def storage_uri(spec: dict[str, Any]) -> str | None:
    """The predictor's storage URI (``model.storageUri`` or a framework's)."""
    predictor = spec.get("predictor") if isinstance(spec, dict) else None
    if not isinstance(predictor, dict):
        return None
    for value in predictor.values():
        if isinstance(value, dict) and isinstance(value.get("storageUri"), str):
            return str(value["storageUri"])
    return None


def runtime_of(spec: dict[str, Any]) -> str:
    predictor = spec.get("predictor") or {}
    model = predictor.get("model") if isinstance(predictor, dict) else None
    if isinstance(model, dict):
        fmt = (model.get("modelFormat") or {}).get("name")
        return str(model.get("runtime") or fmt or "")
    for key, value in (predictor or {}).items():
        if isinstance(value, dict) and "storageUri" in value:
            return str(key)
    return ""


class RegisteredServingController(Controller):
    """See the module."""

    kind = KIND

    def __init__(self, store: ResourceStore) -> None:
        super().__init__(store)
        self.registry = Registry(store.database)

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        try:
            resource = self.store.get(KIND, namespace, name)
        except NotFound:
            self._undeploy(namespace, name)
            return None
        uri = storage_uri(resource.spec)
        if not uri or not is_registry_uri(uri):
            self._undeploy(namespace, name)
            return None
        try:
            model_name, version_name, _ = parse(uri)
        except InvalidSpec:
            return None  # the serving capability refuses it with the field named
        try:
            model = self.registry.find(namespace, REGISTERED_MODEL, name=model_name)
        except NotFound:
            return Result(requeue_after=RESYNC_SECONDS)  # registered later, perhaps
        version = self._version(namespace, int(model["id"]), version_name)
        environment = self._environment(namespace)
        wanted = {
            "registeredModelId": model["id"],
            "servingEnvironmentId": environment,
            "runtime": runtime_of(resource.spec),
            "desiredState": "DEPLOYED",
            "customProperties": {
                FOLLOWS: {
                    "metadataType": "MetadataStringValue",
                    "string_value": f"{namespace}/{name}",
                }
            },
        }
        if version is not None:
            wanted["modelVersionId"] = version
        self._upsert(namespace, name, int(environment), wanted)
        # the latest LIVE version may change: look again from time to time
        return Result(requeue_after=RESYNC_SECONDS) if version_name is None else None

    def _version(self, namespace: str, model: int, name: str | None) -> str | None:
        try:
            if name is not None:
                found = self.registry.find(namespace, MODEL_VERSION, name=name, parent_id=model)
                return str(found["id"])
        except NotFound:
            return None
        page = self.registry.page(
            namespace,
            MODEL_VERSION,
            ListQuery(1, "ID", "DESC", None, "state = 'LIVE'"),
            parent_id=model,
        )
        items = page["items"]
        return str(items[0]["id"]) if items else None

    def _environment(self, namespace: str) -> str:
        try:
            return str(self.registry.find(namespace, SERVING_ENVIRONMENT, name=namespace)["id"])
        except NotFound:
            made = self.registry.create(
                namespace,
                SERVING_ENVIRONMENT,
                Fields(namespace, None, None, None, "", None, {}, {}),
            )
            return str(made["id"])

    def _entry(self, namespace: str, name: str) -> EntityRow | None:
        with self.registry.database.session(readonly=True) as s:
            found: EntityRow | None = s.execute(
                select(EntityRow).where(
                    EntityRow.namespace == namespace,
                    EntityRow.kind == INFERENCE_SERVICE.kind,
                    EntityRow.name == name,
                )
            ).scalar_one_or_none()
        return found

    def _upsert(self, namespace: str, name: str, environment: int, wanted: dict[str, Any]) -> None:
        from ketch.registry.entities import fields_of

        entry = self._entry(namespace, name)
        if entry is None:
            fields = fields_of(INFERENCE_SERVICE, {"name": name, **wanted}, create=True)
            self.registry.create(namespace, INFERENCE_SERVICE, fields)
            return
        body = json.loads(entry.body)
        same = (
            entry.state == wanted["desiredState"]
            and body.get("modelVersionId") == wanted.get("modelVersionId")
            and body.get("registeredModelId") == wanted["registeredModelId"]
            and body.get("runtime") == wanted["runtime"]
            and entry.parent_id == environment
        )
        if same:
            return
        changes = {k: v for k, v in wanted.items() if k != "servingEnvironmentId"}
        fields = fields_of(INFERENCE_SERVICE, changes, create=False)
        self.registry.update(namespace, INFERENCE_SERVICE, entry.id, fields)

    def _undeploy(self, namespace: str, name: str) -> None:
        from ketch.registry.entities import fields_of

        entry = self._entry(namespace, name)
        if entry is None or entry.state == "UNDEPLOYED":
            return
        fields = fields_of(INFERENCE_SERVICE, {"desiredState": "UNDEPLOYED"}, create=False)
        self.registry.update(namespace, INFERENCE_SERVICE, entry.id, fields)


def make_controller(store: ResourceStore, _backend: Backend) -> RegisteredServingController:
    return RegisteredServingController(store)
