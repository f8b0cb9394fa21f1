"""Katib's pages, read through the API as the caller: a namespace's experiments (state,
best objective, trial counts), a new experiment from YAML or from a small form, an
experiment's page (its trials with their parameters, objective and state, a
parallel-coordinates plot of parameters against the objective, the objective over the
trials with the best so far, the Pareto front of a multi-objective experiment) and a
trial's page (its metrics and their curve, its log while it runs).

A trial's curve is what the trial controller keeps of its objective's reports
(``status.ketch.history``: ``[step, value]``); its log is the API's trial log route
(``.../trials/<name>/log``), which keeps the log after the trial's job is deleted.
"""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import rule
from ketch.core.errors import InvalidSpec
from ketch.tuning.observations import objective_value
from ketch.tuning.states import trial_state
from ketch.tuning.trials import EXPERIMENT_LABEL
from ketch.ui.access import in_namespace, may
from ketch.ui.api import ApiError
from ketch.ui.formats import to_yaml
from ketch.ui.page import Page, render_html, send_to
from ketch.ui.workloads import (
    GRID,
    api_rule,
    call_attributes,
    log_fragment,
    number,
    titled,
)
from ketch.ui.yamledit import FieldError, YamlProblem, errors_of, parse, refused_fields

router = APIRouter(include_in_schema=False)
API = "/apis/kubeflow.org/v1beta1"
ALGORITHMS = ("random", "grid", "tpe", "bayesianoptimization", "cmaes", "sobol")
PARAMETER_TYPES = ("double", "int", "categorical", "discrete")
FINISHED = ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")


def experiments_path(ns: str, name: str = "") -> str:
    return f"{API}/namespaces/{ns}/experiments" + (f"/{name}" if name else "")


def trials_path(ns: str, name: str = "") -> str:
    return f"{API}/namespaces/{ns}/trials" + (f"/{name}" if name else "")


def _conditions_state(status: dict[str, Any]) -> str:
    true = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    return str(true[-1].get("type") or "") if true else "Created"


