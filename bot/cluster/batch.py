"""Many requests to one API server at once, from the calling thread: libcurl's multi interface.

Why it exists: a preview, deploy or prune sends one request per object (a server-side apply, a
GET, a DELETE, a LIST page), and against a real API server each waits for a round trip to
etcd. Sent one after another, as kubectl sends them, a thousand objects wait a thousand round
trips; here up to ``connections`` are in flight at once, driven from one thread by libcurl
(through pycurl), which does the TLS, the keep-alive connections, HTTP/2 where the server offers
it (one connection then carries every request) and the HTTP parsing. Everything else goes
through the official client (:mod:`bot.cluster.client`).

Where and how to connect comes from the official client's ``Configuration`` as the kubeconfig
loader (or the in-cluster loader) filled it in, and libcurl honours all of it natively: the
server URL, the CA bundle (a file, or ``ca_cert_data``), ``insecure-skip-tls-verify``, the
client certificate and key (mTLS; the loader writes inline ``client-certificate-data`` to a
file), ``tls-server-name`` (sent as SNI and checked against the server's certificate),
``proxy-url`` with its headers and ``no_proxy`` (the loader reads ``proxy-url`` from kubernetes
37.0.0 on; older clients connect directly). Environment proxies are ignored, as the official
client ignores them. The Authorization header is the caller's to give
(:class:`bot.cluster.client.Credentials` reads it).
"""

from __future__ import annotations

import heapq
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pycurl  # type: ignore[import-untyped,unused-ignore]
from kubernetes import client as k8s_client


class Failure(OSError):
    """A request that got no HTTP answer (refused, reset, TLS refused, timed out), in
    libcurl's words."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.strerror} (curl error {self.code})"


@dataclass(eq=False)
class Request:
    """One request of a batch. ``key`` is the caller's (where the answer goes); ``want`` says
    whether the caller reads the answer's body; ``attempt`` is the caller's retry state."""

    key: Any
    method: str
    url: str
    headers: list[str]
    body: bytes | None = None
    want: bool = True
    attempt: Any = None
    sent: float = field(default=0.0, init=False)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body and the Retry-After seconds of a 429/5xx that sent one."""

    status: int
    body: bytes
    retry_after: float | None = None


Outcome = Answer | Failure
Done = Callable[[Request, Outcome], None]


class CurlBatch:
    """Requests to one API server, at most ``connections`` in flight, over kept-alive
    connections. Not thread-safe: one thread runs a batch at a time (the cluster holds a lock).

    :meth:`run` sends requests and calls ``done(request, outcome)`` as each finishes; ``done``
    may :meth:`send` more (a retry after a delay, the next page of a LIST)."""

    def __init__(
        self,
        configuration: k8s_client.Configuration,
        *,
        connections: int,
        timeout: float = 60,
        connect_timeout: float | None = None,
    ) -> None:
        """``timeout``: seconds for one request; ``connect_timeout`` (default ``timeout``):
        for connecting."""
        self.connections = max(1, connections)
        self._timeout_ms = int(timeout * 1000)
        self._connect_timeout_ms = int((connect_timeout or timeout) * 1000)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.connections)
        self._multi.setopt(pycurl.M_MAXCONNECTS, self.connections)
        self._handles: list[Any] = []
        self._idle: list[Any] = []
        self._queue: list[tuple[float, int, Request]] = []  # (not before, order, request)
        self._order = 0
        self._options = _connection_options(configuration)
        self.base = base_url(configuration)
        """Where request URLs start (the server's URL; see :func:`base_url`)."""

    def send(self, request: Request, *, delay: float = 0.0) -> None:
        """Queue ``request``: sent by :meth:`run` once ``delay`` seconds have passed."""
        self._order += 1
        heapq.heappush(self._queue, (time.monotonic() + delay, self._order, request))

    def run(self, requests: Iterable[Request], done: Done) -> None:
        """Send ``requests`` (and whatever ``done`` sends meanwhile), at most ``connections``
        at a time; returns when every one has been handed to ``done``."""
        for request in requests:
            self.send(request)
        multi = self._multi
        active: dict[int, Any] = {}  # id(handle) -> handle, for clean-up on an exception
        try:
            while self._queue or active:
                now = time.monotonic()
                while self._queue and len(active) < self.connections and self._queue[0][0] <= now:
                    request = heapq.heappop(self._queue)[2]
                    handle = self._idle.pop() if self._idle else self._new_handle()
                    self._start(handle, request)
                    active[id(handle)] = handle
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                while True:
                    queued, ok, failed = multi.info_read()
                    finished: list[tuple[Any, Outcome]] = [(h, _answer(h)) for h in ok]
                    finished += [(h, Failure(code, text)) for h, code, text in failed]
                    for handle, outcome in finished:
                        request = handle.request
                        self._release(handle)
                        del active[id(handle)]
                        done(request, outcome)
                    if not queued:
                        break
                if active:
                    # libcurl says how long it may wait (its own timers: connecting, waiting
                    # to multiplex on a connection being set up); a retry due sooner cuts it
                    timeout_ms = multi.timeout()
                    wait = 1.0 if timeout_ms < 0 else min(1.0, timeout_ms / 1000)
                    if self._queue and len(active) < self.connections:
                        wait = max(0.0, min(wait, self._queue[0][0] - time.monotonic()))
                    multi.select(wait)
                elif self._queue:
                    time.sleep(max(0.0, self._queue[0][0] - time.monotonic()))
        finally:
            for handle in active.values():  # left by an exception: drop what is in flight
                self._release(handle)
            self._queue.clear()

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()
        self._idle.clear()
        self._multi.close()

    def _new_handle(self) -> Any:
        handle = pycurl.Curl()
        for option, value in self._options:
            handle.setopt(option, value)
        handle.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_timeout_ms)
        handle.chunks = []
        handle.setopt(pycurl.WRITEFUNCTION, handle.chunks.append)
        handle.request = None
        self._handles.append(handle)
        return handle

    def _start(self, handle: Any, request: Request) -> None:
        handle.request = request
        request.sent = time.monotonic()
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.CUSTOMREQUEST, request.method)
        if request.body is not None:
            handle.setopt(pycurl.POSTFIELDS, request.body)
        elif request.method in ("PATCH", "POST", "PUT"):
            handle.setopt(pycurl.POSTFIELDS, b"")
        else:
            handle.setopt(pycurl.HTTPGET, 1)
        handle.setopt(pycurl.HTTPHEADER, request.headers)
        self._multi.add_handle(handle)

    def _release(self, handle: Any) -> None:
        self._multi.remove_handle(handle)
        handle.request = None
        handle.chunks.clear()
        self._idle.append(handle)


