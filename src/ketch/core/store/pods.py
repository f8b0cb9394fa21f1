"""Pods: what runs for an object, as Kubernetes' core/v1 ``Pod`` shows it, in the
``pods`` table.

Ketch runs a job's replicas, a batch Job's pods, a TrainJob's nodes, an
InferenceService's replicas and a pipeline's tasks as local processes; each of
them is recorded here as a pod by the capability that runs it, so ``kubectl get
pods``, ``kubectl logs`` and the SDKs that read pods (Katib's and Trainer's
``get_job_logs``) find them. Writers describe a pod as a :class:`PodRecord` (its
owner, labels, containers and their states, where each container's log is) and
:meth:`PodStore.put` it whenever it changes (or :meth:`PodStore.put_in` it in a write
transaction of their own, as a pipeline task's pod is stored with its task); the
server reads the table (it never writes a pod, except to mark one for deletion and
to remove pods whose owner is gone).

A pod stays after its process ended (``Succeeded``/``Failed``, its log readable)
until its owner removes it (the owner is deleted, or its ``cleanPodPolicy`` or
TTL says so). ``DELETE`` of a pod is answered by the pod's own rule
(:attr:`PodRecord.deletion`): its owner's controller restarts or replaces it
(``owner``: the server marks the pod, the controller sees the mark at its next
pass, see :meth:`PodStore.deletion_requests`), it is removed at once (``remove``,
a finished pod nothing recreates), or the deletion is refused with a reason
(``refuse``).

Revisions: every write to a pod (its creation, a change of its status or phase, a
restart that replaces it, its mark for deletion, its removal) takes the store's next
revision in its transaction and is journaled, as a resource's write is
(:func:`~ketch.core.store.resources.next_revision` and
:func:`~ketch.core.store.resources.journal`): a pod's ``metadata.resourceVersion`` is that revision, a list of
pods answers the store's revision it was read at, and a watch of pods reads the
journal (``kind`` ``Pod``) after a resourceVersion exactly.

Logs: each container names its log file (:class:`LogRef`: never a path from a
request; the server reads it through :mod:`ketch.core.logfiles`), and the byte
offsets where its current run and the run before it began, so ``previous`` reads
the earlier run of a restarted container out of the same file. Processes write
their logs themselves, so lines carry no time: the writer notes, each time it looks
at a running pod, how far its log has grown (a line ``<offset> <unix ns>`` appended
to ``<log>.times``, see :func:`log_times`), which bounds when each line was written
(``sinceSeconds``, ``timestamps``) to within one look.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, and_, event, or_, select
from sqlalchemy.orm import Session

from ketch.core.errors import Conflict, InvalidSpec, ObjectNotFound
from ketch.core.store.db import Database, retry_locked
from ketch.core.store.models import PodRow
from ketch.core.store.resources import (
    ChangeType,
    ListCursor,
    ManifestList,
    journal,
    list_revision,
    next_revision,
)
from ketch.core.store.selectors import LabelSelector
from ketch.core.timestamps import format_time, parse_time, utcnow

log = logging.getLogger(__name__)

KIND = "Pod"
API_VERSION = "v1"
Phase = Literal["Pending", "Running", "Succeeded", "Failed"]
ContainerState = Literal["waiting", "running", "terminated"]
#: How a pod's ``DELETE`` is answered (see the module's documentation).
Deletion = Literal["owner", "remove", "refuse"]
#: The annotation saying a pod's images are not run (the local backend runs commands).
IMAGE_ANNOTATION = "ketch.dev/image-not-used"
#: The address every local pod has.
LOCAL_IP = "127.0.0.1"
#: What a log's growth marks are kept in: ``<log>`` + this suffix.
TIMES_SUFFIX = ".times"
_PAGE = 500


def node_name() -> str:
    """The host the pods run on (``spec.nodeName``)."""
    return socket.gethostname() or "localhost"


def new_uid() -> str:
    return str(uuid.uuid4())


def log_size(path: str | Path | None) -> int:
    """How long the log at ``path`` is now (0 when it does not exist yet): where the
    output of a process started now begins."""
    if path is None:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


# -- what writers describe ------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The object a pod belongs to (its ``ownerReferences``)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass
class LogRef:
    """Where a container's output is: ``path`` (a file Ketch writes, inside its log
    folders), the offset its current run began at and, for a restarted container,
    the offset the run before began at (that run ends where the current one begins)."""

    path: str
    start: int = 0
    previous: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "start": self.start, "previous": self.previous}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogRef:
        previous = data.get("previous")
        return cls(
            str(data.get("path") or ""),
            int(data.get("start") or 0),
            None if previous is None else int(previous),
        )


@dataclass
class Terminated:
    """How a container's run ended."""

    exit_code: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        reason = self.reason or ("Completed" if self.exit_code == 0 else "Error")
        out: dict[str, Any] = {"exitCode": self.exit_code, "reason": reason}
        if self.exit_code < 0:  # killed by a signal: Kubernetes reports 128 + signal
            out["exitCode"] = 128 - self.exit_code
            out["signal"] = -self.exit_code
        if self.message:
            out["message"] = self.message
        if self.started_at is not None:
            out["startedAt"] = format_time(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = format_time(self.finished_at)
        return out


@dataclass
class ContainerRecord:
    """One container of a pod: its spec (as the pod template has it) and its state."""

    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    state: ContainerState = "waiting"
    #: why it waits (``ContainerCreating``, ``CrashLoopBackOff``) or how it ended
    reason: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    #: set once its current run ended (with ``state == "terminated"``)
    ended: Terminated | None = None
    restarts: int = 0
    #: how the run before the current one ended (a restarted container)
    last: Terminated | None = None
    ready: bool | None = None  # None: ready while running
    log: LogRef | None = None

    @property
    def image(self) -> str:
        return str(self.spec.get("image") or "")

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": format_time(self.started_at or utcnow())}}
        elif self.state == "terminated" and self.ended is not None:
            state = {"terminated": self.ended.to_json()}
        else:
            waiting: dict[str, Any] = {"reason": self.reason or "ContainerCreating"}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        ready = self.state == "running" if self.ready is None else self.ready
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": bool(ready and self.state == "running"),
            "started": self.state == "running",
            "restartCount": self.restarts,
            "state": state,
            "lastState": {"terminated": self.last.to_json()} if self.last is not None else {},
        }


