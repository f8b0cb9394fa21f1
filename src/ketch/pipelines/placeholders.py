"""Resolving the placeholders in a container's command and args.

Covers what the KFP backend resolves: ``{{$}}`` (the executor input),
inputs/outputs parameters and artifacts (``path``, ``uri``, ``metadata``),
output files, run and task placeholders (``pipeline_job_name`` …), and the
structured ``Concat`` and ``IfPresent`` placeholders.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.pipelines.tasks import Node, RunContext
from ketch.pipelines.values import to_placeholder_text


@dataclass
class PlaceholderContext:
    executor_input: dict[str, Any]
    input_parameters: dict[str, Any]
    input_artifacts: dict[str, list[dict[str, Any]]]  # each: uri, path, metadata
    output_parameter_files: dict[str, str]
    output_artifacts: dict[str, dict[str, Any]]
    output_file: str
    run_values: dict[str, str] = field(default_factory=dict)  # pipeline_job_name, ...
    where: str = ""


_TOKEN = re.compile(r"\{\{\$(?P<body>[^{}]*)\}\}")
_IO = re.compile(
    r"""^\.(?P<dir>inputs|outputs)\.(?P<kind>parameters|artifacts)\[['"](?P<name>[^'"]+)['"]\]"""
    r"""(?:\.(?P<attr>path|uri|metadata|output_file)(?P<rest>.*))?$"""
)
_META_KEY = re.compile(r"""^\[['"]([^'"]+)['"]\]$""")


def resolve_list(items: list[str], ctx: PlaceholderContext) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(_resolve_item(item, ctx))
    return out


def _resolve_item(item: Any, ctx: PlaceholderContext) -> list[str]:
    if isinstance(item, dict):
        return _structured(item, ctx)
    if isinstance(item, list):
        return [s for sub in item for s in _resolve_item(sub, ctx)]
    text = str(item)
    stripped = text.strip()
    if stripped.startswith("{") and ('"Concat"' in stripped or '"IfPresent"' in stripped):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and ("Concat" in parsed or "IfPresent" in parsed):
            return _structured(parsed, ctx)
    return [resolve_string(text, ctx)]


def _structured(obj: dict[str, Any], ctx: PlaceholderContext) -> list[str]:
    if "Concat" in obj:
        parts = obj["Concat"]
        return ["".join(s for p in parts for s in _resolve_item(p, ctx))]
    if "IfPresent" in obj:
        cond = obj["IfPresent"]
        name = cond.get("InputName")
        present = (ctx.input_parameters.get(name) is not None) or bool(
            ctx.input_artifacts.get(name)
        )
        branch = cond.get("Then") if present else cond.get("Else")
        if branch is None:
            return []
        if not isinstance(branch, list):
            branch = [branch]
        return [s for b in branch for s in _resolve_item(b, ctx)]
    raise InvalidSpec(f"unknown structured placeholder {json.dumps(obj)}", field=ctx.where)


def resolve_string(text: str, ctx: PlaceholderContext) -> str:
    return _TOKEN.sub(lambda m: _value(m.group("body"), ctx), text)


def _value(body: str, ctx: PlaceholderContext) -> str:
    if body == "":
        return json.dumps(ctx.executor_input)
    if body == ".outputs.output_file":
        return ctx.output_file
    plain = body.lstrip(".")
    if plain in ctx.run_values:
        return ctx.run_values[plain]
    m = _IO.match(body)
    if not m:
        raise InvalidSpec(f"unknown placeholder {{{{${body}}}}}", field=ctx.where)
    direction, kind, name, attr, rest = m.group("dir", "kind", "name", "attr", "rest")
    if kind == "parameters":
        if direction == "inputs":
            value = ctx.input_parameters.get(name)
            return "" if value is None else to_placeholder_text(value)
        if attr == "output_file" and name in ctx.output_parameter_files:
            return ctx.output_parameter_files[name]
        raise InvalidSpec(f"unknown output parameter {name!r} in placeholder", field=ctx.where)
    if attr is None:
        # A whole artifact (``Input[List[Artifact]]`` in a container component): the
        # KFP launcher has no value for it and passes the placeholder through as
        # written, so Ketch does too rather than pick one artifact's URI.
        return "{{$" + body + "}}"
    if direction == "inputs":
        arts = ctx.input_artifacts.get(name) or []
        if not arts:
            return ""
        art = arts[0]
    else:
        if name not in ctx.output_artifacts:
            raise InvalidSpec(f"unknown output artifact {name!r} in placeholder", field=ctx.where)
        art = ctx.output_artifacts[name]
    if attr == "uri":
        return str(art.get("uri", ""))
    if attr == "path":
        return str(art.get("path") or art.get("uri", ""))
    if attr == "metadata":
        meta = art.get("metadata") or {}
        key = _META_KEY.match(rest or "")
        if key:
            return to_placeholder_text(meta.get(key.group(1), ""))
        return json.dumps(meta)
    raise InvalidSpec(f"unknown placeholder {{{{${body}}}}}", field=ctx.where)


# Kubernetes' generateName suffix: 5 characters from this alphabet, after a base
# cut to 58 characters (a name is at most 63).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def resource_name(ctx: RunContext) -> str:
    """The run's resource name as the KFP backend names it: the Argo workflow's name,
    ``<pipeline-name>-<5 characters>`` (generateName ``<pipeline-name>-``). The
    suffix is derived from the run id, so it stays the same when the run resumes."""
    digest = int(hashlib.sha256(ctx.run_id.encode()).hexdigest(), 16)
    suffix = ""
    for _ in range(5):
        digest, index = divmod(digest, len(_SUFFIX_ALPHABET))
        suffix += _SUFFIX_ALPHABET[index]
    base = ctx.ir.name.rsplit("/", 1)[-1] + "-"
    return base[:58] + suffix


def run_values(ctx: RunContext, node: Node) -> dict[str, str]:
    """The values of KFP's run and task placeholders for a task."""
    stamp = ctx.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "pipeline_job_name": ctx.display_name,
        "pipeline_job_resource_name": resource_name(ctx),
        "pipeline_job_uuid": ctx.run_id,
        "pipeline_task_name": node.name,
        "pipeline_task_uuid": node.id,
        "pipeline_root": ctx.pipeline_root,
        "pipeline_job_create_time_utc": stamp,
        "pipeline_job_schedule_time_utc": stamp,
        "workspace_path": str(ctx.work_dir / "workspace"),
    }
