"""HTTP/1.1 transport of the emulator: one event-loop thread for requests, a thread per watch.

Why an event loop: benchmarks are bound by the emulator's CPU per request, and a thread per
connection spent more of it on thread switches and interpreter-lock hand-offs (each request
woke a blocked thread) than on the request itself. One thread multiplexing non-blocking sockets
(``selectors``) reads a request, answers it and moves on to the next ready connection, with
one ``recv`` and one ``send`` per request. Plain HTTP and TLS share the port (a TLS ClientHello
starts with byte 0x16). A watch is a long stream that waits for changes: its connection is
handed to a thread of its own, which then keeps serving that connection in blocking mode.
With ``latency`` every connection gets such a thread from the start, so that the delays of
concurrent requests overlap as on a real API server (and sleeping costs no CPU).

Request line and headers are parsed by hand (``http.server`` parses headers with the ``email``
package, which cost more CPU than a whole dry-run apply); each response is written in one
``send`` (headers and body together) so that keep-alive clients do not stall on Nagle's
algorithm; watch responses use chunked transfer encoding.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

from .api import Emulator, Response
from .tls import peer_identity, server_context

IDLE_TIMEOUT = 300.0
MAX_LINE = 65536
MAX_HEADERS = 100
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
RECV_SIZE = 262144
# How often idle keep-alive connections are looked for (they are closed after IDLE_TIMEOUT).
SWEEP_INTERVAL = 5.0
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _HttpError(Exception):
    """A request the transport refuses before the emulator sees it (the connection closes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Request:
    """A parsed request head, waiting for (or with) its body."""

    __slots__ = ("chunked", "head_end", "headers", "length", "method", "path", "version")

    def __init__(
        self, method: str, path: str, version: str, headers: dict[str, str], head_end: int
    ) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.head_end = head_end
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length") or "0"
        if not length.isdigit():
            raise _HttpError(400, "Bad Request")
        self.length = int(length)


def _head_end(buf: bytearray) -> tuple[int, int] | None:
    """Where the first blank line starts and ends (what ``_HEAD_END.search`` finds), or None.

    ``bytes.find`` instead of the regular expression: the expression has no literal prefix, so
    it tried a match at every byte of the body too, which cost more than parsing the head."""
    crlf = buf.find(b"\r\n\r\n")
    limit = len(buf) if crlf < 0 else crlf + 3
    # bare line feeds (tolerated like http.server does) may end the head earlier
    lf = buf.find(b"\n\n", 0, limit)
    mixed = buf.find(b"\n\r\n", 0, limit)
    first, second = (crlf + 1, crlf + 3) if crlf >= 0 else (-1, -1)
    if lf >= 0 and (first < 0 or lf < first):
        first, second = lf, lf + 1
    if mixed >= 0 and (first < 0 or mixed < first):
        first, second = mixed, mixed + 2
    if first < 0:
        return None
    start = first - 1 if first > 0 and buf[first - 1] == 13 else first
    return start, second + 1


def _parse_head(buf: bytearray) -> _Request | None:
    """The request head at the start of ``buf``, or None while it is incomplete."""
    end = _head_end(buf)
    if end is None:
        first = buf.find(b"\n")
        if first < 0:
            if len(buf) > MAX_LINE:
                raise _HttpError(414, "Request-URI Too Long")
        else:
            _request_line(bytes(buf[:first]).decode("latin-1"))
            if len(buf) > MAX_LINE * (MAX_HEADERS + 2):
                raise _HttpError(431, "Request Header Fields Too Large")
        return None
    lines = bytes(buf[: end[0]]).decode("latin-1").split("\n")
    method, path, version = _request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise _HttpError(431, "Request Header Fields Too Large")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(":")
        if not sep or len(raw) >= MAX_LINE:
            raise _HttpError(400, "Bad Request")
        key = name.strip().lower()
        value = value.strip()
        if key in headers:
            headers[key] += ", " + value
        else:
            headers[key] = value
    return _Request(method, path, version, headers, end[1])


def _request_line(line: str) -> tuple[str, str, str]:
    if len(line) >= MAX_LINE:
        raise _HttpError(414, "Request-URI Too Long")
    words = line.rstrip("\r\n").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise _HttpError(400, "Bad Request")
    return words[0], words[1], words[2]


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start`` (and its trailers): (body, end), or None while incomplete."""
    chunks: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
        except ValueError:
            raise _HttpError(400, "Bad Request") from None
        pos = eol + 1
        if size == 0:
            while True:  # trailers, up to the empty line
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    return None
                line = bytes(buf[pos : eol + 1])
                pos = eol + 1
                if line in (b"\r\n", b"\n"):
                    return b"".join(chunks), pos
        if len(buf) < pos + size:
            return None
        chunks.append(bytes(buf[pos : pos + size]))
        eol = buf.find(b"\n", pos + size)
        if eol < 0:
            return None
        pos = eol + 1


_REASONS: dict[int, str] = {}


def _reason(code: int) -> str:
    reason = _REASONS.get(code)
    if reason is None:
        reason = _REASONS[code] = BaseHTTPRequestHandler.responses.get(code, ("",))[0]
    return reason


def _answer(resp: Response, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {resp.code} {_reason(resp.code)}\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(resp.body)}\r\n"
        "Cache-Control: no-cache, private\r\n"
    )
    for k, v in resp.headers.items():
        head += f"{k}: {v}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + resp.body


def _error_answer(code: int, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + body
    )


class _Conn:
    """One client connection: its socket, unparsed input and unsent output."""

    __slots__ = (
        "blocking",
        "buf",
        "closed",
        "closing",
        "continued",
        "handshaking",
        "last",
        "mask",
        "out",
        "peer",
        "pending",
        "server",
        "sock",
        "tls_checked",
    )

    def __init__(self, server: _Server, sock: socket.socket) -> None:
        self.server = server
        self.sock: socket.socket = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.pending: _Request | None = None
        self.closing = False
        self.closed = False
        self.handshaking = False
        self.tls_checked = False
        self.last = time.monotonic()
        self.mask = 0
        self.continued = False
        # Served by a thread of its own (a watch, or ``latency``): writes go out at once.
        self.blocking = False
        # The user and groups of the client certificate the TLS handshake verified, if any.
        self.peer: tuple[str, tuple[str, ...]] | None = None

    # ------------------------------------------------------------ request processing
    def next_request(self) -> tuple[_Request, bytes] | None:
        """The next complete request in the input buffer (removed from it), or None."""
        req = self.pending
        if req is None:
            if not self.buf:
                return None
            req = _parse_head(self.buf)
            if req is None:
                return None
            self.pending = req
            self.continued = False
        buf = self.buf
        if req.chunked:
            got = _dechunk(buf, req.head_end)
            if got is None:
                self._maybe_continue(req)
                return None
            body, end = got
        else:
            end = req.head_end + req.length
            if len(buf) < end:
                self._maybe_continue(req)
                return None
            body = bytes(buf[req.head_end : end])
        del buf[:end]
        self.pending = None
        return req, body

    def _maybe_continue(self, req: _Request) -> None:
        # The client waits for this before it sends the body.
        if not self.continued and req.headers.get("expect", "").lower() == "100-continue":
            self.continued = True
            self.write(_CONTINUE)

    def process(self, *, blocking: bool) -> bool:
        """Answer every complete request in the buffer; False once a watch took the connection
        over (event-loop mode only: it moves to a thread)."""
        server = self.server
        while not self.closing:
            try:
                got = self.next_request()
            except _HttpError as err:
                self.closing = True
                self.write(_error_answer(err.code, err.reason))
                break
            if got is None:
                break
            req, body = got
            headers = req.headers
            connection = headers.get("connection", "").lower()
            if req.version == "HTTP/1.0":
                close = "keep-alive" not in connection
            else:
                close = "close" in connection
            if req.method not in METHODS:
                self.closing = True
                self.write(_error_answer(501, "Not Implemented"))
                break
            if not self.continued and headers.get("expect", "").lower() == "100-continue":
                self.write(_CONTINUE)
            self.continued = False
            if blocking and server.latency:
                time.sleep(server.latency)
            resp = server.emulator.handle(req.method, req.path, headers, body, client=self.peer)
            if server.verbose:
                sys.stderr.write(f"{req.method} {req.path} -> {resp.code}\n")
            if resp.stream is not None:
                if not blocking:
                    # Answered in a thread of its own, which keeps the connection afterwards.
                    server.hand_off(self, resp, close)
                    return False
                self.stream(resp, close)
                continue
            self.write(_answer(resp, close))
            if close:
                self.closing = True
        return True

    def write(self, data: bytes) -> None:
        self.out += data
        if self.blocking:
            self.flush_blocking()

    def flush_blocking(self) -> None:
        if self.out:
            try:
                self.sock.sendall(self.out)
            except OSError:
                self.closing = True
            self.out.clear()

    def stream(self, resp: Response, close: bool) -> None:
        """A watch answer: chunks until the stream ends or the client goes away (blocking mode)."""
        stream: Iterator[bytes] = resp.stream  # type: ignore[assignment]
        ctype = resp.headers.get("Content-Type", resp.content_type)
        head = (
            f"HTTP/1.1 {resp.code} OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n"
            "Cache-Control: no-cache, private\r\n\r\n"
        )
        sock = self.sock
        try:
            self.flush_blocking()
            sock.sendall(head.encode("latin-1"))
            for chunk in stream:
                if not chunk:
                    if self._peer_closed():
                        break
                    continue
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            self.closing = True
        finally:
            close_stream = getattr(stream, "close", None)
            if close_stream is not None:
                close_stream()
        if close:
            self.closing = True

    def _peer_closed(self) -> bool:
        conn = self.sock
        try:
            if isinstance(conn, ssl.SSLSocket):
                if conn.pending():
                    return False
                r, _, _ = select.select([conn.fileno()], [], [], 0)
                if r:
                    # Readable TLS socket while no request is expected: EOF or a close_notify.
                    conn.setblocking(False)
                    try:
                        data = conn.recv(1)
                    except ssl.SSLWantReadError:
                        return False
                    finally:
                        conn.settimeout(IDLE_TIMEOUT)
                    if data:
                        self.buf += data
                        return False
                    return True
                return False
            r, _, _ = select.select([conn.fileno()], [], [], 0)
            if r:
                return bool(conn.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True
        return False

    # ------------------------------------------------------------ blocking mode (a thread)
    def serve_blocking(self) -> None:
        """Serve this connection until it closes: for watches and for ``latency``."""
        sock = self.sock
        self.blocking = True
        try:
            sock.settimeout(IDLE_TIMEOUT)
            if not self.tls_checked:
                first = sock.recv(1, socket.MSG_PEEK)
                if first == b"\x16":
                    sock = self.sock = server_context().wrap_socket(sock, server_side=True)
                    self.peer = peer_identity(sock)
                self.tls_checked = True
            while True:
                self.process(blocking=True)
                self.flush_blocking()
                if self.closing:
                    break
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                self.buf += data
        except (OSError, ssl.SSLError):
            pass
        except Exception:  # a bug here must not take the process down
            traceback.print_exc()
        finally:
            self.closed = True
            with contextlib.suppress(OSError):
                sock.close()


class _Server:
    """A listening socket and the event loop that serves it (``socketserver``-like interface)."""

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
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(addr)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address: tuple[str, int] = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, _READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, None)
        self._conns: dict[int, _Conn] = {}
        self._stop = False
        self._stopped = threading.Event()
        self._stopped.set()
        self._loop_thread: threading.Thread | None = None

    # ------------------------------------------------------------ loop
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self._loop_thread = threading.current_thread()
        select_ = self._selector.select
        listener = self.socket
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        try:
            while not self._stop:
                for key, mask in select_(poll_interval):
                    conn = key.data
                    if conn is None:
                        if key.fileobj is listener:
                            self._accept()
                        else:
                            self._drain_waker()
                        continue
                    try:
                        self._on_event(conn, mask)
                    except Exception:  # a bug must cost one connection, not the server
                        traceback.print_exc()
                        self._close(conn)
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL
                    for conn in list(self._conns.values()):
                        if now - conn.last > IDLE_TIMEOUT:
                            self._close(conn)
        finally:
            self._stop = False
            self._loop_thread = None
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned."""
        self._stop = True
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self.socket, self._wake_r, self._wake_w):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._selector.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _drain_waker(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # ------------------------------------------------------------ connections
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, sock)
            if self.latency:
                self._thread(conn)
                continue
            sock.setblocking(False)
            self._conns[sock.fileno()] = conn
            self._watch(conn, _READ)

    def _thread(self, conn: _Conn) -> None:
        threading.Thread(target=conn.serve_blocking, name="kube-emulator-conn", daemon=True).start()

    def _watch(self, conn: _Conn, mask: int) -> None:
        if conn.mask == mask:
            return
        if conn.mask == 0:
            self._selector.register(conn.sock, mask, conn)
        else:
            self._selector.modify(conn.sock, mask, conn)
        conn.mask = mask

    def _unwatch(self, conn: _Conn) -> None:
        if conn.mask:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
            conn.mask = 0

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._unwatch(conn)
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def hand_off(self, conn: _Conn, resp: Response, close: bool) -> None:
        """Move ``conn`` to a thread of its own, starting with the watch ``resp``."""
        self._unwatch(conn)
        self._conns.pop(conn.sock.fileno(), None)
        conn.sock.settimeout(IDLE_TIMEOUT)
        conn.blocking = True

        def run() -> None:
            conn.stream(resp, close)
            conn.serve_blocking()

        threading.Thread(target=run, name="kube-emulator-watch", daemon=True).start()

    def _on_event(self, conn: _Conn, mask: int) -> None:
        sock = conn.sock
        if not conn.tls_checked:
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            if not first:
                self._close(conn)
                return
            conn.tls_checked = True
            if first == b"\x16":
                self._unwatch(conn)
                fd = sock.fileno()
                try:
                    sock = conn.sock = server_context().wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (ssl.SSLError, OSError):
                    self._conns.pop(fd, None)
                    conn.closed = True
                    with contextlib.suppress(OSError):
                        sock.close()
                    return
                conn.handshaking = True
        if conn.handshaking:
            assert isinstance(sock, ssl.SSLSocket)
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                self._watch(conn, _READ)
                return
            except ssl.SSLWantWriteError:
                self._watch(conn, _WRITE)
                return
            except (ssl.SSLError, OSError):
                self._close(conn)
                return
            conn.handshaking = False
            conn.peer = peer_identity(sock)
            self._watch(conn, _READ)
        if mask & _WRITE and conn.out:
            self._flush(conn)
            if conn.closed or conn.out:
                return
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            data = sock.recv(RECV_SIZE)
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, _READ | _WRITE)
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        buf = conn.buf
        buf += data
        if isinstance(sock, ssl.SSLSocket):
            # Decrypted data OpenSSL already holds does not make the socket readable again.
            while sock.pending():
                try:
                    buf += sock.recv(RECV_SIZE)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
        if conn.process(blocking=False):
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        sock = conn.sock
        while out:
            try:
                sent = sock.send(out)
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                self._watch(conn, _READ | _WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, _READ)
                return
            except OSError:
                self._close(conn)
                return
            del out[:sent]
        if conn.closing:
            self._close(conn)
        else:
            self._watch(conn, _READ)


def make_server(
    emulator: Emulator, host: str, port: int, *, verbose: bool = False, latency: float = 0.0
) -> _Server:
    return _Server((host, port), emulator, verbose=verbose, latency=latency)
