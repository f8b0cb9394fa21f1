"""Katib Experiments and Trials in the terminal.

``ketch get experiments`` and ``ketch get trials`` rows, the trial table that
``ketch describe experiment`` adds (ranked by the objective, the best trial and the
Pareto front marked), and ``ketch describe experiment NAME --watch``: that table
refreshed every half second until the experiment succeeds or fails.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ketch.cli.display import age, show, stdout_console
from ketch.cli.experiment_status import (
    ACTIVE_TRIAL_STATES,
    EXPERIMENT_LABEL,
    FINISHED,
    Objective,
    assignments,
    best_trial_name,
    condition,
    duration_text,
    experiment_state,
    observed,
    optimal_metrics,
    run_seconds,
    short,
    spec_of,
    status_of,
    trial_state,
)
from ketch.cli.http import object_path
from ketch.core.kinds import Kind, collection_path

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

POLL_SECONDS = 0.5
BEST = "★ best"
PARETO = "◆ pareto"
_STYLE = {
    "Succeeded": "green",
    "Failed": "bold red",
    "Killed": "yellow",
    "EarlyStopped": "yellow",
    "MetricsUnavailable": "red",
    "Running": "cyan",
    "Pending": "dim",
}
_TRIAL_LISTS = (
    "succeededTrialList",
    "failedTrialList",
    "runningTrialList",
    "pendingTrialList",
    "killedTrialList",
    "earlyStoppedTrialList",
    "metricsUnavailableTrialList",
)


def _count(status: dict[str, Any], key: str) -> str:
    return str(status.get(key) or 0)


# -- get ----------------------------------------------------------------------------


def experiment_rows(
    items: list[dict[str, Any]], all_ns: bool, wide: bool
) -> tuple[list[str], list[list[str]]]:
    columns = (["NAMESPACE"] if all_ns else []) + [
        "NAME",
        "STATE",
        "ALGORITHM",
        "TRIALS",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "BEST",
        "AGE",
    ]
    if wide:
        columns += ["OBJECTIVE", "BEST TRIAL"]
    rows: list[list[str]] = []
    for item in items:
        meta = item.get("metadata", {})
        spec = spec_of(item)
        status = status_of(item)
        algorithm = spec.get("algorithm")
        if not isinstance(algorithm, dict):
            algorithm = {}
        trials = _count(status, "trials")
        if spec.get("maxTrialCount") is not None:
            trials = f"{trials}/{spec['maxTrialCount']}"
        objective = Objective.of(item)
        row = ([meta.get("namespace", "")] if all_ns else []) + [
            meta.get("name", ""),
            experiment_state(item),
            str(algorithm.get("algorithmName") or "-"),
            trials,
            _count(status, "trialsRunning"),
            _count(status, "trialsSucceeded"),
            _count(status, "trialsFailed"),
            objective.shown(optimal_metrics(item)),
            age(meta.get("creationTimestamp")),
        ]
        if wide:
            goal = "" if objective.goal is None else f" (goal {objective.goal:g})"
            row += [
                f"{objective.type} {objective.metric}{goal}".strip() or "-",
                best_trial_name(item) or "-",
            ]
        rows.append(row)
    return columns, rows


def trial_rows(
    items: list[dict[str, Any]], all_ns: bool, wide: bool
) -> tuple[list[str], list[list[str]]]:
    columns = (["NAMESPACE"] if all_ns else []) + [
        "NAME",
        "STATE",
        "PARAMETERS",
        "OBJECTIVE",
        "DURATION",
        "AGE",
    ]
    if wide:
        columns.append("EXPERIMENT")
    rows: list[list[str]] = []
    now = datetime.now(UTC)
    for item in items:
        meta = item.get("metadata", {})
        params = " ".join(f"{k}={short(v)}" for k, v in assignments(item).items()) or "-"
        row = ([meta.get("namespace", "")] if all_ns else []) + [
            meta.get("name", ""),
            trial_state(item),
            params,
            Objective.of(item).shown(observed(item)),
            duration_text(run_seconds(item, now)),
            age(meta.get("creationTimestamp")),
        ]
        if wide:
            row.append((meta.get("labels") or {}).get(EXPERIMENT_LABEL, "-"))
        rows.append(row)
    return columns, rows


# -- the trial table ------------------------------------------------------------------


def ranked(experiment: dict[str, Any], trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials with an objective value, best first; then running, pending and the rest."""
    objective = Objective.of(experiment)

    def key(trial: dict[str, Any]) -> tuple[int, float, str, str]:
        meta = trial.get("metadata", {})
        created, name = str(meta.get("creationTimestamp") or ""), str(meta.get("name", ""))
        value = objective.number(observed(trial))
        if value is not None:
            return (0, value if objective.minimize else -value, created, name)
        state = trial_state(trial)
        group = 1 if state == "Running" else 2 if state in ACTIVE_TRIAL_STATES else 3
        return (group, 0.0, created, name)

    return sorted(trials, key=key)


