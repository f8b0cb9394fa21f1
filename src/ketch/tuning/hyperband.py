"""Katib's ``hyperband``: brackets of successive halving over a resource parameter.

Settings: ``resource_name`` (the parameter that carries the budget, e.g. epochs),
``r_l`` (the most resource a trial gets) and ``eta`` (default 3).

With ``s_max`` the largest ``s`` such that ``eta**s <= r_l``, bracket ``s`` runs from
``s_max`` down to 0. Bracket ``s`` starts with ``n = ceil((s_max + 1) * eta**s / (s + 1))``
random configurations at resource ``r_l * eta**-s``; each following rung retrains the
best ``ceil(size / eta)`` configurations of the previous rung (its succeeded trials,
ranked by the objective) with ``eta`` times the resource, until the rung at ``r_l``.
A rung starts when every trial of the previous one has ended. The resource value is
assigned per trial (truncated to an int for an int parameter, at least 1) and may lie
outside the parameter's feasible space, as in Katib.

Unlike Katib, the rungs are handed out as trial slots free up (``parallelTrialCount``
need not hold a whole rung), ``s_max`` is computed without floating-point error, and
failed trials simply drop out of the ranking.

Labels on each trial: ``tuning.ketch.dev/hyperband-bracket`` and ``-rung``, and for a
retrained configuration ``-parent`` (the trial it continues from).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from ketch.tuning.records import LABEL_PREFIX, TrialRecord, TrialState
from ketch.tuning.searchspace import SearchSpace
from ketch.tuning.strategies import Strategy

BRACKET_LABEL = LABEL_PREFIX + "hyperband-bracket"
RUNG_LABEL = LABEL_PREFIX + "hyperband-rung"
PARENT_LABEL = LABEL_PREFIX + "hyperband-parent"


def max_bracket(r_l: float, eta: float) -> int:
    """The largest ``s`` with ``eta**s <= r_l``."""
    s = 0
    while eta ** (s + 1) <= r_l * (1 + 1e-9):
        s += 1
    return s


def bracket_size(s: int, s_max: int, eta: float) -> int:
    return math.ceil((s_max + 1) * eta**s / (s + 1) - 1e-9)


@dataclass(eq=False)
class _Slot:
    parameters: dict[str, Any]
    parent: str | None = None
    trial: str | None = None  # the trial that took it
    ended: bool = False


@dataclass(eq=False)
class _Rung:
    bracket: int
    index: int
    slots: list[_Slot] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)  # succeeded trial -> score

    def open_slot(self, parent: str | None = None) -> _Slot | None:
        for slot in self.slots:
            if slot.trial is None and (parent is None or slot.parent == parent):
                return slot
        return None

    @property
    def handed_out(self) -> bool:
        return all(slot.trial is not None for slot in self.slots)

    @property
    def ended(self) -> bool:
        return all(slot.ended for slot in self.slots)


class HyperbandStrategy(Strategy):
    def __init__(
        self,
        space: SearchSpace,
        *,
        resource_name: str,
        r_l: float,
        eta: float = 3.0,
        maximize: bool,
        seed: int,
    ) -> None:
        self.space = space
        self.resource = space.codecs[resource_name]
        self.r_l = r_l
        self.eta = eta
        self.maximize = maximize
        self.rng = random.Random(seed)
        self.s_max = max_bracket(r_l, eta)
        self.trials: dict[str, _Slot] = {}
        self.done = False
        self.rung = self._first_rung(self.s_max)

    # -- the schedule -----------------------------------------------------------------

    def resource_at(self, bracket: int, rung: int) -> int | float:
        amount = self.r_l / self.eta ** (bracket - rung)
        if self.resource.kind == "int":
            return max(1, math.floor(amount + 1e-9))
        return amount

    def _first_rung(self, bracket: int) -> _Rung:
        rung = _Rung(bracket, 0)
        resource = self.resource_at(bracket, 0)
        for _ in range(bracket_size(bracket, self.s_max, self.eta)):
            parameters = self.space.sample(self.rng)
            parameters[self.resource.name] = resource
            rung.slots.append(_Slot(parameters))
        return rung

    def _advance(self) -> None:
        """The rung has ended: retrain its best, or open the next bracket."""
        rung = self.rung
        while True:
            if rung.index < rung.bracket and rung.results:
                keep = math.ceil(len(rung.slots) / self.eta - 1e-9)
                ranked = sorted(rung.results, key=lambda name: -rung.results[name])[:keep]
                following = _Rung(rung.bracket, rung.index + 1)
                resource = self.resource_at(rung.bracket, rung.index + 1)
                for parent in ranked:
                    parameters = dict(self.trials[parent].parameters)
                    parameters[self.resource.name] = resource
                    following.slots.append(_Slot(parameters, parent=parent))
                self.rung = following
                return
            if rung.bracket == 0:
                self.done = True
                return
            rung = self._first_rung(rung.bracket - 1)
            self.rung = rung
            if rung.slots:
                return

    # -- the strategy -----------------------------------------------------------------

    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        if self.done:
            return None
        slot = self.rung.open_slot()
        if slot is None:
            return None
        return dict(slot.parameters), self._take(slot, name), {}

    def _take(self, slot: _Slot, name: str) -> dict[str, str]:
        slot.trial = name
        self.trials[name] = slot
        labels = {BRACKET_LABEL: str(self.rung.bracket), RUNG_LABEL: str(self.rung.index)}
        if slot.parent is not None:
            labels[PARENT_LABEL] = slot.parent
        return labels

    def finish(self, name: str, state: TrialState, values: list[float] | None) -> None:
        slot = self.trials.get(name)
        if slot is None or slot.ended:
            return
        slot.ended = True
        if not any(s is slot for s in self.rung.slots):
            return
        if state == "succeeded" and values and math.isfinite(values[0]):
            self.rung.results[name] = values[0] if self.maximize else -values[0]
        if self.rung.handed_out and self.rung.ended and not self.done:
            self._advance()

    def restore(self, history: list[TrialRecord]) -> None:
        def position(record: TrialRecord) -> tuple[int, int]:
            return -int(record.labels[BRACKET_LABEL]), int(record.labels[RUNG_LABEL])

        ours = [r for r in history if BRACKET_LABEL in r.labels and RUNG_LABEL in r.labels]
        for record in sorted(ours, key=position):
            bracket, index = -position(record)[0], position(record)[1]
            while not self.done and (self.rung.bracket, -self.rung.index) > (bracket, -index):
                self._skip_rung()
            if self.done or (self.rung.bracket, self.rung.index) != (bracket, index):
                continue
            slot = self.rung.open_slot(record.labels.get(PARENT_LABEL)) or self.rung.open_slot()
            if slot is None:
                slot = _Slot({}, parent=record.labels.get(PARENT_LABEL))
                self.rung.slots.append(slot)
            slot.parameters = dict(record.parameters)
            self._take(slot, record.name)
            if record.state != "running":
                self.finish(record.name, record.state, record.values)

    def _skip_rung(self) -> None:
        """The stored trials are past this rung (it cannot be rebuilt): close it."""
        for slot in self.rung.slots:
            slot.trial = slot.trial or ""
            slot.ended = True
        self._advance()

    @property
    def exhausted(self) -> bool:
        return self.done or (
            self.rung.bracket == 0 and self.rung.index == 0 and self.rung.handed_out
        )
