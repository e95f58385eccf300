"""The HTTP transports to the API server, configured from the ``kubernetes`` client's own
Configuration: :class:`CurlBatch` for the many server-side applies of a deploy or preview, and
:class:`Transport` for single requests (discovery, GET, LIST, DELETE) from any thread.

Why two. The generic REST path (``ApiClient.call_api`` over urllib3) costs about 0.3 ms of CPU
per request; that CPU, not the server, bounded a preview of thousands of objects. A blocking
keep-alive connection per worker thread (:class:`Transport`) brought it to ~0.17 ms per applied
object, but every answer was still a GIL hand-off between threads plus a Python-level HTTP
parse. :class:`CurlBatch` drives all of a phase's PATCHes from the calling thread through
libcurl's multi interface (pycurl): libcurl does TLS, keep-alive, HTTP parsing and the parallel
transfers in C, and the Python work per request is a few ``setopt`` calls. Measured on the
1,000-object bench apply (2 cores, the emulator in its own process): ~0.08 ms of bot CPU per
object, against ~0.17 ms with the threads; the alternatives weighed were a hand-written
non-blocking loop over ``ssl`` sockets (a little less CPU, but a hand-written HTTP/1.1 client)
and trimming the threaded design (it could not drop the hand-offs).

How many requests a batch keeps in flight adapts to the server (:meth:`CurlBatch._observe`,
TCP Vegas' rule): a zero-latency server that is busy with its own CPU gets ~4, a server that
answers after a network or etcd round trip gets up to the configured concurrency
(``GITOPS_KUBE_CONCURRENCY``), so that setting is a bound, not a tuning knob. libcurl's TLS
handshake costs ~0.8 ms of CPU (a new OpenSSL context per connection), so fewer connections
on a fast server is also less CPU.

Everything that decides *where* and *as whom* to connect comes from the official client: host,
CA bundle, client certificate, ``verify_ssl``, ``assert_hostname`` and the bearer token
(through the Configuration's refresh hook, so exec and OIDC credentials keep working).
:func:`Transport.usable` / :func:`CurlBatch.usable` say when these paths cannot honour the
configuration (proxies, an SNI override, basic auth, inline CA data; for the batch also: pycurl
not installed); :class:`bot.cluster.client.Cluster` then uses the generic path.

:class:`Transport`'s connecting (TCP, TLS with the configured CA and hostname check) is
``http.client``'s; the request is written in one piece (head and body in one TLS record,
validated as ``http.client`` validates it), and the answer is read by ``http.client``'s
``HTTPResponse`` (status line, Content-Length, chunked, until-close bodies) with a cheaper
header parse than its email-package one.
"""

from __future__ import annotations

import email.parser
import functools
import heapq
import http.client
import json
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from kubernetes import client as k8s_client

try:
    import orjson
except ImportError:  # optional: json gives the same results, slower
    orjson = None  # type: ignore[assignment]

try:
    import pycurl  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # optional: without it, batches run on Transport's threads
    pycurl = None

