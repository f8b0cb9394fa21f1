"""ArtifactStore on a local directory and on fsspec's in-memory filesystem."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from ketch.core.artifacts import ArtifactStore, MissingFilesystem, UnknownProtocol
from ketch.core.errors import InvalidSpec, NotFound


@pytest.fixture(params=["local", "file-uri", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(tmp_path / "root")
    elif request.param == "file-uri":
        yield ArtifactStore(f"file://{tmp_path / 'root'}")
    else:
        root = f"memory://ketch-test-{uuid.uuid4().hex}"
        yield ArtifactStore(root)
        fs = fsspec.filesystem("memory")
        path = root.removeprefix("memory://")
        if fs.exists(path):
            fs.rm(path, recursive=True)


def test_default_root_is_under_ketch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETCH_HOME", str(tmp_path))
    monkeypatch.delenv("KETCH_ARTIFACTS", raising=False)
    store = ArtifactStore()
    assert store.root == str(tmp_path / "artifacts")
    uri = store.write_text(store.uri_for("run-1", "out.txt"), "hi")
    assert Path(uri).read_text() == "hi"


def test_uri_for_joins_under_the_root(store: ArtifactStore) -> None:
    assert store.uri_for("run", "task", "model") == f"{store.root}/run/task/model"
    assert store.uri_for("/run/", "x/y") == f"{store.root}/run/x/y"
    assert store.uri_for() == store.root
    with pytest.raises(ValueError, match=r"\.\."):
        store.uri_for("run", "../escape")


def test_write_read_exists_delete(store: ArtifactStore) -> None:
    uri = store.uri_for("run-1", "task", "data.bin")
    assert not store.exists(uri)
    assert store.write_bytes(uri, b"\x00\x01payload") == uri
    assert store.exists(uri)
    assert store.read_bytes(uri) == b"\x00\x01payload"
    store.write_text(uri, "replaced é")
    assert store.read_text(uri) == "replaced é"
    assert store.read_bytes("run-1/task/data.bin") == "replaced é".encode()  # relative to root
    assert store.delete(uri) is True
    assert not store.exists(uri)
    assert store.delete(uri) is False
    with pytest.raises(NotFound, match="data.bin"):
        store.read_bytes(uri)


def test_no_temporary_files_are_left_behind(store: ArtifactStore) -> None:
    for i in range(3):
        store.write_bytes(store.uri_for("d", "f.txt"), f"v{i}".encode())
    with store.open(store.uri_for("d", "g.txt"), "w") as handle:
        handle.write("text")
    assert store.list_files(store.uri_for("d")) == ["f.txt", "g.txt"]


def test_upload_and_download_a_directory(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (source / "sub" / "config.json").write_text('{"a": 1}')
    (source / "sub" / "deeper" / "x.txt").write_text("x")

    uri = store.upload(source, store.uri_for("run", "model"))
    assert store.list_files(uri) == ["sub/config.json", "sub/deeper/x.txt", "weights.bin"]
    assert store.read_bytes(f"{uri}/sub/config.json") == b'{"a": 1}'

    target = tmp_path / "downloaded"
    store.download(uri, target)
    for file in source.rglob("*"):
        if file.is_file():
            assert (target / file.relative_to(source)).read_bytes() == file.read_bytes()
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "sub/config.json",
        "sub/deeper/x.txt",
        "weights.bin",
    ]


def test_upload_and_download_a_file(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "metrics.json"
    source.write_text('{"accuracy": 0.9}')
    uri = store.upload(source, store.uri_for("run", "metrics.json"))
    assert store.read_text(uri) == '{"accuracy": 0.9}'
    out = store.download(uri, tmp_path / "out" / "nested" / "m.json")
    assert out.read_text() == '{"accuracy": 0.9}'
    with pytest.raises(NotFound):
        store.upload(tmp_path / "missing", store.uri_for("x"))
    with pytest.raises(NotFound):
        store.download(store.uri_for("missing"), tmp_path / "nothing")


def test_open_for_writing_is_atomic(store: ArtifactStore) -> None:
    uri = store.uri_for("atomic", "file.txt")
    store.write_text(uri, "old")
    with pytest.raises(RuntimeError), store.open(uri, "w") as handle:
        handle.write("half-written new content")
        raise RuntimeError("crash mid-write")
    assert store.read_text(uri) == "old"
    assert store.list_files(store.uri_for("atomic")) == ["file.txt"]
    with store.open(uri, "wb") as handle:
        handle.write(b"new")
    assert store.read_bytes(uri) == b"new"
    with store.open(uri, "rb") as handle:
        assert handle.read() == b"new"
    with store.open(uri, "r") as handle:
        assert handle.read() == "new"
    with pytest.raises(ValueError, match="atomic"):
        with store.open(uri, "a"):
            pass
    with pytest.raises(NotFound):
        with store.open(store.uri_for("nope"), "rb"):
            pass


def test_concurrent_readers_never_see_a_partial_local_write(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri = store.uri_for("shared.bin")
    big_a, big_b = b"a" * 2_000_000, b"b" * 2_000_000
    store.write_bytes(uri, big_a)
    stop = threading.Event()
    bad: list[int] = []

    def read() -> None:
        while not stop.is_set():
            data = Path(uri).read_bytes()
            if data not in (big_a, big_b):
                bad.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(30):
            store.write_bytes(uri, big_b if i % 2 else big_a)
    finally:
        stop.set()
        reader.join()
    assert bad == []


def test_local_files_keep_normal_permissions(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    uri = store.write_text(store.uri_for("p.txt"), "x")
    mode = os.stat(uri).st_mode & 0o777
    current = os.umask(0o022)
    os.umask(current)
    assert mode == 0o666 & ~current  # not mkstemp's 0600


def _absent(package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed, so {package}'s URIs do not fail")


@pytest.mark.parametrize(
    ("uri", "package", "extra"),
    [
        ("gs://bucket/x", "gcsfs", "gcs"),
        ("gcs://bucket/x", "gcsfs", "gcs"),
        ("s3://bucket/x", "s3fs", "s3"),
        ("s3a://bucket/x", "s3fs", "s3"),
        ("az://container/x", "adlfs", "azure"),
        ("abfs://container/x", "adlfs", "azure"),
        ("abfss://container@account.dfs.core.windows.net/x", "adlfs", "azure"),
        ("simplecache::s3://bucket/x", "s3fs", "s3"),
    ],
)
def test_an_object_store_without_its_package_names_the_uri_and_the_extra(
    uri: str, package: str, extra: str, tmp_path: Path
) -> None:
    _absent(package)
    store = ArtifactStore(tmp_path)
    source = tmp_path / "model" / "weights.bin"
    source.parent.mkdir()
    source.write_bytes(b"w")
    calls = [
        lambda: store.read_bytes(uri),
        lambda: store.write_bytes(uri, b"x"),
        lambda: store.exists(uri),
        lambda: store.list_files(uri),
        lambda: store.upload(source, uri),
        lambda: store.upload(source.parent, uri),
        lambda: store.download(uri, tmp_path / "out"),
        lambda: store.delete(uri),
    ]
    for call in calls:
        with pytest.raises(MissingFilesystem) as caught:
            call()
        assert str(caught.value).startswith(uri) and str(caught.value).endswith(
            f" needs {package}: pip install 'ketch[{extra}]'"
        )
        # A user's error (exit 2, HTTP 400), and still an ImportError to code that catches one.
        assert isinstance(caught.value, InvalidSpec) and isinstance(caught.value, ImportError)
        assert caught.value.exit_code == 2
    with pytest.raises(MissingFilesystem, match="needs"), store.open(uri, "wb") as handle:
        handle.write(b"x")


def test_a_root_on_an_object_store_fails_on_first_use_with_the_extra(tmp_path: Path) -> None:
    _absent("gcsfs")
    store = ArtifactStore("gs://bucket/pipeline-root")
    uri = store.uri_for("run-1", "model")
    with pytest.raises(
        MissingFilesystem,
        match=r"^gs://bucket/pipeline-root/run-1/model needs gcsfs: pip install 'ketch\[gcs\]'$",
    ):
        store.write_text(uri, "x")
    with pytest.raises(MissingFilesystem, match=r"pipeline-root/relative needs gcsfs"):
        store.read_bytes("relative")


def test_other_protocols_without_their_package_name_it() -> None:
    _absent("pyarrow")
    with pytest.raises(
        MissingFilesystem,
        match=r"^hdfs://namenode/x needs a package that is not installed: .*pyarrow",
    ):
        ArtifactStore("/tmp").read_bytes("hdfs://namenode/x")


def test_an_unknown_protocol_is_named_with_the_known_ones(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(UnknownProtocol) as caught:
        store.read_bytes("gizmo://bucket/x")
    message = str(caught.value)
    assert message.startswith("gizmo://bucket/x: unknown protocol 'gizmo://'")
    for hint in ("ketch[s3]", "ketch[gcs]", "ketch[azure]"):
        assert hint in message
    assert isinstance(caught.value, ValueError) and caught.value.exit_code == 2
