"""The namespaces' history, read from the store's change journal: what a namespace
list answers and a namespace watch streams.

A Ketch namespace is ``default`` (always), one created explicitly (a ``Namespace``
object in the ``resources`` table, whose writes take the store's revision and are
journaled as any resource's are), or one that holds objects, which comes into being
with its first object and goes with its last. Such a namespace has no write of its
own to journal; giving it one would mean every writer of every kind (resources, pods,
PipelineRuns, in their own transactions) counting what each namespace holds. The
journal already has what is needed instead: every object added to and removed from a
namespace, in commit order, at its revision. So the history derives a namespace's
coming and going from it:

- the namespace ``N`` appears (ADDED) at the revision of the write that adds the
  first object to it, and goes (DELETED, in phase ``Terminating``) at the revision of
  the write that removes its last one, unless it is ``default`` or was created
  explicitly;
- creating, changing (labels, annotations) and deleting an explicit namespace is
  ADDED, MODIFIED and DELETED at that write's revision; a namespace that still holds
  objects when its explicit object is deleted, or that held some when it was created,
  is MODIFIED instead (it exists before and after).

The objects that make a namespace are those its :class:`~ketch.server.namespaces.
Namespaces` counts: every kind in the ``resources`` table but ``Namespace``, and the
kinds the capabilities serve from sources of their own (PipelineRuns); pods and
events, always about such an object in the same namespace, do not. Each event's
object carries the revision of the write as its ``resourceVersion``.

A :class:`NamespaceHistory` is made per list or watch. To read on from revision
``R`` it needs what each namespace held at ``R``: it counts the objects (one read
snapshot of the ``resources`` table, at the store's revision then, and each
journaled source's list, at the revision that list answers) and moves the counts to
``R`` along the journal, so a watch resumed from a ``resourceVersion`` gets exactly
the namespace changes after it, and one older than the journal a 410, as any
journaled kind's watch does (:mod:`ketch.server.watch`). A source without a journal
of its own is counted as it is when the history starts: namespaces held only by
its objects come and go with the next history, not within one.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from ketch.core.errors import NotFound, ObjectNotFound
from ketch.core.kinds import Kind
from ketch.core.resource import DEFAULT_NAMESPACE, Resource
from ketch.core.sources import (
    CountsByNamespace,
    JournaledSource,
    Manifest,
    Page,
    RefusesWrites,
    Source,
)
from ketch.core.store.models import ResourceRow
from ketch.core.store.resources import (
    CHANGES_PAGE,
    Change,
    Changes,
    ChangeType,
    ResourceStore,
    list_revision,
    parse_revision,
    to_resource,
)
from ketch.core.store.selectors import LabelSelector
from ketch.core.timestamps import time_or_none

#: Namespace ``name`` as the API serves it, from its explicit object (if any) and
#: when its first object was created (if it holds any).
Show = Callable[[str, Resource | None, datetime | None], Manifest]
TERMINATING = "Terminating"


@dataclass
class Known:
    """What the namespaces were at one revision."""

    revision: int
    #: how many objects each namespace held
    held: Counter[str] = field(default_factory=Counter)
    #: when the first object of a namespace holding some was created (as far as known)
    first: dict[str, datetime | None] = field(default_factory=dict)
    #: the namespaces created explicitly, as stored
    created: dict[str, Resource] = field(default_factory=dict)

    def names(self) -> builtins.list[str]:
        """The namespaces that existed, by name."""
        held = (name for name, count in self.held.items() if count > 0)
        return sorted({DEFAULT_NAMESPACE, *self.created, *held})

    def exists(self, name: str) -> bool:
        return name == DEFAULT_NAMESPACE or name in self.created or self.held[name] > 0


class NamespaceHistory(RefusesWrites):
    """The namespaces of an app as a :class:`~ketch.core.sources.JournaledSource`:
    listed at a revision, and their changes read from the journal after one. Made per
    list or watch (it keeps what it knows of the namespaces at the revision it has
    read to)."""

    def __init__(
        self,
        store: ResourceStore,
        kind: Kind,
        *,
        others: Sequence[tuple[Kind, Source]],
        elsewhere: Iterable[str],
        show: Show,
        stored_in: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.store = store
        self.kind = kind
        self.others = others
        #: kinds whose objects make no namespace (pods, events, this kind)
        self.elsewhere = frozenset({kind.kind, *elsewhere})
        self.show = show
        self.stored_in = stored_in
        self._known: Known | None = None
        #: each namespace change last read, by (uid, revision): the namespace before it
        self._before: dict[tuple[str, int], Manifest | None] = {}

    def refusal(self) -> NotFound:
        return NotFound("namespaces are written at /api/v1/namespaces")

    # -- what the namespaces were at a revision -------------------------------------------

    def _explicit(self, change: Change) -> bool:
        return change.kind == self.kind.kind and change.namespace == self.stored_in

    def _holds(self, change: Change) -> bool:
        return change.kind not in self.elsewhere and change.type in ("ADDED", "DELETED")

    def _counted(self) -> tuple[Known, dict[str, int]]:
        """The namespaces as they are now: at the store's revision, and the revision
        each journaled source's objects were counted at (read first, so at most it)."""
        held: Counter[str] = Counter()
        first: dict[str, datetime | None] = {}
        lagging: dict[str, int] = {}

        def count(namespace: str, created: datetime | None, number: int = 1) -> None:
            held[namespace] += number
            earlier = first.get(namespace)
            if namespace not in first or (
                created is not None and (earlier is None or created < earlier)
            ):
                first[namespace] = created

        for kind, source in self.others:
            if isinstance(source, CountsByNamespace):
                counts, version = source.namespace_counts(kind)
                for held_in, (number, oldest) in counts.items():
                    count(held_in, time_or_none(oldest), number)
            else:
                page = source.list(kind, None, label_selector=None, limit=None, continue_token=None)
                for item in page.items:
                    meta = item.get("metadata") or {}
                    namespace = meta.get("namespace")
                    if isinstance(namespace, str) and namespace:
                        count(namespace, time_or_none(meta.get("creationTimestamp")))
                version = page.resource_version
            if version and isinstance(source, JournaledSource):
                lagging[kind.kind] = parse_revision(version)
        with self.store.database.session(readonly=True) as session:
            revision = list_revision(session, None)
            rows = session.execute(
                select(ResourceRow.namespace, func.count(), func.min(ResourceRow.created_at))
                .where(ResourceRow.kind.not_in(self.elsewhere))
                .group_by(ResourceRow.namespace)
            ).all()
            stored = session.scalars(
                select(ResourceRow).where(
                    ResourceRow.kind == self.kind.kind, ResourceRow.namespace == self.stored_in
                )
            ).all()
            created = {row.name: to_resource(row) for row in stored}
        for namespace, number, oldest in rows:
            count(namespace, time_or_none(oldest), int(number))
        return Known(revision, held, first, created), lagging

    def _journal(self, after: int, until: int) -> builtins.list[Change]:
        """Every journaled change after revision ``after`` up to ``until``;
        ``Expired`` when the journal no longer goes back to ``after``."""
        found: builtins.list[Change] = []
        position = after
        while position < until:
            page = self.store.changes(position)
            found += [change for change in page.items if change.revision <= until]
            if len(page.items) < CHANGES_PAGE:
                break
            position = page.revision
        return found

    def _at(self, revision: int | None) -> Known:
        """The namespaces at ``revision`` (``None``: the store's revision now)."""
        known, lagging = self._counted()
        now = known.revision
        wanted = now if revision is None else revision
        start = min([wanted, *lagging.values()])
        changes = self._journal(start, max(wanted, now))
        for change in changes:  # the sources counted before the snapshot, brought to it
            counted_at = lagging.get(change.kind)
            if counted_at is not None and counted_at < change.revision <= now:
                self._move(known, change)
        if wanted < now:  # back from the snapshot, newest first
            for index in range(len(changes) - 1, -1, -1):
                if changes[index].revision > wanted:
                    self._undo(known, changes[index], changes[:index])
        else:
            for change in changes:
                if now < change.revision <= wanted:
                    self._move(known, change)
        known.revision = wanted
        return known

    def _move(self, known: Known, change: Change) -> None:
        """``change`` made to ``known``."""
        if self._explicit(change):
            if change.type == "DELETED":
                known.created.pop(change.name, None)
            else:
                known.created[change.name] = Resource.from_manifest(change.object)
        elif self._holds(change) and change.namespace:
            namespace = change.namespace
            if change.type == "ADDED":
                if known.held[namespace] <= 0:
                    known.held[namespace] = 0
                    meta = change.object.get("metadata") or {}
                    known.first[namespace] = time_or_none(meta.get("creationTimestamp"))
                known.held[namespace] += 1
            else:
                known.held[namespace] = max(0, known.held[namespace] - 1)
                if known.held[namespace] == 0:
                    known.first.pop(namespace, None)

    def _undo(self, known: Known, change: Change, earlier: builtins.list[Change]) -> None:
        """``known`` as it was before ``change`` (``earlier``: the changes read before
        it, where an explicit namespace's previous state may be)."""
        if self._explicit(change):
            if change.type == "ADDED":
                known.created.pop(change.name, None)
                return
            before = change.object  # a deletion keeps the object as it was
            if change.type == "MODIFIED":
                # its previous write; older than the journal: as it was changed
                before = (
                    next((c.object for c in reversed(earlier) if c.uid == change.uid), {})
                    or self.store.previous(change.kind, change.uid, change.revision)
                    or change.object
                )
            known.created[change.name] = Resource.from_manifest(dict(before))
        elif self._holds(change) and change.namespace:
            namespace = change.namespace
            if change.type == "ADDED":
                known.held[namespace] = max(0, known.held[namespace] - 1)
                if known.held[namespace] == 0:
                    known.first.pop(namespace, None)
                return
            # a removed object held it: its first object is the oldest of those it
            # holds now and those removed since (an object added since is younger)
            known.held[namespace] += 1
            meta = change.object.get("metadata") or {}
            created = time_or_none(meta.get("creationTimestamp"))
            oldest = known.first.get(namespace)
            if created is not None and (oldest is None or created < oldest):
                known.first[namespace] = created

    def _shown(self, known: Known, name: str) -> Manifest | None:
        if not known.exists(name):
            return None
        first = known.first.get(name) if known.held[name] > 0 else None
        return self.show(name, known.created.get(name), first)

    def _event(self, known: Known, change: Change) -> Change | None:
        """The namespace change ``change`` makes (moving ``known`` on), if any."""
        explicit = self._explicit(change)
        if explicit:
            name = change.name
        elif self._holds(change) and change.namespace:
            name = change.namespace
        else:
            return None
        before = self._shown(known, name)
        self._move(known, change)
        after = self._shown(known, name)
        if before is None and after is None:
            return None
        if before is not None and after is not None and not explicit:
            return None  # it held objects before and after
        type_: ChangeType
        if after is not None:
            obj, type_ = after, ("ADDED" if before is None else "MODIFIED")
        else:
            assert before is not None
            obj, type_ = {**before, "status": {"phase": TERMINATING}}, "DELETED"
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(change.revision)}}
        uid = str(obj["metadata"]["uid"])
        self._before[(uid, change.revision)] = before
        return Change(change.revision, type_, self.kind.kind, "", name, uid, obj)

    # -- the source -------------------------------------------------------------------------

    def revision(self) -> int:
        return self.store.revision()

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        """Every namespace (matching ``label_selector``) at the store's revision now,
        which the page answers; the history reads on from there. Not paged."""
        known = self._at(None)
        self._known = known
        selector = LabelSelector.parse(label_selector)
        items = [
            shown
            for name in known.names()
            for shown in [self._shown(known, name)]
            if shown is not None and selector.matches(shown["metadata"].get("labels") or {})
        ]
        return Page(items, None, str(known.revision))

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        """The namespace changes after revision ``after`` (``Expired`` when the journal
        no longer goes back that far)."""
        known = self._known
        if known is None or known.revision != after:
            self._known = None
            known = self._at(after)
        self._before.clear()
        found: builtins.list[Change] = []
        position = after
        while True:
            page = self.store.changes(position)
            for change in page.items:
                event = self._event(known, change)
                if event is not None:
                    found.append(event)
            position = known.revision = max(page.revision, position)
            if len(page.items) < CHANGES_PAGE or len(found) >= CHANGES_PAGE:
                break
        self._known = known
        return Changes(found, position)

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        """The namespace as it was before the change at ``before`` just read."""
        return self._before.get((uid, before))

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        found = self._shown(self._at(None), name)
        if found is None:
            raise ObjectNotFound(
                f"namespace {name!r} holds nothing and was not created",
                kind=self.kind.kind,
                name=name,
            )
        return found

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        page = self.list(kind, None, label_selector=None, limit=None, continue_token=None)
        return {
            str(item["metadata"]["uid"]): str(item["metadata"].get("resourceVersion", ""))
            for item in page.items
            if selector.matches(item["metadata"].get("labels") or {})
        }

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = set(uids)
        page = self.list(kind, None, label_selector=None, limit=None, continue_token=None)
        return {uid: item for item in page.items if (uid := str(item["metadata"]["uid"])) in wanted}
