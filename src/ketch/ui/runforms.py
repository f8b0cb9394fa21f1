"""Starting KFP runs from the dashboard: the create-run form (``/ui/runs/new``) and the
recurring runs' list and form (``/ui/recurringruns``), each built from a pipeline
version's parameters and their types (the spec's ``root.inputDefinitions``), and each
writing through the KFP API (``POST /runs``, ``POST /recurringruns``, ``:enable``,
``:disable``), whose checks are the ones that count: the form's own (a whole number, a
JSON list) only name the field sooner.

``/ui/runs/new?pipeline=<id>[&version=<id>][&clone=<run id>]``: the pipeline and
version to run (the latest version when none is named); ``clone`` fills the form from
a run (its pipeline version, or the spec it ran when it had none, its parameters, its
experiment and its name).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.pipelines.api.access import (
    DISABLE,
    ENABLE,
    RECURRING_RUNS,
    RUNS,
    attributes,
    by_id,
)
from ketch.ui.access import in_namespace
from ketch.ui.api import Answer
from ketch.ui.page import Page, is_htmx, problem_html, render_html, send_to

router = APIRouter(include_in_schema=False)
KFP = "/apis/v2beta1"
#: the experiment a run goes into when its form chooses none
DEFAULT_EXPERIMENT = "Default"
#: the prefix of a parameter's field in the forms
PARAM = "param."
#: what each of KFP's parameter types is entered as
INPUTS = {
    "STRING": "text",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "number",
    "BOOLEAN": "boolean",
    "LIST": "json",
    "STRUCT": "json",
}


@dataclass
class Parameter:
    """A pipeline parameter as the form shows it."""

    name: str
    type: str
    input: str
    required: bool
    default: Any
    description: str = ""
    value: str = ""

    @property
    def field(self) -> str:
        return PARAM + self.name


def shown(value: Any) -> str:
    """A value as a form field holds it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parameters_of(spec: dict[str, Any], values: dict[str, Any] | None = None) -> list[Parameter]:
    """The parameters a pipeline spec takes, each with its type, default and (from
    ``values``, a run's) value."""
    root = spec.get("root") or {}
    found = ((root.get("inputDefinitions") or {}).get("parameters")) or {}
    params = []
    for name, definition in found.items():
        kind = str(definition.get("parameterType") or "STRING")
        default = definition.get("defaultValue")
        optional = bool(definition.get("isOptional")) or "defaultValue" in definition
        value = (values or {}).get(name, default)
        params.append(
            Parameter(
                name=name,
                type=kind,
                input=INPUTS.get(kind, "text"),
                required=not optional,
                default=default,
                description=str(definition.get("description") or ""),
                value=shown(value),
            )
        )
    return params


def typed_values(params: list[Parameter], form: dict[str, Any]) -> dict[str, Any]:
    """The parameters' values from ``form`` with their types; ``InvalidSpec`` naming the
    first field that is not of its type (an empty optional one keeps its default)."""
    values: dict[str, Any] = {}
    for param in params:
        raw = form.get(param.field)
        text = "" if raw is None else str(raw).strip()
        param.value = text
        if text == "":
            if param.required:
                raise InvalidSpec(f"parameter {param.name!r} needs a value", field=param.field)
            continue
        values[param.name] = convert(param, text)
    return values


def convert(param: Parameter, text: str) -> Any:
    kind = param.type
    if kind == "NUMBER_INTEGER":
        try:
            return int(text)
        except ValueError:
            raise InvalidSpec(
                f"parameter {param.name!r} must be a whole number, not {text!r}", field=param.field
            ) from None
    if kind == "NUMBER_DOUBLE":
        try:
            return float(text)
        except ValueError:
            raise InvalidSpec(
                f"parameter {param.name!r} must be a number, not {text!r}", field=param.field
            ) from None
    if kind == "BOOLEAN":
        if text.lower() not in ("true", "false"):
            raise InvalidSpec(f"parameter {param.name!r} must be true or false", field=param.field)
        return text.lower() == "true"
    if kind in ("LIST", "STRUCT"):
        want, shape = (list, "a JSON list") if kind == "LIST" else (dict, "a JSON object")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(
                f"parameter {param.name!r} must be {shape}: {exc.msg}", field=param.field
            ) from None
        if not isinstance(value, want):
            raise InvalidSpec(f"parameter {param.name!r} must be {shape}", field=param.field)
        return value
    return text


