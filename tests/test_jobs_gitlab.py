"""The same jobs on GitLab, unchanged: the fake GitLab (held to GitLab's contract) driven by the
real python-gitlab, events parsed from its real webhook payloads (issue 14.1 through the jobs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.checkouts import RepoCache
from bot.events import CommandEvent, Event, PullRequestEvent
from bot.jobs.context import job_context
from bot.jobs.preview import POSTED, preview_pull_request
from bot.jobs.sync import REFUSED, SYNCED, handle_command
from bot.queue import JobQueue, redis_client
from bot.settings import Settings
from bot.webhooks.base import IntakeOptions
from bot.webhooks.gitlab import handle_gitlab
from tests.fake_forge import gitlab_hooks
from tests.fake_forge.gitlab import DEVELOPER, REPORTER, FakeGitLab
from tests.jobs_support import BASE_FILES, REPO, configmap, unreachable_kubeconfig

SECRET = "s3cret"


def parse(gl: FakeGitLab, event: str, payload: dict[str, Any]) -> Event:
    delivery = str(uuid.uuid4())
    outcome = handle_gitlab(
        headers={
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": SECRET,
            "X-Gitlab-Instance": gl.url,
            "Idempotency-Key": delivery,
            "Content-Type": "application/json",
        },
        body=json.dumps(payload).encode(),
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert outcome.event is not None, outcome.reason
    return outcome.event


@pytest.fixture
def gl(fake_gitlab: FakeGitLab) -> FakeGitLab:
    fake_gitlab.create_project(REPO, files=BASE_FILES)
    fake_gitlab.add_member(REPO, "gitops-bot", DEVELOPER)
    fake_gitlab.add_member(REPO, "alice", DEVELOPER)
    fake_gitlab.add_member(REPO, "rita", REPORTER)
    fake_gitlab.commit(REPO, "feature", {"web/a.yaml": configmap("a", "2")})
    fake_gitlab.open_merge_request(REPO, source_branch="feature", author="alice")
    return fake_gitlab


@pytest.fixture
def settings(gl: FakeGitLab, tmp_path: Path) -> Settings:
    clusters = tmp_path / "clusters.yaml"
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    clusters.write_text(f"targets:\n  default:\n    kubeconfig: {kubeconfig}\n")
    return Settings.from_env(
        {
            "GITLAB_URL": gl.url,
            "GITLAB_TOKEN": gl.bot_token or "",
            "GITLAB_WEBHOOK_SECRET": SECRET,
            "GITOPS_DATA_DIR": str(tmp_path / "data"),
            "GITOPS_FORGE_WRITE_INTERVAL": "0",
            "GITOPS_CLUSTERS_FILE": str(clusters),
        }
    )


def run(settings: Settings, event: Event, redis_url: str, job_id: str) -> Any:
    ctx = job_context(
        settings,
        event,
        client=redis.Redis.from_url(redis_url),
        repos=RepoCache(settings.data_dir / "repos"),
        job_id=job_id,
        retries_left=False,
    )
    if isinstance(event, PullRequestEvent):
        return preview_pull_request(event, ctx)
    assert isinstance(event, CommandEvent)
    return handle_command(event, ctx)


def test_a_merge_request_gets_one_note_a_status_and_sync_on_gitlab(
    gl: FakeGitLab, settings: Settings, redis_url: str
) -> None:
    project = gl.project(REPO)
    mr = project.mrs[1]
    alice = gl.add_user("alice")
    event = parse(
        gl, "Merge Request Hook", gitlab_hooks.merge_request_payload(gl, mr, "open", alice)
    )
    assert isinstance(event, PullRequestEvent)
    JobQueue(redis_client(redis_url, timeout=2), delivery_ttl=60).enqueue(event, provider="gitlab")
    assert run(settings, event, redis_url, "job-1").outcome == POSTED
    (note,) = [n for n in gl.notes(REPO, 1) if "gitops-bot:preview" in n.body]
    assert "ConfigMap web/a" in note.body and "merged into main" in note.body
    status = gl.latest_status(REPO, mr.head_sha, "gitops/preview")
    assert status is not None and status.status == "success"
    # /sync by a Developer: an award emoji, the same note edited
    sync_id = gl.comment_as("alice", REPO, 1, "/sync")
    sync = parse(gl, "Note Hook", gitlab_hooks.note_payload(gl, gl.notes_by_id[sync_id]))
    assert isinstance(sync, CommandEvent)
    assert run(settings, sync, redis_url, "job-2").outcome == SYNCED
    assert [a.name for a in gl.notes_by_id[sync_id].awards] == ["eyes"]
    ours = [n for n in gl.notes(REPO, 1) if "gitops-bot:preview" in n.body]
    assert [n.id for n in ours] == [note.id]
    # by a Reporter: one reply, nothing runs
    refused_id = gl.comment_as("rita", REPO, 1, "/sync")
    refused = parse(gl, "Note Hook", gitlab_hooks.note_payload(gl, gl.notes_by_id[refused_id]))
    assert run(settings, refused, redis_url, "job-3").outcome == REFUSED
    assert gl.notes_by_id[refused_id].awards == []
    assert "and rita may not: nothing was run" in gl.notes(REPO, 1)[-1].body
