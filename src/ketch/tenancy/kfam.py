"""Kubeflow's access management API (KFAM, ``profiles-kfam``), as the central dashboard
and Kubeflow's tools call it:

::

    GET    /kfam/v1/bindings?user=&namespace=&role=   {"bindings": [Binding, ...]}
    POST   /kfam/v1/bindings                          Binding: add a contributor
    DELETE /kfam/v1/bindings                          Binding: remove one
    POST   /kfam/v1/profiles                          Profile: create it
    DELETE /kfam/v1/profiles/{profile}
    GET    /kfam/v1/role/clusteradmin?user=           true | false

A Binding is ``{"user": {"kind": "User", "name": "u@x.com"}, "referredNamespace":
"ns", "RoleRef": {"kind": "ClusterRole", "name": "admin|edit|view"}}``. Adding one
makes a RoleBinding in the namespace named as KFAM names it
(``user-u-x-com-clusterrole-edit``), annotated ``user``/``role``, binding the
ClusterRole ``kubeflow-<role>``; listing reads the RoleBindings of the profiles'
namespaces (or of ``namespace``) that carry those annotations, the owner's
``namespaceAdmin`` among them. Writes answer 200 with an empty body, as KFAM does.

Access: adding or removing a binding takes the right to create or delete RoleBindings
in its namespace (checked in the handler: the namespace is in the body); a list
across namespaces shows the namespaces the caller may read; creating a profile and
deleting one are ``profiles`` writes; ``clusteradmin`` is for anyone signed in.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from ketch.core.access import (
    AUTHENTICATED,
    Attributes,
    Call,
    Verb,
    access_of,
    check_of,
    identity_of,
    rule,
    visible_namespaces,
)
from ketch.core.errors import Forbidden, InvalidSpec, NotFound, ObjectNotFound
from ketch.core.rbac import RBAC_GROUP, ROLE_BINDING, SUBJECT_KINDS, role_binding, role_ref, subject
from ketch.core.resource import Resource, validate_namespace
from ketch.core.services import context_of
from ketch.core.store.resources import ResourceStore
from ketch.tenancy.profiles import (
    GROUP,
    PROFILE_KIND,
    PROFILES_STORED_IN,
    ROLE_ANNOTATION,
    USER_ANNOTATION,
    ProfileSource,
)
from ketch.tenancy.spec import PROFILE, check_profile
from ketch.tenancy.users import Directory

router = APIRouter(tags=["kfam"])

PREFIX = "/kfam/v1"
#: KFAM's role names and the ClusterRoles they bind
ROLES = {"admin": "kubeflow-admin", "edit": "kubeflow-edit", "view": "kubeflow-view"}
_SHORT = {cluster_role: role for role, cluster_role in ROLES.items()}
_NOT_NAME = re.compile(r"[^a-z0-9]+")


def binding_name(user_kind: str, user: str, role_kind: str, role: str) -> str:
    """The name KFAM gives a binding's RoleBinding: the user's kind and name, the role's
    kind and name, lower-cased, with every run of other characters than ``a-z0-9``
    made one ``-`` (``user-u-x-com-clusterrole-edit``)."""
    raw = "-".join((user_kind, _NOT_NAME.sub("-", user), role_kind, role)).lower()
    return _NOT_NAME.sub("-", raw)


def _store(request: Request) -> ResourceStore:
    return context_of(request).store


def _authorize(request: Request, attributes: Attributes) -> None:
    """Refuse (403) unless the caller may do ``attributes``: the server puts the check
    on the request (absent while authentication is off: then anything goes)."""
    check = check_of(request)
    if check is not None:
        check(attributes)


def _empty() -> Response:
    return Response(status_code=200, media_type="application/json")


# -- bindings -----------------------------------------------------------------------------


def _text(value: Any, field: str) -> str:
    if value is None or value == "":
        raise InvalidSpec("is required", field=field)
    if not isinstance(value, str):
        raise InvalidSpec("must be a string", field=field)
    return value


def _binding(body: Any) -> tuple[str, dict[str, str], str, str]:
    """A Binding body, checked: its namespace, user subject, role kind and role."""
    if not isinstance(body, dict):
        raise InvalidSpec("the body must be a JSON object (a Binding)", field="body")
    namespace = validate_namespace(
        _text(body.get("referredNamespace"), "referredNamespace"), field="referredNamespace"
    )
    user = body.get("user")
    if not isinstance(user, dict):
        raise InvalidSpec("is required: {kind: User, name: EMAIL}", field="user")
    kind = _text(user.get("kind") or "User", "user.kind")
    if kind not in SUBJECT_KINDS:
        raise InvalidSpec(
            f'Unsupported value: "{kind}": supported values: "User", "Group", "ServiceAccount"',
            field="user.kind",
        )
    name = _text(user.get("name"), "user.name")
    ref = body.get("RoleRef")
    if not isinstance(ref, dict):
        raise InvalidSpec(
            "is required: {kind: ClusterRole, name: admin|edit|view}", field="RoleRef"
        )
    ref_kind = _text(ref.get("kind") or "ClusterRole", "RoleRef.kind")
    if ref_kind != "ClusterRole":
        raise InvalidSpec(
            f'Unsupported value: "{ref_kind}": KFAM binds a "ClusterRole"', field="RoleRef.kind"
        )
    role = _text(ref.get("name"), "RoleRef.name")
    if role not in ROLES:
        raise InvalidSpec(
            f'Unsupported value: "{role}": supported values: "admin", "edit", "view"',
            field="RoleRef.name",
        )
    namespace_of_user = user.get("namespace")
    made = subject(
        kind, name, namespace=namespace_of_user if isinstance(namespace_of_user, str) else None
    )
    return namespace, made, ref_kind, role


def _require_profile(store: ResourceStore, namespace: str) -> None:
    try:
        store.get(PROFILE, PROFILES_STORED_IN, namespace)
    except NotFound:
        raise ObjectNotFound(
            f'no profile "{namespace}": KFAM binds users in profiles\' namespaces only',
            kind=PROFILE,
            name=namespace,
        ) from None


def _listed_namespace(call: Call) -> str | None:
    return call.query.get("namespace") or None


def _list_rule(call: Call) -> Attributes:
    return Attributes(Verb.LIST, RBAC_GROUP, "rolebindings", _listed_namespace(call))


@router.get(f"{PREFIX}/bindings", summary="List the contributors of profiles (KFAM)")
@rule(_list_rule)
def read_bindings(
    request: Request,
    user: str | None = Query(None, description="Only this user's bindings"),
    namespace: str | None = Query(None, description="Only this profile's (default: all)"),
    role: str | None = Query(None, description="Only this role: admin, edit or view"),
) -> JSONResponse:
    store = _store(request)
    if namespace:
        namespaces = [validate_namespace(namespace, field="namespace")]
    else:
        namespaces = [p.metadata.name for p in store.list(PROFILE, PROFILES_STORED_IN)]
        visible = visible_namespaces(request)
        if visible is not None:
            namespaces = [n for n in namespaces if n in visible]
    found: list[dict[str, Any]] = []
    for name in namespaces:
        for binding in store.list(ROLE_BINDING, name):
            entry = _entry(binding, user, role)
            if entry is not None:
                found.append(entry)
    return JSONResponse({"bindings": found})


def _entry(binding: Resource, user: str | None, role: str | None) -> dict[str, Any] | None:
    """A RoleBinding as KFAM lists it, if its annotations match (``None`` otherwise)."""
    annotations = binding.metadata.annotations
    user_value, role_value = annotations.get(USER_ANNOTATION), annotations.get(ROLE_ANNOTATION)
    if user_value is None or role_value is None:
        return None
    if (user and user != user_value) or (role and role != role_value):
        return None
    subjects = binding.spec.get("subjects") or []
    ref = binding.spec.get("roleRef") or {}
    if len(subjects) != 1 or not isinstance(subjects[0], dict) or not isinstance(ref, dict):
        return None  # not one KFAM made
    return {
        "user": {"kind": subjects[0].get("kind", ""), "name": subjects[0].get("name", "")},
        "referredNamespace": binding.metadata.namespace,
        "RoleRef": {
            "apiGroup": "",
            "kind": ref.get("kind", ""),
            "name": _SHORT.get(str(ref.get("name", "")), ""),
        },
    }


def _allowed_binding(
    request: Request, body: Any, verb: Verb
) -> tuple[str, str, dict[str, str], str, str]:
    """A Binding body (:func:`_binding`) once the caller may ``verb`` its RoleBinding:
    its namespace, the RoleBinding's name, user subject, role kind and role."""
    namespace, user, ref_kind, role = _binding(body)
    name = binding_name(user["kind"], user["name"], ref_kind, role)
    _authorize(request, Attributes(verb, RBAC_GROUP, "rolebindings", namespace, name))
    return namespace, name, user, ref_kind, role


