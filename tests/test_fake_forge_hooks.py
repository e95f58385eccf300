"""The fake GitHub's webhook deliveries pass the bot's real intake (signature, payload parsing,
the configured-forge check), so end-to-end tests can wire the two by URLs and settings alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from bot.app import create_app
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub

REPO = "acme/app"
SECRET = "hook-secret"


@pytest.fixture
def bot_url(fake_github: FakeGitHub, redis_url: str) -> Iterator[str]:
    settings = Settings.from_env(
        {
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "GITHUB_API_URL": fake_github.url,
            "GITHUB_TOKEN": fake_github.bot_token or "",
        }
    )
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/github"
    server.shutdown()


def answers(gh: FakeGitHub) -> list[tuple[str, str]]:
    return [(d.event, d.answer["action"]) for d in gh.deliveries]


def test_a_pull_request_journey_reaches_the_intake(fake_github: FakeGitHub, bot_url: str) -> None:
    gh = fake_github
    gh.add_webhook(bot_url, secret=SECRET)
    gh.create_repo(REPO)
    gh.set_permission(REPO, "gitops-bot", "write")
    gh.set_permission(REPO, "alice", "write")
    gh.commit(REPO, "feature", {"app/cm.yaml": "a: 1\n"})
    number = gh.open_pull_request(REPO, head="feature", author="alice")
    gh.commit(REPO, "feature", {"app/cm.yaml": "a: 2\n"})
    gh.comment_as("alice", REPO, number, "/sync")
    gh.merge_pull_request(REPO, number)
    assert answers(gh) == [
        ("push", "ignored"),  # to feature, not the default branch
        ("pull_request", "queued"),  # opened
        ("push", "ignored"),
        ("pull_request", "queued"),  # synchronize
        ("issue_comment", "queued"),  # /sync
        ("pull_request", "ignored"),  # closed
        ("push", "queued"),  # the merge on main: a deploy
    ]
    jobs = [d.answer.get("job") for d in gh.deliveries if d.answer["action"] == "queued"]
    assert jobs == ["preview", "preview", "command", "deploy"]
    first = gh.deliveries[1]
    again = gh.redeliver(first.id)
    assert again.answer["action"] == "duplicate" and again.attempts == 2


def test_the_bots_own_comments_are_delivered_and_ignored(
    fake_github: FakeGitHub, bot_url: str
) -> None:
    from bot.forges.github import GitHubConfig, GitHubForge

    gh = fake_github
    gh.create_repo(REPO)
    gh.set_permission(REPO, "gitops-bot", "write")
    gh.commit(REPO, "feature", {"a": "1"})
    number = gh.open_pull_request(REPO, head="feature")
    gh.add_webhook(bot_url, secret=SECRET)
    settings = Settings.from_env({"GITHUB_API_URL": gh.url, "GITHUB_TOKEN": gh.bot_token or ""})
    GitHubForge(GitHubConfig.from_settings(settings), REPO).create_comment(number, "preview")
    deadline = time.monotonic() + 10
    while not (gh.deliveries and gh.deliveries[-1].status) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answers(gh) == [("issue_comment", "ignored")]


def test_an_app_installation_id_travels_with_each_delivery(
    fake_github: FakeGitHub, bot_url: str
) -> None:
    gh = fake_github
    gh.create_repo(REPO)
    installation = gh.install(gh.create_app("gitops"), [REPO])
    gh.add_webhook(bot_url, secret=SECRET)
    gh.commit(REPO, "main", {"a": "1"})
    assert gh.deliveries[0].payload["installation"]["id"] == installation
    assert answers(gh) == [("push", "queued")]


def test_a_bot_that_is_down_leaves_the_delivery_failed(fake_github: FakeGitHub) -> None:
    gh = fake_github
    gh.add_webhook("http://127.0.0.1:9/webhooks/github", secret=SECRET)
    gh.create_repo(REPO)
    gh.commit(REPO, "main", {"a": "1"})
    assert [(d.status, d.attempts) for d in gh.deliveries] == [(0, 1)]
