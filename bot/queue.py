"""The durable job queue as the web process sees it: once per delivery, persisted before the 2xx.

One Lua script, run atomically by Redis, does the whole intake: if the delivery id was seen it
returns the original job id (a redelivery queues nothing); otherwise it remembers the delivery,
writes a small job record and pushes a Celery message onto the job's queue, all or nothing.
There is no window in which a delivery is remembered but its job is lost, or the other way round,
and a webhook costs one Redis round trip.

The message is built with Celery's own protocol-2 encoder (``AMQP.as_task_v2``) and pushed
straight onto the Redis list kombu's Redis transport consumes, so the workers are plain Celery.
Pushing to the list directly (rather than through a kombu exchange) also avoids the Redis
transport's binding lookup, which silently drops messages published before any worker declared
its queues.

Every Redis call has a bounded timeout and no retries: when Redis is down or hung the caller
gets :class:`QueueUnavailable` within ``GITOPS_REDIS_TIMEOUT`` and answers 503, so the forge
marks the delivery failed and it can be redelivered.

Intake is the web process's hot path, so it is kept lean (``bench/webhooks.py`` prints its CPU
per request): the queue keeps its own idle list of redis-py ``Connection`` objects (made by the
client's pool, so URL, auth, TLS and timeouts are the pool's) instead of going through the
client's per-call pool checkout with its instrumentation, retry wrapper and response
callbacks; commands are packed by hiredis when installed; and Celery's envelope is built once
per task from ``as_task_v2`` and then only filled in per job.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

try:
    import orjson
except ImportError:  # optional: json gives the same messages, slower
    orjson = None  # type: ignore[assignment]

from bot.errors import QueueUnavailable
from bot.events import Event

TASK_NAMES: Final[dict[str, str]] = {
    "preview": "gitops.preview",
    "command": "gitops.command",
    "deploy": "gitops.deploy",
}
"""Celery task name of each job type."""

QUEUE_OF: Final[dict[str, str]] = {
    "preview": "previews",
    "command": "previews",
    "deploy": "deploys",
}
"""Queue of each job type: deploys have their own, so they never wait behind previews."""

QUEUES: Final[tuple[str, ...]] = ("deploys", "previews")

DELIVERY_KEY: Final = "gitops:delivery:{provider}:{delivery_id}"
JOB_KEY: Final = "gitops:job:{job_id}"
JOBS_PROCESSED_KEY: Final = "gitops:metrics:jobs_processed"
"""Hash of "<job type>|<outcome>" → count, written by workers and read by /metrics."""

_ENQUEUE_LUA: Final = """
local existing = redis.call('GET', KEYS[1])
if existing then
  return {0, existing}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[3], 'type', ARGV[4], 'delivery', ARGV[5], 'repository', ARGV[6],
           'state', 'queued', 'queued_at', ARGV[7])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
redis.call('LPUSH', KEYS[2], ARGV[3])
return {1, ARGV[1]}
"""


class _JobIds:
    """Random (version 4) UUIDs from ``os.urandom``, fetched for many ids at a time.

    ``uuid.uuid4()`` makes a ``getrandom`` system call per id, which releases the interpreter
    lock; under gunicorn's threads another thread takes it and the caller waits to get it
    back. Drawing the kernel's randomness for 64 ids at once (and using the job id as the
    message's delivery tag, one id per delivery instead of two) saved 30-60 µs of worker CPU
    per delivery in ``bench/webhooks.py`` runs. The ids stay as unpredictable as ``uuid4``'s."""

    BATCH = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._next = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A forked child must not hand out ids its parent (or a sibling) will also hand out,
        # and must not inherit a lock another thread held at the fork.
        self._lock = threading.Lock()
        self._pool = b""
        self._next = 0

    def new(self) -> str:
        with self._lock:
            if self._next >= len(self._pool):
                self._pool, self._next = os.urandom(16 * self.BATCH), 0
            start = self._next
            self._next += 16
        return str(uuid.UUID(bytes=self._pool[start : start + 16], version=4))


new_job_id = _JobIds().new
"""A new job's id: a random version-4 UUID."""


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`JobQueue.enqueue` did: queued a new job, or found the delivery's old one."""

    job_id: str
    job_type: str
    duplicate: bool


