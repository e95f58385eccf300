"""A throw-away certificate authority for the emulator's HTTPS side: the server certificate, and
client certificates for mTLS, the way kube-apiserver's ``--client-ca-file`` authenticates them.

kubectl (client-go) only sends bearer tokens over TLS, so kubeconfigs point at https with this CA
embedded. The server asks every TLS client for a certificate but does not require one (Go's
``VerifyClientCertIfGiven``, as kube-apiserver): a client without one goes on to token auth, and
a certificate this CA did not sign fails the handshake. A client certificate's subject names the
user as the real apiserver reads it: CommonName is the user name, each Organization a group.
Keys are EC P-256 (fast to make); the CA is made once per process.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import functools
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files and the CA in the base64 form a kubeconfig wants."""

    cert_file: str
    key_file: str
    ca_file: str
    ca_data_b64: str


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate and its key, as files and in a kubeconfig's base64 form."""

    common_name: str
    organizations: tuple[str, ...]
    cert_file: str
    key_file: str
    cert_data_b64: str
    key_data_b64: str


class _Authority:
    """The CA key and certificate, and a folder for the PEM files it issues."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="kube-emulator-tls-")
        atexit.register(shutil.rmtree, self.folder, True)
        self.not_before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        self.not_after = self.not_before + dt.timedelta(days=30)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-emulator-ca")])
        self.cert = (
            self._builder(self.name, self.key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.lock = threading.Lock()
        self.issued = 0

    def _builder(self, subject: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
        )

    def issue(
        self, subject: x509.Name, extensions: list[tuple[Any, bool]], stem: str
    ) -> tuple[str, str, bytes, bytes]:
        """A key and a certificate signed by this CA, written as ``<stem>.crt``/``.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(subject, key)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert_pem = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with self.lock:
            self.issued += 1
            base = os.path.join(self.folder, f"{stem}-{self.issued}")
        for path, data in ((base + ".crt", cert_pem), (base + ".key", key_pem)):
            with open(path, "wb") as fh:
                fh.write(data)
            os.chmod(path, 0o600)
        return base + ".crt", base + ".key", cert_pem, key_pem


@functools.cache
def _authority() -> _Authority:
    return _Authority()


@functools.cache
def tls_files() -> TlsFiles:
    """The server's certificate (for localhost, 127.0.0.1 and kubernetes.default.svc) and the CA."""
    ca = _authority()
    cert_file, key_file, cert_pem, _ = ca.issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        [
            (
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
        "server",
    )
    with open(cert_file, "wb") as fh:  # the chain: server certificate, then the CA
        fh.write(cert_pem + ca.ca_pem)
    ca_file = os.path.join(ca.folder, "ca.crt")
    with open(ca_file, "wb") as fh:
        fh.write(ca.ca_pem)
    return TlsFiles(cert_file, key_file, ca_file, base64.b64encode(ca.ca_pem).decode())


@functools.cache
def client_certificate(common_name: str, organizations: tuple[str, ...] = ()) -> ClientCertificate:
    """A client certificate for user ``common_name`` in groups ``organizations`` (one per user
    and groups, made once)."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert_file, key_file, cert_pem, key_pem = _authority().issue(
        x509.Name(attributes),
        [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
        "client",
    )
    return ClientCertificate(
        common_name,
        organizations,
        cert_file,
        key_file,
        base64.b64encode(cert_pem).decode(),
        base64.b64encode(key_pem).decode(),
    )


def peer_identity(sock: ssl.SSLSocket) -> tuple[str, tuple[str, ...]] | None:
    """The user name and groups a verified client certificate names (CommonName and each
    Organization of its subject), or None when the client sent none."""
    cert = sock.getpeercert()
    if not cert:
        return None
    common_name = ""
    groups: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common_name = value
            elif key == "organizationName":
                groups.append(value)
    return common_name, tuple(groups)


@functools.cache
def server_context() -> ssl.SSLContext:
    files = tls_files()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert_file, files.key_file)
    # Ask for a client certificate, verify it when one comes, go on without one.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=files.ca_file)
    # HTTP/1.1 only: the emulator does not speak HTTP/2 (clients that offer h2 fall back).
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
