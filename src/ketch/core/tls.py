"""TLS for ``ketch up`` and its clients.

``ketch up --tls-self-signed`` serves HTTPS with a certificate from a CA of Ketch's
own, made once in ``KETCH_HOME/tls`` (the folder 0700, the keys 0600)::

    KETCH_HOME/tls/ca.crt      the CA clients trust (``ketch kubeconfig`` embeds it)
    KETCH_HOME/tls/ca.key
    KETCH_HOME/tls/server.crt  signed by the CA for the server's names
    KETCH_HOME/tls/server.key

Both are kept across restarts: the server's certificate is made anew only when it
does not name every name the server is reached by, nears its end, or was not signed
by the CA in the folder; the CA only when it nears its own end.

Clients (:class:`ketch.core.http.ApiClient`, ``ketch kubeconfig``) trust the CA of
``KETCH_CA_FILE``, else the CA in ``KETCH_HOME/tls`` when there is one, on top of the
usual trusted roots (:func:`trusted_ca`).

``cryptography`` is imported by the functions that make or read certificates, not
with this module.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ketch.core import config
from ketch.core.errors import InvalidSpec, KetchError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

CA_FILE_ENV = "KETCH_CA_FILE"
CA_DAYS = 3650
SERVER_DAYS = 397
#: a certificate this close to its end is replaced at the next start
RENEW_BEFORE = datetime.timedelta(days=30)
#: how far back a new certificate is valid from, for clocks a little behind
BACKDATE = datetime.timedelta(hours=1)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ServerFiles:
    """The certificate (chain) and key files a server presents."""

    certfile: Path
    keyfile: Path


def tls_dir(home: Path | None = None) -> Path:
    """``KETCH_HOME/tls``."""
    return (home or config.ketch_home()) / "tls"


def ca_path(home: Path | None = None) -> Path:
    """The certificate of Ketch's own CA in ``home`` (default ``KETCH_HOME``)."""
    return tls_dir(home) / "ca.crt"


# -- the names of a server -------------------------------------------------------------


def server_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The names a server bound to ``host`` is reached by: the loopback names, ``host``
    itself (unless it is a wildcard), this machine's host name, and ``extra``."""
    names: list[str] = ["localhost", "127.0.0.1", "::1"]
    bare = host.strip().strip("[]")
    if bare not in WILDCARD_HOSTS:
        names.append(bare)
    hostname = socket.gethostname()
    if hostname:
        names.append(hostname)
    names += [name.strip().strip("[]") for name in extra]
    found: list[str] = []
    for name in names:
        key = _normal_name(name)
        if key and key not in found:
            found.append(key)
    return found


