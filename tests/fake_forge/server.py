"""What the fake forges share: the HTTP server and its life cycle, the request log, fault
injection (status codes, ``Retry-After``, delays, latency), the git smart-HTTP dispatch to
``git http-backend`` (``gitstore.py``), and the thread that sends webhook deliveries.

A forge subclasses :class:`FakeForge` and its handler :class:`ForgeHandler`, and supplies what
differs: how an API request is answered (``_api``), what a fault looks like on the wire
(``_fault``), which repository a git path names and who may read it (``_git_access``), and how
a delivery is signed and posted (``_deliver``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from tests.fake_forge import gitstore


@dataclass
class Fault:
    status: int
    times: int
    retry_after: int | str | None = None
    kind: str | None = None  # forge-specific flavour (GitHub: "primary"/"secondary" limits)
    path: str | None = None  # only requests whose path contains this
    delay: float = 0.0


@dataclass
class Recorded:
    """One request as the fake received it (headers with their credentials, for tests that
    prove where credentials went and where they did not)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = field(default_factory=time.monotonic)


class Answer(Exception):
    """An error answer: ``status``, a JSON-able ``answer`` (or ``bytes`` sent as they are) and
    extra ``headers``."""

    def __init__(self, status: int, answer: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {answer!r}"[:300])
        self.status = status
        self.answer = answer
        self.headers = dict(headers or {})


class Server(ThreadingHTTPServer):
    """A non-blocking listening socket: a client that connects and resets before the accept
    (select said readable) must not block ``accept`` and with it ``shutdown`` forever."""

    daemon_threads = True

    def server_activate(self) -> None:
        super().server_activate()
        self.socket.setblocking(False)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()  # BlockingIOError is an OSError: socketserver skips it
        conn.setblocking(True)
        return conn, addr


class FakeForge:
    """Life cycle, request log, faults and the delivery sender of a fake forge."""

    #: Seconds the forge waits for the bot's answer to a delivery.
    delivery_timeout: ClassVar[float] = 10.0

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self.git_root = self.root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        #: Seconds every request waits before it is answered.
        self.latency = 0.0
        #: Requests the fake crashed on, or that the forge's contract refuses.
        self.violations: list[str] = []
        self._lock = threading.RLock()
        self._outbox: queue.Queue[tuple[Any, Any, threading.Event] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._server = Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Any:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._sender = threading.Thread(target=self._send_deliveries, daemon=True)
        self._sender.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        if self._sender is not None:
            self._sender.join(timeout=self.delivery_timeout + 5)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 502,
        *,
        times: int = 1,
        retry_after: int | str | None = None,
        kind: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests (whose path contains ``path``) with ``status``
        (``retry_after`` as the ``Retry-After`` header, seconds or an HTTP date); ``delay``
        waits before answering (a slow forge)."""
        self.faults.append(Fault(status, times, retry_after, kind, path, delay))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.path is None or fault.path in path):
                    fault.times -= 1
                    return fault
            return None

    # --- reading what happened ----------------------------------------------------------------

    def _is_git(self, path: str) -> bool:
        return ".git/" in path

    def api_requests(self) -> list[Recorded]:
        return [r for r in self.requests if not self._is_git(r.path)]

    def git_requests(self) -> list[Recorded]:
        return [r for r in self.requests if self._is_git(r.path)]

    # --- deliveries ----------------------------------------------------------------------------

    def _queue_delivery(self, hook: Any, delivery: Any, *, wait: bool) -> None:
        done = threading.Event()
        self._outbox.put((hook, delivery, done))
        if wait:
            done.wait(self.delivery_timeout + 5)

    def _send_deliveries(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            hook, delivery, done = item
            try:
                self._deliver(hook, delivery)
            finally:
                done.set()

    def _deliver(self, hook: Any, delivery: Any) -> None:
        raise NotImplementedError

    # --- serving -------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class ForgeHandler(BaseHTTPRequestHandler):
    """Reads a request, records it, applies latency and faults, and hands it to git or to the
    forge's API."""

    forge: FakeForge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        try:
            self._serve_one(method)
        except ConnectionError:  # the client hung up (its timeout, a benchmark ending): not a bug
            self.close_connection = True
        except Exception as exc:  # a bug in the fake: say so in the test, not as a dropped socket
            self.forge.violations.append(f"fake forge crashed on {method} {self.path}: {exc!r}")
            self.close_connection = True
            payload = json.dumps({"message": f"fake forge crashed: {exc!r}"}).encode()
            self._send(
                500, payload, [("Content-Type", "application/json"), ("Connection", "close")]
            )

    def _serve_one(self, method: str) -> None:
        fake = self.forge
        split = urlsplit(self.path)
        body = self._read_body()
        record = Recorded(
            method, split.path, split.query, {k.lower(): v for k, v in self.headers.items()}, body
        )
        with fake._lock:
            fake.requests.append(record)
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake._take_fault(split.path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            record.status = fault.status
            status, payload, headers = self._fault(fault)
            self._send(status, payload, headers)
            return
        if fake._is_git(split.path):
            status, payload, headers = self._git(method, split.path, split.query, record)
            record.status = status
            self._send(status, payload, headers)
            return
        try:
            status, answer, extra = self._api(method, split.path, split.query, body, record)
        except Answer as exc:
            status, answer, extra = exc.status, exc.answer, exc.headers
        record.status = status
        if isinstance(answer, bytes):
            payload = answer
            hdrs = list(extra.items())
        else:
            payload = b"" if answer is None else json.dumps(answer).encode()
            hdrs = [("Content-Type", "application/json"), *extra.items()]
        self._send(status, payload, [*hdrs, *self._common_headers()])

    def _send(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # --- per forge -----------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, query: str, body: bytes, record: Recorded
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _fault(self, fault: Fault) -> tuple[int, bytes, list[tuple[str, str]]]:
        raise NotImplementedError

    def _common_headers(self) -> list[tuple[str, str]]:
        return []

    def _git_access(
        self, path: str, record: Recorded
    ) -> tuple[int, bytes, list[tuple[str, str]]] | str:
        """The ``REMOTE_USER`` to serve ``path`` as, or the refusal to answer instead."""
        raise NotImplementedError

    def _git(
        self, method: str, path: str, query: str, record: Recorded
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        if "git-receive-pack" in path or "service=git-receive-pack" in query:
            return 403, b"Pushing is not supported by the fake forge.\n", []
        access = self._git_access(path, record)
        if not isinstance(access, str):
            return access
        status, headers, payload = gitstore.http_backend(
            self.forge.git_root,
            method=method,
            path_info=path,
            query=query,
            headers=record.headers,
            body=record.body,
            remote_user=access,
        )
        return status, payload, headers
