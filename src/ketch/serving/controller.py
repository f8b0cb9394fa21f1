"""The InferenceService controller: revisions, replicas, routers, autoscaling, status.

Each predictor spec (less its scaling and traffic fields) is a revision, named
as KServe names them (``NAME-predictor-00001``). A revision runs as ``ketch
serve`` replicas started through the compute backend, behind the service's
router (:mod:`ketch.serving.router`), which gives it one stable URL. A changed
predictor with ``canaryTrafficPercent`` gets that share of traffic once ready;
without it (or at 100) it is promoted once ready; going back to the rolled-out
spec drops the canary. A transformer runs in front of the predictor's router.

What runs lives in this process: on a restart the controller starts it all
again from the stored resources (routers try the ports they had).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import re
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ketch.core import config
from ketch.core.backend import Backend, ProcessHandle, ProcessSpec
from ketch.core.controller import Controller, Key, Result
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import ConditionStatus, set_condition
from ketch.core.store.resources import EventType, ResourceStore
from ketch.serving.autoscaler import Autoscaler
from ketch.serving.payload_logger import PayloadLogger
from ketch.serving.router import (
    DEFAULT_TIMEOUT,
    ComponentRouter,
    ReplicaAddress,
    RevisionTraffic,
    RouterHost,
)
from ketch.serving.spec import (
    LoggerSpec,
    ModelSource,
    PredictorSpec,
    Scaling,
    parse,
    predictor_source,
    revision_hash,
    scaling,
    transformer_source,
)

log = logging.getLogger("ketch.serving.controller")

KIND = "InferenceService"
# KServe's IngressReady reasons while a component is not ready
PREDICTOR_INGRESS_NOT_CREATED = "Predictor ingress not created"
TRANSFORMER_INGRESS_NOT_CREATED = "Transformer ingress not created"
READY_LINE = re.compile(r"Ketch model server listening on http://([\d.]+):(\d+)")
START_TIMEOUT = 300.0
STOP_GRACE = 3.0
RETRY_BASE = 10.0  # seconds before a revision that failed to start is tried again, doubling
RETRY_CAP = 300.0
_KEPT_EXITED_LOGS = 10

_host = RouterHost()
_controllers: weakref.WeakSet[InferenceServiceController] = weakref.WeakSet()
_atexit_installed = False


@dataclass
class Replica:
    name: str
    revision: str
    handle: ProcessHandle
    log_path: Path
    offset: int
    started: float = field(default_factory=time.monotonic)
    host: str = ""
    port: int = 0
    ready: bool = False


@dataclass
class Revision:
    name: str
    component: str
    source: ModelSource
    replicas: dict[str, Replica] = field(default_factory=dict)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    next_index: int = 1
    failed: str | None = None
    ever_ready: bool = False
    attempts: int = 0  # failed starts in a row
    retry_at: float = 0.0  # after a failure, when to try once more

    def fail(self, reason: str) -> None:
        self.failed = reason
        self.attempts += 1
        self.retry_at = time.monotonic() + min(RETRY_BASE * 2 ** (self.attempts - 1), RETRY_CAP)

    def ready_replicas(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.ready]


@dataclass
class Service:
    key: Key
    predictor: ComponentRouter
    uid: str = ""  # the object's metadata.uid: logs are kept per object, not per name
    transformer: ComponentRouter | None = None
    revisions: dict[str, Revision] = field(default_factory=dict)
    logger_spec: dict[tuple[str, str], Any] = field(default_factory=dict)
    exited_logs: dict[str, str] = field(default_factory=dict)
    stopping: list[threading.Thread] = field(default_factory=list)


def controller_factory(store: ResourceStore, backend: Backend) -> Controller:
    return InferenceServiceController(store, backend)


class InferenceServiceController(Controller):
    kind = KIND
    workers = 2

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.services: dict[Key, Service] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=3.0)
        global _atexit_installed
        _controllers.add(self)
        if not _atexit_installed:  # server shutdown stops every replica and router
            atexit.register(_shutdown_all)
            _atexit_installed = True

    # -- the loop ------------------------------------------------------------------

    def tracked_keys(self) -> Iterable[Key]:
        with self._lock:  # deleted while no one told us: reconcile tears them down
            return list(self.services)

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        try:
            resource = self.store.get(KIND, namespace, name)
        except NotFound:
            self.teardown(key)
            return None
        status: dict[str, Any] = copy.deepcopy(resource.status)
        annotations = resource.metadata.annotations
        uid = resource.metadata.uid or ""
        with self._lock:
            running = self.services.get(key)
        if running is not None and running.uid != uid:  # deleted and created again
            self.teardown(key)
        try:
            spec = parse(resource.spec)
            predictor_source(spec.predictor)
            tr_source = transformer_source(spec.transformer, annotations)
            pred_scaling = scaling(spec.predictor, annotations)
            tr_scaling = (
                scaling(spec.transformer, annotations, component_name="transformer")
                if spec.transformer
                else None
            )
        except InvalidSpec as exc:
            set_condition(status, "PredictorReady", "False", "InvalidSpec", str(exc))
            set_condition(status, "IngressReady", "False", PREDICTOR_INGRESS_NOT_CREATED, str(exc))
            set_condition(status, "Ready", "False", "InvalidSpec", str(exc))
            status["modelStatus"] = {  # KServe: an invalid spec blocks the target model
                "transitionStatus": "InvalidSpec",
                "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                "lastFailureInfo": {"reason": "InvalidPredictorSpec", "message": str(exc)},
            }
            self._write(key, resource.status, status)
            self.teardown(key)
            return None
        svc = self._service(key, status, tr_source is not None, uid)
        svc.predictor.timeout = float(spec.predictor.timeout or DEFAULT_TIMEOUT)
        if svc.transformer is not None and spec.transformer is not None:
            svc.transformer.timeout = float(spec.transformer.timeout or DEFAULT_TIMEOUT)
        self._loggers(
            svc, spec.predictor.logger, spec.transformer.logger if spec.transformer else None
        )
        busy = False

        # predictor revisions: which run, with what share of traffic
        book = status.setdefault("ketch", {})
        revs: dict[str, dict[str, Any]] = book.setdefault("revisions", {})
        components = status.setdefault("components", {})
        pred: dict[str, Any] = components.setdefault("predictor", {})
        counters: dict[str, int] = book.setdefault("counters", {})
        latest = self._revision_for(key, revs, counters, "predictor", resource.spec["predictor"])
        stable = pred.get("latestRolledoutRevision")
        if stable not in revs:
            stable = latest
        canary = spec.predictor.canaryTrafficPercent
        latest_rev = self._runtime(svc, latest, revs)
        latest_ready = bool(latest_rev.ready_replicas()) or (
            latest_rev.ever_ready and not latest_rev.replicas
        )
        traffic: list[tuple[str, int]]
        if latest == stable:
            traffic = [(stable, 100)]
        elif canary is not None and canary < 100:
            traffic = (
                [(stable, 100 - canary), (latest, canary)]
                if latest_ready
                else [(stable, 100), (latest, 0)]
            )
        elif latest_ready:
            pred["previousRolledoutRevision"] = stable
            self._event(key, "RevisionPromoted", f"{latest} now takes all traffic (was {stable})")
            stable = latest
            traffic = [(stable, 100)]
        else:
            traffic = [(stable, 100), (latest, 0)]
        pred["latestRolledoutRevision"] = stable
        pred["latestCreatedRevision"] = latest
        keep = {stable, latest, pred.get("previousRolledoutRevision")}
        for old in [n for n, r in revs.items() if r["component"] == "predictor" and n not in keep]:
            revs.pop(old)
        active = {n for n, _ in traffic}

        stats = svc.predictor.stats()
        for rev_name in active:
            rev = self._runtime(svc, rev_name, revs)
            busy |= self._drive(svc, rev, pred_scaling, stats.get(rev_name), svc.predictor)

        # the transformer: one revision, replaced when its spec changes
        tr_active: set[str] = set()
        if tr_source is not None and tr_scaling is not None and svc.transformer is not None:
            tr_spec = dict(resource.spec.get("transformer") or {})
            tr_spec["_source"] = [tr_source.uri, tr_source.model_class]
            tr_name = self._revision_for(key, revs, counters, "transformer", tr_spec)
            for old in [
                n for n, r in revs.items() if r["component"] == "transformer" and n != tr_name
            ]:
                revs.pop(old)
            tr_rev = self._runtime(svc, tr_name, revs)
            tr_active = {tr_name}
            tr_stats = svc.transformer.stats()
            busy |= self._drive(svc, tr_rev, tr_scaling, tr_stats.get(tr_name), svc.transformer)
        else:
            revs_tr = [n for n, r in revs.items() if r["component"] == "transformer"]
            for old in revs_tr:
                revs.pop(old)

        # stop what is no longer wanted
        for rev_name in [n for n in svc.revisions if n not in active and n not in tr_active]:
            rev = svc.revisions.pop(rev_name)
            for replica in list(rev.replicas.values()):
                self._stop_replica(svc, rev, replica)

        self._route(svc, traffic, tr_active)
        self._status(svc, resource.metadata.generation, status, traffic, stable, latest, tr_active)
        self._write(key, resource.status, status)
        pending = any(s.pending for s in stats.values())
        if busy or pending:
            return Result(requeue_after=0.25)
        at_zero = any(not rev.replicas for rev in svc.revisions.values())
        return Result(requeue_after=0.5 if at_zero else 1.0)

    # -- services and revisions ------------------------------------------------------

    def _service(
        self, key: Key, status: dict[str, Any], with_transformer: bool, uid: str
    ) -> Service:
        with self._lock:
            svc = self.services.get(key)
        namespace, name = key
        if svc is None:
            router = ComponentRouter(f"{name}-predictor")
            _host.start(router, _port_of(status.get("components", {}).get("predictor", {})))
            svc = Service(key, router, uid=uid)
            with self._lock:
                self.services[key] = svc
            self._event(key, "RouterStarted", f"predictor router on 127.0.0.1:{router.port}")
        if with_transformer and svc.transformer is None:
            router = ComponentRouter(f"{name}-transformer")
            _host.start(router, _port_of(status.get("components", {}).get("transformer", {})))
            svc.transformer = router
        elif not with_transformer and svc.transformer is not None:
            _host.stop(svc.transformer)
            svc.transformer = None
        return svc

    def _loggers(self, svc: Service, pred: LoggerSpec | None, tr: LoggerSpec | None) -> None:
        namespace, name = svc.key
        for component, router, spec in (
            ("predictor", svc.predictor, pred),
            ("transformer", svc.transformer, tr),
        ):
            if router is None:
                continue
            wanted = (spec.url, spec.mode) if spec is not None and spec.url else None
            if svc.logger_spec.get((component, "")) == wanted:
                continue
            svc.logger_spec[(component, "")] = wanted
            logger = (
                PayloadLogger(
                    wanted[0], wanted[1], service=name, namespace=namespace, component=component
                )
                if wanted is not None
                else None
            )
            router.set_logger(logger)

    def _revision_for(
        self,
        key: Key,
        revs: dict[str, dict[str, Any]],
        counters: dict[str, int],
        component: str,
        spec: dict[str, Any],
    ) -> str:
        digest = revision_hash(spec)
        for rev_name, record in revs.items():
            if record["component"] == component and record["hash"] == digest:
                return rev_name
        number = counters.get(component, 0) + 1
        counters[component] = number
        rev_name = f"{key[1]}-{component}-{number:05d}"
        revs[rev_name] = {"component": component, "hash": digest, "spec": spec}
        self._event(key, "RevisionCreated", f"{component} revision {rev_name}")
        return rev_name

    def _runtime(self, svc: Service, rev_name: str, revs: dict[str, dict[str, Any]]) -> Revision:
        rev = svc.revisions.get(rev_name)
        if rev is None:
            record = revs[rev_name]
            if record["component"] == "predictor":
                source = predictor_source(PredictorSpec.model_validate(record["spec"]))
            else:
                uri, model_class = record["spec"]["_source"]
                source = ModelSource(
                    uri=uri, format="python", protocol="v1", model_class=model_class
                )
            rev = Revision(rev_name, record["component"], source)
            rev.autoscaler.history.append((time.monotonic(), 1))  # start with one replica
            svc.revisions[rev_name] = rev
        return rev

    # -- replicas ------------------------------------------------------------------

    def _drive(
        self,
        svc: Service,
        rev: Revision,
        scale: Scaling,
        stats: Any,
        router: ComponentRouter,
    ) -> bool:
        """Check, replace and scale the revision's replicas; True while any is starting."""
        key = svc.key
        starting = False
        for replica in list(rev.replicas.values()):
            code = replica.handle.poll()
            if code is not None:
                rev.replicas.pop(replica.name)
                router.drop_replica(replica.name)
                svc.exited_logs[replica.name] = str(replica.log_path)
                if replica.ready:
                    self._event(
                        key,
                        "ReplicaExited",
                        f"replica {replica.name} exited with {code}; starting another",
                        "Warning",
                    )
                else:
                    tail = _tail(replica.log_path, replica.offset)
                    rev.fail(f"replica {replica.name} exited with {code} while starting: {tail}")
                    self._event(key, "ReplicaFailed", str(rev.failed), "Warning")
                continue
            if not replica.ready:
                starting = True
                self._check_ready(svc, rev, replica)
        if rev.failed is not None:  # keep the error; try again after a backoff
            retry = time.monotonic() >= rev.retry_at and not rev.replicas
            desired = 1 if retry else len(rev.replicas)
        else:
            desired = rev.autoscaler.desired(scale, stats, len(rev.replicas))
            if not rev.ever_ready:  # a new revision runs one replica until it has been ready
                desired = max(desired, 1)
        current = len(rev.replicas)
        if desired > current:
            if current:
                self._event(key, "ScaledUp", f"{rev.name}: {current} -> {desired} replicas")
            for _ in range(desired - current):
                self._start_replica(svc, rev)
            starting = True
        elif desired < current:
            self._event(key, "ScaledDown", f"{rev.name}: {current} -> {desired} replicas")
            ordered = sorted(rev.replicas.values(), key=lambda r: (r.ready, -r.started))
            for replica in ordered[: current - desired]:
                self._stop_replica(svc, rev, replica)
        return starting

    def _start_replica(self, svc: Service, rev: Revision) -> None:
        namespace, name = svc.key
        replica_name = f"{rev.name}-{rev.next_index}"
        rev.next_index += 1
        folder = log_dir(namespace, name, svc.uid)
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / f"{replica_name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        source = rev.source
        command = [
            sys.executable,
            "-m",
            "ketch.cli.main",
            "serve",
            source.uri,
            "--name",
            name,
            "--port",
            "0",
            "--grpc-port",
            "-1",
        ]
        if source.format:
            command += ["--format", source.format]
        if source.model_class:
            command += ["--model-class", source.model_class]
        if rev.component == "transformer":
            command += ["--predictor-url", f"http://127.0.0.1:{svc.predictor.port}"]
        handle = self.backend.start(
            ProcessSpec(
                name=f"inferenceservice {namespace}/{name} replica {replica_name}",
                command=command,
                env={"PYTHONUNBUFFERED": "1"},
                stdout_path=log_path,
                stderr_path=log_path,
            )
        )
        replica = Replica(replica_name, rev.name, handle, log_path, offset)
        rev.replicas[replica_name] = replica
        router = svc.transformer if rev.component == "transformer" else svc.predictor
        add_callback = getattr(handle, "add_exit_callback", None)
        if callable(add_callback) and router is not None:
            add_callback(lambda _h, r=router, n=replica_name: r.drop_replica(n))
        self._event(svc.key, "ReplicaStarted", f"replica {replica_name} (pid {handle.pid})")

    def _check_ready(self, svc: Service, rev: Revision, replica: Replica) -> None:
        name = svc.key[1]
        if not replica.port:
            match = READY_LINE.search(_read(replica.log_path, replica.offset))
            if match is None:
                if time.monotonic() - replica.started > START_TIMEOUT:
                    rev.fail(f"replica {replica.name} did not start in {START_TIMEOUT:.0f}s")
                    self._stop_replica(svc, rev, replica)
                return
            replica.host, replica.port = match.group(1), int(match.group(2))
        base = f"http://{replica.host}:{replica.port}"
        try:
            response = self._http.get(f"{base}/v2/models/{name}/ready")
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            replica.ready = True
            if not rev.ever_ready:  # counts as activity: scale-down windows start now
                rev.autoscaler.history.append((time.monotonic(), 1))
            rev.ever_ready = True
            rev.failed = None
            rev.attempts = 0
            self._event(svc.key, "ReplicaReady", f"replica {replica.name} serves {base}")
            return
        reason = ""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reason = str(self._http.get(f"{base}/v1/models/{name}").json().get("error") or "")
        if reason:
            rev.fail(f"model {name!r} failed to load: {reason}")
            self._event(svc.key, "LoadFailed", str(rev.failed), "Warning")
            self._stop_replica(svc, rev, replica)

    def _stop_replica(self, svc: Service, rev: Revision, replica: Replica) -> None:
        rev.replicas.pop(replica.name, None)
        for router in (svc.predictor, svc.transformer):
            if router is not None:
                router.drop_replica(replica.name)
        svc.exited_logs[replica.name] = str(replica.log_path)
        thread = threading.Thread(
            target=replica.handle.cancel, kwargs={"grace": STOP_GRACE}, daemon=True
        )
        thread.start()
        svc.stopping = [t for t in svc.stopping if t.is_alive()] + [thread]

    def _route(self, svc: Service, traffic: list[tuple[str, int]], tr_active: set[str]) -> None:
        svc.predictor.set_revisions(
            [RevisionTraffic(n, pct, _addresses(svc.revisions.get(n))) for n, pct in traffic]
        )
        if svc.transformer is not None:
            svc.transformer.set_revisions(
                [RevisionTraffic(n, 100, _addresses(svc.revisions.get(n))) for n in tr_active]
            )

    # -- status --------------------------------------------------------------------

    def _status(
        self,
        svc: Service,
        generation: int | None,
        status: dict[str, Any],
        traffic: list[tuple[str, int]],
        stable: str,
        latest: str,
        tr_active: set[str],
    ) -> None:
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
            for n, pct in traffic
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

        pred_ok, pred_reason, pred_message = _component_state(
            [svc.revisions.get(n) for n, pct in traffic if pct > 0], latest_rev
        )
        set_condition(status, "PredictorReady", pred_ok, pred_reason, pred_message)
        conditions_ok = [pred_ok]
        if tr_active:
            tr_ok, tr_reason, tr_message = _component_state(
                [svc.revisions.get(n) for n in tr_active], None
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
        else:
            failing = [
                c
                for c in status["conditions"]
                if c["type"] in ("PredictorReady", "TransformerReady") and c["status"] != "True"
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

        status["modelStatus"] = _model_status(stable_rev, latest_rev)
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
        for replica_name in list(svc.exited_logs)[:-_KEPT_EXITED_LOGS]:
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

    def _write(self, key: Key, old: dict[str, Any], new: dict[str, Any]) -> None:
        if old == new:
            return
        with contextlib.suppress(NotFound):
            self.store.update_status(KIND, key[0], key[1], new)

    def _event(self, key: Key, reason: str, message: str, type: EventType = "Normal") -> None:
        log.info("%s/%s %s: %s", key[0], key[1], reason, message)
        with contextlib.suppress(NotFound):
            self.store.record_event(KIND, key[0], key[1], reason=reason, message=message, type=type)

    # -- teardown ------------------------------------------------------------------

    def teardown(self, key: Key) -> None:
        """Stop the service's replicas and routers (deleted, or no longer valid)."""
        with self._lock:
            svc = self.services.pop(key, None)
        if svc is None:
            return
        for rev in list(svc.revisions.values()):
            for replica in list(rev.replicas.values()):
                self._stop_replica(svc, rev, replica)
        svc.revisions.clear()
        for router in (svc.predictor, svc.transformer):
            if router is not None:
                _host.stop(router)
        for thread in svc.stopping:
            thread.join(STOP_GRACE + 5)

    def shutdown(self) -> None:
        with self._lock:
            keys = list(self.services)
        for key in keys:
            self.teardown(key)


def _component_state(
    serving: list[Revision | None], latest: Revision | None
) -> tuple[Any, str, str]:
    if latest is not None and latest.failed:
        return "False", "RevisionFailed", f"revision {latest.name}: {latest.failed}"
    for rev in serving:
        if rev is None:
            return "Unknown", "RevisionMissing", "a revision is not running"
        if rev.failed:
            return "False", "RevisionFailed", f"revision {rev.name}: {rev.failed}"
        if not rev.ready_replicas():
            if rev.ever_ready and not rev.replicas:
                continue  # scaled to zero: the next request starts a replica
            return "Unknown", "ReplicasStarting", f"revision {rev.name}: no replica is ready yet"
    return "True", "RevisionReady", ", ".join(r.name for r in serving if r is not None)


def _model_status(stable: Revision | None, latest: Revision | None) -> dict[str, Any]:
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


def log_dir(namespace: str, name: str, uid: str) -> Path:
    """Where an InferenceService's replica logs go: one folder per object (its uid), so
    a service deleted and created again under its name starts with fresh logs."""
    folder = config.ketch_home() / "logs" / "inferenceservices" / namespace / name
    return folder / uid if uid else folder


def _addresses(rev: Revision | None) -> tuple[ReplicaAddress, ...]:
    if rev is None:
        return ()
    return tuple(ReplicaAddress(r.name, r.host, r.port) for r in rev.ready_replicas())


def _port_of(component: dict[str, Any]) -> int:
    url = str(component.get("url") or "")
    match = re.search(r":(\d+)$", url)
    return int(match.group(1)) if match else 0


def _read(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, offset: int, lines: int = 5) -> str:
    text = _read(path, offset).strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def _shutdown_all() -> None:
    for controller in list(_controllers):
        with contextlib.suppress(Exception):
            controller.shutdown()
