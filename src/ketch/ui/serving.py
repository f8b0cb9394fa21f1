"""KServe's pages, read through the API as the caller: a namespace's InferenceServices
(URL, readiness, traffic split), a new one (or a new revision of one) from a form, and
a service's page: its revisions and their share of traffic, with what KServe's users
do to roll out (set ``canaryTrafficPercent``, promote the canary by removing it, roll
back by setting it to 0) for whoever may update the service; a try-it panel that
builds a V2 request from the model's metadata and sends it; its request rate and
latency, charted from its ``/metrics``; its replicas' logs, conditions and events.

The try-it panel and the charts reach the service through this server (the page's
own origin): ``/ui/serving/<name>/model``, ``/infer`` and ``/metrics`` forward to the
URL the service's status names (a router of this server, on 127.0.0.1) with the
caller's own credentials, and the router checks them as it checks every call (view in
the namespace, or a public service). The dashboard's rule for them asks the same.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from ketch.core.access import Verb, rule
from ketch.core.errors import InvalidSpec, KetchError
from ketch.server.state import api_state
from ketch.serving.spec import FRAMEWORKS
from ketch.ui.access import may, may_on
from ketch.ui.api import ApiError
from ketch.ui.listing import events
from ketch.ui.page import Page, problem_html, render_html, send_to
from ketch.ui.workloads import GRID, api_rule, call_attributes, log_href, pods_of, titled
from ketch.ui.yamledit import FieldError, refused_fields

router = APIRouter(include_in_schema=False)
API = "/apis/serving.kserve.io/v1beta1"
KIND = "InferenceService"
#: the headers of the caller's request the service's router may read (its credentials
#: among them); the rest are the forwarder's own
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "accept-encoding",
        "connection",
        "transfer-encoding",
        "hx-request",
        "hx-current-url",
        "hx-target",
        "hx-trigger",
        "origin",
        "referer",
    }
)
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def services_path(ns: str, name: str = "") -> str:
    return f"{API}/namespaces/{ns}/inferenceservices" + (f"/{name}" if name else "")


def _ready(status: dict[str, Any]) -> str:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else str(c.get("reason") or "NotReady")
    return "Pending"


def _predictor_model(spec: dict[str, Any]) -> tuple[str, str]:
    """The predictor's model format and its storage URI."""
    predictor = spec.get("predictor") or {}
    model = predictor.get("model") or {}
    if model:
        return str((model.get("modelFormat") or {}).get("name") or ""), str(
            model.get("storageUri") or ""
        )
    for framework in FRAMEWORKS:
        if predictor.get(framework):
            return framework, str(predictor[framework].get("storageUri") or "")
    return "", ""


def traffic_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    predictor = (status.get("components") or {}).get("predictor") or {}
    return [
        {
            "revision": str(t.get("revisionName") or ""),
            "percent": int(t.get("percent") or 0),
            "latest": bool(t.get("latestRevision")),
            "tag": str(t.get("tag") or ""),
        }
        for t in predictor.get("traffic") or []
    ]


def service_row(svc: dict[str, Any], ns: str) -> dict[str, Any]:
    metadata, spec, status = (svc.get(k) or {} for k in ("metadata", "spec", "status"))
    name = str(metadata.get("name") or "")
    fmt, uri = _predictor_model(spec)
    traffic = traffic_of(status)
    return {
        "name": name,
        "href": f"/ui/serving/{name}?ns={ns}",
        "url": str(status.get("url") or ""),
        "ready": _ready(status),
        "traffic": ", ".join(
            f"{t['revision']} {t['percent']}%{' (latest)' if t['latest'] else ''}" for t in traffic
        ),
        "format": fmt,
        "uri": uri,
        "canary": (spec.get("predictor") or {}).get("canaryTrafficPercent"),
        "created": str(metadata.get("creationTimestamp") or ""),
    }


@router.get("/ui/serving")
@rule(api_rule("GET", lambda ns, p: services_path(ns)))
async def services_page(request: Request) -> Response:
    async with Page(request, section="Serving") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(services_path(page.namespace))
        rows = [service_row(s, page.namespace) for s in found.get("items") or []]
        rows.sort(key=lambda r: r["created"], reverse=True)
        creates = may(request, call_attributes("POST", services_path(page.namespace)))
        return page.render(
            "serving.html",
            title="Inference services",
            services=rows,
            new_href=page.link("/ui/serving/new") if creates else "",
        )


# -- a new service (or a new revision of one) --------------------------------------------

FORM_DEFAULTS = {"name": "", "uri": "", "format": "sklearn", "protocol": "v2", "canary": ""}


