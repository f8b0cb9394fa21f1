"""An InferenceService's ``status`` as KServe writes it, from what runs: the URLs,
each component's revisions and traffic, the ``PredictorReady`` /
``TransformerReady`` / ``IngressReady`` / ``Ready`` conditions, ``modelStatus``,
and Ketch's own record of replicas, log paths and payload loggers under
``status.ketch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ketch.core.conditions import get_condition
from ketch.core.errors import InvalidSpec
from ketch.core.resource import ConditionStatus, set_condition
from ketch.serving.running import Revision, Service

# KServe's IngressReady reasons while a component is not ready
PREDICTOR_INGRESS_NOT_CREATED = "Predictor ingress not created"
TRANSFORMER_INGRESS_NOT_CREATED = "Transformer ingress not created"
KEPT_EXITED_LOGS = 10  # log paths of ended replicas still listed in status.logPaths
COMPONENT_CONDITIONS = ("PredictorReady", "TransformerReady")


@dataclass(frozen=True)
class Rollout:
    """Which predictor revisions take traffic: ``traffic`` as (revision, percent),
    the rolled-out ``stable`` one, the ``latest`` created, and the transformer's
    running revision (at most one)."""

    traffic: list[tuple[str, int]]
    stable: str
    latest: str
    transformer: frozenset[str] = frozenset()


def write_invalid(status: dict[str, Any], exc: InvalidSpec) -> None:
    """The status of a service whose spec cannot run: not ready, saying why."""
    set_condition(status, "PredictorReady", "False", "InvalidSpec", str(exc))
    set_condition(status, "IngressReady", "False", PREDICTOR_INGRESS_NOT_CREATED, str(exc))
    set_condition(status, "Ready", "False", "InvalidSpec", str(exc))
    status["modelStatus"] = {  # KServe: an invalid spec blocks the target model
        "transitionStatus": "InvalidSpec",
        "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "InvalidPredictorSpec", "message": str(exc)},
    }


def write_status(
    svc: Service, generation: int | None, status: dict[str, Any], rollout: Rollout
) -> None:
    """Fill ``status`` (in place) from ``svc`` as it runs under ``rollout``."""
    stable, latest, tr_active = rollout.stable, rollout.latest, rollout.transformer
    pred_url = f"http://127.0.0.1:{svc.predictor.port}"
    public = f"http://127.0.0.1:{svc.transformer.port}" if svc.transformer else pred_url
    status["url"] = public
    status["address"] = {"url": public}
    if generation is not None:
        status["observedGeneration"] = generation
    components = status["components"]
    pred = components["predictor"]
    pred["url"] = pred_url
    stable_rev = svc.revisions.get(stable)
    latest_rev = svc.revisions.get(latest)
    ready_name = (
        latest
        if latest_rev is not None and latest_rev.ever_ready
        else (stable if stable_rev is not None and stable_rev.ever_ready else None)
    )
    if ready_name:
        pred["latestReadyRevision"] = ready_name
    pred["traffic"] = [
        {"revisionName": n, "percent": pct, "latestRevision": n == latest}
        | ({"tag": "prev"} if n == stable and n != latest else {})
        for n, pct in rollout.traffic
    ]
    if svc.transformer is not None and tr_active:
        tr_name = next(iter(tr_active))
        tr_rev = svc.revisions.get(tr_name)
        components["transformer"] = {
            "url": public,
            "latestCreatedRevision": tr_name,
            "traffic": [{"revisionName": tr_name, "percent": 100, "latestRevision": True}],
        } | ({"latestReadyRevision": tr_name} if tr_rev and tr_rev.ever_ready else {})
    else:
        components.pop("transformer", None)

    _write_conditions(svc, status, rollout, public)
    status["modelStatus"] = model_status(stable_rev, latest_rev)
    _write_ketch(svc, status)


def _write_conditions(svc: Service, status: dict[str, Any], rollout: Rollout, public: str) -> None:
    pred_ok, pred_reason, pred_message = component_state(
        [svc.revisions.get(n) for n, pct in rollout.traffic if pct > 0],
        svc.revisions.get(rollout.latest),
    )
    set_condition(status, "PredictorReady", pred_ok, pred_reason, pred_message)
    conditions_ok = [pred_ok]
    if rollout.transformer:
        tr_ok, tr_reason, tr_message = component_state(
            [svc.revisions.get(n) for n in rollout.transformer], None
        )
        set_condition(status, "TransformerReady", tr_ok, tr_reason, tr_message)
        conditions_ok.append(tr_ok)
    else:
        status["conditions"] = [
            c for c in status.get("conditions", []) if c.get("type") != "TransformerReady"
        ]
    # KServe routes to a component only once it is ready: until then the ingress
    # is not ready either (False when a component failed, Unknown while starting)
    if all(ok == "True" for ok in conditions_ok):
        set_condition(status, "IngressReady", "True", "RouterListening", f"serving {public}")
        set_condition(status, "Ready", "True", "Ready", f"serving {public}")
        return
    failing = [
        condition
        for type_ in COMPONENT_CONDITIONS
        if (condition := get_condition(status, type_)) is not None
        and condition.get("status") != "True"
    ]
    first = failing[0]
    status_value: ConditionStatus = (
        "False" if any(c["status"] == "False" for c in failing) else "Unknown"
    )
    ingress_reason = (
        PREDICTOR_INGRESS_NOT_CREATED
        if first["type"] == "PredictorReady"
        else TRANSFORMER_INGRESS_NOT_CREATED
    )
    set_condition(status, "IngressReady", status_value, ingress_reason, first["message"])
    set_condition(status, "Ready", status_value, first["reason"], first["message"])


def _write_ketch(svc: Service, status: dict[str, Any]) -> None:
    """``status.ketch``: replicas, ready counts, payload loggers; ``status.logPaths``."""
    paths: dict[str, str] = {}
    replicas: list[dict[str, Any]] = []
    for rev in svc.revisions.values():
        for replica in rev.replicas.values():
            paths[replica.name] = str(replica.log_path)
            replicas.append(
                {
                    "name": replica.name,
                    "revision": rev.name,
                    "component": rev.component,
                    "pid": replica.handle.pid,
                    "ready": replica.ready,
                }
                | ({"url": f"http://{replica.host}:{replica.port}"} if replica.port else {})
            )
    for replica_name in list(svc.exited_logs)[:-KEPT_EXITED_LOGS]:
        svc.exited_logs.pop(replica_name)
    status["logPaths"] = {**svc.exited_logs, **paths}
    status["ketch"]["replicas"] = replicas
    counts = {rev.name: len(rev.ready_replicas()) for rev in svc.revisions.values()}
    status["ketch"]["readyReplicas"] = counts
    loggers = {
        component: {
            "url": router.logger.url,
            "dropped": router.logger.dropped,
            "failed": router.logger.failed,
        }
        for component, router in (
            ("predictor", svc.predictor),
            ("transformer", svc.transformer),
        )
        if router is not None and router.logger is not None
    }
    if loggers:
        status["ketch"]["payloadLogger"] = loggers
    else:
        status["ketch"].pop("payloadLogger", None)


def component_state(
    serving: list[Revision | None], latest: Revision | None
) -> tuple[ConditionStatus, str, str]:
    """A component's ready condition (status, reason, message) from the revisions
    taking its traffic and its latest one."""
    if latest is not None and latest.failed:
        return "False", "RevisionFailed", f"revision {latest.name}: {latest.failed}"
    for rev in serving:
        if rev is None:
            return "Unknown", "RevisionMissing", "a revision is not running"
        if rev.failed:
            return "False", "RevisionFailed", f"revision {rev.name}: {rev.failed}"
        if not rev.ready_replicas():
            if rev.waiting and not rev.replicas:  # no replica fits the namespace's quota
                return "False", "ExceededQuota", f"revision {rev.name}: {rev.waiting}"
            if rev.ever_ready and not rev.replicas:
                continue  # scaled to zero: the next request starts a replica
            return "Unknown", "ReplicasStarting", f"revision {rev.name}: no replica is ready yet"
    return "True", "RevisionReady", ", ".join(r.name for r in serving if r is not None)


def model_status(stable: Revision | None, latest: Revision | None) -> dict[str, Any]:
    """KServe's ``status.modelStatus``: the model's load state and the last failure."""
    serving = stable is not None and stable.ever_ready
    if latest is not None and latest.failed:
        # as KServe: the target model failed to load; the active one is the model an
        # earlier revision still serves, or none
        return {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {
                "activeModelState": "Loaded" if serving and stable is not latest else "",
                "targetModelState": "FailedToLoad",
            },
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": latest.failed},
        }
    if latest is not None and latest.ever_ready:
        return {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        }
    return {
        "transitionStatus": "InProgress",
        "states": {
            "activeModelState": "Loaded" if serving else "Pending",
            "targetModelState": "Loading",
        },
    }
