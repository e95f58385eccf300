"""Deploy on merge through the real forge clients: PyGithub against the fake GitHub and
python-gitlab against the fake GitLab (each held to its forge's published contract), events
parsed from their real webhook payloads, the context built as the worker builds it, the kube
emulator. The same journey on both: a PR/MR previewed, merged, its push deployed; the status on
the merge commit and one deploy comment (note) on the PR/MR saying "as previewed"."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.checkouts import RepoCache
from bot.events import Event, PullRequestEvent, PushEvent, from_task
from bot.jobs.context import JobContext, job_context
from bot.jobs.deploy import DEPLOYED, PLANNED, deploy_app, deploy_push
from bot.jobs.preview import POSTED, preview_pull_request
from bot.settings import Settings
from bot.webhooks.base import IntakeOptions
from bot.webhooks.github import handle_github
from bot.webhooks.gitlab import handle_gitlab
from tests.deploy_support import deployment
from tests.fake_forge import gitlab_hooks, hooks
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import DEVELOPER, FakeGitLab
from tests.jobs_support import REPO, configmap

pytestmark = pytest.mark.realcluster

SECRET = "s3cret"
CONFIG = "version: 1\napps:\n  - {name: web, path: web, namespace: web, createNamespace: true}\n"
FILES: dict[str, str | bytes | None] = {".gitops.yaml": CONFIG, "web/a.yaml": configmap("a", "1")}
CHANGE: dict[str, str | bytes | None] = {
    "web/a.yaml": configmap("a", "2"),
    "web/app.yaml": deployment("app"),
}


def github_event(event: str, payload: dict[str, Any]) -> Event:
    body = json.dumps(payload).encode()
    outcome = handle_github(
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        },
        body=body,
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert outcome.event is not None, outcome.reason
    return outcome.event


def gitlab_event(fake: FakeGitLab, event: str, payload: dict[str, Any]) -> Event:
    outcome = handle_gitlab(
        headers={
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": SECRET,
            "X-Gitlab-Instance": fake.url,
            "Idempotency-Key": str(uuid.uuid4()),
            "Content-Type": "application/json",
        },
        body=json.dumps(payload).encode(),
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert outcome.event is not None, outcome.reason
    return outcome.event


@dataclass
class Flavour:
    """One forge: the settings wiring the bot to it, the PR/MR opened (its webhook's event),
    the merge button (the merge commit and its push's event), the comments (notes) on the PR/MR
    and the latest ``gitops/deploy`` status of a commit (state, description)."""

    settings: Settings
    opened: PullRequestEvent
    merge: Callable[[], tuple[str, PushEvent]]
    comments: Callable[[], list[str]]
    status: Callable[[str], tuple[str, str] | None]


def github_flavour(fake: FakeGitHub, env: dict[str, str]) -> Flavour:
    fake.create_repo(REPO, files=FILES)
    fake.set_permission(REPO, "gitops-bot", "write")
    fake.commit(REPO, "feature", CHANGE)
    number = fake.open_pull_request(REPO, head="feature", author="alice")
    repo = fake.repo(REPO)
    opened = github_event(
        "pull_request", hooks.pull_request_payload(fake, repo, repo.pulls[number], "opened")
    )
    assert isinstance(opened, PullRequestEvent)

    def merge() -> tuple[str, PushEvent]:
        merged = fake.merge_pull_request(REPO, number)
        payload = hooks.push_payload(
            fake, repo, ref="refs/heads/main", before="0" * 40, after=merged, pusher="alice"
        )
        push = github_event("push", payload)
        assert isinstance(push, PushEvent)
        return merged, push

    def status(sha: str) -> tuple[str, str] | None:
        found = fake.latest_status(REPO, sha, "gitops/deploy")
        return (found.state, found.description) if found is not None else None

    return Flavour(
        settings=Settings.from_env(
            {**env, "GITHUB_API_URL": fake.url, "GITHUB_TOKEN": fake.bot_token or ""}
        ),
        opened=opened,
        merge=merge,
        comments=lambda: [c.body for c in fake.comments(REPO, number)],
        status=status,
    )


def gitlab_flavour(fake: FakeGitLab, env: dict[str, str]) -> Flavour:
    fake.create_project(REPO, files=FILES)
    fake.add_member(REPO, "gitops-bot", DEVELOPER)
    fake.add_member(REPO, "alice", DEVELOPER)
    fake.commit(REPO, "feature", CHANGE)
    iid = fake.open_merge_request(REPO, source_branch="feature", author="alice")
    project = fake.project(REPO)
    alice = fake.add_user("alice")
    opened = gitlab_event(
        fake,
        "Merge Request Hook",
        gitlab_hooks.merge_request_payload(fake, project.mrs[iid], "open", alice),
    )
    assert isinstance(opened, PullRequestEvent)

    def merge() -> tuple[str, PushEvent]:
        head = project.mrs[iid].head_sha
        merged = fake.merge_merge_request(REPO, iid)
        payload = gitlab_hooks.push_payload(
            fake,
            project,
            ref="refs/heads/main",
            before="0" * 40,
            after=merged,
            pusher=alice,
            shas=[head, merged],
        )
        push = gitlab_event(fake, "Push Hook", payload)
        assert isinstance(push, PushEvent)
        return merged, push

    def status(sha: str) -> tuple[str, str] | None:
        found = fake.latest_status(REPO, sha, "gitops/deploy")
        return (found.status, found.description) if found is not None else None

    return Flavour(
        settings=Settings.from_env(
            {**env, "GITLAB_URL": fake.url, "GITLAB_TOKEN": fake.bot_token or ""}
        ),
        opened=opened,
        merge=merge,
        comments=lambda: [n.body for n in fake.notes(REPO, iid)],
        status=status,
    )


@pytest.fixture(params=["github", "gitlab"])
def flavour(request: pytest.FixtureRequest, tmp_path: Path, kubeconfig: str) -> Flavour:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(f"targets:\n  default:\n    kubeconfig: {kubeconfig}\n")
    env = {
        "GITOPS_DATA_DIR": str(tmp_path / "data"),
        "GITOPS_FORGE_WRITE_INTERVAL": "0",
        "GITOPS_CLUSTERS_FILE": str(clusters),
    }
    if request.param == "github":
        return github_flavour(request.getfixturevalue("fake_github"), env)
    return gitlab_flavour(request.getfixturevalue("fake_gitlab"), env)


def test_a_merged_pull_request_is_deployed_and_reported_as_previewed(
    flavour: Flavour, redis_url: str, kubectl: object
) -> None:
    queued: list[tuple[str, tuple[Any, ...]]] = []
    jobs = iter(range(1, 100))

    def context(event: Event) -> JobContext:
        return job_context(
            flavour.settings,
            event,
            client=redis.Redis.from_url(redis_url),
            repos=RepoCache(flavour.settings.data_dir / "repos"),
            job_id=f"job-{next(jobs)}",
            retries_left=False,
            enqueue=lambda job, args: queued.append((job, tuple(args))),
        )

    assert preview_pull_request(flavour.opened, context(flavour.opened)).outcome == POSTED
    merged, push = flavour.merge()
    assert deploy_push(push, context(push)).outcome == PLANNED
    pending = flavour.status(merged)
    assert pending is not None and pending[1] == f"Deploying {merged[:7]}…"
    assert pending[0] in ("pending", "running")  # GitLab's word for it
    ((job, args),) = queued
    assert job == "deploy_app"
    event = from_task(args[0])
    assert isinstance(event, PushEvent)
    assert deploy_app(event, context(event), args[1]).outcome == DEPLOYED
    assert flavour.status(merged) == (
        "success",
        "1 app deployed and healthy: +3 ~0 -0 · as previewed",  # a first deploy
    )
    (report,) = [body for body in flavour.comments() if "gitops-bot:deploy" in body]
    assert "**As previewed.**" in report and "`web` deployed" in report
    assert "Deployment web/app" in report
    kubectl.ok("get", "deployment", "app", "-n", "web")  # type: ignore[attr-defined]