def service_from_form(values: dict[str, str]) -> tuple[str, dict[str, Any], int | None]:
    """The service's name, its predictor and its canary percent (``None``: none) as the
    form describes them."""
    name = values.get("name", "").strip()
    if not name:
        raise InvalidSpec("is required", field="name")
    uri = values.get("uri", "").strip()
    if not uri:
        raise InvalidSpec(
            "is required: a model's folder or file (file://, s3://, ...) or "
            "model-registry://<model>/<version>",
            field="uri",
        )
    fmt = values.get("format", "").strip()
    if fmt not in FRAMEWORKS:
        raise InvalidSpec(
            f"is none of the built-in runtimes: {', '.join(FRAMEWORKS)}", field="format"
        )
    protocol = values.get("protocol", "v2").strip() or "v2"
    if protocol not in ("v1", "v2"):
        raise InvalidSpec("is v1 or v2", field="protocol")
    canary: int | None = None
    if values.get("canary", "").strip():
        try:
            canary = int(values["canary"])
        except ValueError:
            raise InvalidSpec("must be a whole number from 0 to 100", field="canary") from None
        if not 0 <= canary <= 100:
            raise InvalidSpec("must be a whole number from 0 to 100", field="canary")
    model = {"modelFormat": {"name": fmt}, "storageUri": uri, "protocolVersion": protocol}
    return name, {"model": model}, canary


def _form_context(page: Page, form: dict[str, str], errors: list[FieldError]) -> dict[str, Any]:
    return page.context(
        title="New inference service",
        form=form,
        form_errors=errors,
        formats=FRAMEWORKS,
        save_url=page.link("/ui/serving"),
        back_href=page.link("/ui/serving"),
    )


@router.get("/ui/serving/new")
@rule(api_rule("POST", lambda ns, p: services_path(ns)))
async def new_page(request: Request) -> Response:
    async with Page(request, section="Serving") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        form = {
            **FORM_DEFAULTS,
            **{k: v for k, v in request.query_params.items() if k in FORM_DEFAULTS},
        }
        return render_html("serving_new.html", **_form_context(page, form, []))