def _parameter_names(experiment: dict[str, Any], trials: list[dict[str, Any]]) -> list[str]:
    spec = spec_of(experiment)
    names = [
        str(p.get("name"))
        for p in spec.get("parameters") or []
        if isinstance(p, dict) and p.get("name")
    ]
    for trial in trials:
        names += [n for n in assignments(trial) if n not in names]
    return names


def _metric_names(objective: Objective, trials: list[dict[str, Any]]) -> list[str]:
    names = [n for n in (*objective.directions, *objective.additional) if n]
    names = list(dict.fromkeys(names))
    for trial in trials:
        names += [
            str(m.get("name"))
            for m in observed(trial)
            if m.get("name") and m.get("name") not in names
        ]
    return names


def _marks(name: str, best: str, front: set[str]) -> str:
    return " ".join(mark for mark, on in ((BEST, name == best), (PARETO, name in front)) if on)


def pareto_front(experiment: dict[str, Any]) -> set[str]:
    front = status_of(experiment).get("paretoFront")
    return {str(n) for n in front} if isinstance(front, list) else set()


def trial_table(
    experiment: dict[str, Any], trials: list[dict[str, Any]], limit: int | None = None
) -> Table:
    """One row per trial: marks, name, parameters, metrics (objective first), state, duration."""
    objective = Objective.of(experiment)
    params = _parameter_names(experiment, trials)
    metrics = _metric_names(objective, trials)
    best, front = best_trial_name(experiment), pareto_front(experiment)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("")
    table.add_column("TRIAL", overflow="fold")
    for name in params:
        table.add_column(name)
    for name in metrics:
        table.add_column(f"{name} ({objective.strategy(name)})", justify="right")
    table.add_column("STATE")
    table.add_column("DURATION", justify="right")
    now = datetime.now(UTC)
    rows = _shown(ranked(experiment, trials), limit)
    for trial in rows:
        name = str(trial.get("metadata", {}).get("name", ""))
        values = assignments(trial)
        state = trial_state(trial)
        table.add_row(
            _marks(name, best, front),
            Text(name, style="bold" if name == best else ""),
            *[short(values[p]) if p in values else "-" for p in params],
            *[
                short(v) if (v := objective.value(observed(trial), m)) is not None else "-"
                for m in metrics
            ],
            Text(state, style=_STYLE.get(state, "")),
            duration_text(run_seconds(trial, now)),
        )
    if len(rows) < len(trials):
        table.add_row("", Text(f"… {len(trials) - len(rows)} more trials", style="dim"))
    return table