@router.post(f"{PREFIX}/bindings", summary="Add a contributor to a profile (KFAM)")
@rule(AUTHENTICATED)
def create_binding(request: Request, body: Any = Body(...)) -> Response:
    namespace, name, user, ref_kind, role = _allowed_binding(request, body, Verb.CREATE)
    store = _store(request)
    _require_profile(store, namespace)
    store.create(
        role_binding(
            namespace,
            name,
            role_ref(ref_kind, ROLES[role]),
            [user],
            annotations={USER_ANNOTATION: user["name"], ROLE_ANNOTATION: role},
        )
    )
    return _empty()


@router.delete(f"{PREFIX}/bindings", summary="Remove a contributor from a profile (KFAM)")
@rule(AUTHENTICATED)
def delete_binding(request: Request, body: Any = Body(...)) -> Response:
    namespace, name, _user, _kind, _role = _allowed_binding(request, body, Verb.DELETE)
    _store(request).delete(ROLE_BINDING, namespace, name)
    return _empty()


# -- profiles -----------------------------------------------------------------------------


def _profile(body: Any) -> Resource:
    if not isinstance(body, dict):
        raise InvalidSpec("the body must be a JSON object (a Profile)", field="body")
    manifest = {k: v for k, v in body.items() if k != "status"}
    manifest.setdefault("apiVersion", PROFILE_KIND.api_version)
    manifest.setdefault("kind", PROFILE)
    if manifest["kind"] != PROFILE:
        raise InvalidSpec(f"{manifest['kind']!r} is not a Profile", field="kind")
    PROFILE_KIND.check_api_version(str(manifest["apiVersion"]))
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise InvalidSpec("a profile's name is required", field="metadata.name")
    manifest["metadata"] = {
        k: v
        for k, v in metadata.items()
        if k not in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
    }
    manifest["metadata"]["namespace"] = PROFILES_STORED_IN
    manifest.setdefault("spec", {})
    resource = Resource.from_manifest(manifest)
    check_profile(resource)
    return resource


