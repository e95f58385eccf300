"""GitLab webhook intake: check ``X-Gitlab-Token``, decode the JSON body, and turn the few
events the bot acts on into forge-neutral events. Works with self-managed GitLab, including
instances served under a sub-path: the API root is derived from each payload.

Handled (anything else, e.g. ``System Hook``, ``Tag Push Hook``, ``Pipeline Hook``, is answered
"ignored" with the reason):

* ``Merge Request Hook`` open / reopen, update carrying new commits (``oldrev``), and update
  marking a draft ready → preview (:class:`~bot.events.PullRequestEvent`). Its ``action`` is
  given in GitHub's words so workers need not care: ``opened``, ``reopened``, ``synchronize``,
  ``ready_for_review``. Merge request hooks carry no target-branch SHA, so ``base_sha`` is
  ``""``: the worker resolves ``base_ref`` itself. ``author`` is the user who triggered the
  hook (the payload has only the MR author's numeric id).
* ``Note Hook`` creating a comment on a merge request, not a system note and not by a bot,
  whose first line is a command → :class:`~bot.events.CommandEvent`.
* ``Push Hook`` to ``refs/heads/<project default branch>``, not deleting it → deploy
  (:class:`~bot.events.PushEvent`).

Delivery id: ``Idempotency-Key`` (kept across GitLab's retries and manual resends), else
``X-Gitlab-Event-UUID`` (older GitLab), else a SHA-256 of the body.

Payload shapes follow GitLab's ``doc/user/project/integrations/webhook_events.md``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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

EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"
DELIVERY_HEADERS = ("Idempotency-Key", "X-Gitlab-Event-UUID")

NO_SECRET = "no GitLab webhook secret is configured, so no delivery can be verified"
MISSING_TOKEN = f"missing {TOKEN_HEADER} header: set a secret token on the webhook"
WRONG_TOKEN = f"{TOKEN_HEADER} does not match: check the webhook's secret token"
DRAFT_REASON = (
    "merge request !{number} is a draft: previewed once it is marked ready "
    "(or set GITOPS_PREVIEW_DRAFTS)"
)

#: GitLab's GitHub-style names for merge request actions, so workers see one vocabulary.
_ACTIONS = {"open": "opened", "reopen": "reopened", "update": "synchronize"}
#: Users GitLab creates for project and group access tokens: ``project_42_bot_<hex>``.
_TOKEN_BOT = re.compile(r"(?:project|group)_\d+_bot(?:_[0-9a-f]+)?", re.IGNORECASE)

router = Router("gitlab")


def handle_gitlab(
    *, headers: HeaderSource, body: bytes, secret: str, options: IntakeOptions
) -> Outcome:
    """Verify and parse one GitLab delivery.

    Raises :class:`WebhookError` (400/401/413) for anything wrong with the request; never
    another exception for sender-controlled input."""
    check_size(body, options.max_body_bytes)
    hdrs = Headers(headers)
    verify_token(hdrs, secret)
    event_name = event_header(hdrs, EVENT_HEADER)
    delivery = delivery_id(hdrs, DELIVERY_HEADERS, body)
    payload = parse_json_object(body)
    action = action_of(payload, "object_attributes.action", strict=router.handles(event_name))
    return router.dispatch(
        Delivery(
            provider="gitlab",
            event_name=event_name,
            action=action,
            delivery_id=delivery,
            payload=payload,
            options=options,
        )
    )


def verify_token(headers: Headers, secret: str) -> None:
    """401 unless ``X-Gitlab-Token`` equals ``secret`` (compared in constant time)."""
    if not secret:
        raise WebhookError(401, NO_SECRET)
    given = headers.get(TOKEN_HEADER)
    if given is None:
        raise WebhookError(401, MISSING_TOKEN)
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str.
    if not hmac.compare_digest(secret.encode("utf-8"), given.encode("utf-8", "surrogatepass")):
        raise WebhookError(401, WRONG_TOKEN)


# --- handlers ------------------------------------------------------------------------------


@router.route("Merge Request Hook", "open", "reopen", "update")
def merge_request_changed(delivery: Delivery) -> Event | str:
    """New, reopened or updated MR: preview when there is something new to show."""
    p = delivery.payload
    action = _ACTIONS[delivery.action or "open"]
    if delivery.action == "update":
        if became_ready(p):
            action = "ready_for_review"
        elif optional(p, "object_attributes.oldrev", str) is None:
            return "merge request update without new commits needs no job"
    event = PullRequestEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        number=require(p, "object_attributes.iid", int),
        head_sha=require_sha(p, "object_attributes.last_commit.id"),
        base_sha="",
        base_ref=require(p, "object_attributes.target_branch", str),
        head_ref=require(p, "object_attributes.source_branch", str),
        action=action,
        author=require(p, "user.username", str),
        draft=is_draft(p),
    )
    if event.draft and not delivery.options.preview_drafts and action != "ready_for_review":
        return DRAFT_REASON.format(number=event.number)
    return event


@router.route("Note Hook")
def note(delivery: Delivery) -> Event | str:
    """A new comment on an MR whose first line is a bot command."""
    p = delivery.payload
    # ``action`` exists since GitLab 16.11 (when edits started firing hooks); before, only
    # creations fired, so no action means "create".
    if delivery.action not in (None, "create"):
        return f"note action '{printable(delivery.action or '', limit=60)}' needs no job"
    noteable = require(p, "object_attributes.noteable_type", str)
    if noteable != "MergeRequest":
        return f"comment is on a {printable(noteable, limit=60)}, not a merge request"
    if optional(p, "object_attributes.system", bool, False):
        return "system note needs no job"
    username = require(p, "user.username", str)
    if is_bot(p, username, delivery.options):
        return f"comment by bot {printable(username, limit=60)} needs no job"
    command = parse_command(optional(p, "object_attributes.note", str, ""))
    if command is None:
        return "comment is not a bot command"
    return CommandEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        number=require(p, "merge_request.iid", int),
        command=command.name,
        args=command.args,
        author=username,
        comment_id=require(p, "object_attributes.id", int),
    )


@router.route("Push Hook")
def push(delivery: Delivery) -> Event | str:
    """Commits pushed: deploy when they land on the default branch."""
    p = delivery.payload
    ref = require(p, "ref", str)
    shown = printable(ref, limit=100)
    after = require_sha(p, "after")
    if is_null_sha(after):
        return f"push deleted {shown}"
    if not ref.startswith("refs/heads/"):
        return f"push to {shown} is not to a branch"
    default_branch = require(p, "project.default_branch", str)
    if ref != f"refs/heads/{default_branch}":
        return f"push to {shown} is not to the default branch {printable(default_branch)}"
    return PushEvent(
        delivery_id=delivery.delivery_id,
        repository=repository(p),
        ref=ref,
        after_sha=after,
        before_sha=require_sha(p, "before"),
        pusher=optional(p, "user_username", str) or optional(p, "user_name", str) or "",
    )


# --- payload pieces ------------------------------------------------------------------------


def is_draft(payload: Mapping[str, Any]) -> bool:
    """``draft`` (GitLab 13.2+) or its older name ``work_in_progress``."""
    return bool(
        optional(payload, "object_attributes.draft", bool, False)
        or optional(payload, "object_attributes.work_in_progress", bool, False)
    )


def became_ready(payload: Mapping[str, Any]) -> bool:
    """True when this update turned a draft MR into a ready one (``changes.draft``)."""
    for name in ("draft", "work_in_progress"):
        if optional(payload, f"changes.{name}", dict) is None:
            continue
        before = optional(payload, f"changes.{name}.previous", bool, False)
        now = optional(payload, f"changes.{name}.current", bool, False)
        if before and not now:
            return True
    return False


def is_bot(payload: Mapping[str, Any], username: str, options: IntakeOptions) -> bool:
    """True for access-token bot users, users flagged ``bot``, and configured bot logins."""
    return (
        optional(payload, "user.bot", bool, False)
        or _TOKEN_BOT.fullmatch(username) is not None
        or options.is_bot_login(username)
    )


def repository(payload: Mapping[str, Any]) -> Repository:
    """The payload's ``project`` as a forge-neutral :class:`Repository`."""
    web_url = require_url(payload, "project.web_url")
    full_name = require(payload, "project.path_with_namespace", str)
    project_id = optional(payload, "project.id", int)
    if project_id is None:
        # Older push payloads carry the id only at the top level.
        project_id = require(payload, "project_id", int)
    clone_path = (
        "project.git_http_url"
        if optional(payload, "project.git_http_url", str)
        else "project.http_url"
        if optional(payload, "project.http_url", str)
        else "project.git_http_url"
    )
    return Repository(
        provider="gitlab",
        full_name=full_name,
        id=project_id,
        default_branch=require(payload, "project.default_branch", str),
        clone_url=require_url(payload, clone_path),
        web_url=web_url,
        api_url=api_url(web_url, full_name),
    )


def api_url(web_url: str, path_with_namespace: str) -> str:
    """``<instance root>/api/v4``, keeping a relative URL root such as ``/gitlab``.

    The instance root is the project's web URL minus its ``path_with_namespace``."""
    path = urlsplit(web_url).path.rstrip("/")
    suffix = "/" + path_with_namespace.strip("/")
    prefix = path[: -len(suffix)] if path.lower().endswith(suffix.lower()) else ""
    return f"{url_root(web_url)}{prefix}/api/v4"
