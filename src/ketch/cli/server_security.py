"""What ``ketch up`` settles before it serves: who may sign in through a trusted proxy,
whether it may listen on the address asked for, and the certificate it serves TLS with.

A store without users is single-user: anyone who reaches the port acts as that user,
so ``ketch up`` listens on a non-loopback address only once authentication is on (the
store has a user, or trusted proxies are configured). With authentication on and no
TLS, it warns: tokens and passwords would cross the network in clear, and kubectl
never sends a bearer token over plain HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ketch.core.errors import InvalidSpec

if TYPE_CHECKING:
    from ketch.core.tls import ServerFiles
    from ketch.tenancy.authn import ProxySettings

# RFC 9110's token: what an HTTP header name may be made of
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

NO_AUTHENTICATION = (
    "--host {host} is not a loopback address, and this store has no users: anyone who "
    "can reach the port could run commands on this machine as this user. Create the first "
    "user, an admin, with `ketch users add EMAIL --admin` (authentication is on from "
    "then), or put an authenticating proxy in front with --trusted-proxy CIDR; then start "
    "again. Without either, serve 127.0.0.1 only."
)
PLAIN_HTTP_WARNING = (
    "WARNING: --host {host} serves plain HTTP: API tokens, passwords and session cookies "
    "cross the network in clear, and kubectl does not send a token to an http:// server. "
    "Serve TLS with --tls-self-signed (a CA of its own in KETCH_HOME/tls, which `ketch "
    "kubeconfig` embeds) or --tls-cert FILE --tls-key FILE{behind_proxy}."
)


@dataclass(frozen=True)
class Security:
    """What ``ketch up`` was asked for, checked."""

    proxy: ProxySettings | None
    registration: bool
    tls_cert: Path | None
    tls_key: Path | None
    self_signed: bool
    tls_names: tuple[str, ...]

    @property
    def tls(self) -> bool:
        return self.self_signed or self.tls_cert is not None


def header_name(value: str, field: str) -> str:
    value = value.strip()
    if not HEADER_NAME.match(value):
        raise InvalidSpec(
            f"{value!r} is not an HTTP header name (letters, digits and - only, in practice)",
            field=field,
        )
    return value.lower()


def split_values(values: Iterable[str] | None) -> list[str]:
    """Repeated option values, each of which may hold several, comma-separated."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def check(
    *,
    trusted_proxies: Sequence[str] | None,
    userid_header: str,
    userid_prefix: str,
    groups_header: str,
    registration: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    self_signed: bool,
    tls_names: Sequence[str] | None,
) -> Security:
    """The options of ``ketch up`` checked; an ``InvalidSpec`` naming the first bad one."""
    from ketch.core.tls import check_name
    from ketch.tenancy.authn import ProxySettings, parse_networks

    networks = parse_networks(split_values(trusted_proxies))
    proxy = None
    if networks:
        proxy = ProxySettings(
            networks=networks,
            userid_header=header_name(userid_header, "--userid-header"),
            userid_prefix=userid_prefix,
            groups_header=header_name(groups_header, "--groups-header"),
        )
    if self_signed and (tls_cert is not None or tls_key is not None):
        raise InvalidSpec(
            "give --tls-self-signed, or --tls-cert and --tls-key, not both", field="--tls-cert"
        )
    if (tls_cert is None) != (tls_key is None):
        missing = "--tls-key" if tls_key is None else "--tls-cert"
        raise InvalidSpec(
            "--tls-cert and --tls-key go together: give the certificate and its key",
            field=missing,
        )
    names = tuple(check_name(name, "--tls-name") for name in split_values(tls_names))
    if names and not self_signed:
        raise InvalidSpec(
            "--tls-name adds names to the certificate --tls-self-signed makes; "
            "give --tls-self-signed too",
            field="--tls-name",
        )
    return Security(
        proxy=proxy,
        registration=registration,
        tls_cert=tls_cert.expanduser().resolve() if tls_cert is not None else None,
        tls_key=tls_key.expanduser().resolve() if tls_key is not None else None,
        self_signed=self_signed,
        tls_names=names,
    )


def ignored_proxy_options(
    security: Security, userid_header: str, userid_prefix: str, groups_header: str
) -> list[str]:
    """The proxy options given that mean nothing without ``--trusted-proxy``."""
    if security.proxy is not None:
        return []
    given = {
        "--userid-header": userid_header.strip().lower() != "kubeflow-userid",
        "--userid-prefix": userid_prefix != "",
        "--groups-header": groups_header.strip().lower() != "kubeflow-groups",
    }
    return [name for name, changed in given.items() if changed]


def store_has_users() -> bool:
    """Whether this store (``KETCH_HOME`` or ``KETCH_DATABASE_URL``) has users;
    a ``KetchError`` naming the store when it cannot be read."""
    from ketch.cli.users import local_directory

    with local_directory() as directory:
        return directory.has_users()


def refusal_to_listen(host: str, security: Security) -> str | None:
    """Why ``ketch up`` must not listen on ``host``, or ``None`` when it may."""
    from ketch.server.guard import is_loopback

    if is_loopback(host) or security.proxy is not None or store_has_users():
        return None
    return NO_AUTHENTICATION.format(host=host)


def plain_http_warning(host: str, security: Security) -> str | None:
    """The warning for a non-loopback ``host`` served without TLS, if it is one."""
    from ketch.server.guard import is_loopback

    if is_loopback(host) or security.tls:
        return None
    behind = " (or let the trusted proxy in front terminate TLS)" if security.proxy else ""
    return PLAIN_HTTP_WARNING.format(host=host, behind_proxy=behind)


def server_files(host: str, security: Security, home: Path | None) -> ServerFiles | None:
    """The certificate and key to serve TLS with, made or checked; ``None`` for HTTP."""
    from ketch.core import tls

    if security.self_signed:
        return tls.self_signed(tls.server_names(host, security.tls_names), home)
    if security.tls_cert is not None and security.tls_key is not None:
        return tls.check_server_files(security.tls_cert, security.tls_key)
    return None
