"""Where Ketch keeps its state: ``KETCH_HOME`` and ``KETCH_DATABASE_URL``."""

from __future__ import annotations

import os
from pathlib import Path


def ketch_home() -> Path:
    """The directory holding the SQLite database, artifacts, logs and caches."""
    return Path(os.environ.get("KETCH_HOME") or Path.home() / ".ketch").expanduser().resolve()


def database_url(home: Path | None = None) -> str:
    """``KETCH_DATABASE_URL`` if set, else a SQLite file in ``KETCH_HOME``."""
    url = os.environ.get("KETCH_DATABASE_URL")
    if url:
        return url
    home = home or ketch_home()
    return f"sqlite:///{home / 'ketch.db'}"


def artifacts_root(home: Path | None = None) -> str:
    """Default pipeline root: ``KETCH_ARTIFACTS`` (any fsspec URI) or ``KETCH_HOME/artifacts``."""
    root = os.environ.get("KETCH_ARTIFACTS")
    if root:
        return root
    return str((home or ketch_home()) / "artifacts")


def logs_dir(home: Path | None = None) -> Path:
    return (home or ketch_home()) / "logs"


DEFAULT_PORT = 8808


def server_url() -> str:
    """Where clients find the API server: ``KETCH_URL``, else the server ``ketch
    login`` last signed in to, else ``http://127.0.0.1:8808``."""
    url = os.environ.get("KETCH_URL")
    if not url:
        from ketch.core.credentials import current_server

        url = current_server()
    return (url or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")


def version() -> str:
    """The installed ``ketch`` distribution's version (``"0"`` in a source tree that
    was never installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("ketch")
    except PackageNotFoundError:
        return "0"
