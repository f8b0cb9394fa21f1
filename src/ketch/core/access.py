"""Who is calling, and whether they may: the access interfaces.

``core`` defines them; :mod:`ketch.tenancy` implements them; the server applies them to
every route (see :mod:`ketch.server.access`). The model is Kubernetes' authorizer's:
a request is reduced to :class:`Attributes` (verb, API group, resource, namespace,
name, subresource) and an :class:`Authorizer` answers yes or no for an
:class:`Identity`.

Every route declares how its requests become attributes with :func:`rule` (or is
:data:`PUBLIC` / :data:`AUTHENTICATED`); a route without a rule is refused when
authentication is on, so a new route cannot skip the check by omission.

What the server's access middleware and dependency leave on each request (the ASGI
scope's ``state``, under the ``*_KEY`` names below) and the app's :class:`Access`
(``app.state.access``) are read with :func:`identity_of`, :func:`access_of`,
:func:`visible_namespaces` and :func:`check_of`, wherever a route is served; what a
missing check means is each caller's own policy.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ketch.core.tls import CA_FILE_ENV

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection


class Verb(StrEnum):
    """Kubernetes' request verbs."""

    GET = "get"
    LIST = "list"
    WATCH = "watch"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    DELETECOLLECTION = "deletecollection"


#: the header a browser session's writes carry its CSRF token in
CSRF_HEADER = "x-csrf-token"

#: the verbs that only read
READ_VERBS = frozenset({Verb.GET, Verb.LIST, Verb.WATCH})


@dataclass(frozen=True)
class Identity:
    """A caller. ``name`` is the user's name (an email for people); ``admin`` marks a
    cluster admin; ``via`` says how they signed in (``token``, ``session``, ``proxy``,
    ``local`` for the single user of a server without users, ``anonymous``);
    ``csrf`` is a browser session's CSRF token, which its writes must send."""

    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    via: str = "token"
    csrf: str = field(default="", repr=False, compare=False)

    @property
    def authenticated(self) -> bool:
        return self.via != "anonymous"


ANONYMOUS = Identity("system:anonymous", frozenset({"system:unauthenticated"}), via="anonymous")
#: The one user of a server that has no users: everything is theirs.
LOCAL = Identity("local", frozenset({"system:authenticated"}), admin=True, via="local")


@dataclass(frozen=True)
class Attributes:
    """What a request does, as Kubernetes' authorizer sees it. ``namespace`` is
    ``None`` for a cluster-scoped resource or a list across namespaces."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""

    def describe(self) -> str:
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        if self.group:
            what += f".{self.group}"
        where = f' in the namespace "{self.namespace}"' if self.namespace else ""
        if self.namespace is None and self.verb in (Verb.LIST, Verb.WATCH):
            where = " at the cluster scope"
        named = f' "{self.name}"' if self.name else ""
        return f"{self.verb} {what}{named}{where}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authenticator(Protocol):
    """Finds who is calling from a request's headers and peer address."""

    def enabled(self) -> bool:
        """Whether authentication is on (some user exists)."""
        ...

    def authenticate(
        self, headers: Mapping[str, str], client: str | None, *, secure: bool = False
    ) -> Identity | None:
        """The caller, or ``None`` when the request carries no credentials that hold.
        Raises :class:`~ketch.core.errors.Unauthorized` for credentials that are
        wrong (an unknown, expired or revoked token)."""
        ...


class Authorizer(Protocol):
    def authorize(self, identity: Identity, attributes: Attributes) -> Decision: ...

    def namespaces(self, identity: Identity, verb: str) -> frozenset[str] | None:
        """The namespaces in which ``identity`` may ``verb`` (``None``: all of them);
        what a list or watch across namespaces is filtered to."""
        ...

    def home(self, identity: Identity) -> str | None:
        """The namespace a call that names none works in for ``identity``: the
        profile they own (the first by name), a workload's own namespace; ``None``
        when there is no such one."""
        ...


