"""The jobs on GitHub: the fake GitHub (held to GitHub's OpenAPI contract) driven by the real
PyGithub, events parsed from its real webhook payloads, the context built as the worker builds
it (:func:`bot.jobs.context.job_context`), a real Redis, and one test through a real Celery
worker to prove the task wiring."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.checkouts import RepoCache
from bot.events import CommandEvent, Event, PullRequestEvent
from bot.jobs.context import JobContext, job_context
from bot.jobs.preview import POSTED, preview_pull_request
from bot.jobs.sync import REFUSED, SYNCED, handle_command
from bot.queue import JOB_KEY, JobQueue, redis_client
from bot.settings import Settings
from bot.webhooks.base import IntakeOptions
from bot.webhooks.github import handle_github
from tests.fake_forge import hooks
from tests.fake_forge.github import FakeGitHub
from tests.jobs_support import BASE_FILES, REPO, configmap, unreachable_kubeconfig

SECRET = "s3cret"


def parse(fake: FakeGitHub, event: str, payload: dict[str, Any]) -> Event:
    """The event the intake makes of one of the fake's deliveries."""
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    outcome = handle_github(
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        },
        body=body,
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert outcome.event is not None, outcome.reason
    return outcome.event


def pr_event(fake: FakeGitHub, number: int = 1, action: str = "opened") -> PullRequestEvent:
    repo = fake.repo(REPO)
    event = parse(
        fake, "pull_request", hooks.pull_request_payload(fake, repo, repo.pulls[number], action)
    )
    assert isinstance(event, PullRequestEvent)
    return event


def comment_event(fake: FakeGitHub, login: str, body: str) -> CommandEvent:
    comment_id = fake.comment_as(login, REPO, 1, body)
    event = parse(
        fake, "issue_comment", hooks.issue_comment_payload(fake, fake.repo(REPO), 1, comment_id)
    )
    assert isinstance(event, CommandEvent)
    return event


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.create_repo(REPO, files=BASE_FILES)
    fake_github.set_permission(REPO, "gitops-bot", "write")
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.set_permission(REPO, "mallory", "read")
    fake_github.commit(REPO, "feature", {"web/a.yaml": configmap("a", "2")})
    fake_github.open_pull_request(REPO, head="feature", author="alice")
    return fake_github


@pytest.fixture
def settings(gh: FakeGitHub, tmp_path: Path) -> Settings:
    clusters = tmp_path / "clusters.yaml"
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    clusters.write_text(f"targets:\n  default:\n    kubeconfig: {kubeconfig}\n")
    return Settings.from_env(
        {
            "GITHUB_API_URL": gh.url,
            "GITHUB_TOKEN": gh.bot_token or "",
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITOPS_DATA_DIR": str(tmp_path / "data"),
            "GITOPS_FORGE_WRITE_INTERVAL": "0",
            "GITOPS_CLUSTERS_FILE": str(clusters),
        }
    )


def context(settings: Settings, event: Event, redis_url: str, job_id: str = "job-1") -> JobContext:
    return job_context(
        settings,
        event,
        client=redis.Redis.from_url(redis_url),
        repos=RepoCache(settings.data_dir / "repos"),
        job_id=job_id,
        retries_left=False,
    )


def enqueue_head(redis_url: str, event: PullRequestEvent) -> None:
    """What the intake's script does for a preview delivery (records its head)."""
    JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).enqueue(event, provider="github")


def test_a_pull_request_gets_one_comment_and_its_statuses_through_pygithub(
    gh: FakeGitHub, settings: Settings, redis_url: str
) -> None:
    event = pr_event(gh)
    enqueue_head(redis_url, event)
    outcome = preview_pull_request(event, context(settings, event, redis_url))
    assert outcome.outcome == POSTED
    head = gh.repo(REPO).pulls[1].head_sha
    statuses = [(s.state, s.description) for s in gh.statuses(REPO, head)]
    assert statuses == [
        ("pending", f"Previewing the merge of {head[:7]} into main…"),
        ("success", "1 app: +0 ~1 -0 · offline: default unreachable"),
    ]
    assert {s.context for s in gh.statuses(REPO, head)} == {"gitops/preview"}
    (comment,) = gh.comments(REPO, 1)
    assert comment.author == "gitops-bot" and "ConfigMap web/a" in comment.body
    # the delivery redelivered and run again by another job: nothing new
    again = pr_event(gh, action="synchronize")
    enqueue_head(redis_url, again)
    assert preview_pull_request(again, context(settings, again, redis_url, "job-2")).outcome == (
        "duplicate"
    )
    assert len(gh.comments(REPO, 1)) == 1


