"""The jobs. Each receives one forge-neutral event (as plain values) and nothing else.

For now a job records that it ran: it logs the event with its delivery id, marks its job record
and counts itself in Redis (shown by the web's ``/metrics``), proving the path from webhook to
worker end to end. The preview, command and deploy stories plug in here as the engines land.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task
from redis.typing import EncodableT

from bot.events import Event, from_task
from bot.queue import JOB_KEY, JOBS_PROCESSED_KEY, TASK_NAMES, redis_client
from bot.settings import Settings
from workers.celery_app import app

log = logging.getLogger("gitops_bot.worker")

_redis: redis.Redis | None = None


def _state_store() -> redis.Redis:
    global _redis
    if _redis is None:
        settings = Settings.from_env()
        assert settings.redis_url, "REDIS_URL is not set"
        _redis = redis_client(settings.redis_url, timeout=max(settings.redis_timeout, 5.0))
    return _redis


def _record(job_id: str, job_type: str, outcome: str, **fields: str) -> None:
    mapping: dict[EncodableT, EncodableT] = {"state": outcome}
    mapping.update(fields)
    pipe = _state_store().pipeline(transaction=True)
    pipe.hset(JOB_KEY.format(job_id=job_id), mapping=mapping)
    if outcome != "running":
        pipe.hincrby(JOBS_PROCESSED_KEY, f"{job_type}|{outcome}", 1)
    pipe.execute()


def run_job(task: Task, payload: dict[str, Any]) -> Event:
    """The common frame of every job: decode, log with the delivery id, record the outcome."""
    event = from_task(payload)
    job_id = str(task.request.id)
    log.info(
        "%s job %s started for delivery %s: %r",
        event.job_type,
        job_id,
        event.delivery_id,
        event,
    )
    _record(job_id, event.job_type, "running", started_at=f"{time.time():.3f}")
    _record(job_id, event.job_type, "done", finished_at=f"{time.time():.3f}")
    log.info("%s job %s done (delivery %s)", event.job_type, job_id, event.delivery_id)
    return event


@app.task(name=TASK_NAMES["preview"], bind=True)
def preview(self: Task, payload: dict[str, Any]) -> None:
    """A PR/MR was opened or updated: preview what merging it would change."""
    run_job(self, payload)


@app.task(name=TASK_NAMES["command"], bind=True)
def command(self: Task, payload: dict[str, Any]) -> None:
    """A `/sync` or `/help` comment on a PR/MR."""
    run_job(self, payload)


@app.task(name=TASK_NAMES["deploy"], bind=True)
def deploy(self: Task, payload: dict[str, Any]) -> None:
    """New commits on the deploy branch: apply them."""
    run_job(self, payload)