@dataclass
class PodRecord:
    """A pod as its writer describes it."""

    namespace: str
    name: str
    owner: Owner
    uid: str = field(default_factory=new_uid)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    containers: list[ContainerRecord] = field(default_factory=list)
    phase: Phase = "Pending"
    #: why a pod is not running yet (``Unschedulable`` while it waits for the machine)
    reason: str | None = None
    message: str | None = None
    restart_policy: str = "Never"
    start_time: datetime | None = None
    deletion: Deletion = "owner"
    #: why a ``DELETE`` is refused (``deletion == "refuse"``)
    refusal: str = ""
    #: the node its processes run on (``spec.nodeName``; this machine's name when
    #: ``None``) and their address (``status.podIP``; 127.0.0.1 when ``None``)
    node: str | None = None
    ip: str | None = None

    def spec(self) -> dict[str, Any]:
        containers = []
        for container in self.containers:
            spec = {k: v for k, v in container.spec.items() if v not in (None, [], {})}
            spec["name"] = container.name
            containers.append(spec)
        return {
            "containers": containers,
            "restartPolicy": self.restart_policy,
            "nodeName": self.node or node_name(),
            "schedulerName": "ketch",
            "terminationGracePeriodSeconds": 3,
        }

    def status(self) -> dict[str, Any]:
        statuses = [c.status() for c in self.containers]
        started = self.phase != "Pending" or any(c["started"] for c in statuses)
        ready = self.phase == "Running" and bool(statuses) and all(s["ready"] for s in statuses)
        moment = format_time(self.start_time or utcnow())
        scheduled = self.reason != "Unschedulable"
        conditions = [
            _condition("PodScheduled", scheduled, moment, self.reason, self.message),
            _condition("Initialized", started, moment),
            _condition("ContainersReady", ready, moment),
            _condition("Ready", ready, moment),
        ]
        out: dict[str, Any] = {"phase": self.phase, "conditions": conditions}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        if scheduled:
            ip = self.ip or LOCAL_IP
            out.update(hostIP=ip, hostIPs=[{"ip": ip}], podIP=ip, podIPs=[{"ip": ip}])
        if self.start_time is not None:
            out["startTime"] = format_time(self.start_time)
        out["containerStatuses"] = statuses
        out["qosClass"] = "BestEffort"
        return out

    def logs(self) -> dict[str, Any]:
        return {c.name: c.log.to_json() for c in self.containers if c.log is not None}


