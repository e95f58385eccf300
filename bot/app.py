"""The web process: verify a delivery, turn it into an event, queue it, answer in JSON.

Nothing else happens in a request: no clone, no cluster call, no forge call (design principle 3).
Every answer is a JSON object saying what was done with the delivery, because forges show the
body in their delivery logs and that is where operators debug:

- ``202 {"delivery", "action": "queued", "job", "job_id"}``: a new job is persisted in Redis;
- ``200 {"delivery", "action": "duplicate", "job", "job_id"}``: a redelivery; nothing new queued;
- ``200 {"delivery", "action": "ignored", "reason"}``: the delivery needs no job;
- ``200 {"delivery", "action": "pong"}``: GitHub's ping;
- ``400/401/413 {"delivery", "action": "rejected", "error"}``: the sender's fault;
- ``503 {"delivery", "action": "failed", "error"}``: the queue is unreachable; redeliver later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import orjson
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.errors import QueueUnavailable
from bot.forges.policy import intake_refusal
from bot.metrics import CONTENT_TYPE, WebMetrics
from bot.queue import JobQueue, redis_client
from bot.settings import Settings
from bot.webhooks import (
    IntakeOptions,
    Outcome,
    WebhookError,
    github,
    gitlab,
    handle_github,
    handle_gitlab,
)

log = logging.getLogger("gitops_bot.web")

Handler = Callable[..., Outcome]

PROVIDERS: Final[dict[str, tuple[str, tuple[str, ...], str, Handler]]] = {
    # provider: (event header, delivery headers in order of preference, secret setting, parser)
    "github": (
        github.EVENT_HEADER,
        (github.DELIVERY_HEADER,),
        "GITHUB_WEBHOOK_SECRET",
        handle_github,
    ),
    "gitlab": (
        gitlab.EVENT_HEADER,
        gitlab.DELIVERY_HEADERS,
        "GITLAB_WEBHOOK_SECRET",
        handle_gitlab,
    ),
}

KNOWN_EVENTS: Final = frozenset(
    {
        "ping",
        "pull_request",
        "issue_comment",
        "push",
        "pull_request_review",
        "pull_request_review_comment",
        "check_run",
        "check_suite",
        "status",
        "installation",
        "create",
        "delete",
        "Merge Request Hook",
        "Note Hook",
        "Push Hook",
        "Tag Push Hook",
        "Pipeline Hook",
        "Job Hook",
        "Issue Hook",
        "System Hook",
    }
)
"""Event names used as metric labels; anything else is counted as "other" so a sender cannot
grow the metrics without bound."""

NOT_CONFIGURED: Final = "{provider} webhooks are not configured on this bot: set {setting}"
TOO_LARGE: Final = "body is larger than the {limit} bytes this bot accepts"
QUEUE_DOWN: Final = "the job queue is unavailable; nothing was queued, redeliver later"


def create_app(settings: Settings, *, queue: JobQueue | None = None) -> Flask:
    """The Flask app. ``queue`` defaults to one on ``settings.redis_url``."""
    app = Flask("gitops_bot")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if queue is None:
        if not settings.redis_url:
            raise ValueError("create_app needs settings.redis_url or a queue")
        queue = JobQueue(
            redis_client(settings.redis_url, timeout=settings.redis_timeout),
            delivery_ttl=settings.delivery_ttl,
        )
    metrics = WebMetrics()
    options = IntakeOptions(
        preview_drafts=settings.preview_drafts,
        bot_logins=settings.bot_logins,
        max_body_bytes=settings.max_body_bytes,
    )
    secrets = {"github": settings.github_webhook_secret, "gitlab": settings.gitlab_webhook_secret}
    app.extensions["gitops"] = {"queue": queue, "metrics": metrics, "settings": settings}

    @app.post("/webhooks/<provider>")
    def webhook(provider: str) -> tuple[Response, int]:
        if provider not in PROVIDERS:
            return jsonify(error=f"no webhook endpoint for {provider!r}"), 404
        event_header, delivery_headers, setting, handler = PROVIDERS[provider]
        headers = _request_headers(request.environ)
        delivery = _delivery_hint(headers, delivery_headers)
        label = _event_label(headers.get(event_header.lower()))
        metrics.inc(metrics.received, provider, label)
        secret = secrets[provider]
        if not secret:
            metrics.inc(metrics.rejected, provider, label, "404")
            message = NOT_CONFIGURED.format(provider=provider.capitalize(), setting=setting)
            return _answer(delivery, 404, action="rejected", error=message)

        body = _read_body(request.environ, settings.max_body_bytes)
        if body is None:
            metrics.inc(metrics.rejected, provider, label, "413")
            return _answer(
                delivery,
                413,
                action="rejected",
                error=TOO_LARGE.format(limit=settings.max_body_bytes),
            )
        try:
            outcome = handler(headers=headers, body=body, secret=secret, options=options)
        except WebhookError as exc:
            metrics.inc(metrics.rejected, provider, label, str(exc.status))
            log.info("rejected %s delivery %s: %s", provider, delivery, exc.message)
            return _answer(delivery, exc.status, action="rejected", error=exc.message)

        delivery = outcome.delivery_id
        label = _event_label(outcome.event_name)
        if outcome.event is None:
            if outcome.event_name == "ping":
                return _answer(delivery, 200, action="pong")
            metrics.inc(metrics.ignored, provider, label)
            return _answer(delivery, 200, action="ignored", reason=outcome.reason)
        refusal = intake_refusal(settings, outcome.event.repository)
        if refusal is not None:
            # Another forge than the configured one, or a repository outside
            # GITOPS_REPOSITORIES: no job, so no credential ever goes where the payload points.
            metrics.inc(metrics.ignored, provider, label)
            log.warning("ignored %s delivery %s: %s", provider, delivery, refusal)
            return _answer(delivery, 200, action="ignored", reason=refusal)
        try:
            queued = queue.enqueue(outcome.event, provider=provider)
        except QueueUnavailable as exc:
            metrics.inc(metrics.rejected, provider, label, "503")
            log.error("could not queue %s delivery %s: %s", provider, delivery, exc)
            return _answer(delivery, 503, action="failed", error=QUEUE_DOWN)
        if queued.duplicate:
            metrics.inc(metrics.duplicates, provider, label)
            return _answer(
                delivery, 200, action="duplicate", job=queued.job_type, job_id=queued.job_id
            )
        metrics.inc(metrics.jobs_queued, queued.job_type)
        log.info(
            "queued %s job %s for %s delivery %s (%s)",
            queued.job_type,
            queued.job_id,
            provider,
            delivery,
            outcome.event.repository.full_name,
        )
        return _answer(delivery, 202, action="queued", job=queued.job_type, job_id=queued.job_id)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        try:
            queue.ping()
        except QueueUnavailable as exc:
            return jsonify(status="unavailable", queue=str(exc)), 503
        return jsonify(status="ready"), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.exposition(queue), mimetype=None, content_type=CONTENT_TYPE)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        # 404/405 and friends in JSON too, so every answer is machine-readable.
        return jsonify(error=exc.description or exc.name), exc.code or 500

    return app


def _answer(delivery: str, status: int, **fields: Any) -> tuple[Response, int]:
    """A webhook's JSON answer, as ``jsonify`` writes it but by orjson, since every delivery
    pays for it; ``jsonify`` for what orjson refuses (a lone surrogate, were one ever to get
    past ``printable``)."""
    body = {"delivery": delivery, **fields}
    try:
        data = orjson.dumps(body) + b"\n"
    except TypeError:  # orjson.JSONEncodeError
        return jsonify(body), status
    return Response(data, status=status, mimetype="application/json"), status


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The raw body, or None when it exceeds ``limit``, read from the WSGI input as werkzeug's
    ``request.stream`` reads it (without its wrappers, on every delivery). A declared
    Content-Length over the limit is refused before reading; a chunked body (which the server
    marks ``wsgi.input_terminated``) is read only up to limit + 1 bytes."""
    stream = environ["wsgi.input"]
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    raw = environ.get("CONTENT_LENGTH", "")
    if raw.isascii() and raw.isdigit() and not chunked:
        declared = int(raw)
        if declared > limit:
            return None
        body: bytes = stream.read(declared) if declared else b""
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length, and the server cannot tell where the body ends: none
    body = stream.read(limit + 1)
    return None if len(body) > limit else body


def _request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers, names lower-cased, read from the WSGI environ as werkzeug's
    ``request.headers`` reads them (at a fraction of its cost, paid by every delivery)."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _delivery_hint(headers: dict[str, str], names: tuple[str, ...]) -> str:
    """The delivery id as the headers give it, for answers before the payload is parsed."""
    value = next((headers[key] for key in map(str.lower, names) if headers.get(key)), "")
    return value[:200]


def _event_label(name: str | None) -> str:
    return name if name in KNOWN_EVENTS else "other"


def create_app_from_env() -> Flask:
    """gunicorn's entry point (``gunicorn 'bot.app:create_app_from_env()'``): settings from the
    environment, REDIS_URL required."""
    settings = Settings.from_env(require_webhook_secret=True)
    if not settings.redis_url:
        from bot.errors import SettingsError

        raise SettingsError("REDIS_URL is not set; the web process needs the job queue's Redis")
    logging.basicConfig(level=settings.log_level)
    return create_app(settings)