@dataclass
class Source:
    """What a form runs: a pipeline version (with its pipeline), or a run's own spec."""

    spec: dict[str, Any]
    pipeline: dict[str, Any]
    version: dict[str, Any]
    versions: list[dict[str, Any]]
    clone: dict[str, Any]

    def reference(self) -> dict[str, Any]:
        """The pipeline of a Run or RecurringRun body: its version, or the spec itself."""
        if self.version:
            return {
                "pipeline_version_reference": {
                    "pipeline_id": self.pipeline.get("pipeline_id", ""),
                    "pipeline_version_id": self.version.get("pipeline_version_id", ""),
                }
            }
        return {"pipeline_spec": self.spec}


async def source_of(page: Page, query: dict[str, Any]) -> Source:
    """The pipeline and version a form is about (``pipeline``, ``version``, ``clone``)."""
    clone: dict[str, Any] = {}
    pipeline_id = str(query.get("pipeline") or "")
    version_id = str(query.get("version") or "")
    if query.get("clone"):
        clone = await page.api.get(f"{KFP}/runs/{query['clone']}")
        reference = clone.get("pipeline_version_reference") or {}
        pipeline_id = pipeline_id or str(reference.get("pipeline_id") or "")
        version_id = version_id or str(reference.get("pipeline_version_id") or "")
    if not pipeline_id:
        if clone.get("pipeline_spec"):
            return Source(clone["pipeline_spec"], {}, {}, [], clone)
        return Source({}, {}, {}, [], clone)
    pipeline, listed = await asyncio.gather(
        page.api.get(f"{KFP}/pipelines/{pipeline_id}"),
        page.api.get(
            f"{KFP}/pipelines/{pipeline_id}/versions", page_size="100", sort_by="created_at desc"
        ),
    )
    versions = listed.get("pipeline_versions") or []
    if not version_id:
        if not versions:
            raise InvalidSpec(f"pipeline {pipeline_id!r} has no version to run", field="pipeline")
        version_id = str(versions[0].get("pipeline_version_id"))
    version = await page.api.get(f"{KFP}/pipelines/{pipeline_id}/versions/{version_id}")
    return Source(version.get("pipeline_spec") or {}, pipeline, version, versions, clone)


