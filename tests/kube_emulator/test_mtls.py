"""Client-certificate authentication (mTLS) as kube-apiserver does it, held to the real kubectl,
the official Python client and libcurl (what the bot's batch uses); bearer tokens still work."""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import ssl
from pathlib import Path

import pycurl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.fixture import Kubectl

CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\n"
    "data: {mode: prod}\n"
)


def whoami(kubectl: Kubectl) -> dict[str, object]:
    review = json.loads(kubectl.ok("auth", "whoami", "-o", "json"))
    info: dict[str, object] = review["status"]["userInfo"]
    return info


def test_kubectl_with_a_client_certificate_kubeconfig(
    kubeconfig_client_cert: str, tmp_path: Path
) -> None:
    config_text = Path(kubeconfig_client_cert).read_text()
    assert "client-certificate-data" in config_text and "token" not in config_text
    kubectl = Kubectl(kubeconfig_client_cert, tmp_path)
    # CommonName is the user, each Organization a group (plus system:authenticated)
    assert whoami(kubectl) == {
        "username": "kubernetes-admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    out = kubectl.ok("apply", "--server-side", "-f", "-", stdin=CONFIGMAP)
    assert "configmap/settings serverside-applied" in out
    assert kubectl.ok("auth", "can-i", "delete", "namespaces").strip() == "yes"


def test_certificate_users_get_their_permissions_and_nothing_else(
    kube_emulator: EmulatorServer, tmp_path: Path
) -> None:
    readonly = Kubectl(
        kube_emulator.write_kubeconfig(str(tmp_path / "ro"), user="readonly", auth="certificate"),
        tmp_path,
    )
    assert whoami(readonly)["username"] == "system:serviceaccount:default:readonly"
    assert readonly.ok("auth", "can-i", "list", "pods", "-n", "web").strip() == "yes"
    no = readonly("auth", "can-i", "create", "configmaps")
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    denied = readonly("apply", "--server-side", "-f", "-", stdin=CONFIGMAP)
    assert (
        'configmaps "settings" is forbidden: User "system:serviceaccount:default:readonly" '
        'cannot patch resource "configmaps" in API group "" in the namespace "default"'
    ) in denied.stderr

    # a user the cluster grants nothing: authenticated (not 401), forbidden (403)
    cert = kube_emulator.client_certificate("jane", groups=["developers"])
    doc = kube_emulator.kubeconfig_dict(user="admin", auth="certificate")
    doc["users"][0]["user"] = {
        "client-certificate": cert.cert_file,
        "client-key": cert.key_file,
    }
    (tmp_path / "jane").write_text(json.dumps(doc))
    jane = Kubectl(str(tmp_path / "jane"), tmp_path)
    assert whoami(jane) == {"username": "jane", "groups": ["developers", "system:authenticated"]}
    listing = jane("get", "namespaces")
    assert listing.returncode == 1
    assert (
        'Error from server (Forbidden): namespaces is forbidden: User "jane" cannot list '
        'resource "namespaces" in API group "" at the cluster scope'
    ) in listing.stderr
    # a group named system:masters is all it takes, as on a real cluster
    root = kube_emulator.client_certificate("ops", groups=["system:masters"])
    doc["users"][0]["user"] = {"client-certificate": root.cert_file, "client-key": root.key_file}
    (tmp_path / "ops").write_text(json.dumps(doc))
    Kubectl(str(tmp_path / "ops"), tmp_path).ok("get", "namespaces")


def test_official_python_client_with_a_client_certificate(kubeconfig_client_cert: str) -> None:
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig_client_cert))
    names = {ns.metadata.name for ns in api.list_namespace().items}
    assert {"default", "kube-system"} <= names


def _curl(url: str, **options: object) -> tuple[int, bytes]:
    body = io.BytesIO()
    curl = pycurl.Curl()
    try:
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEDATA, body)
        for name, value in options.items():
            curl.setopt(getattr(pycurl, name), value)
        curl.perform()
        return int(curl.getinfo(pycurl.RESPONSE_CODE)), body.getvalue()
    finally:
        curl.close()


def test_libcurl_authenticates_with_a_client_certificate(kube_emulator: EmulatorServer) -> None:
    url = f"{kube_emulator.https_url}/api/v1/namespaces/default/configmaps"
    cert = kube_emulator.client_certificate("admin")
    code, body = _curl(
        url, CAINFO=kube_emulator.ca_file, SSLCERT=cert.cert_file, SSLKEY=cert.key_file
    )
    assert code == 200 and json.loads(body)["kind"] == "ConfigMapList"
    # without a certificate or a token: 401, with a token: 200 (both on the same port)
    assert _curl(url, CAINFO=kube_emulator.ca_file)[0] == 401
    token = kube_emulator.tokens["admin"]
    assert (
        _curl(url, CAINFO=kube_emulator.ca_file, HTTPHEADER=[f"Authorization: Bearer {token}"])[0]
        == 200
    )


def test_a_certificate_from_another_authority_fails_the_handshake(
    kube_emulator: EmulatorServer, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(cafile=kube_emulator.ca_file)
    context.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    with (
        socket.create_connection(("127.0.0.1", kube_emulator.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        # TLS 1.3: the server's verdict on the certificate arrives with the first read
        tls.sendall(b"GET /api HTTP/1.1\r\nHost: localhost\r\n\r\n")
        tls.recv(1024)


def test_the_server_offers_http_1_1_only(kube_emulator: EmulatorServer) -> None:
    context = ssl.create_default_context(cafile=kube_emulator.ca_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", kube_emulator.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
