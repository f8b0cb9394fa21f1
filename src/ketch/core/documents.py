"""Parsing JSON and YAML documents from untrusted input, in bounded time and memory.

A few hundred bytes of YAML can name the same anchor over and over (``&a [*a, *a]``
nested ten times is a billion elements once expanded), and deep nesting exhausts the
stack. Every manifest, pipeline or body Ketch reads from a user goes through
:func:`load_yaml` or :func:`load_json`, which refuse such documents with
``InvalidSpec`` before any object is built:

- nesting deeper than :data:`MAX_DEPTH` levels;
- aliases that would add more than :data:`MAX_ALIAS_NODES` nodes (or as many nodes
  as the document itself holds, when that is more) once expanded;
- an alias that refers to the collection it sits in (a recursive document).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from ketch.core.errors import InvalidSpec

MAX_DEPTH = 100
MAX_ALIAS_NODES = 10_000


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that checks depth while composing and the expanded size
    of each document before constructing it."""

    def __init__(self, stream: Any, field: str) -> None:
        super().__init__(stream)
        self._field = field
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise InvalidSpec(
                    f"the YAML document nests deeper than {MAX_DEPTH} levels "
                    f"(at line {mark.line + 1})",
                    field=self._field,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            check_expansion(node, self._field)
        return node


def check_expansion(root: Node, field: str = "body") -> None:
    """Refuse a composed YAML node graph whose aliases expand too far or recurse."""
    unique = 0
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: (node, children visited?)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            depths[key] = 1 + max((depths[id(k)] for k in kids), default=0)
            on_path.discard(key)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise InvalidSpec(
                "the YAML document refers to itself through an alias (a recursive "
                "anchor); write the value out instead",
                field=field,
            )
        unique += 1
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) not in sizes:
                stack.append((kid, False))
    total, depth = sizes[id(root)], depths[id(root)]
    if depth > MAX_DEPTH:
        raise InvalidSpec(
            f"the YAML document nests deeper than {MAX_DEPTH} levels once its aliases are expanded",
            field=field,
        )
    budget = max(MAX_ALIAS_NODES, unique)
    if total - unique > budget:
        raise InvalidSpec(
            f"the YAML document's aliases expand to {total} values from {unique} written "
            f"ones; at most {budget} may come from aliases (write the repeated parts out, "
            "or split the document)",
            field=field,
        )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml_all(text: str | bytes, *, field: str = "body") -> list[Any]:
    """Every non-empty document in ``text``; ``InvalidSpec`` naming ``field`` when the
    YAML is malformed or too costly to build."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, field)  # reading starts here: it may refuse the text
        documents = []
        while loader.check_data():
            document = loader.get_data()
            if document is not None:
                documents.append(document)
        return documents
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = (
            getattr(exc, "problem", None) or (str(exc).splitlines() or ["cannot be parsed"])[0]
        )
        raise InvalidSpec(f"malformed YAML: {problem}{where}", field=field) from None
    except (RecursionError, MemoryError):
        raise InvalidSpec("the YAML document is too large or too deep", field=field) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(text: str | bytes, *, field: str = "body") -> Any:
    """The one document in ``text`` (``None`` when empty); more than one is refused."""
    documents = load_yaml_all(text, field=field)
    if len(documents) > 1:
        raise InvalidSpec(f"{len(documents)} YAML documents where one was expected", field=field)
    return documents[0] if documents else None


def load_json(raw: str | bytes, *, field: str = "body") -> Any:
    """``raw`` parsed as JSON; ``InvalidSpec`` naming ``field`` when malformed or
    nested deeper than :data:`MAX_DEPTH`."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidSpec("malformed JSON: the text is not UTF-8", field=field) from None
    except json.JSONDecodeError as exc:
        raise InvalidSpec(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field=field
        ) from None
    except RecursionError:
        raise InvalidSpec(
            f"the JSON document nests deeper than {MAX_DEPTH} levels", field=field
        ) from None
    except ValueError as exc:  # a huge integer
        raise InvalidSpec(f"malformed JSON: {exc}", field=field) from None
    if _depth(value) > MAX_DEPTH:
        raise InvalidSpec(f"the JSON document nests deeper than {MAX_DEPTH} levels", field=field)
    return value


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest
