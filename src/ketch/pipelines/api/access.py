"""Who may use the KFP API: each route's rule, and the checks a rule cannot make.

As Kubeflow Pipelines' API server asks Kubernetes (a SubjectAccessReview in the
group ``pipelines.kubeflow.org``), a request becomes
:class:`~ketch.core.access.Attributes` with one of the resources ``experiments``,
``runs``, ``recurringruns``, ``pipelines`` and ``pipelineversions`` and KFP's verbs:
``get``, ``list``, ``create``, ``delete``, and ``archive``, ``unarchive``,
``terminate``, ``retry``, ``enable``, ``disable``, which Kubeflow's roles treat as
writes (``edit``). Reading a run's artifact is ``get`` on ``runs/artifacts``.

- An object named by id in the path (a run, an experiment, a recurring run, a
  pipeline) is in the namespace its row holds: :func:`by_id` looks it up, so the
  route is checked before its handler runs (an id that does not exist is a 404).
- What a rule cannot see (a namespace in a body, the experiment a run goes into) the
  handler checks with :func:`check` before it writes anything.
- Lists name one namespace (KFP's ``namespace``, or the experiment's) and need
  ``list`` there; a list without one shows the namespaces the caller may read
  (:func:`list_scope`). With authentication off, lists behave as in single-user KFP
  (the ``default`` namespace).
- Pipelines are shared (stored in the ``default`` namespace; KFP's empty namespace)
  or belong to a namespace. Shared ones are cluster-scoped for the authorizer: read
  by anyone signed in, written by cluster admins only.

The request's identity, visible namespaces and checker are what the server's access
dependency leaves on ``request.state`` (see :mod:`ketch.server.access`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import select

from ketch.core.access import (
    ATTRIBUTES_KEY,
    LOCAL,
    Attributes,
    Call,
    Rule,
    Verb,
    access_of,
    check_of,
    identity_of,
    request_state,
    visible_namespaces,
)
from ketch.core.errors import Forbidden, InvalidSpec, NotFound
from ketch.pipelines.catalog.store import DEFAULT_NAMESPACE, Namespaces, namespace_or_default
from ketch.pipelines.tables import (
    MIGRATIONS,
    KfpExperimentRow,
    KfpPipelineRow,
    KfpRecurringRunRow,
    PipelineRunRow,
)

GROUP = "pipelines.kubeflow.org"
EXPERIMENTS = "experiments"
RUNS = "runs"
RECURRING_RUNS = "recurringruns"
PIPELINES = "pipelines"
VERSIONS = "pipelineversions"

# KFP's verbs beside Kubernetes' (all writes for Kubeflow's roles)
ARCHIVE = "archive"
UNARCHIVE = "unarchive"
TERMINATE = "terminate"
RETRY = "retry"
ENABLE = "enable"
DISABLE = "disable"
#: a run's artifacts: KFP's readArtifact, a read
ARTIFACTS = "artifacts"

#: each resource's table and its name in messages
_OWNERS: dict[str, tuple[Any, str]] = {
    EXPERIMENTS: (KfpExperimentRow, "experiment"),
    RUNS: (PipelineRunRow, "run"),
    RECURRING_RUNS: (KfpRecurringRunRow, "recurring run"),
    PIPELINES: (KfpPipelineRow, "pipeline"),
}


def attributes(
    verb: str, resource: str, namespace: str | None, name: str | None = None, sub: str = ""
) -> Attributes:
    return Attributes(verb, GROUP, resource, namespace, name, sub)


def pipeline_scope(namespace: str | None) -> str | None:
    """A pipeline's namespace as the authorizer sees it: ``None`` for a shared one."""
    found = namespace_or_default(namespace)
    return None if found == DEFAULT_NAMESPACE else found


def namespace_of(database: Any, resource: str, key: str) -> str:
    """The namespace of the ``resource`` (a key of ``_OWNERS``) with id ``key``
    (NotFound when there is none)."""
    model, what = _OWNERS[resource]
    database.migrate([MIGRATIONS])
    with database.session(readonly=True) as s:
        found = s.execute(select(model.namespace).where(model.id == key)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"{what} {key!r} not found")
    return str(found)


def _scope(resource: str, namespace: str) -> str | None:
    return pipeline_scope(namespace) if resource == PIPELINES else namespace


def by_id(
    verb: str,
    resource: str,
    param: str,
    *,
    of: str | None = None,
    sub: str = "",
    query: bool = False,
    named: str | None = None,
) -> Rule:
    """The rule of a route on one object: ``verb`` on ``resource`` in the namespace of
    the ``of`` (default: ``resource``) whose id is the path parameter ``param`` (the
    query parameter, with ``query``); the object is named by that id, or by the path
    parameter ``named`` (a list names none)."""
    owner = of or resource

    def attributes_of(call: Call) -> Attributes:
        key = (call.query if query else call.path_params).get(param) or ""
        if not key:
            raise InvalidSpec(f"the {param} query parameter is required", field=param)
        namespace = _scope(owner, namespace_of(call.state.database, owner, key))
        name = None if verb == Verb.LIST else call.path_params.get(named or "") or key
        return attributes(verb, resource, namespace, name, sub)

    return attributes_of


def in_namespace(verb: str, resource: str, param: str = "namespace") -> Rule:
    """The rule of a route whose namespace is the query parameter ``param`` (pipelines:
    none is the shared ones; lists: none is across namespaces)."""

    def attributes_of(call: Call) -> Attributes:
        namespace = (call.query.get(param) or "").strip() or None
        name = call.path_params.get("name")
        if resource == PIPELINES:
            return attributes(verb, resource, pipeline_scope(namespace), name)
        return attributes(verb, resource, namespace, name)

    return attributes_of


def listing(resource: str) -> Rule:
    """The rule of a list of runs or recurring runs: ``list`` in the experiment's
    namespace (``experiment_id``), else in ``namespace``, else across namespaces."""

    def attributes_of(call: Call) -> Attributes:
        experiment = call.query.get("experiment_id")
        namespace: str | None
        if experiment:
            namespace = namespace_of(call.state.database, EXPERIMENTS, experiment)
        else:
            namespace = (call.query.get("namespace") or "").strip() or None
        return attributes(Verb.LIST, resource, namespace)

    return attributes_of


def checked_in_handler(_call: Call) -> list[Attributes]:
    """The rule of a route whose namespace is in its body: its handler checks it with
    :func:`check` before it writes."""
    return []


def multi_user(request: Request) -> bool:
    """Whether the server authenticates its callers (some user exists)."""
    access = access_of(request)
    return access is not None and access.authenticator.enabled()


def check(request: Request, wanted: Attributes) -> None:
    """Refuse (403) unless the caller may do ``wanted`` (nothing with authentication
    off). The first check of a route whose rule named nothing is what the audit log
    records of it."""
    authorize = check_of(request)
    if authorize is None:
        if identity_of(request).via == LOCAL.via:  # authentication is off
            return
        raise Forbidden(f"{wanted.describe()} could not be authorized, so it is refused")
    request_state(request).setdefault(ATTRIBUTES_KEY, wanted)
    authorize(wanted)


def list_scope(request: Request, namespace: str | None) -> str | Namespaces | None:
    """The namespaces a list shows: the one it names (its rule checked it), else with
    authentication on the ones the caller may read (:class:`Namespaces`), else
    ``None`` (the default namespace, as single-user KFP lists)."""
    namespace = (namespace or "").strip() or None
    if namespace is not None or identity_of(request).via == LOCAL.via:
        return namespace
    # none left on the request: nothing is shown (never everything)
    return Namespaces(visible_namespaces(request, missing=frozenset()))
