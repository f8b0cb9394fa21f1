"""Editing an object as YAML: reading what the user typed, and finding in it the line of
a field the API named (a Status cause's ``field``: ``spec.replicas``,
``spec.containers[0].image``), so the page shows each error beside its field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

_STEP = re.compile(r"\[(\d+)\]|\[([^\]]*)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class FieldError:
    """An error the page shows: the field's path (``""``: the whole document), the
    line it is on in the YAML (1-based; 0 when it is not there) and the message."""

    field: str
    message: str
    line: int = 0


def refused_fields(causes: list[dict[str, Any]], message: str) -> list[FieldError]:
    """A form's errors for the API's refusal: one a cause (its field and message), or
    ``message`` alone when the refusal names no cause."""
    listed = causes or [{"field": "", "message": message}]
    return [FieldError(c.get("field", ""), c.get("message", "")) for c in listed]


def path_steps(field: str) -> list[str | int]:
    """A field path's steps: ``spec.containers[0].image`` -> ``spec``, ``containers``,
    ``0``, ``image`` (a bracketed key that is no number, ``labels[app.kubernetes.io/name]``,
    is one key)."""
    steps: list[str | int] = []
    for index, key, name in _STEP.findall(field):
        if index:
            steps.append(int(index))
        elif key:
            steps.append(key)
        elif name:
            steps.append(name)
    return steps


def line_of(text: str, field: str) -> int:
    """The line (1-based) of ``field`` in the YAML ``text``: of the deepest part of the
    path that is there (the parent of a field that is missing); 0 when the text does not
    parse or not even the first step is there."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 0
    line = 0
    for step in path_steps(field):
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            found = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == step
                ),
                None,
            )
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                break
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse(text: str) -> dict[str, Any]:
    """The object the YAML ``text`` describes; :class:`YamlProblem` saying where it
    does not parse, or that it is no object."""
    try:
        found = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem([FieldError("", f"the YAML does not parse: {problem}", line)]) from None
    if not isinstance(found, dict):
        raise YamlProblem([FieldError("", "the YAML must describe one object (a mapping)", 1)])
    return found


class YamlProblem(Exception):
    """What is wrong with an edited document, field by field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def errors_of(
    text: str, status: int, message: str, causes: list[dict[str, str]]
) -> list[FieldError]:
    """The errors of a refused write of ``text``: one per field the API named (with its
    line), or its message alone when it named none."""
    found = [
        FieldError(
            str(c.get("field") or ""),
            str(c.get("message") or message),
            line_of(text, str(c.get("field") or "")) if c.get("field") else 0,
        )
        for c in causes
    ]
    return found or [FieldError("", message or f"the API answered {status}")]
