"""The dashboard's navigation: one entry per capability's pages, each a plain link in
the namespace shown. An entry whose own pages are not built yet leads to the generic
list of its kinds (:mod:`ketch.ui.resources`), with a tab per kind of the section."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from ketch.ui.access import NS


@dataclass(frozen=True)
class Section:
    """A navigation entry: its label, where it leads, and the kinds (``plural.group``,
    as the dashboard's URLs name them) whose lists it groups."""

    label: str
    path: str
    kinds: tuple[str, ...] = ()


KATIB = ("experiments.kubeflow.org", "trials.kubeflow.org", "suggestions.kubeflow.org")
TRAINING = (
    "trainjobs.trainer.kubeflow.org",
    "pytorchjobs.kubeflow.org",
    "tfjobs.kubeflow.org",
    "xgboostjobs.kubeflow.org",
    "mpijobs.kubeflow.org",
    "jaxjobs.kubeflow.org",
    "paddlejobs.kubeflow.org",
    "mxjobs.kubeflow.org",
    "jobs.batch",
    "trainingruntimes.trainer.kubeflow.org",
    "clustertrainingruntimes.trainer.kubeflow.org",
)
SERVING = ("inferenceservices.serving.kserve.io", "inferencegraphs.serving.kserve.io")
PIPELINES = ("pipelineruns.pipelines.ketch.dev",)
#: Kubernetes' own kinds, under "More"
CORE = (
    "configmaps",
    "secrets",
    "pods",
    "events",
    "resourcequotas",
    "rolebindings.rbac.authorization.k8s.io",
)

SECTIONS = (
    Section("Home", "/"),
    Section("Pipelines", "/ui/pipelines"),
    Section("Runs", "/ui/runs", PIPELINES),
    Section("Experiments", "/ui/experiments"),
    Section("Katib", "/ui/katib", KATIB),
    Section("Training", "/ui/training", TRAINING),
    Section("Serving", "/ui/serving", SERVING),
    Section("Models", "/ui/models"),
    Section("Notebooks", "/ui/notebooks", ("notebooks.kubeflow.org", "poddefaults.kubeflow.org")),
    Section("Profiles", "/ui/profiles", ("profiles.kubeflow.org",)),
    Section("More", "/ui/k", CORE),
)


@dataclass(frozen=True)
class Entry:
    label: str
    href: str
    current: bool


def nav_of(section: str, namespace: str) -> list[Entry]:
    """The navigation of a page of ``section``, its links in ``namespace``."""
    query = f"?{urlencode({NS: namespace})}" if namespace else ""
    return [Entry(s.label, s.path + query, s.label == section) for s in SECTIONS]


def section_of(resource: str) -> Section:
    """The section a kind's list belongs to (``More`` for a kind none names)."""
    for section in SECTIONS:
        if resource in section.kinds:
            return section
    return SECTIONS[-1]
