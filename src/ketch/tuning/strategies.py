"""Algorithms that choose whole configurations themselves: grid and Sobol here,
CMA-ES, Hyperband and PBT in their own modules.

The :class:`~ketch.tuning.algorithms.Suggester` enqueues what they propose into its
Optuna study (the study stays the record of every trial) and tells them how each
trial ended. Their state is a function of the seed and the trials they saw, so a
restarted suggester rebuilds it from the stored trials with :meth:`Strategy.restore`.
"""

from __future__ import annotations

import itertools
import random
import warnings
from abc import ABC, abstractmethod
from typing import Any

from ketch.tuning.records import TrialRecord, TrialState
from ketch.tuning.searchspace import SearchSpace


class Strategy(ABC):
    """Proposes configurations; told how trials ended."""

    @abstractmethod
    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        """``(typed parameters, labels, env)`` for a new trial called ``name`` (now counted
        as handed out), or None when there is nothing to run now."""

    def finish(self, name: str, state: TrialState, values: list[float] | None) -> None:  # noqa: B027
        """Trial ``name`` ended in ``state`` with the objective ``values`` (default: nothing)."""

    @abstractmethod
    def restore(self, history: list[TrialRecord]) -> None:
        """Rebuild the state from stored trials (finished and running)."""

    @property
    def exhausted(self) -> bool:
        """Nothing will ever be proposed again."""
        return False


def _key(space: SearchSpace, parameters: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        codec.parameter.format(parameters[name]) if name in parameters else ""
        for name, codec in space.codecs.items()
    )


class GridStrategy(Strategy):
    """Every combination once, in an order shuffled by the seed (as Optuna's
    ``GridSampler`` does), skipping points a stored trial already took."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        names = list(space.codecs)
        axes = [space.codecs[name].grid() for name in names]
        self.points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
        random.Random(seed).shuffle(self.points)
        self.taken: set[tuple[str, ...]] = set()
        self._next = 0

    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        while self._next < len(self.points):
            point = self.points[self._next]
            self._next += 1
            key = _key(self.space, point)
            if key not in self.taken:
                self.taken.add(key)
                return dict(point), {}, {}
        return None

    def restore(self, history: list[TrialRecord]) -> None:
        self.taken.update(_key(self.space, record.parameters) for record in history)

    @property
    def exhausted(self) -> bool:
        return all(_key(self.space, p) in self.taken for p in self.points[self._next :])


class SobolStrategy(Strategy):
    """Katib's ``sobol``: the unscrambled Sobol sequence over the unit cube, mapped
    through each parameter's distribution; the n-th trial gets the n-th point."""

    def __init__(self, space: SearchSpace) -> None:
        from scipy.stats import qmc

        self.space = space
        self.engine = qmc.Sobol(d=len(space.codecs), scramble=False)
        self.drawn = 0

    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "balance properties ... power of 2"
            point = self.engine.random(1)[0]
        self.drawn += 1
        values = {
            name: codec.from_unit(u)
            for (name, codec), u in zip(self.space.codecs.items(), point, strict=True)
        }
        return values, {}, {}

    def restore(self, history: list[TrialRecord]) -> None:
        if history:
            self.engine.fast_forward(len(history))
            self.drawn += len(history)
