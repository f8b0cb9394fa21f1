"""What a list or watch across namespaces shows its caller.

Once authentication is on, a caller may list or watch a kind in every namespace, and
sees only the objects of the namespaces where they may read
(:func:`ketch.core.access.visible_namespaces`; ``None``: all of them, a cluster
admin's or the single local user's). As Kubeflow has it:

- a namespaced kind's objects are shown when their namespace is visible;
- the cluster-scoped ``Namespace`` and ``Profile`` objects when their name (a
  profile's name is its namespace's) is;
- other cluster-scoped kinds' objects (ClusterTrainingRuntimes, ...) to anyone.

An object never changes its namespace or name, so a watch decides once per object:
an object it may not show is never sent, in any event, and the watch's revisions,
bookmarks and 410s are those of an unfiltered one.

The stores have no "namespace in (...)" query, so a list of several namespaces is
filtered row by row (:func:`narrowed` pushes a single visible namespace into the
query instead, and no namespace at all answers nothing without reading).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request

from ketch.core.access import visible_namespaces
from ketch.core.kinds import Kind

#: Whether an object (a manifest) may be shown to the caller.
Visible = Callable[[Mapping[str, Any]], bool]

#: cluster-scoped kinds whose objects are shown by their name, a namespace's:
#: (group, plural)
BY_NAME = frozenset({("", "namespaces"), ("kubeflow.org", "profiles")})


def namespaces_of(request: Request) -> frozenset[str] | None:
    """The namespaces a list across namespaces shows the caller (``None``: all)."""
    return visible_namespaces(request)


def by_namespace(namespaces: frozenset[str]) -> Visible:
    def visible(obj: Mapping[str, Any]) -> bool:
        return (obj.get("metadata") or {}).get("namespace") in namespaces

    return visible


def by_name(namespaces: frozenset[str]) -> Visible:
    def visible(obj: Mapping[str, Any]) -> bool:
        return (obj.get("metadata") or {}).get("name") in namespaces

    return visible


def object_filter(kind: Kind, namespaces: frozenset[str] | None) -> Visible | None:
    """Which of ``kind``'s objects a caller who sees ``namespaces`` is shown (``None``:
    all of them)."""
    if namespaces is None:
        return None
    if kind.namespaced:
        return by_namespace(namespaces)
    if (kind.group, kind.plural) in BY_NAME:
        return by_name(namespaces)
    return None


def narrowed(
    kind: Kind, namespace: str | None, namespaces: frozenset[str] | None
) -> tuple[str | None, Visible | None, bool]:
    """How to read ``kind`` across namespaces for a caller who sees ``namespaces``,
    ``namespace`` being where its source would be read (``None``: all; the one a
    cluster-scoped kind's objects are kept in): the namespace to read, the filter its
    rows still need, and whether nothing at all can be shown (no visible namespace)."""
    visible = object_filter(kind, namespaces)
    if visible is None or namespaces is None:
        return namespace, None, False
    if not namespaces:
        return namespace, visible, True
    if kind.namespaced and namespace is None and len(namespaces) == 1:
        return next(iter(namespaces)), None, False
    return namespace, visible, False


def for_request(
    request: Request, kind: Kind, namespace: str | None
) -> tuple[str | None, Visible | None, bool]:
    """:func:`narrowed` for the caller of ``request``."""
    return narrowed(kind, namespace, namespaces_of(request))
