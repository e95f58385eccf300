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

The periodic jobs (beat's schedule, :mod:`workers.schedule`) run on the ``deploys`` queue:
``gitops.drift_all`` queues one ``gitops.drift`` per served repository
(:func:`bot.jobs.drift.drift_repository`), and ``gitops.catchup`` queues the work lost webhooks
left undone (:mod:`bot.jobs.catchup`). Neither is retried: the next round is the retry.

Deploys are three tasks on the ``deploys`` queue: ``gitops.deploy`` plans a push and queues one
``gitops.deploy_app`` per app (which queue the apps waiting for them, and previews of open PRs);
``gitops.deploy_resume`` (queued by ``gitops-bot resume``) goes on with paused deploys.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from celery import Task
from redis.typing import EncodableT

from bot import metrics
from bot.checkouts import RepoCache
from bot.errors import ForgeNotConfigured, GitopsError, TransientError
from bot.events import CommandEvent, DriftEvent, Event, PullRequestEvent, PushEvent, from_task
from bot.forges import app_installations, check_configured, connect
from bot.jobs.catchup import ServedRepository, catch_up, served
from bot.jobs.context import JobContext, job_context, job_log, job_state
from bot.jobs.deploy import deploy_app as run_deploy_app
from bot.jobs.deploy import deploy_push, resume_deploys
from bot.jobs.drift import drift_repository
from bot.jobs.preview import preview_pull_request
from bot.jobs.sync import handle_command
from bot.logs import bind_context, unbind_context
from bot.queue import (
    JOB_KEY,
    JOBS_PROCESSED_KEY,
    QUEUE_OF,
    QUEUED_AT_HEADER,
    TASK_NAMES,
    JobQueue,
    redis_client,
)
from bot.settings import Settings
from workers.celery_app import app

log = logging.getLogger("gitops_bot.worker")

MAX_RETRY_DELAY = 300.0
# Jobs this version cannot decode (queued by another version, or by hand), newest first: kept
# for the operator rather than dropped, up to this many.
UNREADABLE_KEY = "gitops:jobs:unreadable"
UNREADABLE_KEPT = 1000

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


def enqueue(job: str, args: Sequence[Any]) -> None:
    """Queue a job from a job (a deploy's app jobs, re-previews): a Celery task on its queue."""
    app.send_task(TASK_NAMES[job], args=tuple(args), queue=QUEUE_OF[job])


def run_job(
    task: Task,
    payload: dict[str, Any],
    job: Job | None,
    first_try_at: float | None,
    *,
    extra: tuple[Any, ...] = (),
    job_type: str | None = None,
) -> str:
    """The frame of every job: decode, build the context, run, map errors, record the outcome.
    ``extra`` are the task's arguments after the event (given back on a retry); ``job_type``
    names the job in its record and metrics (default: the event's). Returns the outcome
    recorded."""
    job_id = str(task.request.id)
    try:
        event = from_task(payload)
    except (KeyError, TypeError, ValueError) as exc:
        return _keep_unreadable(task, job_id, payload, extra, exc, job_type=job_type)
    config = settings()
    jlog = job_log(event, job_id)
    kind = job_type or event.job_type
    started = first_try_at or time.time()
    retries = int(task.request.retries or 0)
    delay = retry_delay(config, retries)
    retries_left = time.time() + delay < started + config.job_timeout
    fields: dict[str, str] = {}
    wait = metrics.queue_wait(
        getattr(task.request, QUEUED_AT_HEADER, None), task.request.eta, time.time()
    )
    if wait is not None:
        metrics.observe_queue_wait(kind, wait)
    run_started = time.monotonic()
    timings: dict[str, float] | None = None
    jlog.info("%s job started (attempt %d)", kind, retries + 1)
    _record(job_id, kind, "running", started_at=f"{time.time():.3f}")
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
                enqueue=enqueue,
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
                _record(job_id, kind, "retry")
                metrics.observe_job(kind, "retry", time.monotonic() - run_started)
                raise task.retry(
                    args=(payload, *extra),
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
    _record(job_id, kind, outcome, finished_at=f"{time.time():.3f}", **fields)
    metrics.observe_job(kind, outcome, time.monotonic() - run_started, steps=timings)
    jlog.info("%s job ended: %s", kind, outcome)
    return outcome


def _keep_unreadable(
    task: Task,
    job_id: str,
    payload: Any,
    extra: tuple[Any, ...],
    exc: Exception,
    *,
    job_type: str | None,
) -> str:
    """A job whose event this version cannot decode ends ``unreadable``, its message kept
    under :data:`UNREADABLE_KEY` and said once in the log, instead of reaching Celery (which
    would log and drop it)."""
    kind = job_type or str(task.name).removeprefix("gitops.")
    kept = {
        "job_id": job_id,
        "task": task.name,
        "args": [payload, *extra],
        "error": f"{type(exc).__name__}: {exc}",
        "at": round(time.time(), 3),
    }
    pipe = _state_store().pipeline(transaction=True)
    pipe.lpush(UNREADABLE_KEY, json.dumps(kept, default=str))
    pipe.ltrim(UNREADABLE_KEY, 0, UNREADABLE_KEPT - 1)
    pipe.execute()
    _record(job_id, kind, "unreadable", finished_at=f"{time.time():.3f}")
    metrics.observe_job(kind, "unreadable", 0.0)
    log.error(
        "[job %s] %s job unreadable by this version of gitops-bot (%s: %s); kept in Redis "
        "under %s: run it with the version that queued it",
        job_id, kind, type(exc).__name__, exc, UNREADABLE_KEY,
    )  # fmt: skip
    return "unreadable"


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


def _deploy(event: Event, ctx: JobContext) -> Any:
    assert isinstance(event, PushEvent)
    return deploy_push(event, ctx)


@app.task(name=TASK_NAMES["deploy"], bind=True, max_retries=None)
def deploy(self: Task, payload: dict[str, Any], first_try_at: float | None = None) -> None:
    """New commits on the default branch: plan their deploy, one job per app."""
    run_job(self, payload, _deploy, first_try_at)


@app.task(name=TASK_NAMES["deploy_app"], bind=True, max_retries=None)
def deploy_app(
    self: Task, payload: dict[str, Any], key: str, first_try_at: float | None = None
) -> None:
    """One app (``<target>/<app>``) of a planned push."""

    def job(event: Event, ctx: JobContext) -> Any:
        assert isinstance(event, PushEvent)
        return run_deploy_app(event, ctx, key)

    run_job(self, payload, job, first_try_at, extra=(key,), job_type="deploy_app")


@app.task(name=TASK_NAMES["deploy_resume"], bind=True)
def deploy_resume(self: Task) -> None:
    """``gitops-bot resume``: go on with the paused deploys whose pause was lifted."""
    job_id = str(self.request.id)
    _record(job_id, "deploy_resume", "running", started_at=f"{time.time():.3f}")
    try:
        result = resume_deploys(job_state(_state_store(), settings()), enqueue)
        outcome = result.outcome
        for run, keys in result.queued.items():
            log.info("[job %s] resumed %s: %s", job_id, run, ", ".join(keys))
    except TransientError as exc:
        log.warning("[job %s] resume failed, retrying: %s", job_id, exc)
        _record(job_id, "deploy_resume", "retry")
        raise self.retry(
            countdown=retry_delay(settings(), int(self.request.retries or 0))
        ) from None
    _record(job_id, "deploy_resume", outcome, finished_at=f"{time.time():.3f}")


# -- the periodic jobs (beat) ---------------------------------------------------------------------


def _served_repositories() -> list[ServedRepository]:
    config = settings()

    def installations() -> list[ServedRepository]:
        return [ServedRepository(r, i) for r, i in app_installations(config)]

    return served(config, job_state(_state_store(), config), installations=installations)


def _periodic(task: Task, kind: str, body: Callable[[str], str]) -> None:
    """The frame of a periodic job: its record, metrics and log context; an outage is logged
    and waits for the next round (beat's), never retried nor raised."""
    job_id = str(task.request.id)
    token = bind_context({"job": job_id})
    started = time.monotonic()
    try:
        _record(job_id, kind, "running", started_at=f"{time.time():.3f}")
        try:
            outcome = body(job_id)
        except GitopsError as exc:
            log.warning("[job %s] %s not done, the next round retries: %s", job_id, kind, exc)
            outcome = "unavailable"
        except Exception as exc:
            log.error(
                "[job %s] %s failed with an unexpected %s:\n%s",
                job_id,
                kind,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            outcome = "failed"
        metrics.observe_job(kind, outcome, time.monotonic() - started)
        try:
            _record(job_id, kind, outcome, finished_at=f"{time.time():.3f}")
        except redis.RedisError as exc:
            log.warning("[job %s] could not record the outcome %s: %s", job_id, outcome, exc)
    except redis.RedisError as exc:
        log.warning("[job %s] %s not done (Redis), the next round retries: %s", job_id, kind, exc)
    finally:
        unbind_context(token)


def _configured(config: Settings, item: ServedRepository) -> bool:
    """Whether the bot has credentials for the repository's forge (not with only a webhook
    secret: the Quick start); the others are not checked, quietly."""
    try:
        check_configured(config, item.repository.provider)
    except ForgeNotConfigured:
        return False
    return True


@app.task(name=TASK_NAMES["drift_all"], bind=True)
def drift_all(self: Task) -> None:
    """Beat, every ``GITOPS_DRIFT_INTERVAL``: one drift job per served repository."""

    def body(job_id: str) -> str:
        round_id = f"drift-{int(time.time())}"
        config = settings()
        repositories = [r for r in _served_repositories() if _configured(config, r)]
        for item in repositories:
            event = DriftEvent(
                delivery_id=round_id,
                repository=item.repository,
                installation_id=item.installation_id,
            )
            enqueue("drift", (event.to_task(),))
        log.info("[job %s] queued the drift check of %d repositories", job_id, len(repositories))
        return "queued" if repositories else "no_repositories"

    _periodic(self, "drift_all", body)


def _drift(event: Event, ctx: JobContext) -> Any:
    assert isinstance(event, DriftEvent)
    return drift_repository(event, ctx)


@app.task(name=TASK_NAMES["drift"], bind=True, max_retries=None)
def drift(self: Task, payload: dict[str, Any], first_try_at: float | None = None) -> None:
    """The drift check of one repository (never retried: the next round is the retry)."""
    run_job(self, payload, _drift, first_try_at)


@app.task(name=TASK_NAMES["catchup"], bind=True)
def catchup(self: Task) -> None:
    """Beat, every ``GITOPS_RECONCILE_INTERVAL``: queue what lost webhooks left undone."""

    def body(job_id: str) -> str:
        config = settings()
        client = _state_store()
        intake = JobQueue(client, delivery_ttl=config.delivery_ttl)

        def queue(event: Event) -> bool:
            return not intake.enqueue(event, provider=event.repository.provider).duplicate

        def forge_of(item: ServedRepository) -> Any:
            return connect(config, item.repository, installation_id=item.installation_id)

        result = catch_up(
            config,
            job_state(client, config),
            _served_repositories(),
            connect=forge_of,
            intake=queue,
            logger=log,
        )
        log.info(
            "[job %s] catch-up of %d repositories: %d deploys and %d previews queued%s",
            job_id,
            result.checked,
            len(result.deploys),
            len(result.previews),
            f"; not checked: {', '.join(result.failed)}" if result.failed else "",
        )
        return result.outcome

    _periodic(self, "catchup", body)
