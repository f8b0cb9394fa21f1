"""Kubeflow's ``Notebook`` (``kubeflow.org/v1``; ``v1beta1`` is the
same object): ``spec.template.spec`` is a Kubernetes ``PodSpec``, checked at apply time
with Kubernetes' field names.

What the notebook controller's CRD requires: at least one container, each with a
``name`` and an ``image``. What Ketch needs besides: the notebook's name is a DNS-1123
label (it names the server's path ``/notebook/<ns>/<name>/`` and its working
directory), every ``volumeMounts[].name`` names a volume of the pod, every
``mountPath`` is absolute, a ``persistentVolumeClaim.claimName`` is a DNS-1123
subdomain (it names a directory), and the server's address, token and base URL are
Ketch's to set: ``args`` that set them are refused. The container that runs is the one
named like the notebook, else the first (as Kubeflow's controller reads its state).

Which server runs (:func:`server_type`): the annotation
``notebooks.kubeflow.org/server-type`` the Jupyter web app writes (``jupyter``,
``group-one`` for VS Code, ``group-two`` for RStudio), else the image's name
(``codeserver``/``code-server``, ``rstudio``), else JupyterLab.
"""

from __future__ import annotations

import posixpath
import re
from enum import StrEnum
from typing import Any

from pydantic import Field

from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.core.spec import SpecModel, parse
from ketch.core.workloads.pods import Container

KIND = "Notebook"
GROUP = "kubeflow.org"
PLURAL = "notebooks"
#: the annotation whose presence stops a notebook (value: when, RFC 3339)
STOPPED = "kubeflow-resource-stopped"
SERVER_TYPE = "notebooks.kubeflow.org/server-type"
#: where Kubeflow's images run and mount the workspace
DEFAULT_HOME = "/home/jovyan"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: the server settings Ketch sets itself (address, port, auth, base URL, root)
_RESERVED_ARGS = re.compile(
    r"^--(ip|port|(ServerApp|NotebookApp)\.(ip|port|base_url|token|password|root_dir|"
    r"notebook_dir|allow_origin|allow_origin_pat|sock)|IdentityProvider\.token|"
    r"PasswordIdentityProvider\.\w+|bind-addr|auth|www-address|www-port)(=|$)"
)
#: programs that start a Jupyter server (what Kubeflow's images and docs put in
#: ``command``): their other words are passed to the JupyterLab Ketch runs
_JUPYTER_PROGRAMS = re.compile(
    r"^(jupyter|jupyter-lab|jupyter-server|jupyter-notebook|jupyterhub-singleuser|"
    r"start-notebook\.(sh|py)|start-singleuser\.(sh|py)|start\.sh|init)$"
)


class ServerType(StrEnum):
    JUPYTER = "jupyter"
    CODE_SERVER = "code-server"
    RSTUDIO = "rstudio"


class VolumeMount(SpecModel):
    name: str
    mountPath: str
    readOnly: bool | None = None
    subPath: str | None = None


class ClaimSource(SpecModel):
    claimName: str
    readOnly: bool | None = None


class Volume(SpecModel):
    name: str
    persistentVolumeClaim: ClaimSource | None = None
    emptyDir: dict[str, Any] | None = None


class NotebookContainer(Container):
    name: str
    image: str
    volumeMounts: list[VolumeMount] = Field(default_factory=list)


class NotebookPodSpec(SpecModel):
    containers: list[NotebookContainer] = Field(min_length=1)
    volumes: list[Volume] = Field(default_factory=list)
    serviceAccountName: str | None = None


class NotebookTemplate(SpecModel):
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: NotebookPodSpec


class NotebookSpec(SpecModel):
    template: NotebookTemplate


def parse_spec(spec: dict[str, Any]) -> NotebookSpec:
    """``spec`` as a :class:`NotebookSpec` (``InvalidSpec`` names the field)."""
    return parse(NotebookSpec, spec)


def main_container(name: str, spec: NotebookSpec) -> tuple[int, NotebookContainer]:
    """The container that runs: the one named like the notebook, else the first."""
    containers = spec.template.spec.containers
    for index, container in enumerate(containers):
        if container.name == name:
            return index, container
    return 0, containers[0]


def server_type(resource: Resource, container: NotebookContainer) -> ServerType:
    """Which server the notebook runs (see the module)."""
    declared = str(resource.metadata.annotations.get(SERVER_TYPE) or "").strip().lower()
    if declared in ("group-one", "code-server", "codeserver", "vscode"):
        return ServerType.CODE_SERVER
    if declared in ("group-two", "rstudio"):
        return ServerType.RSTUDIO
    if declared == "jupyter":
        return ServerType.JUPYTER
    image = container.image.lower().rsplit("/", 1)[-1]
    if "codeserver" in image or "code-server" in image:
        return ServerType.CODE_SERVER
    if "rstudio" in image:
        return ServerType.RSTUDIO
    return ServerType.JUPYTER


