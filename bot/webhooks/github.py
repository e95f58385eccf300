"""GitHub webhook intake: verify ``X-Hub-Signature-256``, decode JSON or form deliveries, and
turn the few events the bot acts on into forge-neutral events.

Handled (anything else is answered "ignored" with the reason):

* ``ping`` → "pong";
* ``pull_request`` opened / reopened / synchronize / ready_for_review → preview
  (:class:`~bot.events.PullRequestEvent`); drafts wait for ready_for_review unless
  ``IntakeOptions.preview_drafts``;
* ``issue_comment`` created on a pull request, not by a bot, whose first line is a command →
  :class:`~bot.events.CommandEvent`;
* ``push`` to ``refs/heads/<default branch>``, not deleting it → deploy
  (:class:`~bot.events.PushEvent`).

Payload shapes follow GitHub's documented webhook payloads (examples in octokit/webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.commands import parse_command
from bot.events import CommandEvent, Event, PullRequestEvent, PushEvent, Repository
from bot.webhooks.base import (
    Headers,
    HeaderSource,
    IntakeOptions,
    Outcome,
    WebhookError,
    check_size,
    delivery_id,
    event_header,
    is_null_sha,
    optional,
    parse_json_object,
    printable,
    require,
    require_sha,
    require_url,
    url_root,
)
from bot.webhooks.router import Delivery, Router, action_of

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SHA1_SIGNATURE_HEADER = "X-Hub-Signature"
#: Most form fields a form-encoded delivery may carry (GitHub sends one: ``payload``).
MAX_FORM_FIELDS = 20

NO_SECRET = "no GitHub webhook secret is configured, so no delivery can be verified"
MISSING_SIGNATURE = f"missing {SIGNATURE_HEADER} header: set a secret on the webhook"
SHA1_ONLY = (
    f"missing {SIGNATURE_HEADER} header: only the SHA-1 {SHA1_SIGNATURE_HEADER} was sent, "
    "and SHA-1 signatures are not accepted"
)
MALFORMED_SIGNATURE = f"{SIGNATURE_HEADER} must look like 'sha256=<hex digest>'"
WRONG_SIGNATURE = f"{SIGNATURE_HEADER} does not match the body: check the webhook secret"
DRAFT_REASON = (
    "pull request #{number} is a draft: previewed once it is ready for review "
    "(or set GITOPS_PREVIEW_DRAFTS)"
)

router = Router("github")


def handle_github(
    *, headers: HeaderSource, body: bytes, secret: str, options: IntakeOptions
) -> Outcome:
    """Verify and parse one GitHub delivery.

    Raises :class:`WebhookError` (400/401/413) for anything wrong with the request; never
    another exception for sender-controlled input."""
    check_size(body, options.max_body_bytes)
    hdrs = Headers(headers)
    verify_signature(hdrs, body, secret)
    event_name = event_header(hdrs, EVENT_HEADER)
    delivery = delivery_id(hdrs, [DELIVERY_HEADER], body)
    payload = decode_body(hdrs, body)
    action = action_of(payload, "action", strict=router.handles(event_name))
    return router.dispatch(
        Delivery(
            provider="github",
            event_name=event_name,
            action=action,
            delivery_id=delivery,
            payload=payload,
            options=options,
        )
    )


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` (also used by tests/bench)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(headers: Headers, body: bytes, secret: str) -> None:
    """401 unless ``X-Hub-Signature-256`` is the HMAC-SHA256 of the raw body under ``secret``."""
    if not secret:
        # An empty key would let anyone compute a valid signature; refuse everything instead.
        raise WebhookError(401, NO_SECRET)
    given = headers.get(SIGNATURE_HEADER)
    if given is None:
        raise WebhookError(
            401, SHA1_ONLY if SHA1_SIGNATURE_HEADER in headers else MISSING_SIGNATURE
        )
    algorithm, sep, digest = given.strip().partition("=")
    if not sep or algorithm.strip().lower() != "sha256":
        raise WebhookError(401, MALFORMED_SIGNATURE)
    expected = sign(body, secret).encode("ascii")
    # compare_digest on str rejects non-ASCII with TypeError: compare bytes instead.
    offered = ("sha256=" + digest.strip().lower()).encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected, offered):
        raise WebhookError(401, WRONG_SIGNATURE)


def decode_body(headers: Headers, body: bytes) -> dict[str, Any]:
    """The JSON payload of a ``application/json`` or ``application/x-www-form-urlencoded``
    (``payload=<json>``) delivery."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return parse_json_object(body)
    if content_type == "application/x-www-form-urlencoded":
        return parse_json_object(_form_payload(body), what="payload form field")
    if not content_type:
        raise WebhookError(400, "missing Content-Type header")
    raise WebhookError(
        400,
        f"unsupported Content-Type {printable(content_type, limit=80)!r}: "
        "use application/json or application/x-www-form-urlencoded",
    )


