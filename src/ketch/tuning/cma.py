"""Katib's ``cmaes``: CMA-ES (the ``cmaes`` library, as Optuna's ``CmaEsSampler`` uses it)
with Katib's settings, including the restarts Optuna no longer offers.

- Numeric parameters are searched in the unit cube (see
  :mod:`ketch.tuning.searchspace`), starting from its centre with step size
  ``sigma`` (default 1/6, Optuna's); categorical and discrete parameters are drawn at
  random (Optuna's independent sampler does the same).
- Each trial gets one ``ask()``; when ``population_size`` trials of the current
  generation have succeeded, they are told (failed trials are replaced by new asks).
- ``restart_strategy``: ``ipop`` restarts a converged search from a random mean with
  twice the population; ``bipop`` alternates such large-population runs with
  small-population, small-step runs, spending about as many evaluations on each
  (Hansen, 2009).
- A restarted suggester replays the stored trials in order through the same steps,
  so the same seed and trials give the same state.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ketch.tuning.records import TrialRecord, TrialState
from ketch.tuning.searchspace import Codec, SearchSpace
from ketch.tuning.strategies import Strategy

DEFAULT_SIGMA = 1 / 6


@dataclass
class _Asked:
    run: int
    generation: int
    x: np.ndarray


class CmaStrategy(Strategy):
    def __init__(
        self,
        space: SearchSpace,
        *,
        maximize: bool,
        seed: int,
        sigma: float | None = None,
        restart_strategy: str | None = None,
    ) -> None:
        self.numeric: list[Codec] = [c for c in space.codecs.values() if not c.categorical]
        self.categorical: list[Codec] = [c for c in space.codecs.values() if c.categorical]
        self.maximize = maximize
        self.rng = random.Random(seed)
        self.sigma0 = sigma or DEFAULT_SIGMA
        restart = (restart_strategy or "none").lower()
        self.restart = restart if restart in ("ipop", "bipop") else None
        dim = len(self.numeric)
        self.popsize0 = 4 + math.floor(3 * math.log(dim))
        self.run = 0
        self.large_runs = 0
        self.budget = {"large": 0, "small": 0}
        self.regime = "large"
        self.asked: dict[str, _Asked] = {}
        self.solutions: list[tuple[np.ndarray, float]] = []
        self._start(np.full(dim, 0.5), self.sigma0, self.popsize0)

    def _start(self, mean: np.ndarray, sigma: float, popsize: int) -> None:
        from cmaes import CMA

        bounds = np.array([[0.0, 1.0]] * len(self.numeric))
        self.cma = CMA(
            mean=mean,
            sigma=sigma,
            bounds=bounds,
            seed=self.rng.randrange(2**31),
            population_size=popsize,
        )
        self.run += 1
        self.solutions = []

    # -- the strategy ---------------------------------------------------------------

    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        x = self.cma.ask()
        values: dict[str, Any] = {
            c.name: c.from_unit(u) for c, u in zip(self.numeric, x, strict=True)
        }
        for codec in self.categorical:
            values[codec.name] = codec.from_unit(self.rng.random())
        self._remember(name, values)
        return values, {}, {}

    def _remember(self, name: str, values: dict[str, Any]) -> None:
        # what is told is the point the trial ran (ints and steps snapped), as Optuna does
        x = np.array([c.to_unit(values[c.name]) for c in self.numeric])
        self.asked[name] = _Asked(self.run, self.cma.generation, x)

    def finish(self, name: str, state: TrialState, values: list[float] | None) -> None:
        asked = self.asked.get(name)
        if asked is None or state != "succeeded" or not values or not math.isfinite(values[0]):
            return
        if asked.run != self.run or asked.generation != self.cma.generation:
            return  # an older generation's straggler
        y = -values[0] if self.maximize else values[0]
        self.solutions.append((asked.x, y))
        if len(self.solutions) < self.cma.population_size:
            return
        self.cma.tell(self.solutions)
        self.budget[self.regime] += len(self.solutions)
        self.solutions = []
        if self.restart and self.cma.should_stop():
            self._restart()

    def _restart(self) -> None:
        dim = len(self.numeric)
        mean = np.array([self.rng.random() for _ in range(dim)])
        if (
            self.restart == "ipop"
            or self.large_runs == 0
            or self.budget["small"] >= self.budget["large"]
        ):
            self.large_runs += 1
            self.regime = "large"
            self._start(mean, self.sigma0, self.popsize0 * 2**self.large_runs)
            return
        self.regime = "small"
        u = self.rng.random()
        ratio = 0.5 * (self.popsize0 * 2**self.large_runs) / self.popsize0
        popsize = max(self.popsize0, math.floor(self.popsize0 * ratio ** (u * u)))
        self._start(mean, self.sigma0 * 10 ** (-2 * self.rng.random()), popsize)

    def restore(self, history: list[TrialRecord]) -> None:
        for record in history:
            if any(c.name not in record.parameters for c in self.numeric):
                continue
            self._remember(record.name, record.parameters)
            if record.state != "running":
                self.finish(record.name, record.state, record.values)
