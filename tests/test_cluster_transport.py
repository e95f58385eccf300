"""Tests of the lean HTTP transport (response parsing, keep-alive, reconnects) against a raw
socket server that sends exactly the bytes each test scripts, and of ``Cluster.map``."""

from __future__ import annotations

import http.client
import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from bot.cluster.client import Cluster
from bot.cluster.targets import Target
from bot.cluster.transport import Transport, parse_header_lines
from tests.scripted_http import ScriptedServer


class RawServer(ScriptedServer):
    """Scripted raw answers as ``(raw, close)`` pairs, appended by each test."""


@pytest.fixture
def server() -> Iterator[RawServer]:
    srv = RawServer()
    yield srv
    srv.close()


@pytest.fixture
def transport(server: RawServer) -> Iterator[Transport]:
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    configuration.api_key = {"BearerToken": "secret-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    trans = Transport(configuration, timeout=5)
    yield trans
    trans.close()


def get(transport: Transport, path: str = "/api/v1/x") -> tuple[int, str, bytes, dict[str, str]]:
    return transport.request("GET", path, query=None, body=None, headers={"Accept": "x"})


def length_answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_content_length_answers_share_one_kept_alive_connection(
    server: RawServer, transport: Transport
) -> None:
    server.answers = [
        (length_answer(b'{"a":1}', "Content-Type: application/json"), False),
        (length_answer(b"slow", "Retry-After:   3", status="429 Too Many Requests"), False),
    ]
    assert get(transport) == (
        200,
        "OK",
        b'{"a":1}',
        {"Content-Length": "7", "Content-Type": "application/json"},
    )
    status, reason, body, headers = get(transport)
    assert (status, reason, body, headers["Retry-After"]) == (
        429,
        "Too Many Requests",
        b"slow",
        "3",
    )
    assert server.connections == 1
    assert b"Authorization: Bearer secret-token\r\n" in server.requests[0]


def test_chunked_answer_is_reassembled(server: RawServer, transport: Transport) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    server.answers = [(chunked, False), (length_answer(b"again"), False)]
    assert get(transport)[2] == b"hello, world"
    assert get(transport)[2] == b"again"
    assert server.connections == 1


def test_100_continue_is_skipped_and_body_without_length_ends_at_close(
    server: RawServer, transport: Transport
) -> None:
    server.answers = [
        (
            b"HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.0 200 OK\r\nServer: old\r\n\r\nto the end",
            True,
        ),
        (length_answer(b"next"), False),
    ]
    assert get(transport)[:3] == (200, "OK", b"to the end")
    assert get(transport)[2] == b"next"
    assert server.connections == 2


def test_connection_close_answer_then_a_new_connection(
    server: RawServer, transport: Transport
) -> None:
    server.answers = [
        (length_answer(b"one", "Connection: close"), True),
        (length_answer(b"two"), False),
    ]
    assert get(transport)[2] == b"one"
    assert get(transport)[2] == b"two"
    assert server.connections == 2


def test_kept_alive_connection_closed_by_server_is_reopened_once(
    server: RawServer, transport: Transport
) -> None:
    # the server drops the connection after the first answer without saying so
    server.answers = [(length_answer(b"one"), True), (length_answer(b"two"), False)]
    assert get(transport)[2] == b"one"
    assert get(transport)[2] == b"two"
    assert server.connections == 2


def test_server_hanging_up_without_answer_on_a_new_connection_raises(
    server: RawServer, transport: Transport
) -> None:
    with pytest.raises(http.client.RemoteDisconnected):
        get(transport)


def test_truncated_body_raises(server: RawServer, transport: Transport) -> None:
    server.answers = [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True)]
    with pytest.raises(http.client.IncompleteRead):
        get(transport)


def test_too_many_headers_are_refused(server: RawServer, transport: Transport) -> None:
    many = "".join(f"X-{i}: v\r\n" for i in range(101))
    server.answers = [(f"HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n".encode(), True)]
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        get(transport)


