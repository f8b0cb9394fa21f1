from tests.cli.helpers import ketch  # noqa: F401
from tests.server.fixtures import client, ns, server  # noqa: F401
