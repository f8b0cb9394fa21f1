"""Field selectors, as the Kubernetes API server reads ``?fieldSelector=``.

A selector is requirements joined by commas, all of which must hold::

    involvedObject.name=mnist,involvedObject.kind==PyTorchJob,type!=Normal

``=`` and ``==`` ask for equality, ``!=`` for inequality. A backslash escapes the
next character (``\\,``, ``\\=``, ``\\\\``), so a value may hold a comma or an equals
sign. Each kind supports its own fields (:meth:`FieldSelector.parse` is given them);
any other field is refused with an ``InvalidSpec`` naming ``fieldSelector`` and the
field, which the server answers 400 as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ketch.core.errors import InvalidSpec

Operator = Literal["=", "!="]
FIELD = "fieldSelector"


@dataclass(frozen=True)
class Requirement:
    """``field`` equal (``=``) or not equal (``!=``) to ``value``."""

    field: str
    operator: Operator
    value: str

    def matches(self, actual: str | None) -> bool:
        equal = (actual or "") == self.value
        return equal if self.operator == "=" else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{self.value}"


def _scan(text: str) -> Iterator[tuple[str, bool]]:
    """The characters of ``text``, each with whether a backslash escapes it (the
    escaping backslashes left out); a backslash ending ``text`` escapes ``""``."""
    escaped = False
    for char in text:
        if escaped:
            yield char, True
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            yield char, False
    if escaped:
        yield "", True


def _terms(text: str) -> Iterator[str]:
    """``text`` split at the commas no backslash escapes (escapes kept)."""
    term: list[str] = []
    for char, escaped in _scan(text):
        if escaped and not char:
            raise InvalidSpec(f"{text!r} ends with an unfinished escape (\\)", field=FIELD)
        if escaped:
            term.append("\\" + char)
        elif char == ",":
            yield "".join(term)
            term = []
        else:
            term.append(char)
    yield "".join(term)


def _unescape(text: str) -> str:
    return "".join(char for char, _escaped in _scan(text))


def _split(term: str) -> tuple[str, Operator, str]:
    """A term's field, operator and (still escaped) value, at its first unescaped
    operator."""
    index = 0
    while index < len(term):
        char = term[index]
        if char == "\\":
            index += 2
            continue
        if term.startswith("!=", index):
            return term[:index], "!=", term[index + 2 :]
        if term.startswith("==", index):
            return term[:index], "=", term[index + 2 :]
        if char == "=":
            return term[:index], "=", term[index + 1 :]
        index += 1
    raise InvalidSpec(
        f"{term!r} is not a requirement: write FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE",
        field=FIELD,
    )


@dataclass(frozen=True)
class FieldSelector:
    """Requirements that must all hold (none: everything is selected)."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(
        cls,
        text: str | None,
        fields: Collection[str],
        aliases: Mapping[str, str] | None = None,
    ) -> FieldSelector:
        """The selector ``text`` says, over ``fields`` (``aliases`` maps other names of a
        field to one of them); a malformed one or one naming another field is an
        ``InvalidSpec`` about ``fieldSelector``."""
        if text is None or not text.strip():
            return cls()
        aliases = aliases or {}
        found: list[Requirement] = []
        for term in _terms(text):
            if not term.strip():
                continue
            raw_field, operator, raw_value = _split(term.strip())
            name = _unescape(raw_field).strip()
            name = aliases.get(name, name)
            if name not in fields:
                known = ", ".join(sorted({*fields, *aliases}))
                raise InvalidSpec(
                    f'field label not supported: "{name}"; select by {known}', field=FIELD
                )
            found.append(Requirement(name, operator, _unescape(raw_value)))
        return cls(tuple(found))

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def matches(self, value_of: Callable[[str], str | None]) -> bool:
        """Whether an object whose field values ``value_of`` gives meets every requirement."""
        return all(r.matches(value_of(r.field)) for r in self.requirements)

    def equal(self, field: str) -> str | None:
        """The value ``field`` must equal, when a requirement says so (for narrowing a
        query before the rest is checked)."""
        for requirement in self.requirements:
            if requirement.field == field and requirement.operator == "=":
                return requirement.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


#: The fields every kind's objects can be selected by, as Kubernetes allows for a CRD.
OBJECT_FIELDS = ("metadata.name", "metadata.namespace")


def parse(
    expr: str | None, allowed_fields: Collection[str], aliases: Mapping[str, str] | None = None
) -> FieldSelector:
    """``expr`` (a ``?fieldSelector=``) over ``allowed_fields``: a malformed one, or
    one naming another field, is an ``InvalidSpec`` about ``fieldSelector`` (400)."""
    return FieldSelector.parse(expr, allowed_fields, aliases)


def field_value(obj: Mapping[str, Any], field: str) -> str | None:
    """The value of the dotted ``field`` (``metadata.name``, ``status.phase``) of the
    object ``obj`` as a field selector compares it: text, ``true``/``false`` for
    booleans; ``None`` when it is missing or not a scalar."""
    value: Any = obj
    for part in field.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def matches(selector: FieldSelector, obj: Mapping[str, Any]) -> bool:
    """Whether the object ``obj`` meets every requirement of ``selector``."""
    return selector.matches(lambda field: field_value(obj, field))