def _condition(
    type_: str, ok: bool, moment: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": type_,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": moment,
    }
    if not ok and reason:
        condition["reason"] = reason
    if not ok and message:
        condition["message"] = message
    return condition


# -- the table (``PodRow``, in :mod:`ketch.core.store.models`) ---------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_manifest(row: PodRow) -> dict[str, Any]:
    """The ``Pod`` a row stands for (its logs' paths are not part of it)."""
    metadata: dict[str, Any] = {
        "name": row.name,
        "namespace": row.namespace,
        "uid": row.uid,
        "resourceVersion": str(row.resource_version),
        "creationTimestamp": format_time(_aware(row.created_at) or utcnow()),
        "labels": dict(row.labels or {}),
        "annotations": dict(row.annotations or {}),
        "ownerReferences": [
            {
                "apiVersion": row.owner_api_version,
                "kind": row.owner_kind,
                "name": row.owner_name,
                "uid": row.owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    requested = _aware(row.deletion_requested_at)
    if requested is not None:
        metadata["deletionTimestamp"] = format_time(requested)
        metadata["deletionGracePeriodSeconds"] = 3
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": dict(row.spec or {}),
        "status": dict(row.status or {}),
    }


def _written(session: Session, row: PodRow, type_: ChangeType) -> None:
    """Give ``row`` (created or changed in ``session``) the store's next revision and
    journal the pod as written."""
    row.resource_version = next_revision(session)
    journal(session, row.resource_version, type_, to_manifest(row))


def _removed(session: Session, row: PodRow) -> dict[str, Any]:
    """Remove ``row`` in ``session``, journaled as DELETED: the pod as it was, at the
    revision of its removal (as a watch sends it); that manifest."""
    gone = to_manifest(row)
    session.delete(row)
    session.flush()
    revision = next_revision(session)
    gone["metadata"]["resourceVersion"] = str(revision)
    journal(session, revision, "DELETED", gone)
    return gone


def _remove_all(session: Session, query: Select[Any]) -> int:
    """Remove the pods ``query`` selects, by namespace then name, each journaled; how
    many."""
    rows = session.scalars(query.order_by(PodRow.namespace, PodRow.name)).all()
    for row in rows:
        _removed(session, row)
    return len(rows)


@dataclass(frozen=True)
class PodLogs:
    """A pod as served, with where its containers' logs are."""

    manifest: dict[str, Any]
    logs: dict[str, LogRef]


@dataclass(frozen=True)
class OwnerKey:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


def _content(record: PodRecord) -> dict[str, Any]:
    return {
        "owner": [
            record.owner.api_version,
            record.owner.kind,
            record.owner.name,
            record.owner.uid,
        ],
        "labels": dict(record.labels),
        "annotations": dict(record.annotations),
        "spec": record.spec(),
        "status": record.status(),
        "logs": record.logs(),
        "deletion": record.deletion,
        "refusal": record.refusal,
    }


def _digest(content: Mapping[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _not_found(namespace: str, name: str) -> ObjectNotFound:
    return ObjectNotFound(
        f"Pod {name!r} not found in namespace {namespace!r}",
        kind=KIND,
        namespace=namespace,
        name=name,
        hint=f"list the pods with: kubectl get pods -n {namespace}",
    )


#: A pod to write: its record, its content and that content's digest.
_Change = tuple[PodRecord, dict[str, Any], str]


class PodStore:
    """Reads and writes the ``pods`` table of ``database``.

    A writer (a controller) keeps one, which remembers what it last wrote so a pass
    that changed nothing writes nothing; it also keeps the log growth marks of the
    pods it writes (:func:`log_times`).
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._written: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, name) -> (uid, digest)
        self._marked: dict[str, int] = {}  # log path -> the size last marked

    # -- writes --------------------------------------------------------------------

    def put(self, records: Iterable[PodRecord]) -> None:
        """Store these pods as they are now (created, or updated where they changed;
        a pod of the same name with another uid is replaced), in a write of their own."""
        changed = self._changed(records)
        if not changed:
            return

        def write() -> None:
            with self.database.session() as session:
                self._write(session, changed)

        retry_locked(write)
        self._remember(changed)

    def put_in(self, session: Session, records: Iterable[PodRecord]) -> None:
        """:meth:`put` in ``session``, the caller's write transaction (a writer that
        stores its own object's change and its pod's together): what is written is
        remembered once ``session`` commits."""
        changed = self._changed(records)
        if not changed:
            return
        self._write(session, changed)
        event.listen(session, "after_commit", lambda _: self._remember(changed), once=True)

    def _changed(self, records: Iterable[PodRecord]) -> builtins.list[_Change]:
        """The records that differ from what this store last wrote of their pods (with
        their content and its digest); their logs' growth is marked."""
        changed: builtins.list[_Change] = []
        for record in records:
            self._mark_logs(record)
            content = _content(record)
            digest = _digest(content)
            key = (record.namespace, record.name)
            if self._written.get(key) == (record.uid, digest):
                continue
            changed.append((record, content, digest))
        return changed

    def _write(self, session: Session, changed: builtins.list[_Change]) -> None:
        for record, content, _ in changed:
            self._upsert(session, record, content)

    def _remember(self, changed: builtins.list[_Change]) -> None:
        for record, _, digest in changed:
            self._written[(record.namespace, record.name)] = (record.uid, digest)

    def _upsert(self, session: Session, record: PodRecord, content: Mapping[str, Any]) -> None:
        now = utcnow()
        row = session.scalars(
            select(PodRow).where(PodRow.namespace == record.namespace, PodRow.name == record.name)
        ).first()
        if row is not None and row.uid != record.uid:
            _removed(session, row)  # a new pod under the name of an earlier one
            row = None
        change: ChangeType = "MODIFIED"
        if row is None:
            change = "ADDED"
            created = now
            if record.start_time is not None and record.start_time < now:
                created = record.start_time  # a pod is made before its containers start
            row = PodRow(
                uid=record.uid,
                namespace=record.namespace,
                name=record.name,
                created_at=created,
                deletion_requested_at=None,
            )
            session.add(row)
        row.owner_api_version = record.owner.api_version
        row.owner_kind = record.owner.kind
        row.owner_name = record.owner.name
        row.owner_uid = record.owner.uid
        row.labels = dict(content["labels"])
        row.annotations = dict(content["annotations"])
        row.spec = dict(content["spec"])
        row.status = dict(content["status"])
        row.logs = dict(content["logs"])
        row.deletion = record.deletion
        row.refusal = record.refusal
        row.updated_at = now
        _written(session, row, change)

    def remove(self, namespace: str, names: Iterable[str]) -> int:
        """Remove these pods (those that exist); how many were removed."""
        wanted = builtins.list(names)
        if not wanted:
            return 0
        for name in wanted:
            self._written.pop((namespace, name), None)
        return self._remove_where(PodRow.namespace == namespace, PodRow.name.in_(wanted))

    def remove_owned(
        self, kind: str, namespace: str, name: str, *, keep_uid: str | None = None
    ) -> int:
        """Remove the pods of the object ``kind`` ``namespace/name`` (all of them, or,
        with ``keep_uid``, those of an earlier object of that name)."""
        self._written = {k: v for k, v in self._written.items() if k[0] != namespace}
        conditions = [
            PodRow.owner_kind == kind,
            PodRow.namespace == namespace,
            PodRow.owner_name == name,
        ]
        if keep_uid is not None:
            conditions.append(PodRow.owner_uid != keep_uid)
        return self._remove_where(*conditions)

    def remove_owner_uids(self, uids: Iterable[str]) -> int:
        """Remove the pods of the owners with these uids."""
        wanted = builtins.list(uids)
        if not wanted:
            return 0
        self._written.clear()
        return self._remove_where(PodRow.owner_uid.in_(wanted))

    def _remove_where(self, *conditions: Any) -> int:
        """Remove the pods that match ``conditions``, each journaled; how many. A read
        looks first: most calls (a controller's pass over a new object) find none, and
        then take no write."""
        with self.database.session(readonly=True) as session:
            if session.scalar(select(PodRow.uid).where(*conditions).limit(1)) is None:
                return 0

        def write() -> int:
            with self.database.session() as session:
                return _remove_all(session, select(PodRow).where(*conditions))

        return retry_locked(write)

    def deletion_requests(self, owner_uid: str) -> set[str]:
        """The names of ``owner_uid``'s pods a client asked to delete (to restart or
        replace, as the owner's controller does)."""
        if not owner_uid:
            return set()
        with self.database.session(readonly=True) as session:
            rows = session.execute(
                select(PodRow.name).where(
                    PodRow.owner_uid == owner_uid, PodRow.deletion_requested_at.is_not(None)
                )
            ).all()
        return {name for (name,) in rows}

    def request_deletion(
        self, namespace: str, name: str, *, owner_acts: bool = True, dry_run: bool = False
    ) -> tuple[dict[str, Any], OwnerKey | None]:
        """A client's ``DELETE``, as the pod's rule says: removed (the pod as it was,
        no owner to tell), refused (``Conflict`` with the writer's reason), or marked
        for its owner's controller (the pod with its ``deletionTimestamp``, and the
        owner to reconcile). ``owner_acts``: a controller runs that will act on the
        mark (without one, such a deletion is refused). ``dry_run``: checked, not done."""

        def write() -> tuple[dict[str, Any], OwnerKey | None]:
            with self.database.session() as session:
                row = self._find(session, namespace, name)
                if row is None:
                    raise _not_found(namespace, name)
                owner = OwnerKey(
                    row.owner_api_version, row.owner_kind, namespace, row.owner_name, row.owner_uid
                )
                if row.deletion == "refuse":
                    raise Conflict(
                        row.refusal or f"pod {name!r} cannot be deleted",
                        hint=f"act on its {row.owner_kind} {row.owner_name!r} instead",
                    )
                if row.deletion == "owner" and not owner_acts:
                    raise Conflict(
                        f"pod {name!r} is replaced by the controller of its {row.owner_kind} "
                        f"{row.owner_name!r} when it is deleted, and no controller runs in "
                        "this server",
                        hint="start the server with its controllers (ketch up)",
                    )
                if dry_run:
                    return to_manifest(row), None
                if row.deletion == "remove":
                    manifest = to_manifest(row)
                    _removed(session, row)
                    return manifest, None
                if row.deletion_requested_at is None:
                    row.deletion_requested_at = utcnow()
                    _written(session, row, "MODIFIED")
                session.flush()
                return to_manifest(row), owner

        return retry_locked(write)

    # -- reads ---------------------------------------------------------------------

    @staticmethod
    def _find(session: Session, namespace: str, name: str) -> PodRow | None:
        return session.scalars(
            select(PodRow).where(PodRow.namespace == namespace, PodRow.name == name)
        ).first()

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.logs_of(namespace, name).manifest

    def logs_of(self, namespace: str, name: str) -> PodLogs:
        """The pod and where its containers' logs are (``NotFound`` when there is none)."""
        with self.database.session(readonly=True) as session:
            row = self._find(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            logs = {str(k): LogRef.from_json(v) for k, v in (row.logs or {}).items()}
            return PodLogs(to_manifest(row), logs)

    def list(
        self,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ManifestList:
        """Pods in ``namespace`` (``None``: all), by namespace then name, matching
        ``label_selector``, ``limit`` at a time: the page, the token of the next one
        and the store's revision the list was read at (a continued list answers its
        first page's; a token older than the journal keeps is
        :class:`~ketch.core.errors.Expired`), as :meth:`ResourceStore.list
        <ketch.core.store.resources.ResourceStore.list>` answers."""
        if limit is not None and limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        selector = LabelSelector.parse(label_selector)
        cursor = ListCursor.decode(continue_token) if continue_token else None
        items: builtins.list[dict[str, Any]] = []
        with self.database.session(readonly=True) as session:
            revision = list_revision(session, cursor)  # in the rows' snapshot
            version = str(revision)
            while True:
                query = select(PodRow)
                if namespace is not None:
                    query = query.where(PodRow.namespace == namespace)
                if cursor is not None:
                    query = query.where(
                        or_(
                            PodRow.namespace > cursor.namespace,
                            and_(PodRow.namespace == cursor.namespace, PodRow.name > cursor.name),
                        )
                    )
                query = query.order_by(PodRow.namespace, PodRow.name).limit(_PAGE)
                rows = session.scalars(query).all()
                for row in rows:
                    if not selector.matches(row.labels or {}):
                        continue
                    if limit is not None and len(items) == limit:
                        # one more matches: the next page starts after the last one given
                        last = items[-1]["metadata"]
                        token = ListCursor(last["namespace"], last["name"], revision).encode()
                        return ManifestList(items, token, version)
                    items.append(to_manifest(row))
                if len(rows) < _PAGE:
                    return ManifestList(items, None, version)
                last_row = rows[-1]
                cursor = ListCursor(last_row.namespace, last_row.name, revision)

    def versions(self, namespace: str | None, selector: LabelSelector) -> dict[str, str]:
        """``uid -> resourceVersion`` of the matching pods."""
        query = select(PodRow.uid, PodRow.resource_version, PodRow.labels)
        if namespace is not None:
            query = query.where(PodRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            rows = session.execute(query).all()
        return {uid: str(v) for uid, v, labels in rows if selector.matches(labels or {})}

    def fetch(self, uids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = builtins.list(uids)
        found: dict[str, dict[str, Any]] = {}
        with self.database.session(readonly=True) as session:
            for start in range(0, len(wanted), _PAGE):
                chunk = wanted[start : start + _PAGE]
                for row in session.scalars(select(PodRow).where(PodRow.uid.in_(chunk))):
                    found[row.uid] = to_manifest(row)
        return found

    def owners(self) -> builtins.list[OwnerKey]:
        """Every object that has pods."""
        with self.database.session(readonly=True) as session:
            rows = session.execute(
                select(
                    PodRow.owner_api_version,
                    PodRow.owner_kind,
                    PodRow.namespace,
                    PodRow.owner_name,
                    PodRow.owner_uid,
                ).distinct()
            ).all()
        return [OwnerKey(*row) for row in rows]

    # -- log growth marks ----------------------------------------------------------

    def _mark_logs(self, record: PodRecord) -> None:
        for container in record.containers:
            ref = container.log
            if ref is None or not ref.path:
                continue
            if container.state == "running":
                if container.started_at is not None and ref.path not in self._marked:
                    _append_mark(ref.path, ref.start, container.started_at)
                    self._marked[ref.path] = ref.start
                size = log_size(ref.path)
                if size > self._marked.get(ref.path, -1):
                    _append_mark(ref.path, size, utcnow())
                    self._marked[ref.path] = size
            elif container.state == "terminated" and ref.path in self._marked:
                ended = container.ended.finished_at if container.ended else None
                size = log_size(ref.path)
                if size > self._marked[ref.path]:
                    _append_mark(ref.path, size, ended or utcnow())
                del self._marked[ref.path]


def delete_owned_in(session: Session, owner_uid: str) -> None:
    """Remove the pods of the owner ``owner_uid`` in ``session`` (the transaction that
    deletes the owner), each journaled as DELETED."""
    _remove_all(session, select(PodRow).where(PodRow.owner_uid == owner_uid))


def _append_mark(path: str, offset: int, moment: datetime) -> None:
    nanos = int(moment.timestamp() * 1_000_000) * 1000
    try:
        with open(str(path) + TIMES_SUFFIX, "a", encoding="ascii") as out:
            out.write(f"{offset} {nanos}\n")
    except OSError as exc:  # the marks only sharpen timestamps: the pod is still recorded
        log.debug("cannot note the growth of log %s: %s", path, exc)


def parse_times(text: str) -> builtins.list[tuple[int, int]]:
    """The ``(offset, unix ns)`` marks of a ``<log>.times`` file, by offset, each
    offset with the earliest time it was seen at (lines that are not two numbers are
    skipped)."""
    marks: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        offset, nanos = int(parts[0]), int(parts[1])
        if offset not in marks or nanos < marks[offset]:
            marks[offset] = nanos
    ordered = sorted(marks.items())
    # a later offset cannot have been written before an earlier one was seen
    out: builtins.list[tuple[int, int]] = []
    floor = 0
    for offset, nanos in ordered:
        floor = max(floor, nanos)
        out.append((offset, floor))
    return out


def parse_when(value: str) -> datetime:
    """``sinceTime`` and the like: an RFC 3339 time (``InvalidSpec`` when it is not)."""
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InvalidSpec(str(exc), field="sinceTime") from None
