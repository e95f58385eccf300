"""What every job is given: its collaborators, in one bundle, and a log carrying its identity.

A job is a plain function ``(event, JobContext) -> outcome``. The Celery tasks build the context
with :func:`job_context` from the settings and per-process clients; tests build it by hand with a
:class:`~tests.fake_forge.memory.MemoryForge` or the fake GitHub, a real Redis and local clusters.
Nothing here knows Celery: ``retries_left`` is how the task tells the job whether a
:class:`~bot.errors.TransientError` raised now will be retried, so that the job's reports say
"will be retried" only when it will be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.checkouts import RepoCache
from bot.errors import ForgeError
from bot.events import Event
from bot.forges import Forge, Marker, StatusState, connect, status_context
from bot.forges.base import STATUS_DESCRIPTION_LIMIT, shorten
from bot.report import MAX_PARTS
from bot.settings import Settings
from bot.state import JobState

if TYPE_CHECKING:
    import redis

    from bot.cluster.targets import Targets

LOGGER = "gitops_bot.jobs"


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the job's identity — ``[delivery D job J acme/app#7]`` — and
    passes the same fields as ``extra`` (``delivery``, ``job``, ``repository``, ``pr``,
    ``sha``) for structured log handlers. Never give it a credential."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        where = str(extra.get("repository") or "")
        if extra.get("pr"):
            where += f"#{extra['pr']}"
        prefix = f"[delivery {extra.get('delivery', '?')} job {extra.get('job', '?')} {where}]"
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{prefix} {msg}", kwargs


def job_log(event: Event, job_id: str) -> JobLog:
    number = getattr(event, "number", None)
    sha = getattr(event, "head_sha", None) or getattr(event, "after_sha", None)
    return JobLog(
        logging.getLogger(LOGGER),
        {
            "delivery": event.delivery_id,
            "job": job_id,
            "repository": event.repository.full_name,
            "pr": number,
            "sha": sha,
        },
    )


class Enqueue(Protocol):
    """Queue another job: ``job`` is a job type of :data:`bot.queue.TASK_NAMES` (``preview``,
    ``deploy_app``), ``args`` its task's plain-value arguments. The worker sends a Celery task;
    tests record or run it."""

    def __call__(self, job: str, args: Sequence[Any]) -> None: ...


def _cannot_enqueue(job: str, args: Sequence[Any]) -> None:
    raise RuntimeError(f"this job context cannot queue jobs (asked for a {job} job)")


def _no_targets() -> Targets:
    from bot.cluster.targets import Targets

    return Targets({})


@dataclass
class JobContext:
    """A job's collaborators.

    ``targets`` is called when a job first needs the clusters (a broken clusters file fails only
    the jobs that need a cluster, with its message). ``part_limit`` (default: the forge's
    comment limit minus the marker's room) and ``max_parts`` shape sticky comments."""

    settings: Settings
    forge: Forge
    repos: RepoCache
    state: JobState
    targets: Callable[[], Targets] = _no_targets
    log: logging.LoggerAdapter = field(  # type: ignore[type-arg]
        default_factory=lambda: JobLog(logging.getLogger(LOGGER), {})
    )
    job_id: str = ""
    retries_left: bool = False
    part_limit: int | None = None
    max_parts: int = MAX_PARTS
    #: how a job queues others (a deploy: one job per app, re-previews of open PRs)
    enqueue: Enqueue = _cannot_enqueue

    def marker(self, kind: str) -> Marker:
        return Marker(kind, self.settings.instance)

    def status_context(self, kind: str) -> str:
        return status_context(kind, self.settings.instance)


def job_state(client: redis.Redis, settings: Settings) -> JobState:
    """The jobs' Redis state with the TTLs the settings give."""
    return JobState(
        client,
        head_ttl=settings.delivery_ttl,
        claim_ttl=settings.job_timeout,
        post_lock_timeout=float(min(settings.job_timeout, 600)),
        preview_ttl=settings.preview_result_ttl,
        record_ttl=settings.delivery_ttl,
        lock_ttl=settings.deploy_lock_ttl,
        # an app's deploy waits for the one before it, within the job's own time
        lock_wait=float(max(settings.job_timeout - 60, 1) / 2),
    )


def settings_targets(settings: Settings) -> Callable[[], Targets]:
    """The targets of ``GITOPS_CLUSTERS_FILE`` (or the default one), read when first needed."""

    def load() -> Targets:
        from bot.cluster.targets import Targets

        return Targets.from_settings(settings.clusters_file)

    return load


def job_context(
    settings: Settings,
    event: Event,
    *,
    client: redis.Redis,
    repos: RepoCache,
    job_id: str,
    retries_left: bool,
    enqueue: Enqueue = _cannot_enqueue,
) -> JobContext:
    """The context of one job from a queue: the forge of the event's repository (refused for
    another host, outside ``GITOPS_REPOSITORIES`` or without credentials, before any request)
    and the shared per-process clients."""
    forge = connect(
        settings, event.repository, installation_id=getattr(event, "installation_id", None)
    )
    return JobContext(
        settings=settings,
        forge=forge,
        repos=repos,
        state=job_state(client, settings),
        targets=settings_targets(settings),
        log=job_log(event, job_id),
        job_id=job_id,
        retries_left=retries_left,
        enqueue=enqueue,
    )


def set_status(
    forge: Forge,
    sha: str,
    *,
    state: StatusState,
    context: str,
    description: str,
    log: logging.LoggerAdapter,  # type: ignore[type-arg]
    quiet: bool = False,
) -> bool:
    """Set the commit status ``context`` of ``sha``, its description cut to what the forges
    keep. ``quiet``: a status that only follows up on a report already posted (superseded, a
    retry's pending) is logged when the forge refuses it, not raised. True when it was set."""
    try:
        forge.set_status(
            sha,
            state=state,
            context=context,
            description=shorten(description, STATUS_DESCRIPTION_LIMIT),
        )
    except ForgeError:
        if not quiet:
            raise
        log.warning("could not set the status %s to %s", context, state.value)
        return False
    return True
