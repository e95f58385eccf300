"""The fake GitLab's webhook deliveries are shaped like GitLab's (the captured fixtures) and pass
the bot's real intake (token, payload parsing, the configured-GitLab check), so end-to-end tests
can wire the two by URLs and settings alone."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bot.app import create_app
from bot.settings import Settings
from tests.fake_forge.gitlab import DEVELOPER, FakeGitLab

REPO = "acme/app"
SECRET = "hook-token"
FIXTURES = Path(__file__).parent / "fixtures" / "webhooks" / "gitlab"


def shape(value: Any) -> Any:
    """Keys (recursively) of a payload: what the fixtures say GitLab sends."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [shape(value[0])]
    return None


def missing(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Keys of ``expected`` that ``actual`` lacks."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [where or "(root)"]
        gaps = []
        for key, sub in expected.items():
            if key not in actual:
                gaps.append(f"{where}{key}")
            else:
                gaps += missing(sub, actual[key], f"{where}{key}.")
        return gaps
    if isinstance(expected, list) and expected:
        return missing(expected[0], actual[0] if actual else None, f"{where}[].")
    return []


def fixture(name: str) -> Any:
    return shape(json.loads((FIXTURES / f"{name}.json").read_text()))


@pytest.fixture
def gl(fake_gitlab: FakeGitLab) -> FakeGitLab:
    fake_gitlab.create_project(REPO, files={"app/cm.yaml": "a: 1\n"})
    fake_gitlab.add_member("acme", "gitops-bot", DEVELOPER)
    return fake_gitlab


@pytest.fixture
def bot_url(fake_gitlab: FakeGitLab, redis_url: str) -> Iterator[str]:
    settings = Settings.from_env(
        {
            "GITLAB_WEBHOOK_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "GITLAB_URL": fake_gitlab.url,
            "GITLAB_TOKEN": fake_gitlab.bot_token or "",
        }
    )
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/gitlab"
    server.shutdown()


def answers(gl: FakeGitLab) -> list[tuple[str, str]]:
    return [(d.event, d.answer["action"]) for d in gl.deliveries]


def test_payloads_have_every_field_of_gitlabs(gl: FakeGitLab) -> None:
    gl.add_webhook("http://127.0.0.1:9/unused", token=SECRET)  # records, nobody answers
    gl.commit(REPO, "feature", {"app/cm.yaml": "a: 2\n"})
    iid = gl.open_merge_request(REPO, source_branch="feature", draft=True)
    gl.commit(REPO, "feature", {"app/cm.yaml": "a: 3\n"})
    gl.mark_ready(REPO, iid)
    gl.comment_as("jsmith", REPO, iid, "/sync web")
    gl.merge_merge_request(REPO, iid)
    kinds = [(d.event, d.payload.get("object_attributes", {}).get("action")) for d in gl.deliveries]
    assert kinds == [
        ("Push Hook", None),
        ("Merge Request Hook", "open"),
        ("Push Hook", None),
        ("Merge Request Hook", "update"),
        ("Merge Request Hook", "update"),
        ("Note Hook", "create"),
        ("Merge Request Hook", "merge"),
        ("Push Hook", None),
    ]
    payloads = [d.payload for d in gl.deliveries]
    for payload, name in [
        (payloads[0], "push__other_branch"),
        (payloads[1], "merge_request__draft_open"),
        (payloads[3], "merge_request__update_new_commits"),
        (payloads[4], "merge_request__update_ready"),
        (payloads[5], "note__merge_request_sync"),
        (payloads[6], "merge_request__merge"),
        (payloads[7], "push__default_branch"),
    ]:
        assert missing(fixture(name), shape(payload)) == [], name
    assert (
        payloads[3]["object_attributes"]["oldrev"]
        == payloads[1]["object_attributes"]["last_commit"]["id"]
    )


def test_headers_as_gitlab_sends_them(gl: FakeGitLab) -> None:
    gl.add_webhook("http://127.0.0.1:9/unused", token=SECRET)
    gl.commit(REPO, "main", {"a": "1"})
    [delivery] = gl.deliveries
    headers = delivery.headers
    assert headers["X-Gitlab-Event"] == "Push Hook"
    assert headers["X-Gitlab-Token"] == SECRET
    assert headers["Idempotency-Key"] == headers["X-Gitlab-Event-UUID"] == delivery.id
    assert headers["User-Agent"].startswith("GitLab/")


def test_a_merge_request_journey_reaches_the_intake(gl: FakeGitLab, bot_url: str) -> None:
    gl.add_webhook(bot_url, token=SECRET, scope="acme")  # a group hook
    gl.add_member(REPO, "alice", DEVELOPER)
    gl.commit(REPO, "feature", {"app/cm.yaml": "a: 2\n"})
    iid = gl.open_merge_request(REPO, source_branch="feature", author="alice")
    gl.commit(REPO, "feature", {"app/cm.yaml": "a: 3\n"})
    gl.comment_as("alice", REPO, iid, "/sync")
    bot, _ = gl.project_access_token(REPO)
    gl.comment_as(bot.username, REPO, iid, "/sync")
    gl.merge_merge_request(REPO, iid)
    assert answers(gl) == [
        ("Push Hook", "ignored"),  # to feature, not the default branch
        ("Merge Request Hook", "queued"),  # open
        ("Push Hook", "ignored"),
        ("Merge Request Hook", "queued"),  # update with a new commit
        ("Note Hook", "queued"),  # /sync
        ("Note Hook", "ignored"),  # by a project access token's bot
        ("Merge Request Hook", "ignored"),  # merge
        ("Push Hook", "queued"),  # the merge on main: a deploy
    ]
    jobs = [d.answer.get("job") for d in gl.deliveries if d.answer["action"] == "queued"]
    assert jobs == ["preview", "preview", "command", "deploy"]
    again = gl.redeliver(gl.deliveries[1].id)
    assert again.answer["action"] == "duplicate" and again.attempts == 2


def test_the_bots_own_notes_are_delivered_and_ignored(
    gl: FakeGitLab, bot_url: str, gitlab_settings: Settings
) -> None:
    from bot.forges.gitlab import GitLabConfig, GitLabForge

    gl.commit(REPO, "feature", {"a": "1"})
    iid = gl.open_merge_request(REPO, source_branch="feature")
    gl.add_webhook(bot_url, token=SECRET)
    GitLabForge(GitLabConfig.from_settings(gitlab_settings), REPO).create_comment(iid, "preview")
    deadline = time.monotonic() + 10
    while not (gl.deliveries and gl.deliveries[-1].status) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answers(gl) == [("Note Hook", "ignored")]


def test_a_wrong_token_is_refused(gl: FakeGitLab, bot_url: str) -> None:
    gl.add_webhook(bot_url, token="not-the-secret")
    gl.commit(REPO, "main", {"a": "1"})
    assert [d.status for d in gl.deliveries] == [401]


def test_a_delivery_from_another_gitlab_is_ignored(
    fake_gitlab: FakeGitLab, redis_url: str, tmp_path: Path
) -> None:
    other = FakeGitLab(tmp_path / "other")
    with other:
        settings = Settings.from_env(
            {"GITLAB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "GITLAB_URL": fake_gitlab.url}
        )
        server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            other.create_project(REPO)
            other.add_webhook(
                f"http://127.0.0.1:{server.server_port}/webhooks/gitlab", token=SECRET
            )
            other.commit(REPO, "main", {"a": "1"})
        finally:
            server.shutdown()
    [delivery] = other.deliveries
    assert delivery.answer["action"] == "ignored"
    assert "GITLAB_URL" in delivery.answer["reason"] and other.url in delivery.answer["reason"]