def test_no_answer_within_the_timeout_raises(server: RawServer) -> None:
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    trans = Transport(configuration, timeout=0.2)
    server.answers = []
    # the server reads the request and then neither answers nor closes: a timeout, not a hang
    hold = threading.Event()
    original = server._handle

    def handle_and_hold(conn: socket.socket) -> None:
        conn.recv(65536)
        hold.wait(5)
        conn.close()

    server._handle = handle_and_hold  # type: ignore[method-assign]
    try:
        with pytest.raises(TimeoutError):
            get(trans)
    finally:
        hold.set()
        server._handle = original  # type: ignore[method-assign]
        trans.close()


@pytest.mark.parametrize(
    "block",
    [
        b"Content-Type: application/json\r\nContent-Length: 12\r\nAudit-Id:  a b \r\n",
        b'X-Empty:\r\nx-dup: 1\r\nX-Dup: 2\r\nWarning: 299 - "deprecated: use v2"\r\n',
        b"Folded: first\r\n  continued\r\nNext: 1\r\n",  # obsolete folding: the email parser
        b"Bad Name: value\r\nOk: 1\r\n",  # not a header name: the email parser decides
        b"NoColonHere\r\nOk: 1\r\n",
        "Latin: caf\u00e9\r\n".encode("iso-8859-1"),
    ],
)
def test_header_parse_matches_the_standard_library(block: bytes) -> None:
    lines = io.BytesIO(block).readlines()
    ours = parse_header_lines(lines)
    theirs = http.client.parse_headers(io.BytesIO(block + b"\r\n"))
    assert ours.items() == theirs.items()
    for name in ("content-length", "X-DUP", "folded", "ok", "missing"):
        assert ours.get(name) == theirs.get(name)
        assert ours.get_all(name) == theirs.get_all(name)


# -- Cluster.map ------------------------------------------------------------------------------


def make_cluster(concurrency: int) -> Cluster:
    configuration = k8s_client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    return Cluster(
        Target(name="t", kubeconfig=Path("unused")),
        concurrency=concurrency,
        api_client=k8s_client.ApiClient(configuration),
    )


