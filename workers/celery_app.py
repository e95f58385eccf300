"""The Celery app, configured from :class:`bot.settings.Settings` when first used.

``celery -A workers.celery_app worker`` needs a module-level app, but settings must not be read
at import time; Celery's ``on_configure`` hook runs on first use of the configuration, which is
start-up of the worker (or of a test's app).

At-least-once delivery: ``acks_late`` (a job is acknowledged only when done),
``reject_on_worker_lost`` (a worker killed mid-job gives its job back), prefetch 1 (a worker
holds no jobs it is not running) and a Redis visibility timeout longer than the longest job (an
unacknowledged job is handed to another worker only after that). Jobs must therefore be
idempotent, which every task is.

Each worker announces the queues it consumes in Redis (``workers.heartbeat``), and beat's
schedule comes from ``workers.schedule``.

Logging is the bot's (:func:`bot.logs.setup_logging`): Celery sends ``setup_logging`` when a
worker, one of its pool processes or beat starts, and with a receiver connected it configures
nothing itself, so its own lines ("Task … received") come out in ``GITOPS_LOG_FORMAT`` with the
bot's redaction. While a job runs, every line (PyGithub's retries, Celery's "Task … succeeded")
carries the job's delivery id, job id, repository, PR and SHA.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, task_postrun, task_prerun
from celery.signals import setup_logging as celery_setup_logging

from bot.events import from_task
from bot.logs import bind_context, event_fields, setup_logging, unbind_context
from bot.queue import QUEUE_OF, QUEUES, TASK_NAMES, kombu_url
from bot.settings import Settings
from workers.heartbeat import Heartbeat
from workers.schedule import beat_schedule


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for ``settings``; ``settings.redis_url`` must be set."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "socket_timeout": max(settings.redis_timeout, 5.0),
        "socket_connect_timeout": max(settings.redis_timeout, 5.0),
        # BRPOP waits this long; it must be shorter than socket_timeout.
        "polling_interval": 1,
        "brpop_timeout": 1,
    }
    return {
        "broker_url": kombu_url(settings.redis_url),
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.job_timeout,
        "task_soft_time_limit": max(settings.job_timeout - 30, 1),
        "task_default_queue": "previews",
        "task_create_missing_queues": True,
        "task_routes": {TASK_NAMES[job]: {"queue": QUEUE_OF[job]} for job in TASK_NAMES},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_enable_remote_control": False,
        "broker_connection_max_retries": None,
        "beat_schedule": beat_schedule(settings),
    }


@celeryd_init.connect(weak=False)  # type: ignore[untyped-decorator]
@celery_setup_logging.connect(weak=False)  # type: ignore[untyped-decorator]
def _setup_logging(**_: Any) -> None:
    # celeryd_init: a worker's first signal, before its own warnings (running as root)
    setup_logging(Settings.from_env(), component="beat" if "beat" in sys.argv[1:] else "worker")


_bound: dict[str, Any] = {}
"""Task id → the token of the log context bound for it (one task at a time per process)."""


@task_prerun.connect(weak=False)  # type: ignore[untyped-decorator]
def _bind_job(task_id: str, args: Any = (), **_: Any) -> None:
    """Every line logged while a job runs carries its identity, libraries' lines included."""
    try:
        event = from_task(args[0])
    except (IndexError, KeyError, TypeError, ValueError):
        return  # not one of the bot's jobs (a test task)
    _bound[task_id] = bind_context(event_fields(event, task_id))


@task_postrun.connect(weak=False)  # type: ignore[untyped-decorator]
def _unbind_job(task_id: str, **_: Any) -> None:
    token = _bound.pop(task_id, None)
    if token is not None:
        unbind_context(token)


class GitopsCelery(Celery):  # type: ignore[misc]
    """Reads the settings on first use instead of at import."""

    def on_configure(self) -> None:
        self.conf.update(celery_config(Settings.from_env()))


app = GitopsCelery("gitops_bot", include=["workers.tasks"], set_as_current=True)
app.steps["consumer"].add(Heartbeat)

__all__ = ["QUEUES", "app", "celery_config"]
