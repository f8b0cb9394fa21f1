"""Credentials for the workloads Ketch starts: a trial's job, a pipeline's task, a
transformer calling its predictor. Each runs as its namespace's ``default-editor``
service account, as a Kubeflow pod does: it gets that account's API token in
``KETCH_TOKEN`` (in the process's environment only, never in a manifest), and the
account may edit its own namespace and nothing else (see :mod:`ketch.tenancy.roles`).
Where the server is (``KETCH_URL``) they get beside it, from the server itself
(:func:`ketch.core.access.workload_env`).

A token is minted per namespace once per server process and kept in memory (the
store keeps only its HMAC), checked against the store before it is handed out again
(a revoked or expired one is replaced), and renewed once half its lifetime is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from ketch.core.errors import Unauthorized
from ketch.tenancy.users import SERVICE_TOKEN_LIFETIME, Directory

TOKEN_ENV = "KETCH_TOKEN"
_RENEW_AFTER = SERVICE_TOKEN_LIFETIME.total_seconds() / 2


class WorkloadTokens:
    """:class:`ketch.core.access.WorkloadCredentials` over a :class:`Directory`;
    ``enabled`` says whether authentication is on."""

    def __init__(self, directory: Directory, enabled: Callable[[], bool]) -> None:
        self.directory = directory
        self.enabled = enabled
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # namespace → (secret, minted at)

    def env(self, namespace: str) -> Mapping[str, str]:
        if not self.enabled():
            return {}
        with self._lock:
            found = self._tokens.get(namespace)
            if found is not None and time.monotonic() - found[1] < _RENEW_AFTER:
                try:
                    self.directory.user_for_token(found[0])
                    return {TOKEN_ENV: found[0]}
                except Unauthorized:  # revoked by an admin: a new one
                    pass
            secret = self.directory.service_account_token(namespace)
            self._tokens[namespace] = (secret, time.monotonic())
            return {TOKEN_ENV: secret}
