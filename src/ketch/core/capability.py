"""The capability seam: what a capability (training, tuning, serving, ...) brings to
Ketch, as one object. The server and the embedded control plane are generic: they
serve the union of the kinds, run the controllers, check manifests with the
validators and include the routes of the capabilities they are given (the tuple in
:mod:`ketch.capabilities`, the composition root).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ketch.core.backend import Backend
from ketch.core.controller import Controller
from ketch.core.kinds import Kind, KindRegistry, registry_of
from ketch.core.resource import Resource
from ketch.core.services import Service, ServiceContext, ServiceFactory, SourceFactory
from ketch.core.sources import Source
from ketch.core.store.resources import ResourceStore

if TYPE_CHECKING:
    from fastapi import APIRouter

Validator = Callable[[Resource], None]
# Called with the store and the compute backend the composition root chose: one
# controller, or several that share state (made together, so nothing is global).
ControllerFactory = Callable[[ResourceStore, Backend], Controller | Sequence[Controller]]
# Called with the app's context and the name of a namespace being deleted: removes what
# the capability keeps for that namespace outside the ``resources`` table (stopping
# what runs for it first). True once nothing is left; False to be called again later
# (something is still stopping). Called again after a restart that interrupted it, so
# it must be idempotent.
NamespaceFinalizer = Callable[[ServiceContext, str], bool]


class Admission:
    """Every validator of the assembled capabilities, by kind.

    A capability's validators are made with the assembled ``Admission`` (see
    :attr:`Capability.validators`), so one kind's validator may check an object of
    another kind: a Katib trial template is checked as the job it will create.
    """

    def __init__(self, capabilities: Sequence[Capability]) -> None:
        self._validators: dict[str, Validator] = {}
        for capability in capabilities:
            for kind, check in capability.validators(self).items():
                if kind in self._validators:
                    raise ValueError(f"two capabilities validate kind {kind}")
                self._validators[kind] = check

    def validator(self, kind: str) -> Validator | None:
        """The validator of ``kind``, or ``None`` when it has none."""
        return self._validators.get(kind)

    def validate(self, resource: Resource) -> Resource:
        """``resource``, checked by its kind's validator (``InvalidSpec`` refuses it)."""
        check = self._validators.get(resource.kind)
        if check is not None:
            check(resource)
        return resource

    def kinds(self) -> frozenset[str]:
        return frozenset(self._validators)


def _no_validators(_admission: Admission) -> Mapping[str, Validator]:
    return {}


@dataclass(frozen=True)
class Capability:
    """What one capability brings.

    - ``kinds``: the kinds it serves (each with a validator).
    - ``controllers``: factories called with the store and the compute backend (the
      only way a controller reaches one), one controller each.
    - ``validators``: called with the assembled :class:`Admission`; the validator of
      each kind it serves, which refuses a bad manifest before it is stored.
    - ``routers``: HTTP routes of its own (imported lazily, called when the app is
      built), included before the generic resource routes.
    - ``migrations``: its own Alembic version folder (its tables' history), or
      ``None`` when it has no tables of its own.
    - ``services``: factories called with the app's
      :class:`~ketch.core.services.ServiceContext`; what they make starts and stops
      with the server (see :mod:`ketch.core.services`).
    - ``sources``: for a kind not kept in the ``resources`` table, the factory of the
      :class:`~ketch.core.sources.Source` that serves it.
    - ``uploads``: the paths of its routes that take a ``multipart/form-data`` POST (a
      file upload); the server's request guard refuses that content type anywhere else.
    - ``forms``: the paths of its routes that take a browser's HTML form post
      (``application/x-www-form-urlencoded``: the sign-in page); the guard takes that
      type there only, and only with the browser's ``Origin`` of this server.
    - ``page_writes``: path prefixes of the apps its routes serve through Ketch whose
      own pages write with their own scripts, which cannot send Ketch's CSRF token
      (JupyterLab behind the notebook proxy, ``/notebook/``): a signed-in browser
      session's write there is taken with this server's ``Origin`` instead (the
      request guard refuses any other origin; a write without one is refused), and
      the guard takes a body of any type there with that ``Origin`` (JupyterLab's
      scripts send their JSON as ``text/plain``).
    - ``namespace_finalizers``: what removes the capability's own records of a
      namespace when the namespace is deleted (a deleted Profile's, or one deleted
      directly), as Kubernetes' namespace finalizers do: see
      :data:`NamespaceFinalizer` and :meth:`ResourceStore.finalize_namespace
      <ketch.core.store.resources.ResourceStore.finalize_namespace>`.
    """

    name: str
    kinds: Sequence[Kind] = ()
    controllers: Sequence[ControllerFactory] = ()
    validators: Callable[[Admission], Mapping[str, Validator]] = field(default=_no_validators)
    routers: Sequence[Callable[[], APIRouter]] = ()
    migrations: Path | None = None
    services: Sequence[ServiceFactory] = ()
    sources: Mapping[str, SourceFactory] = field(default_factory=dict)
    uploads: Sequence[str] = ()
    forms: Sequence[str] = ()
    page_writes: Sequence[str] = ()
    namespace_finalizers: Sequence[NamespaceFinalizer] = ()


