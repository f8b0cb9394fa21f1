"""Ketch's dataset and model initializers: fetch ``STORAGE_URI`` into a directory.

Run as a TrainJob's ``dataset-initializer`` / ``model-initializer`` replica
(``python -m ketch.trainer.initializers --dest DIR``, the URI in ``STORAGE_URI``
as Kubeflow Trainer's initializers take it):

- a plain path or ``file://`` URI is copied (a file into ``DIR``, a directory's
  contents into ``DIR``);
- ``http://`` / ``https://`` is downloaded into ``DIR/<last path segment>``;
- any other scheme (``hf://``, ``s3://``, ``gs://``, ...) goes through fsspec when
  its implementation is installed and the network and credentials allow;
  otherwise the initializer fails saying what is missing.

A successful fetch leaves ``DIR/.ketch-initialized`` holding the URI, so running
again (a resumed or restarted job) does not fetch the same URI twice. On failure
the last line of the log is ``error: ...``, which the TrainJob's Failed
condition quotes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

MARKER = ".ketch-initialized"
TIMEOUT = 60.0


class FetchError(Exception):
    """The URI could not be fetched; the message says why and what to do."""


def fetch(uri: str, dest: Path) -> list[Path]:
    """Fetch ``uri`` into ``dest``; the paths written."""
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / MARKER
    if marker.exists() and marker.read_text() == uri:
        print(f"{uri} is already in {dest}")
        return []
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        written = _copy(Path(unquote(parsed.path) if scheme == "file" else uri), dest)
    elif scheme in ("http", "https"):
        written = [_download(uri, parsed.path, dest)]
    else:
        written = _fsspec(uri, scheme, dest)
    marker.write_text(uri)
    return written


def _copy(source: Path, dest: Path) -> list[Path]:
    if not source.exists():
        raise FetchError(f"{source} does not exist on this machine; check the storageUri")
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return [dest / p.relative_to(source) for p in source.rglob("*") if p.is_file()]
    target = dest / source.name
    shutil.copy2(source, target)
    return [target]


def _download(uri: str, path: str, dest: Path) -> Path:
    name = Path(unquote(path)).name or "download"
    target = dest / name
    partial = target.with_name(target.name + ".part")
    try:
        with httpx.stream("GET", uri, follow_redirects=True, timeout=TIMEOUT) as response:
            if response.status_code >= 400:
                raise FetchError(f"GET {uri} answered HTTP {response.status_code}")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise FetchError(f"could not download {uri}: {exc}") from None
    partial.replace(target)
    return target


_PACKAGES = {"hf": "huggingface_hub", "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


def _fsspec(uri: str, scheme: str, dest: Path) -> list[Path]:
    try:
        import fsspec

        filesystem = fsspec.filesystem(scheme)
    except (ImportError, ValueError) as exc:
        package = _PACKAGES.get(scheme, f"the fsspec implementation of {scheme}://")
        raise FetchError(
            f"{uri} needs {package} and network access with credentials, which this machine does "
            f"not have ({exc}); fetch it yourself and give a file:// storageUri instead"
        ) from None
    try:
        before = {p for p in dest.rglob("*")}
        filesystem.get(uri, str(dest) + os.sep, recursive=True)
    except Exception as exc:  # noqa: BLE001 - fsspec filesystems raise their own errors (credentials, clients); reported with type and message
        raise FetchError(
            f"could not fetch {uri} ({type(exc).__name__}: {exc}); it needs network access "
            "and credentials; fetch it yourself and give a file:// storageUri instead"
        ) from None
    return sorted(p for p in dest.rglob("*") if p not in before and p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ketch.trainer.initializers", description=__doc__)
    parser.add_argument("--dest", required=True, help="directory to fetch into")
    parser.add_argument("--uri", default=None, help="what to fetch (default: $STORAGE_URI)")
    args = parser.parse_args(argv)
    uri = args.uri or os.environ.get("STORAGE_URI", "")
    if not uri:
        print(
            "error: no storageUri: set the initializer's storageUri (STORAGE_URI)", file=sys.stderr
        )
        return 2
    dest = Path(args.dest)
    print(f"fetching {uri} into {dest}", flush=True)
    try:
        written = fetch(uri, dest)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
