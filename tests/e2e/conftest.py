from tests.server.fixtures import client, ns, server  # noqa: F401
