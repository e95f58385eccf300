"""A throw-away certificate authority and server certificate for the emulator's HTTPS side.

kubectl (client-go) only sends bearer tokens over TLS, so the kubeconfig points at https with
this CA embedded. Keys are EC P-256 (fast to make); generated once per process.
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
from dataclasses import dataclass


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files and the CA in the base64 form a kubeconfig wants."""

    cert_file: str
    key_file: str
    ca_file: str
    ca_data_b64: str


@functools.cache
def tls_files() -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-emulator-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
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
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="kube-emulator-tls-")
    atexit.register(shutil.rmtree, folder, True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    paths = {
        "cert": os.path.join(folder, "server.crt"),
        "key": os.path.join(folder, "server.key"),
        "ca": os.path.join(folder, "ca.crt"),
    }
    with open(paths["cert"], "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    with open(paths["key"], "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(paths["ca"], "wb") as fh:
        fh.write(ca_pem)
    return TlsFiles(paths["cert"], paths["key"], paths["ca"], base64.b64encode(ca_pem).decode())


@functools.cache
def server_context() -> ssl.SSLContext:
    files = tls_files()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert_file, files.key_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