async def choices(page: Page) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pipelines (the namespace's and the shared ones) and experiments to choose."""
    own, shared, experiments = await asyncio.gather(
        page.api.call(
            "GET", f"{KFP}/pipelines", params={"namespace": page.namespace, "page_size": "200"}
        ),
        page.api.call("GET", f"{KFP}/pipelines", params={"page_size": "200"}),
        page.api.call(
            "GET",
            f"{KFP}/experiments",
            params={"namespace": page.namespace, "page_size": "200", "sort_by": "created_at desc"},
        ),
    )
    pipelines: list[dict[str, Any]] = []
    for answer in (own, shared):
        if answer.ok and isinstance(answer.body, dict):
            seen = {p.get("pipeline_id") for p in pipelines}
            pipelines += [
                p for p in answer.body.get("pipelines") or [] if p.get("pipeline_id") not in seen
            ]
    found = experiments.body.get("experiments") or [] if experiments.ok else []
    return pipelines, [e for e in found if e.get("storage_state") != "ARCHIVED"]


async def experiment_chosen(page: Page, form: dict[str, Any]) -> str:
    """The experiment the form chose, made first when it names a new one; none chosen:
    the namespace's ``Default`` one (made when missing), so the run stays in the page's
    namespace."""
    new = str(form.get("new_experiment") or "").strip()
    if not new and form.get("experiment_id"):
        return str(form["experiment_id"])
    if not new:
        new = DEFAULT_EXPERIMENT
        named = json.dumps(
            {"predicates": [{"key": "name", "operation": "EQUALS", "string_value": new}]}
        )
        found = await page.api.call(
            "GET",
            f"{KFP}/experiments",
            params={"namespace": page.namespace, "filter": named, "page_size": "1"},
        )
        existing = (found.body or {}).get("experiments") or [] if found.ok else []
        if existing:
            return str(existing[0].get("experiment_id") or "")
    answer = await page.api.call(
        "POST", f"{KFP}/experiments", json={"display_name": new, "namespace": page.namespace}
    )
    if not answer.ok:
        raise FormRefused(answer, "new_experiment")
    return str(answer.body.get("experiment_id") or "")


class FormRefused(Exception):
    """The API refused what a form sent."""

    def __init__(self, answer: Answer, field: str = "") -> None:
        super().__init__(answer.message)
        self.status = answer.status
        self.field = field


# -- one run ----------------------------------------------------------------------------


def filled(params: list[Parameter], form: dict[str, Any]) -> list[Parameter]:
    """``params`` showing the values ``form`` sent back for them."""
    for param in params:
        if param.field in form:
            param.value = str(form[param.field])
    return params


def refusal_of(exc: InvalidSpec | FormRefused) -> tuple[list[dict[str, str]], int]:
    """The form's error list and status for a refusal: ours (422) or the API's."""
    if isinstance(exc, FormRefused):
        return [{"field": exc.field, "message": str(exc)}], exc.status
    return [{"field": exc.field or "", "message": str(exc)}], 422


def form_response(page: Page, name: str, code: int, context: dict[str, Any]) -> Response:
    """A run form (``name``) again: htmx's POST gets the form alone (``name_form.html``),
    anything else the whole page (``name.html``)."""
    if is_htmx(page.request) and page.request.method == "POST":
        return render_html(f"{name}_form.html", code, **page.context(**context))
    return page.render(f"{name}.html", code, **context)


def _create_rule(resource: str) -> Any:
    return in_namespace(lambda ns: attributes(Verb.CREATE, resource, ns))


async def _run_form(
    page: Page, source: Source, *, errors: list[dict[str, str]], form: dict[str, Any], code: int
) -> Response:
    pipelines, experiments = await choices(page)
    cloned = (source.clone.get("runtime_config") or {}).get("parameters")
    params = filled(parameters_of(source.spec, cloned), form)
    clone_name = source.clone.get("display_name")
    values = {
        "display_name": form.get("display_name", f"Clone of {clone_name}" if clone_name else ""),
        "experiment_id": form.get("experiment_id", source.clone.get("experiment_id", "")),
        "new_experiment": form.get("new_experiment", ""),
    }
    context = dict(
        title="New run",
        source=source,
        params=params,
        pipelines=pipelines,
        experiments=experiments,
        errors=errors,
        values=values,
        clone_id=source.clone.get("run_id", ""),
        action=page.link("/ui/runs/new"),
    )
    return form_response(page, "runform", code, context)


@router.get("/ui/runs/new")
@rule(_create_rule(RUNS))
async def new_run_page(request: Request) -> Response:
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        source = await source_of(page, dict(request.query_params))
        return await _run_form(page, source, errors=[], form={}, code=200)


@router.post("/ui/runs/new")
@rule(_create_rule(RUNS))
async def create_run(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Start the run the form describes (``POST /runs``); the browser goes to its page,
    or the form comes back with the refusal beside its field."""
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        query = {"pipeline": body.get("pipeline_id"), "version": body.get("version_id")}
        query["clone"] = body.get("clone_id") if not body.get("pipeline_id") else ""
        source = await source_of(page, query)
        if not source.spec:
            raise InvalidSpec("choose a pipeline to run", field="pipeline")
        params = parameters_of(source.spec)
        try:
            values = typed_values(params, body)
            name = str(body.get("display_name") or "").strip()
            run: dict[str, Any] = {
                "display_name": name or None,
                "experiment_id": await experiment_chosen(page, body),
                "runtime_config": {"parameters": values},
                **source.reference(),
            }
            answer = await page.api.call("POST", f"{KFP}/runs", json=run)
            if not answer.ok:
                raise FormRefused(answer)
        except (InvalidSpec, FormRefused) as exc:
            errors, code = refusal_of(exc)
            return await _run_form(page, source, errors=errors, form=body, code=code)
        return send_to(request, f"/ui/runs/{answer.body.get('run_id')}")


# -- recurring runs ---------------------------------------------------------------------


def trigger_of(form: dict[str, Any]) -> dict[str, Any]:
    """A RecurringRun's trigger from the form: a cron schedule or an interval."""
    kind = str(form.get("trigger") or "cron")
    if kind == "cron":
        cron = str(form.get("cron") or "").strip()
        if not cron:
            raise InvalidSpec("a cron schedule needs its expression", field="cron")
        return {"cron_schedule": {"cron": cron}}
    if kind == "periodic":
        text = str(form.get("interval_second") or "").strip()
        if not text.isdigit() or int(text) < 1:
            raise InvalidSpec("the interval must be a whole number of seconds", field="interval")
        return {"periodic_schedule": {"interval_second": text}}
    raise InvalidSpec(f"trigger {kind!r} is not cron or periodic", field="trigger")


@router.get("/ui/recurringruns")
@rule(in_namespace(lambda ns: attributes(Verb.LIST, RECURRING_RUNS, ns)))
async def recurring_page(request: Request) -> Response:
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(
            f"{KFP}/recurringruns",
            namespace=page.namespace,
            page_size="200",
            sort_by="created_at desc",
        )
        return page.render(
            "recurring.html",
            title="Recurring runs",
            recurring=found.get("recurringRuns") or found.get("recurring_runs") or [],
        )


async def _recurring_form(
    page: Page, source: Source, *, errors: list[dict[str, str]], form: dict[str, Any], code: int
) -> Response:
    pipelines, experiments = await choices(page)
    params = filled(parameters_of(source.spec), form)
    context = dict(
        title="New recurring run",
        source=source,
        params=params,
        pipelines=pipelines,
        experiments=experiments,
        errors=errors,
        values={
            "display_name": form.get("display_name", ""),
            "experiment_id": form.get("experiment_id", ""),
            "new_experiment": form.get("new_experiment", ""),
            "trigger": form.get("trigger", "cron"),
            "cron": form.get("cron", "0 0 * * * *"),
            "interval_second": form.get("interval_second", "3600"),
            "max_concurrency": form.get("max_concurrency", "1"),
        },
        action=page.link("/ui/recurringruns/new"),
    )
    return form_response(page, "recurringform", code, context)


@router.get("/ui/recurringruns/new")
@rule(_create_rule(RECURRING_RUNS))
async def new_recurring_page(request: Request) -> Response:
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        source = await source_of(page, dict(request.query_params))
        return await _recurring_form(page, source, errors=[], form={}, code=200)


@router.post("/ui/recurringruns/new")
@rule(_create_rule(RECURRING_RUNS))
async def create_recurring(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        source = await source_of(
            page, {"pipeline": body.get("pipeline_id"), "version": body.get("version_id")}
        )
        if not source.spec:
            raise InvalidSpec("choose a pipeline to run", field="pipeline")
        params = parameters_of(source.spec)
        try:
            values = typed_values(params, body)
            recurring: dict[str, Any] = {
                "display_name": str(body.get("display_name") or "").strip(),
                "experiment_id": await experiment_chosen(page, body),
                "runtime_config": {"parameters": values},
                "trigger": trigger_of(body),
                "max_concurrency": str(body.get("max_concurrency") or "1"),
                "mode": "ENABLE",
                "no_catchup": True,
                **source.reference(),
            }
            answer = await page.api.call("POST", f"{KFP}/recurringruns", json=recurring)
            if not answer.ok:
                raise FormRefused(answer)
        except (InvalidSpec, FormRefused) as exc:
            errors, code = refusal_of(exc)
            return await _recurring_form(page, source, errors=errors, form=body, code=code)
        return send_to(request, page.link("/ui/recurringruns"))


async def _switch(request: Request, recurring_run_id: str, verb: str) -> Response:
    async with Page(request, section="Runs", namespaced=False) as page:
        answer = await page.api.call("POST", f"{KFP}/recurringruns/{recurring_run_id}:{verb}")
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        found = await page.api.get(f"{KFP}/recurringruns/{recurring_run_id}")
        return render_html("recurring_row.html", **page.context(r=found))


@router.post("/ui/recurringruns/{recurring_run_id}/enable")
@rule(by_id(ENABLE, RECURRING_RUNS, "recurring_run_id"))
async def enable_recurring(request: Request, recurring_run_id: str) -> Response:
    return await _switch(request, recurring_run_id, ENABLE)


@router.post("/ui/recurringruns/{recurring_run_id}/disable")
@rule(by_id(DISABLE, RECURRING_RUNS, "recurring_run_id"))
async def disable_recurring(request: Request, recurring_run_id: str) -> Response:
    return await _switch(request, recurring_run_id, DISABLE)
