"""Where a model comes from: a local path, or a storage URI fetched to a local folder.

``file://`` URIs and plain paths are used in place; ``s3://``, ``gs://``,
``http(s)://`` and every other fsspec URI are downloaded (through the artifact
store) under ``KETCH_HOME/cache/models``. Archives (``.tar.gz``, ``.tgz``,
``.tar``, ``.zip``) are unpacked.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from ketch.core import config
from ketch.core.artifacts import ArtifactStore
from ketch.serving import modelregistry
from ketch.serving.errors import InvalidSpec, NotFound

ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path | str) -> bool:
    return str(path).lower().endswith(ARCHIVES)


def fetch(uri: str, cache: Path | None = None) -> Path:
    """A local file or folder holding the model at ``uri`` (a ``model-registry://``
    URI is first resolved to its model artifact's, :mod:`ketch.serving.modelregistry`)."""
    if modelregistry.is_registry_uri(uri):
        uri, _version = modelregistry.resolve(uri)
    if "://" not in uri:
        local = Path(uri).expanduser().resolve()
    elif uri.startswith("file://"):
        local = Path(unquote(urlparse(uri).path)).resolve()
    else:
        local = _download(uri, cache or config.ketch_home() / "cache" / "models")
    if not local.exists():
        raise NotFound(f"model path {local} does not exist")
    if local.is_file() and is_archive(local):
        return unpack(local, local.parent / (local.name + ".d"))
    return local


def _download(uri: str, cache: Path) -> Path:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache / digest
    if target.exists():
        shutil.rmtree(target)
    name = Path(urlparse(uri).path.rstrip("/")).name or "model"
    try:
        ArtifactStore().download(uri, target / name)
    except (OSError, ValueError, ImportError) as exc:
        raise InvalidSpec(f"cannot download the model from {uri}: {exc}") from None
    return target / name


def unpack(archive: Path, destination: Path) -> Path:
    """Unpack ``archive`` into ``destination`` (replacing it); refuse unsafe members."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    _check_member(member)
                bundle.extractall(destination)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(destination, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise InvalidSpec(f"cannot unpack {archive}: {exc}") from None
    entries = [p for p in destination.iterdir() if not p.name.startswith(".")]
    # An archive holding one folder is that folder.
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return destination


def _check_member(member: str) -> None:
    parts = Path(member).parts
    if member.startswith("/") or ".." in parts:
        raise InvalidSpec(f"archive member {member!r} would land outside the folder")
