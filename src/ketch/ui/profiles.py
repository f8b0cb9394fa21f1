"""The Profiles page: a profile (the namespace shown) with its owner, its quota (what
``kf-resource-quota`` allows and what is used) and its contributors, read and written
through KFAM's API (``/kfam/v1/bindings``) as the caller. Whoever may bind roles in the
namespace (its owner, a cluster admin) adds a contributor by email as ``edit`` or
``view`` and removes one; everyone else reads. Every profile the caller can see is
listed with its owner and quota (a cluster admin sees all of them).

The page's rule is reading the namespace; a write's is KFAM's (creating or deleting a
RoleBinding in it).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Attributes, Call, Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.core.rbac import RBAC_GROUP
from ketch.ui.access import in_namespace, may, namespace_in, namespace_read
from ketch.ui.page import Page, is_htmx, problem_html

router = APIRouter(include_in_schema=False)
KFAM = "/kfam/v1"
PROFILES = "/apis/kubeflow.org/v1/profiles"
ROLES = ("edit", "view")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _bindings(verb: Verb) -> Any:
    def attributes_of(call: Call) -> Attributes | list[Attributes]:
        namespace = namespace_in(call)
        if namespace is None:
            raise InvalidSpec("name the profile (its namespace)", field="ns")
        return Attributes(verb, RBAC_GROUP, "rolebindings", namespace)

    return attributes_of


def quota_rows(quotas: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each resource of a namespace's quotas: what is allowed and what is used."""
    rows = []
    for quota in quotas:
        status = quota.get("status") or {}
        hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
        used = status.get("used") or {}
        for resource in sorted(hard):
            rows.append(
                {
                    "quota": str((quota.get("metadata") or {}).get("name", "")),
                    "resource": resource,
                    "used": str(used.get(resource, "0")),
                    "hard": str(hard[resource]),
                }
            )
    return rows


def _owner(profile: dict[str, Any]) -> str:
    owner = (profile.get("spec") or {}).get("owner") or {}
    return str(owner.get("name", "")) if isinstance(owner, dict) else ""


async def _quotas(page: Page, namespace: str) -> list[dict[str, str]]:
    answer = await page.api.call("GET", f"/api/v1/namespaces/{namespace}/resourcequotas")
    if not answer.ok or not isinstance(answer.body, dict):
        return []
    return quota_rows(list(answer.body.get("items") or []))


@router.get("/ui/profiles")
@rule(in_namespace(namespace_read))
async def profiles_page(request: Request) -> Response:
    async with Page(request, section="Profiles") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        namespace = page.namespace
        listed, bindings, own_quota = await asyncio.gather(
            page.api.call("GET", PROFILES),
            page.api.call("GET", f"{KFAM}/bindings", params={"namespace": namespace}),
            _quotas(page, namespace),
        )
        profiles = (
            list(listed.body.get("items") or [])
            if listed.ok and isinstance(listed.body, dict)
            else []
        )
        profiles.sort(key=lambda p: str(p["metadata"]["name"]))
        current = next((p for p in profiles if p["metadata"]["name"] == namespace), None)
        if current is None:
            answer = await page.api.call("GET", f"{PROFILES}/{namespace}")
            current = answer.body if answer.ok and isinstance(answer.body, dict) else None
        owner = _owner(current) if current else ""
        contributors = []
        if bindings.ok and isinstance(bindings.body, dict):
            for b in bindings.body.get("bindings") or []:
                user = str((b.get("user") or {}).get("name", ""))
                role = str((b.get("RoleRef") or {}).get("name", ""))
                contributors.append({"email": user, "role": role, "owner": user == owner})
            contributors.sort(key=lambda c: (not c["owner"], c["email"]))
        others = [p for p in profiles if p["metadata"]["name"] != namespace]
        quotas = await asyncio.gather(*(_quotas(page, p["metadata"]["name"]) for p in others))
        rows = [
            {
                "name": p["metadata"]["name"],
                "owner": _owner(p),
                "quota": q,
                "href": f"/ui/profiles?ns={p['metadata']['name']}",
            }
            for p, q in zip(others, quotas, strict=True)
        ]
        manages = may(request, Attributes(Verb.CREATE, RBAC_GROUP, "rolebindings", namespace))
        return page.render(
            "profiles.html",
            title="Profiles",
            profile=current,
            owner=owner,
            quota=own_quota,
            contributors=contributors,
            contributors_error="" if bindings.ok else bindings.message,
            profiles=rows,
            manages=manages,
            may_remove=may(request, Attributes(Verb.DELETE, RBAC_GROUP, "rolebindings", namespace)),
            roles=ROLES,
            contributors_url=page.link("/ui/profiles/contributors"),
        )


def _contributor(values: dict[str, Any]) -> tuple[str, str]:
    email = str(values.get("email") or "").strip()
    if not _EMAIL.fullmatch(email):
        raise InvalidSpec("must be an email address (name@example.com)", field="email")
    role = str(values.get("role") or "").strip()
    if role not in ROLES:
        raise InvalidSpec(f"{role or '(none)'!r} is not edit or view", field="role")
    return email, role


def _binding(namespace: str, email: str, role: str) -> dict[str, Any]:
    return {
        "user": {"kind": "User", "name": email},
        "referredNamespace": namespace,
        "RoleRef": {"kind": "ClusterRole", "name": role},
    }


async def _kfam(request: Request, method: str, email: str, role: str) -> Response:
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        body = _binding(page.namespace, email, role)
        answer = await page.api.call(method, f"{KFAM}/bindings", json=body)
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Refresh": "true"})
        return Response(status_code=303, headers={"Location": page.link("/ui/profiles")})


@router.post("/ui/profiles/contributors")
@rule(_bindings(Verb.CREATE))
async def add_contributor(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Add a contributor (``{"email", "role"}``) to the profile shown."""
    email, role = _contributor(body)
    return await _kfam(request, "POST", email, role)


@router.delete("/ui/profiles/contributors")
@rule(_bindings(Verb.DELETE))
async def remove_contributor(request: Request) -> Response:
    """Remove a contributor (``email`` and ``role`` in the query) from the profile."""
    email, role = _contributor(dict(request.query_params))
    return await _kfam(request, "DELETE", email, role)