# The standard library's limits on a response's header block.
_MAX_LINE = 65536
_MAX_HEADERS = 100
# A header name the email parser takes as one (printable ASCII but the colon, no space).
_TOKEN = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def _read_header_lines(fp: Any) -> list[bytes]:
    """The header lines of a response up to the blank line, with http.client's limits."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """A response's header lines as :class:`http.client.HTTPMessage`, without the email
    parser (a third of each request's CPU in profiles). Plain ``Name: value`` lines are
    stored as the email parser's compat32 policy stores them; anything else (an obsolete
    folded line, a line without a colon) goes through the email parser as before."""
    fields: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.decode("iso-8859-1")
        name, colon, value = line.partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
                b"".join(lines).decode("iso-8859-1")
            )
        fields.append((name, value.lstrip(" \t").rstrip("\r\n")))
    message = _Headers()
    message._headers = fields  # type: ignore[attr-defined]  # what the email parser fills
    message.first = {}
    for name, value in fields:
        message.first.setdefault(name.lower(), value)
    return message


class _Headers(http.client.HTTPMessage):
    """An ``HTTPMessage`` whose ``get`` is one dict lookup. The email package's ``get``
    returns the first field of that name after its compat32 policy's sanitizing, which
    changes nothing in text decoded from Latin-1 (no surrogates), so the answers are equal."""

    first: dict[str, str]

    def get(self, name: str, failobj: Any = None) -> Any:
        return self.first.get(name.lower(), failobj)

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers)  # type: ignore[attr-defined]


class _Response(http.client.HTTPResponse):
    """``HTTPResponse`` with a cheaper header parse, reading from its connection's one
    buffered reader (not a new one per answer). :meth:`begin` is the standard library's
    (Python 3.11-3.13) with :func:`parse_header_lines` in place of ``parse_headers``; reading
    the body (Content-Length, chunked, until close) is inherited unchanged."""

    def _close_conn(self) -> None:
        self.fp = None  # type: ignore[assignment]  # the connection owns the reader

    def begin(self) -> None:
        if self.headers is not None:
            return  # already started
        while True:  # skip any 100 Continue
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_header_lines(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_header_lines(_read_header_lines(self.fp))
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:  # nonsensical: ignore it, as the standard library does
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no length, not chunked: the body ends when it closes


# Characters that URL quoting leaves as they are (every Kubernetes name and query value the
# engines send): such strings skip urllib's quoting, a tenth of a request's CPU otherwise.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def quote_segment(text: str) -> str:
    """``urllib.parse.quote(text, safe="")``: one path segment."""
    return text if _UNRESERVED(text) else quote(text, safe="")


def encode_query(query: list[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode(query)``; the engines send a handful of distinct queries."""
    return _encode_query(tuple(query))


@functools.lru_cache(maxsize=256)
def _encode_query(query: tuple[tuple[str, str], ...]) -> str:
    return urlencode(query)


# What http.client refuses in a request target (control characters and spaces).
_URL_FORBIDDEN = re.compile("[\x00-\x20\x7f]")
# Methods that carry a body: http.client sends "Content-Length: 0" when they have none.
_BODY_METHODS = frozenset({"PATCH", "POST", "PUT"})

# Exceptions meaning "the kept-alive connection was closed under us": reconnect once.
_STALE = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    http.client.ResponseNotReady,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


