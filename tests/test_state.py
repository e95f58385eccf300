"""The pull request state the intake and the jobs share in Redis (real Redis)."""

from __future__ import annotations

import pytest
import redis

from bot.events import CommandEvent
from bot.queue import JobQueue, redis_client
from bot.state import JobState, PostBusy, PullKey, StateUnavailable
from tests.test_queue import REPO, closed_port, pr_event

PULL = PullKey("github", "Acme/Deploys", 7)


def state(url: str, **kwargs: float) -> JobState:
    return JobState(redis.Redis.from_url(url), head_ttl=60, claim_ttl=60, **kwargs)  # type: ignore[arg-type]


def test_the_intake_records_a_previews_head_once_per_delivery(redis_url: str) -> None:
    queue = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60)
    jobs = state(redis_url)
    queue.enqueue(pr_event("d-1"), provider="github")
    assert jobs.latest_head(PullKey("github", "acme/deploys", 7)) == "a" * 40
    newer = pr_event("d-2")
    newer = type(newer)(**{**newer.__dict__, "head_sha": "c" * 40})
    queue.enqueue(newer, provider="github")
    assert jobs.latest_head(PULL) == "c" * 40  # keys ignore the name's case
    queue.enqueue(pr_event("d-1"), provider="github")  # a redelivery of the older delivery
    assert jobs.latest_head(PULL) == "c" * 40
    ttl = jobs.client.ttl(PULL.head_key)
    assert 0 < ttl <= 60
    command = CommandEvent(
        delivery_id="d-3", repository=REPO, number=8, command="sync", args=(), author="a",
        comment_id=1,
    )  # fmt: skip
    queue.enqueue(command, provider="github")
    assert jobs.latest_head(PullKey("github", "acme/deploys", 8)) is None


def test_a_head_read_before_a_newer_one_was_recorded_never_replaces_it(redis_url: str) -> None:
    jobs = state(redis_url)
    read_at = jobs.now()  # a job reads the PR from the forge: head "old"
    assert jobs.record_head(PULL, "new") == "new"  # meanwhile the intake records a push
    assert jobs.record_head(PULL, "old", at=read_at) == "new"
    assert jobs.latest_head(PULL) == "new"
    later = jobs.now()
    assert jobs.record_head(PULL, "newest", at=later) == "newest"


def test_one_preview_per_head_and_base_except_for_the_same_job(redis_url: str) -> None:
    jobs = state(redis_url)
    assert jobs.claim_preview(PULL, head="h", base="b", job_id="j1")
    assert not jobs.claim_preview(PULL, head="h", base="b", job_id="j2")
    assert jobs.claim_preview(PULL, head="h", base="b", job_id="j1")  # redelivered after a kill
    assert jobs.claim_preview(PULL, head="h", base="b2", job_id="j2")  # the base moved
    jobs.client.delete(PULL.claim_key("h", "b"))  # expired (claim_ttl)
    assert jobs.claim_preview(PULL, head="h", base="b", job_id="j3")
    assert 0 < jobs.client.ttl(PULL.claim_key("h", "b")) <= 60


def test_the_post_lock_is_exclusive_and_expires_with_a_dead_holder(redis_url: str) -> None:
    jobs = state(redis_url, post_lock_wait=0.3, post_lock_timeout=1.0)
    held = jobs.client.lock(PULL.post_lock_key, timeout=30)
    assert held.acquire()
    with pytest.raises(PostBusy), jobs.post_lock(PULL):
        pass
    held.release()
    with jobs.post_lock(PULL):
        assert jobs.client.exists(PULL.post_lock_key)
    assert not jobs.client.exists(PULL.post_lock_key)
    with jobs.post_lock(PULL):  # a holder that dies inside: the lock has a TTL
        assert 0 < jobs.client.pttl(PULL.post_lock_key) <= 1000


def test_redis_down_is_a_transient_error_of_the_job() -> None:
    jobs = JobState(
        redis_client(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.5),
        head_ttl=60,
        claim_ttl=60,
    )
    with pytest.raises(StateUnavailable, match="Redis is unavailable"):
        jobs.latest_head(PULL)
