"""The InferenceService controller: revisions, rollout, routers, teardown.

Each predictor spec (less its scaling and traffic fields) is a revision, named
as KServe names them (``NAME-predictor-00001``). A revision runs as ``ketch
serve`` replicas started through the compute backend
(:mod:`ketch.serving.replicas`), behind the service's router
(:mod:`ketch.serving.router`), which gives it one stable URL. A changed
predictor with ``canaryTrafficPercent`` gets that share of traffic once ready;
without it (or at 100) it is promoted once ready; going back to the rolled-out
spec drops the canary. A transformer runs in front of the predictor's router.
The status is written by :mod:`ketch.serving.status`.

Each running replica is a pod (:mod:`ketch.serving.pods`); deleting one stops that
replica and another is started in its place. Replicas are charged to the namespace's
quota as they start (:mod:`ketch.serving.replicas`); after a restart, what the
service's pods held is handed to the replicas it starts again, the rest dropped once
the first pass has started them.

What runs lives in this process and belongs to the controller: :meth:`stop`
(called by the controller manager when the server or the embedded control plane
stops) stops every replica and router it started. On a restart the controller
starts it all again from the stored resources (routers try the ports they had).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from ketch.core import charges
from ketch.core.access import bound_access, workload_env
from ketch.core.backend import Backend
from ketch.core.controller import Controller, Key, Result
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.store.resources import EventType, ResourceStore
from ketch.serving import modelregistry
from ketch.serving.components import (
    ModelSource,
    component_resources,
    predictor_source,
    revision_hash,
    scaling,
    transformer_source,
)
from ketch.serving.gate import EndpointGate, is_public
from ketch.serving.payload_logger import PayloadLogger
from ketch.serving.pods import ServicePods
from ketch.serving.replicas import Replicas
from ketch.serving.router import DEFAULT_TIMEOUT, ComponentRouter, RevisionTraffic
from ketch.serving.router_host import RouterHost
from ketch.serving.running import Revision, Service, addresses
from ketch.serving.spec import LoggerSpec, PredictorSpec, parse, parse_predictor
from ketch.serving.status import Rollout, write_invalid, write_status

log = logging.getLogger("ketch.serving.controller")

KIND = "InferenceService"


def controller_factory(store: ResourceStore, backend: Backend) -> Controller:
    return InferenceServiceController(store, backend)


class InferenceServiceController(Controller):
    kind = KIND
    workers = 2

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.services: dict[Key, Service] = {}
        self.routers = RouterHost()
        # who may call the services' endpoints: the access bound to the store (none
        # without a server, or on a server without access: anyone)
        access = bound_access(store.database)
        self.gate = EndpointGate(access) if access is not None else None
        self.replicas = Replicas(
            backend,
            self._event,
            lambda namespace: workload_env(store.database, namespace),
            store,
        )
        self.pods = ServicePods(store)
        self._lock = threading.Lock()

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
            write_invalid(status, exc)
            self._write(key, resource.status, status)
            self.teardown(key)
            return None
        svc = self._service(key, status, tr_source is not None, uid)
        public = is_public(annotations)
        for router in svc.routers():
            router.public = public
        for pod in self.pods.deletion_requests(resource):  # replaced as a ReplicaSet does
            for rev in list(svc.revisions.values()):
                replica = rev.replicas.get(pod)
                if replica is not None:
                    self._event(key, "ReplicaDeleted", f"pod {pod} was deleted; starting another")
                    self.replicas.stop(svc, rev, replica)
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
        counters: dict[str, int] = book.setdefault("counters", {})
        rollout = self._roll_out(
            svc, status, revs, counters, resource.spec["predictor"], spec.predictor
        )
        active = {n for n, _ in rollout.traffic}
        stats = svc.predictor.stats()
        for rev_name in active:
            rev = self._runtime(svc, rev_name, revs)
            busy |= self.replicas.drive(svc, rev, pred_scaling, stats.get(rev_name), svc.predictor)

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
            busy |= self.replicas.drive(
                svc, tr_rev, tr_scaling, tr_stats.get(tr_name), svc.transformer
            )
        else:
            revs_tr = [n for n, r in revs.items() if r["component"] == "transformer"]
            for old in revs_tr:
                revs.pop(old)
        rollout = Rollout(rollout.traffic, rollout.stable, rollout.latest, frozenset(tr_active))
        # what its replicas held before a restart: charged again as they started, or not needed
        charges.ledger_of(self.store).settle(charges.owner_key(KIND, namespace, name))

        # stop what is no longer wanted
        for rev_name in [n for n in svc.revisions if n not in active and n not in tr_active]:
            rev = svc.revisions.pop(rev_name)
            for replica in list(rev.replicas.values()):
                self.replicas.stop(svc, rev, replica)

        self._route(svc, rollout)
        self.pods.record(resource, svc)
        write_status(svc, resource.metadata.generation, status, rollout)
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
            router = self._guarded(ComponentRouter(f"{name}-predictor"), key)
            self.routers.start(router, _port_of(status.get("components", {}).get("predictor", {})))
            svc = Service(key, router, uid=uid)
            with self._lock:
                self.services[key] = svc
            self._event(key, "RouterStarted", f"predictor router on 127.0.0.1:{router.port}")
        if with_transformer and svc.transformer is None:
            router = self._guarded(ComponentRouter(f"{name}-transformer"), key)
            self.routers.start(
                router, _port_of(status.get("components", {}).get("transformer", {}))
            )
            svc.transformer = router
        elif not with_transformer and svc.transformer is not None:
            self.routers.stop(svc.transformer)
            svc.transformer = None
        return svc

    def _guarded(self, router: ComponentRouter, key: Key) -> ComponentRouter:
        """``router`` checking its callers with the controller's gate (before it
        listens: no request gets past it)."""
        router.gate = self.gate
        router.namespace, router.service = key
        return router

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

    def _roll_out(
        self,
        svc: Service,
        status: dict[str, Any],
        revs: dict[str, dict[str, Any]],
        counters: dict[str, int],
        raw: dict[str, Any],
        predictor: PredictorSpec,
    ) -> Rollout:
        """The predictor's revisions and traffic split: the latest spec is a canary,
        promoted once ready, or the one rolled out; old revision records are dropped."""
        key = svc.key
        components = status.setdefault("components", {})
        pred: dict[str, Any] = components.setdefault("predictor", {})
        latest = self._revision_for(key, revs, counters, "predictor", raw)
        stable = pred.get("latestRolledoutRevision")
        if stable not in revs:
            stable = latest
        canary = predictor.canaryTrafficPercent
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
        return Rollout(traffic, stable, latest)

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
                source = predictor_source(parse_predictor(record["spec"]))
                if modelregistry.is_registry_uri(source.uri):  # resolved in its namespace
                    source = dataclasses.replace(
                        source, uri=modelregistry.in_namespace(source.uri, svc.key[0])
                    )
            else:
                uri, model_class = record["spec"]["_source"]
                source = ModelSource(
                    uri=uri, format="python", protocol="v1", model_class=model_class
                )
            rev = Revision(
                rev_name, record["component"], source, resources=component_resources(record["spec"])
            )
            rev.autoscaler.history.append((time.monotonic(), 1))  # start with one replica
            svc.revisions[rev_name] = rev
        return rev

    def _route(self, svc: Service, rollout: Rollout) -> None:
        svc.predictor.set_revisions(
            [RevisionTraffic(n, pct, addresses(svc.revisions.get(n))) for n, pct in rollout.traffic]
        )
        if svc.transformer is not None:
            svc.transformer.set_revisions(
                [
                    RevisionTraffic(n, 100, addresses(svc.revisions.get(n)))
                    for n in rollout.transformer
                ]
            )

    # -- writes ----------------------------------------------------------------------

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
        self.pods.forget(key)
        if svc is None:
            charges.ledger_of(self.store).release(charges.owner_key(KIND, *key))
            return
        self.replicas.stop_all(svc)
        charges.ledger_of(self.store).release(charges.owner_key(KIND, *key))
        for router in svc.routers():
            self.routers.stop(router)
        self.replicas.wait_stopped(svc)

    def stop(self) -> None:
        """Stop every replica and router this controller started, and the routers'
        event loop (the server or embedded control plane is stopping)."""
        with self._lock:
            keys = list(self.services)
        for key in keys:
            with contextlib.suppress(Exception):
                self.teardown(key)
        self.routers.close()
        self.replicas.close()


def _port_of(component: dict[str, Any]) -> int:
    url = str(component.get("url") or "")
    match = re.search(r":(\d+)$", url)
    return int(match.group(1)) if match else 0
