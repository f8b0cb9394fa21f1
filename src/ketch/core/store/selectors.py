"""Kubernetes equality-based label selectors: ``a=b,c!=d,e,!f``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ketch.core.errors import InvalidSpec

Operator = Literal["=", "!=", "exists", "!exists"]

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse ``a=b``, ``a==b``, ``a!=b``, ``a`` (has key) and ``!a`` (lacks key), comma-separated."""
        if not text or not text.strip():
            return cls()
        requirements = [_parse_one(part.strip(), text) for part in text.split(",")]
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _parse_one(part: str, whole: str) -> Requirement:
    if not part:
        raise InvalidSpec(f"empty requirement in label selector {whole!r}", field="labelSelector")
    if "!=" in part:
        key, value = part.split("!=", 1)
        requirement = Requirement(key.strip(), "!=", value.strip())
    elif "==" in part:
        key, value = part.split("==", 1)
        requirement = Requirement(key.strip(), "=", value.strip())
    elif "=" in part:
        key, value = part.split("=", 1)
        requirement = Requirement(key.strip(), "=", value.strip())
    elif part.startswith("!"):
        requirement = Requirement(part[1:].strip(), "!exists")
    else:
        requirement = Requirement(part, "exists")
    if not _KEY.match(requirement.key) or any(c in requirement.value for c in "=!, "):
        raise InvalidSpec(
            f"cannot parse {part!r} in label selector {whole!r}; "
            "use key=value, key!=value, key or !key, separated by commas",
            field="labelSelector",
        )
    return requirement
