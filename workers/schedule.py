"""Celery beat's schedule: the periodic jobs, built from the settings.

``gitops-bot serve`` runs beat beside the workers, and the Procfile's ``beat`` line runs it in
production; both read this one schedule. Run exactly one beat per installation: each beat sends
every periodic job, so two would send each twice.

Two periodic jobs, each off when its interval is 0: the drift check (``GITOPS_DRIFT_INTERVAL``,
:func:`bot.jobs.drift.drift_repository` per repository) and the catch-up
(``GITOPS_RECONCILE_INTERVAL``, :mod:`bot.jobs.catchup`). A round that no worker took within
its interval expires rather than piling up behind a stopped worker.
"""

from __future__ import annotations

from typing import Any

from bot.queue import QUEUE_OF, TASK_NAMES
from bot.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for ``settings``: entry name → task, schedule (seconds or a
    ``crontab``) and options."""
    schedule: dict[str, dict[str, Any]] = {}
    periodic = (
        ("drift", "drift_all", settings.drift_interval),
        ("catchup", "catchup", settings.reconcile_interval),
    )
    for name, job, interval in periodic:
        if interval > 0:
            schedule[name] = {
                "task": TASK_NAMES[job],
                "schedule": float(interval),
                "options": {"queue": QUEUE_OF[job], "expires": float(interval)},
            }
    return schedule
