"""The apply-time check of one kind, as a capability registers it: a
:data:`~ketch.core.capability.Validator` (called with a ``Resource``) that also
checks a plain manifest (:meth:`ManifestValidator.validate_manifest`), for code
holding one — a Katib trial template is checked as the job it will create.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource


@dataclass(frozen=True)
class ManifestValidator:
    """The apply-time check of one kind, as registered with the API server: called
    with a ``Resource`` (as the server calls it), or through :meth:`validate_manifest`
    with a plain manifest."""

    kind: str
    check: Callable[[dict[str, Any]], None]

    def __call__(self, resource: Resource) -> None:
        self.validate_manifest(resource.to_manifest())

    def validate_manifest(self, manifest: dict[str, Any]) -> None:
        """Check a plain manifest of this kind (its ``kind`` field may be left out)."""
        if not isinstance(manifest, dict):
            raise InvalidSpec("a manifest must be a mapping")
        self.check({**manifest, "kind": self.kind})


def spec_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``spec`` of ``manifest``; ``InvalidSpec`` when it is not an object."""
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpec(
            f"a {manifest.get('kind') or 'manifest'} needs a spec object", field="spec"
        )
    return spec
