"""Logging for every process of the bot: one set-up function, two formats, no secret.

:func:`setup_logging` is called once where each process starts: ``gitops-bot serve``,
``worker`` and ``beat`` (the supervisors), the Celery worker and beat processes (through
Celery's ``setup_logging`` signal, so Celery's own lines use it too), gunicorn's master and
workers (``bot.gunicorn_conf``'s logger class, so gunicorn's lines use it too) and the other
CLI commands. Everything goes to stderr, as process managers and Kubernetes expect.

``GITOPS_LOG_FORMAT=text`` (the default) writes ``time LEVEL logger: message``;
``GITOPS_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger) with ``time``,
``level``, ``logger``, ``message``, ``component`` (serve, web, worker, beat, cli), ``pid`` and
the identity of the work a line is about: ``delivery``, ``job``, ``repository``, ``pr`` and
``sha``. The web process's intake lines carry them (:func:`event_fields`), and so does every
line of a job (:class:`bot.jobs.context.JobLog`), from the delivery to the report's post: an
operator follows one delivery through the processes by its id.

Every line, in either format, passes through :class:`Redactor` last: the secrets the settings
hold (tokens, webhook secrets, the GitHub App's key, Redis's password) are replaced by
``<redacted>`` wherever they appear, exception text included. The code never logs them; this is
the net under that rule.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from bot.events import Event
    from bot.settings import Settings

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "<redacted>"
MIN_SECRET_LENGTH: Final = 6
"""Shorter values are not searched for: replacing every "abc" would garble the log and a
secret that short protects nothing anyway."""

_HANDLER_MARK: Final = "_gitops_bot_handler"
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "gitops_bot_log_context", default=MappingProxyType({})
)


def bind_context(fields: Mapping[str, Any]) -> Token[Mapping[str, Any]]:
    """Every line logged from here on in this thread (or task) carries ``fields`` unless it
    has its own: a library's lines during a job (PyGithub's retries, Celery's "Task …
    succeeded") then say which delivery and job they belong to. Undo with
    :func:`unbind_context`."""
    return _CONTEXT.set({**_CONTEXT.get(), **fields})


def unbind_context(token: Token[Mapping[str, Any]]) -> None:
    _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Adds the bound context fields (:func:`bind_context`) to each record lacking them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def event_fields(event: Event, job_id: str | None = None) -> dict[str, Any]:
    """The context fields of a line about ``event`` (and its job): delivery, job, repository,
    PR/MR number and head SHA, None where the event has none (a push has no PR)."""
    return {
        "delivery": event.delivery_id,
        "job": job_id,
        "repository": event.repository.full_name,
        "pr": getattr(event, "number", None),
        "sha": getattr(event, "head_sha", None) or getattr(event, "after_sha", None),
    }


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value ``settings`` holds or points to."""
    values = [
        settings.github_webhook_secret,
        settings.gitlab_webhook_secret,
        settings.github_token,
        settings.gitlab_token,
        settings.github_app_private_key,
    ]
    if settings.github_app_private_key_file is not None:
        # unreadable: the forge says so, and nothing of it can be logged
        with contextlib.suppress(OSError):
            values.append(settings.github_app_private_key_file.read_text())
    if settings.redis_url:
        with contextlib.suppress(ValueError):
            values.append(urlsplit(settings.redis_url).password)
    return [value for value in values if value]


class Redactor:
    """Replaces known secret values in text: each as it is, as JSON escapes it, and (for a
    PEM key) each line of it, since a key may be printed a line at a time."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[str] = set()
        for secret in secrets:
            secret = secret.strip()
            candidates = {secret, json.dumps(secret)[1:-1]}
            candidates.update(line.strip() for line in secret.splitlines())
            found.update(c for c in candidates if len(c) >= MIN_SECRET_LENGTH and "-----" not in c)
        # longest first: a secret containing another is replaced whole
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, secrets redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonLinesFormatter(JsonFormatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    ``component``, ``pid``, the context fields a line carries (those without a value are left
    out) and any other ``extra``; ``exc_info`` holds a traceback. Secrets redacted."""

    def __init__(self, redact: Redactor, *, component: str) -> None:
        super().__init__(
            ["levelname", "name", "message", "process"],
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            static_fields={"component": component},
            timestamp="time",
        )
        self._redact = redact

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # time first, for people reading the raw lines
        ordered = {"time": log_data.pop("time", None), **log_data}
        return {key: value for key, value in ordered.items() if value is not None}

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def make_formatter(
    log_format: str, *, component: str, secrets: Iterable[str] = ()
) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``)."""
    redact = Redactor(secrets)
    if log_format == "json":
        return JsonLinesFormatter(redact, component=component)
    return TextFormatter(redact)


def setup_logging(
    settings: Settings,
    *,
    component: str,
    stream: Any = None,
    extra_secrets: Iterable[str] = (),
) -> logging.Handler:
    """Send every log line of this process to stderr (or ``stream``) in the settings' format
    and level, secrets redacted. Calling it again (a Celery child after the fork, gunicorn
    reopening its logs) replaces the handler it installed; handlers others installed on the
    root logger (pytest's) are left alone. Returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    # sys.__stderr__: Celery replaces sys.stderr with a proxy that logs what is written to it,
    # which would loop back here
    handler = logging.StreamHandler(stream if stream is not None else sys.__stderr__)
    handler.setFormatter(
        make_formatter(
            settings.log_format,
            component=component,
            secrets=[*settings_secrets(settings), *extra_secrets],
        )
    )
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Python's warnings become log lines too (logger py.warnings), not bare text on stderr.
    logging.captureWarnings(True)
    return handler


def announce(logger: logging.Logger, message: str, *args: Any) -> None:
    """Log an INFO line whatever the level: start-up facts people and scripts wait for (the
    URL the bot listens on), in the configured format like every other line."""
    record = logger.makeRecord(logger.name, logging.INFO, "(announce)", 0, message, args, None)
    handlers = [h for h in logging.getLogger().handlers if getattr(h, _HANDLER_MARK, False)]
    if not handlers:  # logging not set up (a test calling the command's code): plain stderr
        print(record.getMessage(), file=sys.stderr)
    for handler in handlers:
        handler.handle(record)
