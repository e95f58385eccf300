"""GitLab intake: one line per fixture (what job, or why none), then token, delivery ids,
self-managed URLs and malformed payloads."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bot.events import CommandEvent, PullRequestEvent, PushEvent, Repository
from bot.settings import MAX_BODY_BYTES
from bot.webhooks import IntakeOptions, Outcome, WebhookError, handle_gitlab
from bot.webhooks.gitlab import api_url

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks" / "gitlab"
SECRET = "gitlab-token-3c1f"
IDEMPOTENCY_KEY = "f0b1c2d3-9a8b-4c5d-8e7f-0123456789ab"
EVENT_UUID = "13792a34-cac6-4fda-95a8-c58e00a3954e"
HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"
HEADER_OF = {
    "merge_request": "Merge Request Hook",
    "note": "Note Hook",
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "pipeline": "Pipeline Hook",
}
REPOSITORY = Repository(
    provider="gitlab",
    full_name="platform/deploy-config",
    id=15,
    default_branch="main",
    clone_url="https://git.example.com/gitlab/platform/deploy-config.git",
    web_url="https://git.example.com/gitlab/platform/deploy-config",
    api_url="https://git.example.com/gitlab/api/v4",
)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def headers_for(name: str, **extra: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": HEADER_OF[name.split("__", 1)[0]],
        "X-Gitlab-Token": SECRET,
        "X-Gitlab-Instance": "https://git.example.com",
        "X-Gitlab-Webhook-UUID": "8e6f4f5a-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
        "X-Gitlab-Event-UUID": EVENT_UUID,
        "Idempotency-Key": IDEMPOTENCY_KEY,
    }
    headers.update(extra)
    return headers


def deliver(
    name: str, payload: dict[str, Any] | None = None, *, options: IntakeOptions | None = None
) -> Outcome:
    body = json.dumps(payload if payload is not None else load(name)).encode()
    return handle_gitlab(
        headers=headers_for(name), body=body, secret=SECRET, options=options or IntakeOptions()
    )


def ignored(name: str, **kwargs: Any) -> str:
    outcome = deliver(name, **kwargs)
    assert outcome.event is None
    return outcome.reason


def rejected(headers: dict[str, str], body: bytes, secret: str = SECRET) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        handle_gitlab(headers=headers, body=body, secret=secret, options=IntakeOptions())
    return caught.value


# --- one line per fixture ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("merge_request__open", "opened"),
        ("merge_request__reopen", "reopened"),
        ("merge_request__update_new_commits", "synchronize"),
        ("merge_request__update_ready", "ready_for_review"),
    ],
)
def test_merge_request_queues_preview(name: str, action: str) -> None:
    outcome = deliver(name)
    assert (outcome.provider, outcome.event_name, outcome.delivery_id) == (
        "gitlab",
        "Merge Request Hook",
        IDEMPOTENCY_KEY,
    )
    assert outcome.event == PullRequestEvent(
        delivery_id=IDEMPOTENCY_KEY,
        repository=REPOSITORY,
        number=7,
        head_sha=HEAD,
        base_sha="",
        base_ref="main",
        head_ref="bump-web",
        action=action,
        author="jsmith",
        draft=False,
        installation_id=None,
    )
    assert outcome.reason == "preview job for platform/deploy-config#7"


def test_merge_request_update_title_only() -> None:
    assert ignored("merge_request__update_title_only") == (
        "merge request update without new commits needs no job"
    )


def test_merge_request_close() -> None:
    assert ignored("merge_request__close") == "Merge Request Hook action 'close' needs no job"


def test_merge_request_merge() -> None:
    assert ignored("merge_request__merge") == "Merge Request Hook action 'merge' needs no job"


def test_merge_request_draft_open() -> None:
    assert ignored("merge_request__draft_open").startswith("merge request !7 is a draft")


def test_merge_request_draft_open_previewed_when_enabled() -> None:
    event = deliver("merge_request__draft_open", options=IntakeOptions(preview_drafts=True)).event
    assert isinstance(event, PullRequestEvent)
    assert event.draft is True


def test_merge_request_draft_via_work_in_progress_only() -> None:
    # GitLab before 13.2 only sends work_in_progress.
    payload = load("merge_request__open")
    del payload["object_attributes"]["draft"]
    payload["object_attributes"]["work_in_progress"] = True
    assert "is a draft" in ignored("merge_request__open", payload=payload)


def test_merge_request_draft_with_new_commits_still_skipped() -> None:
    payload = load("merge_request__update_new_commits")
    payload["object_attributes"]["draft"] = True
    assert "is a draft" in ignored("merge_request__update_new_commits", payload=payload)


def test_note_sync() -> None:
    outcome = deliver("note__merge_request_sync")
    assert outcome.event == CommandEvent(
        delivery_id=IDEMPOTENCY_KEY,
        repository=REPOSITORY,
        number=7,
        command="sync",
        args=("web",),
        author="jsmith",
        comment_id=1244,
        installation_id=None,
    )
    assert outcome.reason == "command job for platform/deploy-config#7"


def test_note_without_action_field_counts_as_created() -> None:
    # Before GitLab 16.11 notes had no action and only creations fired hooks.
    payload = load("note__merge_request_sync")
    del payload["object_attributes"]["action"]
    assert isinstance(deliver("note__merge_request_sync", payload).event, CommandEvent)


def test_note_edited() -> None:
    assert ignored("note__merge_request_edited") == "note action 'update' needs no job"


def test_note_by_bot() -> None:
    assert ignored("note__merge_request_by_bot") == (
        "comment by bot project_15_bot_3f9a8c1e2d4b5a6f needs no job"
    )


def test_note_by_configured_bot() -> None:
    options = IntakeOptions(bot_logins=frozenset({"jsmith"}))
    assert (
        ignored("note__merge_request_sync", options=options) == "comment by bot jsmith needs no job"
    )


def test_system_note() -> None:
    payload = load("note__merge_request_sync")
    payload["object_attributes"]["system"] = True
    assert ignored("note__merge_request_sync", payload=payload) == "system note needs no job"


def test_note_on_issue() -> None:
    assert ignored("note__issue") == "comment is on a Issue, not a merge request"


def test_note_plain() -> None:
    assert ignored("note__merge_request_plain") == "comment is not a bot command"


def test_push_default_branch() -> None:
    outcome = deliver("push__default_branch")
    assert outcome.event == PushEvent(
        delivery_id=IDEMPOTENCY_KEY,
        repository=REPOSITORY,
        ref="refs/heads/main",
        after_sha=HEAD,
        before_sha=BEFORE,
        pusher="jsmith",
        installation_id=None,
    )
    assert outcome.reason == "deploy job for platform/deploy-config"


def test_push_other_branch() -> None:
    assert ignored("push__other_branch") == (
        "push to refs/heads/bump-web is not to the default branch main"
    )


def test_push_branch_deleted() -> None:
    assert ignored("push__branch_deleted") == "push deleted refs/heads/main"


def test_tag_push() -> None:
    assert ignored("tag_push__default") == "Tag Push Hook events need no job"


def test_pipeline() -> None:
    assert ignored("pipeline__default") == "Pipeline Hook events need no job"


def test_system_hook() -> None:
    body = json.dumps(load("push__default_branch")).encode()
    outcome = handle_gitlab(
        headers=headers_for("push__default_branch", **{"X-Gitlab-Event": "System Hook"}),
        body=body,
        secret=SECRET,
        options=IntakeOptions(),
    )
    assert (outcome.event, outcome.reason) == (None, "System Hook events need no job")


def test_event_round_trips_through_the_queue_format() -> None:
    from bot.events import from_task

    for name in ("merge_request__open", "note__merge_request_sync", "push__default_branch"):
        event = deliver(name).event
        assert event is not None
        assert from_task(json.loads(json.dumps(event.to_task()))) == event


# --- API roots of self-managed instances --------------------------------------------------


@pytest.mark.parametrize(
    ("web_url", "path", "expected"),
    [
        ("https://gitlab.com/group/project", "group/project", "https://gitlab.com/api/v4"),
        ("http://gitlab.internal:8080/a/b/c", "a/b/c", "http://gitlab.internal:8080/api/v4"),
        (
            "https://example.com/gitlab/group/sub/project",
            "group/sub/project",
            "https://example.com/gitlab/api/v4",
        ),
        (
            "https://example.com/gitlab/Group/Project/",
            "group/project",
            "https://example.com/gitlab/api/v4",
        ),
        ("https://example.com/elsewhere", "group/project", "https://example.com/api/v4"),
        ("https://user:pw@example.com/g/p", "g/p", "https://example.com/api/v4"),
    ],
)
def test_api_url(web_url: str, path: str, expected: str) -> None:
    assert api_url(web_url, path) == expected


def test_older_push_payload_with_top_level_project_id_only() -> None:
    payload = load("push__default_branch")
    del payload["project"]["id"]
    del payload["project"]["git_http_url"]
    event = deliver("push__default_branch", payload).event
    assert event is not None
    assert event.repository.id == 15
    assert event.repository.clone_url == REPOSITORY.clone_url  # from project.http_url


# --- token, delivery ids, bad requests ------------------------------------------------------


def _body() -> bytes:
    return json.dumps(load("merge_request__open")).encode()


def test_token_missing() -> None:
    headers = headers_for("merge_request__open")
    del headers["X-Gitlab-Token"]
    error = rejected(headers, _body())
    assert (error.status, error.message) == (
        401,
        "missing X-Gitlab-Token header: set a secret token on the webhook",
    )


def test_token_wrong() -> None:
    error = rejected(headers_for("merge_request__open", **{"X-Gitlab-Token": "guess"}), _body())
    assert error.status == 401
    assert "does not match" in error.message


def test_token_non_ascii() -> None:
    error = rejected(headers_for("merge_request__open", **{"X-Gitlab-Token": "ünïcode"}), _body())
    assert error.status == 401


def test_empty_secret_rejects_everything() -> None:
    error = rejected(
        headers_for("merge_request__open", **{"X-Gitlab-Token": ""}), _body(), secret=""
    )
    assert error.status == 401


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in headers_for("merge_request__open").items()}
    outcome = handle_gitlab(headers=headers, body=_body(), secret=SECRET, options=IntakeOptions())
    assert outcome.delivery_id == IDEMPOTENCY_KEY


def test_delivery_id_falls_back_to_event_uuid_then_body_digest() -> None:
    headers = headers_for("merge_request__open")
    del headers["Idempotency-Key"]
    body = _body()
    first = handle_gitlab(headers=headers, body=body, secret=SECRET, options=IntakeOptions())
    assert first.delivery_id == EVENT_UUID
    del headers["X-Gitlab-Event-UUID"]
    second = handle_gitlab(headers=headers, body=body, secret=SECRET, options=IntakeOptions())
    assert second.delivery_id == "sha256-" + hashlib.sha256(body).hexdigest()


def test_missing_event_header() -> None:
    headers = headers_for("merge_request__open")
    del headers["X-Gitlab-Event"]
    error = rejected(headers, _body())
    assert (error.status, error.message.startswith("missing X-Gitlab-Event header")) == (400, True)


def test_invalid_json() -> None:
    error = rejected(headers_for("merge_request__open"), b'{"object_kind": ')
    assert error.status == 400
    assert error.message.startswith("body is not valid JSON")


def test_too_large() -> None:
    error = rejected(headers_for("merge_request__open"), b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert error.status == 413


def _without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    del node[last]
    return payload


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("merge_request__open", "object_attributes.iid"),
        ("merge_request__open", "object_attributes.last_commit.id"),
        ("merge_request__open", "object_attributes.target_branch"),
        ("merge_request__open", "object_attributes.source_branch"),
        ("merge_request__open", "user.username"),
        ("merge_request__open", "project.web_url"),
        ("merge_request__open", "project.path_with_namespace"),
        ("merge_request__open", "project.default_branch"),
        ("note__merge_request_sync", "object_attributes.noteable_type"),
        ("note__merge_request_sync", "object_attributes.id"),
        ("note__merge_request_sync", "merge_request.iid"),
        ("note__merge_request_sync", "user.username"),
        ("push__default_branch", "ref"),
        ("push__default_branch", "after"),
        ("push__default_branch", "before"),
        ("push__default_branch", "project.default_branch"),
    ],
)
def test_missing_field_is_named(name: str, path: str) -> None:
    with pytest.raises(WebhookError) as caught:
        deliver(name, _without(load(name), path))
    assert caught.value.status == 400
    assert caught.value.message == f"payload is missing {path}"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "object_attributes.iid",
            "7",
            "payload field object_attributes.iid must be an integer, got a string",
        ),
        (
            "object_attributes",
            [],
            "payload field object_attributes must be an object, got an array",
        ),
        (
            "object_attributes.last_commit.id",
            12,
            "payload field object_attributes.last_commit.id must be a string, got a number",
        ),
        (
            "project.web_url",
            "javascript:alert(1)",
            "payload field project.web_url must be an http(s) URL",
        ),
        ("project.web_url", "http://[::1", "payload field project.web_url must be an http(s) URL"),
        (
            "object_attributes.draft",
            "no",
            "payload field object_attributes.draft must be true or false",
        ),
    ],
)
def test_mistyped_field_is_named(path: str, value: Any, message: str) -> None:
    payload = load("merge_request__open")
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(WebhookError) as caught:
        deliver("merge_request__open", payload)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)