def _normal_name(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.strip().lower().rstrip(".")


def check_name(name: str, field: str) -> str:
    """``name`` when a certificate can name it: an IP address or a DNS name."""
    bare = name.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    labels = bare.lower().rstrip(".").split(".")
    if not bare or not all(
        0 < len(label) <= 63
        and label.isascii()
        and label.replace("-", "").replace("_", "").isalnum()
        for label in labels
    ):
        raise InvalidSpec(f"{name!r} is not a host name or an IP address", field=field)
    return ".".join(labels)


# -- the self-signed setup -------------------------------------------------------------


def self_signed(names: Sequence[str], home: Path | None = None) -> ServerFiles:
    """The server certificate and key for ``names``, signed by the CA in
    ``KETCH_HOME/tls``; each is made when missing, not usable, or near its end."""
    folder = tls_dir(home)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        ca_cert, ca_key, ca_new = _ca(folder)
        files = ServerFiles(folder / "server.crt", folder / "server.key")
        if ca_new or not _server_usable(files, ca_cert, names):
            key = _new_key()
            cert = _server_cert(names, key, ca_cert, ca_key)
            _write(files.keyfile, _key_pem(key), private=True)
            _write(files.certfile, _pem(cert))
    except OSError as exc:
        raise KetchError(
            f"cannot write the TLS files in {folder}: {exc.strerror or exc}",
            hint="check the folder's owner and permissions, or use --tls-cert and --tls-key",
        ) from None
    return files


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ca(folder: Path) -> tuple[x509.Certificate, EllipticCurvePrivateKey, bool]:
    """The CA's certificate and key, and whether they were made now."""
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    loaded = _load(cert_path, key_path)
    if loaded is not None:
        cert, key = loaded
        if isinstance(key, ec.EllipticCurvePrivateKey) and _fresh(cert) and _is_ca(cert):
            return cert, key, False
    key = _new_key()
    cert = _ca_cert(key)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _pem(cert))
    return cert, key, True


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Any] | None:
    """The certificate and key in these files when both can be read and belong
    together; ``None`` otherwise."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if _public(cert.public_key()) != _public(key.public_key()):
        return None
    return cert, key


def _server_usable(files: ServerFiles, ca: x509.Certificate, names: Sequence[str]) -> bool:
    loaded = _load(files.certfile, files.keyfile)
    if loaded is None:
        return False
    from cryptography.exceptions import InvalidSignature

    cert, _ = loaded
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # another issuer, key or signature
        return False
    return _fresh(cert) and set(names) <= certificate_names(cert)


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate's subjectAltName holds."""
    from cryptography import x509

    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {name.lower().rstrip(".") for name in alt.get_values_for_type(x509.DNSName)}
    return dns | {str(address) for address in alt.get_values_for_type(x509.IPAddress)}


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _new_key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _ca_cert(key: EllipticCurvePrivateKey) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ketch"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Ketch CA ({socket.gethostname()})"[:64]),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _server_cert(
    names: Sequence[str],
    key: EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: EllipticCurvePrivateKey,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = _now()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ketch"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Ketch API server"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(*, ca: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``path`` at once (a temporary file renamed over it): 0600 from its first
    byte when ``private``, else 0644."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o600 if private else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- certificates given by the user ----------------------------------------------------


def check_server_files(certfile: Path, keyfile: Path) -> ServerFiles:
    """``certfile`` and ``keyfile`` when a TLS server can load them as a pair; an
    ``InvalidSpec`` naming ``--tls-cert`` or ``--tls-key`` otherwise."""
    for path, field in ((certfile, "--tls-cert"), (keyfile, "--tls-key")):
        if not path.is_file():
            raise InvalidSpec(f"{path} is not a file", field=field)
        try:
            path.open("rb").close()
        except OSError as exc:
            raise InvalidSpec(f"cannot read {path}: {exc.strerror or exc}", field=field) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise InvalidSpec(
                f"the key in {keyfile} is not the key of the certificate in {certfile}",
                field="--tls-key",
            ) from None
        raise InvalidSpec(
            f"cannot load the certificate {certfile} with the key {keyfile} ({reason}); "
            "give PEM files, the key unencrypted",
            field="--tls-cert",
        ) from None
    return ServerFiles(certfile, keyfile)


# -- clients ---------------------------------------------------------------------------


def trusted_ca(url: str) -> Path | None:
    """The CA file a client of ``url`` trusts on top of the usual roots:
    ``KETCH_CA_FILE``, else ``KETCH_HOME/tls/ca.crt`` when it exists; ``None`` for an
    ``http://`` URL or when there is none."""
    if not url.strip().lower().startswith("https://"):
        return None
    named = os.environ.get(CA_FILE_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise InvalidSpec(f"{path} is not a file", field=CA_FILE_ENV)
        return path
    path = ca_path()
    return path if path.is_file() else None


def read_ca(path: Path, field: str) -> bytes:
    """The PEM certificates in ``path``; ``InvalidSpec`` naming ``field`` when it
    holds none."""
    from cryptography import x509

    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise InvalidSpec(f"cannot read {path}: {exc.strerror or exc}", field=field) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise InvalidSpec(f"{path} holds no PEM certificate", field=field)
    return b"".join(_pem(cert) for cert in certs)


def verified_by(url: str, ca: bytes, timeout: float = 10.0) -> bool:
    """Whether the server at the ``https://`` ``url`` presents a certificate for its
    host that ``ca`` (PEM) alone vouches for."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl.create_default_context(cadata=ca.decode("ascii"))
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False
    except (OSError, ssl.SSLError) as exc:
        raise KetchError(f"cannot check the certificate of {url}: {exc}") from None
