"""Lists of a kind's objects as the dashboard shows them: the Kubernetes Table the API
answers (``kubectl get``'s columns: the kind's printer columns, formatted by the
server), read through :mod:`ketch.ui.api`, and the namespace's events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ketch.core.errors import KetchError
from ketch.core.kinds import Kind, KindRegistry
from ketch.ui.access import NS, api_path, resource_name
from ketch.ui.api import Api

#: the column names that say an object's state, the first found is the State column
STATE_COLUMNS = ("State", "Status", "Ready", "Phase")
#: Kubeflow's annotation of a stopped notebook (and of other stopped resources)
STOPPED = "kubeflow-resource-stopped"
PAGE_SIZE = 200


@dataclass
class Row:
    name: str
    namespace: str
    href: str
    cells: list[str]
    created: str = ""
    state: str = ""


@dataclass
class Listing:
    """A kind's objects in a namespace: its columns (after the name), its rows, which
    column is the state (``-1``: none) and where the next page starts."""

    kind: Kind
    columns: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    state_column: int = -1
    more: str = ""

    @property
    def resource(self) -> str:
        return resource_name(self.kind)


def detail_href(kind: Kind, name: str, namespace: str) -> str:
    """The dashboard's page of one object."""
    query = f"?{urlencode({NS: namespace})}" if namespace else ""
    return f"/ui/k/{resource_name(kind)}/{name}{query}"


def derived_state(obj: dict[str, Any]) -> str:
    """A state for an object whose kind has no state column: stopped (Kubeflow's
    annotation), else its last true condition, else its phase, else ready replicas."""
    metadata = obj.get("metadata") or {}
    if STOPPED in (metadata.get("annotations") or {}):
        return "Stopped"
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    true = [c for c in conditions if c.get("status") == "True"]
    if true:
        return str(true[-1].get("type") or "")
    if status.get("phase"):
        return str(status["phase"])
    if isinstance(status.get("readyReplicas"), int):
        return "Ready" if status["readyReplicas"] > 0 else "Starting"
    return ""


async def listing(
    api: Api,
    kind: Kind,
    namespace: str,
    *,
    continue_token: str = "",
    limit: int = PAGE_SIZE,
    whole: bool = False,
) -> Listing:
    """``kind``'s objects in ``namespace`` (every namespace's for a cluster-scoped
    kind), a page of ``limit`` from ``continue_token``; ``whole`` asks for each row's
    whole object, so a kind without a state column gets a derived state."""
    path = api_path(kind, namespace if kind.namespaced else None)
    table = await api.table(
        path,
        limit=str(limit),
        **{"continue": continue_token, "includeObject": "Object" if whole else ""},
    )
    definitions = [d for d in table.get("columnDefinitions") or [] if not d.get("priority")]
    shown = [i for i, d in enumerate(definitions) if i > 0]
    names = [str(definitions[i]["name"]) for i in shown]
    state_at = next((names.index(n) for n in STATE_COLUMNS if n in names), -1)
    found = Listing(kind, names, state_column=state_at)
    for row in table.get("rows") or []:
        obj = row.get("object") or {}
        metadata = obj.get("metadata") or {}
        cells = row.get("cells") or []
        values = ["" if cells[i] is None else str(cells[i]) for i in shown if i < len(cells)]
        name = str(metadata.get("name") or (cells[0] if cells else ""))
        where = str(metadata.get("namespace") or "")
        state = values[state_at] if state_at >= 0 else derived_state(obj)
        found.rows.append(
            Row(
                name=name,
                namespace=where,
                href=detail_href(kind, name, where or namespace),
                cells=values,
                created=str(metadata.get("creationTimestamp") or ""),
                state=state,
            )
        )
    found.more = str((table.get("metadata") or {}).get("continue") or "")
    return found


@dataclass
class EventRow:
    last: str
    type: str
    reason: str
    object: str
    message: str
    href: str = ""


def _event_row(event: dict[str, Any], kinds: KindRegistry) -> EventRow:
    involved = event.get("involvedObject") or {}
    what = f"{involved.get('kind', '')}/{involved.get('name', '')}"
    href = ""
    try:
        kind = kinds.for_manifest(str(involved.get("apiVersion") or "v1"), str(involved["kind"]))
        if "get" in kind.verbs:
            href = detail_href(kind, str(involved["name"]), str(involved.get("namespace") or ""))
    except (KeyError, KetchError):  # a kind this server does not serve: shown unlinked
        href = ""
    last = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
    return EventRow(
        str(last),
        str(event.get("type") or ""),
        str(event.get("reason") or ""),
        what,
        str(event.get("message") or ""),
        href,
    )


async def events(
    api: Api,
    kinds: KindRegistry,
    namespace: str | None,
    *,
    about: tuple[str, str] | None = None,
    newest: int = 50,
) -> list[EventRow]:
    """The ``newest`` events in ``namespace`` (every namespace the caller sees:
    ``None``), newest first; ``about`` (a kind and a name) keeps those of one object."""
    path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
    selector = ""
    if about is not None:
        selector = f"involvedObject.kind={about[0]},involvedObject.name={about[1]}"
    found = await api.get(path, fieldSelector=selector)
    rows = [_event_row(e, kinds) for e in found.get("items") or []]
    rows.sort(key=lambda r: r.last, reverse=True)
    return rows[:newest]
