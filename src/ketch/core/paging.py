"""Page tokens: the one way Ketch turns "where the next page starts" into an opaque
token and back, for Kubernetes lists (``continue``) and KFP lists
(``page_token``).

A token is URL-safe base64 (unpadded) of a small JSON object. A token the server
did not issue is refused with ``InvalidSpec`` naming the query parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from typing import Any

from ketch.core.errors import InvalidSpec


def encode_token(position: Mapping[str, Any]) -> str:
    """``position`` (JSON-ready) as an opaque page token."""
    raw = json.dumps(dict(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(
    token: str, *, field: str, keys: Collection[str] = (), hint: str = ""
) -> dict[str, Any]:
    """The position in ``token``; ``InvalidSpec`` (naming ``field``) when it is not a
    token this server issued or lacks one of ``keys``."""
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or not set(keys) <= set(position):
        raise InvalidSpec(
            f"the {field} token is not one this server issued" + (f"; {hint}" if hint else ""),
            field=field,
        )
    return position