def _objectives(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Every objective's metric and type (minimize, maximize), the primary first."""
    objective = spec.get("objective") or {}
    found: list[tuple[str, str]] = []
    if objective.get("objectiveMetricName"):
        found.append((str(objective["objectiveMetricName"]), str(objective.get("type") or "")))
    for extra in objective.get("objectives") or []:
        pair = (str(extra.get("objectiveMetricName")), str(extra.get("type") or ""))
        if pair[0] not in [f[0] for f in found]:
            found.append(pair)
    return found


def _strategy(spec: dict[str, Any], metric: str, kind: str) -> str:
    for each in (spec.get("objective") or {}).get("metricStrategies") or []:
        if each.get("name") == metric and each.get("value") in ("min", "max", "latest"):
            return str(each["value"])
    return "max" if kind == "maximize" else "min"


def _value(spec: dict[str, Any], status: dict[str, Any], metric: str, kind: str) -> float | None:
    metrics = (status.get("observation") or {}).get("metrics") or []
    return objective_value(metrics, metric, _strategy(spec, metric, kind))


def experiment_row(exp: dict[str, Any], ns: str) -> dict[str, Any]:
    spec, status = exp.get("spec") or {}, exp.get("status") or {}
    name = str((exp.get("metadata") or {}).get("name") or "")
    objectives = _objectives(spec)
    best = ""
    optimal = status.get("currentOptimalTrial") or {}
    if objectives and optimal.get("bestTrialName"):
        metric, kind = objectives[0]
        value = _value(spec, optimal, metric, kind)
        if value is not None:
            best = f"{metric}={value:g}"
    return {
        "name": name,
        "href": f"/ui/katib/{name}?ns={ns}",
        "state": _conditions_state(status),
        "best": best,
        "best_trial": optimal.get("bestTrialName") or "",
        "algorithm": (spec.get("algorithm") or {}).get("algorithmName") or "",
        "trials": int(status.get("trials") or 0),
        "succeeded": int(status.get("trialsSucceeded") or 0),
        "running": int(status.get("trialsRunning") or 0),
        "failed": int(status.get("trialsFailed") or 0),
        "early_stopped": int(status.get("trialsEarlyStopped") or 0),
        "max": spec.get("maxTrialCount") or "",
        "created": (exp.get("metadata") or {}).get("creationTimestamp") or "",
    }


def trial_row(
    trial: dict[str, Any], spec: dict[str, Any], ns: str, experiment: str
) -> dict[str, Any]:
    status = trial.get("status") or {}
    metadata = trial.get("metadata") or {}
    name = str(metadata.get("name") or "")
    params = {
        str(a.get("name")): str(a.get("value"))
        for a in (trial.get("spec") or {}).get("parameterAssignments") or []
    }
    values = {metric: _value(spec, status, metric, kind) for metric, kind in _objectives(spec)}
    state = trial_state(status)
    return {
        "name": name,
        "href": f"/ui/katib/{experiment}/trials/{name}?ns={ns}",
        "state": state,
        "early_stopped": state == "EarlyStopped",
        "params": params,
        "values": values,
        "created": str(metadata.get("creationTimestamp") or ""),
        "finished": str(status.get("completionTime") or ""),
    }


def _rows(
    trials: list[dict[str, Any]], spec: dict[str, Any], ns: str, exp: str
) -> list[dict[str, Any]]:
    ordered = sorted(
        trials,
        key=lambda t: (
            (t.get("metadata") or {}).get("creationTimestamp") or "",
            (t.get("metadata") or {}).get("name") or "",
        ),
    )
    return [trial_row(t, spec, ns, exp) for t in ordered]


def parallel_chart(names: list[str], rows: list[dict[str, Any]], objective: str) -> dict[str, Any]:
    """Parameters against the objective, a line per trial that has a value (ECharts'
    parallel coordinates); a parameter whose values are not all numbers is a category
    axis."""
    shown = [r for r in rows if r["values"].get(objective) is not None]
    axes: list[dict[str, Any]] = []
    numeric: list[bool] = []
    for i, name in enumerate(names):
        values = [r["params"].get(name) for r in shown if r["params"].get(name) is not None]
        is_number = bool(values) and all(number(v) is not None for v in values)
        numeric.append(is_number)
        axis: dict[str, Any] = {
            "dim": i,
            "name": name,
            "type": "value" if is_number else "category",
        }
        if not is_number:
            axis["data"] = sorted({str(v) for v in values})
        axes.append(axis)
    axes.append({"dim": len(names), "name": objective, "type": "value", "scale": True})
    data = [
        [
            *(
                number(r["params"].get(n)) if numeric[i] else str(r["params"].get(n, ""))
                for i, n in enumerate(names)
            ),
            r["values"][objective],
        ]
        for r in shown
    ]
    objective_values = [row[-1] for row in data]
    chart: dict[str, Any] = {
        "title": titled(f"Parameters and {objective}, one line per trial"),
        "animation": False,
        "tooltip": {},
        "parallel": {"left": 40, "right": 110, "top": 60, "bottom": 30},
        "parallelAxis": axes,
        "series": [
            {
                "type": "parallel",
                "name": "trials",
                "lineStyle": {"width": 2, "opacity": 0.7},
                "data": data,
            }
        ],
    }
    if objective_values:
        chart["visualMap"] = {
            "type": "continuous",
            "dimension": len(names),
            "min": min(objective_values),
            "max": max(objective_values),
            "right": 8,
            "top": 60,
            "itemHeight": 100,
            "calculable": False,
            "inRange": {"color": ["#c7d2fe", "#4338ca"]},
        }
    return chart


def progress_chart(rows: list[dict[str, Any]], objective: str, kind: str) -> dict[str, Any]:
    """The objective of each trial in the order they were made, and the best so far."""
    points, best, best_line = [], None, []
    for i, row in enumerate(rows, start=1):
        value = row["values"].get(objective)
        if value is not None:
            points.append([i, value])
            if best is None or (value > best if kind == "maximize" else value < best):
                best = value
        best_line.append([i, best] if best is not None else [i, None])
    return {
        "title": titled(f"{objective} over trials"),
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 20, "data": [objective, "best so far"]},
        "grid": {**GRID, "top": 56},
        "xAxis": {"type": "value", "name": "trial", "minInterval": 1, "min": 1},
        "yAxis": {"type": "value", "scale": True, "name": objective},
        "series": [
            {"type": "scatter", "name": objective, "data": points, "symbolSize": 9},
            {"type": "line", "name": "best so far", "step": "end", "data": best_line},
        ],
    }


