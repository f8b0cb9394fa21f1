"""The access implementation Ketch assembles: users and tokens of the store, trusted
proxies, Kubeflow's roles over Profiles and RoleBindings, the audit log, and the
service-account tokens of the workloads Ketch starts."""

from __future__ import annotations

from collections.abc import Callable

from ketch.core.access import Access
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.tenancy.audit import AuditTrail
from ketch.tenancy.authn import ProxySettings, TenancyAuthenticator
from ketch.tenancy.profiles import ensure_default_profile
from ketch.tenancy.roles import RoleAuthorizer
from ketch.tenancy.users import Directory
from ketch.tenancy.workloads import WorkloadTokens


def access_factory(
    proxy: ProxySettings | None = None, *, registration: bool = False
) -> Callable[[Database, ResourceStore], Access]:
    """What makes the access implementation over an app's store (see
    :func:`ketch.server.app.create_app`): ``proxy`` says which addresses' user-id
    headers are trusted; ``registration`` lets a signed-in user without a profile make
    their own (Kubeflow's registration flow), and gives a user a proxy names or OIDC
    registers a profile of their own at once."""

    def make(database: Database, store: ResourceStore) -> Access:
        directory = Directory(database)

        def register(email: str) -> object:
            return ensure_default_profile(store, email)

        authenticator = TenancyAuthenticator(
            directory, proxy or ProxySettings(), register if registration else None
        )
        return Access(
            authenticator=authenticator,
            authorizer=RoleAuthorizer(store),
            audit=AuditTrail(database),
            extra={"directory": directory, "registration": registration},
            workloads=WorkloadTokens(directory, authenticator.enabled),
        )

    return make
