"""Pipeline packages as KFP clients send them: a compiled pipeline (YAML or JSON,
the IR or a PipelineJob, with a platform spec), or a .tar.gz/.zip holding one,
uploaded or downloaded from a URL."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

from ketch.core.documents import load_yaml_all
from ketch.core.errors import InvalidSpec
from ketch.pipelines import spec as ir_loader

MAX_PACKAGE_BYTES = 32 * 1024 * 1024


def _choose_member(names: list[str]) -> str:
    candidates = [n for n in names if n.endswith((".yaml", ".yml", ".json"))]
    if not candidates:
        raise InvalidSpec("the package holds no pipeline .yaml/.json file", field="uploadfile")
    for preferred in ("pipeline.yaml", "pipeline.yml", "pipeline.json"):
        if preferred in candidates:
            return preferred
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidSpec(
        f"the package holds several pipeline files ({', '.join(sorted(candidates))}); "
        "name one pipeline.yaml",
        field="uploadfile",
    )


def _unpack(data: bytes) -> bytes:
    """The pipeline file inside a .tar.gz or .zip package (the data itself otherwise)."""
    if data[:2] == b"\x1f\x8b":
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                member = members[_choose_member(list(members))]
                if member.size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec(
                        "the pipeline file in the package is too large", field="uploadfile"
                    )
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidSpec(
                f"the package is not a valid .tar.gz: {exc}", field="uploadfile"
            ) from exc
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                name = _choose_member([i.filename for i in zf.infolist() if not i.is_dir()])
                if zf.getinfo(name).file_size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec(
                        "the pipeline file in the package is too large", field="uploadfile"
                    )
                return zf.read(name)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidSpec(
                f"the package is not a valid .zip: {exc}", field="uploadfile"
            ) from exc
    return data


def parse_package(data: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A pipeline package (compiled YAML/JSON, or a .tar.gz/.zip holding one) as
    ``(pipeline_spec, platform_spec)``; the spec is checked."""
    raw = _unpack(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpec("the pipeline file is not UTF-8 text", field="uploadfile") from exc
    docs = load_yaml_all(text, field="uploadfile")
    if not docs:
        raise InvalidSpec("the pipeline file is empty", field="uploadfile")
    spec, platform = normalize_spec(docs[0], where="uploadfile")
    for extra in docs[1:]:
        if not isinstance(extra, dict):
            raise InvalidSpec(
                "a second YAML document must be the platform spec mapping", field="uploadfile"
            )
        platform = {**(platform or {}), **extra}
    return spec, platform


def normalize_spec(
    doc: Any, *, where: str = "pipeline_spec", check: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A pipeline spec as sent by KFP clients (the IR, a PipelineJob, or
    ``{pipeline_spec, platform_spec}``) as ``(ir, platform_spec)``; with ``check``
    the IR is validated (``RunService.submit`` validates what it runs anyway)."""
    if not isinstance(doc, dict):
        raise InvalidSpec(
            f"expected a PipelineSpec mapping, found {type(doc).__name__}", field=where
        )
    platform: dict[str, Any] | None = None
    if "root" not in doc and isinstance(doc.get("pipeline_spec"), dict):
        platform = doc.get("platform_spec") or None
        doc = doc["pipeline_spec"]
    elif "root" not in doc and isinstance(doc.get("pipelineSpec"), dict) and "platformSpec" in doc:
        platform = doc.get("platformSpec") or None
        doc = doc["pipelineSpec"]
    if platform is not None and not isinstance(platform, dict):
        raise InvalidSpec("platform_spec must be a mapping", field=where)
    if platform is not None and not any(platform.values()):
        platform = None  # {"platforms": {}} says nothing
    if not check:
        if "pipelineSpec" in doc and "root" not in doc:
            doc = doc["pipelineSpec"]
        return doc, platform
    ir = ir_loader.load(doc)
    return ir.spec, platform


def fetch_package(url: str) -> bytes:
    """The package at ``url`` (http or https), at most :data:`MAX_PACKAGE_BYTES`."""
    if not url.startswith(("http://", "https://")):
        raise InvalidSpec("package_url.pipeline_url must be an http(s) URL", field="package_url")
    import httpx

    try:
        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec("the pipeline package is too large", field="package_url")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidSpec(f"cannot download {url}: {exc}", field="package_url") from exc
    return b"".join(chunks)
