"""Webhook deliveries from the fake GitHub, as GitHub sends them (and :func:`post`, which the fake
GitLab's ``gitlab_hooks.py`` shares): JSON payloads of the events the
bot subscribes to, signed with ``X-Hub-Signature-256``, with a delivery id kept across
redeliveries, posted within GitHub's 10-second timeout. End-to-end tests then wire the bot to
the fake by URLs and settings only::

    gh.add_webhook("http://127.0.0.1:8080/webhooks/github", secret="s3cret")
    gh.open_pull_request("acme/app", head="feature")   # → pull_request "opened"
    gh.commit("acme/app", "feature", {...})             # → pull_request "synchronize"
    gh.comment_as("alice", "acme/app", 1, "/sync")      # → issue_comment "created"
    gh.merge_pull_request("acme/app", 1)                # → pull_request "closed", push
    gh.deliveries[-1].status, gh.redeliver(gh.deliveries[0].id)

Payloads carry what GitHub's carry for the fields the bot reads (and ``installation.id`` when
an App is installed on the repository).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from tests.fake_forge.github import FakeGitHub, Pull, Repo

TIMEOUT = 10.0  # GitHub gives up on a delivery after 10 s


@dataclass
class Hook:
    url: str
    secret: str
    events: tuple[str, ...] = ("pull_request", "issue_comment", "push")


@dataclass
class Delivery:
    """One delivery and the bot's answer (``status`` 0: no answer)."""

    id: str
    event: str
    payload: dict[str, Any]
    url: str
    status: int = 0
    answer: Any = None
    attempts: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def send(hook: Hook, delivery: Delivery) -> Delivery:
    body = json.dumps(delivery.payload).encode()
    signature = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake",
        "X-GitHub-Event": delivery.event,
        "X-GitHub-Delivery": delivery.id,
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": signature,
    }
    return post(hook.url, delivery, body, headers)


def post(url: str, delivery: Delivery, body: bytes, headers: dict[str, str]) -> Delivery:
    """POST one delivery (any forge's) and record the bot's answer on it."""
    delivery.headers = headers
    delivery.attempts += 1
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException:
        delivery.status, delivery.answer = 0, None
        return delivery
    delivery.status = response.status_code
    try:
        delivery.answer = response.json()
    except ValueError:
        delivery.answer = response.text
    return delivery


def new_delivery(event: str, payload: dict[str, Any], url: str) -> Delivery:
    return Delivery(id=str(uuid.uuid4()), event=event, payload=payload, url=url)


def repository_payload(fake: FakeGitHub, repo: Repo) -> dict[str, Any]:
    return fake.shapes._repo_json(repo)


def base_payload(fake: FakeGitHub, repo: Repo, sender: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "repository": repository_payload(fake, repo),
        "sender": fake.shapes._user(sender),
    }
    installation = fake.installation_of(repo.full_name)
    if installation is not None:
        payload["installation"] = {"id": installation, "node_id": f"MDIz{installation}"}
    return payload


def pull_request_payload(
    fake: FakeGitHub, repo: Repo, pull: Pull, action: str, *, before: str | None = None
) -> dict[str, Any]:
    payload = {
        "action": action,
        "number": pull.number,
        "pull_request": fake.shapes._pull_json(repo, pull),
        **base_payload(fake, repo, pull.author),
    }
    if before is not None:
        payload["before"], payload["after"] = before, pull.head_sha
    return payload


def issue_comment_payload(
    fake: FakeGitHub, repo: Repo, number: int, comment_id: int
) -> dict[str, Any]:
    comment = fake.comments_by_id[comment_id]
    is_pull = number in repo.pulls
    issue: dict[str, Any] = {
        "number": number,
        "title": repo.pulls[number].title if is_pull else repo.issues[number].title,
        "state": repo.pulls[number].state if is_pull else repo.issues[number].state,
        "user": fake.shapes._user(repo.pulls[number].author if is_pull else comment.author),
        "url": f"{fake.url}/repos/{repo.full_name}/issues/{number}",
    }
    if is_pull:
        issue["pull_request"] = {"url": f"{fake.url}/repos/{repo.full_name}/pulls/{number}"}
    return {
        "action": "created",
        "issue": issue,
        "comment": fake.shapes._comment_json(repo, comment),
        **base_payload(fake, repo, comment.author),
    }


def push_payload(
    fake: FakeGitHub, repo: Repo, *, ref: str, before: str, after: str, pusher: str
) -> dict[str, Any]:
    payload = base_payload(fake, repo, pusher)
    # As on GitHub, a push payload's repository.url is the web URL (the API is in hooks_url).
    payload["repository"] = dict(payload["repository"], url=f"{fake.url}/{repo.full_name}")
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == "0" * 40,
        "deleted": after == "0" * 40,
        "forced": False,
        "pusher": {"name": pusher, "email": f"{pusher}@users.noreply.invalid"},
        "head_commit": {"id": after} if after != "0" * 40 else None,
        **payload,
    }
