"""The durable queue against a real Redis: once per delivery, Celery-compatible, bounded waits."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid

import pytest
import redis

from bot.errors import QueueUnavailable
from bot.events import PullRequestEvent, PushEvent, Repository, from_task
from bot.queue import JOB_KEY, JobQueue, kombu_url, new_job_id, redis_client

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


def test_concurrent_enqueues_use_separate_connections_and_reuse_them(redis_url: str) -> None:
    queue = make_queue(redis_url)
    first, _ = queue._checkout()
    second, _ = queue._checkout()  # taken while the first is in use: another connection
    assert second is not first
    queue._checkin(second)
    queue._checkin(first)
    assert queue._checkout() == (first, True)  # most recently used first
    queue._checkin(first)
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
    assert 1 <= len(queue._idle) <= 8


def test_connections_made_before_a_fork_stay_with_the_parent(redis_url: str) -> None:
    queue = make_queue(redis_url)
    queue.enqueue(pr_event("f-1"), provider="github")
    parent_conn = queue._idle[-1]
    queue._pid = -1  # as a gunicorn worker sees it just after the fork
    conn, reused = queue._checkout()
    assert conn is not parent_conn and not reused
    assert not queue.enqueue(pr_event("f-2"), provider="github").duplicate


def test_an_idle_connection_closed_by_redis_is_replaced_unseen(redis_url: str) -> None:
    """Redis restarted, failed over, or closed idle clients (its `timeout`), or a proxy did:
    the next delivery is still queued (GitHub does not redeliver a 503 by itself)."""
    queue = make_queue(redis_url)
    queue.enqueue(pr_event("k-1"), provider="github")
    client = redis.Redis.from_url(redis_url)
    before = client.llen("previews")
    queue_conn_id = queue._call(queue._idle[-1], ("CLIENT", "ID"))
    assert client.client_kill_filter(_id=queue_conn_id) == 1
    assert not queue.enqueue(pr_event("k-2"), provider="github").duplicate
    assert client.llen("previews") == before + 1


def test_a_new_connection_that_fails_is_not_retried() -> None:
    """Nothing listening: one attempt, QueueUnavailable (503), no second wait."""
    queue = make_queue(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5)
    with pytest.raises(QueueUnavailable):
        queue.enqueue(pr_event(), provider="github")
    assert queue._idle and queue._idle[0]._sock is None  # disconnected, kept for next time


def test_message_is_what_celerys_own_encoder_builds(redis_url: str) -> None:
    """The per-task template filled in per job equals Celery's ``as_task_v2`` output for
    that job, but for the delivery tag (the job id: one message per job) and the origin."""
    queue = make_queue(redis_url)
    ours = json.loads(
        queue.celery_message(
            task_name="gitops.deploy", task_id="T-1", args=({"a": 1},), queue="deploys", summary="S"
        )
    )
    headers, properties, body, _ = queue._encoder.amqp.as_task_v2(
        "T-1", "gitops.deploy", args=({"a": 1},), kwargs={}, ignore_result=True,
        argsrepr="S", kwargsrepr="{}",
    )  # fmt: skip
    assert ours["headers"] == json.loads(json.dumps(headers))
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(json.dumps(body))
    assert ours["properties"]["delivery_tag"] == "T-1"
    assert {k: v for k, v in ours["properties"].items() if k != "delivery_tag"} == {
        **properties,
        "body_encoding": "base64",
        "delivery_mode": 2,
        "priority": 0,
        "delivery_info": {"exchange": "", "routing_key": "deploys"},
    }


def test_job_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_job_id() for _ in range(1000)]  # several batches of the kernel's randomness
    assert len(set(ids)) == 1000
    assert all(
        uuid.UUID(job_id).version == 4 and str(uuid.UUID(job_id)) == job_id for job_id in ids
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_processes_draw_different_job_ids() -> None:
    """gunicorn forks its workers after importing the app: they must not share the ids the
    parent drew from the kernel and has not handed out yet."""
    new_job_id()  # the parent holds a part-used batch when it forks, as a preloaded app would
    reader, writer = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.write(writer, (new_job_id() + "\n").encode())
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(writer)
    with os.fdopen(reader) as stream:
        from_children = stream.read().split()
    assert len(from_children) == 2
    assert len({*from_children, new_job_id()}) == 3
