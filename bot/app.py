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

While no GitHub App is configured, ``/setup/github-app`` creates one through GitHub's manifest
flow (:mod:`bot.setup_app`): the one route that calls the forge, once, on the operator's
redirect, never on a delivery.

``/readyz`` is 200 when Redis answers and every queue has a worker consuming it (a heartbeat in
Redis), 503 saying which is missing otherwise.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bot.errors import QueueUnavailable, SettingsError
from bot.forges.policy import intake_refusal
from bot.logs import event_fields, setup_logging
from bot.metrics import CONTENT_TYPE, WebMetrics
from bot.queue import JobQueue, redis_client
from bot.settings import Settings
from bot.setup_app import register as register_setup
from bot.setup_app import web_settings
from bot.webhooks import KNOWN_EVENTS, PROVIDERS, IntakeOptions, WebhookError

log = logging.getLogger("gitops_bot.web")

NOT_CONFIGURED = "{provider} webhooks are not configured on this bot: set {setting}"
TOO_LARGE = "body is larger than the {limit} bytes this bot accepts"
QUEUE_DOWN = "the job queue is unavailable; nothing was queued, redeliver later"
NO_WORKER = "no worker consumes {queues}: jobs wait there until one does"


def create_app(settings: Settings, *, queue: JobQueue | None = None) -> Flask:
    """The Flask app. ``queue`` defaults to one on ``settings.redis_url``."""
    app = Flask("gitops_bot")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # werkzeug refuses a larger declared length before reading, and stops a chunked body at it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
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
        intake = PROVIDERS.get(provider)
        if intake is None:
            return jsonify(error=f"no webhook endpoint for {provider!r}"), 404
        headers = request.headers
        delivery = next(
            (headers[name] for name in intake.delivery_headers if headers.get(name)), ""
        )
        delivery = delivery[:200]  # only echoed until the parser has checked it
        label = _event_label(headers.get(intake.event_header))
        metrics.received.labels(provider, label).inc()
        secret = secrets[provider]
        if not secret:
            metrics.rejected.labels(provider, label, "404").inc()
            message = NOT_CONFIGURED.format(
                provider=provider.capitalize(), setting=intake.secret_setting
            )
            return _answer(delivery, 404, action="rejected", error=message)
        body = _read_body(settings.max_body_bytes)
        if body is None:
            metrics.rejected.labels(provider, label, "413").inc()
            message = TOO_LARGE.format(limit=settings.max_body_bytes)
            return _answer(delivery, 413, action="rejected", error=message)
        try:
            outcome = intake.handle(headers=headers, body=body, secret=secret, options=options)
        except WebhookError as exc:
            metrics.rejected.labels(provider, label, str(exc.status)).inc()
            log.info(
                "rejected %s delivery %s: %s",
                provider,
                delivery,
                exc.message,
                extra={"delivery": delivery, "provider": provider},
            )
            return _answer(delivery, exc.status, action="rejected", error=exc.message)

        delivery = outcome.delivery_id
        label = _event_label(outcome.event_name)
        if outcome.event is None:
            if outcome.event_name == "ping":
                return _answer(delivery, 200, action="pong")
            metrics.ignored.labels(provider, label).inc()
            log.info(
                "ignored %s delivery %s: %s",
                provider,
                delivery,
                outcome.reason,
                extra={"delivery": delivery, "provider": provider},
            )
            return _answer(delivery, 200, action="ignored", reason=outcome.reason)
        fields = {**event_fields(outcome.event), "provider": provider}
        refusal = intake_refusal(settings, outcome.event.repository)
        if refusal is not None:
            # Another forge than the configured one, or a repository outside
            # GITOPS_REPOSITORIES: no job, so no credential ever goes where the payload points.
            metrics.ignored.labels(provider, label).inc()
            log.warning("ignored %s delivery %s: %s", provider, delivery, refusal, extra=fields)
            return _answer(delivery, 200, action="ignored", reason=refusal)
        try:
            queued = queue.enqueue(outcome.event, provider=provider)
        except QueueUnavailable as exc:
            metrics.rejected.labels(provider, label, "503").inc()
            log.error("could not queue %s delivery %s: %s", provider, delivery, exc, extra=fields)
            return _answer(delivery, 503, action="failed", error=QUEUE_DOWN)
        fields["job"] = queued.job_id
        if queued.duplicate:
            metrics.duplicates.labels(provider, label).inc()
            log.info(
                "%s delivery %s again: its %s job %s was queued before, nothing new",
                provider,
                delivery,
                queued.job_type,
                queued.job_id,
                extra=fields,
            )
            return _answer(
                delivery, 200, action="duplicate", job=queued.job_type, job_id=queued.job_id
            )
        metrics.jobs_queued.labels(queued.job_type).inc()
        log.info(
            "queued %s job %s for %s delivery %s (%s)",
            queued.job_type,
            queued.job_id,
            provider,
            delivery,
            outcome.event.repository.full_name,
            extra=fields,
        )
        return _answer(delivery, 202, action="queued", job=queued.job_type, job_id=queued.job_id)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        # Checks can be left out by name, as on Kubernetes' own /readyz: a web process that
        # must keep taking deliveries while the workers are away uses ?exclude=workers.
        excluded = set(request.args.getlist("exclude"))
        try:
            if "workers" in excluded:
                queue.ping()
                return jsonify(status="ready"), 200
            workers = queue.workers()
        except QueueUnavailable as exc:
            return jsonify(status="unavailable", error=str(exc)), 503
        idle = [name for name, count in workers.items() if not count]
        if idle:
            message = NO_WORKER.format(queues=" or ".join(idle))
            return jsonify(status="unavailable", error=message, workers=workers), 503
        return jsonify(status="ready", workers=workers), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.exposition(queue), mimetype=None, content_type=CONTENT_TYPE)

    if settings.redis_url:
        # /setup/github-app, while no GitHub App is configured (bot.setup_app)
        register_setup(
            app, settings, redis_client(settings.redis_url, timeout=settings.redis_timeout)
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        # 404/405 and friends in JSON too, so every answer is machine-readable.
        return jsonify(error=exc.description or exc.name), exc.code or 500

    return app


def _read_body(limit: int) -> bytes | None:
    """The request's body, or None when it is larger than ``limit`` (MAX_CONTENT_LENGTH).

    werkzeug refuses a declared length over the limit before reading, and reads a streamed
    (chunked) body only up to the limit, without telling whether more was coming: a streamed
    body that reaches the limit is taken as larger."""
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return None
    if request.content_length is None and len(body) >= limit:
        return None
    return body


def _answer(delivery: str, status: int, **fields: str) -> tuple[Response, int]:
    """A webhook's JSON answer: the delivery id, then what was done with it."""
    return jsonify(delivery=delivery, **fields), status


def _event_label(name: str | None) -> str:
    return name if name in KNOWN_EVENTS else "other"


def create_app_from_env() -> Flask:
    """gunicorn's entry point (``gunicorn 'bot.app:create_app_from_env()'``): settings from the
    environment, REDIS_URL required."""
    settings = web_settings()  # a webhook secret, unless /setup/github-app is the way to one
    if not settings.redis_url:
        raise SettingsError("REDIS_URL is not set; the web process needs the job queue's Redis")
    setup_logging(settings, component="web")
    return create_app(settings)