def _shown(trials: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` trials, keeping every running one in view."""
    if limit is None or len(trials) <= limit:
        return trials
    running = [t for t in trials if trial_state(t) == "Running"][:limit]
    head = [t for t in trials if trial_state(t) != "Running"][: limit - len(running)]
    position = {id(t): i for i, t in enumerate(trials)}
    return sorted(head + running, key=lambda t: position[id(t)])


def legend(experiment: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    best = best_trial_name(experiment)
    if best:
        objective = Objective.of(experiment)
        lines.append(f"{BEST} trial: {best} ({objective.shown(optimal_metrics(experiment))})")
    front = pareto_front(experiment)
    if front:
        lines.append(
            f"{PARETO}: the Pareto front, {len(front)} trial{'s' if len(front) != 1 else ''}"
        )
    return lines


def summary(experiment: dict[str, Any]) -> str:
    """``Running · trials 12/30 · running 2 · succeeded 9 · failed 1 · best accuracy=0.93``."""
    status = status_of(experiment)
    spec = spec_of(experiment)
    trials = _count(status, "trials")
    if spec.get("maxTrialCount") is not None:
        trials = f"{trials}/{spec['maxTrialCount']}"
    parts = [experiment_state(experiment), f"trials {trials}"]
    for label, key in (
        ("running", "trialsRunning"),
        ("pending", "trialsPending"),
        ("succeeded", "trialsSucceeded"),
        ("failed", "trialsFailed"),
        ("early stopped", "trialsEarlyStopped"),
        ("killed", "trialsKilled"),
        ("metrics unavailable", "trialMetricsUnavailable"),
    ):
        if status.get(key) or key in ("trialsRunning", "trialsSucceeded", "trialsFailed"):
            parts.append(f"{label} {_count(status, key)}")
    best = Objective.of(experiment).shown(optimal_metrics(experiment))
    if best != "-":
        parts.append(f"best {best}")
    return " · ".join(parts)


# -- describe -------------------------------------------------------------------------


def trials_of(client: ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    """The experiment's Trials, by the label Katib puts on them."""
    kind = client.kind("Trial")
    return client.items(
        collection_path(kind, namespace), {"labelSelector": f"{EXPERIMENT_LABEL}={name}"}
    )


def describe_experiment(
    client: ApiClient, experiment: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """The usual description, the trial lists left to a ranked trial table."""
    meta = experiment.get("metadata", {})
    trials = trials_of(client, str(meta.get("namespace", "")), str(meta.get("name", "")))
    shown = dict(experiment)
    shown["status"] = {k: v for k, v in status_of(experiment).items() if k not in _TRIAL_LISTS}

    def print_trials() -> None:
        console = stdout_console()
        if not trials:
            console.print("Trials:      <none>", highlight=False)
            return
        console.print(f"Trials:      {summary(experiment)}", highlight=False)
        console.print(trial_table(experiment, trials))
        for line in legend(experiment):
            console.print(f"  {line}", highlight=False)

    show(shown, events, before_events=print_trials)


# -- watch ----------------------------------------------------------------------------


def _view(
    experiment: dict[str, Any], trials: list[dict[str, Any]], limit: int | None
) -> RenderableType:
    name = str(experiment.get("metadata", {}).get("name", ""))
    header = Text.assemble((f"experiment {name}", "bold"), "  ", summary(experiment))
    parts: list[RenderableType] = [header]
    if trials:
        parts.append(trial_table(experiment, trials, limit))
    return Group(*parts)


def _outcome(experiment: dict[str, Any]) -> str:
    state = experiment_state(experiment)
    found = condition(experiment, state) or {}
    name = experiment.get("metadata", {}).get("name", "")
    detail = ": ".join(str(found[k]) for k in ("reason", "message") if found.get(k))
    return f"experiment {name} {state}" + (f" ({detail})" if detail else "")


def watch_experiment(client: ApiClient, kind: Kind, namespace: str, name: str) -> int:
    """Refresh the trial table until the experiment finishes; 0 if it succeeded, else 1.

    On a terminal the table is redrawn in place; elsewhere (a pipe, a log file) one
    line is printed per trial that finishes, then the final table.
    """
    path = object_path(kind, namespace, name)

    def poll() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return client.json("GET", path), trials_of(client, namespace, name)

    experiment, trials = poll()
    console = Console()
    if console.is_terminal:
        limit = max(5, console.size.height - 6)
        with Live(_view(experiment, trials, limit), console=console, auto_refresh=False) as live:
            while experiment_state(experiment) not in FINISHED:
                time.sleep(POLL_SECONDS)
                experiment, trials = poll()
                live.update(_view(experiment, trials, limit), refresh=True)
    else:
        console = stdout_console()
        reported: set[str] = set()
        while True:
            _report(console, experiment, trials, reported)
            if experiment_state(experiment) in FINISHED:
                break
            time.sleep(POLL_SECONDS)
            experiment, trials = poll()
        console.print(_view(experiment, trials, None))
    for line in legend(experiment):
        console.print(f"  {line}", highlight=False)
    state = experiment_state(experiment)
    console.print(Text(_outcome(experiment), style=_STYLE.get(state, "")))
    return 0 if state == "Succeeded" else 1


def _report(
    console: Console, experiment: dict[str, Any], trials: list[dict[str, Any]], reported: set[str]
) -> None:
    objective = Objective.of(experiment)
    for trial in trials:
        name = str(trial.get("metadata", {}).get("name", ""))
        state = trial_state(trial)
        if name in reported or state in ACTIVE_TRIAL_STATES:
            continue
        reported.add(name)
        params = " ".join(f"{k}={short(v)}" for k, v in assignments(trial).items())
        console.print(
            f"  {state:<18} {name}  {objective.shown(observed(trial))}  {params}".rstrip(),
            highlight=False,
        )
