"""Celery beat's schedule: the periodic jobs, built from the settings.

``gitops-bot serve`` runs beat beside the workers, and the Procfile's ``beat`` line runs it in
production; both read this one schedule. Run exactly one beat per installation: each beat sends
every periodic job, so two would send each twice.

Nothing is periodic yet. A periodic job adds its entry here, enabled by its own setting, e.g.
``{"drift": {"task": "gitops.drift", "schedule": settings.drift_interval}}``.
"""

from __future__ import annotations

from typing import Any

from bot.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for ``settings``: entry name → task, schedule (seconds or a
    ``crontab``) and options."""
    del settings  # every periodic job will read its interval from here
    return {}