def pareto_front(points: list[tuple[float, float]], kinds: tuple[str, str]) -> set[int]:
    """The indexes of ``points`` no other point dominates (better or equal in both
    objectives and better in one), each objective minimized or maximized."""
    sign = [(-1 if k == "maximize" else 1) for k in kinds]

    def better_or_equal(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return all(sign[i] * a[i] <= sign[i] * b[i] for i in (0, 1))

    front = set()
    for i, p in enumerate(points):
        if not any(j != i and better_or_equal(q, p) and q != p for j, q in enumerate(points)):
            front.add(i)
    return front


def pareto_chart(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> dict[str, Any]:
    (x_name, x_kind), (y_name, y_kind) = objectives[0], objectives[1]
    shown = [
        r
        for r in rows
        if r["values"].get(x_name) is not None and r["values"].get(y_name) is not None
    ]
    points = [(float(r["values"][x_name]), float(r["values"][y_name])) for r in shown]
    front = pareto_front(points, (x_kind, y_kind))
    others = [[*p, shown[i]["name"]] for i, p in enumerate(points) if i not in front]
    on_front = sorted([[*p, shown[i]["name"]] for i, p in enumerate(points) if i in front])
    return {
        "title": titled(f"Pareto front: {x_name} ({x_kind}) and {y_name} ({y_kind})"),
        "tooltip": {},
        "legend": {"top": 20, "data": ["trials", "Pareto front"]},
        "grid": {**GRID, "top": 56},
        "xAxis": {"type": "value", "scale": True, "name": x_name},
        "yAxis": {"type": "value", "scale": True, "name": y_name},
        "series": [
            {"type": "scatter", "name": "trials", "data": others, "symbolSize": 8},
            {
                "type": "line",
                "name": "Pareto front",
                "data": on_front,
                "symbolSize": 11,
                "lineStyle": {"type": "dashed"},
            },
        ],
    }


def _experiment_rule(ns: str, params: dict[str, str]) -> Any:
    return [
        *_listed(call_attributes("GET", experiments_path(ns, params["name"]))),
        *_listed(call_attributes("GET", trials_path(ns))),
    ]


def _listed(found: Any) -> list[Any]:
    return found if isinstance(found, list) else [found]


def _rule_of(attributes_of: Any) -> Any:
    def attributes(call: Any) -> Any:
        return in_namespace(lambda ns: attributes_of(ns, call.path_params))(call)

    return attributes


# -- a new experiment ---------------------------------------------------------------------

DEFAULTS = {
    "name": "",
    "objective_metric": "accuracy",
    "objective_type": "maximize",
    "goal": "",
    "algorithm": "random",
    "max_trials": "3",
    "parallel_trials": "1",
    "parameters": "lr double 0.01 0.1\nlayers int 1 4",
    "command": (
        "python -c \"import sys; print(f'accuracy={1 - float(sys.argv[1]) * int(sys.argv[2])}')\" "
        "${trialParameters.lr} ${trialParameters.layers}"
    ),
}


def _parameter(line: str, number_: int) -> dict[str, Any]:
    where = f"parameters (line {number_})"
    words = line.split()
    if len(words) < 3:
        raise InvalidSpec(
            "write NAME TYPE MIN MAX (double, int) or NAME TYPE A,B,C (categorical, discrete)",
            field=where,
        )
    name, kind = words[0], words[1]
    if kind not in PARAMETER_TYPES:
        raise InvalidSpec(f"type {kind!r} is none of {', '.join(PARAMETER_TYPES)}", field=where)
    if kind in ("categorical", "discrete"):
        values = [v for v in " ".join(words[2:]).split(",") if v.strip()]
        return {
            "name": name,
            "parameterType": kind,
            "feasibleSpace": {"list": [v.strip() for v in values]},
        }
    if len(words) != 4:
        raise InvalidSpec(f"a {kind} parameter needs MIN and MAX", field=where)
    return {
        "name": name,
        "parameterType": kind,
        "feasibleSpace": {"min": words[2], "max": words[3]},
    }


def experiment_from_form(values: dict[str, str]) -> dict[str, Any]:
    """The Experiment the form describes: a batch Job per trial running the command
    (its words as a shell splits them, ``${trialParameters.NAME}`` for a parameter)."""
    name = values.get("name", "").strip()
    if not name:
        raise InvalidSpec("is required", field="name")
    metric = values.get("objective_metric", "").strip()
    if not metric:
        raise InvalidSpec("is required", field="objective_metric")
    parameters = [
        _parameter(line.strip(), i)
        for i, line in enumerate(values.get("parameters", "").splitlines(), start=1)
        if line.strip()
    ]
    if not parameters:
        raise InvalidSpec("name at least one parameter", field="parameters")
    try:
        command = shlex.split(values.get("command", ""))
    except ValueError as exc:
        raise InvalidSpec(f"does not split into words: {exc}", field="command") from None
    if not command:
        raise InvalidSpec("is required", field="command")
    counts = {}
    for key in ("max_trials", "parallel_trials"):
        try:
            counts[key] = int(values.get(key, "") or "0")
        except ValueError:
            raise InvalidSpec("must be a whole number", field=key) from None
    objective: dict[str, Any] = {
        "type": values.get("objective_type") or "maximize",
        "objectiveMetricName": metric,
    }
    if values.get("goal", "").strip():
        goal = number(values["goal"])
        if goal is None:
            raise InvalidSpec("must be a number", field="goal")
        objective["goal"] = goal
    container = {"name": "training-container", "image": "python:3.12", "command": command}
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": objective,
            "algorithm": {"algorithmName": values.get("algorithm") or "random"},
            "maxTrialCount": counts["max_trials"],
            "parallelTrialCount": counts["parallel_trials"],
            "parameters": parameters,
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": p["name"], "reference": p["name"]}
                    for p in parameters
                    if f"${{trialParameters.{p['name']}}}" in " ".join(command)
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}
                    },
                },
            },
        },
    }


