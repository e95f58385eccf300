"""The durable queue against a real Redis: once per delivery, Celery-compatible, bounded waits."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish

from bot.errors import QueueUnavailable
from bot.events import PullRequestEvent, PushEvent, Repository, from_task
from bot.queue import (
    JOB_KEY,
    JobQueue,
    forget_worker,
    kombu_url,
    record_heartbeat,
    redis_client,
)

REPO = Repository(
    provider="github",
    full_name="acme/deploys",
    id=42,
    default_branch="main",
    clone_url="https://github.example/acme/deploys.git",
    web_url="https://github.example/acme/deploys",
    api_url="https://github.example/api/v3",
)


def pr_event(delivery: str = "d-1") -> PullRequestEvent:
    return PullRequestEvent(
        delivery_id=delivery,
        repository=REPO,
        number=7,
        head_sha="a" * 40,
        base_sha="b" * 40,
        base_ref="main",
        head_ref="feature",
        action="synchronize",
        author="alice",
    )


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_queue(url: str, timeout: float = 2.0) -> JobQueue:
    return JobQueue(redis_client(url, timeout=timeout), delivery_ttl=3600)


def test_enqueue_persists_a_celery_message(redis_url: str) -> None:
    queued = make_queue(redis_url).enqueue(pr_event(), provider="github")
    assert not queued.duplicate and queued.job_type == "preview"
    client = redis.Redis.from_url(redis_url)
    raw = client.lrange("previews", 0, -1)
    assert len(raw) == 1 and client.llen("deploys") == 0
    envelope = json.loads(raw[0])
    assert envelope["headers"]["task"] == "gitops.preview"
    assert envelope["headers"]["id"] == queued.job_id
    assert envelope["properties"]["delivery_info"]["routing_key"] == "previews"
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert from_task(args[0]) == pr_event()
    record = client.hgetall(JOB_KEY.format(job_id=queued.job_id))
    assert record[b"state"] == b"queued" and record[b"delivery"] == b"d-1"


def test_redelivery_queues_nothing_and_returns_the_original_job(redis_url: str) -> None:
    queue = make_queue(redis_url)
    first = queue.enqueue(pr_event("same"), provider="github")
    again = queue.enqueue(pr_event("same"), provider="github")
    assert again.duplicate and again.job_id == first.job_id
    assert redis.Redis.from_url(redis_url).llen("previews") == 1
    # The same id from the other forge is another delivery.
    assert not queue.enqueue(pr_event("same"), provider="gitlab").duplicate


def test_concurrent_redeliveries_queue_exactly_once(redis_url: str) -> None:
    queue = make_queue(redis_url)
    results = []

    def deliver() -> None:
        results.append(queue.enqueue(pr_event("race"), provider="github"))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.job_id for r in results}) == 1
    assert redis.Redis.from_url(redis_url).llen("previews") == 1


def test_deploys_have_their_own_queue(redis_url: str) -> None:
    push = PushEvent(
        delivery_id="p-1",
        repository=REPO,
        ref="refs/heads/main",
        after_sha="c" * 40,
        before_sha="d" * 40,
        pusher="bob",
    )
    make_queue(redis_url).enqueue(push, provider="github")
    client = redis.Redis.from_url(redis_url)
    assert client.llen("deploys") == 1 and client.llen("previews") == 0


def test_unreachable_redis_fails_fast() -> None:
    queue = make_queue(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5)
    with pytest.raises(QueueUnavailable):
        queue.enqueue(pr_event(), provider="github")
    with pytest.raises(QueueUnavailable):
        queue.ping()


def test_hung_redis_fails_within_the_timeout() -> None:
    """A server that accepts connections but never answers (like a stopped Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        queue = make_queue(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            queue.enqueue(pr_event(), provider="github")
        # Generous bound: the point is "bounded", not a benchmark.
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_kombu_url_spells_unix_sockets_its_way() -> None:
    assert kombu_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
    assert kombu_url("redis://h:1/0") == "redis://h:1/0"


def test_a_flushed_script_is_loaded_again(redis_url: str) -> None:
    """After a Redis restart without persistence (or SCRIPT FLUSH) EVALSHA finds no script:
    the queue loads it and the delivery is still queued exactly once."""
    queue = make_queue(redis_url)
    queue.enqueue(pr_event("before-flush"), provider="github")
    redis.Redis.from_url(redis_url).script_flush()
    queued = queue.enqueue(pr_event("after-flush"), provider="github")
    assert not queued.duplicate
    assert queue.enqueue(pr_event("after-flush"), provider="github").job_id == queued.job_id


def test_concurrent_enqueues_are_all_queued(redis_url: str) -> None:
    queue = make_queue(redis_url)
    threads = [
        threading.Thread(
            target=queue.enqueue, args=(pr_event(f"c-{i}"),), kwargs={"provider": "github"}
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert redis.Redis.from_url(redis_url).llen("previews") == 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_gets_connections_of_its_own(redis_url: str) -> None:
    """gunicorn forks its workers after the app may have connected: parent and child must not
    share a socket (their answers would interleave); redis-py's pool starts afresh in the child."""
    queue = make_queue(redis_url)
    queue.enqueue(pr_event("f-parent-1"), provider="github")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            queue.enqueue(pr_event("f-child"), provider="github")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert not queue.enqueue(pr_event("f-parent-2"), provider="github").duplicate
    assert redis.Redis.from_url(redis_url).llen("previews") == 3


def test_an_idle_connection_closed_by_redis_is_replaced_unseen(redis_url: str) -> None:
    """Redis restarted, failed over, or closed idle clients (its `timeout`), or a proxy did:
    the next delivery is still queued (GitHub does not redeliver a 503 by itself)."""
    queue = make_queue(redis_url)
    queue.enqueue(pr_event("k-1"), provider="github")
    client = redis.Redis.from_url(redis_url)
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1  # the queue's connection
    assert not queue.enqueue(pr_event("k-2"), provider="github").duplicate
    assert client.llen("previews") == 2


def test_a_timeout_is_not_retried() -> None:
    """A server that accepts but never answers: one connection, QueueUnavailable after one
    timeout; no second attempt doubles the wait the forge sees."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        queue = make_queue(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            queue.enqueue(pr_event(), provider="github")
        assert time.monotonic() - started < 1.5  # one timeout, not two
        assert len(accepted) == 1
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_message_is_what_celery_publishes(redis_url: str) -> None:
    """The stored message is what kombu's Redis transport stores when Celery's own
    ``send_task`` publishes the same task, but for the per-message delivery tag, the sending
    process (origin) and what send_task adds for results."""
    celery = Celery("reference", broker=kombu_url(redis_url), set_as_current=False)
    queue = make_queue(redis_url)
    event = pr_event("same-as-celery")
    ours = queue.enqueue(event, provider="github")
    celery.send_task(
        "gitops.preview",
        args=(event.to_task(),),
        task_id=ours.job_id,
        queue="previews",
        ignore_result=True,
        argsrepr=f"PullRequestEvent({REPO.full_name}, delivery same-as-celery)",
        kwargsrepr="{}",
    )
    client = redis.Redis.from_url(redis_url)
    celerys, mine = (json.loads(raw) for raw in client.lrange("previews", 0, -1))
    for message in (celerys, mine):
        del message["properties"]["delivery_tag"], message["headers"]["origin"]
        # stamped by the bot's before_task_publish receiver, whoever publishes
        assert float(message["headers"].pop("gitops_queued_at")) > time.time() - 60
    # send_task also copies its argsrepr/kwargsrepr options into the properties, and names its
    # app as reply_to for results, which jobs do not have
    for name in ("argsrepr", "kwargsrepr", "reply_to"):
        celerys["properties"].pop(name)
    mine["properties"].pop("reply_to")
    assert mine == celerys


def test_publish_signals_fire_as_celery_fires_them(redis_url: str) -> None:
    """Tracing integrations add headers in before_task_publish: they travel with the message.
    after_task_publish fires for a job queued, not for a redelivery that queued nothing."""
    published: list[str] = []

    def add_header(headers: dict[str, Any], **_: Any) -> None:
        headers["x-trace"] = "trace-1"

    def record(headers: dict[str, Any], routing_key: str, **_: Any) -> None:
        published.append(f"{headers['id']}@{routing_key}")

    before_task_publish.connect(add_header)
    after_task_publish.connect(record)
    try:
        queue = make_queue(redis_url)
        first = queue.enqueue(pr_event("signals"), provider="github")
        queue.enqueue(pr_event("signals"), provider="github")
    finally:
        before_task_publish.disconnect(add_header)
        after_task_publish.disconnect(record)
    raw = redis.Redis.from_url(redis_url).lindex("previews", 0)
    assert raw is not None and json.loads(raw)["headers"]["x-trace"] == "trace-1"
    assert published == [f"{first.job_id}@previews"]


def test_job_ids_are_version_4_uuids(redis_url: str) -> None:
    queue = make_queue(redis_url)
    ids = {queue.enqueue(pr_event(f"u-{i}"), provider="github").job_id for i in range(20)}
    assert len(ids) == 20
    assert all(uuid.UUID(job_id).version == 4 for job_id in ids)


def test_workers_are_counted_by_current_heartbeat(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = make_queue(redis_url)
    assert queue.workers() == {"deploys": 0, "previews": 0}
    record_heartbeat(client, worker="a@host", queues=["previews"], ttl=60)
    record_heartbeat(client, worker="b@host", queues=["previews", "deploys"], ttl=0.3)
    assert queue.workers() == {"deploys": 1, "previews": 2}
    time.sleep(0.4)  # b's heartbeat expired: it died without saying so
    assert queue.workers() == {"deploys": 0, "previews": 1}
    forget_worker(client, worker="a@host", queues=["previews"])  # a warm shutdown
    assert queue.workers() == {"deploys": 0, "previews": 0}