def _answer(handle: Any) -> Answer:
    status: int = handle.getinfo(pycurl.RESPONSE_CODE)
    chunks: list[bytes] = handle.chunks
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    retry_after: float | None = None
    if status == 429 or status >= 500:
        seconds = handle.getinfo(pycurl.RETRY_AFTER)
        retry_after = float(seconds) if seconds > 0 else None
    return Answer(status, body, retry_after)


def _connection_options(configuration: k8s_client.Configuration) -> list[tuple[int, Any]]:
    """The libcurl options that make a handle connect as the official client would."""
    options: list[tuple[int, Any]] = [
        (pycurl.NOSIGNAL, 1),
        (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
        # h2 when the server's ALPN offers it (one connection for every request), else 1.1
        (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS),
        (pycurl.PIPEWAIT, 1),  # wait to multiplex on an h2 connection rather than open more
        (pycurl.PATH_AS_IS, 1),  # the path exactly as quoted
    ]
    proxy = getattr(configuration, "proxy", None)
    options.append((pycurl.PROXY, proxy or ""))  # "": never an environment proxy
    if proxy:
        headers = getattr(configuration, "proxy_headers", None) or {}
        if headers:
            options.append((pycurl.PROXYHEADER, [f"{k}: {v}" for k, v in headers.items()]))
            options.append((pycurl.HEADEROPT, pycurl.HEADER_SEPARATE))
        no_proxy = getattr(configuration, "no_proxy", None)
        if no_proxy:
            options.append((pycurl.NOPROXY, no_proxy))
    url = urlsplit(str(configuration.host))
    if url.scheme != "https":
        return options
    ca_data = getattr(configuration, "ca_cert_data", None)
    if configuration.ssl_ca_cert:
        options.append((pycurl.CAINFO, configuration.ssl_ca_cert))
    elif ca_data:
        options.append(
            (pycurl.CAINFO_BLOB, ca_data.encode() if isinstance(ca_data, str) else ca_data)
        )
    else:  # what the official client (ssl.create_default_context) trusts
        paths = ssl.get_default_verify_paths()
        if paths.cafile:
            options.append((pycurl.CAINFO, paths.cafile))
        if paths.capath:
            options.append((pycurl.CAPATH, paths.capath))
    if not configuration.verify_ssl:
        options += [(pycurl.SSL_VERIFYPEER, 0), (pycurl.SSL_VERIFYHOST, 0)]
    elif configuration.assert_hostname is False:
        options.append((pycurl.SSL_VERIFYHOST, 0))
    if configuration.cert_file:
        options.append((pycurl.SSLCERT, configuration.cert_file))
    if configuration.key_file:
        options.append((pycurl.SSLKEY, configuration.key_file))
    server_name = getattr(configuration, "tls_server_name", None)
    if server_name and url.hostname:
        # libcurl takes the SNI name from the URL: requests name `server_name` and are
        # connected to the real host (see base_url)
        port = url.port or 443
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        options.append((pycurl.CONNECT_TO, [f"{server_name}:{port}:{host}:{port}"]))
    return options


def base_url(configuration: k8s_client.Configuration) -> str:
    """The base URL requests are sent to: the server's, with ``tls-server-name`` as its host
    when the kubeconfig sets one (libcurl connects to the real host, :func:`_connection_options`)."""
    url = urlsplit(str(configuration.host))
    server_name = getattr(configuration, "tls_server_name", None)
    netloc = url.netloc
    if url.scheme == "https" and server_name:
        netloc = f"{server_name}:{url.port or 443}"
    return urlunsplit((url.scheme, netloc, url.path.rstrip("/"), "", ""))