class WorkloadCredentials(Protocol):
    """Credentials for the processes Ketch starts (a trial, a pipeline task, a
    transformer) to call back into the API as their namespace's service account
    (Kubeflow's ``default-editor``), never as a person."""

    def env(self, namespace: str) -> Mapping[str, str]:
        """What a workload in ``namespace`` gets in its environment (``KETCH_TOKEN``);
        empty while authentication is off."""
        ...


def service_account(namespace: str, name: str = "default-editor") -> str:
    """A service account's user name, as Kubernetes names it
    (``system:serviceaccount:<namespace>:<name>``)."""
    return f"system:serviceaccount:{namespace}:{name}"


class AuditLog(Protocol):
    def record(
        self, identity: Identity, method: str, path: str, attributes: Attributes | None, code: int
    ) -> None: ...


@dataclass(frozen=True)
class Access:
    """The access implementation the server applies (made by the composition root)."""

    authenticator: Authenticator
    authorizer: Authorizer
    audit: AuditLog | None = None
    #: addresses of trusted proxies, for the record (the authenticator applies them)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: tokens for the workloads Ketch starts (``None``: workloads get none)
    workloads: WorkloadCredentials | None = None


_BOUND: weakref.WeakKeyDictionary[Any, Access] = weakref.WeakKeyDictionary()


def bind_access(owner: object, access: Access | None) -> None:
    """Make ``access`` the access implementation of the app whose store is ``owner``
    (its :class:`~ketch.core.store.db.Database`): what a capability's controller
    finds with :func:`bound_access`, since controllers are made with the store only."""
    if access is None:
        _BOUND.pop(owner, None)
    else:
        _BOUND[owner] = access


def bound_access(owner: object) -> Access | None:
    """The access implementation :func:`bind_access` gave ``owner`` (``None``: none, every
    caller is the one local user)."""
    return _BOUND.get(owner)


#: where a workload finds the API server that started it (what Ketch's clients read,
#: :mod:`ketch.core.http`, with the CA of ``KETCH_CA_FILE``: :data:`CA_FILE_ENV`)
URL_ENV = "KETCH_URL"


@dataclass(frozen=True)
class ServerAddress:
    """Where the workloads of a running API server call it back: its base URL
    (``http://127.0.0.1:8808``) and, for an ``https`` one whose certificate Ketch's own
    CA signed, that CA's file."""

    url: str
    ca_file: str | None = None

    def env(self) -> dict[str, str]:
        env = {URL_ENV: self.url}
        if self.ca_file:
            env[CA_FILE_ENV] = self.ca_file
        return env


_ADDRESSES: weakref.WeakKeyDictionary[Any, ServerAddress] = weakref.WeakKeyDictionary()


def bind_address(owner: object, address: ServerAddress | None) -> None:
    """Make ``address`` where the app whose store is ``owner`` (its Database) is served,
    once it listens (``None``: it is not, or not known)."""
    if address is None:
        _ADDRESSES.pop(owner, None)
    else:
        _ADDRESSES[owner] = address


def workload_env(owner: object, namespace: str) -> dict[str, str]:
    """What a workload in ``namespace`` gets in its environment (never shown) to call
    the API server of the store ``owner`` (a Database) back: where that server is
    (``KETCH_URL``, ``KETCH_CA_FILE``; :func:`bind_address`) while one is served, and
    its namespace's credentials (``KETCH_TOKEN``) from the access bound to ``owner``
    while authentication is on. Empty when neither is there."""
    address = _ADDRESSES.get(owner)
    env = address.env() if address is not None else {}
    access = _BOUND.get(owner)
    if access is not None and access.workloads is not None:
        env.update(access.workloads.env(namespace))
    return env


@dataclass(frozen=True)
class Call:
    """What a route's rule reads of a request."""

    method: str
    path: str
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    #: the server's state (its database, stores), for rules that look up an object's
    #: namespace by id
    state: Any = None


#: A route's rule: the attributes of a call, or a list of them (all must be allowed).
Rule = Callable[[Call], "Attributes | list[Attributes]"]


def _public(_call: Call) -> list[Attributes]:
    return []


def _authenticated(_call: Call) -> list[Attributes]:
    return []


#: answered for anyone, signed in or not (health checks, the sign-in page)
PUBLIC: Rule = _public
#: answered for anyone signed in (discovery, OpenAPI, /version, who am I)
AUTHENTICATED: Rule = _authenticated

