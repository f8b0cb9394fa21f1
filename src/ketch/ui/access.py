"""Who may open the dashboard's pages: each page route's rule.

A page asks what the API call it stands for asks: a list of a kind's objects in the
namespace ``X`` needs ``list`` on that kind in ``X`` (the very attributes the
Kubernetes path of that list is checked with, :func:`ketch.core.access.kubernetes_attributes`),
a run's page needs ``get`` on that run (KFP's rule), editing needs ``update``, and so
on. The page then reads through the API as its caller (:mod:`ketch.ui.api`), which
checks every read again.

The namespace a page shows is its ``ns`` query parameter. A page of namespaced objects
opened without one reads nothing: it sends the browser to the same page in the
namespace the caller last chose (or their own profile's), so its rule asks only that
the caller be signed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import Request

from ketch.core.access import Attributes, Call, Rule, Verb, check_of, kubernetes_attributes
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.kinds import Kind, KindRegistry, collection_path, object_path

#: the query parameter naming the namespace a page shows
NS = "ns"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def namespace_in(call_or_query: Call | dict[str, str]) -> str | None:
    """The namespace a page names (``None``: none), refused when it is no namespace's
    name."""
    query = call_or_query.query if isinstance(call_or_query, Call) else call_or_query
    value = (query.get(NS) or "").strip()
    if not value:
        return None
    if not _NAMESPACE.fullmatch(value):
        raise InvalidSpec(f"{value!r} is not a namespace's name", field=NS)
    return value


def in_namespace(attributes_in: Callable[[str], Attributes | list[Attributes]]) -> Rule:
    """The rule of a page of one namespace: ``attributes_in(namespace)``; nothing but
    signing in when the page names no namespace (it only redirects)."""

    def attributes_of(call: Call) -> Attributes | list[Attributes]:
        namespace = namespace_in(call)
        return [] if namespace is None else attributes_in(namespace)

    return attributes_of


def namespace_read(namespace: str) -> Attributes:
    """Reading the namespace itself (``GET /api/v1/namespaces/<ns>``): what Kubeflow's
    view role gives there, the rule of pages that show a bit of everything in it."""
    return kubernetes_attributes(Call("GET", f"/api/v1/namespaces/{namespace}", {}, {}))


def resource_name(kind: Kind) -> str:
    """How the dashboard's URLs name a kind: ``kubectl``'s ``plural.group``
    (``pytorchjobs.kubeflow.org``; ``configmaps`` for the core group)."""
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def kind_named(kinds: KindRegistry, resource: str) -> Kind:
    """The kind a dashboard URL names (:func:`resource_name`)."""
    plural, _, group = resource.partition(".")
    for kind in kinds:
        if kind.plural == plural and kind.group == group:
            return kind
    raise NotFound(f"the server serves no resource {resource!r}; see /ui/k for the kinds it serves")


def api_path(kind: Kind, namespace: str | None, name: str | None = None) -> str:
    """The API path of ``kind``'s objects in ``namespace`` (of the one called ``name``)."""
    if name is None:
        return collection_path(kind, namespace)
    return object_path(kind, namespace or "", name)


def on_kind(method: str) -> Rule:
    """The rule of a page on a kind's objects (``resource`` in the path, ``name`` when
    it is about one): the attributes of the API call ``method`` on the same objects."""

    def attributes_of(call: Call) -> Attributes | list[Attributes]:
        kind = kind_named(call.state.kinds, call.path_params["resource"])
        namespace = namespace_in(call) if kind.namespaced else None
        if kind.namespaced and namespace is None:
            return []
        path = api_path(kind, namespace, call.path_params.get("name"))
        return kubernetes_attributes(Call(method, path, {}, {}))

    return attributes_of


def may(request: Request, attributes: Attributes | list[Attributes]) -> bool:
    """Whether the caller may do ``attributes`` (what decides which buttons a page
    shows; the API checks the call itself again)."""
    check = check_of(request)
    if check is None:
        return True  # authentication is off: the one local user
    try:
        for each in attributes if isinstance(attributes, list) else [attributes]:
            check(each)
    except KetchError:  # Forbidden, or a rule that cannot be read
        return False
    return True


def may_on(request: Request, kind: Kind, verb: Verb, namespace: str | None, name: str) -> bool:
    """Whether the caller may ``verb`` (``update``, ``delete``) the object ``name``
    of ``kind``, as the API would check it; never a verb the kind does not serve."""
    if verb.value not in kind.verbs:
        return False
    method = {Verb.UPDATE: "PUT", Verb.DELETE: "DELETE", Verb.PATCH: "PATCH"}.get(verb, "GET")
    path = api_path(kind, namespace if kind.namespaced else None, name)
    return may(request, kubernetes_attributes(Call(method, path, {}, {})))