def kinds_of(capabilities: Sequence[Capability], *extra: Kind) -> KindRegistry:
    """A registry of every kind the capabilities serve, and ``extra``."""
    return registry_of([*(k for c in capabilities for k in c.kinds), *extra])


def uploads_of(capabilities: Sequence[Capability]) -> frozenset[str]:
    """The paths of every route of the capabilities that takes a file upload."""
    return frozenset(path for c in capabilities for path in c.uploads)


def forms_of(capabilities: Sequence[Capability]) -> frozenset[str]:
    """The paths of every route of the capabilities that takes an HTML form post."""
    return frozenset(path for c in capabilities for path in c.forms)


def page_writes_of(capabilities: Sequence[Capability]) -> tuple[str, ...]:
    """The path prefixes whose session writes are checked by their Origin (see
    :attr:`Capability.page_writes`)."""
    return tuple(prefix for c in capabilities for prefix in c.page_writes)


def migrations_of(capabilities: Sequence[Capability]) -> tuple[Path, ...]:
    """The capabilities' own Alembic version folders, for
    :meth:`ketch.core.store.db.Database.migrate` (which always adds core's)."""
    return tuple(c.migrations for c in capabilities if c.migrations is not None)


def controllers_of(
    capabilities: Sequence[Capability], store: ResourceStore, backend: Backend
) -> list[Controller]:
    """The controllers the capabilities' factories make over ``store`` and ``backend``."""
    made: list[Controller] = []
    for capability in capabilities:
        for factory in capability.controllers:
            result = factory(store, backend)
            made.extend([result] if isinstance(result, Controller) else result)
    return made


def services_of(capabilities: Sequence[Capability], context: ServiceContext) -> list[Service]:
    """The services the capabilities' factories make with ``context``, in order."""
    made: list[Service] = []
    for capability in capabilities:
        for factory in capability.services:
            result = factory(context)
            made.extend(result if isinstance(result, Sequence) else [result])
    return made


def finalize_namespaces(capabilities: Sequence[Capability], context: ServiceContext) -> None:
    """Give ``context.store`` the capabilities' namespace finalizers, each called with
    ``context`` (what deletes a namespace runs them through the store)."""
    for capability in capabilities:
        for finalizer in capability.namespace_finalizers:
            context.store.add_namespace_finalizer(functools.partial(finalizer, context))


def sources_of(capabilities: Sequence[Capability], context: ServiceContext) -> dict[str, Source]:
    """The sources of the kinds the capabilities serve from elsewhere, by kind."""
    made: dict[str, Source] = {}
    for capability in capabilities:
        for kind, factory in capability.sources.items():
            if kind in made:
                raise ValueError(f"two capabilities serve kind {kind} from a source")
            made[kind] = factory(context)
    return made