def _form_payload(body: bytes) -> str:
    try:
        text = body.decode("ascii")
        fields = parse_qs(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        # Non-ASCII bytes, bad percent-encoded UTF-8, or too many fields.
        raise WebhookError(
            400, "form body is not valid application/x-www-form-urlencoded data"
        ) from None
    values = fields.get("payload")
    if not values:
        raise WebhookError(400, "form-encoded delivery has no payload field")
    if len(values) > 1:
        raise WebhookError(400, "form-encoded delivery has more than one payload field")
    return values[0]


# --- handlers ------------------------------------------------------------------------------


@router.route("ping")
def ping(delivery: Delivery) -> Event | str:
    """GitHub checks the hook after it is created or edited."""
    return "pong"


@router.route("pull_request", "opened", "reopened", "synchronize", "ready_for_review")
def pull_request_changed(delivery: Delivery) -> Event | str:
    """New or updated PR: preview it, unless it is a draft we are told to wait for."""
    p = delivery.payload
    event = PullRequestEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        number=require(p, "pull_request.number", int),
        head_sha=require_sha(p, "pull_request.head.sha"),
        base_sha=require_sha(p, "pull_request.base.sha"),
        base_ref=require(p, "pull_request.base.ref", str),
        head_ref=require(p, "pull_request.head.ref", str),
        action=delivery.action or "",
        author=require(p, "pull_request.user.login", str),
        draft=optional(p, "pull_request.draft", bool, False),
        installation_id=optional(p, "installation.id", int),
    )
    if (
        event.draft
        and not delivery.options.preview_drafts
        and delivery.action != "ready_for_review"
    ):
        return DRAFT_REASON.format(number=event.number)
    return event


@router.route("issue_comment", "created")
def comment_created(delivery: Delivery) -> Event | str:
    """A new comment on a PR whose first line is a bot command."""
    p = delivery.payload
    if optional(p, "issue.pull_request", dict) is None:
        return "comment is on an issue, not a pull request"
    login = require(p, "comment.user.login", str)
    if is_bot(p, login, delivery.options):
        return f"comment by bot {printable(login, limit=60)} needs no job"
    command = parse_command(optional(p, "comment.body", str, ""))
    if command is None:
        return "comment is not a bot command"
    return CommandEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        number=require(p, "issue.number", int),
        command=command.name,
        args=command.args,
        author=login,
        comment_id=require(p, "comment.id", int),
        installation_id=optional(p, "installation.id", int),
    )


@router.route("push")
def push(delivery: Delivery) -> Event | str:
    """Commits pushed: deploy when they land on the default branch."""
    p = delivery.payload
    ref = require(p, "ref", str)
    shown = printable(ref, limit=100)
    if optional(p, "deleted", bool, False):
        return f"push deleted {shown}"
    if not ref.startswith("refs/heads/"):
        return f"push to {shown} is not to a branch"
    default_branch = require(p, "repository.default_branch", str)
    if ref != f"refs/heads/{default_branch}":
        return f"push to {shown} is not to the default branch {printable(default_branch)}"
    after = require_sha(p, "after")
    if is_null_sha(after):
        return f"push deleted {shown}"
    return PushEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        ref=ref,
        after_sha=after,
        before_sha=require_sha(p, "before"),
        pusher=optional(p, "pusher.name", str) or optional(p, "sender.login", str) or "",
        installation_id=optional(p, "installation.id", int),
    )


# --- payload pieces ------------------------------------------------------------------------


def is_bot(payload: Mapping[str, Any], login: str, options: IntakeOptions) -> bool:
    """True for GitHub Apps (``type: Bot``, ``name[bot]``) and the configured bot logins."""
    return (
        optional(payload, "comment.user.type", str) == "Bot"
        or login.lower().endswith("[bot]")
        or options.is_bot_login(login)
    )


def repository(payload: Mapping[str, Any]) -> Repository:
    """The payload's ``repository`` as a forge-neutral :class:`Repository`."""
    full_name = require(payload, "repository.full_name", str)
    web_url = require_url(payload, "repository.html_url")
    return Repository(
        provider="github",
        full_name=full_name,
        id=require(payload, "repository.id", int),
        default_branch=require(payload, "repository.default_branch", str),
        clone_url=require_url(payload, "repository.clone_url"),
        web_url=web_url,
        api_url=api_url(payload, full_name, web_url),
    )


def api_url(payload: Mapping[str, Any], full_name: str, web_url: str) -> str:
    """The REST API root serving this repository: ``https://api.github.com`` on github.com,
    ``https://<host>/api/v3`` on GitHub Enterprise Server.

    Read from ``repository.url`` (``<root>/repos/<owner>/<name>``), except in ``push``
    payloads where that field is the web URL, so ``repository.hooks_url`` is tried next."""
    for path, tail in (("repository.url", ""), ("repository.hooks_url", "/hooks")):
        url = optional(payload, path, str)
        suffix = f"/repos/{full_name}{tail}"
        if url and url.lower().endswith(suffix.lower()):
            return require_url(payload, path)[: -len(suffix)]
    # Neither field names the API: github.com has its own API host, GHE serves it under /api/v3.
    if urlsplit(web_url).hostname == "github.com":
        return "https://api.github.com"
    return f"{url_root(web_url)}/api/v3"
