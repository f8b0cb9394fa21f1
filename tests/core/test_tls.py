"""Ketch's own CA and server certificate (``ketch.core.tls``): made once in
``KETCH_HOME/tls`` with private modes, kept across calls, made anew when the names,
the CA or the dates call for it; and what clients trust, checked over a real TLS
handshake on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ketch.core import tls
from ketch.core.errors import InvalidSpec
from ketch.core.http import verification

NAMES = ["localhost", "127.0.0.1", "::1"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_and_server_certificate_are_made_once_with_private_modes(tmp_path: Path) -> None:
    files = tls.self_signed(NAMES, tmp_path)
    folder = tmp_path / "tls"
    assert files == tls.ServerFiles(folder / "server.crt", folder / "server.key")
    assert mode(folder) == 0o700
    assert mode(folder / "ca.key") == 0o600 and mode(folder / "server.key") == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]
    ca = x509.load_pem_x509_certificate(tls.ca_path(tmp_path).read_bytes())
    cert = x509.load_pem_x509_certificate(files.certfile.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert tls.certificate_names(cert) == {"localhost", "127.0.0.1", "::1"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert tls.self_signed(list(reversed(NAMES)), tmp_path) == files
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_new_name_makes_a_new_server_certificate_from_the_same_ca(tmp_path: Path) -> None:
    files = tls.self_signed(NAMES, tmp_path)
    ca_before = tls.ca_path(tmp_path).read_bytes()
    cert_before = files.certfile.read_bytes()
    tls.self_signed([*NAMES, "ketch.example", "10.1.2.3"], tmp_path)
    assert tls.ca_path(tmp_path).read_bytes() == ca_before
    cert = x509.load_pem_x509_certificate(files.certfile.read_bytes())
    assert files.certfile.read_bytes() != cert_before
    assert {"ketch.example", "10.1.2.3"} <= tls.certificate_names(cert)
    # fewer names than the certificate holds: it still serves them all, and is kept
    kept = files.certfile.read_bytes()
    tls.self_signed(["localhost"], tmp_path)
    assert files.certfile.read_bytes() == kept


def _expiring(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key_path: Path
) -> bytes:
    """A server certificate for NAMES, signed by the CA, that ends in ten days."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=300))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_server_certificate_near_its_end_is_replaced(tmp_path: Path) -> None:
    files = tls.self_signed(NAMES, tmp_path)
    folder = tmp_path / "tls"
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    files.certfile.write_bytes(_expiring(ca_cert, ca_key, files.keyfile))
    tls.self_signed(NAMES, tmp_path)
    cert = x509.load_pem_x509_certificate(files.certfile.read_bytes())
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > tls.RENEW_BEFORE * 2


def test_a_new_ca_or_a_broken_key_makes_a_new_server_certificate(tmp_path: Path) -> None:
    files = tls.self_signed(NAMES, tmp_path)
    folder = tmp_path / "tls"
    (folder / "ca.key").write_text("not a key")
    tls.self_signed(NAMES, tmp_path)
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate(files.certfile.read_bytes()).verify_directly_issued_by(ca)
    assert mode(folder / "ca.key") == 0o600

    files.keyfile.write_text("")
    tls.self_signed(NAMES, tmp_path)
    tls.check_server_files(files.certfile, files.keyfile)  # the pair loads again


def test_server_names_hold_the_loopback_names_the_host_and_this_machine() -> None:
    names = tls.server_names("10.0.0.7", ["Ketch.Example.", "[fe80::1]"])
    assert names[:4] == ["localhost", "127.0.0.1", "::1", "10.0.0.7"]
    assert socket.gethostname().lower() in names
    assert "ketch.example" in names and "fe80::1" in names
    assert "0.0.0.0" not in tls.server_names("0.0.0.0")
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", ["", "bad name", "a..b", "x" * 64, "é.example"])
def test_a_name_a_certificate_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match="--tls-name"):
        tls.check_name(name, "--tls-name")


def test_a_certificate_and_a_key_of_another_are_refused(tmp_path: Path) -> None:
    first = tls.self_signed(NAMES, tmp_path / "one")
    second = tls.self_signed(NAMES, tmp_path / "two")
    with pytest.raises(InvalidSpec, match="--tls-key.*is not the key of the certificate"):
        tls.check_server_files(first.certfile, second.keyfile)
    with pytest.raises(InvalidSpec, match="--tls-cert.*is not a file"):
        tls.check_server_files(tmp_path / "missing.crt", first.keyfile)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("nothing here")
    with pytest.raises(InvalidSpec, match="--tls-cert.*cannot load the certificate"):
        tls.check_server_files(garbage, first.keyfile)
    assert tls.check_server_files(first.certfile, first.keyfile) == first


@contextmanager
def tls_server(files: tls.ServerFiles) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that completes handshakes until stopped; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.certfile), str(files.keyfile))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_clients_trust_the_ca_of_ketch_home_or_of_ketch_ca_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tls.self_signed(NAMES, tmp_path / "server")
    other = tls.self_signed(NAMES, tmp_path / "other")
    ca = tls.read_ca(tls.ca_path(tmp_path / "server"), "ca")
    wrong = tls.read_ca(tls.ca_path(tmp_path / "other"), "ca")
    assert other.certfile != files.certfile
    monkeypatch.delenv(tls.CA_FILE_ENV, raising=False)
    with tls_server(files) as port:
        url = f"https://127.0.0.1:{port}"
        assert tls.verified_by(url, ca)
        assert not tls.verified_by(url, wrong)
        assert not tls.verified_by(f"https://localhost:{port}", wrong)

        monkeypatch.setenv("KETCH_HOME", str(tmp_path / "server"))
        assert tls.trusted_ca(url) == tls.ca_path(tmp_path / "server")
        assert tls.trusted_ca(f"http://127.0.0.1:{port}") is None
        context = verification(url)
        assert isinstance(context, ssl.SSLContext)
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
        ):
            assert wrapped.version() is not None
        assert verification(f"http://127.0.0.1:{port}") is True

        monkeypatch.setenv("KETCH_HOME", str(tmp_path / "nowhere"))
        assert tls.trusted_ca(url) is None and verification(url) is True
        monkeypatch.setenv(tls.CA_FILE_ENV, str(tls.ca_path(tmp_path / "other")))
        assert tls.trusted_ca(url) == tls.ca_path(tmp_path / "other")
        context = verification(url)
        assert isinstance(context, ssl.SSLContext)
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    monkeypatch.setenv(tls.CA_FILE_ENV, str(tmp_path / "missing.crt"))
    with pytest.raises(InvalidSpec, match="KETCH_CA_FILE"):
        tls.trusted_ca("https://127.0.0.1:1")
