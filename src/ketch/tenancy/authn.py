"""Who is calling: API tokens (``Authorization: Bearer``), browser sessions (a cookie,
with a CSRF token for writes) and, from configured proxies only, a trusted user-id
header as Kubeflow's oauth2-proxy/Istio set it (``kubeflow-userid``,
``kubeflow-groups``).

Authentication is on as soon as one user exists, or when trusted proxies are
configured; the check reads the store, so a user added by the CLI turns it on for a
running server at once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from ketch.core.access import Identity
from ketch.core.errors import InvalidSpec, Unauthorized
from ketch.tenancy.users import SERVICE_ACCOUNT_PREFIX, Directory, User

SESSION_COOKIE = "ketch_session"
#: seconds the answer to "are there users?" is kept once it is yes
_ENABLED_TTL = 1.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    nets: list[Network] = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidSpec(
                f"{value!r} is not an address or CIDR block", field="--trusted-proxy"
            ) from None
    return tuple(nets)


@dataclass(frozen=True)
class ProxySettings:
    """Kubeflow's ``USERID_HEADER``/``USERID_PREFIX``: trusted only from ``networks``."""

    networks: tuple[Network, ...] = ()
    userid_header: str = "kubeflow-userid"
    userid_prefix: str = ""
    groups_header: str = "kubeflow-groups"

    def trusts(self, client: str | None) -> bool:
        if not self.networks or not client:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


def _identity(user: User, via: str, csrf: str = "") -> Identity:
    groups = {"system:authenticated"}
    if user.email.startswith(SERVICE_ACCOUNT_PREFIX):  # Kubernetes' groups of a service account
        namespace = user.email[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")[0]
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{namespace}"}
    return Identity(user.email, frozenset(groups), admin=user.admin, via=via, csrf=csrf)


@dataclass
class TenancyAuthenticator:
    """:class:`ketch.core.access.Authenticator` over a :class:`Directory`."""

    directory: Directory
    proxy: ProxySettings = field(default_factory=ProxySettings)
    #: called once per process for each user a trusted proxy names (the registration
    #: flow gives them a profile of their own)
    on_proxy_user: Callable[[str], object] | None = None
    _enabled_at: float = 0.0
    _greeted: set[str] = field(default_factory=set)

    def enabled(self) -> bool:
        if self.proxy.networks:
            return True
        now = time.monotonic()
        if now - self._enabled_at < _ENABLED_TTL:
            return True
        if self.directory.has_users():
            self._enabled_at = now
            return True
        return False

    def credential_headers(self) -> frozenset[str]:
        """The (lower-case) headers :meth:`authenticate` reads: two requests from one
        address that agree on them are the same caller (what a cache of its answers
        may be keyed by)."""
        names = {"authorization", "cookie"}
        if self.proxy.networks:
            names |= {self.proxy.userid_header.lower(), self.proxy.groups_header.lower()}
        return frozenset(names)

    def authenticate(
        self, headers: Mapping[str, str], client: str | None, *, secure: bool = False
    ) -> Identity | None:
        if self.proxy.trusts(client):
            found = self._from_proxy(headers)
            if found is not None:
                return found
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, secret = authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                    hint="create a token with `ketch tokens create`",
                )
            return _identity(self.directory.user_for_token(secret.strip()), "token")
        cookie = headers.get("cookie", "")
        if cookie:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie)
            except Exception:  # noqa: BLE001 - a malformed cookie header is no session
                return None
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None and morsel.value:
                found_session = self.directory.session_user(morsel.value)
                if found_session is None:
                    return None
                user, csrf = found_session
                return _identity(user, "session", csrf)
        return None

    def _from_proxy(self, headers: Mapping[str, str]) -> Identity | None:
        value = headers.get(self.proxy.userid_header.lower(), "").strip()
        if not value:
            return None
        prefix = self.proxy.userid_prefix
        if prefix and value.startswith(prefix):
            value = value[len(prefix) :]
        groups = {
            g.strip() for g in headers.get(self.proxy.groups_header.lower(), "").split(",") if g
        }
        known = self.directory.get(value)
        name = value.lower()
        if self.on_proxy_user is not None and name not in self._greeted:
            self.on_proxy_user(name)
            self._greeted.add(name)
        return Identity(
            name,
            frozenset({"system:authenticated", *groups}),
            admin=bool(known and known.admin),
            via="proxy",
        )
