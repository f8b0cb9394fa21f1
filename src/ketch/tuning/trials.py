"""A trial's job: the Experiment's ``trialTemplate`` made into a manifest, and read back.

- :func:`render` substitutes ``${trialParameters.<name>}`` with the trial's
  assignments (a ``trialParameters`` entry's ``reference`` is a search parameter's
  name, or one of Katib's metadata references ``${trialSpec.Name}``,
  ``${trialSpec.Namespace}``, ``${trialSpec.Kind}``, ``${trialSpec.APIVersion}``,
  ``${trialSpec.Labels[key]}``, ``${trialSpec.Annotations[key]}``), names the job
  after the trial and labels it with the experiment and trial.
- :func:`inject_env` adds the trial's environment to the primary container (or to
  a TrainJob's ``trainer.env``).
- :func:`matches` evaluates Katib's ``successCondition``/``failureCondition``, which
  are GJSON paths such as ``status.conditions.#(type=="Complete")#|#(status=="True")#``,
  against the job's manifest (the subset of GJSON Katib's conditions use: dotted
  paths, ``#(key=="value")`` and ``#(key=="value")#`` queries, ``|`` pipes, ``#``
  for an array's length).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.tuning.jobkinds import JOB_KINDS

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"

_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([A-Za-z0-9_.-]+)\}")
_META = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Labels|Annotations)(?:\[(.+)\])?\}$"
)


def conditions_for(kind: str, success: str | None, failure: str | None) -> tuple[str, str]:
    """The success and failure conditions of a trial of ``kind`` (Katib's defaults)."""
    default = JOB_KINDS.get(kind)
    if default is None:
        if not success or not failure:
            raise InvalidSpec(
                f"trials of kind {kind} need successCondition and failureCondition; "
                f"Ketch knows the defaults for {', '.join(JOB_KINDS)}",
                field="spec.trialTemplate.successCondition",
            )
        return success, failure
    return success or default.success_condition, failure or default.failure_condition


def render(
    trial_spec: dict[str, Any],
    trial_parameters: list[dict[str, Any]],
    assignments: dict[str, str],
    *,
    name: str,
    namespace: str,
    experiment: str,
) -> dict[str, Any]:
    """The job manifest for one trial (``assignments``: parameter name -> value as text)."""
    manifest = copy.deepcopy(trial_spec)
    kind = str(manifest.get("kind", ""))
    api_version = str(manifest.get("apiVersion", ""))
    metadata = manifest.setdefault("metadata", {}) or {}
    manifest["metadata"] = metadata
    values: dict[str, str] = {}
    for index, entry in enumerate(trial_parameters):
        pname, reference = str(entry.get("name", "")), str(entry.get("reference", ""))
        meta = _META.match(reference)
        if meta is not None:
            field_, key = meta.groups()
            values[pname] = _meta_value(field_, key, name, namespace, kind, api_version, metadata)
        elif reference in assignments:
            values[pname] = assignments[reference]
        else:
            raise InvalidSpec(
                f"trial parameter {pname!r} references {reference!r}, which is neither a "
                "search parameter nor a ${trialSpec.…} reference",
                field=f"spec.trialTemplate.trialParameters[{index}].reference",
            )

    def substitute(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise InvalidSpec(
                    f"${{trialParameters.{key}}} is used in the trial spec but not declared "
                    "in trialTemplate.trialParameters",
                    field="spec.trialTemplate.trialSpec",
                )
            return values[key]

        return _PLACEHOLDER.sub(one, text)

    manifest = _map_strings(manifest, substitute)
    metadata = manifest["metadata"]
    metadata["name"] = name
    metadata["namespace"] = namespace
    labels = dict(metadata.get("labels") or {})
    labels.update({EXPERIMENT_LABEL: experiment, TRIAL_LABEL: name})
    metadata["labels"] = labels
    return manifest


def _meta_value(
    field_: str,
    key: str | None,
    name: str,
    namespace: str,
    kind: str,
    api_version: str,
    metadata: dict[str, Any],
) -> str:
    if field_ == "Name":
        return name
    if field_ == "Namespace":
        return namespace
    if field_ == "Kind":
        return kind
    if field_ == "APIVersion":
        return api_version
    bag = metadata.get("labels" if field_ == "Labels" else "annotations") or {}
    return str(bag.get(key or "", ""))


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    return value


def replace_text(manifest: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``manifest`` with every occurrence of ``old`` in its strings replaced by ``new``."""
    return _map_strings(manifest, lambda text: text.replace(old, new))


def replace_path(
    manifest: dict[str, Any], old: str, new: str, *, keep: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``manifest`` with the path ``old`` (and paths under it) moved to ``new`` in its
    strings: whole path segments only (``/a/b`` does not touch ``/a/bc``), leaving
    the paths in ``keep`` as they are."""
    old = old.rstrip("/")
    pattern = re.compile(re.escape(old) + r"(?=/|$|[\s\"'=:,;])")
    kept = [k for k in keep if k]

    def move(text: str) -> str:
        hidden = {f"\x00{i}\x00": k for i, k in enumerate(kept)}
        for token, path in hidden.items():
            text = text.replace(path, token)
        text = pattern.sub(lambda _m: new, text)
        for token, path in hidden.items():
            text = text.replace(token, path)
        return text

    return _map_strings(manifest, move)


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def inject_env(manifest: dict[str, Any], env: dict[str, str], primary: str) -> None:
    """Add ``env`` to the primary container(s) of the job (every container when none
    is called ``primary``); a TrainJob gets it in ``spec.trainer.env``."""
    if not env:
        return
    spec = manifest.setdefault("spec", {})
    if manifest.get("kind") == "TrainJob":
        trainer = spec.setdefault("trainer", {})
        _merge_env(trainer, env)
        return
    containers = list(_containers(spec))
    chosen = [c for c in containers if c.get("name") == primary] or containers
    for container in chosen:
        _merge_env(container, env)


def _merge_env(holder: dict[str, Any], env: dict[str, str]) -> None:
    current = [e for e in holder.get("env") or [] if e.get("name") not in env]
    holder["env"] = current + [{"name": k, "value": v} for k, v in env.items()]


def primary_log(kind: str, log_paths: dict[str, str]) -> str | None:
    """The log of the replica whose output holds the metrics: the master (or chief,
    launcher, first node) when the job has one; for a batch Job, its newest pod (a
    pod that replaces a failed or interrupted one gets the next number)."""
    if not log_paths:
        return None
    names = sorted(n for n in log_paths if "/" not in n)  # "<pod>/<container>": sidecars
    if not names:
        return None
    if kind == "Job":
        return log_paths[
            max(
                names,
                key=lambda n: (
                    int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else -1,
                    n,
                ),
            )
        ]
    for role in ("-master-0", "-chief-0", "-launcher-0", "-launcher", "node-0", "-worker-0"):
        for replica in names:
            if replica.endswith(role):
                return log_paths[replica]
    return log_paths[names[0]]


# -- GJSON conditions --------------------------------------------------------------

_QUERY = re.compile(r"^#\(\s*([A-Za-z0-9_.-]+)\s*(==|!=|%|!%|<=|>=|<|>)\s*(.+?)\s*\)(#?)$")


def matches(document: dict[str, Any], expression: str) -> bool:
    """Whether the GJSON ``expression`` finds something in ``document``."""
    result = _evaluate(document, expression)
    if isinstance(result, list):
        return len(result) > 0
    if isinstance(result, bool):
        return result
    return result is not None


def _evaluate(document: Any, expression: str) -> Any:
    current = document
    for part in _split(expression, "|"):
        current = _path(current, part)
        if current is None:
            return None
    return current


def _path(value: Any, path: str) -> Any:
    for segment in _split(path, "."):
        if value is None:
            return None
        if segment == "#":
            value = len(value) if isinstance(value, list) else None
            continue
        query = _QUERY.match(segment)
        if query is not None:
            if not isinstance(value, list):
                return None
            key, op, literal, every = query.groups()
            hits = [item for item in value if _compare(_path(item, key), op, _literal(literal))]
            value = hits if every else (hits[0] if hits else None)
            continue
        if isinstance(value, dict):
            value = value.get(segment)
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else None
        elif isinstance(value, list):
            value = [v.get(segment) for v in value if isinstance(v, dict) and segment in v]
        else:
            return None
    return value


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if actual is None:
        return False
    if op in ("%", "!%"):
        pattern = re.escape(str(expected)).replace(r"\*", ".*").replace(r"\?", ".")
        found = re.fullmatch(pattern, str(actual)) is not None
        return found if op == "%" else not found
    if isinstance(expected, float) and not isinstance(actual, bool):
        try:
            actual = float(actual)
        except (TypeError, ValueError):
            return False
    elif not isinstance(expected, bool):
        actual, expected = str(actual), str(expected)
    try:
        return {
            "==": actual == expected,
            "!=": actual != expected,
            "<": actual < expected,
            "<=": actual <= expected,
            ">": actual > expected,
            ">=": actual >= expected,
        }[op]
    except TypeError:
        return False


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            if char == quote and text[index - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]
