"""Katib's ``pbt``: population based training (Jaderberg et al., 2017).

Settings: ``n_population`` (≥ 5), ``truncation_threshold`` (the fraction exploited),
``resample_probability`` (optional) and ``suggestion_trial_dir`` (where the trial
template expects its checkpoint directory).

- Generation 0 is ``n_population`` random configurations. A generation is complete
  when every member has succeeded (a failed or killed member is run again, as Katib
  does).
- The next generation: members are ranked by the objective; each of the bottom
  ``truncation_threshold`` fraction (at most half) *exploits* a member drawn from the
  top fraction — it takes that member's parameters and checkpoint — then *explores*:
  each parameter is resampled from its distribution with ``resample_probability``,
  or, without that setting, a numeric value is multiplied by 0.8 or 1.2 and a
  categorical one moves to a neighbouring value (Katib's perturbation). Every other
  member continues from its own checkpoint with its parameters. (Katib's service
  gives an exploited member its own old checkpoint; Ketch copies the donor's, as the
  paper does.)
- Each trial is labelled with Katib's ``pbt.suggestion.katib.kubeflow.org/generation``
  and ``/parent`` (the trial whose checkpoint it starts from) and with
  ``tuning.ketch.dev/pbt-member``.
- Checkpoints: with a ``workdir``, the trial's directory ``<workdir>/<trial>`` is
  created (a copy of its parent's directory) when the suggestion is made, and handed
  to the trial as ``KETCH_CHECKPOINT_DIR``; the trial reads and writes its
  checkpoint there. Katib mounts that directory at ``suggestion_trial_dir``; a local
  controller substitutes the path instead. This copy is the only I/O of the
  suggestion algorithms.

Each generation's draws come from a generator seeded with the seed and the
generation, so a restarted suggester rebuilds the same population from the stored
trials.
"""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ketch.tuning.records import LABEL_PREFIX, TrialRecord, TrialState
from ketch.tuning.searchspace import Codec, SearchSpace
from ketch.tuning.strategies import Strategy

GENERATION_LABEL = "pbt.suggestion.katib.kubeflow.org/generation"
PARENT_LABEL = "pbt.suggestion.katib.kubeflow.org/parent"
MEMBER_LABEL = LABEL_PREFIX + "pbt-member"
CHECKPOINT_ENV = "KETCH_CHECKPOINT_DIR"
PERTURB_FACTORS = (0.8, 1.2)


@dataclass(eq=False)
class _Member:
    index: int
    parameters: dict[str, Any]
    parent: str | None = None
    trial: str | None = None  # the trial running it now
    result: tuple[str, float] | None = None  # (trial, score: higher is better)


class PbtStrategy(Strategy):
    def __init__(
        self,
        space: SearchSpace,
        *,
        maximize: bool,
        seed: int,
        n_population: int,
        truncation_threshold: float,
        resample_probability: float | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.space = space
        self.maximize = maximize
        self.seed = seed
        self.size = n_population
        self.cut = min(int(n_population * truncation_threshold), n_population // 2)
        self.resample_probability = resample_probability
        self.workdir = workdir
        self.generation = 0
        rng = self._rng(0)
        self.members = [_Member(k, space.sample(rng)) for k in range(n_population)]
        self.pending = list(range(n_population))
        self.trials: dict[str, tuple[int, int]] = {}

    def _rng(self, generation: int) -> random.Random:
        return random.Random(f"{self.seed}:pbt:{generation}")

    # -- the strategy -----------------------------------------------------------------

    def propose(self, name: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
        if not self.pending:
            return None
        member = self._claim(self.pending[0], name)
        labels = {GENERATION_LABEL: str(self.generation), MEMBER_LABEL: str(member.index)}
        if member.parent is not None:
            labels[PARENT_LABEL] = member.parent
        env = {}
        if self.workdir is not None:
            env[CHECKPOINT_ENV] = str(self._checkpoint_dir(name, member.parent))
        return dict(member.parameters), labels, env

    def _claim(self, index: int, name: str) -> _Member:
        member = self.members[index]
        if index in self.pending:
            self.pending.remove(index)
        member.trial = name
        self.trials[name] = (self.generation, index)
        return member

    def _checkpoint_dir(self, name: str, parent: str | None) -> Path:
        assert self.workdir is not None
        target = self.workdir / name
        source = self.workdir / parent if parent else None
        if source is not None and source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        return target

    def finish(self, name: str, state: TrialState, values: list[float] | None) -> None:
        where = self.trials.get(name)
        if where is None or where[0] != self.generation:
            return
        member = self.members[where[1]]
        if member.trial != name or member.result is not None:
            return
        if state in ("succeeded", "early_stopped") and values and math.isfinite(values[0]):
            member.result = (name, values[0] if self.maximize else -values[0])
        else:
            member.trial = None
            self.pending.append(member.index)  # run the member again
        if all(m.result is not None for m in self.members):
            self._next_generation()

    def _next_generation(self) -> None:
        rng = self._rng(self.generation + 1)
        ranked = sorted(self.members, key=lambda m: -m.result[1])  # type: ignore[index]
        top = ranked[: self.cut]
        bottom = {id(m) for m in ranked[len(ranked) - self.cut :]} if self.cut else set()
        following = []
        for member in self.members:
            assert member.result is not None
            if id(member) in bottom:
                donor = rng.choice(top)
                assert donor.result is not None
                parameters, parent = self._explore(donor.parameters, rng), donor.result[0]
            else:
                parameters, parent = dict(member.parameters), member.result[0]
            following.append(_Member(member.index, parameters, parent))
        self.generation += 1
        self.members = following
        self.pending = list(range(self.size))

    def _explore(self, parameters: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        explored = {}
        for name, codec in self.space.codecs.items():
            value = parameters[name]
            if self.resample_probability is not None:
                resample = rng.random() < self.resample_probability
                explored[name] = codec.from_unit(rng.random()) if resample else value
            else:
                explored[name] = _perturb(codec, value, rng)
        return explored

    def restore(self, history: list[TrialRecord]) -> None:
        ours = [r for r in history if GENERATION_LABEL in r.labels and MEMBER_LABEL in r.labels]
        for record in sorted(ours, key=lambda r: int(r.labels[GENERATION_LABEL])):
            generation, index = (
                int(record.labels[GENERATION_LABEL]),
                int(record.labels[MEMBER_LABEL]),
            )
            if generation != self.generation or not 0 <= index < self.size:
                continue
            member = self._claim(index, record.name)
            member.parameters = dict(record.parameters)
            member.parent = record.labels.get(PARENT_LABEL)
            if record.state != "running":
                self.finish(record.name, record.state, record.values)


def _perturb(codec: Codec, value: Any, rng: random.Random) -> Any:
    if codec.categorical:
        values = codec.values
        index = values.index(value) if value in values else 0
        return values[(index + rng.choice((-1, 1))) % len(values)]
    return codec.clip(float(value) * rng.choice(PERTURB_FACTORS))
