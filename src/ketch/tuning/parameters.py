"""An Experiment's search parameters (``spec.parameters``): their typed model and
Katib's checks of them.

A parameter is ``double`` or ``int`` (``feasibleSpace.min``/``max``, an optional
``step``, a ``distribution``: ``uniform`` by default, ``logUniform``, ``normal``,
``logNormal``), or ``discrete`` or ``categorical`` (``feasibleSpace.list``). Katib
keeps every value as text; :class:`ParameterSpec` turns an assignment's text into
its typed value (:meth:`~ParameterSpec.coerce`) and back
(:meth:`~ParameterSpec.format`). How a parameter is searched is
:mod:`ketch.tuning.searchspace`'s.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from ketch.core.errors import InvalidSpec
from ketch.core.spec import SpecModel

ParameterType = Literal["double", "int", "discrete", "categorical"]
Distribution = Literal["uniform", "logUniform", "normal", "logNormal"]

_INT = re.compile(r"^[+-]?\d+$")
_Texts = list[str]  # FeasibleSpace has a field named ``list``


def as_text(value: Any) -> Any:
    """Katib's quantities are strings; accept the numbers YAML makes of them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return value


class FeasibleSpace(SpecModel):
    min: str | None = None
    max: str | None = None
    step: str | None = None
    list: _Texts | None = None
    distribution: Distribution = "uniform"

    @field_validator("min", "max", "step", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return as_text(value)

    @field_validator("list", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [as_text(v) for v in value]
        return value

    @field_validator("distribution", mode="before")
    @classmethod
    def _default_distribution(cls, value: Any) -> Any:
        return "uniform" if value in (None, "") else value


class ParameterSpec(SpecModel):
    name: str
    parameterType: ParameterType
    feasibleSpace: FeasibleSpace = Field(default_factory=FeasibleSpace)

    # numeric bounds (double and int); valid after parse_experiment
    @property
    def low(self) -> float:
        return float(self.feasibleSpace.min or 0)

    @property
    def high(self) -> float:
        return float(self.feasibleSpace.max or 0)

    @property
    def step(self) -> float | None:
        """The step of a numeric parameter (an int parameter's default step is 1)."""
        raw = self.feasibleSpace.step
        if raw not in (None, ""):
            return float(raw)
        return 1.0 if self.parameterType == "int" else None

    @property
    def choices(self) -> list[str]:
        return list(self.feasibleSpace.list or [])

    @property
    def distribution(self) -> Distribution:
        return self.feasibleSpace.distribution

    def coerce(self, value: str) -> Any:
        """The typed value of an assignment (Katib stores ``parameterAssignments`` as text):
        ``int`` for int, ``float`` for double, ``int``/``float`` for discrete, ``str`` for
        categorical. Raises ``ValueError`` when the text does not fit the type."""
        text = str(value).strip()
        if self.parameterType == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError(f"parameter {self.name!r} is an int; got {value!r}")
            return int(number)
        if self.parameterType == "double":
            return float(text)
        if self.parameterType == "discrete":
            return _number(text)
        return str(value)

    def format(self, value: Any) -> str:
        """The text Katib stores for ``value``: ints as ``"3"``, doubles round-trip exact
        (``repr``), a discrete value as it is written in ``feasibleSpace.list``."""
        if self.parameterType == "int":
            return str(int(value))
        if self.parameterType == "double":
            return repr(float(value))
        if self.parameterType == "discrete":
            for entry in self.choices:
                if _number(entry) == value:
                    return entry
            return repr(value) if isinstance(value, float) else str(value)
        return str(value)

    def sample_value(self) -> Any:
        """One value from the feasible space (its lower bound, or its first choice):
        what stands in for a suggestion when a trial template is checked."""
        if self.parameterType in ("categorical", "discrete"):
            return self.coerce(self.choices[0]) if self.choices else ""
        return int(self.low) if self.parameterType == "int" else self.low

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (typed) lies in the feasible space."""
        if self.parameterType in ("categorical", "discrete"):
            return any(self.coerce(entry) == value for entry in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.parameterType == "int" and not float(value).is_integer():
            return False
        tolerance = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        return self.low - tolerance <= value <= self.high + tolerance


def _number(text: str) -> int | float:
    return int(text) if _INT.match(text.strip()) else float(text)


# -- Katib's checks ----------------------------------------------------------


def check_parameters(parameters: list[ParameterSpec]) -> None:
    """Katib's checks of ``spec.parameters``: names given once, numeric bounds (and
    step) for double and int, a list of values for discrete and categorical."""
    if not parameters:
        raise InvalidSpec(
            "at least one parameter is required (name, parameterType, feasibleSpace)",
            field="spec.parameters",
        )
    seen: set[str] = set()
    for index, parameter in enumerate(parameters):
        where = f"spec.parameters[{index}]"
        if not parameter.name:
            raise InvalidSpec("is required", field=f"{where}.name")
        if parameter.name in seen:
            raise InvalidSpec(
                f"parameter {parameter.name!r} is defined twice", field=f"{where}.name"
            )
        seen.add(parameter.name)
        if parameter.parameterType in ("double", "int"):
            _check_numeric(parameter, f"{where}.feasibleSpace")
        else:
            _check_listed(parameter, f"{where}.feasibleSpace")


def _check_numeric(parameter: ParameterSpec, where: str) -> None:
    space = parameter.feasibleSpace
    kind = parameter.parameterType
    if space.list:
        raise InvalidSpec(
            f"feasibleSpace.list is not supported for parameterType {kind}; give min and max",
            field=f"{where}.list",
        )
    bounds: dict[str, float] = {}
    for key in ("min", "max"):
        text = getattr(space, key)
        if text in (None, ""):
            raise InvalidSpec(
                f"is required for parameterType {kind} (feasibleSpace.min and max)",
                field=f"{where}.{key}",
            )
        try:
            bounds[key] = float(text)
        except ValueError:
            raise InvalidSpec(f"{text!r} is not a number", field=f"{where}.{key}") from None
        if not math.isfinite(bounds[key]):
            raise InvalidSpec(f"{text!r} must be a finite number", field=f"{where}.{key}")
        if kind == "int" and not bounds[key].is_integer():
            raise InvalidSpec(f"{text!r} is not an integer", field=f"{where}.{key}")
    if bounds["min"] > bounds["max"]:
        raise InvalidSpec(f"max {space.max} is less than min {space.min}", field=f"{where}.max")
    if space.step not in (None, ""):
        try:
            step = float(space.step)
        except ValueError:
            raise InvalidSpec(f"{space.step!r} is not a number", field=f"{where}.step") from None
        if not step > 0 or not math.isfinite(step):
            raise InvalidSpec("must be greater than 0", field=f"{where}.step")
        if kind == "int" and not step.is_integer():
            raise InvalidSpec(f"{space.step!r} is not an integer", field=f"{where}.step")
    if space.distribution in ("logUniform", "logNormal") and bounds["min"] <= 0:
        raise InvalidSpec(
            f"a {space.distribution} parameter needs min > 0 (got {space.min})",
            field=f"{where}.min",
        )


def _check_listed(parameter: ParameterSpec, where: str) -> None:
    space = parameter.feasibleSpace
    kind = parameter.parameterType
    for key in ("min", "max", "step"):
        if getattr(space, key) not in (None, ""):
            raise InvalidSpec(
                f"feasibleSpace.{key} is not supported for parameterType {kind}; "
                "give the values in feasibleSpace.list",
                field=f"{where}.{key}",
            )
    if not space.list:
        raise InvalidSpec(
            f"is required for parameterType {kind} (the values to choose from)",
            field=f"{where}.list",
        )
    if len(set(space.list)) != len(space.list):
        raise InvalidSpec("has a value listed twice", field=f"{where}.list")
    if kind == "discrete":
        for index, entry in enumerate(space.list):
            try:
                value = _number(entry)
            except ValueError:
                raise InvalidSpec(
                    f"{entry!r} is not a number; use parameterType categorical for text values",
                    field=f"{where}.list[{index}]",
                ) from None
            if not math.isfinite(value):
                raise InvalidSpec(f"{entry!r} must be finite", field=f"{where}.list[{index}]")