class _Link:
    """One kept-alive connection: ``http.client`` connects it (TCP, TLS) and closes it; one
    buffered reader takes every answer from it."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.reader: Any = None

    def open(self) -> socket.socket:
        """The connected socket, connecting first when needed."""
        if self.reader is None:
            self.conn.connect()
            assert self.conn.sock is not None
            self.reader = self.conn.sock.makefile("rb")
        sock: socket.socket = self.conn.sock
        return sock

    def makefile(self, mode: str) -> Any:
        """What ``HTTPResponse`` reads an answer from."""
        return self.reader

    def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.close()
        self.conn.close()


class Transport:
    """Thread-safe: each thread gets its own connection."""

    def __init__(self, configuration: k8s_client.Configuration, *, timeout: float = 60) -> None:
        self._config = configuration
        url = urlsplit(str(configuration.host))
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._base = url.path.rstrip("/")
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if self._https:
            ctx = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
            if not configuration.verify_ssl:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif configuration.assert_hostname is False:
                ctx.check_hostname = False
            if configuration.cert_file:
                ctx.load_cert_chain(configuration.cert_file, configuration.key_file or None)
            self._context = ctx
        # the Host header exactly as http.client writes it
        try:
            netloc = self._host.encode("ascii").decode()
        except UnicodeEncodeError:
            netloc = self._host.encode("idna").decode()
        if ":" in netloc:
            netloc = f"[{netloc}]"  # an IPv6 address
        if self._port != (443 if self._https else 80):
            netloc = f"{netloc}:{self._port}"
        self._host_line = f"Host: {netloc}"
        self._local = threading.local()
        self._all: list[_Link] = []
        self._all_lock = threading.Lock()

    @staticmethod
    def usable(configuration: k8s_client.Configuration) -> bool:
        """Whether this transport honours everything the configuration asks for."""
        url = urlsplit(str(configuration.host))
        return (
            url.scheme in ("http", "https")
            and not configuration.proxy
            and not getattr(configuration, "tls_server_name", None)
            and not getattr(configuration, "ca_cert_data", None)
            and not configuration.username
            and not configuration.password
        )

    def _connection(self) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is None:
            if self._https:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            link = _Link(conn)
            self._local.link = link
            with self._all_lock:
                self._all.append(link)
        return link

    def _drop(self) -> None:
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None:
            link.close()
            with self._all_lock:
                if link in self._all:
                    self._all.remove(link)
        self._local.link = None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None,
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, str, bytes, dict[str, str]]:
        """(status, reason, body, headers) of one request; raises OSError/HTTPException when
        no answer came even after one reconnect."""
        target = self._base + path + ("?" + encode_query(query) if query else "")
        if _URL_FORBIDDEN.search(target):  # as http.client refuses it: no request smuggling
            raise http.client.InvalidURL(f"URL can't contain control characters: {target!r}")
        token = self._config.get_api_key_with_prefix("BearerToken")
        lines = [f"{method} {target} HTTP/1.1", self._host_line, "Accept-Encoding: identity"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if token:
            lines.append(f"Authorization: {token}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in _BODY_METHODS:
            lines.append("Content-Length: 0")
        variable = "".join(headers.values()) + (token or "")
        if "\r" in variable or "\n" in variable:  # as http.client refuses them: no injection
            raise ValueError("Invalid header value: it contains a line break")
        # head and body in one write: one TLS record, and no Nagle wait between the two
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        for attempt in (0, 1):
            link = self._connection()
            reused = link.reader is not None
            try:
                sock = link.open()
                sock.sendall(message)
                response = _Response(link, method=method)  # type: ignore[arg-type]
                response.begin()
                data = response.read()
            except _STALE:
                self._drop()
                if attempt or not reused:
                    raise
                continue
            except BaseException:
                self._drop()  # never reuse a connection left in an unknown state
                raise
            if response.will_close:
                self._drop()
            return response.status, response.reason, data, dict(response.getheaders())
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every thread's connection (call when no request is in flight)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for link in conns:
            link.close()


def encode(body: Any) -> bytes | None:
    """The JSON body of a request (JSON is valid YAML, so apply patches too).

    orjson when it is installed (a fifth of the CPU of ``json``); whenever its output could
    differ in meaning from ``json.dumps`` (it writes NaN and infinities as ``null``, refuses
    non-string keys, dates and integers beyond 64 bits), the body goes through ``json``."""
    if body is None:
        return None
    if orjson is not None:
        try:
            data: bytes = orjson.dumps(body, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:  # orjson.JSONEncodeError
            pass
        else:
            if b"null" not in data:
                return data
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    """A JSON answer: orjson when installed, ``json`` for what orjson refuses (NaN literals,
    escaped lone surrogates), so the result is what ``json.loads`` gives; but for integers
    beyond 64 bits, which come back as floats, and which an API server never sends (it
    decodes such numbers as float64 before storing them)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except ValueError:  # orjson.JSONDecodeError
            pass
    return json.loads(data)


# -- many requests from one thread ----------------------------------------------------------

# The adaptive window of requests in flight (CurlBatch._observe): where it starts, and the
# estimated number of queued requests below which it grows and above which it shrinks.
START_WINDOW = 4
QUEUE_LOW = 1.0
QUEUE_HIGH = 3.0