_RULE_ATTRIBUTE = "__ketch_access_rule__"
F = TypeVar("F", bound=Callable[..., Any])


def rule(how: Rule) -> Callable[[F], F]:
    """Declare how a route's requests become :class:`Attributes` (a decorator for the
    route's endpoint function)."""

    def declare(endpoint: F) -> F:
        setattr(endpoint, _RULE_ATTRIBUTE, how)
        return endpoint

    return declare


def rule_of(endpoint: Callable[..., Any]) -> Rule | None:
    found: Rule | None = getattr(endpoint, _RULE_ATTRIBUTE, None)
    return found


def method_verb(method: str, *, named: bool, watch: bool = False) -> Verb:
    """The verb of an HTTP method on a Kubernetes path (``named``: the path names one
    object)."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watch:
            return Verb.WATCH
        return Verb.GET if named else Verb.LIST
    if method == "POST":
        return Verb.CREATE
    if method == "PUT":
        return Verb.UPDATE
    if method == "PATCH":
        return Verb.PATCH
    if method == "DELETE":
        return Verb.DELETE if named else Verb.DELETECOLLECTION
    return Verb.GET


def is_true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def kubernetes_attributes(call: Call) -> Attributes:
    """The attributes of a request to a Kubernetes path, as Kubernetes' request info
    reads them: ``/api/v1/...`` (the core group) or ``/apis/{group}/{version}/...``,
    an optional ``watch/`` segment (or ``?watch=true``), then
    ``[namespaces/{namespace}/]{resource}[/{name}[/{subresource}]]``. A namespace's own
    object (``/api/v1/namespaces/{name}``) is in that namespace, as Kubernetes has it,
    so a role in a namespace may read it."""
    parts = [p for p in call.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"{call.path} is not a Kubernetes resource path")
    watch = is_true(call.query.get("watch"))
    if rest[:1] == ["watch"]:
        watch, rest = True, rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise ValueError(f"{call.path} names no resource")
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and namespace is None and name is not None:
        namespace = name
    verb = method_verb(call.method, named=name is not None, watch=watch)
    return Attributes(verb, group, resource, namespace, name, subresource)


#: the rule of every route on a Kubernetes path
KUBERNETES: Rule = kubernetes_attributes


# -- what the server leaves on each request --------------------------------------------

#: the caller's :class:`Identity` (absent: :data:`LOCAL`, authentication is off)
IDENTITY_KEY = "ketch_identity"
#: the namespaces a list across namespaces shows the caller (``None``: all of them)
NAMESPACES_KEY = "ketch_namespaces"
#: a ``Callable[[Attributes], None]`` that raises ``Forbidden`` unless the caller may
#: do those attributes (absent while authentication is off)
AUTHORIZE_KEY = "ketch_authorize"
#: the attributes the audit log records of a request (the first one checked)
ATTRIBUTES_KEY = "ketch_attributes"


def request_state(request: HTTPConnection) -> dict[str, Any]:
    """The request's ASGI scope ``state`` (what ``request.state`` reads)."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def identity_of(request: HTTPConnection) -> Identity:
    """Who is calling (:data:`LOCAL` when nothing says otherwise)."""
    found: Identity = request_state(request).get(IDENTITY_KEY, LOCAL)
    return found


def access_of(request: HTTPConnection) -> Access | None:
    """The app's access implementation (``None``: the app has none)."""
    found: Access | None = getattr(request.app.state, "access", None)
    return found


def visible_namespaces(
    request: HTTPConnection, missing: frozenset[str] | None = None
) -> frozenset[str] | None:
    """The namespaces a list across namespaces shows the caller (``None``: all);
    ``missing`` when the server left none on the request."""
    found: frozenset[str] | None = request_state(request).get(NAMESPACES_KEY, missing)
    return found


def check_of(request: HTTPConnection) -> Callable[[Attributes], None] | None:
    """The request's check of more attributes (``None``: none was left on it)."""
    found: Callable[[Attributes], None] | None = request_state(request).get(AUTHORIZE_KEY)
    return found
