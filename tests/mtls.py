"""A certificate authority the local API server does not trust: its CA certificate and a
client certificate it signed, as PEM files and as the base64 data a kubeconfig embeds.

The local API server (tests/kube_emulator) speaks mTLS with its own CA; these hold the bot's TLS
settings to a real handshake from the other side: a kubeconfig trusting this CA must refuse the
server's certificate, and the server must refuse this client certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    client_cert: Path
    client_key: Path

    def data(self, path: Path) -> str:
        """A PEM file as a kubeconfig's ``*-data`` field (base64)."""
        return base64.b64encode(path.read_bytes()).decode()


def make_pki(folder: Path, *, client_name: str = "gitops-bot") -> Pki:
    """A CA and a client certificate it signed whose common name is ``client_name`` (in the
    group ``system:masters``, so only the signature can be why a server refuses it), written
    to ``folder``."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, client_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "client.crt": cert.public_bytes(serialization.Encoding.PEM),
        "client.key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return Pki(
        ca_file=folder / "ca.crt",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
    )