class CurlFailure(OSError):
    """A request that got no HTTP answer (refused, reset, TLS refused, timed out), as libcurl
    reported it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.strerror} (curl error {self.code})"


class Job:
    """One request of a batch. The caller builds it; :class:`CurlBatch` sends it and fills in
    nothing but the connection it ran on."""

    __slots__ = (
        "attempts",
        "body",
        "headers",
        "index",
        "method",
        "refreshed",
        "sent",
        "url",
        "want",
    )

    def __init__(
        self,
        index: int,
        method: str,
        url: str,
        body: bytes | None,
        headers: list[str],
        *,
        want: bool = True,
    ) -> None:
        self.index = index
        self.method = method
        self.url = url
        self.body = body
        self.headers = headers
        self.want = want  # whether the caller reads the answer's body
        self.attempts = 0
        self.refreshed = False
        self.sent = 0.0  # when it was last handed to libcurl (time.monotonic)


Answer = tuple[int, bytes, float | None]
"""(status, body, Retry-After seconds when the server sent one on a 429/5xx)."""
Outcome = Answer | CurlFailure | http.client.InvalidURL


class CurlBatch:
    """Many requests to one API server from the calling thread, over up to ``connections``
    kept-alive connections driven by libcurl's multi interface (pycurl).

    Why: with one blocking connection per worker thread, each answer is a GIL hand-off
    between threads and a Python-level HTTP parse; here libcurl parses, encrypts and multiplexes
    in C, and the only Python work per request is a few ``setopt`` calls. Connecting honours
    the same Configuration fields as :class:`Transport` (CA bundle or the system's, client
    certificate, ``verify_ssl``, ``assert_hostname``); environment proxies are ignored, as the
    official client ignores them. Not thread-safe: one thread drives a batch at a time.

    :meth:`stream` sends jobs as connections free up and yields each answer as it arrives;
    :meth:`later` puts a job back (a retry) while the stream runs."""

    def __init__(
        self, configuration: k8s_client.Configuration, *, connections: int, timeout: float = 60
    ) -> None:
        self._config = configuration
        self._connections = max(1, connections)
        self._timeout = timeout
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self._connections)
        self._multi.setopt(pycurl.M_MAXCONNECTS, self._connections)
        self._handles: list[Any] = []
        self._idle: list[Any] = []
        self._retries: list[tuple[float, int, Job]] = []
        self._order = 0
        # How many requests to keep in flight: see _observe.
        self.window = min(self._connections, START_WINDOW)
        self._base = math.inf
        self._round_min = math.inf
        self._round_left = self.window
        self._slow_start = True

    @staticmethod
    def usable(configuration: k8s_client.Configuration) -> bool:
        """Whether pycurl is installed and this path honours the configuration (the same
        cases as :meth:`Transport.usable`)."""
        return pycurl is not None and Transport.usable(configuration)

    def _new_handle(self) -> Any:
        config = self._config
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.PROXY, "")  # never an environment proxy: the kubeconfig decides
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        handle.setopt(pycurl.PATH_AS_IS, 1)  # the path exactly as quoted, as http.client sends it
        handle.setopt(pycurl.TIMEOUT_MS, int(self._timeout * 1000))
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(self._timeout * 1000))
        if str(config.host).startswith("https"):
            if config.ssl_ca_cert:
                handle.setopt(pycurl.CAINFO, config.ssl_ca_cert)
            else:  # what ssl.create_default_context() trusts
                paths = ssl.get_default_verify_paths()
                if paths.cafile:
                    handle.setopt(pycurl.CAINFO, paths.cafile)
                if paths.capath:
                    handle.setopt(pycurl.CAPATH, paths.capath)
            if not config.verify_ssl:
                handle.setopt(pycurl.SSL_VERIFYPEER, 0)
                handle.setopt(pycurl.SSL_VERIFYHOST, 0)
            elif config.assert_hostname is False:
                handle.setopt(pycurl.SSL_VERIFYHOST, 0)
            if config.cert_file:
                handle.setopt(pycurl.SSLCERT, config.cert_file)
                if config.key_file:
                    handle.setopt(pycurl.SSLKEY, config.key_file)
        handle.chunks = []
        handle.setopt(pycurl.WRITEFUNCTION, handle.chunks.append)
        handle.job = None
        handle.headers = None
        handle.method = None
        self._handles.append(handle)
        return handle

    def later(self, job: Job, delay: float) -> None:
        """Send ``job`` again after ``delay`` seconds (during :meth:`stream`)."""
        self._order += 1
        heapq.heappush(self._retries, (time.monotonic() + delay, self._order, job))

    def _observe(self, rtt: float) -> None:
        """Adapt the window to the server, as TCP Vegas adapts its congestion window.

        Each answer's round-trip time is compared with the fastest seen: when a round of
        ``window`` answers came back no slower than that, the server had spare capacity (its
        time goes into latency, not work), so one more request in flight buys throughput;
        when the round trips grew, requests only queued behind each other at the server (or
        in our own loop) and more would just cost connections (a TLS handshake is worth
        ~15-25 requests of CPU). ``queued`` estimates how many requests waited."""
        if rtt < self._base:
            self._base = rtt
        if rtt < self._round_min:
            self._round_min = rtt
        self._round_left -= 1
        if self._round_left > 0:
            return
        queued = self.window * (1 - self._base / self._round_min)
        if queued < QUEUE_LOW:
            grown = self.window * 2 if self._slow_start else self.window + 1
            self.window = min(self._connections, grown)
        else:
            self._slow_start = False
            if queued > QUEUE_HIGH:
                self.window = max(START_WINDOW if self._connections > 1 else 1, self.window - 1)
        self._round_min = math.inf
        self._round_left = self.window

    def _start(self, handle: Any, job: Job) -> http.client.InvalidURL | None:
        if _URL_FORBIDDEN.search(job.url):  # as http.client refuses it: no request smuggling
            return http.client.InvalidURL(f"URL can't contain control characters: {job.url!r}")
        handle.job = job
        job.sent = time.monotonic()
        handle.setopt(pycurl.URL, job.url)
        if handle.method != job.method:
            handle.setopt(pycurl.CUSTOMREQUEST, job.method)
            handle.method = job.method
        if job.body is not None:
            handle.setopt(pycurl.POSTFIELDS, job.body)
        elif job.method in _BODY_METHODS:
            handle.setopt(pycurl.POSTFIELDS, b"")
        else:
            handle.setopt(pycurl.HTTPGET, 1)
        if handle.headers is not job.headers:
            handle.setopt(pycurl.HTTPHEADER, job.headers)
            handle.headers = job.headers
        self._multi.add_handle(handle)
        return None

    def stream(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Send every job (and every job put back with :meth:`later`), at most
        ``connections`` at a time; yield each one's answer, or the failure that left it
        without one, in the order they finish."""
        source = iter(jobs)
        exhausted = False
        active = 0
        multi = self._multi
        finished: list[tuple[Job, Outcome]] = []
        try:
            while True:
                # Fill every free connection before handing answers out, so the server works
                # on the next requests while the caller looks at the last answers.
                while active < self.window:
                    job: Job | None = None
                    if self._retries and self._retries[0][0] <= time.monotonic():
                        job = heapq.heappop(self._retries)[2]
                    elif not exhausted:
                        job = next(source, None)
                        exhausted = job is None
                    if job is None:
                        break
                    handle = self._idle.pop() if self._idle else self._new_handle()
                    refused = self._start(handle, job)
                    if refused is not None:
                        self._idle.append(handle)
                        finished.append((job, refused))
                    else:
                        active += 1
                if finished:
                    if active:  # send the new requests before the caller takes its time
                        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                            pass
                    yield from finished
                    finished.clear()
                    continue
                if not active:
                    if self._retries:
                        time.sleep(max(0.0, self._retries[0][0] - time.monotonic()))
                        continue
                    if exhausted:
                        return
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                while True:
                    queued, ok, failed = multi.info_read()
                    now = time.monotonic()
                    for handle in ok:
                        job = handle.job
                        if not handle.getinfo(pycurl.NUM_CONNECTS):  # a handshake is no RTT
                            self._observe(now - job.sent)
                        finished.append((job, self._answer(handle)))
                        self._release(handle)
                    for handle, code, message in failed:
                        finished.append((handle.job, CurlFailure(code, message)))
                        handle.chunks.clear()
                        self._release(handle)
                    active -= len(ok) + len(failed)
                    if not queued:
                        break
                if finished:
                    continue  # refill first, then hand them out (above)
                wait = 1.0
                if self._retries:
                    wait = min(wait, max(0.0, self._retries[0][0] - time.monotonic()))
                multi.select(wait)
        finally:
            if active:  # abandoned mid-way: drop what is in flight, keep the handles
                for handle in self._handles:
                    if handle.job is not None:
                        multi.remove_handle(handle)
                        handle.job = None
                        handle.chunks.clear()
                        self._idle.append(handle)
            self._retries.clear()

    def _release(self, handle: Any) -> None:
        self._multi.remove_handle(handle)
        handle.job = None
        self._idle.append(handle)

    @staticmethod
    def _answer(handle: Any) -> Answer:
        status: int = handle.getinfo(pycurl.RESPONSE_CODE)
        chunks: list[bytes] = handle.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        retry_after: float | None = None
        if status == 429 or status >= 500:
            seconds = handle.getinfo(pycurl.RETRY_AFTER)
            retry_after = float(seconds) if seconds > 0 else None
        return status, data, retry_after

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()
        self._idle.clear()
        self._multi.close()
