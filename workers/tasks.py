"""The Celery tasks: thin callers of the jobs in :mod:`bot.jobs`.

Each task decodes its forge-neutral event (plain values: no client, no token), builds the job's
context from the settings and per-process clients (Redis, the git cache), runs the job and
records the outcome on the job's record and in ``gitops_jobs_processed_total`` (web
``/metrics``), and its queue wait, run time and step times in the worker's own metrics
(:mod:`bot.metrics`). Errors keep their meaning:

* :class:`~bot.errors.TransientError` (forge or cluster outage, Redis, a busy git cache) — the
  task runs again after ``GITOPS_RETRY_DELAY`` seconds, doubled each time up to 5 minutes,
  while the job's first start is less than ``GITOPS_JOB_TIMEOUT`` ago (outcome ``retry``); the
  job is told whether it will be (``retries_left``), so its reports say "will be retried" only
  then. After that it ends like a permanent error.
* :class:`~bot.errors.PermanentError` — the job has left its trace where the forge answers
  (status ``error`` with the reason); the task logs the reason with the delivery id (outcome
  ``failed``; ``not_configured`` when the forge has no credentials, e.g. only a webhook secret).
* anything else is a bug: logged with its stack but not its message (it may quote a manifest),
  outcome ``failed``. No task lets an exception reach Celery's own logging, which would print
  its message.

The deploy task only records that it ran: the deploy job is next (issue 15).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import Task
from redis.typing import EncodableT

from bot import metrics
from bot.checkouts import RepoCache
from bot.errors import ForgeNotConfigured, GitopsError, TransientError
from bot.events import CommandEvent, Event, PullRequestEvent, from_task
from bot.jobs.context import JobContext, job_context, job_log
from bot.jobs.preview import preview_pull_request
from bot.jobs.sync import handle_command
from bot.queue import JOB_KEY, JOBS_PROCESSED_KEY, QUEUED_AT_HEADER, TASK_NAMES, redis_client
from bot.settings import Settings
from workers.celery_app import app

log = logging.getLogger("gitops_bot.worker")

MAX_RETRY_DELAY = 300.0

_settings: Settings | None = None
_redis: redis.Redis | None = None
_repos: RepoCache | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def _state_store() -> redis.Redis:
    global _redis
    if _redis is None:
        config = settings()
        assert config.redis_url, "REDIS_URL is not set"
        _redis = redis_client(config.redis_url, timeout=max(config.redis_timeout, 5.0))
    return _redis


def _repo_cache() -> RepoCache:
    global _repos
    if _repos is None:
        _repos = RepoCache(Path(settings().data_dir) / "repos")
    return _repos


def _record(job_id: str, job_type: str, outcome: str, **fields: str) -> None:
    mapping: dict[EncodableT, EncodableT] = {"state": outcome}
    mapping.update(fields)
    pipe = _state_store().pipeline(transaction=True)
    pipe.hset(JOB_KEY.format(job_id=job_id), mapping=mapping)
    if outcome != "running":
        pipe.hincrby(JOBS_PROCESSED_KEY, f"{job_type}|{outcome}", 1)
    pipe.execute()


def retry_delay(config: Settings, retries: int) -> float:
    """Seconds before attempt ``retries + 2`` of a job."""
    return float(min(config.retry_delay * 2**retries, MAX_RETRY_DELAY))


Job = Callable[[Any, JobContext], Any]


def run_job(
    task: Task, payload: dict[str, Any], job: Job | None, first_try_at: float | None
) -> str:
    """The frame of every job: decode, build the context, run, map errors, record the outcome.
    Returns the outcome recorded."""
    event = from_task(payload)
    job_id = str(task.request.id)
    config = settings()
    jlog = job_log(event, job_id)
    started = first_try_at or time.time()
    retries = int(task.request.retries or 0)
    delay = retry_delay(config, retries)
    retries_left = time.time() + delay < started + config.job_timeout
    fields: dict[str, str] = {}
    wait = metrics.queue_wait(
        getattr(task.request, QUEUED_AT_HEADER, None), task.request.eta, time.time()
    )
    if wait is not None:
        metrics.observe_queue_wait(event.job_type, wait)
    run_started = time.monotonic()
    timings: dict[str, float] | None = None
    jlog.info("%s job started (attempt %d)", event.job_type, retries + 1)
    _record(job_id, event.job_type, "running", started_at=f"{time.time():.3f}")
    if job is None:
        outcome = "done"
    else:
        try:
            ctx = job_context(
                config,
                event,
                client=_state_store(),
                repos=_repo_cache(),
                job_id=job_id,
                retries_left=retries_left,
            )
            result = job(event, ctx)
            outcome = str(getattr(result, "outcome", "done"))
            timings = getattr(result, "timings", None) or getattr(
                getattr(result, "preview", None), "timings", None
            )
            if timings:  # for benchmarks and operators: where the job's time went
                fields = {f"seconds_{step}": f"{value:.3f}" for step, value in timings.items()}
        except TransientError as exc:
            if retries_left:
                jlog.warning("transient error, retrying in %.0f s: %s", delay, exc)
                _record(job_id, event.job_type, "retry")
                metrics.observe_job(event.job_type, "retry", time.monotonic() - run_started)
                raise task.retry(
                    args=(payload,),
                    kwargs={"first_try_at": started},
                    countdown=delay,
                    max_retries=None,
                ) from None
            jlog.error("failed after retries for %.0f s: %s", time.time() - started, exc)
            outcome = "failed"
        except ForgeNotConfigured as exc:
            jlog.error("failed: %s", exc)
            outcome = "not_configured"
        except GitopsError as exc:
            jlog.error("failed: %s", exc)
            outcome = "failed"
        except Exception as exc:
            # The stack, not the message: a message may quote a value from a manifest.
            jlog.error(
                "failed with an unexpected %s:\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            outcome = "failed"
    _record(job_id, event.job_type, outcome, finished_at=f"{time.time():.3f}", **fields)
    metrics.observe_job(event.job_type, outcome, time.monotonic() - run_started, steps=timings)
    jlog.info("%s job ended: %s", event.job_type, outcome)
    return outcome


def _preview(event: Event, ctx: JobContext) -> Any:
    assert isinstance(event, PullRequestEvent)
    return preview_pull_request(event, ctx)


def _command(event: Event, ctx: JobContext) -> Any:
    assert isinstance(event, CommandEvent)
    return handle_command(event, ctx)


@app.task(name=TASK_NAMES["preview"], bind=True, max_retries=None)
def preview(self: Task, payload: dict[str, Any], first_try_at: float | None = None) -> None:
    """A PR/MR was opened or updated: preview what merging it would change."""
    run_job(self, payload, _preview, first_try_at)


@app.task(name=TASK_NAMES["command"], bind=True, max_retries=None)
def command(self: Task, payload: dict[str, Any], first_try_at: float | None = None) -> None:
    """A `/sync` or `/help` comment on a PR/MR."""
    run_job(self, payload, _command, first_try_at)


@app.task(name=TASK_NAMES["deploy"], bind=True)
def deploy(self: Task, payload: dict[str, Any], first_try_at: float | None = None) -> None:
    """New commits on the deploy branch: recorded only until the deploy job lands."""
    run_job(self, payload, None, first_try_at)