def _may_register(request: Request, profile: Resource) -> None:
    """A cluster admin creates any profile; with the registration flow on
    (``ketch up --registration-flow``), a signed-in user creates one profile of their
    own, as Kubeflow's dashboard lets a new user make their namespace."""
    identity = identity_of(request)
    if identity.admin:
        return
    access = access_of(request)
    registration = bool(access is not None and access.extra.get("registration"))
    owner = profile.spec.get("owner")
    named = str(owner.get("name", "")).strip().lower() if isinstance(owner, dict) else ""
    if not registration:
        raise Forbidden(
            "only a cluster admin creates profiles on this server",
            hint="ask an admin, or start the server with --registration-flow",
        )
    if named != identity.name.lower():
        raise Forbidden(
            f"a profile you register must be owned by you ({identity.name}), not {named!r}"
        )
    for existing in _store(request).list(PROFILE, PROFILES_STORED_IN):
        had = existing.spec.get("owner")
        if isinstance(had, dict) and str(had.get("name", "")).lower() == named:
            raise Forbidden(
                f'you own the profile "{existing.metadata.name}" already; '
                "a cluster admin creates more"
            )


@router.post(f"{PREFIX}/profiles", summary="Create a profile (KFAM)")
@rule(AUTHENTICATED)
def create_profile(request: Request, body: Any = Body(...)) -> Response:
    profile = _profile(body)
    _may_register(request, profile)
    ProfileSource(_store(request)).create(PROFILE_KIND, profile)
    return _empty()


def _delete_rule(call: Call) -> Attributes:
    return Attributes(Verb.DELETE, GROUP, "profiles", name=call.path_params.get("profile"))


@router.delete(
    f"{PREFIX}/profiles/{{profile}}", summary="Delete a profile and its namespace (KFAM)"
)
@rule(_delete_rule)
def delete_profile(request: Request, profile: str) -> Response:
    validate_namespace(profile, field="profile")
    ProfileSource(_store(request)).delete(PROFILE_KIND, PROFILES_STORED_IN, profile)
    return _empty()


# -- cluster admins -----------------------------------------------------------------------


@router.get(f"{PREFIX}/role/clusteradmin", summary="Whether a user is a cluster admin (KFAM)")
@rule(AUTHENTICATED)
def query_cluster_admin(
    request: Request, user: str | None = Query(None, description="The user's email")
) -> JSONResponse:
    found = Directory(context_of(request).database).get(user) if user else None
    return JSONResponse(found is not None and found.admin)