@router.post("/ui/serving")
@rule(api_rule("POST", lambda ns, p: services_path(ns)))
async def create(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create the service the form describes; when it exists, its predictor becomes
    the form's model (a new revision), with the canary percent given. The browser goes
    to the service's page, or the form comes back with the API's refusal."""
    async with Page(request, section="Serving") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        values = {k: str(v) for k, v in body.items() if k in FORM_DEFAULTS}
        form = {**FORM_DEFAULTS, **values}
        try:
            name, predictor, canary = service_from_form(values)
        except InvalidSpec as exc:
            errors = [FieldError(exc.field or "", exc.message)]
            return render_html("serving_form.html", 422, **_form_context(page, form, errors))
        path = services_path(page.namespace, name)
        existing = await page.api.call("GET", path)
        if existing.ok and isinstance(existing.body, dict):
            manifest = existing.body
            manifest.get("metadata", {}).pop("managedFields", None)
            manifest.pop("status", None)
            old = dict((manifest.get("spec") or {}).get("predictor") or {})
            for key in (*FRAMEWORKS, "model", "canaryTrafficPercent"):
                old.pop(key, None)
            manifest.setdefault("spec", {})["predictor"] = {**old, **predictor}
            if canary is not None:
                manifest["spec"]["predictor"]["canaryTrafficPercent"] = canary
            answer = await page.api.call("PUT", path, json=manifest)
        else:
            if canary is not None:
                predictor["canaryTrafficPercent"] = canary
            manifest = {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": KIND,
                "metadata": {"name": name},
                "spec": {"predictor": predictor},
            }
            answer = await page.api.call("POST", services_path(page.namespace), json=manifest)
        if not answer.ok:
            errors = refused_fields(answer.causes, answer.message)
            return render_html(
                "serving_form.html", answer.status, **_form_context(page, form, errors)
            )
        return send_to(request, page.link(f"/ui/serving/{name}"))


# -- a service's page ---------------------------------------------------------------------


@router.get("/ui/serving/{name}")
@rule(api_rule("GET", lambda ns, p: services_path(ns, p["name"])))
async def service_page(request: Request, name: str) -> Response:
    async with Page(request, section="Serving") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        ns = page.namespace
        svc = await page.api.get(services_path(ns, name))
        pods_answer, feed = await asyncio.gather(
            _safely(pods_of(page.api, ns, KIND, name)),
            _safely(events(page.api, api_state(request).kinds, ns, about=(KIND, name))),
        )
        status = svc.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        kind = next(k for k in api_state(request).kinds if k.kind == KIND)
        editable = may_on(request, kind, Verb.UPDATE, ns, name)
        row = service_row(svc, ns)
        chart = {
            "title": titled("Requests per second and mean latency"),
            "animation": False,
            "tooltip": {"trigger": "axis"},
            "legend": {"top": 20, "data": ["requests/s", "latency (ms)"]},
            "grid": {**GRID, "top": 56},
            "xAxis": {"type": "time"},
            "yAxis": [
                {"type": "value", "name": "requests/s", "min": 0},
                {"type": "value", "name": "ms", "min": 0},
            ],
            "series": [
                {"type": "line", "name": "requests/s", "data": [], "showSymbol": False},
                {
                    "type": "line",
                    "name": "latency (ms)",
                    "yAxisIndex": 1,
                    "data": [],
                    "showSymbol": False,
                },
            ],
        }
        return page.render(
            "serving_service.html",
            title=f"Inference service {name}",
            name=name,
            svc=svc,
            row=row,
            status=status,
            traffic=traffic_of(status),
            predictor=predictor,
            canary=row["canary"],
            editable=editable,
            pods=[] if isinstance(pods_answer, KetchError) else pods_answer,
            pods_error=str(pods_answer) if isinstance(pods_answer, KetchError) else "",
            log_href=lambda pod: log_href(ns, pod),
            events=[] if isinstance(feed, KetchError) else feed,
            charts=True,
            metrics_chart=chart,
            metrics_url=page.link(f"/ui/serving/{name}/metrics"),
            model_url=page.link(f"/ui/serving/{name}/model"),
            traffic_url=page.link(f"/ui/serving/{name}/traffic"),
            resource_href=page.link(f"/ui/k/inferenceservices.serving.kserve.io/{name}"),
            new_revision_href=page.link(
                "/ui/serving/new", name=name, uri=row["uri"], format=row["format"]
            )
            if editable
            else "",
        )


async def _safely(made: Any) -> Any:
    try:
        return await made
    except KetchError as exc:
        return exc


@router.post("/ui/serving/{name}/traffic")
@rule(api_rule("PUT", lambda ns, p: services_path(ns, p["name"])))
async def traffic(request: Request, name: str, body: dict[str, Any] = Body(...)) -> Response:
    """Roll out as KServe's users do: ``canary`` sets ``canaryTrafficPercent`` (the
    latest revision's share), ``promote`` removes it (the latest takes all traffic),
    ``rollback`` sets it to 0 (the revision rolled out before takes all)."""
    action = str(body.get("action") or "")
    async with Page(request, section="Serving") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        path = services_path(page.namespace, name)
        manifest = await page.api.get(path)
        manifest.get("metadata", {}).pop("managedFields", None)
        manifest.pop("status", None)
        predictor = manifest.setdefault("spec", {}).setdefault("predictor", {})
        if action == "canary":
            try:
                percent = int(str(body.get("percent", "")).strip())
            except ValueError:
                percent = -1
            if not 0 <= percent <= 100:
                message = "percent must be a whole number from 0 to 100"
                return problem_html(422, message)
            predictor["canaryTrafficPercent"] = percent
        elif action == "promote":
            predictor.pop("canaryTrafficPercent", None)
        elif action == "rollback":
            predictor["canaryTrafficPercent"] = 0
        else:
            message = "action must be canary, promote or rollback"
            return problem_html(422, message)
        answer = await page.api.call("PUT", path, json=manifest)
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        return send_to(request, page.link(f"/ui/serving/{name}"))


# -- through the service's own URL --------------------------------------------------------


async def _service_url(page: Page, name: str) -> str:
    """The URL the service's status names, when it is one of this server's routers."""
    svc = await page.api.get(services_path(page.namespace, name))
    url = str((svc.get("status") or {}).get("url") or "")
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in _LOCAL_HOSTS:
        raise ApiError(503, f"the service {name} has no URL of this server yet: is it Ready?")
    return url.rstrip("/")


async def _forward(request: Request, method: str, url: str, payload: Any = None) -> httpx.Response:
    """``method`` of ``url`` (a service's router) with the caller's credentials."""
    headers = {k: v for k, v in request.headers.items() if k not in _NOT_FORWARDED}
    headers["accept"] = "application/json, text/plain"
    try:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            return await client.request(method, url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the service did not answer: {exc}") from None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:500]


def sample_request(metadata: dict[str, Any]) -> dict[str, Any]:
    """A V2 request of the model's inputs: one row of zeros of each input's shape and
    datatype (a dimension of -1 is one)."""
    inputs = []
    for each in metadata.get("inputs") or []:
        shape = [1 if int(d) < 0 else int(d) for d in each.get("shape") or [1]]
        size = math.prod(shape)
        datatype = str(each.get("datatype") or "FP32")
        zero: Any = "" if datatype == "BYTES" else (False if datatype == "BOOL" else 0)
        inputs.append(
            {"name": each.get("name"), "shape": shape, "datatype": datatype, "data": [zero] * size}
        )
    return {"inputs": inputs}


@router.get("/ui/serving/{name}/model")
@rule(api_rule("GET", lambda ns, p: services_path(ns, p["name"])))
async def model_panel(request: Request, name: str) -> Response:
    """The try-it panel: the model's metadata (``GET <url>/v2/models/<name>``) and a
    V2 request built from its inputs, ready to send."""
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        try:
            url = await _service_url(page, name)
            answer = await _forward(request, "GET", f"{url}/v2/models/{name}")
        except ApiError as exc:
            return _try_panel(page, name, error=str(exc), status=200)
        if not answer.is_success:
            return _try_panel(page, name, error=_message(answer), status=200)
        metadata = answer.json()
        text = json.dumps(sample_request(metadata), indent=2)
        return _try_panel(page, name, metadata=metadata, text=text)


def _try_panel(page: Page, name: str, *, status: int = 200, **values: Any) -> Response:
    return render_html(
        "serving_try.html",
        status,
        **page.context(
            name=name,
            metadata=values.get("metadata") or {},
            text=values.get("text") or "",
            error=values.get("error") or "",
            infer_url=page.link(f"/ui/serving/{name}/infer"),
            model_url=page.link(f"/ui/serving/{name}/model"),
        ),
    )


@router.post("/ui/serving/{name}/infer")
@rule(api_rule("GET", lambda ns, p: services_path(ns, p["name"])))
async def infer(request: Request, name: str, body: dict[str, Any] = Body(...)) -> Response:
    """Send the panel's V2 request (``{"request": "<JSON>"}``) to ``<url>/v2/models/
    <name>/infer`` and show the answer."""
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        try:
            payload = json.loads(str(body.get("request") or ""))
        except ValueError as exc:
            return _result(f"the request is not JSON: {exc}", {}, 422)
        if not isinstance(payload, dict):
            return _result('the request must be an object: {"inputs": [...]}', {}, 422)
        url = await _service_url(page, name)
        started = time.perf_counter()
        answer = await _forward(request, "POST", f"{url}/v2/models/{name}/infer", payload)
        took = (time.perf_counter() - started) * 1000
        if not answer.is_success:
            return _result(_message(answer), {}, answer.status_code)
        return _result("", answer.json(), 200, took=took)


def _result(error: str, answer: dict[str, Any], status: int, took: float = 0.0) -> Response:
    outputs = [
        {
            "name": o.get("name"),
            "datatype": o.get("datatype"),
            "shape": o.get("shape"),
            "data": json.dumps(o.get("data")),
        }
        for o in answer.get("outputs") or []
    ]
    return render_html(
        "serving_result.html",
        status,
        error=error,
        status=status,
        outputs=outputs,
        model=answer.get("model_name") or "",
        took=took,
    )


def parse_metrics(text: str) -> dict[str, float]:
    """What the charts read of a model server's Prometheus text: every request, the
    ones that failed (a code not 2xx), and the latency histogram's sum and count."""
    found = {"requests": 0.0, "errors": 0.0, "latency_sum": 0.0, "latency_count": 0.0}
    for line in text.splitlines():
        matched = _SAMPLE.match(line)
        if matched is None:
            continue
        name, labels, raw = matched.group(1), matched.group(2) or "", matched.group(3)
        try:
            value = float(raw)
        except ValueError:
            continue
        if name == "ketch_serving_requests_total":
            found["requests"] += value
            if not re.search(r'code="2\d\d"', labels):
                found["errors"] += value
        elif name == "ketch_serving_request_duration_seconds_sum":
            found["latency_sum"] += value
        elif name == "ketch_serving_request_duration_seconds_count":
            found["latency_count"] += value
    return found


@router.get("/ui/serving/{name}/metrics")
@rule(api_rule("GET", lambda ns, p: services_path(ns, p["name"])))
async def metrics(request: Request, name: str) -> Response:
    """One sample of the service's counters (JSON), read from ``<url>/metrics``: the
    page charts the rate between samples."""
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        try:
            url = await _service_url(page, name)
            answer = await _forward(request, "GET", f"{url}/metrics")
        except ApiError as exc:
            return JSONResponse({"error": str(exc)}, status_code=200)
        if not answer.is_success:
            return JSONResponse({"error": _message(answer)}, status_code=200)
        sample: dict[str, Any] = {"t": time.time(), **parse_metrics(answer.text)}
        return JSONResponse(sample, headers={"Cache-Control": "no-store"})
