"""Kubernetes label selectors, equality- and set-based, as ``?labelSelector=`` reads them::

    tier=web,env!=prod,app in (a, b),track notin (canary),gpu,!legacy,replicas>2

Requirements are joined by commas (a comma inside ``( )`` separates values) and must
all hold. ``=``/``==`` and ``!=`` compare one value (``!=`` also holds when the label
is missing); ``in`` and ``notin`` a set of values (``notin`` also holds when the
label is missing); ``key`` asks for the label, ``!key`` for its absence; ``>`` and
``<`` compare a label holding an integer. A malformed selector is an ``InvalidSpec``
naming ``labelSelector``, which the API answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ketch.core.errors import InvalidSpec

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"]

FIELD = "labelSelector"

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
# a label value: empty, or alphanumerics with - _ . inside, at most 63 characters
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# the tokens of a selector: words (keys and values), operators, parentheses, commas
_TOKEN = re.compile(r"\s*(==|!=|=|!|>|<|\(|\)|,|[^\s=!<>(),]+)")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    value: str = ""
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "=":
            return self.key in labels and labels[self.key] == self.value
        if self.operator == "!=":
            return labels.get(self.key) != self.value
        if self.operator == "in":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "notin":
            return labels.get(self.key) not in self.values
        found = labels.get(self.key)
        if found is None:
            return False
        try:
            number = int(found)
        except ValueError:
            return False
        limit = int(self.value)
        return number > limit if self.operator == "gt" else number < limit

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!exists":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        symbol = {"gt": ">", "lt": "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{self.value}"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse a selector (see the module's docstring); ``None`` or blank selects
        everything."""
        if not text or not text.strip():
            return cls()
        return cls(tuple(_Parser(text).requirements()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Parser:
    """A recursive-descent reading of one selector's tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:  # pragma: no cover - every character is some token
                raise self._error(f"unexpected {text[position:]!r}")
            self.tokens.append(match.group(1))
            position = match.end()
        self.index = 0

    def _error(self, problem: str) -> InvalidSpec:
        return InvalidSpec(
            f"cannot parse label selector {self.text!r}: {problem}; write key=value, "
            "key!=value, 'key in (a,b)', 'key notin (a,b)', key or !key, separated by commas",
            field=FIELD,
        )

    def _peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self, what: str) -> str:
        token = self._peek()
        if token is None:
            raise self._error(f"expected {what} at the end")
        self.index += 1
        return token

    def requirements(self) -> list[Requirement]:
        found = [self._requirement()]
        while self._peek() is not None:
            if self._next("a comma") != ",":
                raise self._error(f"expected a comma before {self.tokens[self.index - 1]!r}")
            found.append(self._requirement())
        return found

    def _key(self) -> str:
        key = self._next("a label key")
        if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
            raise self._error(f"{key!r} is not a valid label key")
        return key

    def _value(self) -> str:
        token = self._peek()
        if token in (None, ",", ")"):
            return ""  # an empty value (key= or key in (a,))
        self.index += 1
        assert token is not None
        if not _VALUE.match(token):
            raise self._error(f"{token!r} is not a valid label value")
        return token

    def _requirement(self) -> Requirement:
        token = self._peek()
        if token is None or token == ",":
            raise self._error("an empty requirement")
        if token == "!":
            self.index += 1
            return Requirement(self._key(), "!exists")
        key = self._key()
        operator = self._peek()
        if operator is None or operator == ",":
            return Requirement(key, "exists")
        self.index += 1
        if operator in ("=", "=="):
            return Requirement(key, "=", self._value())
        if operator == "!=":
            return Requirement(key, "!=", self._value())
        if operator in (">", "<"):
            number = self._next("a number")
            if not re.fullmatch(r"-?[0-9]+", number):
                raise self._error(f"{key}{operator} needs an integer, got {number!r}")
            return Requirement(key, "gt" if operator == ">" else "lt", number)
        if operator in ("in", "notin"):
            if self._next("'('") != "(":
                raise self._error(f"'{key} {operator}' needs a list of values in parentheses")
            values = [self._value()]
            while (token := self._next("')'")) == ",":
                values.append(self._value())
            if token != ")":
                raise self._error(f"expected ',' or ')' in the values of {key!r}, got {token!r}")
            return Requirement(key, operator, values=tuple(values))  # type: ignore[arg-type]
        raise self._error(f"unknown operator {operator!r} after {key!r}")
