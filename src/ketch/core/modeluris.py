"""``model-registry://`` storage URIs, as KServe reads them: ``model-registry://<model>/
<version>`` is that version of a registered model, ``model-registry://<model>`` its
latest LIVE version; Ketch adds ``?namespace=`` for the namespace it is resolved in.
Parsed here once for the serving capability (which resolves them) and the registry
(which follows the InferenceServices that name them)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from ketch.core.errors import InvalidSpec

SCHEME = "model-registry://"


def is_registry_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def parse(uri: str) -> tuple[str, str | None, str | None]:
    """The model name, version name (``None``: the latest LIVE one) and namespace of a
    ``model-registry://`` URI (``InvalidSpec`` when it names no model)."""
    parsed = urlparse(uri)
    parts = [p for p in [parsed.netloc, *parsed.path.split("/")] if p]
    if not parts or len(parts) > 2:
        raise InvalidSpec(
            f"{uri!r} is not model-registry://<model>[/<version>]", field="storageUri"
        )
    namespaces = parse_qs(parsed.query).get("namespace") or []
    return parts[0], parts[1] if len(parts) > 1 else None, namespaces[0] if namespaces else None
