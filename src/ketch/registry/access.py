"""Who may use the Model Registry API.

Registered models, versions, artifacts, serving environments, inference services and
experiments belong to a namespace (a profile). A request becomes
:class:`~ketch.core.access.Attributes` in the group ``modelregistry.kubeflow.org``
with the entity's collection as resource (``registeredmodels``, ``modelversions``,
``artifacts``, ``servingenvironments``, ``inferenceservices``, ``servemodels``,
``experiments``, ``experimentruns``), so Kubeflow's roles apply: view reads, edit
writes.

- A route on one entity (its id in the path) is in the namespace the entity's row
  holds: :func:`by_id` looks it up before the handler runs (an id that does not exist
  is a 404).
- A route on a collection (list, create, find) works in the namespace its
  ``namespace`` query parameter names, else in the caller's own: their profile
  (:meth:`~ketch.core.access.Authorizer.home`), ``default`` with authentication off.
  Its handler checks it with :func:`namespace_for` before it reads or writes.
"""

from __future__ import annotations

import re

from fastapi import Request
from sqlalchemy import select

from ketch.core.access import (
    LOCAL,
    Attributes,
    Call,
    Rule,
    Verb,
    access_of,
    check_of,
    identity_of,
)
from ketch.core.errors import Forbidden, InvalidSpec, NotFound
from ketch.core.store.db import Database
from ketch.registry.tables import MIGRATIONS, EntityRow

GROUP = "modelregistry.kubeflow.org"
DEFAULT_NAMESPACE = "default"
#: each kind's resource name for the authorizer
RESOURCES = {
    "registered_model": "registeredmodels",
    "model_version": "modelversions",
    "artifact": "artifacts",
    "serving_environment": "servingenvironments",
    "inference_service": "inferenceservices",
    "serve_model": "servemodels",
    "experiment": "experiments",
    "experiment_run": "experimentruns",
}
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def attributes(verb: str, kind: str, namespace: str, name: str | None = None) -> Attributes:
    return Attributes(verb, GROUP, RESOURCES[kind], namespace, name)


def namespace_of(database: Database, key: str, kind: str) -> str:
    """The namespace of the ``kind`` entity whose id is ``key`` (NotFound: none)."""
    from ketch.registry.entities import BY_KIND, entity_id

    number = entity_id(key, "id")
    database.migrate([MIGRATIONS])
    with database.session(readonly=True) as s:
        found = s.execute(
            select(EntityRow.namespace).where(EntityRow.id == number, EntityRow.kind == kind)
        ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"{BY_KIND[kind].what} with id {number} not found")
    return str(found)


def by_id(verb: str, kind: str, *, of: str | None = None) -> Rule:
    """The rule of a route on the ``of`` entity (default: ``kind``) whose id is the
    path parameter ``id``: ``verb`` on ``kind`` in that entity's namespace."""

    def attributes_of(call: Call) -> Attributes:
        key = call.path_params.get("id") or ""
        namespace = namespace_of(call.state.database, key, of or kind)
        name = None if verb in (Verb.LIST, Verb.CREATE) else key
        return attributes(verb, kind, namespace, name)

    return attributes_of


def checked_in_handler(_call: Call) -> list[Attributes]:
    """The rule of a route whose namespace depends on the caller: its handler checks
    it with :func:`namespace_for`."""
    return []


def check(request: Request, wanted: Attributes) -> None:
    """Refuse (403) unless the caller may do ``wanted`` (anything with authentication
    off)."""
    authorize = check_of(request)
    if authorize is None:
        if identity_of(request).via == LOCAL.via:
            return
        raise Forbidden(f"{wanted.describe()} could not be authorized, so it is refused")
    authorize(wanted)


def namespace_for(request: Request, verb: str, kind: str) -> str:
    """The namespace a collection route works in (see the module), checked for
    ``verb`` on ``kind``."""
    given = (request.query_params.get("namespace") or "").strip()
    if given:
        if not _NAMESPACE.match(given):
            raise InvalidSpec(f"{given!r} is not a namespace name", field="namespace")
        namespace = given
    else:
        identity = identity_of(request)
        access = access_of(request)
        home = None
        if access is not None and identity.via != LOCAL.via:
            home = access.authorizer.home(identity)
            if home is None and not identity.admin:
                raise InvalidSpec(
                    f"{identity.name} owns no profile, so the registry does not know "
                    "which namespace to use",
                    field="namespace",
                    hint="name one with ?namespace=<profile>, or create your profile first",
                )
        namespace = home or DEFAULT_NAMESPACE
    check(request, attributes(verb, kind, namespace))
    return namespace
