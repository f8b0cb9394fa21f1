"""The core group's ``ResourceQuota`` (``/api/v1/namespaces/{ns}/resourcequotas``),
read-only: the ``kf-resource-quota`` that Kubeflow's Profile controller makes in a
profile's namespace from ``spec.resourceQuotaSpec``, with its ``status.hard`` and
``status.used`` as Ketch enforces them (:mod:`ketch.core.quota`,
:mod:`ketch.core.charges`), so
``kubectl get quota`` and ``kubectl describe quota`` show what a namespace uses.

Ketch does not keep these objects: each is made, when read, from the profile (its
name, namespace, creation time and uid) and the quota's current use. They are
changed through the Profile; a write here is refused (405) saying so.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ketch.core import charges, quota
from ketch.core.errors import ObjectNotFound
from ketch.core.kinds import READ_VERBS, Column, Kind, KindRegistry
from ketch.core.resource import DEFAULT_NAMESPACE, Resource
from ketch.core.sources import Manifest, MethodNotAllowed, Page, RefusesWrites, Source
from ketch.core.store.resources import ResourceStore
from ketch.core.store.selectors import LabelSelector

_READ_ONLY = (
    f"the {quota.QUOTA_NAME} ResourceQuota is made from its profile's "
    "spec.resourceQuotaSpec: change the Profile (kubectl edit profile NAME) instead"
)


def quota_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What ``kubectl get quota`` prints: the requests and the limits, each as
    ``name: used/hard``."""
    status = obj.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}

    def shown(names: Iterable[str]) -> str:
        return ", ".join(f"{n}: {used.get(n, '0')}/{hard[n]}" for n in sorted(names))

    return {
        "metadata": obj.get("metadata") or {},
        "request": shown(n for n in hard if not n.startswith("limits.")),
        "limit": shown(n for n in hard if n.startswith("limits.")),
    }


RESOURCE_QUOTA = Kind(
    kind="ResourceQuota",
    group="",
    versions=("v1",),
    plural="resourcequotas",
    short_names=("quota",),
    columns=(
        Column("Request", ".request", description="The requests used of the quota's hard"),
        Column("Limit", ".limit", description="The limits used of the quota's hard"),
    ),
    verbs=READ_VERBS,
    subresources=(),
    table_view=quota_view,
)


def refuse_writes(_resource: Resource) -> None:
    """The validator of ResourceQuota: it is never written through the API."""
    raise MethodNotAllowed(_READ_ONLY)


class QuotaSource(RefusesWrites):
    """Each profile's quota, as a ResourceQuota of its namespace. ``elsewhere``: the
    sources of the kinds not kept in the store's resources table (a pipeline's runs),
    made when their objects are first counted."""

    def __init__(
        self,
        store: ResourceStore,
        kinds: KindRegistry,
        elsewhere: Mapping[str, Callable[[], Source]] | None = None,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self._elsewhere = dict(elsewhere or {})
        self._sources: dict[str, Source] = {}

    def refusal(self) -> MethodNotAllowed:
        return MethodNotAllowed(_READ_ONLY)

    def _count(self, kind: Kind, namespace: str) -> int:
        """How many objects of ``kind`` ``namespace`` has, where they are kept."""
        make = self._elsewhere.get(kind.kind)
        if make is None:
            return len(self.store.list_manifests(kind.kind, namespace).items)
        source = self._sources.get(kind.kind)
        if source is None:
            source = self._sources[kind.kind] = make()
        page = source.list(kind, namespace, label_selector=None, limit=None, continue_token=None)
        return len(page.items)

    def _made(self, profile: Resource) -> Manifest | None:
        namespace = profile.metadata.name
        found = charges.usage(self.store, namespace, self.kinds, self._count)
        if not found["hard"]:
            return None
        digest = hashlib.sha256(
            repr((profile.metadata.resourceVersion, sorted(found["used"].items()))).encode()
        ).hexdigest()
        return {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": quota.QUOTA_NAME,
                "namespace": namespace,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"resourcequota/{profile.metadata.uid}")),
                "resourceVersion": str(int(digest[:12], 16)),
                "creationTimestamp": profile.to_manifest()["metadata"].get("creationTimestamp"),
                "labels": {"app.kubernetes.io/part-of": "kubeflow-profile"},
            },
            "spec": {"hard": found["hard"]},
            "status": {"hard": found["hard"], "used": found["used"]},
        }

    def _quotas(self, namespace: str | None) -> list[Manifest]:
        if namespace is not None:
            profiles = [p for p in self._profiles() if p.metadata.name == namespace]
        else:
            profiles = self._profiles()
        return [m for m in (self._made(p) for p in profiles) if m is not None]

    def _profiles(self) -> list[Resource]:
        return list(self.store.list(quota.PROFILE, DEFAULT_NAMESPACE))

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        if name == quota.QUOTA_NAME:
            for made in self._quotas(namespace):
                return made
        raise ObjectNotFound(
            f'resourcequotas "{name}" not found in namespace {namespace!r}',
            kind=kind.kind,
            namespace=namespace,
            name=name,
        )

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        selector = LabelSelector.parse(label_selector)
        items = [m for m in self._quotas(namespace) if selector.matches(m["metadata"]["labels"])]
        return Page(items)

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        return {
            m["metadata"]["uid"]: m["metadata"]["resourceVersion"]
            for m in self._quotas(namespace)
            if selector.matches(m["metadata"]["labels"])
        }

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = set(uids)
        return {
            m["metadata"]["uid"]: m for m in self._quotas(None) if m["metadata"]["uid"] in wanted
        }


__all__ = ["RESOURCE_QUOTA", "QuotaSource", "quota_view", "refuse_writes"]
