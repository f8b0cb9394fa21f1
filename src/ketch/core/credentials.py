"""The API tokens a user keeps for Ketch servers, and the one place a client learns
which token to send (:func:`token_for`).

``KETCH_TOKEN`` wins when set. Otherwise the token comes from ``~/.ketch/credentials``
(``$HOME`` is respected; the folder is made 0700 and the file is written 0600), a
JSON mapping that ``ketch login`` and ``ketch logout`` keep::

    {"current": "http://127.0.0.1:8808",
     "servers": {"http://127.0.0.1:8808": {"token": "ketch_..."}}}

``current`` is the server ``ketch login`` last signed in to: clients use it when
``KETCH_URL`` is not set (see :func:`ketch.core.config.server_url`). Nothing here
prints or logs a token.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ketch.core.errors import InvalidSpec, KetchError

TOKEN_ENV = "KETCH_TOKEN"


def credentials_path() -> Path:
    """``~/.ketch/credentials`` of the user running this process."""
    return Path.home() / ".ketch" / "credentials"


def normalize(url: str) -> str:
    """``url`` as the credentials file keys it: scheme and host in lower case, no
    trailing slash, no query."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # http://[bad
        raise InvalidSpec(f"{url!r} is not a valid server URL: {exc}", field="URL") from None
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


@dataclass
class Credentials:
    """What ``~/.ketch/credentials`` holds: a token per server, and the current server."""

    tokens: dict[str, str] = field(default_factory=dict)
    current: str | None = None

    def token(self, url: str) -> str | None:
        """The token of the server ``url`` is on (the longest stored URL that is
        ``url`` or a folder above it, so a request's full URL finds its server's)."""
        target = normalize(url)
        best: str | None = None
        for server in self.tokens:
            if (target == server or target.startswith(server + "/")) and (
                best is None or len(server) > len(best)
            ):
                best = server
        return self.tokens[best] if best is not None else None


def load(path: Path | None = None) -> Credentials:
    """The credentials in ``path`` (default :func:`credentials_path`); empty when
    there is no file. A file that is not what :func:`save` writes is a ``KetchError``
    naming it."""
    path = path or credentials_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Credentials()
    except OSError as exc:
        raise KetchError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document: Any = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise _broken(path, f"it is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise _broken(path, "it is not a JSON object")
    servers = document.get("servers") or {}
    current = document.get("current")
    if not isinstance(servers, dict) or not (current is None or isinstance(current, str)):
        raise _broken(path, '"servers" must map URLs to {"token": ...} and "current" be a URL')
    tokens: dict[str, str] = {}
    for url, entry in servers.items():
        token = entry.get("token") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not token:
            raise _broken(path, f'the entry of {url} has no "token"')
        tokens[normalize(url)] = token
    return Credentials(tokens, normalize(current) if current else None)


def _broken(path: Path, why: str) -> KetchError:
    return KetchError(
        f"{path} cannot be read: {why}",
        hint="fix it, or remove it and sign in again with `ketch login`",
    )


def save(credentials: Credentials, path: Path | None = None) -> Path:
    """Write ``credentials`` to ``path`` (default :func:`credentials_path`): the
    folder made 0700 when it is new, the file replaced atomically and 0600 from its
    first byte. Returns the path."""
    path = path or credentials_path()
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.chmod(0o700)  # whatever the umask left
        servers = {normalize(url): token for url, token in credentials.tokens.items()}
        document = {
            "current": normalize(credentials.current) if credentials.current else None,
            "servers": {url: {"token": token} for url, token in sorted(servers.items())},
        }
        fd, temporary = tempfile.mkstemp(prefix=".credentials.", dir=path.parent)  # 0600
        try:
            with os.fdopen(fd, "w") as stream:
                json.dump(document, stream, indent=2)
                stream.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise KetchError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def environment_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def token_source(url: str) -> tuple[str, str] | None:
    """The token to send to ``url`` and where it came from (``KETCH_TOKEN`` or the
    credentials file's entry), or ``None`` when none is known."""
    token = environment_token()
    if token is not None:
        return check_token(token, TOKEN_ENV), TOKEN_ENV
    stored = load().token(url)
    if stored is not None:
        return stored, f"the token stored for {normalize(url)} in {credentials_path()}"
    return None


def token_for(url: str) -> str | None:
    """The API token to send to the Ketch server at ``url`` (``Authorization:
    Bearer``): ``KETCH_TOKEN``, else the entry of ``url``'s server in
    ``~/.ketch/credentials``, else ``None``."""
    found = token_source(url)
    return found[0] if found is not None else None


def current_server() -> str | None:
    """The server ``ketch login`` last signed in to, if any."""
    return load().current


def check_token(token: str, field: str) -> str:
    """``token`` stripped; ``InvalidSpec`` (naming ``field``) when it is empty or
    could not be sent in a header."""
    token = token.strip()
    if not token:
        raise InvalidSpec("no token was given", field=field)
    if any(ord(c) < 33 or ord(c) > 126 for c in token):
        raise InvalidSpec("a token is one word of printable ASCII characters", field=field)
    return token