def _dumps(value: Any) -> str:
    """JSON text: orjson when installed, ``json`` for what orjson refuses (lone surrogates,
    integers beyond 64 bits), so every message stays what ``json.dumps`` would mean."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(value)


def redis_client(url: str, *, timeout: float) -> redis.Redis:
    """A Redis client whose every call ends within ``timeout`` seconds (connect + answer) and
    never retries: the caller decides what an outage means."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def kombu_url(redis_url: str) -> str:
    """The same Redis for kombu/Celery, which spells unix sockets ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


class JobQueue:
    """Turns events into queued Celery jobs, once per delivery. Thread-safe."""

    def __init__(self, client: redis.Redis, *, delivery_ttl: int) -> None:
        self._redis = client
        self._delivery_ttl = delivery_ttl
        self._script = client.register_script(_ENQUEUE_LUA)
        self._script_sha = self._script.sha
        # A broker-less Celery app, used only for its message encoder: no connection is made.
        self._encoder = Celery("gitops-bot-web", set_as_current=False)
        self._templates: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any], Any]] = {}
        # Idle connections, most recently used last: as many as enqueues ever ran at once
        # (one per web thread at most), each used by one enqueue at a time.
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._pid = os.getpid()

    def enqueue(self, event: Event, *, provider: str) -> Enqueued:
        """Persist the job for ``event`` unless its delivery was seen; raises QueueUnavailable."""
        job_type = event.job_type
        job_id = new_job_id()
        queue = QUEUE_OF[job_type]
        message = self.celery_message(
            task_name=TASK_NAMES[job_type],
            task_id=job_id,
            args=(event.to_task(),),
            queue=queue,
            summary=f"{type(event).__name__}({event.repository.full_name}, "
            f"delivery {event.delivery_id})",
        )
        try:
            created, found_id = self._evalsha(
                DELIVERY_KEY.format(provider=provider, delivery_id=event.delivery_id),
                queue,
                JOB_KEY.format(job_id=job_id),
                job_id,
                self._delivery_ttl,
                message,
                job_type,
                event.delivery_id,
                event.repository.full_name,
                f"{time.time():.3f}",
            )
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from exc
        found = found_id.decode() if isinstance(found_id, bytes) else str(found_id)
        return Enqueued(job_id=found, job_type=job_type, duplicate=not bool(created))

    def _evalsha(self, *keys_then_args: Any) -> Any:
        """The intake script (3 keys, then its arguments) on a connection of the queue's own,
        loading the script first when Redis does not have it (after a restart or a flush)."""
        command = ("EVALSHA", self._script_sha, 3, *keys_then_args)
        conn, reused = self._checkout()
        try:
            try:
                return self._run_script(conn, command)
            except redis.ConnectionError:
                if not reused:
                    raise
                # An idle connection Redis closed meanwhile (a restart, a failover, its idle
                # timeout, a proxy's): once more on a fresh socket. Safe even if the first
                # call ran: the delivery key makes the second answer "duplicate", same job id.
                return self._run_script(conn, command)
        finally:
            self._checkin(conn)

    def _run_script(self, conn: Any, command: tuple[Any, ...]) -> Any:
        try:
            return self._call(conn, command)
        except NoScriptError:
            self._call(conn, ("SCRIPT", "LOAD", _ENQUEUE_LUA))
            return self._call(conn, command)

    @staticmethod
    def _call(conn: Any, command: tuple[Any, ...]) -> Any:
        try:
            conn.send_packed_command(conn.pack_command(*command), check_health=False)
            return conn.read_response()
        except redis.ResponseError:
            raise  # Redis answered: the connection is in a known state
        except BaseException:
            # a timeout or a dropped connection leaves the protocol mid-answer: start afresh
            conn.disconnect()
            raise

    def _checkout(self) -> tuple[Any, bool]:  # a redis-py Connection (untyped), reused?
        """An idle connection (True), or a new one. Connections made before a fork are left
        to the parent (gunicorn forks workers; a shared socket would interleave answers)."""
        with self._idle_lock:
            if self._pid != os.getpid():
                self._idle.clear()  # redis-py never shuts down a socket of another process
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._redis.connection_pool.make_connection(), False

    def _checkin(self, conn: Any) -> None:
        with self._idle_lock:
            if self._pid == os.getpid():
                self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections (call when no enqueue is running)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()

    def celery_message(
        self, *, task_name: str, task_id: str, args: tuple[Any, ...], queue: str, summary: str
    ) -> str:
        """The JSON envelope kombu's Redis transport stores in a queue list, for one task.

        The headers and properties come from Celery's own protocol-2 encoder
        (``AMQP.as_task_v2``), run once per task and queue; each job fills in its ids, its
        summary and its body. ``summary`` is what Celery shows as the task's arguments in logs
        and monitoring; giving it spares Celery's generic repr of the event."""
        template = self._templates.get((task_name, queue))
        if template is None:
            template = self._templates[(task_name, queue)] = self._template(task_name, queue)
        base_headers, base_properties, embed = template
        headers = dict(base_headers, id=task_id, root_id=task_id, argsrepr=summary)
        # One message per job, so the job id is a unique delivery tag (kombu acks by it).
        properties = dict(base_properties, correlation_id=task_id, delivery_tag=task_id)
        body = _dumps([args, {}, embed])
        return _dumps(
            {
                "body": base64.b64encode(body.encode()).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": properties,
            }
        )

    def _template(self, task_name: str, queue: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
        headers, properties, body, _ = self._encoder.amqp.as_task_v2(
            "template", task_name, args=(), kwargs={}, ignore_result=True, kwargsrepr="{}"
        )
        properties.update(
            body_encoding="base64",
            delivery_mode=2,
            priority=0,
            delivery_info={"exchange": "", "routing_key": queue},
        )
        _args, _kwargs, embed = body
        return headers, properties, embed

    def ping(self) -> None:
        """Raises QueueUnavailable unless Redis answers within the timeout."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from exc

    def depths(self) -> dict[str, int]:
        """Messages waiting per queue (not counting those a worker holds)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(queue)
            return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc

    def jobs_processed(self) -> dict[tuple[str, str], int]:
        """Counts workers recorded, by (job type, outcome)."""
        try:
            raw = self._redis.hgetall(JOBS_PROCESSED_KEY)
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc
        counts: dict[tuple[str, str], int] = {}
        for key, value in raw.items():
            text = key.decode() if isinstance(key, bytes) else str(key)
            job_type, _, outcome = text.partition("|")
            counts[(job_type, outcome)] = int(value)
        return counts
