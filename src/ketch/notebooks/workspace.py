"""Where a notebook's files live, under ``KETCH_HOME``: what stands in for its pod's
filesystem and volumes, kept across stop and start.

- ``notebooks/<namespace>/<name>/``: the notebook's working directory, the server's
  root (what JupyterLab's file browser shows) unless a volume is mounted at the
  container's home (``workingDir``, else Kubeflow's ``/home/jovyan``).
- ``volumes/<namespace>/<claim>/``: a ``persistentVolumeClaim`` volume, named after its
  claim, shared by every notebook of the namespace that mounts it and never removed
  with a notebook. Mounted at the home, it is the server's root; mounted elsewhere,
  it is a symbolic link in the root at the mount path (relative to the home, or to
  ``/`` when outside it: ``/data`` is ``<root>/data``).
- an ``emptyDir`` volume is a folder of the notebook's own state, emptied each time
  the notebook starts (a pod's ``emptyDir`` does not outlive the pod); one mounted at
  ``/dev/shm`` is the machine's.
- ``logs/notebooks/<namespace>/<name>/``: the server's log and Jupyter's runtime and
  configuration folders.

Other volume types (ConfigMaps, Secrets, host paths) are not mounted; the controller
says so in an event. A path that already exists in the root and is not a link Ketch
made is left alone, with the same kind of note.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ketch.notebooks.spec import DEFAULT_HOME, NotebookContainer, NotebookSpec, Volume


def notebook_dir(home: Path, namespace: str, name: str) -> Path:
    return home / "notebooks" / namespace / name


def claims_dir(home: Path, namespace: str) -> Path:
    """Where the claims of ``namespace`` are, one folder each."""
    return home / "volumes" / namespace


def claim_dir(home: Path, namespace: str, claim: str) -> Path:
    return claims_dir(home, namespace) / claim


def state_dir(home: Path, namespace: str, name: str) -> Path:
    return home / "logs" / "notebooks" / namespace / name


@dataclass
class Layout:
    """A notebook's folders, as :func:`plan` lays them out."""

    root: Path
    workdir: Path
    state: Path
    #: the folders the server's process writes in (handed to its profile's OS user)
    owned: list[Path] = field(default_factory=list)
    #: (link in the root, what it points at)
    links: list[tuple[Path, Path]] = field(default_factory=list)
    #: folders emptied at each start
    scratch: list[Path] = field(default_factory=list)
    #: what was not mounted, and why (said in an event)
    notes: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.state / "server.log"


def _kind_of(volume: Volume) -> str:
    known = {k for k in (volume.model_extra or {}) if not k.startswith("_")}
    return ", ".join(sorted(known)) or "an unknown source"


def plan(
    home: Path, namespace: str, name: str, spec: NotebookSpec, container: NotebookContainer
) -> Layout:
    """The folders of notebook ``name`` in ``namespace``, for ``container``."""
    workdir = notebook_dir(home, namespace, name)
    state = state_dir(home, namespace, name)
    layout = Layout(root=workdir, workdir=workdir, state=state, owned=[workdir, state])
    volumes = {v.name: v for v in spec.template.spec.volumes}
    container_home = PurePosixPath(container.workingDir or DEFAULT_HOME)
    mounts: list[tuple[PurePosixPath, Path]] = []
    for mount in container.volumeMounts:
        volume = volumes[mount.name]
        at = PurePosixPath(mount.mountPath)
        if volume.persistentVolumeClaim is not None:
            source = claim_dir(home, namespace, volume.persistentVolumeClaim.claimName)
            layout.owned.append(source)
        elif volume.emptyDir is not None:
            if at == PurePosixPath("/dev/shm"):
                continue  # the machine's shared memory is there already
            source = state / "volumes" / volume.name
            layout.scratch.append(source)
        else:
            layout.notes.append(
                f"volume {volume.name!r} ({_kind_of(volume)}) at {mount.mountPath} is not "
                "mounted: only persistentVolumeClaim and emptyDir volumes are"
            )
            continue
        if mount.subPath:
            source = source / mount.subPath
        if at == container_home:
            layout.root = source
        else:
            mounts.append((at, source))
    for at, source in mounts:
        relative = at.relative_to(container_home) if at.is_relative_to(container_home) else None
        link = layout.root.joinpath(*(relative or at.relative_to("/")).parts)
        layout.links.append((link, source))
    return layout


def prepare(layout: Layout) -> list[str]:
    """Make the folders and links of ``layout``; what could not be made, as notes."""
    notes: list[str] = []
    for folder in layout.scratch:
        shutil.rmtree(folder, ignore_errors=True)
    for folder in [layout.workdir, layout.state, layout.root, *layout.owned, *layout.scratch]:
        folder.mkdir(parents=True, exist_ok=True)
    for _link, source in layout.links:
        source.mkdir(parents=True, exist_ok=True)
    for link, source in layout.links:
        if link.is_symlink():
            if Path(os.readlink(link)) == source:
                continue
            link.unlink()
        elif link.exists():
            notes.append(f"{link} exists and is not a volume's link: {source} is not linked there")
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=True)
    return notes


def remove_namespace(home: Path, namespace: str) -> None:
    """Remove every notebook folder and volume of ``namespace`` (it is deleted)."""
    for folder in (
        home / "notebooks" / namespace,
        home / "volumes" / namespace,
        home / "logs" / "notebooks" / namespace,
    ):
        shutil.rmtree(folder, ignore_errors=True)
