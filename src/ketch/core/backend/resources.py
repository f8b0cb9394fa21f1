"""Kubernetes resource quantities: ``"500m"`` CPU, ``"1Gi"`` memory, plain numbers.

A quantity is a decimal number (``"2"``, ``"0.5"``, ``"1e3"``) followed by an
optional suffix: a binary one (``Ki Mi Gi Ti Pi Ei``, powers of 1024) or a decimal
one (``n u m k M G T P E``, powers of 1000), as Kubernetes writes them.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from ketch.core.errors import InvalidSpec

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_DECIMAL_EXPONENTS = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_QUANTITY = re.compile(
    r"^\s*(?P<number>[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)\s*$"
)


def exact_quantity(value: str | float | int, what: str = "") -> Fraction:
    """``value`` exactly, as a fraction (``"500m"`` -> 1/2, ``"1Gi"`` -> 1073741824,
    ``"0.1"`` -> 1/10), for sums that must not drift (quota arithmetic); a number
    given as a float is read as the decimal it prints as."""
    label = f"{what} quantity" if what else "quantity"
    if isinstance(value, bool) or not isinstance(value, str | float | int):
        raise InvalidSpec(f"invalid {label} {value!r}", hint="write e.g. '500m', '2', '1Gi'")
    match = _QUANTITY.match(str(value))
    if match is None:
        raise InvalidSpec(
            f"invalid {label} {value!r}",
            hint="write a Kubernetes quantity such as '500m', '2', '512Mi' or '1G'",
        )
    suffix = match.group("suffix")
    if suffix in _BINARY:
        scale = Fraction(_BINARY[suffix])
    else:
        scale = Fraction(10) ** _DECIMAL_EXPONENTS[suffix]
    return Fraction(match.group("number")) * scale


def _quantity(value: str | float | int, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidSpec(
            f"invalid {what} quantity {value!r}", hint="write e.g. '500m', '2', '1Gi'"
        )
    if isinstance(value, int | float):
        number = float(value)
    else:
        match = _QUANTITY.match(str(value))
        if match is None:
            raise InvalidSpec(
                f"invalid {what} quantity {value!r}",
                hint="write a Kubernetes quantity such as '500m', '2', '512Mi' or '1G'",
            )
        suffix = match.group("suffix")
        scale = _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
        number = float(match.group("number")) * scale
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise InvalidSpec(f"invalid {what} quantity {value!r}: must be a finite number >= 0")
    return number


def parse_cpu(value: str | float | int) -> float:
    """CPU cores: ``"500m"`` -> 0.5, ``"2"`` -> 2.0, ``1.5`` -> 1.5."""
    return _quantity(value, "CPU")


def parse_memory(value: str | float | int) -> int:
    """Bytes, rounded up: ``"1Gi"`` -> 1073741824, ``"512M"`` -> 512000000."""
    return math.ceil(_quantity(value, "memory"))