def _sample_yaml() -> str:
    sample = experiment_from_form({**DEFAULTS, "name": "my-experiment"})
    return to_yaml(sample)


def _new_context(page: Page, **values: Any) -> dict[str, Any]:
    return page.context(
        title="New experiment",
        form=values.get("form") or dict(DEFAULTS),
        form_errors=values.get("form_errors") or [],
        text=values.get("text") or _sample_yaml(),
        errors=values.get("errors") or [],
        lines=(values.get("text") or _sample_yaml()).split("\n"),
        algorithms=ALGORITHMS,
        save_url=page.link("/ui/katib"),
        back_href=page.link("/ui/katib"),
    )


@router.get("/ui/katib/new")
@rule(api_rule("POST", lambda ns, p: experiments_path(ns)))
async def new_page(request: Request) -> Response:
    async with Page(request, section="Katib") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        return render_html("katib_new.html", **_new_context(page))


@router.post("/ui/katib")
@rule(api_rule("POST", lambda ns, p: experiments_path(ns)))
async def create(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create an experiment from the form's fields or from YAML (``{"yaml": ...}``):
    the browser goes to its page, or the form comes back with the API's refusal."""
    async with Page(request, section="Katib") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        values = {k: str(v) for k, v in body.items()}
        if "yaml" in values:
            text = values["yaml"]
            try:
                manifest = parse(text)
            except YamlProblem as exc:
                return _yaml_again(page, text, exc.errors, 422)
            answer = await page.api.call("POST", experiments_path(page.namespace), json=manifest)
            if not answer.ok:
                errors = errors_of(text, answer.status, answer.message, answer.causes)
                return _yaml_again(page, text, errors, answer.status)
        else:
            try:
                manifest = experiment_from_form(values)
            except InvalidSpec as exc:
                return _form_again(page, values, [FieldError(exc.field or "", exc.message)], 422)
            answer = await page.api.call("POST", experiments_path(page.namespace), json=manifest)
            if not answer.ok:
                errors = refused_fields(answer.causes, answer.message)
                return _form_again(page, values, errors, answer.status)
        target = page.link(f"/ui/katib/{manifest['metadata']['name']}")
        return send_to(request, target)


def _yaml_again(page: Page, text: str, errors: list[FieldError], status: int) -> Response:
    return render_html("katib_yaml.html", status, **_new_context(page, text=text, errors=errors))


def _form_again(
    page: Page, values: dict[str, str], errors: list[FieldError], status: int
) -> Response:
    form = {**DEFAULTS, **values}
    return render_html(
        "katib_form.html", status, **_new_context(page, form=form, form_errors=errors)
    )


@router.get("/ui/katib")
@rule(api_rule("GET", lambda ns, p: experiments_path(ns)))
async def experiments_page(request: Request) -> Response:
    async with Page(request, section="Katib") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(experiments_path(page.namespace))
        rows = [experiment_row(e, page.namespace) for e in found.get("items") or []]
        rows.sort(key=lambda r: r["created"], reverse=True)
        return page.render(
            "katib.html",
            title="Katib experiments",
            experiments=rows,
            new_href=page.link("/ui/katib/new")
            if may(request, call_attributes("POST", experiments_path(page.namespace)))
            else "",
        )


@router.get("/ui/katib/{name}")
@rule(_rule_of(_experiment_rule))
async def experiment_page(request: Request, name: str) -> Response:
    async with Page(request, section="Katib") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        ns = page.namespace
        exp, trials = await asyncio.gather(
            page.api.get(experiments_path(ns, name)),
            page.api.get(trials_path(ns), labelSelector=f"{EXPERIMENT_LABEL}={name}"),
        )
        spec, status = exp.get("spec") or {}, exp.get("status") or {}
        rows = _rows(trials.get("items") or [], spec, ns, name)
        names = [str(p.get("name")) for p in spec.get("parameters") or []]
        objectives = _objectives(spec)
        charts: dict[str, Any] = {}
        if objectives and rows:
            metric, kind = objectives[0]
            charts["parallel"] = parallel_chart(names, rows, metric)
            charts["progress"] = progress_chart(rows, metric, kind)
            if len(objectives) > 1:
                charts["pareto"] = pareto_chart(rows, objectives)
        live = _conditions_state(status) not in ("Succeeded", "Failed")
        summary = experiment_row(exp, ns)
        return page.render(
            "katib_experiment.html",
            title=f"Experiment {name}",
            name=name,
            exp=exp,
            summary=summary,
            spec=spec,
            status=status,
            objectives=objectives,
            parameters=names,
            trials=rows,
            chart_options=charts,
            charts=bool(charts),
            live=live,
            resource_href=page.link(f"/ui/k/experiments.kubeflow.org/{name}"),
        )


def _trial_rule(ns: str, params: dict[str, str]) -> Any:
    return _listed(call_attributes("GET", trials_path(ns, params["trial"])))


@router.get("/ui/katib/{name}/trials/{trial}")
@rule(_rule_of(_trial_rule))
async def trial_page(request: Request, name: str, trial: str) -> Response:
    async with Page(request, section="Katib") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        ns = page.namespace
        found = await page.api.get(trials_path(ns, trial))
        exp_answer = await page.api.call("GET", experiments_path(ns, name))
        exp_spec = (exp_answer.body or {}).get("spec") or {} if exp_answer.ok else {}
        spec = exp_spec or {"objective": (found.get("spec") or {}).get("objective") or {}}
        row = trial_row(found, spec, ns, name)
        status = found.get("status") or {}
        history = ((status.get("ketch") or {}).get("history")) or []
        objective = (_objectives(spec) or [("objective", "")])[0][0]
        chart: dict[str, Any] = {}
        if history:
            chart = {
                "title": titled(f"{objective} by step"),
                "tooltip": {"trigger": "axis"},
                "grid": GRID,
                "xAxis": {"type": "value", "name": "step", "minInterval": 1},
                "yAxis": {"type": "value", "scale": True, "name": objective},
                "series": [
                    {"type": "line", "name": objective, "data": history, "showSymbol": True}
                ],
            }
        return page.render(
            "katib_trial.html",
            title=f"Trial {trial}",
            name=name,
            trial=found,
            row=row,
            status=status,
            metrics=(status.get("observation") or {}).get("metrics") or [],
            history=history,
            objective=objective,
            curve=chart,
            charts=bool(chart),
            log_url=page.link(f"/ui/katib/{name}/trials/{trial}/log"),
            resource_href=page.link(f"/ui/k/trials.kubeflow.org/{trial}"),
            experiment_href=page.link(f"/ui/katib/{name}"),
        )


@router.get("/ui/katib/{name}/trials/{trial}/log")
@rule(api_rule("GET", lambda ns, p: trials_path(ns, p["trial"]) + "/log"))
async def trial_log(request: Request, name: str, trial: str) -> Response:
    """The trial's log (its job's primary replica), polling while the trial runs."""
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        ns = page.namespace
        text, error, live = "", "", False
        found = await page.api.call("GET", trials_path(ns, trial))
        if found.ok:
            live = trial_state((found.body or {}).get("status") or {}) not in FINISHED
            try:
                text = await page.api.text(trials_path(ns, trial) + "/log")
            except ApiError as exc:
                error = "" if live else str(exc)  # no log yet while it starts
        else:
            error = found.message
        return log_fragment(
            key="trial-log",
            title=f"Log of trial {trial}",
            text=text,
            source=page.link(f"/ui/katib/{name}/trials/{trial}/log"),
            live=live,
            error=error,
        )
