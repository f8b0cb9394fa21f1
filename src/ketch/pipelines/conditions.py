"""Trigger conditions (``dsl.If``/``Elif``/``Else``, ``dsl.Condition``), evaluated with CEL.

The KFP compiler writes conditions as CEL over ``inputs.parameter_values``;
they are compiled once per run (a :class:`Conditions` per engine) and evaluated
with a real CEL implementation — user strings are never passed to ``eval``.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from ketch.core.errors import InvalidSpec


class Conditions:
    """Evaluates a run's trigger conditions, each compiled once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._programs: dict[str, Any] = {}

    def _program(self, expression: str) -> Any:
        program = self._programs.get(expression)
        if program is None:
            import celpy

            env = celpy.Environment()
            try:
                program = env.program(env.compile(expression))
            except Exception as exc:  # celpy raises its own parse errors
                raise InvalidSpec(f"cannot parse condition {expression!r}: {exc}") from exc
            self._programs[expression] = program
        return program

    def evaluate(self, expression: str, parameter_values: dict[str, Any], where: str) -> bool:
        """Evaluate a trigger condition against the task's resolved input parameters."""
        import celpy

        with self._lock:  # celpy programs are not documented as thread-safe
            program = self._program(expression)
            activation = {"inputs": celpy.json_to_cel({"parameter_values": parameter_values})}
            try:
                result = program.evaluate(activation)
            except Exception as exc:
                raise InvalidSpec(f"condition {expression!r} failed: {exc}", field=where) from exc
        if isinstance(result, Exception):  # celpy returns CELEvalError values
            raise InvalidSpec(f"condition {expression!r} failed: {result}", field=where)
        return bool(result)


_SELECTOR = re.compile(r"""^parseJson\(string_value\)((?:\[(?:"[^"]*"|'[^']*'|\d+)\])+)$""")
_KEY = re.compile(r"""\[(?:"([^"]*)"|'([^']*)'|(\d+))\]""")


def select(expression: str, value: Any, where: str) -> Any:
    """Apply a ``parameterExpressionSelector`` (loop item sub-field access).

    The compiler writes ``parseJson(string_value)["key"]`` for
    ``item.key`` on a ParallelFor item that is a mapping.
    """
    match = _SELECTOR.match(expression.strip())
    if not match:
        raise InvalidSpec(f"unsupported parameter expression {expression!r}", field=where)
    current = json.loads(value) if isinstance(value, str) else value
    for key_dq, key_sq, index in _KEY.findall(match.group(1)):
        try:
            if index:
                current = current[int(index)]
            else:
                current = current[key_dq or key_sq]
        except (KeyError, IndexError, TypeError):
            raise InvalidSpec(
                f"loop item {value!r} has no field {key_dq or key_sq or index!r}", field=where
            ) from None
    return current
