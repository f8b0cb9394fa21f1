"""The tenancy tests share the server tests' ``ketch up`` (one per database and worker,
single-user: no user is ever added to it) and their namespace fixture."""

from tests.server.fixtures import client, ns, server  # noqa: F401
