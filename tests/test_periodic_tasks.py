"""The periodic tasks as a worker runs them (Celery's ``apply``: in this process, the real
Celery app and a real Redis): ``drift_all`` queues one drift job per served repository whose
forge the bot has credentials for, and an outage (Redis away) ends a round quietly — beat and
the worker never see an exception; the next round is the retry."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest
import redis

from bot.events import DriftEvent, from_task
from bot.queue import JOB_KEY, JobQueue, redis_client
from bot.settings import Settings
from tests.deploy_support import EVENT_REPOSITORY
from tests.test_catchup import push_of
from workers import tasks


@pytest.fixture
def worker(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> Iterator[redis.Redis]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    settings = Settings.from_env(
        {"REDIS_URL": redis_url, "GITHUB_TOKEN": "ghp_test", "GITOPS_DATA_DIR": str(tmp_path)}
    )
    client = redis_client(redis_url, timeout=2)
    monkeypatch.setattr(tasks, "_settings", settings)
    monkeypatch.setattr(tasks, "_redis", client)
    yield client


def queued(client: redis.Redis, queue: str) -> list[dict[str, object]]:
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "args": body[0]})
    return found


def test_drift_all_queues_one_drift_job_per_served_repository(worker: redis.Redis) -> None:
    gitlab = EVENT_REPOSITORY.__class__(
        **{**EVENT_REPOSITORY.__dict__, "provider": "gitlab", "full_name": "acme/lab",
           "api_url": "https://gitlab.com/api/v4"}
    )  # fmt: skip
    intake = JobQueue(worker, delivery_ttl=60)
    intake.enqueue(push_of(EVENT_REPOSITORY, "1" * 40), provider="github")
    intake.enqueue(push_of(gitlab, "2" * 40, delivery="lab"), provider="gitlab")
    worker.delete("deploys")
    tasks.drift_all.apply()
    (job,) = queued(worker, "deploys")  # GitLab has no credentials here: not checked
    assert job["task"] == "gitops.drift"
    event = from_task(job["args"][0])  # type: ignore[index]
    assert isinstance(event, DriftEvent) and event.repository == EVENT_REPOSITORY
    assert event.delivery_id.startswith("drift-")


def test_a_round_with_redis_away_ends_quietly(
    worker: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tasks, "_redis", redis_client("redis://127.0.0.1:1", timeout=0.2))
    caplog.set_level(logging.WARNING, logger="gitops_bot.worker")
    tasks.catchup.apply().get()  # no exception reaches Celery
    tasks.drift_all.apply().get()
    assert any("next round retries" in r.getMessage() for r in caplog.records)
    assert not worker.keys(JOB_KEY.format(job_id="*"))