def server_args(container: NotebookContainer) -> list[str]:
    """What the container adds to the server's command line: its ``args``, after the
    words of a ``command`` that starts a Jupyter server (see :func:`validate`)."""
    words = list(container.args)
    if container.command:
        words = [*container.command[1:], *words]
        words = [w for w in words if w not in ("lab", "server", "notebook")]
    return words


def check_claim(volume: Volume, where: str) -> None:
    """Refuse a ``persistentVolumeClaim`` whose claim cannot name a folder (``where``:
    the volume's field path)."""
    claim = volume.persistentVolumeClaim
    if claim is not None and not (
        len(claim.claimName) <= 253 and _DNS_SUBDOMAIN.match(claim.claimName)
    ):
        raise InvalidSpec(
            f"{claim.claimName!r} is not a valid PersistentVolumeClaim name: use "
            "lower-case letters, digits, '-' and '.'",
            field=f"{where}.persistentVolumeClaim.claimName",
        )


def check_mount(mount: VolumeMount, where: str) -> None:
    """Refuse a mount whose path is not absolute, or that climbs out with ``..``
    (``where``: the mount's field path)."""
    path = mount.mountPath
    if not path.startswith("/") or ".." in path.split("/"):
        raise InvalidSpec(
            f"{path!r} must be an absolute path without '..'", field=f"{where}.mountPath"
        )
    if mount.subPath and (
        mount.subPath.startswith("/") or ".." in posixpath.normpath(mount.subPath)
    ):
        raise InvalidSpec(
            f"{mount.subPath!r} must be a relative path without '..'",
            field=f"{where}.subPath",
        )


def validate(resource: Resource) -> None:
    """Refuse a Notebook Kubeflow's controller would not run, or Ketch cannot, with
    the field's path (see the module)."""
    name = resource.metadata.name
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise InvalidSpec(
            f"{name!r} is not a valid Notebook name: use at most 63 lower-case letters, "
            "digits and '-', starting and ending with a letter or digit",
            field="metadata.name",
            hint="for example 'my-notebook'",
        )
    spec = parse_spec(resource.spec)
    pod = "spec.template.spec"
    volumes: dict[str, Volume] = {}
    for index, volume in enumerate(spec.template.spec.volumes):
        where = f"{pod}.volumes[{index}]"
        if volume.name in volumes:
            raise InvalidSpec(f"Duplicate value: {volume.name!r}", field=f"{where}.name")
        volumes[volume.name] = volume
        check_claim(volume, where)
    for index, container in enumerate(spec.template.spec.containers):
        where = f"{pod}.containers[{index}]"
        if not container.name:
            raise InvalidSpec("Required value", field=f"{where}.name")
        if not container.image.strip():
            raise InvalidSpec("Required value", field=f"{where}.image")
        for m, mount in enumerate(container.volumeMounts):
            at = f"{where}.volumeMounts[{m}]"
            if mount.name not in volumes:
                raise InvalidSpec(
                    f"Not found: {mount.name!r}: no volume of that name in {pod}.volumes",
                    field=f"{at}.name",
                )
            check_mount(mount, at)
    index, container = main_container(name, spec)
    where = f"{pod}.containers[{index}]"
    if container.command:
        program = container.command[0].rsplit("/", 1)[-1]
        if server_type(resource, container) is ServerType.JUPYTER and not _JUPYTER_PROGRAMS.match(
            program
        ):
            raise InvalidSpec(
                f"{container.command[0]!r} is not a Jupyter server: Ketch runs JupyterLab "
                "itself for a Notebook, with the container's args as its options",
                field=f"{where}.command",
                hint="leave command out (Kubeflow's images start JupyterLab themselves) "
                "and put JupyterLab options in args",
            )
    words = [(f"{where}.command", w) for w in container.command[1:]]
    words += [(f"{where}.args[{i}]", w) for i, w in enumerate(container.args)]
    for field, word in words:
        if _RESERVED_ARGS.match(word):
            raise InvalidSpec(
                f"{word.split('=', 1)[0]} is set by Ketch (the server listens on a "
                "private port behind /notebook/<namespace>/<name>/ with a token only Ketch "
                "knows)",
                field=field,
                hint="remove it",
            )
