"""Katib's parameters as Optuna distributions and as points of the unit cube.

Each parameter gets a :class:`Codec` that maps between

- the typed value a trial receives (``int``, ``float``, ``str``),
- what Optuna samples (its distribution and the parameter's value there), and
- a coordinate ``u`` in ``[0, 1]`` that follows the parameter's distribution (the
  grid-free algorithms — Sobol, CMA-ES, Hyperband's and PBT's random draws — work
  there: ``u`` drawn uniformly gives a value drawn from the distribution).

Distributions:

- ``uniform``: Optuna's ``FloatDistribution``/``IntDistribution`` with the step;
- ``logUniform``: the same with ``log=True``; a log parameter with a step (Optuna
  has no such distribution) is sampled log-uniformly, then snapped to the step;
- ``normal``: a normal distribution truncated to ``[min, max]``, with mean the
  middle and standard deviation a sixth of the width (the interval is ±3σ, as
  Katib's hyperopt service chooses μ and σ). Optuna samples the quantile
  ``u ∈ [0, 1]`` uniformly (model-based samplers model ``u``), and the value is the
  inverse of the truncated normal's CDF at ``u``; so values stay within bounds,
  which Katib's unbounded normal does not promise;
- ``logNormal``: the same on ``log(value)``.

Int parameters and parameters with a step are snapped to ``min + k·step`` (exactly:
the step arithmetic is decimal, so ``0.1 + 3·0.1`` is ``0.4``).
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ketch.tuning.parameters import FeasibleSpace, ParameterSpec

_STANDARD = NormalDist()
_TAIL = 3.0  # the interval [min, max] is mean ± 3σ
_LOW_P = _STANDARD.cdf(-_TAIL)
_HIGH_P = _STANDARD.cdf(_TAIL)


class Codec:
    """How one parameter is sampled and mapped; see the module docstring."""

    def __init__(self, parameter: ParameterSpec) -> None:
        self.parameter = parameter
        self.name = parameter.name
        self.kind = parameter.parameterType
        self.categorical = self.kind in ("categorical", "discrete")
        self.distribution_name = parameter.distribution
        if self.categorical:
            self.choices = parameter.choices
            self.values = [parameter.coerce(c) for c in self.choices]
            self.distribution: BaseDistribution = CategoricalDistribution(self.choices)
            self._latent = False
            return
        self.low = parameter.low
        self.step = parameter.step
        self.high = _top(self.low, parameter.high, self.step)
        self.log = self.distribution_name in ("logUniform", "logNormal")
        self.normal = self.distribution_name in ("normal", "logNormal")
        self._latent = self.normal
        if self.normal:
            self.distribution = FloatDistribution(0.0, 1.0)
        elif self.kind == "int" and (not self.log or self.step == 1.0):
            self.distribution = IntDistribution(
                int(self.low),
                int(self.high),
                log=self.log,
                step=1 if self.log else int(self.step or 1),
            )
        elif self.log:
            self.distribution = FloatDistribution(self.low, parameter.high, log=True)
        else:
            self.distribution = FloatDistribution(self.low, self.high, step=self.step)

    # -- Optuna's side ------------------------------------------------------------

    def value(self, internal: Any) -> Any:
        """The typed value of what Optuna sampled."""
        if self.categorical:
            return self.parameter.coerce(str(internal))
        if self._latent:
            return self.from_unit(float(internal))
        return self.clip(internal)

    def internal(self, value: Any) -> Any:
        """What Optuna stores for the typed ``value`` (to enqueue or add a trial)."""
        if self.categorical:
            return self.parameter.format(value)
        if self._latent:
            return self.to_unit(value)
        if isinstance(self.distribution, IntDistribution):
            return int(value)
        return float(value)

    # -- the unit cube --------------------------------------------------------------

    def from_unit(self, u: float) -> Any:
        """The value at coordinate ``u`` in [0, 1] (uniform ``u`` follows the distribution)."""
        u = min(max(float(u), 0.0), 1.0)
        if self.categorical:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        if self._evenly_stepped:
            n = _count(self.low, self.parameter.high, self.step)  # type: ignore[arg-type]
            return self.clip(_at(self.low, self.step, min(int(u * n), n - 1)))  # type: ignore[arg-type]
        low, high = self._edges()
        if self.normal:
            mean, sigma = (low + high) / 2, (high - low) / (2 * _TAIL)
            p = _LOW_P + u * (_HIGH_P - _LOW_P)
            x = mean + sigma * _STANDARD.inv_cdf(p) if sigma > 0 else mean
        else:
            x = low + u * (high - low)
        return self.clip(math.exp(x) if self.log else x)

    def to_unit(self, value: Any) -> float:
        """The coordinate of ``value`` (the inverse of :meth:`from_unit`)."""
        if self.categorical:
            index = self.values.index(value) if value in self.values else 0
            return (index + 0.5) / len(self.values)
        if self._evenly_stepped:
            n = _count(self.low, self.parameter.high, self.step)  # type: ignore[arg-type]
            k = round((float(value) - self.low) / self.step)  # type: ignore[operator]
            return (min(max(k, 0), n - 1) + 0.5) / n
        low, high = self._edges()
        x = math.log(max(float(value), 1e-300)) if self.log else float(value)
        if high <= low:
            return 0.5
        if self.normal:
            mean, sigma = (low + high) / 2, (high - low) / (2 * _TAIL)
            p = _STANDARD.cdf((x - mean) / sigma)
            u = (p - _LOW_P) / (_HIGH_P - _LOW_P)
        else:
            u = (x - low) / (high - low)
        return min(max(u, 0.0), 1.0)

    @property
    def _evenly_stepped(self) -> bool:
        """A uniform parameter on a grid: each grid point gets an equal share of [0, 1]."""
        return not self.normal and not self.log and self.step is not None

    def _edges(self) -> tuple[float, float]:
        low, high = self.low, self.parameter.high
        return (math.log(low), math.log(high)) if self.log else (low, high)

    # -- values ---------------------------------------------------------------------

    def clip(self, value: Any) -> Any:
        """``value`` moved into the feasible space: clamped, snapped to the step, typed."""
        if self.categorical:
            if value in self.values:
                return value
            if self.kind == "discrete" and isinstance(value, (int, float)):
                return min(self.values, key=lambda v: abs(float(v) - float(value)))
            return self.values[0]
        x = min(max(float(value), self.low), self.parameter.high)
        if self.step is not None:
            k = round((x - self.low) / self.step)
            k = min(max(k, 0), _count(self.low, self.parameter.high, self.step) - 1)
            x = _at(self.low, self.step, k)
        if self.kind == "int":
            return int(round(x))
        return float(x)

    def grid(self) -> list[Any]:
        """Every value, for a grid search; ``ValueError`` for a double without a step."""
        if self.categorical:
            return list(self.values)
        if self.step is None:
            raise ValueError(f"parameter {self.name!r} is continuous: give feasibleSpace.step")
        points = [
            _at(self.low, self.step, k)
            for k in range(_count(self.low, self.parameter.high, self.step))
        ]
        return [int(round(p)) for p in points] if self.kind == "int" else points

    def grid_size(self) -> int | None:
        if self.categorical:
            return len(self.values)
        if self.step is None:
            return None
        return _count(self.low, self.parameter.high, self.step)


def _count(low: float, high: float, step: float) -> int:
    """How many of ``low + k·step`` lie in ``[low, high]``."""
    return int(math.floor((high - low) / step + 1e-9)) + 1


def _at(low: float, step: float, k: int) -> float:
    return float(Decimal(repr(low)) + k * Decimal(repr(step)))


def _top(low: float, high: float, step: float | None) -> float:
    """The largest ``low + k·step`` not above ``high`` (Optuna wants ``high`` on the grid)."""
    if step is None:
        return high
    return _at(low, step, _count(low, high, step) - 1)


class SearchSpace:
    """The codecs of an experiment's parameters, in spec order."""

    def __init__(
        self,
        parameters: list[ParameterSpec],
        *,
        bounds: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """``bounds`` replaces the range of numeric parameters, which become uniform
        without a step (Hyperband's resource parameter takes values outside its range)."""
        self.codecs: dict[str, Codec] = {}
        for parameter in parameters:
            if bounds and parameter.name in bounds:
                low, high = bounds[parameter.name]
                integer = parameter.parameterType == "int"
                space: FeasibleSpace = parameter.feasibleSpace.model_copy(
                    update={
                        "min": str(int(low)) if integer else repr(float(low)),
                        "max": str(int(high)) if integer else repr(float(high)),
                        "step": None,
                        "distribution": "uniform",
                    }
                )
                parameter = parameter.model_copy(update={"feasibleSpace": space})
            self.codecs[parameter.name] = Codec(parameter)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: codec.distribution for name, codec in self.codecs.items()}

    def values(self, internal: dict[str, Any]) -> dict[str, Any]:
        """Typed values of an Optuna trial's parameters."""
        return {
            name: self.codecs[name].value(v) for name, v in internal.items() if name in self.codecs
        }

    def internals(self, values: dict[str, Any]) -> dict[str, Any]:
        """Optuna's parameters for typed ``values``."""
        return {
            name: self.codecs[name].internal(v) for name, v in values.items() if name in self.codecs
        }

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One draw from every parameter's distribution."""
        return {name: codec.from_unit(rng.random()) for name, codec in self.codecs.items()}

    def grid_size(self) -> int | None:
        """How many points a grid over every parameter has (None: a continuous parameter)."""
        total = 1
        for codec in self.codecs.values():
            size = codec.grid_size()
            if size is None:
                return None
            total *= size
        return total