def test_a_5xx_on_a_comment_write_is_retried_and_the_comment_posted_once(
    gh: FakeGitHub, settings: Settings, redis_url: str
) -> None:
    event = pr_event(gh)
    enqueue_head(redis_url, event)
    gh.fail(502, times=1, path=f"/repos/{REPO}/issues/1/comments")
    assert preview_pull_request(event, context(settings, event, redis_url)).outcome == POSTED
    assert len(gh.comments(REPO, 1)) == 1
    failed = [r for r in gh.api_requests() if r.status == 502]
    assert [r.method for r in failed] != [] and all(r.path.endswith("/comments") for r in failed)


def test_sync_by_a_writer_a_reader_and_a_bot_on_github(
    gh: FakeGitHub, settings: Settings, redis_url: str
) -> None:
    event = pr_event(gh)
    enqueue_head(redis_url, event)
    preview_pull_request(event, context(settings, event, redis_url))
    (preview,) = gh.comments(REPO, 1)
    sync = comment_event(gh, "alice", "/sync")
    assert handle_command(sync, context(settings, sync, redis_url, "job-2")).outcome == SYNCED
    assert gh.comments_by_id[sync.comment_id].reactions == [("gitops-bot", "eyes")]
    ours = [c for c in gh.comments(REPO, 1) if c.author == "gitops-bot"]
    assert [c.id for c in ours] == [preview.id]  # the same comment, edited
    refused = comment_event(gh, "mallory", "/sync")
    assert handle_command(refused, context(settings, refused, redis_url, "job-3")).outcome == (
        REFUSED
    )
    reply = [c for c in gh.comments(REPO, 1) if c.author == "gitops-bot"][-1]
    assert "and mallory may not: nothing was run" in reply.body
    assert gh.comments_by_id[refused.comment_id].reactions == []
    # the bot's own comment (a token user, not marked as a bot by GitHub) is ignored too
    own = CommandEvent(
        delivery_id="own",
        repository=sync.repository,
        number=1,
        command="sync",
        args=(),
        author="gitops-bot",
        comment_id=preview.id,
    )
    assert handle_command(own, context(settings, own, redis_url, "job-4")).outcome == "ignored"


def test_no_token_in_any_request_body_log_comment_or_redis(
    gh: FakeGitHub, settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = gh.bot_token or ""
    caplog.set_level(logging.DEBUG)
    event = pr_event(gh)
    enqueue_head(redis_url, event)
    preview_pull_request(event, context(settings, event, redis_url))
    sync = comment_event(gh, "alice", "/sync")
    handle_command(sync, context(settings, sync, redis_url, "job-2"))
    assert token and token not in caplog.text
    for request in gh.requests:
        assert token.encode() not in request.body, request.path
    for comment in gh.comments(REPO, 1):
        assert token not in comment.body
    client = redis.Redis.from_url(redis_url)
    for key in client.keys("*"):
        dumped = client.dump(key) or b""
        assert token.encode() not in key and token.encode() not in dumped
    cache = settings.data_dir / "repos"
    for path in cache.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert token.encode() not in path.read_bytes(), path
    # it did go where it belongs: in the Authorization header of requests to the fake only
    assert any(token in r.headers.get("authorization", "") for r in gh.requests)


GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))


@pytest.mark.slow
def test_a_real_worker_previews_and_retries_a_transient_git_failure(
    gh: FakeGitHub, settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    """The task wiring: queued by the intake, run by `gitops-bot worker`, a 503 from the git
    server retried by Celery after GITOPS_RETRY_DELAY, the comment posted, the outcome counted."""
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        GITHUB_API_URL=gh.url,
        GITHUB_TOKEN=gh.bot_token or "",
        GITOPS_DATA_DIR=str(tmp_path / "worker-data"),
        GITOPS_CLUSTERS_FILE=str(settings.clusters_file),
        GITOPS_FORGE_WRITE_INTERVAL="0",
        GITOPS_RETRY_DELAY="0.2",
        GITOPS_WORKER_HEARTBEAT="0.5",
    )
    gh.fail(503, times=1, path=".git/")
    event = pr_event(gh)
    queued = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).enqueue(
        event, provider="github"
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [GITOPS_BOT, "worker", "--queues", "previews"], env=env, stdout=out, stderr=out
        )
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while client.hget(JOB_KEY.format(job_id=queued.job_id), "state") != b"posted":
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert len(gh.comments(REPO, 1)) == 1
    record = client.hgetall(JOB_KEY.format(job_id=queued.job_id))
    assert {b"seconds_checkout", b"seconds_render", b"seconds_post"} <= set(record)
    counts = JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).stats().processed
    assert counts == {("preview", "retry"): 1, ("preview", "posted"): 1}
    text = log.read_text()
    assert f"[delivery {event.delivery_id} job {queued.job_id} {REPO}#1]" in text
    assert "transient error, retrying" in text
    assert (gh.bot_token or "?") not in text
