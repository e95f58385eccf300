"""HTTP/1.1 transport of the emulator: a threading server with keep-alive and chunked watch streams.

Each response is written in one ``send`` (headers and body together) so that keep-alive clients
do not stall on Nagle's algorithm; watch responses use chunked transfer encoding. The request
line and headers are parsed here by hand: ``http.server`` parses headers with the ``email``
package, which cost more CPU than a whole dry-run apply (benchmarks are bound by the emulator's
CPU per request).
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .api import Emulator
from .tls import server_context

IDLE_TIMEOUT = 300.0
MAX_LINE = 65536
MAX_HEADERS = 100
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        addr: tuple[str, int],
        emulator: Emulator,
        *,
        verbose: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.emulator = emulator
        self.verbose = verbose
        # Seconds each request waits before it is served: a real API server answers after an
        # etcd round trip and admission, a delay that costs no CPU. Sleeping (not working)
        # keeps the emulator's own CPU per request unchanged.
        self.latency = latency
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve TLS and plain HTTP on one port: a TLS ClientHello starts with byte 0x16."""
        try:
            request.settimeout(IDLE_TIMEOUT)
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":
            try:
                request = server_context().wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = IDLE_TIMEOUT
    req_headers: dict[str, str]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        """Read one request (request line, headers, body) and answer it."""
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        except (TimeoutError, ConnectionResetError, OSError):
            self.close_connection = True
            return
        if not line:
            self.close_connection = True
            return
        if len(line) > MAX_LINE:
            self._error(414, "Request-URI Too Long")
            return
        self.raw_requestline = line
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self._error(400, "Bad Request")
            return
        self.command, self.path, self.request_version = words
        headers: dict[str, str] = {}
        try:
            for _ in range(MAX_HEADERS + 1):
                raw = self.rfile.readline(MAX_LINE + 1)
                if raw in (b"\r\n", b"\n", b""):
                    break
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep or len(raw) > MAX_LINE:
                    self._error(400, "Bad Request")
                    return
                key = name.strip().lower()
                value = value.strip()
                if key in headers:
                    headers[key] += ", " + value
                else:
                    headers[key] = value
            else:
                self._error(431, "Request Header Fields Too Large")
                return
        except (TimeoutError, ConnectionResetError, OSError):
            self.close_connection = True
            return
        self.req_headers = headers
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = "keep-alive" not in connection
        else:
            self.close_connection = "close" in connection
        if self.command not in METHODS:
            self._error(501, "Not Implemented")
            return
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._serve()
        self.wfile.flush()

    def _error(self, code: int, reason: str) -> None:
        self.close_connection = True
        body = reason.encode()
        self.wfile.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            + body
        )

    def _read_body(self) -> bytes:
        headers = self.req_headers
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers, up to the empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        if self.server.latency:
            time.sleep(self.server.latency)
        resp = self.server.emulator.handle(self.command, self.path, self.req_headers, body)
        if self.server.verbose:
            sys.stderr.write(f"{self.command} {self.path} -> {resp.code}\n")
        if resp.stream is not None:
            self._stream(
                resp.code, resp.headers.get("Content-Type", resp.content_type), resp.stream
            )
            return
        head = (
            f"HTTP/1.1 {resp.code} {_reason(resp.code)}\r\n"
            f"Content-Type: {resp.content_type}\r\n"
            f"Content-Length: {len(resp.body)}\r\n"
            "Cache-Control: no-cache, private\r\n"
        )
        for k, v in resp.headers.items():
            head += f"{k}: {v}\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + resp.body)

    def _closed(self) -> bool:
        conn = self.connection
        try:
            if isinstance(conn, ssl.SSLSocket):
                if conn.pending():
                    return False
                r, _, _ = select.select([conn], [], [], 0)
                if r:
                    # Readable TLS socket while no request is expected: EOF or a close_notify.
                    conn.setblocking(False)
                    try:
                        return conn.recv(1) == b""
                    except ssl.SSLWantReadError:
                        return False
                    finally:
                        conn.settimeout(IDLE_TIMEOUT)
                return False
            r, _, _ = select.select([conn], [], [], 0)
            if r:
                return bool(conn.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True
        return False

    def _stream(self, code: int, ctype: str, stream: Any) -> None:
        head = f"HTTP/1.1 {code} OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n"
        try:
            self.wfile.write(head.encode("latin-1"))
            for chunk in stream:
                if not chunk:
                    if self._closed():
                        break
                    continue
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def _reason(code: int) -> str:
    return BaseHTTPRequestHandler.responses.get(code, ("",))[0]


def make_server(
    emulator: Emulator, host: str, port: int, *, verbose: bool = False, latency: float = 0.0
) -> _Server:
    return _Server((host, port), emulator, verbose=verbose, latency=latency)
