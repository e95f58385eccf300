"""The emulator's HTTP transport: requests in pieces, pipelining, limits, TLS, watch hand-off, stop."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from tests.kube_emulator import EmulatorServer


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(controller=False) as srv:
        yield srv


def _connect(server: EmulatorServer, *, tls: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if tls:
        ctx = ssl.create_default_context(cafile=server.ca_file)
        return ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


class _Reader:
    """Reads HTTP/1.1 answers (Content-Length or chunked) off one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            chunks = []
            while size := int(self._line(), 16):
                chunks.append(self._exactly(size))
                self._line()
            self._line()
            return status, headers, b"".join(chunks)
        return status, headers, self._exactly(int(headers.get("content-length", "0")))


def _request(
    server: EmulatorServer,
    method: str,
    path: str,
    body: bytes = b"",
    extra: dict[str, str] | None = None,
) -> bytes:
    headers = {
        "Host": "127.0.0.1",
        "Authorization": f"Bearer {server.tokens['admin']}",
        "Content-Length": str(len(body)),
        **(extra or {}),
    }
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def _configmap(name: str) -> bytes:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}
    ).encode()


def test_requests_in_single_bytes_and_pipelined_are_answered_in_order(
    server: EmulatorServer,
) -> None:
    apply = _request(
        server,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/bytewise?fieldManager=t",
        _configmap("bytewise"),
        extra={"Content-Type": "application/apply-patch+yaml"},
    )
    get = _request(server, "GET", "/api/v1/namespaces/default/configmaps/bytewise")
    with _connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(apply)):
            sock.sendall(apply[i : i + 1])
        reader = _Reader(sock)
        assert reader.answer()[0] == 201
        sock.sendall(get + get + _request(server, "GET", "/version"))
        for _ in range(2):
            status, _, body = reader.answer()
            assert status == 200 and json.loads(body)["metadata"]["name"] == "bytewise"
        assert json.loads(reader.answer()[2])["major"] == "1"


def test_expect_100_continue_is_answered_before_the_body(server: EmulatorServer) -> None:
    body = _configmap("continued")
    request = _request(
        server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        body,
        extra={"Content-Type": "application/json", "Expect": "100-continue"},
    )
    with _connect(server, tls=True) as sock:
        sock.sendall(request[: -len(body)])
        reader = _Reader(sock)
        assert reader._line() == b"HTTP/1.1 100 Continue"
        assert reader._line() == b""
        sock.sendall(body)
        assert reader.answer()[0] == 201


def test_chunked_request_body_sent_in_pieces(server: EmulatorServer) -> None:
    body = _configmap("chunks")
    head = _request(
        server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        extra={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    ).replace(b"Content-Length: 0\r\n", b"")
    with _connect(server) as sock:
        sock.sendall(head + b"%x;ext=1\r\n%s" % (10, body[:10]))
        sock.sendall(b"\r\n%x\r\n%s\r\n" % (len(body) - 10, body[10:]))
        sock.sendall(b"0\r\nX-Trailer: 1\r\n\r\n")
        assert _Reader(sock).answer()[0] == 201


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_an_error_and_a_closed_connection(
    server: EmulatorServer, raw: bytes, status: int
) -> None:
    with _connect(server) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    assert reply.startswith(b"HTTP/1.1 %d " % status) and b"Connection: close" in reply


def test_large_answer_over_tls_is_complete(server: EmulatorServer) -> None:
    path = "/openapi/v3/apis/apps/v1"
    expected = server.emulator.handle(
        "GET", path, {"authorization": f"Bearer {server.tokens['admin']}"}, b""
    ).body
    assert len(expected) > 100_000
    with _connect(server, tls=True) as sock:
        sock.sendall(_request(server, "GET", path))
        assert _Reader(sock).answer()[2] == expected


def test_watch_then_more_requests_on_the_same_connection(server: EmulatorServer) -> None:
    watch = _request(
        server,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dwatched",
    )
    create = _request(
        server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        _configmap("watched"),
        extra={"Content-Type": "application/json"},
    )
    with _connect(server, tls=True) as sock, _connect(server, tls=True) as other:
        sock.sendall(watch)
        other.sendall(create)
        assert _Reader(other).answer()[0] == 201
        reader = _Reader(sock)
        status, headers, body = reader.answer()  # ends after timeoutSeconds
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        events = [json.loads(line) for line in body.splitlines()]
        assert [e["type"] for e in events] == ["ADDED"]
        sock.sendall(_request(server, "GET", "/api/v1/namespaces/default/configmaps/watched"))
        assert reader.answer()[0] == 200


def test_many_concurrent_connections(server: EmulatorServer) -> None:
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with _connect(server, tls=n % 2 == 0) as sock:
                reader = _Reader(sock)
                for i in range(20):
                    name = f"conc-{n}-{i}"
                    sock.sendall(
                        _request(
                            server,
                            "PATCH",
                            f"/api/v1/namespaces/default/configmaps/{name}?fieldManager=t",
                            _configmap(name),
                            extra={"Content-Type": "application/apply-patch+yaml"},
                        )
                    )
                    status, _, body = reader.answer()
                    if status != 201 or json.loads(body)["metadata"]["name"] != name:
                        errors.append(f"{name}: {status}")
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_stop_closes_kept_alive_connections() -> None:
    with EmulatorServer(controller=False) as srv:
        sock = _connect(srv)
        sock.sendall(_request(srv, "GET", "/version"))
        assert _Reader(sock).answer()[0] == 200
    with sock:
        assert sock.recv(10) == b""