@pytest.mark.parametrize("concurrency", [1, 2, 16])
def test_map_keeps_input_order_and_bounds_parallelism(concurrency: int) -> None:
    running, peak = 0, 0
    lock = threading.Lock()
    gate = threading.Barrier(min(concurrency, 4), timeout=5) if concurrency > 1 else None

    def square(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if gate is not None and n < min(concurrency, 4):
            gate.wait()  # the first few items must really run side by side
        with lock:
            running -= 1
        return n * n

    with make_cluster(concurrency) as cluster:
        assert list(cluster.map(square, range(200))) == [n * n for n in range(200)]
        assert list(cluster.map(square, [])) == []
    assert 1 <= peak <= concurrency
    if concurrency > 1:
        assert peak >= min(concurrency, 4)


def test_map_raises_at_the_failing_items_turn() -> None:
    ran: list[int] = []

    def check(n: int) -> int:
        ran.append(n)
        if n == 5:
            raise ValueError("five")
        return n

    with make_cluster(4) as cluster:
        got: list[int] = []
        with pytest.raises(ValueError, match="five"):
            for value in cluster.map(check, range(50)):
                got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert set(range(6)) <= set(ran)


def test_nested_map_does_not_starve_for_pool_threads() -> None:
    with make_cluster(2) as cluster:
        inner: Callable[[int], list[int]] = lambda n: list(cluster.map(lambda m: n * m, range(5)))  # noqa: E731
        assert list(cluster.map(inner, range(8))) == [[n * m for m in range(5)] for n in range(8)]


def test_request_head_and_body_are_what_http_client_would_send(
    server: RawServer, transport: Transport
) -> None:
    server.answers = [(length_answer(b"{}"), False), (length_answer(b""), False)]
    transport.request(
        "PATCH",
        "/api/v1/namespaces/a/configmaps/b",
        query=[("fieldManager", "bot"), ("force", "true")],
        body=b'{"k":"v"}',
        headers={"Accept": "application/json", "Content-Type": "application/apply-patch+yaml"},
    )
    transport.request("DELETE", "/api/v1/x", query=None, body=None, headers={"Accept": "y"})
    assert server.requests[0] == (
        b"PATCH /api/v1/namespaces/a/configmaps/b?fieldManager=bot&force=true HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Accept-Encoding: identity\r\n"
        b"Accept: application/json\r\n"
        b"Content-Type: application/apply-patch+yaml\r\n"
        b"Authorization: Bearer secret-token\r\n"
        b"Content-Length: 9\r\n\r\n"
        b'{"k":"v"}'
    )
    assert b"Content-Length" not in server.requests[1]


def test_line_breaks_in_the_url_or_a_header_are_refused(
    server: RawServer, transport: Transport
) -> None:
    with pytest.raises(http.client.InvalidURL):
        transport.request("GET", "/api/v1/x y", query=None, body=None, headers={})
    with pytest.raises(ValueError, match="line break"):
        transport.request("GET", "/", query=None, body=None, headers={"X": "a\r\nEvil: 1"})
    assert server.requests == []


def test_tls_is_verified_against_the_kubeconfig_ca(kube_emulator: Any) -> None:
    import ssl

    configuration = k8s_client.Configuration()
    configuration.host = kube_emulator.https_url
    configuration.ssl_ca_cert = kube_emulator.ca_file
    trusted = Transport(configuration, timeout=5)
    try:
        status, _reason, body, _headers = trusted.request(
            "GET", "/version", query=None, body=None, headers={"Accept": "application/json"}
        )
        assert status == 200 and b"gitVersion" in body
    finally:
        trusted.close()
    configuration.ssl_ca_cert = None  # the system CAs did not sign the emulator's certificate
    untrusted = Transport(configuration, timeout=5)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.request("GET", "/version", query=None, body=None, headers={})
    finally:
        untrusted.close()


@pytest.mark.parametrize(
    "text", ["obj-00001", "a.b_c~d", "", "with space", "slash/and?query", "caf\u00e9", "a+b&c=d"]
)
def test_quoting_fast_path_matches_urllib(text: str) -> None:
    from urllib.parse import quote, urlencode

    from bot.cluster.transport import encode_query, quote_segment

    assert quote_segment(text) == quote(text, safe="")
    query = [("fieldManager", text), ("force", "true")]
    assert encode_query(query) == urlencode(query)


@pytest.mark.parametrize(
    "body",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "caf\u00e9 \u2603", "n": "1"}},
        {"spec": {"replicas": 3, "ratio": 0.1, "big": 2**63 - 1, "list": [True, False]}},
        {"spec": {"nothing": None}},  # null: json writes it, as it would NaN
        {"spec": {"nan": float("nan"), "inf": float("inf")}},
        {1: "int key", "s": "x"},
        {"huge": 2**70},
    ],
)
@pytest.mark.parametrize("with_orjson", [True, False])
def test_request_bodies_mean_what_json_dumps_says(
    body: dict[Any, Any], with_orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import bot.cluster.transport as transport_mod

    if not with_orjson:
        monkeypatch.setattr(transport_mod, "orjson", None)
    expected = json.dumps(body, separators=(",", ":"))
    data = transport_mod.encode(body)
    assert data is not None
    assert json.loads(data) == json.loads(expected) or "nan" in body.get("spec", {})
    if "nan" in body.get("spec", {}) or 1 in body or "huge" in body:
        assert data == expected.encode()  # json's own text: orjson would change the meaning
    assert transport_mod.encode(None) is None


def test_dates_are_refused_as_json_refuses_them() -> None:
    import datetime

    from bot.cluster.transport import encode

    with pytest.raises(TypeError):
        encode({"when": datetime.date(2024, 1, 1)})


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":[1,2.5,"caf\\u00e9",null,true],"b":{"c":-0.0}}',
        b'{"nan": NaN}',  # not JSON, but json.loads reads it: so must we
        b'{"s": "\\ud800"}',  # a lone surrogate escape
    ],
)
def test_answers_decode_as_json_loads_does(text: bytes) -> None:
    import json
    import math

    from bot.cluster.transport import decode

    ours, theirs = decode(text), json.loads(text)
    if "nan" in theirs:
        assert math.isnan(ours["nan"])
    else:
        assert ours == theirs
