"""Parameter values: KFP's parameter types, checked and kept exact (an int stays an int)."""

from __future__ import annotations

import json
import math
from typing import Any

from ketch.core.errors import InvalidSpec

_NAMES = {
    "STRING": "a string",
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "a boolean",
    "LIST": "a list",
    "STRUCT": "a mapping (STRUCT)",
}


_EXACT = 2**53  # beyond this a double no longer holds every integer


def integral(value: Any) -> Any:
    """Integral doubles as ints, inside lists and mappings too.

    The IR stores every number as a protobuf double and the KFP backend writes
    a double with no fraction as an integer (``[1, 2, 3]``, not ``[1.0, 2.0, 3.0]``)
    when it hands values to a component, so Ketch does the same.
    """
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT:
            return int(value)
        return value
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    return value


def coerce(value: Any, ptype: str | None, where: str) -> Any:
    """Check ``value`` against a KFP parameter type and normalise it.

    Strings are parsed for non-string types (CLI ``--param n=3``); integral
    floats become ints (IR constants are written as 3.0), inside lists and
    mappings too, as the KFP backend passes them: it stores every number as a
    double and writes one with no fraction as an integer.
    """
    if value is None or ptype in ("TASK_FINAL_STATUS", "TASK_CONFIG"):
        return value
    if not ptype:
        return integral(value)
    if ptype == "STRING":
        if isinstance(value, str):
            return value
        return json.dumps(integral(value)) if isinstance(value, list | dict | bool) else str(value)
    if isinstance(value, str):
        text = value.strip()
        if ptype == "BOOLEAN" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise _type_error(value, ptype, where) from None
    if ptype == "NUMBER_INTEGER":
        if isinstance(value, bool):
            raise _type_error(value, ptype, where)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise _type_error(value, ptype, where)
    if ptype == "NUMBER_DOUBLE":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(value, ptype, where)
        return integral(value)  # the backend hands 2.0 over as 2, 2.5 as 2.5
    if ptype == "BOOLEAN":
        if not isinstance(value, bool):
            raise _type_error(value, ptype, where)
        return value
    if ptype == "LIST":
        if not isinstance(value, list):
            raise _type_error(value, ptype, where)
        return integral(value)
    if ptype == "STRUCT":
        if not isinstance(value, dict):
            raise _type_error(value, ptype, where)
        return integral(value)
    return value


def _type_error(value: Any, ptype: str, where: str) -> InvalidSpec:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidSpec(f"expected {_NAMES.get(ptype, ptype)}, got {shown}", field=where)


def to_placeholder_text(value: Any) -> str:
    """How a parameter value appears inside a command line placeholder.

    As the KFP launcher writes it: a number with no fraction as an integer
    (``3``, not ``3.0``), booleans as ``true``/``false``, lists and mappings as JSON.
    """
    if isinstance(value, str):
        return value
    return json.dumps(integral(value))


def from_output_file(text: str, ptype: str | None) -> Any:
    """Read an output parameter a component wrote to its output file."""
    if ptype in (None, "STRING"):
        return text
    stripped = text.strip()
    if ptype == "BOOLEAN":
        return stripped.lower() == "true"
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return text
    if ptype in ("NUMBER_INTEGER", "NUMBER_DOUBLE", "LIST", "STRUCT"):
        return integral(value)
    return value
