"""The artifact store: bytes and files under a root that is a local directory or any
fsspec URI (``s3://``, ``gs://``, ``memory://``, ``file://``, ...).

Writes are atomic: a reader sees the old object or the whole new one, never a part.
Locally a write goes to a temporary file in the same directory, which then replaces
the target (``os.replace``). On object stores (S3, GCS, Azure) an upload is already
all-or-nothing, so it goes straight to its key; on other filesystems it goes to a
temporary name that is then moved into place.

Object stores need their fsspec package, installed with an extra of Ketch's:
``s3://`` needs s3fs (``ketch[s3]``), ``gs://`` gcsfs (``ketch[gcs]``), ``az://`` and
``abfs://`` adlfs (``ketch[azure]``). Without it, or for a protocol fsspec does not
know, every method raises an ``InvalidSpec`` that names the URI and what to install
(:class:`MissingFilesystem`, :class:`UnknownProtocol`), never a bare ``ImportError``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from ketch.core import config
from ketch.core.errors import InvalidSpec, NotFound

# Filesystems whose single-object writes are atomic (a PUT replaces the object whole).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(://|::)")  # s3://b/k, simplecache::s3://b/k


def _has_scheme(uri: str) -> bool:
    return bool(_SCHEME.match(uri))


class MissingFilesystem(InvalidSpec, ImportError):
    """A URI whose filesystem needs a package that is not installed.

    Also an ``ImportError``, so code that already catches one keeps working."""


class UnknownProtocol(InvalidSpec, ValueError):
    """A URI whose protocol fsspec does not know."""


# protocol -> (the package that implements it, the Ketch extra that installs it)
_PACKAGES: dict[str, tuple[str, str | None]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "adl": ("adlfs", "azure"),
    "hf": ("huggingface_hub", None),
    "sftp": ("paramiko", None),
    "ssh": ("paramiko", None),
    "http": ("aiohttp", None),
    "https": ("aiohttp", None),
}


def _protocols(uri: str) -> list[str]:
    """The protocols of ``uri``, outermost first (``simplecache::s3://b/k`` has two)."""
    found = []
    for part in uri.split("::"):
        protocol = part.split("://", 1)[0] if "://" in part else part
        if protocol and "/" not in protocol:
            found.append(protocol.lower())
    return found


def _missing_package(uri: str) -> MissingFilesystem | None:
    """The error for the first protocol of ``uri`` whose package is not installed."""
    import importlib.util

    for protocol in _protocols(uri):
        package, extra = _PACKAGES.get(protocol, ("", None))
        if not package or importlib.util.find_spec(package) is not None:
            continue
        install = f"pip install 'ketch[{extra}]'" if extra else f"pip install {package}"
        return MissingFilesystem(f"{uri} needs {package}: {install}")
    return None


def missing_filesystem(uri: str, exc: ImportError) -> MissingFilesystem:
    """The error for ``uri`` when fsspec could not import its filesystem."""
    found = _missing_package(uri)
    if found is not None:
        return found
    detail = str(exc) or type(exc).__name__
    return MissingFilesystem(f"{uri} needs a package that is not installed: {detail}")


def filesystem(uri: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem holding ``uri`` and the path within it.

    Raises :class:`MissingFilesystem` (naming the package and the ``pip install``)
    when the protocol's package is not installed, and :class:`UnknownProtocol` when
    fsspec does not know the protocol."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as exc:
        raise missing_filesystem(uri, exc) from None
    except ValueError as exc:
        if "Protocol not known" not in str(exc):
            raise
        missing = _missing_package(uri)  # abfss:// is known only once adlfs is installed
        if missing is not None:
            raise missing from None
        protocol = str(exc).rsplit(":", 1)[-1].strip() or (_protocols(uri) or ["?"])[0]
        raise UnknownProtocol(
            f"{uri}: unknown protocol '{protocol}://'; artifacts may be local paths, file://, "
            "memory://, s3:// (pip install 'ketch[s3]'), gs:// (pip install 'ketch[gcs]'), "
            "az:// (pip install 'ketch[azure]') or any other protocol fsspec knows"
        ) from None
    return fs, path


class ArtifactStore:
    """Read and write artifacts under ``root`` (default :func:`ketch.core.config.artifacts_root`).

    Methods take a URI (``s3://b/k``, ``/abs/path``, ``file:///abs/path``) or a path
    relative to ``root``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root_str = os.fspath(root) if root is not None else config.artifacts_root()
        if not _has_scheme(root_str):
            root_str = str(Path(root_str).expanduser().resolve())
        self.root = root_str.rstrip("/") or "/"

    # -- naming ----------------------------------------------------------------

    def uri_for(self, *parts: str) -> str:
        """The URI of ``parts`` joined under the root (``uri_for("run", "task", "model")``)."""
        cleaned = [p.strip("/") for p in parts if p and p.strip("/")]
        for part in cleaned:
            if ".." in part.split("/"):
                raise ValueError(f"artifact path parts may not contain '..': {part!r}")
        return "/".join([self.root.rstrip("/"), *cleaned]) if cleaned else self.root

    def resolve(self, uri: str | os.PathLike[str]) -> str:
        """``uri`` made absolute: relative paths are taken under the root."""
        text = os.fspath(uri)
        if _has_scheme(text) or os.path.isabs(text):
            return text
        return self.uri_for(text)

    def filesystem(self, uri: str | os.PathLike[str]) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem holding ``uri`` and the path within it (see
        :func:`filesystem` for the errors)."""
        return filesystem(self.resolve(uri))

    # -- reads -----------------------------------------------------------------

    def exists(self, uri: str | os.PathLike[str]) -> bool:
        fs, path = self.filesystem(uri)
        return bool(fs.exists(path))

    def read_bytes(self, uri: str | os.PathLike[str]) -> bytes:
        fs, path = self.filesystem(uri)
        try:
            return bytes(fs.cat_file(path))
        except (FileNotFoundError, IsADirectoryError):
            raise self._not_found(uri) from None

    def read_text(self, uri: str | os.PathLike[str], encoding: str = "utf-8") -> str:
        return self.read_bytes(uri).decode(encoding)

    def list_files(self, uri: str | os.PathLike[str]) -> list[str]:
        """Every file under ``uri`` (recursively), as paths relative to ``uri``."""
        fs, path = self.filesystem(uri)
        if not fs.exists(path):
            raise self._not_found(uri)
        if not fs.isdir(path):
            return [""]
        base = path.rstrip("/") + "/"
        return sorted(p[len(base) :] if p.startswith(base) else p for p in fs.find(path))

    # -- writes ----------------------------------------------------------------

    def write_bytes(self, uri: str | os.PathLike[str], data: bytes) -> str:
        """Write ``data`` atomically to ``uri`` (creating parent directories); return the URI."""
        target = self.resolve(uri)
        fs, path = self.filesystem(target)
        if isinstance(fs, LocalFileSystem):
            with _atomic_local(path) as handle:
                handle.write(data)
        elif _is_object_store(fs):
            fs.pipe_file(path, data)
        else:
            self._via_temp(fs, path, lambda tmp: fs.pipe_file(tmp, data))
        return target

    def write_text(self, uri: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> str:
        return self.write_bytes(uri, text.encode(encoding))

    def upload(self, local_path: str | os.PathLike[str], uri: str | os.PathLike[str]) -> str:
        """Copy a local file or directory (recursively) to ``uri``; each file lands atomically."""
        source = Path(local_path)
        if not source.exists():
            raise NotFound(f"cannot upload {source}: no such file or directory")
        target = self.resolve(uri)
        if source.is_dir():
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                relative = file.relative_to(source).as_posix()
                self._upload_file(file, f"{target.rstrip('/')}/{relative}")
        else:
            self._upload_file(source, target)
        return target

    def download(self, uri: str | os.PathLike[str], local_path: str | os.PathLike[str]) -> Path:
        """Copy the file or directory at ``uri`` to ``local_path``; each file lands atomically."""
        fs, path = self.filesystem(uri)
        destination = Path(local_path)
        if not fs.exists(path):
            raise self._not_found(uri)
        if fs.isdir(path):
            base = path.rstrip("/") + "/"
            destination.mkdir(parents=True, exist_ok=True)
            for remote in sorted(fs.find(path)):
                relative = remote[len(base) :] if remote.startswith(base) else Path(remote).name
                self._download_file(fs, remote, destination / relative)
        else:
            self._download_file(fs, path, destination)
        return destination

    @contextlib.contextmanager
    def open(self, uri: str | os.PathLike[str], mode: str = "rb") -> Iterator[IO[Any]]:
        """Open ``uri``; in a write mode the file appears at ``uri`` only when the block
        ends without an error."""
        fs, path = self.filesystem(uri)
        writing = any(flag in mode for flag in "wax+")
        if not writing:
            try:
                with fs.open(path, mode) as handle:
                    yield handle
            except FileNotFoundError:
                raise self._not_found(uri) from None
            return
        if "a" in mode or "+" in mode or "x" in mode:
            raise ValueError(f"mode {mode!r} is not supported; use 'w' or 'wb' (atomic writes)")
        if isinstance(fs, LocalFileSystem):
            with _atomic_local(path, text="b" not in mode) as handle:
                yield handle
            return
        if _is_object_store(fs):
            _makedirs(fs, path)
            with fs.open(path, mode) as handle:
                yield handle
            return
        temp = _temp_name(path)
        _makedirs(fs, path)
        try:
            with fs.open(temp, mode) as handle:
                yield handle
            fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(temp)
            raise

    def delete(self, uri: str | os.PathLike[str]) -> bool:
        """Remove the file or directory at ``uri``; False if there was nothing."""
        fs, path = self.filesystem(uri)
        if not fs.exists(path):
            return False
        fs.rm(path, recursive=fs.isdir(path))
        return True

    # -- internals -------------------------------------------------------------

    def _upload_file(self, source: Path, target: str) -> None:
        fs, path = self.filesystem(target)
        if isinstance(fs, LocalFileSystem):
            with _atomic_local(path) as handle, source.open("rb") as reader:
                shutil.copyfileobj(reader, handle, 1024 * 1024)
        elif _is_object_store(fs):
            fs.put_file(str(source), path)
        else:
            self._via_temp(fs, path, lambda tmp: fs.put_file(str(source), tmp))

    @staticmethod
    def _download_file(fs: AbstractFileSystem, remote: str, destination: Path) -> None:
        with _atomic_local(str(destination)) as handle, fs.open(remote, "rb") as reader:
            shutil.copyfileobj(reader, handle, 1024 * 1024)

    @staticmethod
    def _via_temp(fs: AbstractFileSystem, path: str, write: Any) -> None:
        _makedirs(fs, path)
        temp = _temp_name(path)
        try:
            write(temp)
            fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(temp)
            raise

    @staticmethod
    def _not_found(uri: str | os.PathLike[str]) -> NotFound:
        return NotFound(f"artifact {os.fspath(uri)!r} does not exist")


def _is_object_store(fs: AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return any(p in _OBJECT_STORES for p in protocols)


def _temp_name(path: str) -> str:
    head, _, name = path.rpartition("/")
    temp = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    return f"{head}/{temp}" if head else temp


@contextlib.contextmanager
def _atomic_local(path: str, *, text: bool = False) -> Iterator[IO[Any]]:
    """Write to a temporary file next to ``path``; on success fsync it and
    ``os.replace`` it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w" if text else "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _makedirs(fs: AbstractFileSystem, path: str) -> None:
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and parent != "/":
        fs.makedirs(parent, exist_ok=True)


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current
