"""The pages every kind gets: the kinds served (``/ui/k``), a kind's list
(``/ui/k/<plural.group>``, ``kubectl get``'s columns), an object's page (its YAML, its
events, edit and delete when the caller may) and its YAML editor, whose writes go to
the API as the caller (a refusal shows each field the API named beside its line).

Writes come from htmx with the page's CSRF token and a JSON body (``ketch.js``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import AUTHENTICATED, Verb, rule
from ketch.core.kinds import Kind
from ketch.server.state import api_state
from ketch.ui.access import api_path, kind_named, may_on, on_kind, resource_name
from ketch.ui.formats import to_yaml
from ketch.ui.listing import detail_href, events, listing
from ketch.ui.nav import section_of
from ketch.ui.page import Page, problem_html, render_html, send_to
from ketch.ui.yamledit import FieldError, YamlProblem, errors_of, parse

router = APIRouter(include_in_schema=False)
OBJECT = "/ui/k/{resource}/{name}"


def _kind(request: Request, resource: str) -> Kind:
    return kind_named(api_state(request).kinds, resource)


def _tabs(page: Page, kind: Kind) -> list[dict[str, Any]]:
    """The section's kinds served here, as tabs of the list page."""
    served = {resource_name(k): k for k in api_state(page.request).kinds}
    section = section_of(resource_name(kind))
    return [
        {
            "label": served[name].kind,
            "href": page.link(f"/ui/k/{name}"),
            "current": name == resource_name(kind),
        }
        for name in section.kinds
        if name in served and "list" in served[name].verbs
    ]


@router.get("/ui/k")
@rule(AUTHENTICATED)
async def kinds_page(request: Request) -> Response:
    """Every kind the server serves, by API group (what discovery lists)."""
    async with Page(request, section="More", namespaced=False) as page:
        groups: dict[str, list[dict[str, str]]] = {}
        for kind in api_state(request).kinds:
            if "list" not in kind.verbs:
                continue
            groups.setdefault(kind.group or "core", []).append(
                {"kind": kind.kind, "href": page.link(f"/ui/k/{resource_name(kind)}")}
            )
        return page.render("kinds.html", title="Kinds", groups=sorted(groups.items()))


@router.get("/ui/k/{resource}")
@rule(on_kind("GET"))
async def list_page(request: Request, resource: str) -> Response:
    """A kind's objects in the namespace shown (all that the caller sees of a
    cluster-scoped kind), a page of them at a time."""
    kind = _kind(request, resource)
    section = section_of(resource_name(kind)).label
    async with Page(request, section=section, namespaced=kind.namespaced) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        token = request.query_params.get("continue", "")
        found = await listing(page.api, kind, page.namespace, continue_token=token)
        return page.render(
            "list.html",
            title=f"{kind.kind}s" if not kind.kind.endswith("s") else kind.kind,
            listing=found,
            tabs=_tabs(page, kind),
            next_page=page.link(request.url.path, **{"continue": found.more}) if found.more else "",
        )


def _shown(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as its page shows it: without the bookkeeping of its field managers."""
    shown = dict(obj)
    metadata = dict(shown.get("metadata") or {})
    metadata.pop("managedFields", None)
    shown["metadata"] = metadata
    return shown


@router.get(OBJECT)
@rule(on_kind("GET"))
async def object_page(request: Request, resource: str, name: str) -> Response:
    """One object: its YAML and events, with edit and delete for whoever may."""
    kind = _kind(request, resource)
    section = section_of(resource_name(kind)).label
    async with Page(request, section=section, namespaced=kind.namespaced) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        namespace = page.namespace if kind.namespaced else None
        obj, feed = await asyncio.gather(
            page.api.get(api_path(kind, namespace, name)),
            events(page.api, api_state(request).kinds, namespace, about=(kind.kind, name)),
        )
        return page.render(
            "object.html",
            title=f"{kind.kind} {name}",
            kind=kind,
            name=name,
            obj=_shown(obj),
            status=(obj.get("status") or {}) if isinstance(obj, dict) else {},
            events=feed,
            list_href=page.link(f"/ui/k/{resource_name(kind)}"),
            edit_href=page.link(f"/ui/k/{resource_name(kind)}/{name}/edit")
            if may_on(request, kind, Verb.UPDATE, namespace, name)
            else "",
            delete_url=page.link(f"/ui/k/{resource_name(kind)}/{name}")
            if may_on(request, kind, Verb.DELETE, namespace, name)
            else "",
        )


@router.get(OBJECT + "/edit")
@rule(on_kind("PUT"))
async def edit_page(request: Request, resource: str, name: str) -> Response:
    """The object's YAML in an editor (for whoever may update it)."""
    kind = _kind(request, resource)
    section = section_of(resource_name(kind)).label
    async with Page(request, section=section, namespaced=kind.namespaced) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        namespace = page.namespace if kind.namespaced else None
        obj = _shown(await page.api.get(api_path(kind, namespace, name)))
        obj.pop("status", None)  # not written by a replace: the editor leaves it out
        text = to_yaml(obj)
        return page.render(
            "edit.html",
            title=f"Edit {kind.kind} {name}",
            kind=kind,
            name=name,
            text=text,
            lines=text.split("\n"),
            errors=[],
            save_url=page.link(f"/ui/k/{resource_name(kind)}/{name}"),
            back_href=page.link(f"/ui/k/{resource_name(kind)}/{name}"),
        )


def _editor(
    page: Page, kind: Kind, name: str, text: str, errors: list[FieldError], status: int
) -> Response:
    return render_html(
        "editor.html",
        status,
        **page.context(
            kind=kind,
            name=name,
            text=text,
            lines=text.split("\n"),
            errors=errors,
            save_url=page.link(f"/ui/k/{resource_name(kind)}/{name}"),
            back_href=page.link(f"/ui/k/{resource_name(kind)}/{name}"),
        ),
    )


@router.put(OBJECT)
@rule(on_kind("PUT"))
async def save(
    request: Request, resource: str, name: str, body: dict[str, Any] = Body(...)
) -> Response:
    """Apply the edited YAML (``{"yaml": "..."}``) as the API's replace of the object:
    on success the browser goes to the object's page; a refusal answers the editor
    again with each error beside its field (422 for an invalid object, else the API's
    status)."""
    kind = _kind(request, resource)
    text = str(body.get("yaml") or "")
    async with Page(request, namespaced=kind.namespaced) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        namespace = page.namespace if kind.namespaced else None
        try:
            manifest = parse(text)
        except YamlProblem as exc:
            return _editor(page, kind, name, text, exc.errors, 422)
        answer = await page.api.call("PUT", api_path(kind, namespace, name), json=manifest)
        if not answer.ok:
            errors = errors_of(text, answer.status, answer.message, answer.causes)
            return _editor(page, kind, name, text, errors, answer.status)
        target = detail_href(kind, name, page.namespace if kind.namespaced else "")
        return send_to(request, target)


@router.delete(OBJECT)
@rule(on_kind("DELETE"))
async def delete(request: Request, resource: str, name: str) -> Response:
    """Delete the object through the API; the browser goes back to the kind's list."""
    kind = _kind(request, resource)
    async with Page(request, namespaced=kind.namespaced) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        namespace = page.namespace if kind.namespaced else None
        answer = await page.api.call("DELETE", api_path(kind, namespace, name))
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        return send_to(request, page.link(f"/ui/k/{resource_name(kind)}"))
