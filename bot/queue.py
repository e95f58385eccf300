"""The durable job queue as the web process sees it: once per delivery, persisted before the 2xx.

One Lua script, run atomically by Redis, does the whole intake: if the delivery id was seen it
returns the original job id (a redelivery queues nothing); otherwise it remembers the delivery,
writes a small job record and pushes a Celery message onto the job's queue, all or nothing; for
a preview it also records the pull request's head as its latest (:mod:`bot.state`), which every
preview compares with before it posts.
There is no window in which a delivery is remembered but its job is lost, or the other way round,
and a webhook costs one Redis round trip.

The message is Celery's own: built per job by ``create_task_message`` (what ``send_task`` uses),
with ``before_task_publish`` and ``after_task_publish`` sent around it as ``send_task`` sends
them, so tracing integrations that add headers there (OpenTelemetry's) see every job. It is
stored as kombu's Redis transport stores a message published to Celery's anonymous direct
exchange: pushed onto the list named after the queue, which the workers consume.

Every Redis call is bounded and never retried, so a delivery is answered within
``GITOPS_REDIS_TIMEOUT`` (to connect, then to answer) and well inside GitHub's 10 s: when Redis
is down or hung the caller gets :class:`QueueUnavailable` and answers 503, so the forge marks
the delivery failed and it can be redelivered. The one second attempt is redis-py's pool's own:
a pooled connection that Redis closed meanwhile (a restart, an idle timeout, a proxy) is found
closed when taken from the pool and connected afresh once, before the script is sent.

Workers announce themselves here too: each consumer writes a heartbeat (``record_heartbeat``) so
the web process can tell a queue that no worker consumes (``JobQueue.workers``, ``/readyz``).
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as json_dumps
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.errors import QueueUnavailable
from bot.events import Event, PullRequestEvent, PushEvent
from bot.state import REPOSITORIES_KEY, PullKey, RepoKey, repository_field

TASK_NAMES: Final[dict[str, str]] = {
    "preview": "gitops.preview",
    "command": "gitops.command",
    "deploy": "gitops.deploy",
    "deploy_app": "gitops.deploy_app",
    "deploy_resume": "gitops.deploy_resume",
    "drift": "gitops.drift",
    "drift_all": "gitops.drift_all",
    "catchup": "gitops.catchup",
}
"""Celery task name of each job type (``deploy_app`` and ``deploy_resume`` are queued by the
deploy job and ``gitops-bot resume``, ``drift_all`` and ``catchup`` by beat, ``drift`` (one
repository) by ``drift_all``; none by a webhook)."""

QUEUE_OF: Final[dict[str, str]] = {
    "preview": "previews",
    "command": "previews",
    "deploy": "deploys",
    "deploy_app": "deploys",
    "deploy_resume": "deploys",
    "drift": "deploys",
    "drift_all": "deploys",
    "catchup": "deploys",
}
"""Queue of each job type: deploys have their own, so they never wait behind previews."""

QUEUES: Final[tuple[str, ...]] = ("deploys", "previews")

DELIVERY_KEY: Final = "gitops:delivery:{provider}:{delivery_id}"
JOB_KEY: Final = "gitops:job:{job_id}"
JOBS_PROCESSED_KEY: Final = "gitops:metrics:jobs_processed"
"""Hash of "<job type>|<outcome>" → count, written by workers and read by /metrics."""
RESTARTS_KEY: Final = "gitops:metrics:restarts"
"""Hash of process name → restarts, written by the supervisors and read by /metrics."""
QUEUED_AT_HEADER: Final = "gitops_queued_at"
"""Message header: when the job was first queued (Unix seconds, the publisher's clock); a retry
keeps it. Workers measure queue waits from it (``gitops_job_queue_wait_seconds``)."""
WORKERS_KEY: Final = "gitops:workers:{queue}"
"""Sorted set per queue: worker name → time (Redis's clock) its last heartbeat expires."""

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
-- a repository the bot serves (bot.state; walked by the catch-up and the drift job)
redis.call('HSET', KEYS[4], ARGV[8], ARGV[9])
if KEYS[5] then
  -- a preview: this head is now the PR's latest (read before every post); a push: the
  -- newest head a deploy was queued for (read by the catch-up). bot.state has both keys.
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[5], 'sha', ARGV[10],
             'at', string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  if ARGV[11] == 'persist' then
    redis.call('PERSIST', KEYS[5])
  else
    redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
  end
end
return {1, ARGV[1]}
"""

# Heartbeats are timed by Redis's clock, so workers and web processes on machines whose clocks
# disagree still agree on which heartbeats are current.
_HEARTBEAT_LUA: Final = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t)
  redis.call('ZADD', key, t + tonumber(ARGV[2]), ARGV[1])
end
return 1
"""

_LIVE_WORKERS_LUA: Final = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCOUNT', key, '(' .. t, '+inf')
end
return counts
"""


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`JobQueue.enqueue` did: queued a new job, or found the delivery's old one."""

    job_id: str
    job_type: str
    duplicate: bool


@dataclass(frozen=True)
class QueueStats:
    """The figures ``/metrics`` reads from Redis at scrape time."""

    depths: dict[str, int]
    processed: dict[tuple[str, str], int]
    restarts: dict[str, int]
    workers: dict[str, int]


@before_task_publish.connect(weak=False)  # type: ignore[untyped-decorator]
def stamp_queued_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every job message, whoever publishes it (the intake, beat, a job queueing another, a
    retry), carries the time it was first queued."""
    if headers is not None:
        headers.setdefault(QUEUED_AT_HEADER, f"{time.time():.3f}")


def redis_client(url: str, *, timeout: float) -> redis.Redis:
    """A Redis client whose every call ends within ``timeout`` seconds to connect plus
    ``timeout`` to answer, and is never retried: the caller decides what an outage means."""
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


def redis_transport_message(message: Any, *, queue: str) -> str:
    """The JSON text kombu's Redis transport stores for a Celery ``task_message`` (headers,
    properties, body) published to the anonymous exchange with ``queue`` as routing key:
    what ``Producer.publish`` and the transport's ``basic_publish`` write."""
    serialized = serialize(message.body, serializer="json")  # type: ignore[no-untyped-call]
    content_type, content_encoding, body = serialized
    return str(
        json_dumps(  # type: ignore[no-untyped-call]
            {
                "body": base64.b64encode(body.encode(content_encoding)).decode("ascii"),
                "content-encoding": content_encoding,
                "content-type": content_type,
                "headers": message.headers,
                "properties": {
                    **message.properties,
                    "delivery_mode": 2,  # persistent
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_info": {"exchange": "", "routing_key": queue},
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class JobQueue:
    """Turns events into queued Celery jobs, once per delivery. Thread-safe."""

    def __init__(self, client: redis.Redis, *, delivery_ttl: int) -> None:
        self._redis = client
        self._delivery_ttl = delivery_ttl
        self._enqueue_script = client.register_script(_ENQUEUE_LUA)
        self._live_workers_script = client.register_script(_LIVE_WORKERS_LUA)
        # A broker-less Celery app, for its message factory only: it never connects.
        self._celery = Celery("gitops-bot-web", set_as_current=False)

    def enqueue(self, event: Event, *, provider: str) -> Enqueued:
        """Persist the job for ``event`` unless its delivery was seen; raises QueueUnavailable."""
        job_type = event.job_type
        job_id = str(uuid.uuid4())
        task_name = TASK_NAMES[job_type]
        queue = QUEUE_OF[job_type]
        message = self._celery.amqp.create_task_message(
            job_id,
            task_name,
            args=(event.to_task(),),
            kwargs={},
            ignore_result=True,
            # What Celery shows as the task's arguments in logs and monitoring.
            argsrepr=f"{type(event).__name__}({event.repository.full_name}, "
            f"delivery {event.delivery_id})",
            kwargsrepr="{}",
        )
        # As send_task sends it: receivers may add headers, which travel with the message.
        before_task_publish.send(
            sender=task_name,
            body=message.body,
            exchange="",
            routing_key=queue,
            declare=[self._celery.amqp.queues[queue]],
            headers=message.headers,
            properties=message.properties,
            retry_policy={"max_retries": 0},
        )
        keys = [
            DELIVERY_KEY.format(provider=provider, delivery_id=event.delivery_id),
            queue,
            JOB_KEY.format(job_id=job_id),
            REPOSITORIES_KEY,
        ]
        args: list[str | int] = [
            job_id,
            self._delivery_ttl,
            redis_transport_message(message, queue=queue),
            job_type,
            event.delivery_id,
            event.repository.full_name,
            f"{time.time():.3f}",
            repository_field(event.repository.provider, event.repository.full_name),
            json_dumps(  # type: ignore[no-untyped-call]
                {
                    "repository": event.to_task()["repository"],
                    "installation_id": getattr(event, "installation_id", None),
                }
            ),
        ]
        if isinstance(event, PullRequestEvent):
            # The PR's latest head, in the same script: a preview of an older head, queued or
            # running, finds it before it posts (bot.state, bot.jobs.preview).
            pull = PullKey(event.repository.provider, event.repository.full_name, event.number)
            keys.append(pull.head_key)
            args.extend([event.head_sha, "expire"])
        elif isinstance(event, PushEvent):
            # The newest head a deploy was queued for: the catch-up queues one only for a head
            # no delivery brought (bot.jobs.catchup).
            keys.append(RepoKey(event.repository.provider, event.repository.full_name).pushed_key)
            args.extend([event.after_sha, "persist"])
        try:
            created, found_id = self._enqueue_script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from exc
        if created:
            after_task_publish.send(
                sender=task_name,
                body=message.body,
                headers=message.headers,
                exchange="",
                routing_key=queue,
            )
        return Enqueued(job_id=_text(found_id), job_type=job_type, duplicate=not created)

    @property
    def client(self) -> redis.Redis:
        """The Redis client (for the figures ``/metrics`` reads beside the queue's)."""
        return self._redis

    def ping(self) -> None:
        """Raises QueueUnavailable unless Redis answers within the timeout."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from exc

    def workers(self) -> dict[str, int]:
        """Workers consuming each queue (a current heartbeat); raises QueueUnavailable."""
        try:
            counts = self._live_workers_script(keys=[WORKERS_KEY.format(queue=q) for q in QUEUES])
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from exc
        return dict(zip(QUEUES, (int(n) for n in counts), strict=True))

    def stats(self) -> QueueStats:
        """Queue depths (messages not yet taken by a worker), jobs processed, restarts and
        workers, in one round trip; raises QueueUnavailable."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(queue)
            pipe.hgetall(JOBS_PROCESSED_KEY)
            pipe.hgetall(RESTARTS_KEY)
            *depths, processed, restarts = pipe.execute()
            workers = self.workers()
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc
        counts: dict[tuple[str, str], int] = {}
        for key, value in processed.items():
            job_type, _, outcome = _text(key).partition("|")
            counts[(job_type, outcome)] = int(value)
        return QueueStats(
            depths=dict(zip(QUEUES, (int(n) for n in depths), strict=True)),
            processed=counts,
            restarts={_text(name): int(value) for name, value in restarts.items()},
            workers=workers,
        )


def record_heartbeat(client: redis.Redis, *, worker: str, queues: list[str], ttl: float) -> None:
    """Mark ``worker`` as consuming ``queues`` for the next ``ttl`` seconds."""
    keys = [WORKERS_KEY.format(queue=queue) for queue in queues]
    client.eval(_HEARTBEAT_LUA, len(keys), *keys, worker, ttl)


def forget_worker(client: redis.Redis, *, worker: str, queues: list[str]) -> None:
    """``worker`` stopped consuming ``queues`` (a warm shutdown)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(WORKERS_KEY.format(queue=queue), worker)
    pipe.execute()


def count_restart(client: redis.Redis, process: str) -> None:
    """Count one restart of ``process`` (shown by /metrics as gitops_process_restarts_total)."""
    client.hincrby(RESTARTS_KEY, process, 1)
