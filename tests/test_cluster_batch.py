"""The cluster's two request paths — in bulk through the libcurl batch, one at a time through
the official client — held to the same answers, the same connection settings from the
kubeconfig (CA, insecure-skip-tls-verify, tls-server-name, proxy-url, client certificates)
and the one retry rule (429 with Retry-After, 5xx, dropped connections, 401 credential reload).
"""

from __future__ import annotations

import base64
import json
import select
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import bot.cluster.client as client_mod
from bot.cluster.batch import CurlBatch, Request
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import ApiError, NotFoundError, TransientApiError
from bot.cluster.targets import Target
from tests.mtls import make_pki
from tests.scripted_http import ScriptedServer

CONFIGMAPS = Resource(
    group="", version="v1", kind="ConfigMap", plural="configmaps", namespaced=True
)


def configmap(name: str, namespace: str = "default", **data: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


def connect(kubeconfig: Path | str, **options: Any) -> Cluster:
    return Cluster(Target(name="t", kubeconfig=Path(kubeconfig)), **options)


# -- against the local API server (TLS, real server-side apply) --------------------------------


@pytest.fixture
def cluster(kubeconfig: str) -> Iterator[Cluster]:
    with connect(kubeconfig, concurrency=4) as c:
        yield c


def test_bulk_answers_come_in_input_order_as_one_request_at_a_time_gives_them(
    cluster: Cluster,
) -> None:
    objs = [configmap(f"cm-{i:03d}", index=str(i)) for i in range(60)]
    objs[7]["metadata"]["namespace"] = "missing"  # the server refuses this one object
    jobs = [(CONFIGMAPS, o) for o in objs]
    got = cluster.apply_many(jobs, field_manager="t", want=lambda n: n % 2 == 0)
    assert len(got) == len(objs)
    assert isinstance(got[7], NotFoundError)
    for n, answer in enumerate(got):
        if n == 7:
            continue
        if n % 2:
            assert answer is None  # not wanted: not decoded
        else:
            assert isinstance(answer, dict)
            assert answer["metadata"]["name"] == f"cm-{n:03d}"
            assert answer["data"] == {"index": str(n)}

    bulk = cluster.apply_many(jobs, field_manager="t", dry_run=True)
    for (res, obj), ours in zip(jobs, bulk, strict=True):
        try:
            one: Any = cluster.apply(res, obj, field_manager="t", dry_run=True)
        except ApiError as exc:
            one = exc
        assert type(one) is type(ours)
        if isinstance(one, ApiError):
            assert isinstance(ours, ApiError)
            assert (one.status, one.reason, one.message) == (ours.status, ours.reason, ours.message)
        else:
            assert isinstance(ours, dict)
            assert (one["data"], one["metadata"]["name"]) == (
                ours["data"],
                ours["metadata"]["name"],
            )


def test_bulk_deletes_count_missing_objects_as_deleted(cluster: Cluster, kubeconfig: str) -> None:
    names = [f"gone-{i}" for i in range(10)]
    cluster.apply_many([(CONFIGMAPS, configmap(n)) for n in names], field_manager="t")
    jobs = [(CONFIGMAPS, "default", n) for n in [*names, "never-existed"]]
    assert cluster.delete_many(jobs, dry_run=True) == [None] * len(jobs)
    assert all(cluster.get(CONFIGMAPS, "default", n) is not None for n in names)
    assert cluster.delete_many(jobs) == [None] * len(jobs)
    assert all(cluster.get(CONFIGMAPS, "default", n) is None for n in names)
    # a refused delete is that object's error, in its place
    cluster.apply_many([(CONFIGMAPS, configmap("kept"))], field_manager="t")
    readonly = Target(name="t", kubeconfig=Path(kubeconfig), context="emulator-readonly")
    with Cluster(readonly, concurrency=2) as limited:
        [refused] = limited.delete_many([(CONFIGMAPS, "default", "kept")])
    assert isinstance(refused, ApiError) and refused.status == 403
    assert cluster.get(CONFIGMAPS, "default", "kept") is not None


def test_bulk_gets_answer_objects_none_for_missing_and_errors_in_place(
    cluster: Cluster, kubeconfig: str
) -> None:
    cluster.apply_many([(CONFIGMAPS, configmap(f"here-{i}")) for i in range(5)], field_manager="t")
    jobs = [(CONFIGMAPS, "default", f"here-{i}") for i in range(5)]
    jobs.insert(2, (CONFIGMAPS, "default", "absent"))
    got = cluster.get_many(jobs)
    assert got[2] is None
    assert [o["metadata"]["name"] for o in got if isinstance(o, dict)] == [
        f"here-{i}" for i in range(5)
    ]
    web = Target(name="t", kubeconfig=Path(kubeconfig), context="emulator-namespace-web")
    with Cluster(web, concurrency=2) as limited:
        [refused] = limited.get_many(jobs[:1])
    assert isinstance(refused, ApiError) and refused.status == 403


def test_lists_page_through_every_continue_token(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "LIST_PAGE", "7")
    objs = [configmap(f"p-{i:02d}") for i in range(20)]
    for obj in objs[::2]:
        obj["metadata"]["labels"] = {"half": "yes"}
    cluster.apply_many([(CONFIGMAPS, o) for o in objs], field_manager="t")
    before = cluster.requests
    everything, half, nowhere = cluster.list_many(
        [
            (CONFIGMAPS, "default", None),
            (CONFIGMAPS, "default", "half=yes"),
            (CONFIGMAPS, None, "x=y"),
        ]
    )
    assert isinstance(everything, list) and isinstance(half, list)
    names = [o["metadata"]["name"] for o in everything]
    assert [n for n in names if n.startswith("p-")] == [f"p-{i:02d}" for i in range(20)]
    assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in everything)
    assert [o["metadata"]["name"] for o in half] == [f"p-{i:02d}" for i in range(0, 20, 2)]
    assert nowhere == []
    pages = -(-len(everything) // 7) + 2 + 1  # every page of the first, 10 in 2, 1 empty
    assert cluster.requests - before == pages


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_against_the_kubeconfig_ca_on_both_paths(
    kube_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF", 0.001)
    other_ca = make_pki(tmp_path)  # a CA that did not sign the server's certificate
    server = {
        "server": kube_emulator.https_url,
        "certificate-authority-data": other_ca.data(other_ca.ca_file),
    }
    user = {"token": kube_emulator.tokens["admin"]}
    with connect(write_kubeconfig(tmp_path / "wrong-ca", server, user)) as untrusting:
        [bulk] = untrusting.get_many([(CONFIGMAPS, "default", "x")])
        with pytest.raises(TransientApiError) as single:
            untrusting.get(CONFIGMAPS, "default", "x")
    for error in (bulk, single.value):
        assert isinstance(error, TransientApiError) and error.reason == "ConnectionError"
        assert "certificate" in error.message.lower()
    insecure = {"server": kube_emulator.https_url, "insecure-skip-tls-verify": True}
    with connect(write_kubeconfig(tmp_path / "insecure", insecure, user)) as trusting:
        assert trusting.get_many([(CONFIGMAPS, "default", "x")]) == [None]
        assert trusting.get(CONFIGMAPS, "default", "x") is None


def test_tls_server_name_is_the_name_sent_and_checked_on_both_paths(
    kube_emulator: Any, tmp_path: Path
) -> None:
    user = {"token": kube_emulator.tokens["admin"]}
    ca = base64.b64encode(Path(kube_emulator.ca_file).read_bytes()).decode()
    # the server's certificate names kubernetes.default.svc, not 127.0.0.1's other names
    for name, works in (("kubernetes.default.svc", True), ("elsewhere.example", False)):
        server = {
            "server": kube_emulator.https_url,
            "certificate-authority-data": ca,
            "tls-server-name": name,
        }
        with connect(write_kubeconfig(tmp_path / name, server, user)) as cluster:
            if works:
                assert cluster.get_many([(CONFIGMAPS, "default", "x")]) == [None]
                assert cluster.get(CONFIGMAPS, "default", "x") is None
                continue
            [bulk] = cluster.get_many([(CONFIGMAPS, "default", "x")])
            assert isinstance(bulk, TransientApiError) and "elsewhere.example" in bulk.message
            with pytest.raises(TransientApiError):
                cluster.get(CONFIGMAPS, "default", "x")


class TunnelProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that counts the tunnels it opens."""

    def __init__(self) -> None:
        self.tunnels: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        target = head.split(b" ")[1]
        self.tunnels.append(target)
        host, _, port = target.decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with client, upstream:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    def close(self) -> None:
        self._sock.close()


def test_the_kubeconfig_proxy_carries_both_paths(kube_emulator: Any, tmp_path: Path) -> None:
    proxy = TunnelProxy()
    try:
        ca = base64.b64encode(Path(kube_emulator.ca_file).read_bytes()).decode()
        server = {
            "server": kube_emulator.https_url,
            "certificate-authority-data": ca,
            "proxy-url": proxy.url,
        }
        user = {"token": kube_emulator.tokens["admin"]}
        with connect(write_kubeconfig(tmp_path / "proxied", server, user)) as cluster:
            if not cluster.credentials.configuration.proxy:
                pytest.skip("kubernetes < 37.0.0: its kubeconfig loader ignores proxy-url")
            assert cluster.get(CONFIGMAPS, "default", "x") is None
            single = len(proxy.tunnels)
            assert cluster.get_many([(CONFIGMAPS, "default", "x")]) == [None]
    finally:
        proxy.close()
    assert single >= 1 and len(proxy.tunnels) > single
    assert set(proxy.tunnels) == {kube_emulator.https_url.removeprefix("https://").encode()}


# -- client certificates (mTLS) ----------------------------------------------------------------


def answer(status: str, body: bytes = b"{}", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("inline", [True, False], ids=["certificate-data", "certificate-files"])
def test_client_certificates_from_the_kubeconfig_authenticate_both_paths(
    kube_emulator: Any, tmp_path: Path, inline: bool
) -> None:
    """No token anywhere: the emulator (kube-apiserver's ``--client-ca-file`` rules) knows the
    user only from the certificate, so admin's applies through the batch and reads through
    the official client, and a user without rights is refused on both paths."""
    server = {
        "server": kube_emulator.https_url,
        "certificate-authority-data": base64.b64encode(
            Path(kube_emulator.ca_file).read_bytes()
        ).decode(),
    }

    def user(name: str) -> dict[str, str]:
        cert = kube_emulator.client_certificate(name)
        if inline:
            return {
                "client-certificate-data": cert.cert_data_b64,
                "client-key-data": cert.key_data_b64,
            }
        return {"client-certificate": cert.cert_file, "client-key": cert.key_file}

    with connect(write_kubeconfig(tmp_path / "admin", server, user("admin"))) as admin:
        applied = admin.apply_many(
            [(CONFIGMAPS, configmap(f"c{i}", mode="cert")) for i in range(5)], field_manager="t"
        )
        one = admin.get(CONFIGMAPS, "default", "c3")
    assert [a["metadata"]["name"] for a in applied if isinstance(a, dict)] == [
        f"c{i}" for i in range(5)
    ]
    assert one is not None and one["data"] == {"mode": "cert"}

    with connect(write_kubeconfig(tmp_path / "nobody", server, user("deployer"))) as nobody:
        [refused] = nobody.apply_many([(CONFIGMAPS, configmap("c9"))], field_manager="t")
        with pytest.raises(ApiError) as single:
            nobody.get(CONFIGMAPS, "default", "c3")
    for error in (refused, single.value):
        assert isinstance(error, ApiError) and error.status == 403, error
        assert 'User "deployer"' in error.message


def test_a_client_certificate_of_another_ca_fails_the_handshake_on_both_paths(
    kube_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF", 0.001)
    foreign = make_pki(tmp_path, client_name="kubernetes-admin")
    server = {
        "server": kube_emulator.https_url,
        "certificate-authority-data": base64.b64encode(
            Path(kube_emulator.ca_file).read_bytes()
        ).decode(),
    }
    user = {
        "client-certificate-data": foreign.data(foreign.client_cert),
        "client-key-data": foreign.data(foreign.client_key),
    }
    with connect(write_kubeconfig(tmp_path / "kubeconfig", server, user)) as cluster:
        [bulk] = cluster.get_many([(CONFIGMAPS, "default", "x")])
        with pytest.raises(TransientApiError) as single:
            cluster.get(CONFIGMAPS, "default", "x")
    for error in (bulk, single.value):
        assert isinstance(error, TransientApiError) and error.reason == "ConnectionError", error


# -- against a scripted server -----------------------------------------------------------------


def scripted_cluster(server: ScriptedServer, tmp_path: Path, token: str = "first") -> Cluster:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"server": server.url}, {"token": token})
    return connect(kubeconfig, concurrency=1)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits shrunk (backoff 1 ms, Retry-After capped at 50 ms); returns the waits."""
    monkeypatch.setattr(client_mod, "BACKOFF", 0.001)
    monkeypatch.setattr(client_mod, "MAX_RETRY_AFTER", 0.05)
    waits: list[float] = []
    send = CurlBatch.send

    def spy(self: CurlBatch, request: Request, *, delay: float = 0.0) -> None:
        if request.attempt.retries or request.attempt.renewed:
            waits.append(delay)
        send(self, request, delay=delay)

    monkeypatch.setattr(CurlBatch, "send", spy)
    return waits


def test_request_bytes_of_a_bulk_apply(tmp_path: Path) -> None:
    server = ScriptedServer([answer("201 Created", b'{"kind":"ConfigMap"}')])
    try:
        with scripted_cluster(server, tmp_path) as cluster:
            obj = configmap("a b", "ns", k="v")
            [got] = cluster.apply_many([(CONFIGMAPS, obj)], field_manager="bot", force=True)
    finally:
        server.close()
    assert got == {"kind": "ConfigMap"}
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == (
        b"PATCH /api/v1/namespaces/ns/configmaps/a%20b?fieldManager=bot&force=true HTTP/1.1"
    )
    assert b"Content-Type: application/apply-patch+yaml" in lines
    assert b"Accept: application/json" in lines
    assert b"Authorization: Bearer first" in lines
    assert not any(line.lower().startswith(b"expect") for line in lines)
    assert json.loads(body) == obj


def test_429_is_retried_after_the_servers_retry_after(
    fast_retries: list[float], tmp_path: Path
) -> None:
    server = ScriptedServer(
        [
            answer(
                "429 Too Many Requests", b'{"kind":"Status","message":"slow"}', "Retry-After: 2"
            ),
            answer("503 Service Unavailable", b"down"),
            answer("200 OK", b'{"kind":"ConfigMap","metadata":{"name":"x"}}'),
        ]
    )
    try:
        with scripted_cluster(server, tmp_path) as cluster:
            [got] = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
    finally:
        server.close()
    assert got == {"kind": "ConfigMap", "metadata": {"name": "x"}}
    assert len(server.requests) == 3
    # Retry-After (2 s, capped at 50 ms here) for the 429; the doubling backoff for the 503
    assert fast_retries == [0.05, 0.002]


def test_overload_that_lasts_ends_as_that_objects_transient_error(
    fast_retries: list[float], tmp_path: Path
) -> None:
    server = ScriptedServer(
        lambda request: (
            answer("500 Internal Server Error", b"boom")
            if b"/configmaps/x?" in request
            else answer("200 OK", b'{"kind":"ConfigMap"}')
        )
    )
    try:
        with scripted_cluster(server, tmp_path) as cluster:
            got = cluster.apply_many(
                [(CONFIGMAPS, configmap("x")), (CONFIGMAPS, configmap("y"))], field_manager="t"
            )
    finally:
        server.close()
    assert isinstance(got[0], TransientApiError) and got[0].status == 500
    assert got[0].message == "boom" and got[0].reason == "InternalServerError"
    assert got[1] == {"kind": "ConfigMap"}  # one object's failure never stops the others
    assert len(fast_retries) == client_mod.RETRIES
    assert sum(b"/configmaps/x?" in r for r in server.requests) == 1 + client_mod.RETRIES


def test_dropped_connection_is_retried_on_a_new_one(
    fast_retries: list[float], tmp_path: Path
) -> None:
    server = ScriptedServer([None, answer("200 OK", b'{"kind":"ConfigMap"}')])
    try:
        with scripted_cluster(server, tmp_path) as cluster:
            [got] = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
    finally:
        server.close()
    assert got == {"kind": "ConfigMap"}
    assert len(server.requests) == 2 and server.connections == 2


def test_unreachable_server_is_a_transient_error_per_object(
    fast_retries: list[float], tmp_path: Path
) -> None:
    server = ScriptedServer([])
    server.close()  # nobody listens on that port any more
    with scripted_cluster(server, tmp_path) as cluster:
        got = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
    assert isinstance(got[0], TransientApiError)
    assert "cannot reach the API server" in got[0].message


EXEC_PLUGIN = """
import json, pathlib, sys
tokens = pathlib.Path(sys.argv[1])
left = tokens.read_text().split()
tokens.write_text(" ".join(left[1:]))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": {"token": left[0]}}))
"""


def test_401_reloads_the_exec_credentials_once_and_sends_again(tmp_path: Path) -> None:
    """What ``aws eks get-token`` and its kin do when a token is revoked or lapses: on a 401
    the kubeconfig is loaded again (running the plugin again) and the request sent once more
    with the new token; a 401 on that token is final. Many requests failing at once reload
    once."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    tokens = tmp_path / "tokens"
    tokens.write_text("first second third fourth")
    valid = {b"second", b"fourth"}

    def answers(request: bytes) -> bytes:
        head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
        [token] = [
            line[len(b"authorization: bearer ") :]
            for line in head
            if line.lower().startswith(b"authorization: bearer ")
        ]
        if token in valid:
            return answer("200 OK", b'{"kind":"ConfigMap"}')
        return answer("401 Unauthorized", b'{"kind":"Status","reason":"Unauthorized"}')

    server = ScriptedServer(answers)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(plugin), str(tokens)],
        }
    }
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"server": server.url}, user)
    try:
        with connect(kubeconfig, concurrency=4) as cluster:
            # loaded with "first": every request gets a 401, one reload ("second"), all retried
            got = cluster.apply_many(
                [(CONFIGMAPS, configmap(f"c{i}")) for i in range(8)], field_manager="t"
            )
            assert got == [{"kind": "ConfigMap"}] * 8
            assert cluster.credentials.generation == 1
            valid.discard(b"second")  # revoked: the single path reloads ("third"), still 401
            with pytest.raises(ApiError) as final:
                cluster.get(CONFIGMAPS, "default", "c0")
            assert final.value.status == 401
            assert cluster.credentials.generation == 2
            assert cluster.get(CONFIGMAPS, "default", "c0") is not None  # 401, "fourth": ok
    finally:
        server.close()
    assert tokens.read_text() == ""


@pytest.mark.timeout(20)
def test_an_exception_mid_batch_reaches_the_caller_and_the_cluster_stays_usable(
    tmp_path: Path,
) -> None:
    """A progress callback that raises (or Celery's soft time limit) leaves the batch at once;
    what was in flight is dropped and the next bulk request works."""
    server = ScriptedServer(lambda request: answer("200 OK", b'{"kind":"ConfigMap"}'))

    def progress(done: int) -> None:
        if done == 2:
            raise RuntimeError("mid-batch")

    try:
        with scripted_cluster(server, tmp_path) as cluster:
            with pytest.raises(RuntimeError, match="mid-batch"):
                cluster.apply_many(
                    [(CONFIGMAPS, configmap(f"c{i}")) for i in range(5)],
                    field_manager="bot",
                    progress=progress,
                )
            again = cluster.apply_many([(CONFIGMAPS, configmap("d"))], field_manager="bot")
    finally:
        server.close()
    assert again == [{"kind": "ConfigMap"}]
