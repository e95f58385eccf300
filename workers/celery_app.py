"""The Celery app, configured from :class:`bot.settings.Settings` when first used.

``celery -A workers.celery_app worker`` needs a module-level app, but settings must not be read
at import time; Celery's ``on_configure`` hook runs on first use of the configuration, which is
start-up of the worker (or of a test's app).

At-least-once delivery: ``acks_late`` (a job is acknowledged only when done),
``reject_on_worker_lost`` (a worker killed mid-job gives its job back), prefetch 1 (a worker
holds no jobs it is not running) and a Redis visibility timeout longer than the longest job (an
unacknowledged job is handed to another worker only after that). Jobs must therefore be
idempotent, which every task is. A worker asked to stop gives its running jobs
``GITOPS_WORKER_SHUTDOWN_GRACE`` seconds, then hands them back to the queue (Celery's soft
shutdown: ``bot.processes`` starts workers with SIGTERM remapped to the cold shutdown), so a
stopped worker's job runs again at once rather than after the visibility timeout.

Each worker announces the queues it consumes in Redis (``workers.heartbeat``), and beat's
schedule comes from ``workers.schedule``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

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
        # A stopped worker (SIGTERM, remapped to Celery's cold shutdown by bot.processes) lets
        # its running jobs finish for this long, then cancels them: reject_on_worker_lost puts
        # them back on the queue at once, instead of after the visibility timeout.
        "worker_soft_shutdown_timeout": settings.worker_shutdown_grace,
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


class GitopsCelery(Celery):  # type: ignore[misc]
    """Reads the settings on first use instead of at import."""

    def on_configure(self) -> None:
        self.conf.update(celery_config(Settings.from_env()))


app = GitopsCelery("gitops_bot", include=["workers.tasks"], set_as_current=True)
app.steps["consumer"].add(Heartbeat)

__all__ = ["QUEUES", "app", "celery_config"]
