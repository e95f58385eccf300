"""GitHub intake: one line per fixture (what job, or why none), then signatures, encodings and
malformed payloads."""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from bot.events import CommandEvent, PullRequestEvent, PushEvent
from bot.settings import MAX_BODY_BYTES
from bot.webhooks import IntakeOptions, Outcome, WebhookError, handle_github
from bot.webhooks.github import sign

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks" / "github"
SECRET = "It's a Secret to Everybody"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
BASE = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def load(name: str) -> dict[str, Any]:
    """The fixture ``<event>__<variant>`` as a dict."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def event_of(name: str) -> str:
    return name.split("__", 1)[0]


def signed_headers(body: bytes, event: str, **extra: str) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": DELIVERY,
        "X-Hub-Signature-256": sign(body, SECRET),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    headers.update(extra)
    return headers


def deliver(
    name: str,
    payload: dict[str, Any] | None = None,
    *,
    options: IntakeOptions | None = None,
    event: str | None = None,
) -> Outcome:
    """Sign and hand a fixture (or a modified copy) to ``handle_github``, as GitHub would."""
    body = json.dumps(payload if payload is not None else load(name)).encode()
    return handle_github(
        headers=signed_headers(body, event or event_of(name)),
        body=body,
        secret=SECRET,
        options=options or IntakeOptions(),
    )


def ignored(name: str, **kwargs: Any) -> str:
    outcome = deliver(name, **kwargs)
    assert outcome.event is None
    return outcome.reason


def rejected(headers: dict[str, str], body: bytes, secret: str = SECRET) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        handle_github(headers=headers, body=body, secret=secret, options=IntakeOptions())
    return caught.value


# --- one line per fixture ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pull_request__opened",
        "pull_request__synchronize",
        "pull_request__reopened",
        "pull_request__ready_for_review",
    ],
)
def test_pull_request_queues_preview(name: str) -> None:
    outcome = deliver(name)
    assert outcome.provider == "github"
    assert outcome.event_name == "pull_request"
    assert outcome.delivery_id == DELIVERY
    assert outcome.event == PullRequestEvent(
        delivery_id=DELIVERY,
        repository=outcome.event.repository if outcome.event else None,  # type: ignore[arg-type]
        number=2,
        head_sha=HEAD,
        base_sha=BASE,
        base_ref="main",
        head_ref="bump-web",
        action=name.split("__")[1],
        author="octocat",
        draft=False,
        installation_id=2311213,
    )
    assert outcome.reason == "preview job for acme-platform/deploy-config#2"


def test_repository_fields() -> None:
    outcome = deliver("pull_request__opened")
    assert outcome.event is not None
    repo = outcome.event.repository
    assert (repo.provider, repo.full_name, repo.id, repo.default_branch) == (
        "github",
        "acme-platform/deploy-config",
        186853002,
        "main",
    )
    assert repo.clone_url == "https://github.com/acme-platform/deploy-config.git"
    assert repo.web_url == "https://github.com/acme-platform/deploy-config"
    assert repo.api_url == "https://api.github.com"


def test_draft_opened_is_skipped() -> None:
    assert ignored("pull_request__draft_opened").startswith("pull request #2 is a draft")


def test_draft_opened_previewed_when_enabled() -> None:
    outcome = deliver("pull_request__draft_opened", options=IntakeOptions(preview_drafts=True))
    assert isinstance(outcome.event, PullRequestEvent)
    assert outcome.event.draft is True


def test_ready_for_review_of_a_draft_payload_is_previewed() -> None:
    payload = load("pull_request__ready_for_review")
    payload["pull_request"]["draft"] = True
    assert isinstance(deliver("pull_request__ready_for_review", payload).event, PullRequestEvent)


def test_pull_request_closed() -> None:
    assert ignored("pull_request__closed") == "pull_request action 'closed' needs no job"


def test_pull_request_labeled() -> None:
    assert ignored("pull_request__labeled") == "pull_request action 'labeled' needs no job"


def test_comment_sync() -> None:
    outcome = deliver("issue_comment__created_sync")
    assert isinstance(outcome.event, CommandEvent)
    assert (outcome.event.command, outcome.event.args) == ("sync", ())
    assert (outcome.event.number, outcome.event.author, outcome.event.comment_id) == (
        2,
        "octocat",
        492700400,
    )
    assert outcome.event.installation_id == 2311213
    assert outcome.reason == "command job for acme-platform/deploy-config#2"


def test_comment_sync_apps() -> None:
    event = deliver("issue_comment__created_sync_apps").event
    assert isinstance(event, CommandEvent)
    assert (event.command, event.args) == ("sync", ("web", "api"))


def test_comment_help() -> None:
    event = deliver("issue_comment__created_help").event
    assert isinstance(event, CommandEvent)
    assert (event.command, event.args) == ("help", ())


def test_comment_invalid_sync_is_queued_as_invalid() -> None:
    payload = load("issue_comment__created_sync")
    payload["comment"]["body"] = "/sync web ../etc"
    event = deliver("issue_comment__created_sync", payload).event
    assert isinstance(event, CommandEvent)
    assert (event.command, event.args) == ("invalid", ("web", "../etc"))


def test_comment_on_issue() -> None:
    assert (
        ignored("issue_comment__created_on_issue") == "comment is on an issue, not a pull request"
    )


def test_comment_edited() -> None:
    assert ignored("issue_comment__edited") == "issue_comment action 'edited' needs no job"


def test_comment_deleted() -> None:
    payload = load("issue_comment__edited")
    payload["action"] = "deleted"
    assert ignored("issue_comment__edited", payload=payload) == (
        "issue_comment action 'deleted' needs no job"
    )


def test_comment_by_bot() -> None:
    assert ignored("issue_comment__created_by_bot") == "comment by bot renovate[bot] needs no job"


def test_comment_by_bot_login_suffix_without_type() -> None:
    payload = load("issue_comment__created_by_bot")
    payload["comment"]["user"]["type"] = "User"
    assert "by bot" in ignored("issue_comment__created_by_bot", payload=payload)


def test_comment_by_configured_bot_login() -> None:
    options = IntakeOptions(bot_logins=frozenset({"OctoCat"}))
    assert ignored("issue_comment__created_sync", options=options) == (
        "comment by bot octocat needs no job"
    )


def test_comment_not_command() -> None:
    assert ignored("issue_comment__created_not_command") == "comment is not a bot command"


def test_push_default_branch() -> None:
    outcome = deliver("push__default_branch")
    assert outcome.event == PushEvent(
        delivery_id=DELIVERY,
        repository=outcome.event.repository if outcome.event else None,  # type: ignore[arg-type]
        ref="refs/heads/main",
        after_sha=HEAD,
        before_sha=BEFORE,
        pusher="octocat",
        installation_id=2311213,
    )
    assert outcome.event.repository.api_url == "https://api.github.com"
    assert outcome.reason == "deploy job for acme-platform/deploy-config"


def test_push_other_branch() -> None:
    assert ignored("push__other_branch") == (
        "push to refs/heads/bump-web is not to the default branch main"
    )


def test_push_tag() -> None:
    assert ignored("push__tag") == "push to refs/tags/v1.4.2 is not to a branch"


def test_push_deleted() -> None:
    assert ignored("push__deleted") == "push deleted refs/heads/main"


def test_ping() -> None:
    outcome = deliver("ping__default")
    assert (outcome.event, outcome.reason, outcome.event_name) == (None, "pong", "ping")


def test_unknown_event() -> None:
    assert ignored("ping__default", event="watch") == "watch events need no job"
    assert ignored("pull_request__opened", event="check_run") == (
        "check_run action 'opened' needs no job"
    )


def test_event_round_trips_through_the_queue_format() -> None:
    from bot.events import from_task

    for name in (
        "pull_request__opened",
        "issue_comment__created_sync_apps",
        "push__default_branch",
    ):
        event = deliver(name).event
        assert event is not None
        assert from_task(json.loads(json.dumps(event.to_task()))) == event


# --- API roots ----------------------------------------------------------------------------


def _rehost(payload: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(payload).replace(old, new))


def test_enterprise_api_url_from_repository_url() -> None:
    payload = _rehost(
        load("pull_request__opened"), "https://api.github.com", "https://ghe.example.com/api/v3"
    )
    payload = _rehost(payload, "https://github.com", "https://ghe.example.com")
    event = deliver("pull_request__opened", payload).event
    assert event is not None
    assert event.repository.api_url == "https://ghe.example.com/api/v3"


def test_enterprise_api_url_for_push_from_hooks_url() -> None:
    # In push payloads repository.url is the web URL; hooks_url still names the API.
    payload = _rehost(
        load("push__default_branch"), "https://api.github.com", "https://ghe.example.com/api/v3"
    )
    payload = _rehost(payload, "https://github.com", "https://ghe.example.com")
    event = deliver("push__default_branch", payload).event
    assert event is not None
    assert event.repository.api_url == "https://ghe.example.com/api/v3"


def test_enterprise_api_url_fallback_without_api_fields() -> None:
    payload = _rehost(load("push__default_branch"), "https://github.com", "https://ghe.example.com")
    del payload["repository"]["hooks_url"]
    event = deliver("push__default_branch", payload).event
    assert event is not None
    assert event.repository.api_url == "https://ghe.example.com/api/v3"


# --- signatures ---------------------------------------------------------------------------


def _body() -> bytes:
    return json.dumps(load("pull_request__opened")).encode()


def test_signature_missing() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    del headers["X-Hub-Signature-256"]
    error = rejected(headers, body)
    assert (error.status, error.message) == (
        401,
        "missing X-Hub-Signature-256 header: set a secret on the webhook",
    )


def test_signature_wrong() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["X-Hub-Signature-256"] = sign(body, "another secret")
    error = rejected(headers, body)
    assert error.status == 401
    assert "does not match" in error.message


def test_signature_over_other_body() -> None:
    body = _body()
    headers = signed_headers(body + b" ", "pull_request")
    assert rejected(headers, body).status == 401


def test_signature_wrong_algorithm_prefix() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].replace("sha256=", "sha512=")
    error = rejected(headers, body)
    assert (error.status, error.message) == (
        401,
        "X-Hub-Signature-256 must look like 'sha256=<hex digest>'",
    )


def test_signature_sha1_only() -> None:
    import hashlib
    import hmac

    body = _body()
    headers = signed_headers(body, "pull_request")
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    error = rejected(headers, body)
    assert error.status == 401
    assert "SHA-1" in error.message


def test_signature_non_ascii_header() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["X-Hub-Signature-256"] = "sha256=é" * 3
    assert rejected(headers, body).status == 401


def test_signature_uppercase_hex_and_header_case_accepted() -> None:
    body = _body()
    headers = {k.lower(): v for k, v in signed_headers(body, "pull_request").items()}
    headers["x-hub-signature-256"] = "sha256=" + headers["x-hub-signature-256"][7:].upper()
    outcome = handle_github(headers=headers, body=body, secret=SECRET, options=IntakeOptions())
    assert outcome.event is not None


def test_empty_secret_rejects_everything() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["X-Hub-Signature-256"] = sign(body, "")
    error = rejected(headers, body, secret="")
    assert error.status == 401
    assert "no GitHub webhook secret" in error.message


def test_signature_checked_before_anything_else() -> None:
    body = b"not json"
    error = rejected({"Content-Type": "text/plain"}, body)
    assert error.status == 401


# --- encodings and headers ----------------------------------------------------------------


def test_form_encoded_delivery() -> None:
    payload = json.dumps(load("issue_comment__created_sync_apps"))
    body = urllib.parse.urlencode({"payload": payload}).encode()
    headers = signed_headers(body, "issue_comment")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    outcome = handle_github(headers=headers, body=body, secret=SECRET, options=IntakeOptions())
    assert isinstance(outcome.event, CommandEvent)
    assert outcome.event.args == ("web", "api")


def test_form_encoded_without_payload_field() -> None:
    body = b"other=1"
    headers = signed_headers(body, "issue_comment")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    error = rejected(headers, body)
    assert (error.status, error.message) == (400, "form-encoded delivery has no payload field")


def test_form_encoded_with_bad_percent_encoding() -> None:
    body = b"payload=%ff%fe"
    headers = signed_headers(body, "issue_comment")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert rejected(headers, body).status == 400


def test_json_with_charset_parameter() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["Content-Type"] = "application/json; charset=utf-8"
    assert handle_github(headers=headers, body=body, secret=SECRET, options=IntakeOptions()).event


def test_unsupported_content_type() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["Content-Type"] = "text/xml"
    error = rejected(headers, body)
    assert error.status == 400
    assert "unsupported Content-Type 'text/xml'" in error.message


def test_missing_content_type() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    del headers["Content-Type"]
    assert rejected(headers, body).message == "missing Content-Type header"


def test_missing_event_header() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    del headers["X-GitHub-Event"]
    error = rejected(headers, body)
    assert error.status == 400
    assert "missing X-GitHub-Event header" in error.message


def test_missing_delivery_header_falls_back_to_body_digest() -> None:
    import hashlib

    body = _body()
    headers = signed_headers(body, "pull_request")
    del headers["X-GitHub-Delivery"]
    outcome = handle_github(headers=headers, body=body, secret=SECRET, options=IntakeOptions())
    assert outcome.delivery_id == "sha256-" + hashlib.sha256(body).hexdigest()


def test_malformed_delivery_header() -> None:
    body = _body()
    headers = signed_headers(body, "pull_request")
    headers["X-GitHub-Delivery"] = "two words"
    assert rejected(headers, body).status == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, got an array"),
        (b'{"a": NaN}', "body is not valid JSON"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is"),
        (b'{"n": ' + b"9" * 5000 + b"}", "body is not valid JSON"),
    ],
)
def test_invalid_json(body: bytes, fragment: str) -> None:
    error = rejected(signed_headers(body, "pull_request"), body)
    assert error.status == 400
    assert fragment in error.message


def test_too_large() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    error = rejected(signed_headers(b"", "pull_request"), body)
    assert error.status == 413


# --- missing and mistyped fields ----------------------------------------------------------


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
        ("pull_request__synchronize", "pull_request.number"),
        ("pull_request__synchronize", "pull_request.head.sha"),
        ("pull_request__synchronize", "pull_request.base.sha"),
        ("pull_request__synchronize", "pull_request.base.ref"),
        ("pull_request__synchronize", "pull_request.head.ref"),
        ("pull_request__synchronize", "pull_request.user.login"),
        ("pull_request__synchronize", "repository.full_name"),
        ("pull_request__synchronize", "repository.id"),
        ("pull_request__synchronize", "repository.default_branch"),
        ("pull_request__synchronize", "repository.clone_url"),
        ("pull_request__synchronize", "repository.html_url"),
        ("pull_request__synchronize", "pull_request"),
        ("issue_comment__created_sync", "issue.number"),
        ("issue_comment__created_sync", "comment.id"),
        ("issue_comment__created_sync", "comment.user.login"),
        ("push__default_branch", "ref"),
        ("push__default_branch", "after"),
        ("push__default_branch", "before"),
        ("push__default_branch", "repository.default_branch"),
    ],
)
def test_missing_field_is_named(name: str, path: str) -> None:
    with pytest.raises(WebhookError) as caught:
        deliver(name, _without(load(name), path))
    assert caught.value.status == 400
    assert path in caught.value.message
    assert caught.value.message.startswith("payload is missing ")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "pull_request.number",
            "2",
            "payload field pull_request.number must be an integer, got a string",
        ),
        (
            "pull_request.number",
            True,
            "payload field pull_request.number must be an integer, got a boolean",
        ),
        ("pull_request.number", 2**70, "payload field pull_request.number must be between 0 and"),
        ("pull_request.number", -1, "payload field pull_request.number must be between 0 and"),
        (
            "pull_request.head",
            [],
            "payload field pull_request.head must be an object, got an array",
        ),
        (
            "pull_request.head.sha",
            "not-a-sha",
            "payload field pull_request.head.sha must be a 40- or 64-character hex commit SHA",
        ),
        ("pull_request.head.ref", "", "payload field pull_request.head.ref must not be empty"),
        (
            "pull_request.head.ref",
            "a\x00b",
            "payload field pull_request.head.ref must not contain NUL characters",
        ),
        (
            "pull_request.draft",
            "yes",
            "payload field pull_request.draft must be true or false, got a string",
        ),
        ("pull_request.head", None, "payload is missing pull_request.head.sha"),
        (
            "repository.clone_url",
            "ext::sh -c touch% /tmp/pwned",
            "payload field repository.clone_url must be an http(s) URL",
        ),
        (
            "repository.clone_url",
            "file:///etc/passwd",
            "payload field repository.clone_url must be an http(s) URL",
        ),
        ("action", 7, "payload field action must be a string, got a number"),
    ],
)
def test_mistyped_field_is_named(path: str, value: Any, message: str) -> None:
    payload = load("pull_request__synchronize")
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(WebhookError) as caught:
        deliver("pull_request__synchronize", payload)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)


def test_lone_surrogate_in_a_field() -> None:
    body = json.dumps(load("pull_request__synchronize")).replace('"bump-web"', '"\\ud800"').encode()
    error = rejected(signed_headers(body, "pull_request"), body)
    assert error.status == 400
    assert "head.ref" in error.message


def test_unicode_fields_are_kept() -> None:
    payload = load("push__default_branch")
    payload["pusher"]["name"] = "Zoë 🚀"
    event = deliver("push__default_branch", payload).event
    assert isinstance(event, PushEvent)
    assert event.pusher == "Zoë 🚀"


def test_reason_escapes_control_characters() -> None:
    payload = load("pull_request__labeled")
    payload["action"] = "evil\nline"
    reason = ignored("pull_request__labeled", payload=payload)
    assert "\n" not in reason
    assert reason == "pull_request action 'evil\\nline' needs no job"


def test_nul_in_comment_body_is_just_text() -> None:
    payload = load("issue_comment__created_sync")
    payload["comment"]["body"] = "/sync web\x00"
    event = deliver("issue_comment__created_sync", payload).event
    assert isinstance(event, CommandEvent)
    assert event.command == "invalid"


def test_flask_request_headers_are_accepted() -> None:
    # What bot.app passes: werkzeug's EnvironHeaders, built from a WSGI environ.
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    body = _body()
    headers = [(k.lower(), v) for k, v in signed_headers(body, "pull_request").items()]
    request = Request(EnvironBuilder(method="POST", data=body, headers=headers).get_environ())
    outcome = handle_github(
        headers=request.headers, body=request.get_data(), secret=SECRET, options=IntakeOptions()
    )
    assert outcome.delivery_id == DELIVERY
    assert isinstance(outcome.event, PullRequestEvent)


def test_the_body_limit_is_the_operators_setting() -> None:
    """One limit, GITOPS_MAX_BODY_BYTES, passed in the options: no second, fixed one."""
    body = b'{"zen": "a longer body than the limit"}'
    headers = {"X-GitHub-Event": "ping", "Content-Type": "application/json"}
    with pytest.raises(WebhookError) as info:
        handle_github(
            headers=headers, body=body, secret="s", options=IntakeOptions(max_body_bytes=10)
        )
    assert info.value.status == 413 and "10 bytes" in info.value.message
